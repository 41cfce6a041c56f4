"""Planning views: the planner's predicted cost and the physics distance along a goal-reaching episode."""

from __future__ import annotations

import numpy as np


def episode_trace_figure(trace: dict[str, np.ndarray], success_threshold: float | None = None):
    """``trace``: ``distance (T + 1,)`` and ``cost (T,)`` (see ``run_episodes(traces=...)``) → a ``Figure``
    with the predicted cost (left axis) and the true distance to the goal (right axis) per step."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    cost = np.asarray(trace["cost"], dtype=float)
    ax.plot(np.arange(1, len(cost) + 1), cost, color="tab:blue", label="planner's predicted cost")
    ax.set_xlabel("episode step")
    ax.set_ylabel("predicted latent cost", color="tab:blue")
    twin = ax.twinx()
    distance = np.asarray(trace["distance"], dtype=float)
    twin.plot(np.arange(len(distance)), distance, color="tab:red", ls="--", label="physics distance to goal")
    if success_threshold is not None:
        twin.axhline(success_threshold, color="tab:red", lw=0.8, ls=":")
    twin.set_ylabel("distance to goal", color="tab:red")
    ax.set_title("planning: predicted cost vs true distance", fontsize=9)
    fig.tight_layout()
    return fig
