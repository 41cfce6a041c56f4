"""Everything torchwm knows about a dm_control domain, in one object per domain.

A :class:`DomainSpec` holds the camera and action repeat a domain is seen and driven with by default,
its goal-reaching protocol (:mod:`torchwm.envs.goals`), the position coordinates a frame shows (with
their ranges and which ones wrap around), and what a linear probe should read from a frame. The
environment, the probes, the TensorBoard projector and the benchmarks all read it from here.

Adding a domain is adding one entry to :data:`DOMAINS`; a domain without an entry gets
``DomainSpec(name)``: camera 0, action repeat 1, no goals, and probes of its joint positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from torchwm.envs.goals import GoalSpec, JointAngleGoal, PositionGoal

ProbeTargets = Callable[[np.ndarray], np.ndarray]
"""Physics states ``(N, S)`` (float64, ``physics.get_state()`` layout) → probe targets ``(N, F)``."""


@dataclass(frozen=True)
class Coordinate:
    """One position coordinate a frame shows: a joint's ``qpos`` entry.

    ``low`` / ``high``: the range of poses the body takes (radians for a hinge, metres for a slide),
    spanned by lattices and label bins. ``periodic``: an angle that wraps around (no joint limit).
    """

    joint: str
    kind: str  # "hinge" or "slide"
    low: float
    high: float
    periodic: bool = False


def joint_positions(states: np.ndarray) -> np.ndarray:
    """The first half of each state: ``qpos`` for models without actuator state (dm_control orders
    states ``qpos, qvel``)."""
    return states[:, : max(1, states.shape[1] // 2)]


@dataclass(frozen=True)
class DomainSpec:
    """A dm_control domain as torchwm uses it (see the module docs)."""

    name: str
    camera: int = 0
    """camera rendered when a config or ``make`` asks for camera -1"""
    action_repeat: int = 1
    """times each action is repeated when a config or ``make`` asks for action repeat 0"""
    goal: GoalSpec | None = None
    """the goal-reaching protocol; None: the domain has no goals (planning evaluations refuse it)"""
    coordinates: tuple[Coordinate, ...] = ()
    """the position coordinates a frame shows, in ``qpos`` order"""
    probes: Mapping[str, ProbeTargets] = field(default_factory=lambda: {"positions": joint_positions})
    """what a linear probe reads from a frame embedding, by kind; ``"positions"`` comes first"""

    @property
    def probe_kinds(self) -> tuple[str, ...]:
        return tuple(self.probes)

    def probe_targets(self, states: np.ndarray, kind: str = "positions") -> np.ndarray:
        """``(N, S)`` physics states → ``(N, F)`` float64 targets of probe ``kind``."""
        if kind not in self.probes:
            raise ValueError(f"probe kind must be one of {self.probe_kinds} for {self.name}, not {kind!r}")
        return self.probes[kind](np.asarray(states, dtype=np.float64))


# ------------------------------------------------------------------------------------------ reacher

REACHER_LINKS = (0.12, 0.12)
"""reacher.xml: the hand joint sits 0.12 m from the shoulder, the fingertip 0.12 m from the hand joint"""


def reacher_positions(states: np.ndarray) -> np.ndarray:
    """Where the arm is in the arena plane (metres): the (x, y) of the elbow and of the fingertip ``(N, 4)``."""
    shoulder, hand = states[:, 0], states[:, 0] + states[:, 1]
    elbow = REACHER_LINKS[0] * np.stack([np.cos(shoulder), np.sin(shoulder)], axis=1)
    tip = elbow + REACHER_LINKS[1] * np.stack([np.cos(hand), np.sin(hand)], axis=1)
    return np.concatenate([elbow, tip], axis=1)


def reacher_joints(states: np.ndarray) -> np.ndarray:
    """sin and cos of the shoulder and wrist angles ``(N, 4)``. The wrist angle is relative to the upper
    arm, so its sine is the sign of the bend: not a linear function of anything drawn in the frame."""
    angles = states[:, :2]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def _joints(coordinates: tuple[Coordinate, ...]) -> tuple[str, ...]:
    return tuple(c.joint for c in coordinates)


_POINT_MASS = (Coordinate("root_x", "slide", -0.29, 0.29), Coordinate("root_y", "slide", -0.29, 0.29))
# the wrist's limit is +-160 degrees (+-2.79 rad); poses are kept 0.09 rad inside it, off the stop
_REACHER = (Coordinate("shoulder", "hinge", -math.pi, math.pi, periodic=True),
            Coordinate("wrist", "hinge", -2.7, 2.7))

DOMAINS: dict[str, DomainSpec] = {spec.name: spec for spec in (
    # The mass is slow (~0.1 m/s), so actions repeat 4 times. Goals: at rest anywhere in the arena (random
    # actions barely move the mass, see PositionGoal), success inside the target sphere's radius.
    DomainSpec("point_mass", action_repeat=4, coordinates=_POINT_MASS,
               goal=PositionGoal(_joints(_POINT_MASS), radius_geom="target")),
    # A 1-step action barely moves the arm: actions repeat 4 times. Goals: 25 steps ahead on a random
    # trajectory, every joint within 0.05 rad.
    DomainSpec("reacher", action_repeat=4, coordinates=_REACHER,
               goal=JointAngleGoal(_joints(_REACHER), tolerance=0.05),
               probes={"positions": reacher_positions, "joints": reacher_joints}),
    DomainSpec("quadruped", camera=2),
)}
"""Domains with something to say, by dm_control domain name."""


def domain_spec(domain: str) -> DomainSpec:
    """The spec of dm_control domain ``domain`` (a default one for domains without an entry)."""
    return DOMAINS.get(domain) or DomainSpec(domain)


def goal_domains() -> list[str]:
    """The domains with a goal-reaching protocol (those ``torchwm demo`` / ``plan`` can evaluate)."""
    return sorted(name for name, spec in DOMAINS.items() if spec.goal is not None)


def require_goals(env_id: str, what: str = "goal-reaching evaluation") -> None:
    """Raise ``ValueError`` naming the fix when ``env_id``'s domain has no goal protocol."""
    from torchwm.envs.ids import parse_env_id

    domain, _ = parse_env_id(env_id)
    if domain_spec(domain).goal is None:
        raise ValueError(f"env.id={env_id!r}: {what} needs a domain with a goal protocol ({', '.join(goal_domains())}); "
                         f"{domain!r} has none. Train on it with `torchwm train` and plan in your own loop "
                         "(docs/goals.md), or add a goal protocol to its DomainSpec (torchwm/envs/domains.py)")

