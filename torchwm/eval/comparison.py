"""Paired comparison of two goal-reaching evaluations on the same episodes.

Two models (or two planner settings) evaluated with the same ``--seed`` and ``--episodes`` face the same starts
and goals, so their successes pair up episode by episode. The pairs a difference rests on are the discordant
ones (reached by one and not the other); an exact two-sided sign test on them (McNemar's exact test) says
whether the difference is more than these episodes can show. Two success rates compared unpaired, each with
its own interval, need far more episodes to tell the same difference apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from torchwm.runs import EVAL_DIR, GOAL_REACHING_FILE


def load_goal_reaching(path: str | Path) -> dict[str, Any]:
    """Read a ``goal_reaching.json`` (or the evaluation folder or run folder that holds one) as a dict.

    A run folder's own evaluation (``RUN/eval/goal_reaching.json``) is taken when ``path`` is a run; one
    evaluated on another seed lives under ``RUN/eval/seed-S/``. Raises ``FileNotFoundError`` naming where it
    looked, ``ValueError`` when the file is not a goal-reaching result.
    """
    path = Path(path)
    candidates = [path] if path.is_file() else [path / GOAL_REACHING_FILE, path / EVAL_DIR / GOAL_REACHING_FILE]
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{candidate}: not valid JSON ({err})") from None
            if not isinstance(data, dict) or "episodes_detail" not in data or "seeds" not in data:
                raise ValueError(f"{candidate}: not a goal-reaching result (no 'episodes_detail' / 'seeds'); "
                                 "`torchwm plan --run RUN` writes one")
            data["path"] = str(candidate)
            return data
    looked = ", ".join(str(c) for c in candidates)
    others = sorted(str(p.parent) for p in path.glob(f"{EVAL_DIR}/*/{GOAL_REACHING_FILE}")) if path.is_dir() else []
    hint = (f"; this run has evaluations in {', '.join(others)}: name one" if others else
            f"; evaluate a run with `torchwm plan --run RUN [--seed S]`, which writes RUN/{EVAL_DIR}[/seed-S]/"
            f"{GOAL_REACHING_FILE}")
    raise FileNotFoundError(f"no goal-reaching result at {path} (looked for {looked}){hint}")


def sign_test_p(a_only: int, b_only: int) -> float:
    """Exact two-sided p-value of McNemar's test: the discordant pairs against a fair coin (1.0 when none)."""
    n = a_only + b_only
    return 1.0 if n == 0 else float(binomtest(a_only, n, 0.5).pvalue)


@dataclass(frozen=True)
class PairedComparison:
    """Episode-paired successes of two evaluations, ``a`` and ``b``, of one policy on the same episodes."""

    env_id: str
    policy: str
    labels: tuple[str, str]
    success_a: np.ndarray
    """bool (episodes,): ``a`` reached the goal of episode i"""
    success_b: np.ndarray
    """bool (episodes,): ``b`` reached the goal of episode i"""

    @property
    def episodes(self) -> int:
        return int(self.success_a.size)

    @property
    def both(self) -> int:
        return int(np.sum(self.success_a & self.success_b))

    @property
    def a_only(self) -> int:
        return int(np.sum(self.success_a & ~self.success_b))

    @property
    def b_only(self) -> int:
        return int(np.sum(~self.success_a & self.success_b))

    @property
    def neither(self) -> int:
        return int(np.sum(~self.success_a & ~self.success_b))

    @property
    def p_value(self) -> float:
        """Exact two-sided sign-test p-value on the discordant episodes."""
        return sign_test_p(self.a_only, self.b_only)

    def summary(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "policy": self.policy, "episodes": self.episodes, "labels": list(self.labels),
                "success_a": int(self.success_a.sum()), "success_b": int(self.success_b.sum()), "both": self.both,
                "a_only": self.a_only, "b_only": self.b_only, "neither": self.neither, "p_value": self.p_value}

    def table(self) -> str:
        """A Markdown table: each side's success, then both / a only / b only / neither and the p-value."""
        a, b = self.labels
        n = self.episodes
        return "\n".join([
            f"{self.env_id}, {self.policy}: {n} paired episodes",
            f"| a: {a} | b: {b} | both | a only | b only | neither | sign test p (two-sided) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.success_a.sum()}/{n} ({self.success_a.mean():.0%}) | {self.success_b.sum()}/{n} "
            f"({self.success_b.mean():.0%}) | {self.both} | {self.a_only} | {self.b_only} | {self.neither} "
            f"| {self.p_value:.3g} |"])


def compare_goal_reaching(a: dict[str, Any], b: dict[str, Any], policy: str = "planner",
                          labels: tuple[str, str] = ("a", "b")) -> PairedComparison:
    """Pair ``policy``'s per-episode successes of two results (dicts as :func:`load_goal_reaching` returns).

    Raises ``ValueError`` when the two were not run on the same episodes (environment, step budget or episode
    seeds differ) or when either lacks ``policy``.
    """
    for field_name in ("env_id", "episode_steps"):
        if a.get(field_name) != b.get(field_name):
            raise ValueError(f"the two results differ in {field_name} ({a.get(field_name)!r} against "
                             f"{b.get(field_name)!r}): a paired comparison needs the same episodes")
    if list(a["seeds"]) != list(b["seeds"]):
        raise ValueError(f"the two results ran different episodes ({len(a['seeds'])} and {len(b['seeds'])} seeds, "
                         "not the same list): evaluate both with the same `torchwm plan --seed S --episodes N`")
    detail = []
    for label, result in zip(labels, (a, b)):
        per_policy = result["episodes_detail"]
        if policy not in per_policy:
            raise ValueError(f"{label} ({result.get('path', 'result')}) has no policy {policy!r}; it has "
                             f"{', '.join(sorted(per_policy))}")
        detail.append(np.asarray(per_policy[policy]["success"], dtype=bool))
    return PairedComparison(str(a["env_id"]), policy, labels, detail[0], detail[1])
