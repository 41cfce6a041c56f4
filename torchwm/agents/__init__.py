"""Agents: one per job, all behind the one entry :class:`JEPAAgent`.

``JEPAAgent(cfg)`` returns the agent of the job the config asks for (:attr:`JEPAConfig.job
<torchwm.config.JEPAConfig.job>`):

* :class:`WorldModelAgent` (``dataset: trajectories``): collect → train → plan / evaluate;
* :class:`ImagePretrainingAgent` (``dataset: imagefolder``): I-JEPA pretraining of the spatial encoder.

A new job is a new module here with ``class MyAgent(JEPAAgent, job="my_job")``, imported below, and a
``dataset`` value for it in :data:`torchwm.config.JOBS`.
"""

from torchwm.agents.base import JEPAAgent
from torchwm.agents.image_pretraining import ImagePretrainingAgent
from torchwm.agents.world_model import WorldModelAgent

__all__ = ["ImagePretrainingAgent", "JEPAAgent", "WorldModelAgent"]
