"""What CEM and MPPI share: the result type, the planner base, argument checks and warm starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable

import torch

from torchwm.planning.costs import METRICS, STEPS, check_choice, latent_cost


def check(name: str, value: Any, ok: bool, rule: str) -> Any:
    """Return ``value`` if ``ok``; otherwise raise ``ValueError("<name> must be <rule>, got <value>")``."""
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def shift_plan(actions: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Warm start for the next planning call after executing ``k`` actions of a plan.

    ``(E, H, A)`` → ``(E, H, A)``: drops the first ``k`` steps and pads the end by repeating the last
    action (not the mid-range action: a motion in progress is more likely to continue than to stop).
    ``k >= H`` gives the last action H times; ``k = 0`` a copy.
    """
    check("k", k, is_int(k) and k >= 0, "an int >= 0")
    k = min(int(k), actions.shape[1])
    return torch.cat([actions[:, k:], actions[:, -1:].expand(-1, k, -1)], dim=1)


class RecedingHorizon:
    """When to re-plan: every ``execute_steps`` steps, warm-started with the previous plan shifted by as many
    (:func:`shift_plan`); in between, the plan's next action.

    ``next_action(plan)`` takes ``plan(warm_start) -> (E, horizon, A)`` (``warm_start`` is ``None`` on an episode's
    first step) and returns this step's ``(E, A)``; ``reset()`` starts new episodes. ``plan`` holds the plan being
    carried out (``None`` before the first call), ``step`` the steps taken since ``reset``.
    """

    def __init__(self, horizon: int, execute_steps: int = 1) -> None:
        self.execute_steps = int(check("execute_steps", execute_steps,
                                       is_int(execute_steps) and 1 <= execute_steps <= horizon,
                                       f"an int in [1, planner.horizon={horizon}]"))
        self.reset()

    def reset(self) -> None:
        self.step, self.plan = 0, None

    def next_action(self, plan: Callable[[torch.Tensor | None], torch.Tensor]) -> torch.Tensor:
        k = self.step % self.execute_steps
        if k == 0:
            self.plan = plan(None if self.plan is None else shift_plan(self.plan, self.execute_steps))
        self.step += 1
        return self.plan[:, k]


@dataclass
class PlanResult:
    """What :meth:`Planner.plan` returns, for E episodes planned at once.

    ``actions``: the plan ``(E, horizon, A)`` in env units, within the bounds — the lowest-cost sequence
    evaluated (samples of every iteration and the final mean). ``cost``: its predicted cost ``(E,)``.
    ``mean`` / ``std``: the final sampling distribution ``(E, horizon, A)`` in env units.
    """

    actions: torch.Tensor
    cost: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def shifted(self, k: int = 1) -> torch.Tensor:
        """The warm start for the next call after executing ``k`` actions: ``shift_plan(actions, k)``."""
        return shift_plan(self.actions, k)


