"""Planners on a toy linear world model whose optimum is known, then once on the real WorldModel."""

import math

import pytest
import torch

from torchwm.planning import CEM, MPPI, MPCController, PlanResult, latent_cost, make_planner, shift_plan
from torchwm.planning.base import RecedingHorizon

FACTORIES = {"cem": lambda **kw: CEM(**kw), "mppi": lambda **kw: MPPI(temperature=0.01, **kw)}


class LinearToy:
    """z is a 2-D position: ``encode`` reads it from pixel (0, 0) of channels 0-1, ``context`` is the latest
    z, and ``rollout`` applies ``z_{k+1} = z_k + B a_k``. Records every rollout's actions and every history."""

    def __init__(self, b=((0.3, 0.1), (-0.1, 0.2)), low=(-1.0, -1.0), high=(1.0, 1.0), history=2):
        self.b = torch.tensor(b)
        self.action_low, self.action_high = torch.tensor(low), torch.tensor(high)
        self.history = history
        self.seen_actions, self.seen_histories = [], []

    def encode(self, frames):
        return frames[..., :2, 0, 0].float()  # (..., 3, 1, 1) -> (..., 2)

    def context(self, z_history):
        self.seen_histories.append(z_history.clone())
        return z_history[:, -1]

    def rollout(self, context, actions):
        self.seen_actions.append(actions.clone())
        return context[:, None] + torch.cumsum(actions @ self.b.to(actions).T, dim=1)

    def step(self, state, action):  # the "environment": the same dynamics on a true state
        return state + action @ self.b.T

    @staticmethod
    def render(state):  # (E, 2) -> frames (E, 3, 1, 1)
        return torch.cat([state, torch.zeros_like(state[:, :1])], dim=1)[:, :, None, None]


def final_z(model, context, actions):
    return context + actions.sum(dim=1) @ model.b.to(actions).T


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------- costs
PRED = torch.tensor([[[1.0, 0.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 1.0]]])  # (N=2, T=2, D=2)


@pytest.mark.parametrize("metric, steps, goal, expected", [
    ("l2", "final", [[0.0, 0.0]], [5.0, math.sqrt(2)]),
    ("l1", "final", [[0.0, 0.0]], [7.0, 2.0]),
    ("cosine", "final", [[1.0, 0.0]], [1 - 3 / 5, 1 - 1 / math.sqrt(2)]),
    ("l2", "all", [[0.0, 0.0]], [(1 + 2 * 5) / 3, (1 + 2 * math.sqrt(2)) / 3]),  # weights 1, 2
    ("l1", "final", [[3.0, 4.0], [1.0, 0.0]], [0.0, 1.0]),  # one goal per row
    ("cosine", "all", [[1.0, 0.0]], [(0 + 2 * 0.4) / 3, (1 + 2 * (1 - 1 / math.sqrt(2))) / 3]),
    ("l2", "min", [[0.0, 0.0]], [1.0, 1.0]),  # the closer step: the first in both rows
    ("l1", "min", [[3.0, 4.0], [0.0, 2.0]], [0.0, 1.0]),  # row 0: its second step; row 1: its first
])
def test_latent_cost_hand_computed(metric, steps, goal, expected):
    cost = latent_cost(PRED, torch.tensor(goal), metric, steps)
    assert cost.shape == (2,)
    torch.testing.assert_close(cost, torch.tensor(expected))


