"""Linear probes: how much of the physics state a frame embedding holds linearly."""

from __future__ import annotations

import numpy as np
import torch

from torchwm.envs.registry import env_domain


def probe_targets(env_id: str, states: np.ndarray | torch.Tensor, kind: str = "positions") -> np.ndarray:
    """What a probe should read from a frame: ``(N, S)`` physics states → ``(N, F)`` float64 targets.

    Positions only (velocity is not visible in one frame); the domain's spec says what they are
    (:class:`~torchwm.envs.domains.DomainSpec`): for reacher ``kind="positions"`` is the (x, y) of the
    elbow and the fingertip and ``kind="joints"`` sin and cos of both joint angles; for point_mass the
    mass's (x, y); for other domains the joint positions (the first half of the state).
    """
    return env_domain(env_id).probe_targets(_np(states), kind)


def probe_kinds(env_id: str) -> tuple[str, ...]:
    """The probe kinds with distinct targets for ``env_id`` (``"positions"`` first)."""
    return env_domain(env_id).probe_kinds


class LinearProbe:
    """Ridge regression (scikit-learn's ``Ridge``, float64) on standardised features.

    The penalty is ``ridge * N`` (``N`` training samples) on the weights of the standardised features, none
    on the intercept: the minimiser of ``||x_std w + b - y||^2 + ridge * N * ||w||^2``.
    ``fit(x (N, D), y (N, F))``, ``predict(x) → (N, F)``, ``r2(x, y)``: the coefficient of determination
    averaged over target columns (1 is perfect, 0 is no better than predicting the mean).
    """

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge

    def fit(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> LinearProbe:
        from sklearn.linear_model import Ridge

        x, y = _np(x), _np(y)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} targets")
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-8
        self.regressor = Ridge(alpha=self.ridge * len(x), fit_intercept=True).fit((x - self.mean) / self.scale, y)
        return self

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.regressor.predict((_np(x) - self.mean) / self.scale)

    def r2(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
        y = _np(y)
        residual = ((y - self.predict(x)) ** 2).sum(0)
        total = ((y - y.mean(0)) ** 2).sum(0) + 1e-12
        return float(np.mean(1.0 - residual / total))


def _np(a: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)
