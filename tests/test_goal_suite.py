"""The goal-reaching suite: every domain's goal protocol, and the one recipe (preset dmc_goal) on each domain."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils import seeding

from torchwm import JEPAAgent
from torchwm.config import load_config
from torchwm.envs import DOMAINS, make
from torchwm.envs.goals import JointGoal

SUITE = {"point_mass": "easy", "reacher": "easy", "cartpole": "swingup", "pendulum": "swingup", "acrobot": "swingup",
         "ball_in_cup": "catch"}
ROLLOUT_DOMAINS = [d for d in SUITE if d != "point_mass"]


def test_every_suite_domain_has_a_goal_protocol_and_its_task():
    from torchwm.envs.domains import goal_domains

    assert sorted(SUITE) == goal_domains()
    for domain, task in SUITE.items():
        assert DOMAINS[domain].task == task


@pytest.mark.parametrize("domain", ROLLOUT_DOMAINS)
def test_goal_is_the_state_reached_by_replaying_the_samplers_actions(domain):
    """The goal image shows the state 25 steps ahead on the random-action trajectory the sampler drew: replaying
    the same actions (drawn again from the same seed) through env.step reaches the same state and frame."""
    seed = 11
    env = make(f"dmc:{domain}-{SUITE[domain]}", image_size=32).unwrapped
    _, info = env.reset(seed=seed)
    start = info["state"]
    rng, _ = seeding.np_random(seed)  # the env's RNG: one draw seeds the task's start, then the goal's actions
    rng.integers(2**31 - 1)
    actions = [rng.uniform(env.action_space.low, env.action_space.high) for _ in range(env.goal_steps)]

    replay = make(f"dmc:{domain}-{SUITE[domain]}", image_size=32).unwrapped
    _, replay_info = replay.reset(seed=seed)
    np.testing.assert_array_equal(replay_info["state"], start)
    for action in actions:
        frame, *_ = replay.step(action)
    np.testing.assert_allclose(replay.physics.get_state(), info["goal_state"], atol=1e-9)
    np.testing.assert_array_equal(frame, info["goal_image"])
    assert replay.is_success() and replay.goal_distance() < 1e-9
    assert info["distance"] > 0, "the start is not the goal"


def test_point_mass_goal_is_the_mass_at_rest_where_the_image_shows_it():
    env = make("dmc:point_mass-easy", image_size=32).unwrapped
    _, info = env.reset(seed=11)
    goal = info["goal_state"]
    assert np.all(goal[2:] == 0), "at rest"
    assert np.all(np.abs(goal[:2]) <= 0.29)
    np.testing.assert_array_equal(env.set_state(goal), info["goal_image"])


@pytest.mark.parametrize("domain", list(SUITE))
def test_success_is_true_at_the_goal_and_false_at_a_far_state(domain):
    env = make(f"dmc:{domain}-{SUITE[domain]}", image_size=16).unwrapped
    env.reset(seed=5)
    goal = env.goal_state.copy()
    env.set_state(goal)
    assert env.is_success()
    spec = DOMAINS[domain]
    for i, coordinate in enumerate(spec.coordinates):  # any one coordinate off by 0.1 (m or rad) fails
        far = goal.copy()
        far[i] += 0.1
        env.set_state(far)
        assert not env.is_success(), coordinate.joint
        near = goal.copy()
        near[i] += 0.04  # inside 0.05 (point_mass: inside the 0.015 m target only below it)
        env.set_state(near)
        assert env.is_success() is (domain != "point_mass"), coordinate.joint
        np.testing.assert_allclose(spec.goal.differences(env.physics, goal), np.eye(len(spec.coordinates))[i] * 0.04,
                                   atol=1e-9)
    where, success = spec.goal.describe(env)
    assert (where, success) == (("at rest, uniform in the arena", "inside the target sphere (0.015 m)")
                                if domain == "point_mass" else
                                ("25 steps ahead on a random trajectory", "every coordinate within 0.05"))


def test_joint_goal_wraps_hinges_and_not_slides():
    env = make("dmc:cartpole-swingup", image_size=16).unwrapped
    env.reset(seed=0)
    goal = JointGoal(("slider", "hinge_1"))
    state = env.goal_state.copy()
    state[1] += 2 * np.pi  # the pole one turn further is the same pose
    env.set_state(state)
    np.testing.assert_allclose(goal.differences(env.physics, env.goal_state), [0.0, 0.0], atol=1e-9)
    state[0] += 2 * np.pi / 10  # a slide does not wrap
    env.set_state(state)
    assert goal.distance(env.physics, env.goal_state) == pytest.approx(2 * np.pi / 10)


def test_latent_dim_counts_slides_once_and_hinges_twice():
    assert {d: DOMAINS[d].latent_dim for d in SUITE} == {"point_mass": 2, "reacher": 4, "cartpole": 3, "pendulum": 2,
                                                          "acrobot": 4, "ball_in_cup": 4}


def _recipe(domain: str, tmp_path: Path, **extra) -> JEPAAgent:
    sets = {"env.id": f"dmc:{domain}-{SUITE[domain]}", "data.path": str(tmp_path / "data"), "data.episodes": 3,
            "data.steps": 20, "data.workers": 1, "batch_size": 4, "train.steps": 4, "train.warmup_steps": 1,
            "train.eval_every": 4, "train.sequence_length": 8, "model.temporal_hidden": 16,
            "model.predictor_hidden": 32, "logging.run_dir": str(tmp_path / domain), "logging.progress": False,
            "logging.tensorboard": False, "device": "cpu", **extra}
    return JEPAAgent(load_config("dmc_goal", [f"{k}={v}" for k, v in sets.items()]))


@pytest.mark.parametrize("domain", list(SUITE))
def test_the_recipe_trains_on_every_domain(domain, tmp_path, one_thread):
    agent = _recipe(domain, tmp_path)
    assert agent.cfg.embed_dim == 0 and agent.cfg.frame_embed_dim == DOMAINS[domain].latent_dim
    metrics = agent.train()
    model = agent.world_model
    assert metrics["steps"] == 4 and np.isfinite(metrics["loss/total"])
    assert model.encoder.embed_dim == DOMAINS[domain].latent_dim
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert model.encode(frames).shape == (2, DOMAINS[domain].latent_dim)
    assert agent.episode_steps() == DOMAINS[domain].episode_steps  # planning.episode_steps 0: the domain's
    w = model.whitening  # fitted after training; the recipe plans in it, planning.whiten false in plain L2
    assert w is not None and w.shape == (DOMAINS[domain].latent_dim,) * 2 and bool(torch.isfinite(w).all())
    assert agent.planner().whitening is w
    agent.cfg.planning.whiten = False
    assert agent.planner().whitening is None
    first = JEPAAgent(agent.cfg).spatial_encoder()  # the same seed's initial weights
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), model.encoder.state_dict().values()))


@pytest.mark.parametrize("domain, fast", [("reacher", True), ("point_mass", False)])
def test_the_recipe_takes_the_batch_hinge_only_for_a_slow_body(domain, fast, tmp_path, capsys):
    """A 16-frame window sees most of an episode's arm motion on reacher (the one within-sequence hinge, which its
    fixed target cannot meet) and little of the point mass's (a hinge over the batch, and a floor within sequences)."""
    agent = _recipe(domain, tmp_path, **{"data.episodes": 5, "data.steps": 100, "train.sequence_length": 16})
    assert agent.cfg.train.within_sequence_std == 0.3 and agent.cfg.train.window_motion_threshold == 0.55
    assert agent.cfg.predict_horizon == 3 and agent.cfg.train.slow_predict_horizon == 5
    decided = agent.decide(agent.collect())
    assert decided == {"within_sequence_std": 0.0 if fast else 0.3, "predict_horizon": 3 if fast else 5}
    share = float(capsys.readouterr().out.split("window sees ")[1].split()[0])
    assert (share >= 0.55) == fast
    low, high = agent.action_bounds()
    assert agent.build_model(low, high, **decided).within_sequence_std == decided["within_sequence_std"]
    if fast:  # the threshold leaves a fast body's training exactly as it was without the batch's hinge
        short = {"data.episodes": 5, "data.steps": 100, "train.sequence_length": 16, "train.steps": 2}
        agent = _recipe(domain, tmp_path, **short)
        before = _recipe(domain, tmp_path, **short, **{"train.window_motion_threshold": 0,
                                                      "train.slow_predict_horizon": 0,
                                                      "train.within_sequence_std": 0,
                                                      "logging.run_dir": str(tmp_path / "before")})
        agent.train(), before.train()
        for (name, a), b in zip(agent.world_model.state_dict().items(), before.world_model.state_dict().values()):
            assert torch.equal(a, b), name
        # the floor the data decided, not the config's, comes back with the saved model and its checkpoint
        loaded = JEPAAgent.load(agent.cfg.logging.run_dir)
        assert loaded.cfg.train.within_sequence_std == 0.3 and loaded.world_model.within_sequence_std == 0.0
        checkpoint = torch.load(Path(agent.cfg.logging.run_dir) / "checkpoints" / "last.pt", weights_only=False)
        assert checkpoint["decided"] == {"within_sequence_std": 0.0, "predict_horizon": 3}


