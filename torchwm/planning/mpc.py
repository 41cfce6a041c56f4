"""Receding-horizon control: plan toward a goal image, execute a few actions, observe, re-plan."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from torchwm.planning.base import Planner, PlanResult, RecedingHorizon, check, is_int


def _device(model: Any) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in (*getattr(model, "parameters", list)(), *getattr(model, "buffers", list)()):
        return tensor.device
    return torch.device("cpu")


class MPCController:
    """Drives E episodes toward goal images with a planner over a world model's latent space.

    Keeps the last ``history`` frame embeddings per episode (at the start, the first frame repeated), ``k =
    model.action_chunk`` steps apart for a model that steps over chunks of k actions (it keeps the last
    ``(history - 1) k + 1`` and passes every k-th; the planner's horizon must then be a multiple of k),
    embeds the goal once, and re-plans every ``execute_steps`` calls to :meth:`act`, warm-started with
    the previous plan shifted by ``execute_steps`` (:class:`~torchwm.planning.base.RecedingHorizon`); in between
    it returns the plan's next action.

    * ``reset(first_frames, goal_frames)``: ``(E, 3, H, W)`` each (uint8 or float in [0, 1]).
    * ``act(frames)``: the current observations ``(E, 3, H, W)`` → actions ``(E, A)`` in env units.
      Call it with every observation, the first one included.

    Recorded per plan call (cleared by ``reset``): ``plan_costs`` (list of the planner's predicted
    costs ``(E,)``), ``plan_ms`` (list of wall-clock milliseconds), ``result`` (the last
    :class:`PlanResult`); ``current_plan`` ``(E, horizon, A)`` is the plan being executed.
    ``low`` / ``high`` / ``history`` default to the model's ``action_low``, ``action_high`` and ``history``.
    """

    def __init__(self, model: Any, planner: Planner, history: int | None = None, low: Any = None,
                 high: Any = None, execute_steps: int = 1) -> None:
        self.model, self.planner = model, planner
        self.history = model.history if history is None else history
        check("history", self.history, is_int(self.history) and self.history >= 1, "an int >= 1")
        self.chunk = getattr(model, "action_chunk", 1)
        if planner.horizon % self.chunk:
            raise ValueError(f"planner horizon={planner.horizon}: the model predicts one frame per chunk of "
                             f"{self.chunk} actions, so the horizon must be a multiple of {self.chunk}")
        self.span = (self.history - 1) * self.chunk + 1
        self.schedule = RecedingHorizon(planner.horizon, execute_steps)
        if self.execute_steps % self.chunk:
            warnings.warn(f"execute_steps={execute_steps} with a model that predicts one frame per chunk of "
                          f"{self.chunk} actions: re-planning between chunk boundaries shifts the steps the cost "
                          f"sees, so a plan that meets the goal at one is not carried out; set execute_steps "
                          f"(planning.execute_steps) to a multiple of {self.chunk}", stacklevel=2)
        self.device = _device(model)
        self.low = torch.as_tensor(model.action_low if low is None else low, device=self.device).float()
        self.high = torch.as_tensor(model.action_high if high is None else high, device=self.device).float()
        self._z: torch.Tensor | None = None

    @torch.no_grad()
    def reset(self, first_frames: Any, goal_frames: Any) -> None:
        """Start E episodes: history ``(E, history, D)`` of the first frame, goal embedding ``(E, D)``."""
        z = self.model.encode(torch.as_tensor(first_frames, device=self.device))  # (E, D)
        self._z = z[:, None].repeat(1, self.span, 1)
        self._goal = self.model.encode(torch.as_tensor(goal_frames, device=self.device))
        self.schedule.reset()
        self.result: PlanResult | None = None
        self.plan_costs: list[torch.Tensor] = []
        self.plan_ms: list[float] = []

    @torch.no_grad()
    def act(self, frames: Any) -> torch.Tensor:
        """Observations ``(E, 3, H, W)`` → actions ``(E, A)``; re-plans every ``execute_steps`` calls."""
        if self._z is None:
            raise RuntimeError("call reset(first_frames, goal_frames) before act()")
        z = self.model.encode(torch.as_tensor(frames, device=self.device))  # (E, D)
        self._z = torch.cat([self._z[:, 1:], z[:, None]], dim=1)  # (E, span, D)
        return self.schedule.next_action(self._plan)

    @property
    def execute_steps(self) -> int:
        """Actions of each plan carried out before the next."""
        return self.schedule.execute_steps

    @property
    def current_plan(self) -> torch.Tensor | None:
        """The plan being carried out ``(E, horizon, A)`` (``None`` before the first :meth:`act`)."""
        return self.schedule.plan

    def _plan(self, warm: torch.Tensor | None) -> torch.Tensor:
        start = time.perf_counter()
        self.result = self.planner.plan(self.model, self.model.context(self._z[:, ::self.chunk]), self._goal, self.low,
                                        self.high, init_mean=warm)
        if self.result.actions.is_cuda:
            torch.cuda.synchronize(self.result.actions.device)
        self.plan_ms.append((time.perf_counter() - start) * 1e3)
        self.plan_costs.append(self.result.cost)
        return self.result.actions
