"""JEPAFeatures: pixel observations → frozen backbone features, for single and vector envs."""

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn

import torchwm
from torchwm.backbone import Backbone
from torchwm.envs.wrappers import JEPAFeatures, JEPAVectorFeatures
from torchwm.nn.encoders import SpatialEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

D = 16  # backbone features
ACT = np.zeros(1, np.float32)


class ToyPixelEnv(gym.Env):
    """Random-noise RGB frames from the env's seeded RNG; the episode ends after ``horizon`` steps."""

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 5, channel_last: bool = False, dtype=np.uint8) -> None:
        shape = (32, 32, 3) if channel_last else (3, 32, 32)
        high = 255 if dtype == np.uint8 else 1.0
        self.observation_space = spaces.Box(0, high, shape, dtype)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)
        self.horizon = horizon
        self.last_obs: np.ndarray | None = None

    def _frame(self) -> np.ndarray:
        img = self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)
        if self.observation_space.dtype != np.uint8:
            img = (img / 255).astype(self.observation_space.dtype)
        self.last_obs = img
        return img.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), 0.0, False, self.t >= self.horizon, {}


class SpaceEnv(gym.Env):
    """Only declares spaces (for validation errors)."""

    def __init__(self, observation_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = spaces.Discrete(2)


class Counting(nn.Module):
    """Delegates to ``inner`` and records the batch size of every call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.num_features, self.batches = inner, inner.num_features, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.inner(x)


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    torch.manual_seed(0)
    return Backbone(SpatialEncoder.conv(image_size=32, embed_dim=D, width=4))


def encode(backbone: nn.Module, frame: np.ndarray) -> np.ndarray:
    """The reference: one (3, H, W) frame through the backbone directly."""
    with torch.no_grad():
        return backbone(torch.as_tensor(np.ascontiguousarray(frame[None])))[0].numpy()


def chunks(features: np.ndarray) -> np.ndarray:
    return features.reshape(*features.shape[:-1], -1, D)


def make_vec(horizons, mode: AutoresetMode) -> SyncVectorEnv:
    return SyncVectorEnv([partial(ToyPixelEnv, horizon=h) for h in horizons], autoreset_mode=mode)


# ------------------------------------------------------------------------------------- single env
def test_check_env_toy(backbone):
    env = JEPAFeatures(ToyPixelEnv(), backbone, frame_history=2)
    assert isinstance(env, JEPAFeatures)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (2 * D,), np.float32)
    check_env(env)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)


def test_check_env_dmc_reacher():
    torch.manual_seed(0)
    vit = Backbone(SpatialEncoder.vit(32, 8, 32, 1, 2))
    env = JEPAFeatures(torchwm.make_env("dmc:reacher-easy", image_size=32, seed=0), vit, frame_history=2)
    assert env.observation_space.shape == (2 * vit.num_features,)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert "goal_image" in info  # info passes through untouched
    first = encode(vit, env.render().transpose(2, 0, 1))
    np.testing.assert_array_equal(obs, np.concatenate([first, first]))
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs, np.concatenate([first, encode(vit, env.render().transpose(2, 0, 1))]))


def test_features_equal_backbone_and_are_deterministic(backbone):
    env = JEPAFeatures(ToyPixelEnv(), backbone)
    other = JEPAFeatures(ToyPixelEnv(), backbone)
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, encode(backbone, env.unwrapped.last_obs))
    np.testing.assert_array_equal(obs, other.reset(seed=3)[0])
    np.testing.assert_array_equal(env.observation(env.unwrapped.last_obs), obs)  # same frame, same features
    stepped, *_ = env.step(ACT)
    assert not np.array_equal(stepped, obs)
    np.testing.assert_array_equal(stepped, other.step(ACT)[0])


def test_frame_history_shifts(backbone):
    env = JEPAFeatures(ToyPixelEnv(), backbone, frame_history=3)
    assert env.observation_space.shape == (3 * D,)
    obs, _ = env.reset(seed=0)
    c = chunks(obs)
    assert np.array_equal(c[0], c[1]) and np.array_equal(c[1], c[2])
    np.testing.assert_array_equal(c[2], encode(backbone, env.unwrapped.last_obs))
    for _ in range(2):
        new = chunks(env.step(ACT)[0])
        np.testing.assert_array_equal(new[:2], c[1:])
        np.testing.assert_array_equal(new[2], encode(backbone, env.unwrapped.last_obs))
        assert not np.array_equal(new[2], c[2])
        c = new
    refilled = chunks(env.reset()[0])
    assert all(np.array_equal(refilled[0], refilled[i]) for i in (1, 2)) and not np.array_equal(refilled[0], c[2])


def test_channel_last_and_float_frames(backbone):
    reference = JEPAFeatures(ToyPixelEnv(), backbone).reset(seed=1)[0]
    channel_last = JEPAFeatures(ToyPixelEnv(channel_last=True), backbone)
    obs, _ = channel_last.reset(seed=1)
    frame = channel_last.unwrapped.last_obs
    assert frame.shape == (32, 32, 3)
    np.testing.assert_array_equal(obs, encode(backbone, frame.transpose(2, 0, 1)))
    as_float = JEPAFeatures(ToyPixelEnv(dtype=np.float32), backbone).reset(seed=1)[0]
    np.testing.assert_allclose(as_float, reference, rtol=1e-5, atol=1e-6)


def test_backbone_runs_in_eval_mode_without_grad():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, D), nn.Dropout(0.9))
    net.num_features = D
    env = JEPAFeatures(ToyPixelEnv(dtype=np.float32), net)  # float frames: the Linear takes floats
    net.train()  # e.g. trained elsewhere: the wrapper still encodes in eval mode, then restores the mode
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, env.observation(env.unwrapped.last_obs))  # no dropout
    assert (obs != 0).mean() > 0.5 and net.training
    assert net[1].weight.grad is None


# ------------------------------------------------------------------------------------- vector env
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_matches_single_envs_and_refills_on_reset(backbone, mode):
    horizons, k = (2, 3, 5), 2
    counting = Counting(backbone)
    vec = JEPAFeatures(make_vec(horizons, mode), counting, frame_history=k)
    assert isinstance(vec, JEPAVectorFeatures) and vec.autoreset_mode == mode
    assert vec.single_observation_space == spaces.Box(-np.inf, np.inf, (k * D,), np.float32)
    assert vec.observation_space.shape == (3, k * D)
    singles = [JEPAFeatures(ToyPixelEnv(h), backbone, frame_history=k) for h in horizons]

    obs, _ = vec.reset(seed=10)
    expected = [s.reset(seed=10 + i)[0] for i, s in enumerate(singles)]
    assert vec.observation_space.contains(obs)
    np.testing.assert_allclose(obs, np.stack(expected), rtol=1e-5, atol=1e-6)
    assert counting.batches == [3]

    pending, resets = [False] * 3, {i: [] for i in range(3)}
    for t in range(1, 8):
        obs, _, term, trunc, info = vec.step(np.zeros((3, 1), np.float32))
        for i, single in enumerate(singles):
            if pending[i]:  # NEXT_STEP: the step after the end returns the reset frame
                expected[i], pending[i] = single.reset()[0], False
                resets[i].append(t)
                continue
            expected[i], _, te, tr, _ = single.step(ACT)
            if (te or tr) and mode == AutoresetMode.NEXT_STEP:
                pending[i] = True
            elif te or tr:  # SAME_STEP: the final frame's features in info, the reset frame as obs
                assert info["_final_obs"][i] and info["final_obs"][i].shape == (k * D,)
                np.testing.assert_allclose(info["final_obs"][i], expected[i], rtol=1e-5, atol=1e-6)
                expected[i] = single.reset()[0]
                resets[i].append(t)
        np.testing.assert_allclose(obs, np.stack(expected), rtol=1e-5, atol=1e-6)
        c = chunks(obs)
        for i in range(3):  # refilled exactly for the sub-env that reset, shifted for the others
            assert np.array_equal(c[i, 0], c[i, 1]) == (t in resets[i]), (t, i)
        if mode == AutoresetMode.SAME_STEP:
            assert list(info.get("_final_obs", np.zeros(3, bool))) == [t in resets[i] for i in range(3)]
    if mode == AutoresetMode.NEXT_STEP:
        assert resets == {0: [3, 6], 1: [4], 2: [6]}
        assert counting.batches == [3] * 8  # one call per step, all sub-envs at once
    else:
        assert resets == {0: [2, 4, 6], 1: [3, 6], 2: [5]}
        done_per_step = [0, 1, 1, 1, 1, 2, 0]
        assert counting.batches == [3] + [3 + n for n in done_per_step]  # final frames join the batch


def test_vector_backbone_called_once_per_step(backbone):
    counting = Counting(backbone)
    vec = JEPAFeatures(make_vec((4, 4, 4, 4), AutoresetMode.NEXT_STEP), counting, frame_history=3)
    vec.reset(seed=0)
    for step in range(1, 4):
        vec.step(np.zeros((4, 1), np.float32))
        assert counting.batches == [4] * (step + 1)


def test_vector_disabled_autoreset_refills_masked_envs(backbone):
    counting = Counting(backbone)
    vec = JEPAFeatures(make_vec((2, 4, 4), AutoresetMode.DISABLED), counting, frame_history=2)
    vec.reset(seed=0)
    for _ in range(2):
        before, _, _, trunc, _ = vec.step(np.zeros((3, 1), np.float32))
    assert list(trunc) == [True, False, False]
    obs, _ = vec.reset(options={"reset_mask": np.array([True, False, False])})
    assert counting.batches[-1] == 1  # only the reset frame is encoded
    c = chunks(obs)
    np.testing.assert_array_equal(c[0, 0], c[0, 1])
    np.testing.assert_allclose(c[0, 1], encode(backbone, vec.unwrapped.envs[0].unwrapped.last_obs),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(obs[1:], before[1:])
    after, *_ = vec.step(np.zeros((3, 1), np.float32))
    np.testing.assert_array_equal(chunks(after)[:, 0], c[:, 1])


def test_vector_unsupported_autoreset_mode(backbone):
    vec = make_vec((2, 2), AutoresetMode.NEXT_STEP)
    vec.metadata = {**vec.metadata, "autoreset_mode": "EveryOtherStep"}
    with pytest.raises(ValueError, match="autoreset_mode 'EveryOtherStep' is not supported"):
        JEPAFeatures(vec, backbone)


# ------------------------------------------------------------------------------ validation, loading
@pytest.mark.parametrize("space, message", [
    (spaces.Discrete(3), "Box observation space"),
    (spaces.Box(0, 255, (4, 32, 32), np.uint8), r"shape \(4, 32, 32\): expected an RGB image, \(3, H, W\)"),
    (spaces.Box(0, 255, (32, 32), np.uint8), r"shape \(32, 32\)"),
    (spaces.Box(0, 255, (3, 32, 32), np.int32), "dtype int32: expected uint8"),
])
def test_bad_observation_space(backbone, space, message):
    with pytest.raises(ValueError, match=message):
        JEPAFeatures(SpaceEnv(space), backbone)
    with pytest.raises(ValueError, match=message):
        JEPAFeatures(SyncVectorEnv([partial(SpaceEnv, space)]), backbone)


def test_bad_frame_history_and_backbone(backbone):
    with pytest.raises(ValueError, match="frame_history=0: must be an int >= 1"):
        JEPAFeatures(ToyPixelEnv(), backbone, frame_history=0)
    with pytest.raises(ValueError, match="frame_history=0"):
        JEPAFeatures(make_vec((2,), AutoresetMode.NEXT_STEP), backbone, frame_history=0)
    with pytest.raises(TypeError, match="num_features"):
        JEPAFeatures(ToyPixelEnv(), nn.Linear(3, 3))


def test_backbone_from_run_dir(tmp_path):
    torch.manual_seed(1)
    encoder = SpatialEncoder.conv(image_size=32, embed_dim=8, width=4)
    torch.save({"encoder_spec": encoder.spec, "encoder": encoder.state_dict()}, tmp_path / "model.pt")
    env = JEPAFeatures(ToyPixelEnv(), str(tmp_path), frame_history=2)
    assert isinstance(env.backbone, Backbone) and env.observation_space.shape == (16,)
    obs, _ = env.reset(seed=0)
    expected = encode(Backbone(encoder), env.unwrapped.last_obs)
    np.testing.assert_array_equal(obs, np.concatenate([expected, expected]))