def test_latent_cost_custom_weights_are_normalised():
    cost = latent_cost(PRED, torch.zeros(1, 2), "l1", "all", weights=torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(cost, torch.tensor([(1 + 7) / 2, (1 + 2) / 2]))


# -------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("make, name", [
    (lambda: CEM(samples=0), "samples"), (lambda: CEM(elites=0), "elites"),
    (lambda: CEM(samples=10, elites=11), "elites"), (lambda: CEM(iterations=0), "iterations"),
    (lambda: CEM(horizon=0), "horizon"), (lambda: CEM(horizon=2.5), "horizon"),
    (lambda: CEM(init_std=0.0), "init_std"), (lambda: CEM(min_std=-0.1), "min_std"),
    (lambda: CEM(momentum=1.0), "momentum"), (lambda: CEM(cost="l3"), "cost"),
    (lambda: CEM(cost_steps="some"), "cost_steps"), (lambda: MPPI(temperature=0.0), "temperature"),
    (lambda: MPPI(samples=True), "samples"), (lambda: MPPI(init_std=float("nan")), "init_std"),
    (lambda: latent_cost(PRED, torch.zeros(1, 2), metric="l3"), "metric"),
    (lambda: latent_cost(PRED, torch.zeros(1, 2), steps="some"), "steps"),
    (lambda: latent_cost(PRED, torch.zeros(1, 2), "l2", "all", weights=torch.ones(3)), "weights"),
    (lambda: latent_cost(PRED, torch.zeros(1, 2), "l2", "final", weights=torch.ones(2)), "weights"),
    (lambda: latent_cost(PRED, torch.zeros(1, 2), "l2", "min", weights=torch.ones(2)), "weights"),
    (lambda: make_planner("gd"), "planner"), (lambda: shift_plan(torch.zeros(1, 3, 2), -1), "k"),
    (lambda: MPCController(LinearToy(), CEM(horizon=3), execute_steps=4), "execute_steps"),
    (lambda: MPCController(LinearToy(), CEM(), history=0), "history"),
    (lambda: CEM(horizon=3).plan(LinearToy(), torch.zeros(2, 2), torch.zeros(2, 2), [-1, -1], [1, 1],
                                 init_mean=torch.zeros(2, 4, 2)), "init_mean"),
    (lambda: CEM().plan(LinearToy(), torch.zeros(2, 2), torch.zeros(2, 2), [1, -1], [-1, 1]), "low and high"),
])
def test_invalid_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_error_lists_allowed_values():
    with pytest.raises(ValueError, match="'cosine', 'l1', 'l2', not 'l3'"):
        CEM(cost="l3")
    with pytest.raises(ValueError, match="'cem', 'mppi', not 'gd'"):
        make_planner("gd")


def test_make_planner():
    planner = make_planner("mppi", samples=20, temperature=0.1)
    assert isinstance(planner, MPPI) and planner.samples == 20 and planner.temperature == 0.1
    assert isinstance(make_planner("cem", elites=5), CEM)


# ---------------------------------------------------------------------------------------- planners
@pytest.mark.parametrize("name", FACTORIES)
def test_reaches_a_reachable_goal(name):
    model, planner = LinearToy(), FACTORIES[name](horizon=5)
    context, goal = torch.tensor([[0.2, -0.1]]), torch.tensor([[0.7, -0.4]])
    result = planner.plan(model, context, goal, model.action_low, model.action_high)
    assert isinstance(result, PlanResult) and result.actions.shape == (1, 5, 2) and result.cost.shape == (1,)
    reached = final_z(model, context, result.actions)
    assert (reached - goal).norm() < 0.03  # the analytic minimum is 0
    torch.testing.assert_close(result.cost, (reached - goal).norm(dim=-1))  # cost is that of the plan


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("low, high", [((-1.0, -1.0), (1.0, 1.0)), ((0.0, -2.0), (0.5, 3.0))])
def test_unreachable_goal_saturates_at_bounds_and_never_leaves_them(name, low, high):
    model = LinearToy(b=((0.2, 0.0), (0.0, 0.1)), low=low, high=high)
    planner = FACTORIES[name](horizon=5)
    context, goal = torch.zeros(1, 2), torch.tensor([[5.0, 5.0]])
    result = planner.plan(model, context, goal, low, high)
    lo, hi = torch.tensor(low), torch.tensor(high)
    # reachable set is a box; the closest point to the goal uses a = high at every step
    analytic = (goal - 5 * torch.tensor(high) * torch.tensor([0.2, 0.1])).norm()
    assert result.cost.item() == pytest.approx(analytic.item(), abs=0.02)
    torch.testing.assert_close(result.actions, hi.expand(1, 5, 2), atol=0.1 * (hi - lo).max().item(), rtol=0)
    for actions in [*model.seen_actions, result.actions, result.mean]:
        assert bool(((actions >= lo) & (actions <= hi)).all())


