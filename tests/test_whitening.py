"""Step whitening of the latent: the map, the cost measured in it, the world model's copy and the agent's use."""

import pytest
import torch

from torchwm.planning import CEM, latent_cost
from torchwm.planning.costs import step_whitening


def second_moment(deltas: torch.Tensor) -> torch.Tensor:
    return deltas.T @ deltas / len(deltas)


def test_diagonal_steps_give_the_inverse_step_sizes():
    # x moves +-2 a step, y +-0.5: one step along either becomes unit length
    steps = torch.tensor([[2.0, 0.5], [-2.0, 0.5], [2.0, -0.5], [-2.0, -0.5]])
    z = torch.cat([torch.zeros(1, 2), steps.cumsum(0)])
    w = step_whitening([z])
    assert torch.allclose(w, torch.diag(torch.tensor([0.5, 2.0])), atol=1e-6)


def test_whitened_steps_have_identity_second_moment_across_episodes():
    torch.manual_seed(0)
    mix = torch.tensor([[3.0, 0.2, 0.0], [1.0, 0.5, 0.0], [0.0, 0.1, 0.05]])  # correlated, anisotropic
    episodes = [(torch.randn(40, 3) @ mix.T).cumsum(0) for _ in range(3)]
    w = step_whitening(episodes)
    deltas = torch.cat([z[1:] - z[:-1] for z in episodes])
    assert w.shape == (3, 3) and w.dtype == torch.float32
    assert torch.allclose(w, w.T, atol=1e-5)
    assert torch.allclose(second_moment(deltas @ w.T), torch.eye(3), atol=1e-4)


def test_a_direction_that_never_moves_is_floored_not_blown_up():
    z = torch.stack([torch.arange(10.0), torch.full((10,), 3.0)], dim=1)  # y is constant
    w = step_whitening([z], floor=1e-4)
    assert torch.isfinite(w).all()
    assert w[0, 0].item() == pytest.approx(1.0) and w[1, 1].item() == pytest.approx(100.0)


def test_collapsed_or_empty_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="never change"):
        step_whitening([torch.ones(5, 4)])
    with pytest.raises(ValueError, match=r"\(T, D\) sequence with T >= 2"):
        step_whitening([torch.ones(1, 4)])


def test_latent_cost_in_the_whitened_latent_hand_computed():
    pred = torch.tensor([[[3.0, 0.0]], [[0.0, 3.0]]])  # (2, 1, 2)
    goal = torch.zeros(1, 2)
    w = torch.diag(torch.tensor([2.0, 0.5]))
    assert torch.allclose(latent_cost(pred, goal), torch.tensor([3.0, 3.0]))
    assert torch.allclose(latent_cost(pred, goal, whitening=w), torch.tensor([6.0, 1.5]))
    assert torch.allclose(latent_cost(pred, goal, "l1", whitening=w), torch.tensor([6.0, 1.5]))
    with pytest.raises(ValueError, match=r"whitening must be \(2, 2\)"):
        latent_cost(pred, goal, whitening=torch.eye(3))


class DiagonalToy:
    """One action moves the 2-D embedding along (1, 1): ``z' = z + a (1, 1)``, ``|a| <= 1``."""

    action_low, action_high, history = torch.tensor([-1.0]), torch.tensor([1.0]), 1

    def rollout(self, context, actions):  # context: z now
        return context[:, None] + torch.cumsum(actions * torch.ones(2), dim=1)


def test_the_planner_measures_in_its_whitening():
    """The goal (0.5, -0.5) is off the reachable line: plain L2 stops at its projection (a = 0); with x weighted
    10-fold the closest point is at a = (100 * 0.5 - 0.5) / 101 = 0.49."""
    toy, goal, context = DiagonalToy(), torch.tensor([[0.5, -0.5]]), torch.zeros(1, 2)
    plan = lambda **kw: CEM(samples=200, elites=20, iterations=6, horizon=1, **kw).plan(  # noqa: E731
        toy, context, goal, toy.action_low, toy.action_high).actions[0, 0, 0].item()
    torch.manual_seed(0)
    assert plan() == pytest.approx(0.0, abs=0.03)
    torch.manual_seed(0)
    assert plan(whitening=torch.diag(torch.tensor([10.0, 1.0]))) == pytest.approx(49.5 / 101, abs=0.03)
    with pytest.raises(ValueError, match="whitening must be a square"):
        CEM(whitening=torch.ones(2, 3))


def test_world_model_fits_stores_and_reloads_its_whitening():
    from torchwm.nn.encoders import SpatialEncoder
    from torchwm.world_model import build_world_model

    torch.manual_seed(0)
    make = lambda: build_world_model(  # noqa: E731
        SpatialEncoder.conv(16, 3, width=4), [-1.0], [1.0], history=2, horizon=1, temporal_hidden=8,
        predictor_hidden=16, predictor_depth=1, var_weight=1.0, cov_weight=0.04).eval()
    model = make()
    assert model.whitening is None
    episodes = [torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8) for _ in range(3)]
    with torch.no_grad():
        z = [model.encode(f) for f in episodes]
    w = model.fit_whitening(z)
    deltas = torch.cat([e[1:] - e[:-1] for e in z])
    assert torch.allclose(second_moment(deltas @ w.T), torch.eye(3), atol=1e-3)
    assert model.whitening is not None and torch.equal(model.whitening, w)

    state = model.state_dict()
    other = make()
    other.load_state_dict(state)
    assert torch.equal(other.whitening, w)
    older = {k: v for k, v in state.items() if k != "latent_whitening"}  # saved before the whitening existed
    fresh = make()
    fresh.load_state_dict(older)
    assert fresh.whitening is None
