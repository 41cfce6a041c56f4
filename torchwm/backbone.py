"""Pretrained spatial encoders as backbones: from an I-JEPA run, a world-model run, or a saved file.

``load_encoder(path)`` returns the :class:`~torchwm.nn.encoders.SpatialEncoder` itself (what the world
model's ``model.pretrained`` uses); ``load_backbone(path)`` wraps it for use by other agents.

Normalisation: backbones take RGB images as uint8 in [0, 255] or float in [0, 1], shape
``(N, 3, H, W)``, and normalise them internally with mean 0.5 and std 0.5 per channel; do not apply
ImageNet statistics yourself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchwm.nn.encoders import SpatialEncoder
from torchwm.training import CHECKPOINT_DIR, LAST_CHECKPOINT, MODEL_FILE


def find_model_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it is a file; for a run directory its ``model.pt``, else ``checkpoints/last.pt``."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        candidates = (path / MODEL_FILE, path / CHECKPOINT_DIR / LAST_CHECKPOINT)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{path}: no trained model (looked for {candidates[0]} and {candidates[1]}); "
                                "train one with JEPAAgent(cfg).train(), `torchwm train` or `torchwm pretrain`")
    raise FileNotFoundError(f"no such file or run directory: {str(path)!r} (a run directory holds {MODEL_FILE} "
                            f"or {CHECKPOINT_DIR}/{LAST_CHECKPOINT})")


def load_encoder(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SpatialEncoder:
    """The spatial encoder saved in ``path``: a run directory, its ``model.pt`` or a checkpoint ``.pt``.

    For an I-JEPA run this is the EMA target encoder; for a world-model run, the world model's encoder.
    Returned in eval mode on ``device``.
    """
    file = find_model_file(path)
    try:
        state: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a torch.load failure names neither the file nor what it should hold
        raise ValueError(f"{file}: not a torchwm model or checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or ("encoder_spec" not in state and "config" not in state):
        raise ValueError(f"{file}: not a torchwm model or checkpoint (no encoder_spec or config inside)")
    if "encoder" in state:  # a finished run's model.pt
        encoder = SpatialEncoder.from_spec(state["encoder_spec"])
        encoder.load_state_dict(state["encoder"])
    else:  # a checkpoint of an interrupted run: rebuild its model from the config
        encoder = _encoder_from_checkpoint(state)
    return encoder.to(device).eval()


def _encoder_from_checkpoint(state: dict[str, Any]) -> SpatialEncoder:
    from torchwm.agents.jepa import model_from_state
    from torchwm.config import JEPAConfig

    return model_from_state(JEPAConfig.from_dict(state["config"]), state).backbone


class Backbone(nn.Module):
    """A frozen (or trainable) pretrained encoder for other agents.

    ``forward(images)``: ``(N, 3, H, W)`` uint8 or float in [0, 1], any ``H, W`` (resized bilinearly to
    the encoder's ``image_size`` when different) → features ``(N, num_features)``.
    ``forward_features(images)`` → tokens ``(N, L, C)`` (timm-style). ``image_size`` and ``num_features``
    describe the encoder.
    """

    def __init__(self, encoder: SpatialEncoder, trainable: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.image_size = int(encoder.spec.get("image_size") or 0)
        self.num_features = encoder.num_features
        self.trainable = trainable
        encoder.requires_grad_(trainable)
        if not trainable:
            encoder.eval()

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if not self.trainable:  # a frozen backbone stays in eval mode inside a training agent
            self.encoder.eval()
        return self

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        size = self.image_size
        if size and tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._prepare(images))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(self._prepare(images))


def load_backbone(path_or_run_dir: str | os.PathLike[str], trainable: bool = False,
                  device: str | torch.device = "cpu") -> Backbone:
    """A :class:`Backbone` from an I-JEPA run, a world-model run, or a ``.pt`` file written by either."""
    return Backbone(load_encoder(path_or_run_dir, device), trainable=trainable)
