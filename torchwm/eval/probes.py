"""Linear probes: how much of the physics state a frame embedding holds linearly."""

from __future__ import annotations

import numpy as np
import torch


# reacher.xml: the hand joint sits 0.12 m from the shoulder, the fingertip 0.12 m from the hand joint
REACHER_LINKS = (0.12, 0.12)

PROBE_KINDS = ("positions", "joints")


def probe_targets(env_id: str, states: np.ndarray | torch.Tensor, kind: str = "positions") -> np.ndarray:
    """What a probe should read from a frame: ``(N, S)`` physics states → ``(N, F)`` float64 targets.

    Positions only (velocity is not visible in one frame). ``kind="positions"`` gives where the bodies
    are in the arena plane (metres): for reacher the (x, y) of the elbow and of the fingertip, computed
    from the joint angles; for point_mass the (x, y) of the mass. ``kind="joints"`` gives the joint
    coordinates: for reacher sin and cos of both joint angles (the wrist angle is relative to the upper
    arm, so its sine is the sign of the bend: not a linear function of anything drawn in the frame).
    Other domains, either kind: the first half of the state (dm_control orders it ``qpos, qvel``, so
    this is ``qpos`` for models without actuator state).
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe kind must be one of {PROBE_KINDS}, not {kind!r}")
    states = np.asarray(states, dtype=np.float64)
    domain = _domain(env_id)
    if domain == "reacher":
        angles = states[:, :2]
        if kind == "joints":
            return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
        shoulder, hand = angles[:, 0], angles[:, 0] + angles[:, 1]
        elbow = REACHER_LINKS[0] * np.stack([np.cos(shoulder), np.sin(shoulder)], axis=1)
        tip = elbow + REACHER_LINKS[1] * np.stack([np.cos(hand), np.sin(hand)], axis=1)
        return np.concatenate([elbow, tip], axis=1)
    if domain == "point_mass":
        return states[:, :2]
    return states[:, : max(1, states.shape[1] // 2)]


def probe_kinds(env_id: str) -> tuple[str, ...]:
    """The probe kinds with distinct targets for ``env_id``: both for reacher; ``("positions",)`` elsewhere,
    where the joint coordinates are the positions."""
    return PROBE_KINDS if _domain(env_id) == "reacher" else PROBE_KINDS[:1]


def _domain(env_id: str) -> str:
    from torchwm.envs.registry import parse_env_id

    return parse_env_id(env_id)[0]


class LinearProbe:
    """Ridge regression on standardised features, solved in closed form (float64).

    ``fit(x (N, D), y (N, F))``, ``predict(x) → (N, F)``, ``r2(x, y)``: the coefficient of determination
    averaged over target columns (1 is perfect, 0 is no better than predicting the mean).
    """

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge

    def fit(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> LinearProbe:
        x, y = _np(x), _np(y)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} targets")
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-8
        xs = np.concatenate([(x - self.mean) / self.scale, np.ones((len(x), 1))], axis=1)
        reg = self.ridge * len(x) * np.eye(xs.shape[1])
        reg[-1, -1] = 0.0  # no penalty on the bias
        self.weights = np.linalg.solve(xs.T @ xs + reg, xs.T @ y)
        return self

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        xs = (_np(x) - self.mean) / self.scale
        return xs @ self.weights[:-1] + self.weights[-1]

    def r2(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
        y = _np(y)
        residual = ((y - self.predict(x)) ** 2).sum(0)
        total = ((y - y.mean(0)) ** 2).sum(0) + 1e-12
        return float(np.mean(1.0 - residual / total))


def _np(a: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)
