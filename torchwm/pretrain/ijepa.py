"""I-JEPA (Assran et al. 2023): predict the representations of masked image blocks from a context block.

* context encoder: a ViT :class:`~torchwm.nn.encoders.SpatialEncoder`, run on the context patches only;
* target encoder: an EMA copy of it (momentum 0.996 → 1.0 over training), run on the whole image;
  its patch tokens, layer-normed, are the targets;
* predictor: a narrow ViT (:class:`~torchwm.nn.masked_predictor.MaskedPredictor`) that fills mask
  tokens at each target block's positions.

``IJEPA.loss(images, masks)`` is what :class:`~torchwm.training.Trainer` optimises; the target encoder
is the pretrained backbone (it is what I-JEPA evaluates and what :func:`torchwm.load_backbone` returns).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchwm.ema import EMA, momentum_schedule
from torchwm.losses import LossOutput, covariance_loss, variance_loss
from torchwm.masks import MaskBatch, apply_masks
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.masked_predictor import MaskedPredictor


class IJEPA(nn.Module):
    """Context encoder + EMA target encoder + masked predictor.

    ``loss(images (B, 3, H, W) in [0, 1], masks: MaskBatch)`` → :class:`LossOutput` whose ``embeddings``
    are the target encoder's pooled image embeddings ``(B, D)`` (for the collapse metrics).
    """

    def __init__(self, encoder: SpatialEncoder, predictor: MaskedPredictor, ema_start: float = 0.996,
                 ema_end: float = 1.0, var_weight: float = 0.0, cov_weight: float = 0.0) -> None:
        super().__init__()
        if encoder.kind != "vit":
            raise ValueError(f"I-JEPA needs a ViT encoder, got {encoder.kind!r}")
        self.encoder, self.predictor = encoder, predictor
        self.target_encoder = EMA(encoder)
        self.ema_start, self.ema_end = float(ema_start), float(ema_end)
        self.var_weight, self.cov_weight = float(var_weight), float(cov_weight)

    @property
    def backbone(self) -> SpatialEncoder:
        """The pretrained encoder to use downstream (the EMA target encoder)."""
        return self.target_encoder.module  # type: ignore[return-value]

    def loss(self, images: torch.Tensor, masks: MaskBatch) -> LossOutput:
        masks = masks.to(images.device)
        with torch.no_grad():
            tokens = self.target_encoder.module.forward_tokens(images)  # (B, L, D)
            pooled = self.target_encoder.module.pool(tokens)
            targets = F.layer_norm(tokens, tokens.shape[-1:])
            targets = apply_masks(targets, masks.targets)  # (B, M, Nt, D)
        context = self.encoder.forward_tokens(images, masks.context)  # (B, Nc, D)
        preds = self.predictor(context, masks.context, masks.targets)  # (B, M, Nt, D)
        prediction = F.smooth_l1_loss(preds, targets)
        total = prediction
        terms = {"prediction": prediction.detach()}
        if self.var_weight > 0 or self.cov_weight > 0:
            # VICReg on the images' pooled context embeddings: keeps them image-dependent. Without it, small
            # CPU runs collapse to position-only tokens (which make every target block predictable).
            z = context.mean(dim=1)
            var, cov = variance_loss(z), covariance_loss(z)
            total = total + self.var_weight * var + self.cov_weight * cov
            terms.update(variance=var.detach(), covariance=cov.detach())
        with torch.no_grad():
            terms["target_token_std"] = targets.flatten(0, 2).std(0).mean()
            terms["predicted_token_std"] = preds.detach().flatten(0, 2).std(0).mean()
            # image dependence of the targets: per-position std across the batch (0 = position-only tokens)
            terms["target_image_std"] = targets.std(0).mean()
        terms["total"] = total.detach()
        return LossOutput(total, terms, pooled.detach(), images.shape[0])

    def after_step(self, step: int, total_steps: int) -> None:
        """EMA update of the target encoder with the cosine momentum schedule."""
        self.target_encoder.update(self.encoder, momentum_schedule(step, total_steps, self.ema_start, self.ema_end))


def build_ijepa(encoder: SpatialEncoder, *, predictor_dim: int, predictor_depth: int, predictor_heads: int,
                ema_start: float, ema_end: float, var_weight: float = 0.0, cov_weight: float = 0.0) -> IJEPA:
    """I-JEPA around a ViT ``encoder``: a narrow predictor (``predictor_depth`` blocks of ``predictor_dim``
    with ``predictor_heads`` heads) over its patch grid, and an EMA target encoder."""
    predictor = MaskedPredictor(encoder.grid_size, encoder.embed_dim, predictor_dim, predictor_depth, predictor_heads)
    return IJEPA(encoder, predictor, ema_start, ema_end, var_weight=var_weight, cov_weight=cov_weight)
