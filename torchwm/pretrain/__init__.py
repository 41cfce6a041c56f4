"""Pretraining of the spatial encoder, one module per method: I-JEPA on images (:mod:`~torchwm.pretrain.ijepa`),
multi-view SIGReg on images (:mod:`~torchwm.pretrain.sigreg`), V-JEPA on clips (:mod:`~torchwm.pretrain.vjepa`)."""

from torchwm.pretrain.ijepa import IJEPA, build_ijepa
from torchwm.pretrain.sigreg import MultiViewSIGReg
from torchwm.pretrain.vjepa import VJEPA, build_vjepa

__all__ = ["IJEPA", "VJEPA", "MultiViewSIGReg", "build_ijepa", "build_vjepa"]
