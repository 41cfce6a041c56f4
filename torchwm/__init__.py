"""torchwm: JEPA world models in PyTorch.

Public API (torch-heavy parts are imported lazily, so ``import torchwm`` stays cheap)::

    from torchwm import JEPAConfig, JEPAAgent, WorldModel, load_backbone, make_env

Importing torchwm registers the dm_control pixel environments with gymnasium
(``gymnasium.make("torchwm/dmc-reacher-easy-v0")``).
"""

from torchwm import envs as _envs  # noqa: F401  (registers gymnasium ids)
from torchwm._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "JEPAConfig": "torchwm.config",
    "make_env": "torchwm.envs.registry",
    "JEPAAgent": "torchwm.agents",
    "WorldModel": "torchwm.world_model",
    "load_backbone": "torchwm.backbone",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
