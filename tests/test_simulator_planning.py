"""The planner's ceiling: the simulator as the planner's model predicts what env.step does, and plans reach goals."""

import numpy as np
import pytest
import torch

from torchwm.envs import make
from torchwm.eval.goal_reaching import RandomPolicy, episode_seeds, run_episodes
from torchwm.eval.simulator_planning import SimulatorModel, simulator_goal_reaching
from torchwm.planning import CEM


@pytest.mark.parametrize("env_id,dim", [("dmc:reacher-easy", 4), ("dmc:cartpole-swingup", 3),
                                        ("dmc:ball_in_cup-catch", 4)])
@pytest.mark.parametrize("threads", [1, 2])
def test_rollout_equals_replaying_the_actions_through_env_step(env_id, dim, threads):
    env = make(env_id, image_size=16)
    env.reset(seed=5)
    model = SimulatorModel(env, threads=threads)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(3, 6, len(low)))  # three candidates, six steps each
    start = torch.from_numpy(model.state(env))[None].repeat(3, 1)
    predicted = model.rollout(start, torch.from_numpy(actions))
    assert predicted.shape == (3, 6, dim) == (3, 6, model.embed_dim)
    for k in (0, 2):  # the env follows two of the candidates, from the same start each
        env.reset(seed=5)
        for t, action in enumerate(actions[k]):
            env.step(action)
            np.testing.assert_allclose(predicted[k, t].numpy(), model.embed(env.unwrapped.physics.data.qpos),
                                       atol=1e-9)
    assert (predicted[0] - predicted[2]).abs().max() > 1e-3, "different actions must lead to different states"


def test_embedding_wraps_hinge_angles_and_keeps_slides_in_metres():
    env = make("dmc:cartpole-swingup", image_size=16)
    env.reset(seed=0)
    model = SimulatorModel(env)
    qpos = np.array([0.3, 0.5])  # slider 0.3 m, pole 0.5 rad
    np.testing.assert_allclose(model.embed(qpos), [0.3, np.sin(0.5), np.cos(0.5)])
    np.testing.assert_allclose(model.embed(qpos + [0, 2 * np.pi]), model.embed(qpos), atol=1e-12)


def test_planning_with_the_simulator_reaches_point_mass_goals_random_actions_do_not():
    def make_env():
        return make("dmc:point_mass-easy", image_size=16)

    seeds, steps = episode_seeds(7, 2), 40
    planner = CEM(samples=64, elites=8, iterations=3, horizon=5, cost_steps="min")
    planned = simulator_goal_reaching(make_env, planner, seeds, steps, parallel=2, progress=False, seed=0)
    env = make_env()
    low, high = env.action_space.low, env.action_space.high
    randomly, _ = run_episodes(make_env, RandomPolicy(low, high, 0), seeds, steps, parallel=2, progress=False)
    assert planned.success.all(), planned.min_distance
    assert not randomly.success.any() and (planned.min_distance < randomly.min_distance).all()


def test_ceiling_table_pairs_the_learned_runs_successes_on_the_same_episodes(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import planner_ceiling
    finally:
        sys.path.pop(0)
    seeds = episode_seeds(1000, 4)
    stats = {"success_rate": 0.75, "success_ci95_low": 0.3, "success_ci95_high": 0.95, "final_distance_mean": 0.1,
             "ms_per_episode_step": 50.0}
    row = {"domain": "cartpole", "seeds": seeds[:3], "simulator": stats, "random": {**stats, "success_rate": 0.0},
           "seconds": 90}
    (tmp_path / "vicreg-cartpole.json").write_text(json.dumps({"planner": stats, "episodes": 4, "seed": 1000}))
    saved = tmp_path / "vicreg-cartpole" / "eval" / "seed-1000"
    saved.mkdir(parents=True)
    detail = {"planner": {"success": [True, False, True, True]}}
    (saved / "goal_reaching.json").write_text(json.dumps({"seeds": seeds, "episodes_detail": detail}))
    text = planner_ceiling.table([row], tmp_path)
    assert text.splitlines()[-1] == ("| cartpole | **75% (30%-95%)** | 75% (30%-95%), 4 eps, seed 1000 | 2/3 | 0% | "
                                     "0.100 / 0.100 | 50 | 1.5 min |")
    other = {**row, "seeds": episode_seeds(2000, 3)}  # episodes the saved evaluation did not cover
    assert ", 4 eps, seed 1000 | - | 0% |" in planner_ceiling.table([other], tmp_path)


def test_simulator_policy_carries_out_execute_steps_actions_of_each_plan():
    from torchwm.eval.simulator_planning import SimulatorPolicy

    class CountingCEM(CEM):
        calls = 0

        def plan(self, *args, **kwargs):
            CountingCEM.calls += 1
            return super().plan(*args, **kwargs)

    planner = CountingCEM(samples=16, elites=4, iterations=2, horizon=4, cost_steps="min")
    envs = [make("dmc:point_mass-easy", image_size=16)]
    envs[0].reset(seed=3)
    policy = SimulatorPolicy(envs, planner, execute_steps=3)
    policy.reset(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 3)))
    taken = [policy.act(np.zeros((1, 16, 16, 3))) for _ in range(7)]
    assert CountingCEM.calls == 3  # steps 0, 3 and 6 plan
    first_plan = policy.schedule.plan  # the plan made at step 6; its first action is the last one taken
    np.testing.assert_array_equal(taken[6], first_plan[:, 0].numpy())
    assert not np.allclose(taken[0], taken[1]), "steps between plans carry out the plan's later actions"
    with pytest.raises(ValueError, match="execute_steps"):
        SimulatorPolicy(envs, planner, execute_steps=5)
