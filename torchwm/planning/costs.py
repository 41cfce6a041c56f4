"""Planning costs: how far predicted embeddings are from the goal embedding."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

METRICS = ("cosine", "l1", "l2")
STEPS = ("all", "final", "min")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise raise a ``ValueError`` naming ``name``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, sorted(allowed)))}, not {value!r}")
    return value


def _distance(pred: torch.Tensor, goal: torch.Tensor, metric: str) -> torch.Tensor:
    """``(N, T, D)``, ``(N or 1, 1, D)`` → ``(N, T)``."""
    if metric == "l2":
        return (pred - goal).norm(dim=-1)
    if metric == "l1":
        return (pred - goal).abs().sum(dim=-1)
    return 1 - F.cosine_similarity(pred, goal.expand_as(pred), dim=-1)


def step_whitening(sequences: Iterable[torch.Tensor], floor: float = 1e-4) -> torch.Tensor:
    """The ``(D, D)`` map under which a typical one-step change of the embedding has unit length in every direction.

    ``sequences``: embeddings ``(T_i, D)`` of consecutive frames (episodes). Returns ``W = C^{-1/2}`` (float32),
    ``C`` the second moment of the one-step changes ``z_{t+1} - z_t`` over all of them; ``‖W (z - z_goal)‖`` then
    counts roughly how many typical steps separate ``z`` from the goal along each direction, so that no direction of the
    embedding (a joint the encoder spreads widely) outweighs another in a distance. Eigenvalues of ``C`` below
    ``floor`` x its largest are raised to that (a direction that never moves is not blown up).
    """
    deltas = [z[1:] - z[:-1] for z in sequences if z.dim() == 2 and len(z) > 1]
    if not deltas:
        raise ValueError("step_whitening needs at least one (T, D) sequence with T >= 2")
    d = torch.cat(deltas).double()
    values, vectors = torch.linalg.eigh(d.T @ d / len(d))
    if not bool(values.max() > 0):
        raise ValueError("step_whitening: the embeddings never change between steps (a collapsed encoder?)")
    values = values.clamp_min(float(values.max()) * floor)
    return (vectors @ torch.diag(values.rsqrt()) @ vectors.T).float()


def latent_cost(pred: torch.Tensor, goal: torch.Tensor, metric: str = "l2", steps: str = "final",
                weights: torch.Tensor | None = None, whitening: torch.Tensor | None = None) -> torch.Tensor:
    """Distance of predicted embeddings from a goal embedding, one number per sequence.

    Args:
        pred: predicted embeddings ``(N, T, D)``.
        goal: goal embeddings ``(N, D)``, or ``(1, D)`` shared by all N.
        metric: ``"l2"`` (Euclidean norm, not squared), ``"l1"`` (sum of absolute differences) or
            ``"cosine"`` (1 - cosine similarity).
        steps: ``"final"`` scores the last predicted step only; ``"all"`` is a weighted mean over the
            T steps; ``"min"`` is the closest of the T steps (reach the goal at some step of the
            horizon, not necessarily stay there).
        weights: ``(T,)`` non-negative step weights for ``steps="all"`` (normalised to sum to 1);
            default ``1, 2, .., T`` so later steps count more.
        whitening: ``(D, D)`` map applied to predictions and goal before measuring (e.g. :func:`step_whitening`);
            default none.

    Returns:
        costs ``(N,)`` (lower is better).
    """
    check_choice("metric", metric, METRICS)
    check_choice("steps", steps, STEPS)
    if pred.dim() != 3 or goal.dim() != 2 or goal.shape[-1] != pred.shape[-1] or goal.shape[0] not in (1, len(pred)):
        raise ValueError(f"pred must be (N, T, D) and goal (N or 1, D), got {tuple(pred.shape)}, {tuple(goal.shape)}")
    if whitening is not None:
        if whitening.shape != (pred.shape[-1], pred.shape[-1]):
            raise ValueError(f"whitening must be ({pred.shape[-1]}, {pred.shape[-1]}), got {tuple(whitening.shape)}")
        whitening = whitening.to(pred)
        pred, goal = pred @ whitening.T, goal @ whitening.T
    goal = goal[:, None]  # (N or 1, 1, D)
    if steps != "all" and weights is not None:
        raise ValueError(f"weights only apply to steps='all', not steps={steps!r}")
    if steps == "final":
        return _distance(pred[:, -1:], goal, metric)[:, 0]
    if steps == "min":
        return _distance(pred, goal, metric).min(dim=1).values
    t = pred.shape[1]
    if weights is None:
        weights = torch.arange(1, t + 1, device=pred.device, dtype=pred.dtype)
    else:
        weights = torch.as_tensor(weights, device=pred.device, dtype=pred.dtype)
        if weights.shape != (t,) or bool((weights < 0).any()) or not bool(weights.sum() > 0):
            raise ValueError(f"weights must be ({t},) non-negative with a positive sum, got {weights.tolist()}")
    return _distance(pred, goal, metric) @ (weights / weights.sum())
