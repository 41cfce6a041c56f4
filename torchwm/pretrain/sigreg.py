"""Multi-view SIGReg pretraining (LeJEPA, Balestriero & LeCun 2025): several views of an image predict the
mean embedding of its global views, and SIGReg keeps the embeddings an isotropic Gaussian.

* encoder: any :class:`~torchwm.nn.encoders.SpatialEncoder` (ViT, conv, keypoint head, timm model): the
  pretrained backbone;
* projector: an MLP with BatchNorm (torchvision's ``MLP``) from the embedding to ``proj_dim``, where the loss
  applies (a LayerNorm right before SIGReg would fight it);
* loss: ``(1 - λ) · mean_v ‖p_v − mean_g p_g‖² + λ · SIGReg(p)`` with ``p_v`` the projections of the views and
  ``g`` the global ones; SIGReg (:func:`torchwm.losses.sigreg`) is computed per view over the batch and
  averaged, scaled by the batch size as LeJEPA's (so λ keeps its meaning when the batch size changes).

No target encoder, no stop-gradient, no predictor network: the mean of the global views is the target.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import MLP

from torchwm.losses import LossOutput, sigreg
from torchwm.nn.encoders import SpatialEncoder


class MultiViewSIGReg(nn.Module):
    """``loss(views (B, V, 3, H, W))`` → :class:`LossOutput`; the first ``global_views`` of the ``V`` views are
    the global ones. ``embeddings`` are the encoder's embeddings of the first view ``(B, D)``."""

    def __init__(self, encoder: SpatialEncoder, proj_dim: int = 64, hidden: int = 512, weight: float = 0.05,
                 directions: int = 256, global_views: int = 2) -> None:
        super().__init__()
        if not 0 < weight < 1:
            raise ValueError(f"weight={weight!r}: the SIGReg weight lambda must be in (0, 1)")
        self.encoder = encoder
        self.projector = MLP(encoder.embed_dim, [hidden, hidden, proj_dim], norm_layer=nn.BatchNorm1d)
        self.weight, self.directions, self.global_views = float(weight), int(directions), int(global_views)

    @property
    def backbone(self) -> SpatialEncoder:
        """The pretrained encoder to use downstream."""
        return self.encoder

    def loss(self, views: torch.Tensor) -> LossOutput:
        if views.dim() != 5 or views.shape[1] < max(2, self.global_views):
            raise ValueError(f"views must be (B, V, 3, H, W) with V >= max(2, global views = {self.global_views}), "
                             f"got {tuple(views.shape)}")
        b, v = views.shape[:2]
        emb = self.encoder(views.flatten(0, 1))  # (B*V, D)
        proj = self.projector(emb).view(b, v, -1)  # (B, V, P)
        centre = proj[:, : self.global_views].mean(dim=1, keepdim=True)
        prediction = (proj - centre).square().mean()
        regularizer = sigreg(proj.transpose(0, 1), self.directions)  # per view over the batch
        total = (1 - self.weight) * prediction + self.weight * regularizer
        terms = {"total": total.detach(), "prediction": prediction.detach(), "sigreg": regularizer.detach()}
        return LossOutput(total, terms, emb.view(b, v, -1)[:, 0].detach(), b * v)
