"""Pretrained spatial encoders as backbones: from an I-JEPA run, a world-model run, or a saved file.

``load_encoder(path)`` returns the :class:`~torchwm.nn.encoders.SpatialEncoder` itself (what the world
model's ``model.pretrained`` uses); ``load_backbone(path)`` wraps it for use by other agents.

Normalisation: backbones take RGB images as uint8 in [0, 255] or float in [0, 1], shape
``(N, 3, H, W)``, and normalise them internally with mean 0.5 and std 0.5 per channel; do not apply
ImageNet statistics yourself.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from torchwm.nn.encoders import SpatialEncoder
from torchwm.runs import encoder_weights, find_model_file, load_state

__all__ = ["Backbone", "find_model_file", "load_backbone", "load_encoder", "pretrained_encoder"]


def load_encoder(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SpatialEncoder:
    """The spatial encoder saved in ``path``: a run directory, its ``model.pt`` or a checkpoint ``.pt``.

    For an image-pretraining run this is the EMA target encoder; for a world-model run, the world model's
    encoder. Rebuilt from the saved encoder spec alone (nothing else of the run is built). Returned in eval
    mode on ``device``.
    """
    file, state = load_state(path)
    spec, weights = encoder_weights(state, file)
    encoder = SpatialEncoder.from_spec(spec)
    encoder.load_state_dict(weights)
    return encoder.to(device).eval()


def pretrained_encoder(path: str | os.PathLike[str], image_size: int) -> SpatialEncoder:
    """The encoder saved at ``path`` (see :func:`load_encoder`) for frames of ``image_size``, in training mode.

    ``ValueError`` when it was trained on another image size (what ``model.pretrained`` needs to know).
    """
    encoder = load_encoder(path)
    trained_size = encoder.spec.get("image_size")
    if trained_size and int(trained_size) != int(image_size):
        raise ValueError(f"model.pretrained={str(path)!r} holds an encoder for {trained_size}x{trained_size} images, "
                         f"but image_size={image_size}; set image_size={trained_size} (frames are rendered at "
                         "image_size) or pretrain at this size")
    return encoder.train()


class Backbone(nn.Module):
    """A frozen (or trainable) pretrained encoder for other agents.

    ``forward(images)``: ``(N, 3, H, W)`` uint8 or float in [0, 1], any ``H, W`` (resized bilinearly to
    the encoder's ``image_size`` when different) → features ``(N, num_features)``.
    ``forward_features(images)`` → tokens ``(N, L, C)`` (timm-style). ``image_size`` and ``num_features``
    describe the encoder.

    ``pretrained_cfg`` (alias ``default_cfg``) describes the input the timm way, so
    ``timm.data.resolve_data_config(model=backbone)`` reports it: ``input_size`` ``(3, image_size,
    image_size)``, ``mean`` 0 / ``std`` 1, ``bilinear`` interpolation (what ``forward`` resizes with) and
    ``crop_pct`` 1.0 (whole frames, no centre crop). The backbone normalises internally (mean 0.5, std 0.5), so
    it takes images in [0, 1] (or uint8): the identity mean/std makes ``timm.data.create_transform(
    **resolve_data_config(model=backbone))`` hand it exactly that, not images normalised twice.
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
        self.pretrained_cfg = _data_cfg(encoder, self.image_size)

    @property
    def default_cfg(self) -> dict:
        """timm's older name for :attr:`pretrained_cfg`."""
        return self.pretrained_cfg

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


def _data_cfg(encoder: SpatialEncoder, image_size: int) -> dict:
    """timm-style data config of ``encoder``'s input (see :class:`Backbone`)."""
    cfg = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear", crop_pct=1.0,
               crop_mode="center", num_classes=0)
    if image_size:
        cfg["input_size"] = (3, image_size, image_size)
    else:  # a timm architecture built at its own default size
        inner = getattr(encoder.backbone, "pretrained_cfg", None) or {}
        if inner.get("input_size"):
            cfg["input_size"] = tuple(inner["input_size"])
    return cfg


def load_backbone(path_or_run_dir: str | os.PathLike[str], trainable: bool = False,
                  device: str | torch.device = "cpu") -> Backbone:
    """A :class:`Backbone` from an I-JEPA run, a world-model run, or a ``.pt`` file written by either."""
    return Backbone(load_encoder(path_or_run_dir, device), trainable=trainable)
