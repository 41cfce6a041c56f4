"""State probes: how much of the physics state a frame embedding holds, linearly (:class:`LinearProbe`) and at
all (:class:`NeighbourProbe`)."""

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


class _Probe:
    """Shared by the probes: ``r2(x, y)``, the coefficient of determination of ``predict(x)`` averaged over
    target columns (1 is perfect, 0 is no better than predicting the mean)."""

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def r2(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
        y = _np(y)
        residual = ((y - self.predict(x)) ** 2).sum(0)
        total = ((y - y.mean(0)) ** 2).sum(0) + 1e-12
        return float(np.mean(1.0 - residual / total))


class LinearProbe(_Probe):
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


class NeighbourProbe(_Probe):
    """k-nearest-neighbour regression (scikit-learn's ``KNeighborsRegressor``, the mean of the ``k`` nearest
    training targets by L2 distance between raw embeddings): what an embedding holds in any shape, not only
    linearly. Where it reads the state and :class:`LinearProbe` does not, the state is in the embedding but
    bent, and a latent L2 distance will rank states poorly. ``fit(x (N, D), y (N, F))``, ``predict(x) → (N, F)``,
    ``r2(x, y)``. Raw distances, not standardised ones: the metric a planner's cost uses.
    """

    def __init__(self, k: int = 10) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r}: expected an int >= 1 (the neighbours averaged)")
        self.k = k

    def fit(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> NeighbourProbe:
        from sklearn.neighbors import KNeighborsRegressor

        x, y = _np(x), _np(y)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} targets")
        if len(x) < self.k:
            raise ValueError(f"{len(x)} training samples, fewer than k={self.k} neighbours")
        self.regressor = KNeighborsRegressor(n_neighbors=self.k).fit(x, y)
        return self

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.regressor.predict(_np(x))


def _np(a: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)