class Planner:
    """Base of the sampling planners: settings, input checks, batched scoring and best-so-far tracking.

    A planner searches action sequences ``(horizon, A)`` whose predicted embeddings (from
    ``model.rollout``) end near a goal embedding, scored by :func:`~torchwm.planning.latent_cost` with
    ``cost`` / ``cost_steps``, after the ``(D, D)`` ``whitening`` map if one is given (e.g. a world model's
    :attr:`~torchwm.world_model.WorldModel.whitening`). ``init_std`` is a fraction of half the action range
    (1.0 = std of half the range). Subclasses implement :meth:`plan`; everything runs on the device and dtype of
    ``context``.
    """

    def __init__(self, samples: int, iterations: int, horizon: int, init_std: float, cost: str,
                 cost_steps: str, whitening: torch.Tensor | None = None) -> None:
        self.samples = check("samples", samples, is_int(samples) and samples >= 1, "an int >= 1")
        self.iterations = check("iterations", iterations, is_int(iterations) and iterations >= 1, "an int >= 1")
        self.horizon = check("horizon", horizon, is_int(horizon) and horizon >= 1, "an int >= 1")
        self.init_std = float(check("init_std", init_std, is_real(init_std) and init_std > 0, "a number > 0"))
        self.cost = check_choice("cost", cost, METRICS)
        self.cost_steps = check_choice("cost_steps", cost_steps, STEPS)
        if whitening is not None:
            whitening = torch.as_tensor(whitening)
            check("whitening", tuple(whitening.shape), whitening.dim() == 2 and whitening.shape[0] == whitening.shape[1],
                  "a square (D, D) matrix")
        self.whitening = whitening

    def plan(self, model: Any, context: torch.Tensor, goal: torch.Tensor, low: Any, high: Any,
             init_mean: torch.Tensor | None = None) -> PlanResult:
        """Plan for E episodes at once.

        Args:
            model: anything with ``rollout(context (B, C), actions (B, T, A)) -> (B, T, D)``.
            context: ``(E, C)`` from ``model.context``.
            goal: goal embeddings ``(E, D)`` (or ``(1, D)`` for all).
            low, high: action bounds ``(A,)`` in env units.
            init_mean: ``(E, horizon, A)`` warm start (e.g. :func:`shift_plan` of the previous plan);
                default the middle of the bounds.

        Returns:
            :class:`PlanResult` with ``actions (E, horizon, A)`` and ``cost (E,)``.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------------------ shared steps
    def _start(self, context: torch.Tensor, goal: torch.Tensor, low: Any, high: Any,
               init_mean: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Checked inputs on ``context``'s device/dtype: goal ``(E, D)``, low, high ``(A,)``, mean ``(E, H, A)``."""
        like = dict(device=context.device, dtype=context.dtype)
        low, high = torch.as_tensor(low, **like).flatten(), torch.as_tensor(high, **like).flatten()
        if low.shape != high.shape or not bool((high > low).all()):
            raise ValueError(f"low and high must be (A,) with high > low, got {low.tolist()} and {high.tolist()}")
        if context.dim() != 2 or goal.dim() != 2 or goal.shape[0] not in (1, context.shape[0]):
            raise ValueError(f"context must be (E, C) and goal (E or 1, D), got {tuple(context.shape)} "
                             f"and {tuple(goal.shape)}")
        e, shape = context.shape[0], (context.shape[0], self.horizon, low.numel())
        if init_mean is None:
            mean = ((low + high) / 2).expand(shape)
        elif tuple(init_mean.shape) != shape:
            raise ValueError(f"init_mean must be (E, horizon, A) = {shape}, got {tuple(init_mean.shape)}")
        else:
            mean = init_mean.to(**like).clamp(low, high)
        return goal.to(**like).expand(e, -1), low, high, mean

    def _sample(self, mean: torch.Tensor, std: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """``samples`` sequences ``(E, S, H, A)`` around ``mean`` within bounds; sample 0 is the mean itself."""
        noise = torch.randn(mean.shape[0], self.samples, *mean.shape[1:], device=mean.device, dtype=mean.dtype)
        noise[:, 0] = 0
        return (mean[:, None] + std[:, None] * noise).clamp(low, high)

    def _score(self, model: Any, context: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Costs ``(E, S)`` of ``actions (E, S, H, A)``, in one rollout of batch E*S."""
        e, s = actions.shape[:2]
        pred = model.rollout(context.repeat_interleave(s, 0), actions.flatten(0, 1))  # (E*S, H, D)
        return latent_cost(pred, goal.repeat_interleave(s, 0), self.cost, self.cost_steps,
                           whitening=self.whitening).view(e, s)

    @staticmethod
    def _keep_best(best: torch.Tensor, best_cost: torch.Tensor, actions: torch.Tensor,
                   cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the best ``(E, H, A)`` / ``(E,)`` with the cheapest of ``actions (E, S, H, A)``, ``cost (E, S)``."""
        c, i = cost.min(dim=1)
        candidate = actions[torch.arange(actions.shape[0], device=i.device), i]
        better = c < best_cost
        return torch.where(better[:, None, None], candidate, best), torch.where(better, c, best_cost)

    def _finish(self, model: Any, context: torch.Tensor, goal: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor, best: torch.Tensor, best_cost: torch.Tensor) -> PlanResult:
        """Score the final mean too and return the cheaper of it and the best sample."""
        cost = self._score(model, context, goal, mean[:, None])
        best, best_cost = self._keep_best(best, best_cost, mean[:, None], cost)
        return PlanResult(best, best_cost, mean, std)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"
