"""Image pretraining of the spatial encoder (I-JEPA)."""

from torchwm.pretrain.ijepa import IJEPA, build_ijepa, mask_sampler_for

__all__ = ["IJEPA", "build_ijepa", "mask_sampler_for"]
