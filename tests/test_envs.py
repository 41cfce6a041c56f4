"""Pixel environments, gymnasium registration and the goal-conditioned protocol."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import torchwm
from torchwm.envs import env_ids, gym_id, make, parse_env_id

GOAL_TASKS = ["dmc:point_mass-easy", "dmc:reacher-easy", "dmc:cartpole-swingup", "dmc:pendulum-swingup",
              "dmc:acrobot-swingup", "dmc:ball_in_cup-catch"]


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


@pytest.mark.parametrize("env_id", GOAL_TASKS[:2] + ["dmc:walker-walk"])
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
    env = make("dmc:point_mass-easy", image_size=16, action_repeat=1)
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


def test_action_repeat_and_camera_default_to_the_domains():
    from torchwm.envs import DOMAINS

    for env_id, repeat, camera in [("dmc:point_mass-easy", 4, 0), ("dmc:reacher-easy", 4, 0),
                                   ("dmc:walker-walk", 1, 0), ("dmc:quadruped-walk", 1, 2)]:
        env = make(env_id, image_size=16)
        assert (env.unwrapped.action_repeat, env.unwrapped.camera) == (repeat, camera), env_id
        assert make(env_id, image_size=16, action_repeat=2, camera=1).unwrapped.action_repeat == 2
    assert DOMAINS["reacher"].action_repeat == 4 and "walker" not in DOMAINS
    with pytest.raises(ValueError, match="action_repeat=-1: must be >= 1, or 0 for the domain's default"):
        make("dmc:reacher-easy", action_repeat=-1)


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
    env = make("dmc:walker-walk", image_size=16)
    _, info = env.reset(seed=0)
    assert not env.unwrapped.has_goals and "success" not in info and "goal_image" not in info


def test_top_level_make_env_is_registry_make():
    assert torchwm.make_env is make


# ------------------------------------------------------------------------------------- domain specs
@pytest.mark.parametrize("name", ["point_mass", "reacher", "cartpole", "pendulum", "acrobot", "ball_in_cup"])
def test_domain_specs_agree_with_the_simulator(name):
    """A spec's coordinates are the model's joints, in qpos order, of the stated kind and inside their limits;
    its goal reads the same joints; its probes give one row per state."""
    from dm_control import suite
    from mujoco import mjtJoint

    from torchwm.envs import DOMAINS

    spec = DOMAINS[name]
    task = next(t for d, t in suite.ALL_TASKS if d == name)
    physics = suite.load(name, task, task_kwargs={"random": 0}).physics
    model = physics.model
    for index, c in enumerate(spec.coordinates):
        joint = model.name2id(c.joint, "joint")
        assert model.jnt_qposadr[joint] == index, f"{c.joint} is not qpos[{index}]"
        kind = {int(mjtJoint.mjJNT_HINGE): "hinge", int(mjtJoint.mjJNT_SLIDE): "slide"}[int(model.jnt_type[joint])]
        assert kind == c.kind, c.joint
        assert c.low < c.high
        if model.jnt_limited[joint]:
            low, high = model.jnt_range[joint]
            assert low - 1e-9 <= c.low and c.high <= high + 1e-9 and not c.periodic, c.joint
        elif c.kind == "hinge":  # an unlimited hinge wraps around; an unlimited slide keeps the range bodies take
            assert c.periodic and (c.low, c.high) == pytest.approx((-np.pi, np.pi)), c.joint
    assert spec.goal.joints == tuple(c.joint for c in spec.coordinates)
    states = np.random.default_rng(0).normal(size=(5, physics.get_state().shape[0]))
    for kind in spec.probe_kinds:
        assert spec.probe_targets(states, kind).shape[0] == 5
    assert spec.probe_kinds[0] == "positions"


def test_domains_without_an_entry_get_defaults():
    from torchwm.envs import DomainSpec, env_domain

    spec = env_domain("dmc:walker-walk")
    assert spec == DomainSpec("walker") and spec.goal is None and spec.coordinates == ()
    states = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(spec.probe_targets(states), states[:, :3])  # qpos of a qpos/qvel state
    assert env_domain("dmc:quadruped-walk").camera == 2
    with pytest.raises(ValueError, match="unknown environment id 'dmc:nope'"):
        env_domain("dmc:nope")


def test_projector_labels_follow_the_domains_coordinates():
    from torchwm.viz.projector import state_labels

    header, rows = state_labels("dmc:reacher-easy", np.array([[np.pi / 4 + 0.01, -0.1, 0, 0]]))
    assert header == ["shoulder_deg", "wrist_deg"] and rows == [["45..90", "315..360"]]
    header, rows = state_labels("dmc:point_mass-easy", np.array([[0.0, 0.28, 0, 0], [-0.29, 0.1, 0, 0]]))
    assert header == ["root_x", "root_y"]
    assert rows[0] == ["+0.00..+0.07", "+0.22..+0.29"] and rows[1][0] == "-0.29..-0.22"
    header, rows = state_labels("dmc:walker-walk", np.random.default_rng(0).normal(size=(20, 4)))
    assert header == ["state0", "state1"] and len(rows) == 20
