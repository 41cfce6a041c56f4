"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: tiny models only pay overhead for more (and stall badly when
    the CPUs are busy). Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def frozen_world_model_config():
    """A factory for a tiny world-model config on the frozen encoder of the pretraining run ``pretrained``:
    ``make(pretrained, env_id, store_path, run_dir, image_size, episodes, steps, seed=0)`` → a validated JEPAConfig
    (5 training steps, a 1-episode, 2-step planning check)."""
    from torchwm import JEPAConfig

    def make(pretrained, env_id: str, store_path, run_dir, image_size: int, episodes: int, steps: int, seed: int = 0):
        items = {
            "image_size": image_size, "env.id": env_id, "model.pretrained": str(pretrained),
            "model.freeze_encoder": True, "model.history": 2, "model.temporal_hidden": 16,
            "model.predictor_hidden": 32, "predict_horizon": 2, "batch_size": 4, "learning_rate": 1e-3,
            "device": "cpu", "seed": seed, "data.path": str(store_path), "data.episodes": episodes,
            "data.steps": steps, "data.policy": "noise", "data.workers": 1, "train.steps": 5,
            "train.warmup_steps": 1, "train.eval_every": 5, "planning.samples": 8, "planning.elites": 2,
            "planning.iterations": 1, "planning.horizon": 2, "planning.episode_steps": 2,
            "planning.eval_episodes": 1, "planning.parallel": 1, "planning.videos": 0,
            "logging.run_dir": str(run_dir), "logging.progress": False, "logging.tensorboard": False}
        return JEPAConfig().override([f"{k}={v}" for k, v in items.items()]).validate()

    return make