@pytest.mark.parametrize("name", FACTORIES)
def test_batched_episodes_each_reach_their_own_goal_in_one_rollout_per_iteration(name):
    model, planner = LinearToy(), FACTORIES[name](samples=200, iterations=8, horizon=4)
    context = torch.tensor([[0.0, 0.0], [0.5, 0.5], [-0.3, 0.2], [0.1, -0.6]])
    goal = torch.tensor([[0.4, 0.3], [0.0, 0.9], [-0.6, -0.2], [0.5, -0.3]])
    result = planner.plan(model, context, goal, [-1.0, -1.0], [1.0, 1.0])
    assert result.actions.shape == (4, 4, 2) and result.cost.shape == (4,)
    assert ((final_z(model, context, result.actions) - goal).norm(dim=-1) < 0.05).all()
    assert len(model.seen_actions) == 8 + 1  # iterations + the final mean
    assert all(a.shape == (4 * 200, 4, 2) for a in model.seen_actions[:-1])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # GPU variant only where there is one


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", FACTORIES)
def test_device_and_dtype_come_from_the_inputs(name, device):
    model = LinearToy()
    context = torch.zeros(2, 2, dtype=torch.float64, device=device)
    goal = torch.full((2, 2), 0.3, dtype=torch.float64, device=device)
    result = FACTORIES[name](samples=40, iterations=2).plan(model, context, goal, [-1, -1], [1, 1])
    for tensor in (result.actions, result.cost, result.mean, result.std):
        assert tensor.dtype == torch.float64 and tensor.device.type == device


# -------------------------------------------------------------------------------------- warm start
def test_shift_plan_values():
    actions = torch.arange(12.0).reshape(1, 6, 2)  # steps [0,1], [2,3], ..., [10,11]
    torch.testing.assert_close(shift_plan(actions, 1)[0, :, 0], torch.tensor([2.0, 4, 6, 8, 10, 10]))
    torch.testing.assert_close(shift_plan(actions, 2)[0, :, 1], torch.tensor([5.0, 7, 9, 11, 11, 11]))
    torch.testing.assert_close(shift_plan(actions, 0), actions)
    torch.testing.assert_close(shift_plan(actions, 9), actions[:, -1:].expand(1, 6, 2))
    result = PlanResult(actions, torch.zeros(1), actions, actions)
    torch.testing.assert_close(result.shifted(3), shift_plan(actions, 3))


def test_receding_horizon_replans_every_execute_steps_from_the_shifted_plan():
    schedule, warm_starts = RecedingHorizon(horizon=4, execute_steps=2), []

    def plan(warm):
        warm_starts.append(warm)
        return torch.arange(8.0).reshape(1, 4, 2) + 100 * len(warm_starts)  # a new plan per call

    actions = [schedule.next_action(plan) for _ in range(5)]
    assert len(warm_starts) == 3 and warm_starts[0] is None  # steps 0, 2, 4
    torch.testing.assert_close(warm_starts[1], shift_plan(torch.arange(8.0).reshape(1, 4, 2) + 100, 2))
    torch.testing.assert_close(torch.stack(actions)[:, 0, 0], torch.tensor([100.0, 102, 200, 202, 300]))
    schedule.reset()
    assert schedule.plan is None and schedule.step == 0
    schedule.next_action(plan)
    assert warm_starts[-1] is None  # a new episode starts cold
    with pytest.raises(ValueError, match=r"execute_steps must be an int in \[1, planner.horizon=4\], got 5"):
        RecedingHorizon(horizon=4, execute_steps=5)


