"""What I-JEPA and V-JEPA share: a context encoder, its EMA copy as the target encoder (the pretrained
backbone), a masked predictor, the cosine momentum schedule and the optional VICReg terms on the pooled
context embeddings."""

from __future__ import annotations

import torch
from torch import nn

from torchwm.ema import EMA, momentum_schedule
from torchwm.losses import covariance_loss, variance_loss
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.masked_predictor import MaskedPredictor


class MaskedLatentPrediction(nn.Module):
    """Context encoder + EMA target encoder + masked predictor (subclasses define ``loss``)."""

    encoder_kind = ""
    """the :class:`~torchwm.nn.encoders.SpatialEncoder` kind the method needs"""
    encoder_name = ""
    """how to make one, for error messages"""

    def __init__(self, encoder: SpatialEncoder, predictor: MaskedPredictor, ema_start: float, ema_end: float,
                 var_weight: float = 0.0, cov_weight: float = 0.0) -> None:
        super().__init__()
        if encoder.kind != self.encoder_kind:
            raise ValueError(f"{type(self).__name__} needs {self.encoder_name}, got a {encoder.kind!r} encoder")
        self.encoder, self.predictor = encoder, predictor
        self.target_encoder = EMA(encoder)
        self.ema_start, self.ema_end = float(ema_start), float(ema_end)
        self.var_weight, self.cov_weight = float(var_weight), float(cov_weight)

    @property
    def backbone(self) -> SpatialEncoder:
        """The pretrained encoder to use downstream (the EMA target encoder)."""
        return self.target_encoder.module  # type: ignore[return-value]

    def regularize(self, context: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """VICReg on the pooled context tokens ``(B, Nc, D)`` (0 when both weights are 0); adds its terms.

        Keeps the context embeddings input-dependent: without it, small CPU runs collapse to position-only
        tokens, which make every target predictable.
        """
        if self.var_weight == 0 and self.cov_weight == 0:
            return context.new_zeros(())
        z = context.mean(dim=1)
        var, cov = variance_loss(z), covariance_loss(z)
        terms.update(variance=var.detach(), covariance=cov.detach())
        return self.var_weight * var + self.cov_weight * cov

    def after_step(self, step: int, total_steps: int) -> None:
        """EMA update of the target encoder with the cosine momentum schedule."""
        self.target_encoder.update(self.encoder, momentum_schedule(step, total_steps, self.ema_start, self.ema_end))
