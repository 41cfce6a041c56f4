"""Model predictive path integral control over action sequences."""

from __future__ import annotations

from typing import Any

import torch

from torchwm.config import PlanningConfig as Defaults
from torchwm.planning.base import Planner, PlanResult, check, is_real


class MPPI(Planner):
    """MPPI: sample around the mean with a fixed std, move the mean to the cost-weighted average.

    Each iteration draws ``samples`` sequences ``(horizon, A)`` per episode with std ``init_std`` (a
    fraction of half the action range; it is not refitted), clamps them to the bounds, scores all
    E*samples in one ``model.rollout``, and sets the mean to ``Σ w_i a_i`` with
    ``w = softmax(-(cost - min cost) / temperature)``. ``temperature`` is in the units of the cost
    (e.g. embedding distance): costs that exceed the minimum by a few temperatures get almost no weight,
    so set it relative to the spread of costs your model produces (small → greedy, large → plain mean).

    ``plan(model, context (E, C), goal (E, D), low (A,), high (A,), init_mean (E, horizon, A))``
    → :class:`PlanResult` with ``actions (E, horizon, A)``: the cheapest sequence evaluated (usually
    the final mean).
    """

    def __init__(self, samples: int = Defaults.samples, iterations: int = Defaults.iterations,
                 horizon: int = Defaults.horizon, init_std: float = Defaults.init_std,
                 temperature: float = Defaults.temperature, cost: str = Defaults.cost,
                 cost_steps: str = Defaults.cost_steps, whitening: torch.Tensor | None = None) -> None:
        super().__init__(samples, iterations, horizon, init_std, cost, cost_steps, whitening)
        self.temperature = float(check("temperature", temperature, is_real(temperature) and temperature > 0,
                                       "a number > 0"))

    @torch.no_grad()
    def plan(self, model: Any, context: torch.Tensor, goal: torch.Tensor, low: Any, high: Any,
             init_mean: torch.Tensor | None = None) -> PlanResult:
        goal, low, high, mean = self._start(context, goal, low, high, init_mean)  # mean (E, H, A)
        std = (self.init_std * (high - low) / 2).expand_as(mean)
        best, best_cost = mean, mean.new_full(mean.shape[:1], float("inf"))
        for _ in range(self.iterations):
            actions = self._sample(mean, std, low, high)  # (E, S, H, A)
            cost = self._score(model, context, goal, actions)  # (E, S)
            best, best_cost = self._keep_best(best, best_cost, actions, cost)
            weights = torch.softmax(-(cost - cost.amin(dim=1, keepdim=True)) / self.temperature, dim=1)
            mean = torch.einsum("es,esha->eha", weights, actions)
        return self._finish(model, context, goal, mean, std, best, best_cost)
