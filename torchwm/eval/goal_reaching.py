"""Goal-reaching evaluation under the goal protocol of :mod:`torchwm.envs.goals`.

Each episode is a seeded start and goal (``env.reset(seed=s)``); a policy gets the observation and the
goal image, and success is read from the simulator's physics (never from pixels). Several policies
are compared on the same seeds, several episodes run side by side (batched planning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default); ``(0, 1)`` for ``n == 0``."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """Reset seeds of evaluation episodes ``0 .. episodes-1``: a pure function of ``(seed, i)``."""
    return [int(np.random.SeedSequence([seed, 10_007, i]).generate_state(1)[0]) for i in range(episodes)]


class GoalPolicy(Protocol):
    """What the evaluation drives: ``reset`` once per batch of episodes, ``act`` every step."""

    def reset(self, first_frames: np.ndarray, goal_frames: np.ndarray) -> None:
        """``(E, 3, H, W)`` uint8 observations and goal images."""

    def act(self, frames: np.ndarray) -> np.ndarray:
        """``(E, 3, H, W)`` uint8 → actions ``(E, A)`` in env units."""


class RandomPolicy:
    """Uniform random actions in the action space's bounds (the baseline), seeded."""

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int = 0) -> None:
        self.low, self.high = np.asarray(low), np.asarray(high)
        self.rng = np.random.default_rng(seed)

    def reset(self, first_frames: np.ndarray, goal_frames: np.ndarray) -> None:
        self.batch = len(first_frames)

    def act(self, frames: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high, size=(len(frames), len(self.low)))


@dataclass
class PolicyResult:
    """Per-episode outcomes of one policy (arrays of length ``episodes``)."""

    success: np.ndarray
    """bool: the goal was reached at some step within the budget"""
    final_distance: np.ndarray
    """physics distance to the goal after the last step"""
    min_distance: np.ndarray
    """smallest physics distance reached during the episode"""
    steps_to_success: np.ndarray
    """first step (1-based) at which the goal was reached; -1 if never"""
    ms_per_step: float = float("nan")
    """mean wall-clock milliseconds of one ``act`` call, i.e. of one environment step's planning for all the
    episodes run side by side (one batched call)"""
    ms_per_episode_step: float = float("nan")
    """``ms_per_step`` divided by the episodes in the batch: the per-episode share of a batched call (not the
    latency of planning a single episode alone)"""

    @property
    def rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(int(self.success.sum()), len(self.success))

    def summary(self) -> dict[str, float]:
        lo, hi = self.interval
        reached = self.steps_to_success[self.steps_to_success > 0]
        return {"episodes": len(self.success), "success_rate": self.rate, "success_ci95_low": lo,
                "success_ci95_high": hi, "final_distance_mean": float(self.final_distance.mean()),
                "min_distance_mean": float(self.min_distance.mean()),
                "steps_to_success_mean": float(reached.mean()) if len(reached) else float("nan"),
                "ms_per_step": self.ms_per_step, "ms_per_episode_step": self.ms_per_episode_step}


