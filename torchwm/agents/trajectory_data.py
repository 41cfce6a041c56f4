"""What agents that read the episodes collected from ``env.id`` share (a world model, and pretraining on
dataset "episodes"): the collection spec, the store (collected or reused), the training / held-out split
and the physics-state probe on held-out frames."""

from __future__ import annotations

from pathlib import Path

from torchwm.config import JEPAConfig
from torchwm.data.collect import DEFAULT_STORE_ROOT, CollectSpec


class TrajectoryData:
    """Mixin for :class:`~torchwm.agents.base.JEPAAgent` subclasses whose data is the env's trajectory store."""

    cfg: JEPAConfig
    device: object

    @property
    def reads_episodes(self) -> bool:
        """Whether this run's data is the env's collected episodes (a world model's always; pretraining's with
        dataset "episodes")."""
        return self.cfg.dataset in ("trajectories", "episodes")

    def collect_spec(self) -> CollectSpec:
        """How the config's episodes are collected."""
        c = self.cfg
        return CollectSpec(c.env.id, c.data.steps, policy=c.data.policy, seed=c.seed, image_size=c.image_size,
                           action_repeat=c.env.action_repeat, camera=c.env.camera, noise_beta=c.data.noise_beta)

    def store_path(self) -> Path:
        """``data.path``, or a folder under ``runs/data`` named after the collection spec (shared by every run that
        collects alike: a world model and a pretraining run of the same env and data settings read one store)."""
        return Path(self.cfg.data.path or Path(DEFAULT_STORE_ROOT) / self.collect_spec().store_name())

    def collect(self):
        """Collect (or reuse) the reward-free trajectory store of the config; returns it (checked once per agent)."""
        from torchwm.data.collect import ensure_collected

        store = getattr(self, "_store", None)
        if store is None or not store.path.is_dir():
            from torchwm import distributed

            d = self.cfg.data
            with distributed.main_first():  # under torchrun rank 0 collects, the others then open the store
                store = self._store = ensure_collected(self.collect_spec(), self.store_path(), d.episodes,
                                                       workers=d.workers, progress=self.cfg.logging.progress)
        return store

    def split(self, store) -> tuple[list[int], list[int]]:
        """``(training episodes, held-out episodes)``: ``data.heldout_fraction`` of them held out, by the seed."""
        from torchwm.data import split_episodes

        return split_episodes(store, self.cfg.data.heldout_fraction, seed=self.cfg.seed)

    def state_probe(self, store, train_episodes, heldout_episodes):
        """The linear probe of the physics state from one frame's embedding (:class:`~torchwm.eval.state_probe.StateProbe`)."""
        import numpy as np

        from torchwm.eval.state_probe import StateProbe

        return StateProbe(self.cfg.env.id, store, train_episodes, heldout_episodes, self.device,
                          np.random.default_rng(self.cfg.seed))
