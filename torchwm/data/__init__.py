"""Data: reward-free trajectory collection, the on-disk episode store, training windows; image folders
(:mod:`torchwm.data.images`) and the synthetic shapes dataset (:func:`make_shapes_dataset`).

Importing this package does not import torch (collection workers stay light): ``collect`` and
``store`` are torch-free, and :class:`TrajectoryWindows` / :class:`Window` / :func:`split_episodes`
(the torch side) are imported on first use.
"""

from torchwm._lazy import lazy_exports

# Imported eagerly (cheap, no torch): the function ``collect`` shares its name with the submodule, and
# importing the submodule anywhere would otherwise make ``torchwm.data.collect`` the module.
from torchwm.data.collect import CollectSpec, collect, ensure_collected  # noqa: F401 (public names)

_EXPORTS = {
    "TrajectoryStore": "torchwm.data.store",
    "StoreError": "torchwm.data.store",
    "StoreMeta": "torchwm.data.store",
    "TrajectoryWindows": "torchwm.data.windows",
    "StoreFrames": "torchwm.data.windows",
    "StoreClips": "torchwm.data.windows",
    "VideoFolder": "torchwm.data.videos",
    "Window": "torchwm.data.windows",
    "split_episodes": "torchwm.data.windows",
    "RobustImageFolder": "torchwm.data.images",
    "ImageFiles": "torchwm.data.images",
    "make_shapes_dataset": "torchwm.data.synthetic",
}

__getattr__, _lazy_dir = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*_EXPORTS, "CollectSpec", "collect", "ensure_collected"])


def __dir__() -> list[str]:
    return list(__all__)