@dataclass
class GoalReaching:
    """Results of several policies on the same episodes: ``results[name]`` is a :class:`PolicyResult`."""

    env_id: str
    seeds: list[int]
    episode_steps: int
    results: dict[str, PolicyResult] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: r.summary() for name, r in self.results.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "episodes": len(self.seeds), "episode_steps": self.episode_steps,
                "seeds": self.seeds, "summary": self.summary(),
                "episodes_detail": {name: {"success": r.success.tolist(), "final_distance": r.final_distance.tolist(),
                                           "steps_to_success": r.steps_to_success.tolist()}
                                    for name, r in self.results.items()}}

    def table(self) -> str:
        rows = [f"{self.env_id}: {len(self.seeds)} episodes, {self.episode_steps} steps each",
                "| policy | success | 95% CI | final distance | steps to success | ms / step (all episodes) "
                "| ms / episode-step |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in self.results.items():
            s = r.summary()
            reached = s["steps_to_success_mean"]
            reached_text = "-" if np.isnan(reached) else f"{reached:.1f}"  # no episode reached its goal
            rows.append(f"| {name} | {s['success_rate']:.0%} | {s['success_ci95_low']:.0%}-{s['success_ci95_high']:.0%} "
                        f"| {s['final_distance_mean']:.3f} | {reached_text} | {s['ms_per_step']:.1f} "
                        f"| {s['ms_per_episode_step']:.1f} |")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return self.table()


def run_episodes(make_env: Callable[[], Any], policy: GoalPolicy, seeds: Sequence[int], episode_steps: int,
                 parallel: int = 1, record: int = 0, progress: bool = True, desc: str = "evaluate",
                 traces: list[dict[str, np.ndarray]] | None = None) -> tuple[PolicyResult, list[np.ndarray]]:
    """Run one episode per seed, ``parallel`` at a time; returns the results and ``record`` videos.

    A video is uint8 ``(T + 1, H, 2W, 3)``: the observation beside the goal image at every step.
    With a ``traces`` list, each recorded episode appends ``{"distance": (T + 1,), "cost": (T,)}``: the
    physics distance to the goal and, when the policy has ``last_costs() -> (E,)``, the planner's
    predicted cost at each step (NaN otherwise).
    """
    import time

    n = len(seeds)
    success = np.zeros(n, dtype=bool)
    final, closest = np.zeros(n), np.full(n, np.inf)
    first = np.full(n, -1, dtype=np.int64)
    videos: list[np.ndarray] = []
    envs = [make_env() for _ in range(min(parallel, n))]
    act_seconds, act_calls, act_episode_steps = 0.0, 0, 0
    bar = tqdm(total=n * episode_steps, desc=desc, unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, n, len(envs)):
            batch = list(range(start, min(start + len(envs), n)))
            active = envs[: len(batch)]
            obs, goals = [], []
            for env, i in zip(active, batch):
                o, info = env.reset(seed=int(seeds[i]))
                obs.append(o)
                goals.append(info["goal_image"])
                closest[i] = min(closest[i], info["distance"])
                if info["success"]:
                    success[i], first[i] = True, 0
            obs_arr, goal_arr = np.stack(obs), np.stack(goals)
            frames = [[_side_by_side(o, g)] for o, g in zip(obs_arr, goal_arr)] if record > len(videos) else None
            tracing = frames is not None and traces is not None  # traces go with the recorded episodes
            dist_trace = [[closest[i]] for i in batch]  # the distance at reset
            cost_trace: list[list[float]] = [[] for _ in batch]
            policy.reset(obs_arr, goal_arr)
            for step in range(1, episode_steps + 1):
                t0 = time.perf_counter()
                actions = np.asarray(_to_numpy(policy.act(obs_arr)), dtype=np.float32)
                act_seconds += time.perf_counter() - t0
                act_calls += 1
                act_episode_steps += len(batch)
                costs = policy.last_costs() if tracing and hasattr(policy, "last_costs") else None
                for j, (env, i) in enumerate(zip(active, batch)):
                    o, _, _, _, info = env.step(actions[j])
                    obs_arr[j] = o
                    closest[i] = min(closest[i], info["distance"])
                    final[i] = info["distance"]
                    if tracing:
                        dist_trace[j].append(info["distance"])
                        cost_trace[j].append(float(costs[j]) if costs is not None else float("nan"))
                    if info["success"] and not success[i]:
                        success[i], first[i] = True, step
                    if frames is not None:
                        frames[j].append(_side_by_side(o, goal_arr[j]))
                bar.update(len(batch))
            if frames is not None:
                kept = frames[: record - len(videos)]
                if tracing:
                    traces.extend({"distance": np.asarray(d), "cost": np.asarray(c)}
                                  for d, c in zip(dist_trace[: len(kept)], cost_trace[: len(kept)]))
                videos.extend(np.stack(f) for f in kept)
    finally:
        bar.close()
        for env in envs:
            env.close()
    ms = 1e3 * act_seconds / max(act_calls, 1)  # per batched call (one env step of all episodes)
    ms_episode = 1e3 * act_seconds / max(act_episode_steps, 1)
    return PolicyResult(success, final, closest, first, ms, ms_episode), videos


def _side_by_side(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` observation and goal → ``(H, 2W + 2, 3)`` image with a white separator."""
    sep = np.full((obs.shape[1], 2, 3), 255, dtype=np.uint8)
    return np.concatenate([obs.transpose(1, 2, 0), sep, goal.transpose(1, 2, 0)], axis=1)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def gif_bytes(video: np.ndarray, fps: int = 10, scale: int = 2) -> bytes:
    """``(T, H, W, 3)`` uint8 frames → an animated GIF (Pillow, looping), enlarged ``scale`` times."""
    import io

    from PIL import Image

    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in video]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buffer.getvalue()


def save_gif(video: np.ndarray, path: str | Path, fps: int = 10, scale: int = 2) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames as an animated GIF (:func:`gif_bytes`), atomically."""
    from torchwm.io import atomic_write

    data = gif_bytes(video, fps, scale)
    return atomic_write(path, lambda fh: fh.write(data))
