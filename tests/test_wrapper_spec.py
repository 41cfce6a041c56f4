"""JEPAFeatures records its constructor arguments, so a wrapped env built by ``gymnasium.make`` can be rebuilt
from its spec and passes ``check_env`` (which calls ``env.spec.make()``)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import SyncVectorEnv

from torchwm.backbone import Backbone
from torchwm.envs.wrappers import JEPAFeatures, JEPAVectorFeatures
from torchwm.nn.encoders import SpatialEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

ENV_ID = "torchwm-tests/NoisePixels-v0"


class NoisePixels(gym.Env):
    """Seeded random ``(3, 16, 16)`` uint8 frames; truncates after 4 steps."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 255, (3, 16, 16), np.uint8)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, (3, 16, 16), dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        return self.np_random.integers(0, 256, (3, 16, 16), dtype=np.uint8), 0.0, False, self.t >= 4, {}


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    torch.manual_seed(0)
    return Backbone(SpatialEncoder.conv(image_size=16, embed_dim=8, width=4))


@pytest.fixture(scope="module", autouse=True)
def registered():
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=NoisePixels)
    yield
    gym.registry.pop(ENV_ID, None)


def test_check_env_on_made_env(backbone):
    env = JEPAFeatures(gym.make(ENV_ID), backbone, frame_history=2)
    wrapper_spec = env.spec.additional_wrappers[-1]
    assert wrapper_spec.name == "JEPAFeatures" and env._saved_kwargs["backbone"] is backbone
    assert set(wrapper_spec.kwargs) == {"backbone", "frame_history", "device"}
    assert wrapper_spec.kwargs["frame_history"] == 2 and wrapper_spec.kwargs["device"] is None
    check_env(env, skip_render_check=True)  # rebuilds the wrapped env through env.spec.make()


def test_spec_make_rebuilds_same_features(backbone):
    env = JEPAFeatures(gym.make(ENV_ID), backbone, frame_history=3)
    rebuilt = env.spec.make()
    assert isinstance(rebuilt, JEPAFeatures) and rebuilt.frame_history == 3
    assert rebuilt.observation_space == env.observation_space
    obs, _ = env.reset(seed=5)
    np.testing.assert_allclose(rebuilt.reset(seed=5)[0], obs, rtol=1e-5, atol=1e-6)


def test_vector_wrapper_records_args(backbone):
    venv = JEPAFeatures(SyncVectorEnv([NoisePixels, NoisePixels]), backbone, frame_history=2, device="cpu")
    assert isinstance(venv, JEPAVectorFeatures)
    assert venv._saved_kwargs["frame_history"] == 2 and venv._saved_kwargs["device"] == "cpu"
    assert venv._saved_kwargs["backbone"] is backbone
    venv.close()