def test_warm_started_cem_with_one_iteration_beats_a_cold_one():
    model, bounds = LinearToy(), ([-1.0, -1.0], [1.0, 1.0])
    context, goal = torch.zeros(8, 2), torch.rand(8, 2) * 2 - 1
    previous = CEM(iterations=10, cost_steps="all").plan(model, context, goal, *bounds)
    context = model.step(context, previous.actions[:, 0])  # execute the first action, re-plan
    one = CEM(iterations=1, cost_steps="all")
    cold = one.plan(model, context, goal, *bounds)
    warm = one.plan(model, context, goal, *bounds, init_mean=previous.shifted(1))
    assert warm.cost.mean() < 0.8 * cold.cost.mean()


@pytest.mark.parametrize("name", FACTORIES)
def test_plan_is_never_worse_than_its_warm_start(name):
    model, bounds = LinearToy(), ([-1.0, -1.0], [1.0, 1.0])
    context, goal, init = torch.zeros(8, 2), torch.rand(8, 2) * 2 - 1, torch.rand(8, 5, 2) * 2 - 1
    result = FACTORIES[name](iterations=1, samples=40).plan(model, context, goal, *bounds, init_mean=init)
    assert (result.cost <= latent_cost(model.rollout(context, init), goal) + 1e-6).all()


# ---------------------------------------------------------------------------------------------- MPC
@pytest.mark.parametrize("name, execute_steps", [("cem", 1), ("cem", 3), ("mppi", 1)])
def test_mpc_episode_drives_the_toy_environment_to_the_goal(name, execute_steps):
    model = LinearToy()
    planner = {"cem": CEM(samples=100, elites=10, iterations=6, cost_steps="all"),
               "mppi": MPPI(samples=100, iterations=5, init_std=0.3, temperature=0.01, cost_steps="all")}[name]
    controller = MPCController(model, planner, execute_steps=execute_steps)
    state = torch.tensor([[0.0, 0.0], [0.8, -0.5], [-0.4, 0.6]])
    goal = torch.tensor([[1.0, 0.5], [0.0, 0.0], [-1.0, -0.2]])
    controller.reset(model.render(state), model.render(goal))
    steps, distances = 24, []
    for _ in range(steps):
        action = controller.act(model.render(state))
        assert action.shape == (3, 2) and bool((action.abs() <= 1).all())
        state = model.step(state, action)
        distances.append((state - goal).norm(dim=-1))
    distances = torch.stack(distances)  # (steps, E)
    assert (distances.amin(dim=0) < 0.05).all()  # every episode reaches its goal ...
    assert (distances[-1] < 0.2).all()  # ... and stays near it (CEM jitters within its min_std)
    assert len(controller.plan_ms) == len(controller.plan_costs) == math.ceil(steps / execute_steps)
    assert all(ms > 0 for ms in controller.plan_ms) and controller.plan_costs[-1].shape == (3,)
    assert controller.plan_costs[-1].max() < 0.1


def test_mpc_with_the_closest_step_cost_reaches_every_goal():
    """cost_steps="min" scores a plan by its closest predicted step: MPC still drives each episode to its goal."""
    model = LinearToy()
    controller = MPCController(model, CEM(samples=100, elites=10, iterations=6, horizon=4, cost_steps="min"))
    state = torch.tensor([[0.0, 0.0], [0.8, -0.5], [-0.4, 0.6]])
    goal = torch.tensor([[1.0, 0.5], [0.0, 0.0], [-1.0, -0.2]])
    controller.reset(model.render(state), model.render(goal))
    closest = (state - goal).norm(dim=-1)
    assert (closest > 0.9).all()
    for _ in range(24):
        state = model.step(state, controller.act(model.render(state)))
        closest = torch.minimum(closest, (state - goal).norm(dim=-1))
    assert (closest < 0.05).all()


def test_mpc_history_pads_with_the_first_frame_and_slides():
    model = LinearToy(history=3)
    controller = MPCController(model, CEM(samples=8, elites=2, iterations=1, horizon=2))
    frame = lambda x: model.render(torch.tensor([[x, -x]]))  # noqa: E731
    controller.reset(frame(1.0), frame(0.0))
    for x in (1.0, 2.0, 3.0):
        controller.act(frame(x))
    firsts = [h[0, :, 0].tolist() for h in model.seen_histories]
    assert firsts == [[1.0, 1.0, 1.0], [1.0, 1.0, 2.0], [1.0, 2.0, 3.0]]


