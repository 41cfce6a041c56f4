"""Latent-space planning: search action sequences whose predicted embeddings reach a goal embedding.

* :class:`CEM`, :class:`MPPI`: ``plan(model, context (E, C), goal (E, D), low (A,), high (A,),
  init_mean=None) -> PlanResult`` with ``actions (E, horizon, A)`` and predicted ``cost (E,)``.
* :class:`MPCController`: receding-horizon control from frames, ``act(frames (E, 3, H, W)) -> (E, A)``.
* :func:`latent_cost`: ``(N, T, D)`` predictions vs ``(N, D)`` goals → ``(N,)``.
* :func:`shift_plan`: warm start ``(E, H, A)`` → ``(E, H, A)`` after executing k actions.
"""

from __future__ import annotations

from typing import Any

from torchwm.planning.base import Planner, PlanResult, shift_plan
from torchwm.planning.cem import CEM
from torchwm.planning.costs import latent_cost
from torchwm.planning.mpc import MPCController
from torchwm.planning.mppi import MPPI

PLANNERS: dict[str, type[Planner]] = {"cem": CEM, "mppi": MPPI}


def make_planner(name: str, **kwargs: Any) -> Planner:
    """The planner called ``name`` ("cem" or "mppi") built with ``kwargs`` (its constructor arguments)."""
    if name not in PLANNERS:
        raise ValueError(f"planner must be one of {', '.join(map(repr, sorted(PLANNERS)))}, not {name!r}")
    return PLANNERS[name](**kwargs)


__all__ = ["CEM", "MPPI", "PLANNERS", "MPCController", "PlanResult", "Planner", "latent_cost", "make_planner",
           "shift_plan"]
