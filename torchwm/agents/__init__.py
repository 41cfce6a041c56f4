"""Agents: one per job, all behind the one entry :class:`JEPAAgent`.

``JEPAAgent(cfg)`` returns the agent of the job the config asks for (:attr:`JEPAConfig.job
<torchwm.config.JEPAConfig.job>`):

* :class:`WorldModelAgent` (``dataset: trajectories``): collect → train → plan / evaluate;
* :class:`ImagePretrainingAgent` (``pretrain.method`` ``ijepa`` or ``sigreg``): pretraining of the spatial
  encoder on images or frames;
* :class:`VideoPretrainingAgent` (``pretrain.method: vjepa``): pretraining of a video ViT on clips.

A new job is a new module here with ``class MyAgent(JEPAAgent, job="my_job")``, imported below, and the job's
name in :data:`torchwm.config.JOBS` with the rule that picks it in :attr:`JEPAConfig.job`.
"""

from torchwm.agents.base import JEPAAgent
from torchwm.agents.image_pretraining import ImagePretrainingAgent
from torchwm.agents.video_pretraining import VideoPretrainingAgent
from torchwm.agents.world_model import WorldModelAgent

__all__ = ["ImagePretrainingAgent", "JEPAAgent", "VideoPretrainingAgent", "WorldModelAgent"]
