"""Reward-free collection policies: what acts in an episode of :func:`torchwm.data.collect.collect`."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class Policy(Protocol):
    """A reward-free collection policy for one episode: called once per step, sees nothing of the env."""

    def __call__(self) -> np.ndarray:
        """The next action, float32 (A,), inside the action bounds."""


class RandomPolicy:
    """I.i.d. uniform actions in ``[low, high]``."""

    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator, noise_beta: float = 0.0) -> None:
        self.low, self.high, self.rng = low.astype(np.float64), high.astype(np.float64), rng

    def __call__(self) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class NoisePolicy:
    """Temporally correlated actions: a stationary AR(1) (discretised Ornstein-Uhlenbeck) process.

    ``x_t = beta * x_{t-1} + sqrt(1 - beta^2) * eps_t`` with ``eps_t ~ N(0, half_range^2)`` and ``x_0``
    drawn from the stationary law ``N(0, half_range^2)``; the action is ``clip(centre + x_t, low, high)``.
    Lag-1 autocorrelation is ``beta`` before clipping; ``beta = 0`` gives i.i.d. Gaussian actions.
    """

    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator, noise_beta: float = 0.8) -> None:
        if not 0.0 <= noise_beta < 1.0:
            raise ValueError(f"noise_beta={noise_beta!r}: must be in [0, 1)")
        self.low, self.high, self.rng = low.astype(np.float64), high.astype(np.float64), rng
        self.centre = (self.low + self.high) / 2
        self.scale = (self.high - self.low) / 2
        self.beta = float(noise_beta)
        self.x = rng.normal(0.0, self.scale)

    def __call__(self) -> np.ndarray:
        action = np.clip(self.centre + self.x, self.low, self.high).astype(np.float32)
        eps = self.rng.normal(0.0, self.scale)
        self.x = self.beta * self.x + np.sqrt(1.0 - self.beta**2) * eps
        return action


def mixed_policy(low: np.ndarray, high: np.ndarray, rng: np.random.Generator, noise_beta: float = 0.8) -> Policy:
    """Half the episodes (by a draw of the episode's ``rng``) i.i.d. uniform (:class:`RandomPolicy`), the other half
    correlated (:class:`NoisePolicy` at ``noise_beta``): correlated actions carry a slow body across its range,
    i.i.d. ones keep a body near its start as often as the goals' random trajectories do."""
    if rng.random() < 0.5:
        return RandomPolicy(low, high, rng)
    return NoisePolicy(low, high, rng, noise_beta)


POLICIES: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator, float], Policy]] = {
    "random": RandomPolicy,
    "noise": NoisePolicy,
    "mixed": mixed_policy,
}
"""Collection policies by name: ``factory(low, high, rng, noise_beta) -> Policy``."""

USES_NOISE_BETA: frozenset[str] = frozenset({"noise", "mixed"})
"""The policies whose episodes depend on ``noise_beta`` (a store's name and compatibility include it only for these)."""


def make_policy(name: str, low: np.ndarray, high: np.ndarray, rng: np.random.Generator,
                noise_beta: float = 0.8) -> Policy:
    """Build policy ``name`` from :data:`POLICIES`; an unknown name raises ``ValueError`` listing them."""
    if name not in POLICIES:
        raise ValueError(f"unknown collection policy {name!r}; valid policies: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](low, high, rng, noise_beta)