def test_a_slow_body_trains_as_far_ahead_as_slow_predict_horizon(tmp_path, capsys, one_thread):
    """The recipe's threshold that finds point_mass slow also sets how far ahead it trains (5, not 3); the horizon
    it decided comes back with the saved model, and held-out windows span twice that horizon. A fast body (reacher)
    keeps predict_horizon."""
    sets = {"data.episodes": 5, "data.steps": 100, "train.sequence_length": 16, "train.steps": 2,
            "train.eval_every": 2}
    reacher = _recipe("reacher", tmp_path, **sets, **{"data.path": str(tmp_path / "reacher-data")})
    assert reacher.decide(reacher.collect())["predict_horizon"] == 3
    agent = _recipe("point_mass", tmp_path, **sets)
    assert agent.cfg.predict_horizon == 3
    metrics = agent.train()
    assert "the model trains 5 steps ahead" in capsys.readouterr().out
    assert agent.world_model.horizon == 5 and agent.world_model.within_sequence_std == 0.3
    steps = sorted(int(k.rsplit("step", 1)[1]) for k in metrics if k.startswith("eval/pred_over_copy_step"))
    assert steps == list(range(1, 11))
    loaded = JEPAAgent.load(agent.cfg.logging.run_dir)
    assert loaded.cfg.predict_horizon == 3 and loaded.world_model.horizon == 5
    checkpoint = torch.load(Path(agent.cfg.logging.run_dir) / "checkpoints" / "last.pt", weights_only=False)
    assert checkpoint["decided"] == {"within_sequence_std": 0.3, "predict_horizon": 5}
    # on a slow body it is predict_horizon 5 exactly: the same weights from the same data and seed
    five = _recipe("point_mass", tmp_path, **sets, predict_horizon=5,
                   **{"train.slow_predict_horizon": 0, "logging.run_dir": str(tmp_path / "five")})
    five.train()
    for (name, a), b in zip(agent.world_model.state_dict().items(), five.world_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_slow_predict_horizon_needs_the_threshold_and_room_in_a_sequence():
    with pytest.raises(ValueError, match=r"train.slow_predict_horizon=5, train.window_motion_threshold=0: the "
                                         r"threshold decides which body is slow"):
        load_config("dmc_goal", ["train.slow_predict_horizon=5", "train.window_motion_threshold=0"])
    with pytest.raises(ValueError, match=r"train.slow_predict_horizon=8: a training sequence of 10 frames "
                                         r"\(train.sequence_length=10\) holds no window of model.history \+ "
                                         r"slow_predict_horizon = 11"):
        load_config("dmc_goal", ["train.slow_predict_horizon=8", "train.sequence_length=10"])


def test_recipe_budgets_follow_the_domain(tmp_path):
    assert _recipe("point_mass", tmp_path).episode_steps() == 100
    assert _recipe("cartpole", tmp_path).episode_steps() == 50
    assert _recipe("cartpole", tmp_path, **{"planning.episode_steps": 7}).episode_steps() == 7


def test_embed_dim_zero_is_refused_where_no_domain_size_applies():
    with pytest.raises(ValueError, match="embed_dim=0: the domain's size is for world models"):
        load_config("dmc_goal", ["model.encoder=vit"])
    with pytest.raises(ValueError, match="embed_dim=0: env.id='dmc:walker-walk': torchwm knows no coordinates"):
        load_config("dmc_goal", ["env.id=dmc:walker-walk"])
    with pytest.raises(ValueError, match="embed_dim=0"):
        load_config("sigreg_tiny", ["embed_dim=0"])


def test_cli_env_uses_the_recipe_in_a_run_directory_of_its_own(tmp_path):
    """`torchwm train --env ID` picks dmc_goal and runs/goal-<domain>-<task>; a bad id is one error line."""
    from torchwm.cli import _config, _env_overrides

    class Args:
        command, config, overrides, env = "train", None, ["train.steps=3"], "dmc:pendulum-swingup"

    cfg = _config(Args())
    assert (cfg.env.id, cfg.logging.run_dir, cfg.train.steps, cfg.embed_dim) == (
        "dmc:pendulum-swingup", "runs/goal-pendulum-swingup", 3, 0)
    sets = _env_overrides("dmc:acrobot-swingup", "acrobot", "swingup", "runs/x", ["logging.run_dir=mine"])
    assert sets == ["env.id=dmc:acrobot-swingup"]
    done = subprocess.run([sys.executable, "-m", "torchwm", "train", "--env", "dmc:nope-x"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
        "error: --env: unknown environment id 'dmc:nope-x'; valid ids: dmc:acrobot-swingup")


def test_suite_benchmark_table_and_markdown_section(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import suite
    finally:
        sys.path.pop(0)
    stats = {"success_rate": 0.9, "success_ci95_low": 0.82, "success_ci95_high": 0.95, "final_distance_mean": 0.04,
             "ms_per_episode_step": 12.0}
    row = {"domain": "cartpole", "task": "swingup", "variant": "vicreg", "embed_dim": 3, "planner": stats,
           "random": {**stats, "success_rate": 0.06, "final_distance_mean": 0.5}, "collect_s": 125, "train_s": 1234,
           "resumed": False, "peak_rss_gib": 1.5}
    text = suite.table([row, {**row, "variant": "sigreg", "probe_r2": 0.4567}])
    assert ("| cartpole-swingup | vicreg | 3 | **90%** | 82%-95% | 6% | 0.040 / 0.500 | 2:05 | 20:34 | 12.0 "
            "| 1.50 GiB | - |") in text
    assert "| cartpole-swingup | sigreg | 3 | **90%** |" in text and text.endswith("| 1.50 GiB | 0.46 |")
    fresh = suite.header([{**row, "seed": suite.EVAL_SEED, "episodes": 100}], "dmc_goal", 20, 0)
    assert "100 episodes per domain from seed 1000 (the suite's evaluation seed, never used" in fresh
    screening = suite.header([{**row, "seed": 2000, "episodes": 20}], "dmc_goal", 20, 2000)
    assert "from seed 2000, the random policy" in screening and "never used" not in screening
    doc = tmp_path / "B.md"
    doc.write_text("# Benchmarks\n\nbefore\n")
    suite.write_section(doc, "first")
    suite.write_section(doc, "second")  # replaces, keeps what surrounds it
    body = doc.read_text()
    assert body.count(suite.BEGIN) == 1 and "second" in body and "first" not in body and "before" in body
    assert suite.parse_variant("sigreg:train.regularizer=sigreg,train.sigreg_weight=0.1") == (
        "sigreg", ["train.regularizer=sigreg", "train.sigreg_weight=0.1"])
    assert suite.env_id_of("ball_in_cup") == "dmc:ball_in_cup-catch"
    with pytest.raises(SystemExit, match="not a suite domain"):
        suite.env_id_of("walker")
