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

from torchwm.losses import LossOutput
from torchwm.masks import MaskBatch, apply_masks
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.masked_predictor import MaskedPredictor
from torchwm.pretrain.masked import MaskedLatentPrediction


class IJEPA(MaskedLatentPrediction):
    """Context encoder + EMA target encoder + masked predictor.

    ``loss(images (B, 3, H, W) in [0, 1], masks: MaskBatch)`` → :class:`LossOutput` whose ``embeddings``
    are the target encoder's pooled image embeddings ``(B, D)`` (for the collapse metrics).
    """

    encoder_kind = "vit"
    encoder_name = "a ViT encoder (SpatialEncoder.vit)"

    def __init__(self, encoder: SpatialEncoder, predictor: MaskedPredictor, ema_start: float = 0.996,
                 ema_end: float = 1.0, var_weight: float = 0.0, cov_weight: float = 0.0) -> None:
        super().__init__(encoder, predictor, ema_start, ema_end, var_weight, cov_weight)

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
        terms = {"prediction": prediction.detach()}
        total = prediction + self.regularize(context, terms)
        with torch.no_grad():
            terms["target_token_std"] = targets.flatten(0, 2).std(0).mean()
            terms["predicted_token_std"] = preds.detach().flatten(0, 2).std(0).mean()
            # image dependence of the targets: per-position std across the batch (0 = position-only tokens)
            terms["target_image_std"] = targets.std(0).mean()
        terms["total"] = total.detach()
        return LossOutput(total, terms, pooled.detach(), images.shape[0])


def build_ijepa(encoder: SpatialEncoder, *, predictor_dim: int, predictor_depth: int, predictor_heads: int,
                ema_start: float, ema_end: float, var_weight: float = 0.0, cov_weight: float = 0.0) -> IJEPA:
    """I-JEPA around a ViT ``encoder``: a narrow predictor (``predictor_depth`` blocks of ``predictor_dim``
    with ``predictor_heads`` heads) over its patch grid, and an EMA target encoder."""
    predictor = MaskedPredictor(encoder.grid_size, encoder.embed_dim, predictor_dim, predictor_depth, predictor_heads)
    return IJEPA(encoder, predictor, ema_start, ema_end, var_weight=var_weight, cov_weight=cov_weight)
