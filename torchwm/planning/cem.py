"""Cross-entropy method over action sequences."""

from __future__ import annotations

from typing import Any

import torch

from torchwm.config import PlanningConfig as Defaults
from torchwm.planning.base import Planner, PlanResult, check, is_int, is_real


class CEM(Planner):
    """Cross-entropy method: sample sequences from a Gaussian, refit it to the ``elites`` cheapest, repeat.

    Each iteration draws ``samples`` sequences ``(horizon, A)`` per episode around the mean (the mean
    itself is one of them), clamps them to the bounds, scores all E*samples in one ``model.rollout``,
    and refits mean and std to the elites (blended with the old ones by ``momentum``; std floored at
    ``min_std``). ``init_std`` and ``min_std`` are fractions of half the action range. Defaults are those of
    the ``planning`` config section.

    ``plan(model, context (E, C), goal (E, D), low (A,), high (A,), init_mean (E, horizon, A))``
    → :class:`PlanResult` with ``actions (E, horizon, A)``: the cheapest sequence evaluated.
    """

    def __init__(self, samples: int = Defaults.samples, elites: int = Defaults.elites,
                 iterations: int = Defaults.iterations, horizon: int = Defaults.horizon,
                 init_std: float = Defaults.init_std, min_std: float = 0.05, momentum: float = 0.0,
                 cost: str = Defaults.cost, cost_steps: str = Defaults.cost_steps,
                 whitening: torch.Tensor | None = None) -> None:
        super().__init__(samples, iterations, horizon, init_std, cost, cost_steps, whitening)
        self.elites = check("elites", elites, is_int(elites) and 1 <= elites <= samples,
                            f"an int in [1, samples={samples}]")
        self.min_std = float(check("min_std", min_std, is_real(min_std) and min_std >= 0, "a number >= 0"))
        self.momentum = float(check("momentum", momentum, is_real(momentum) and 0 <= momentum < 1,
                                    "a number in [0, 1)"))

    @torch.no_grad()
    def plan(self, model: Any, context: torch.Tensor, goal: torch.Tensor, low: Any, high: Any,
             init_mean: torch.Tensor | None = None) -> PlanResult:
        goal, low, high, mean = self._start(context, goal, low, high, init_mean)  # mean (E, H, A)
        half = (high - low) / 2
        std = (self.init_std * half).expand_as(mean)
        best, best_cost = mean, mean.new_full(mean.shape[:1], float("inf"))
        for _ in range(self.iterations):
            actions = self._sample(mean, std, low, high)  # (E, S, H, A)
            cost = self._score(model, context, goal, actions)  # (E, S)
            elite_cost, idx = cost.topk(self.elites, dim=1, largest=False)  # (E, K)
            elites = actions.gather(1, idx[:, :, None, None].expand(-1, -1, *actions.shape[2:]))  # (E, K, H, A)
            best, best_cost = self._keep_best(best, best_cost, elites[:, :1], elite_cost[:, :1])
            mean = torch.lerp(elites.mean(dim=1), mean, self.momentum)
            std = torch.lerp(elites.std(dim=1, correction=0), std, self.momentum).maximum(self.min_std * half)
        return self._finish(model, context, goal, mean, std, best, best_cost)
