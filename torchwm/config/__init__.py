"""Experiment configuration: :class:`JEPAConfig` and its sections, YAML load/save, ``section.field=value``
overrides, validation, and the presets shipped with torchwm (:func:`preset_names`).

Torch-free, like everything it imports: collection workers and the command line read configs cheaply.
"""

from torchwm.config.jepa_config import DATASETS, JOBS, METHOD_DATASETS, JEPAConfig, load_config
from torchwm.config.presets import preset_names
from torchwm.config.sections import (DataConfig, EnvConfig, LoggingConfig, ModelConfig, PlanningConfig,
                                     PretrainConfig, TrainConfig)

__all__ = ["DATASETS", "JOBS", "METHOD_DATASETS", "DataConfig", "EnvConfig", "JEPAConfig", "LoggingConfig", "ModelConfig", "PlanningConfig",
           "PretrainConfig", "TrainConfig", "load_config", "preset_names"]
