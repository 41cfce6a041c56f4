"""Pixel environments, gymnasium registration and the goal-conditioned protocol."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import torchwm
from torchwm.envs import env_ids, gym_id, make, parse_env_id

GOAL_TASKS = ["dmc:point_mass-easy", "dmc:reacher-easy"]


def _rollout(env, seed: int, steps: int):
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    frames, successes, distances = [obs], [info["success"]], [info["distance"]]
    for _ in range(steps):
        obs, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        frames.append(obs)
        successes.append(info["success"])
        distances.append(info["distance"])
    return np.stack(frames), env.unwrapped.goal_image.copy(), env.unwrapped.goal_state.copy(), successes, distances


@pytest.mark.parametrize("env_id", GOAL_TASKS + ["dmc:cartpole-swingup"])
def test_check_env_passes(env_id):
    env = make(env_id, image_size=32)
    check_env(env, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 32, 32) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert info["state"].shape == (env.unwrapped.state_dim,)
    assert obs.std() > 0, "the frame should show a scene, not a blank image"


def test_gymnasium_make_registered_id():
    assert gym_id("dmc:reacher-easy") == "torchwm/dmc-reacher-easy-v0"
    env = gym.make("torchwm/dmc-reacher-easy-v0", image_size=24)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (3, 24, 24)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and not terminated and not truncated
    assert env.render().shape == (24, 24, 3)


def test_unknown_env_id_lists_valid_ids():
    with pytest.raises(ValueError, match="unknown environment id 'dmc:reacher-impossible'") as err:
        make("dmc:reacher-impossible")
    assert "dmc:reacher-easy" in str(err.value) and "dmc:point_mass-easy" in str(err.value)
    with pytest.raises(ValueError, match="valid ids"):
        parse_env_id("reacher-easy")
    assert "dmc:walker-walk" in env_ids() and "dmc:finger-spin" in env_ids()


@pytest.mark.parametrize("env_id", GOAL_TASKS)
def test_same_seed_same_frames_goals_and_success(env_id):
    a = _rollout(make(env_id, image_size=24), seed=7, steps=10)
    b = _rollout(make(env_id, image_size=24), seed=7, steps=10)
    c = _rollout(make(env_id, image_size=24), seed=8, steps=10)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(a[2], c[2]), "a different seed must give a different goal"
    assert not np.array_equal(a[0][0], c[0][0]), "a different seed must give a different start"


def test_make_seed_seeds_first_reset():
    a, _ = make("dmc:reacher-easy", image_size=16, seed=5).reset()
    b, _ = make("dmc:reacher-easy", image_size=16).reset(seed=5)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_id", GOAL_TASKS)
def test_state_at_goal_is_success_and_far_state_is_not(env_id):
    env = make(env_id, image_size=24)
    _, info = env.reset(seed=3)
    base = env.unwrapped
    goal = info["goal_state"]
    np.testing.assert_array_equal(goal, base.goal_state)
    assert info["goal_image"].shape == (3, 24, 24)

    base.set_state(goal)
    assert base.goal_distance() == pytest.approx(0.0, abs=1e-12)
    assert base.is_success()
    # The goal image is what the camera shows at the goal state.
    np.testing.assert_array_equal(base.render_state(goal), info["goal_image"])

    far = goal.copy()
    far[:2] += 0.25 if env_id.startswith("dmc:point_mass") else 1.0  # positions (m) or joint angles (rad)
    base.set_state(far)
    assert base.goal_distance() > 0.2
    assert not base.is_success()


def test_reacher_success_tolerance_is_005_rad_on_every_joint():
    env = make("dmc:reacher-easy", image_size=16)
    env.reset(seed=0)
    base = env.unwrapped
    near = base.goal_state.copy()
    near[0] += 0.04
    near[1] -= 0.04
    base.set_state(near)
    assert base.is_success()
    near[1] = base.goal_state[1] + 0.06  # one joint outside the tolerance is a failure
    base.set_state(near)
    assert not base.is_success()
    wrapped = base.goal_state.copy()
    wrapped[0] += 2 * np.pi  # angles wrap around
    base.set_state(wrapped)
    assert base.is_success()


def test_point_mass_success_radius_is_target_size():
    env = make("dmc:point_mass-easy", image_size=16)
    env.reset(seed=0)
    base = env.unwrapped
    radius = float(base.physics.named.model.geom_size["target", 0])
    for offset, expected in [(0.9 * radius, True), (1.1 * radius, False)]:
        state = base.goal_state.copy()
        state[0] += offset
        base.set_state(state)
        assert base.is_success() is expected


@pytest.mark.parametrize("env_id", GOAL_TASKS)
def test_goals_are_not_trivially_reached(env_id):
    env = make(env_id, image_size=16)
    distances = [env.reset(seed=s)[1]["distance"] for s in range(10)]
    assert np.median(distances) > 0.1


def test_reward_is_passed_through():
    env = make("dmc:point_mass-easy", image_size=16)
    env.reset(seed=0)
    base = env.unwrapped
    at_target = np.zeros(base.state_dim)  # the target sits at the arena's centre
    base.set_state(at_target)
    _, reward_near, *_ = env.step(np.zeros(2, np.float32))
    far = at_target.copy()
    far[:2] = 0.25
    base.set_state(far)
    _, reward_far, *_ = env.step(np.zeros(2, np.float32))
    assert reward_near == pytest.approx(1.0) and reward_far < 0.5


def test_action_repeat_advances_physics_time():
    times = []
    for repeat in (1, 3):
        env = make("dmc:reacher-easy", image_size=16, action_repeat=repeat)
        env.reset(seed=0)
        t0 = env.unwrapped.physics.data.time
        env.step(np.zeros(2, np.float32))
        times.append(env.unwrapped.physics.data.time - t0)
    assert times[1] == pytest.approx(3 * times[0])


def test_bad_actions_and_order_errors():
    env = make("dmc:reacher-easy", image_size=16)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(2, np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0], np.float32))
    with pytest.raises(ValueError, match="image_size"):
        make("dmc:reacher-easy", image_size=0)


def test_non_goal_domain_has_no_goal_fields():
    env = make("dmc:cartpole-swingup", image_size=16)
    _, info = env.reset(seed=0)
    assert not env.unwrapped.has_goals and "success" not in info and "goal_image" not in info


def test_top_level_make_env_is_registry_make():
    assert torchwm.make_env is make
