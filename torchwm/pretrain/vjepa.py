"""V-JEPA (Bardes et al. 2024): predict the representations of masked tubes of a clip, and of its future.

* context encoder: a video ViT (:meth:`SpatialEncoder.video_vit <torchwm.nn.encoders.SpatialEncoder.video_vit>`,
  tubelet patches), run on the context tokens of each mask only;
* target encoder: an EMA copy of it run on the whole clip; its tokens, layer-normed, are the targets;
* predictor: a narrow ViT over the 3-D token grid (:class:`~torchwm.nn.masked_predictor.MaskedPredictor`);
* loss: L1 between predicted and target tokens, averaged over the masks of a batch (short-range tubes,
  long-range tubes and the future, see :mod:`torchwm.masks.video`).

``VJEPA.loss(clips, masks)`` is what :class:`~torchwm.training.Trainer` optimises; the target encoder is the
pretrained backbone (a frame is embedded as a still clip).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torchwm.losses import LossOutput
from torchwm.masks import MaskBatch, apply_masks
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.masked_predictor import MaskedPredictor
from torchwm.pretrain.masked import MaskedLatentPrediction


class VJEPA(MaskedLatentPrediction):
    """Context encoder + EMA target encoder + masked predictor over clips.

    ``loss(clips (B, T, 3, H, W) uint8 or in [0, 1], masks {name: MaskBatch})`` → :class:`LossOutput` with one
    prediction term per mask (``prediction_<name>``), their mean (``prediction``), and the target encoder's
    pooled clip embeddings ``(B, D)`` as ``embeddings``.
    """

    encoder_kind = "video_vit"
    encoder_name = "a video ViT (SpatialEncoder.video_vit)"

    def __init__(self, encoder: SpatialEncoder, predictor: MaskedPredictor, ema_start: float = 0.998,
                 ema_end: float = 1.0, var_weight: float = 0.0, cov_weight: float = 0.0) -> None:
        super().__init__(encoder, predictor, ema_start, ema_end, var_weight, cov_weight)

    def loss(self, clips: torch.Tensor, masks: dict[str, MaskBatch]) -> LossOutput:
        if not masks:
            raise ValueError("V-JEPA needs at least one mask per batch")
        with torch.no_grad():
            tokens = self.target_encoder.module.forward_clip_tokens(clips)  # (B, L, D) of the whole clip
            pooled = self.target_encoder.module.pool(tokens)
            targets = F.layer_norm(tokens, tokens.shape[-1:])
        terms: dict[str, torch.Tensor] = {}
        losses, contexts = [], []
        for name, mask in masks.items():
            mask = mask.to(clips.device)
            context = self.encoder.forward_clip_tokens(clips, mask.context)  # (B, Nc, D)
            preds = self.predictor(context, mask.context, mask.targets)  # (B, 1, Nt, D)
            losses.append(F.l1_loss(preds, apply_masks(targets, mask.targets)))
            terms[f"prediction_{name}"] = losses[-1].detach()
            contexts.append(context)
        prediction = torch.stack(losses).mean()
        terms["prediction"] = prediction.detach()
        total = prediction + self.regularize(contexts[0], terms)
        with torch.no_grad():
            terms["target_token_std"] = targets.flatten(0, 1).std(0).mean()
            terms["target_clip_std"] = targets.std(0).mean()  # clip dependence: 0 = position-only tokens
        terms["total"] = total.detach()
        return LossOutput(total, terms, pooled.detach(), clips.shape[0] * clips.shape[1])


def build_vjepa(encoder: SpatialEncoder, frames: int, *, predictor_dim: int, predictor_depth: int,
                predictor_heads: int, ema_start: float, ema_end: float, var_weight: float = 0.0,
                cov_weight: float = 0.0) -> VJEPA:
    """V-JEPA around a video-ViT ``encoder`` for clips of ``frames`` frames: a narrow predictor over the clip's
    token grid and an EMA target encoder."""
    predictor = MaskedPredictor(encoder.token_grid(frames), encoder.embed_dim, predictor_dim, predictor_depth,
                                predictor_heads)
    return VJEPA(encoder, predictor, ema_start, ema_end, var_weight=var_weight, cov_weight=cov_weight)
