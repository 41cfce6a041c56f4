"""Mask sampling for masked latent prediction: which patch tokens the context encoder sees and which the
predictor must fill in. Images (:mod:`~torchwm.masks.image`: I-JEPA multi-block, one block, MAE-style random)
and clips (:mod:`~torchwm.masks.video`: V-JEPA tubes, the future); all return a :class:`MaskBatch`."""

from torchwm.masks.base import MaskBatch, MaskSampler, apply_masks
from torchwm.masks.image import BlockMask, MaskCollator, MultiBlockMask, RandomMask, make_mask_sampler
from torchwm.masks.video import FutureMask, TubeMask

__all__ = ["BlockMask", "FutureMask", "MaskBatch", "MaskCollator", "MaskSampler", "MultiBlockMask", "RandomMask",
           "TubeMask", "apply_masks", "make_mask_sampler"]
