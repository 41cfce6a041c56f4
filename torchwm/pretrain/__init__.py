"""Pretraining of the spatial encoder, one module per method: I-JEPA on images (:mod:`~torchwm.pretrain.ijepa`)."""

from torchwm.pretrain.ijepa import IJEPA, build_ijepa

__all__ = ["IJEPA", "build_ijepa"]