def test_mpc_history_of_a_chunked_model_keeps_frames_k_steps_apart():
    model = LinearToy(history=3)
    model.action_chunk = 2
    with pytest.warns(UserWarning, match="execute_steps=1 with a model that predicts one frame per chunk of 2"):
        controller = MPCController(model, CEM(samples=8, elites=2, iterations=1, horizon=4))
    frame = lambda x: model.render(torch.tensor([[x, -x]]))  # noqa: E731
    controller.reset(frame(1.0), frame(0.0))
    for x in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        controller.act(frame(x))
    firsts = [h[0, :, 0].tolist() for h in model.seen_histories]
    assert firsts[-3:] == [[1.0, 2.0, 4.0], [1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]
    with pytest.raises(ValueError, match="horizon must be a multiple of 2"):
        MPCController(model, CEM(horizon=5), execute_steps=2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aligned = MPCController(model, CEM(samples=8, elites=2, iterations=1, horizon=4), execute_steps=2)
    aligned.reset(frame(1.0), frame(0.0))
    for x in (1.0, 2.0, 3.0, 4.0):
        aligned.act(frame(x))
    assert len(aligned.plan_ms) == 2  # re-planned at steps 0 and 2, the chunk boundaries


def test_mpc_requires_reset():
    with pytest.raises(RuntimeError, match="reset"):
        MPCController(LinearToy(), CEM()).act(torch.zeros(1, 3, 1, 1))


# --------------------------------------------------------------------------------- real world model
@pytest.fixture(scope="module")
def world_model():
    from torchwm.nn.encoders import SpatialEncoder
    from torchwm.world_model import build_world_model

    encoder = SpatialEncoder.conv(16, 16, width=4)
    return build_world_model(encoder, action_low=[-1.0, 0.0], action_high=[1.0, 2.0], history=3, horizon=1,
                             temporal_hidden=16, predictor_hidden=32, predictor_depth=2, var_weight=1.0,
                             cov_weight=0.04).eval()


@pytest.mark.parametrize("name", FACTORIES)
def test_plans_on_the_real_world_model(world_model, name):
    m = world_model
    frames = torch.randint(0, 256, (2, m.history + 1, 3, 16, 16), dtype=torch.uint8)
    context = m.context(m.encode(frames[:, :-1]))  # (2, C)
    goal = m.encode(frames[:, -1])  # (2, D)
    planner = make_planner(name, samples=32, iterations=3, horizon=4)
    result = planner.plan(m, context, goal, m.action_low, m.action_high)
    assert result.actions.shape == (2, 4, 2) and result.cost.shape == (2,)
    assert torch.isfinite(result.cost).all() and torch.isfinite(result.actions).all()
    assert bool(((result.actions >= m.action_low) & (result.actions <= m.action_high)).all())
    assert not result.actions.requires_grad

    controller = MPCController(m, planner, execute_steps=2)  # history and bounds from the model
    controller.reset(frames[:, 0], frames[:, -1])
    actions = [controller.act(frames[:, t]) for t in range(3)]
    assert all(a.shape == (2, 2) for a in actions) and len(controller.plan_ms) == 2


def test_config_choices_match_what_the_planners_accept():
    """config.py stays torch-free, so it spells the planning choices out; they must be the planners' own."""
    import dataclasses

    from torchwm.config import PlanningConfig
    from torchwm.planning import PLANNERS
    from torchwm.planning.costs import METRICS, STEPS

    choices = {f.name: set(f.metadata["choices"]) for f in dataclasses.fields(PlanningConfig) if "choices" in f.metadata}
    assert choices == {"planner": set(PLANNERS), "cost": set(METRICS), "cost_steps": set(STEPS)}
