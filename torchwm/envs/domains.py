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

from torchwm.envs.goals import GoalSpec, JointGoal, PositionGoal

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
    task: str = ""
    """the suite task a benchmark runs when only the domain is named ("" = the domain has none chosen)"""
    camera: int = 0
    """camera rendered when a config or ``make`` asks for camera -1"""
    action_repeat: int = 1
    """times each action is repeated when a config or ``make`` asks for action repeat 0"""
    goal: GoalSpec | None = None
    """the goal-reaching protocol; None: the domain has no goals (planning evaluations refuse it)"""
    episode_steps: int = 50
    """the step budget of one goal-reaching episode, when ``planning.episode_steps`` is 0"""
    coordinates: tuple[Coordinate, ...] = ()
    """the position coordinates a frame shows, in ``qpos`` order"""
    probes: Mapping[str, ProbeTargets] = field(default_factory=lambda: {"positions": joint_positions})
    """what a linear probe reads from a frame embedding, by kind; ``"positions"`` comes first"""

    @property
    def latent_dim(self) -> int:
        """The degrees of freedom a frame shows, as embedding dimensions: 1 per slide, 2 per hinge (an angle
        lies on a circle). The frame embedding size when ``embed_dim`` is 0; 0 when no coordinates are known."""
        return sum(1 if c.kind == "slide" else 2 for c in self.coordinates)

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


def coordinate_features(coordinates: tuple[Coordinate, ...]) -> ProbeTargets:
    """A probe of every coordinate, in ``qpos`` order (the coordinates must be ``qpos[0:n]``): a slide as itself,
    a hinge as its sine and cosine (an angle's value jumps where it wraps; its sine and cosine do not)."""

    def features(states: np.ndarray) -> np.ndarray:
        columns = []
        for i, c in enumerate(coordinates):
            q = states[:, i]
            columns += [q] if c.kind == "slide" else [np.sin(q), np.cos(q)]
        return np.stack(columns, axis=1)

    return features


def _joints(coordinates: tuple[Coordinate, ...]) -> tuple[str, ...]:
    return tuple(c.joint for c in coordinates)


_POINT_MASS = (Coordinate("root_x", "slide", -0.29, 0.29), Coordinate("root_y", "slide", -0.29, 0.29))
# the wrist's limit is +-160 degrees (+-2.79 rad); poses are kept 0.09 rad inside it, off the stop
_REACHER = (Coordinate("shoulder", "hinge", -math.pi, math.pi, periodic=True),
            Coordinate("wrist", "hinge", -2.7, 2.7))
# ranges: the 1st-99th percentiles of 8000 random-action steps (cartpole's rail ends at +-1.8 m)
_CARTPOLE = (Coordinate("slider", "slide", -1.8, 1.8), Coordinate("hinge_1", "hinge", -math.pi, math.pi, periodic=True))
_PENDULUM = (Coordinate("hinge", "hinge", -math.pi, math.pi, periodic=True),)
_ACROBOT = (Coordinate("shoulder", "hinge", -math.pi, math.pi, periodic=True),
            Coordinate("elbow", "hinge", -math.pi, math.pi, periodic=True))
_BALL_IN_CUP = (Coordinate("cup_x", "slide", -0.09, 0.09), Coordinate("cup_z", "slide", -0.15, 0.03),
                Coordinate("ball_x", "slide", -0.24, 0.24), Coordinate("ball_z", "slide", -0.15, 0.39))

DOMAINS: dict[str, DomainSpec] = {spec.name: spec for spec in (
    # The mass is slow (~0.1 m/s), so actions repeat 4 times. Goals: at rest anywhere in the arena (random
    # actions barely move the mass, see PositionGoal), success inside the target sphere's radius.
    DomainSpec("point_mass", "easy", action_repeat=4, coordinates=_POINT_MASS,
               goal=PositionGoal(_joints(_POINT_MASS), radius_geom="target"), episode_steps=100),
    # A 1-step action barely moves the arm: actions repeat 4 times. Goals: 25 steps ahead on a random
    # trajectory, every joint within 0.05 rad.
    DomainSpec("reacher", "easy", action_repeat=4, coordinates=_REACHER,
               goal=JointGoal(_joints(_REACHER), tolerance=0.05),
               probes={"positions": reacher_positions, "joints": reacher_joints}),
    # The other suite domains share reacher's protocol: the state 25 steps ahead on a random trajectory, every
    # position coordinate within 0.05 (rad or m), 50 steps. Actions repeat 4 times: with 1 or 2, 25 random steps
    # end within the tolerance of the start in 68% / 20% of cartpole's episodes (docs/goals.md).
    DomainSpec("cartpole", "swingup", action_repeat=4, coordinates=_CARTPOLE, goal=JointGoal(_joints(_CARTPOLE)),
               probes={"positions": coordinate_features(_CARTPOLE)}),
    DomainSpec("pendulum", "swingup", action_repeat=4, coordinates=_PENDULUM, goal=JointGoal(_joints(_PENDULUM)),
               probes={"positions": coordinate_features(_PENDULUM)}),
    DomainSpec("acrobot", "swingup", action_repeat=4, coordinates=_ACROBOT, goal=JointGoal(_joints(_ACROBOT)),
               probes={"positions": coordinate_features(_ACROBOT)}),
    DomainSpec("ball_in_cup", "catch", action_repeat=4, coordinates=_BALL_IN_CUP, goal=JointGoal(_joints(_BALL_IN_CUP)),
               probes={"positions": coordinate_features(_BALL_IN_CUP)}),
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

