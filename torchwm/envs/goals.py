"""Goal-conditioned protocol: goals are reachable physics states, success is measured in physics.

Every goal is a state the task can reach, drawn from the environment's seeded RNG at ``reset``, and
shown to the agent as its rendered image. Distance and success are computed from the simulator
state, never from pixels. Two samplers exist:

* ``rollout`` (:class:`JointGoal`: reacher, cartpole, pendulum, acrobot, ball_in_cup): the state ``goal_steps``
  environment steps ahead of the episode's start on a uniform random-action trajectory.
* ``uniform`` (point_mass): the mass at rest at a uniform random position in the arena. (Random actions
  barely move the point mass: 25 steps travel a median 0.003, below the 0.015 target radius, so a
  rollout goal would be reached at the start.)

A domain's protocol is the ``goal`` of its :class:`~torchwm.envs.domains.DomainSpec`; see ``docs/goals.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

DMCEnv = Any  # torchwm.envs.dmc.DMCEnv (not imported: the env reads its goals from here)


class GoalSpec(Protocol):
    """What a domain must define to be goal-conditioned."""

    def sample(self, env: DMCEnv) -> np.ndarray:
        """Draw a goal physics state from ``env.np_random``, leaving the simulator at its current state."""

    def distance(self, physics, goal_state: np.ndarray) -> float:
        """Distance from the current state to ``goal_state`` (``physics.get_state()`` layout: qpos first)."""

    def threshold(self, physics) -> float:
        """A state whose distance is strictly below this counts as a success."""

    def differences(self, physics, goal_state: np.ndarray) -> np.ndarray:
        """Per coordinate the goal is judged on: current minus goal position."""

    def describe(self, env: DMCEnv) -> tuple[str, str]:
        """In words, for tables: where goals are placed, and what success is."""


def _joint_differences(physics, joints: tuple[str, ...], goal_state: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Current minus goal position of each of ``joints`` ``(len(joints),)``, unwrapped, and the joints' ids."""
    idx = [physics.model.name2id(j, "joint") for j in joints]
    qpos_adr = physics.model.jnt_qposadr[idx]
    return physics.data.qpos[qpos_adr] - goal_state[qpos_adr], idx


@dataclass(frozen=True)
class PositionGoal:
    """Euclidean distance between slide-joint positions; success inside a geom's radius.

    point_mass: the mass's (x, y) against the goal's, success within the target sphere's radius.
    """

    joints: tuple[str, ...]
    radius_geom: str

    def sample(self, env: DMCEnv) -> np.ndarray:
        """The mass at rest at a uniform position within the joints' ranges."""
        physics = env.physics
        goal = physics.get_state().copy()
        idx = [physics.model.name2id(j, "joint") for j in self.joints]
        low, high = physics.model.jnt_range[idx].T
        goal[physics.model.jnt_qposadr[idx]] = env.np_random.uniform(low, high)
        goal[physics.model.nq:] = 0.0  # zero velocity (and actuator state)
        return goal

    def differences(self, physics, goal_state: np.ndarray) -> np.ndarray:
        """Per joint: current minus goal position ``(len(joints),)`` in metres."""
        return _joint_differences(physics, self.joints, goal_state)[0]

    def distance(self, physics, goal_state: np.ndarray) -> float:
        return float(np.linalg.norm(self.differences(physics, goal_state)))

    def threshold(self, physics) -> float:
        return float(physics.named.model.geom_size[self.radius_geom, 0])

    def describe(self, env: DMCEnv) -> tuple[str, str]:
        return ("at rest, uniform in the arena",
                f"inside the {self.radius_geom} sphere ({self.threshold(env.physics):g} m)")


@dataclass(frozen=True)
class JointGoal:
    """Largest difference over joint positions (hinge angles wrapped to [-pi, pi), slides in metres); success when
    every joint is within ``tolerance`` of the goal's.

    reacher: shoulder and wrist each within 0.05 rad; cartpole: the cart within 0.05 m and the pole within 0.05 rad.
    """

    joints: tuple[str, ...]
    tolerance: float = 0.05

    def sample(self, env: DMCEnv) -> np.ndarray:
        """The state ``env.goal_steps`` steps ahead on a uniform random-action trajectory."""
        return env.random_rollout(env.goal_steps)

    def differences(self, physics, goal_state: np.ndarray) -> np.ndarray:
        """Per joint: current minus goal position ``(len(joints),)``, hinge angles wrapped to [-pi, pi)."""
        diff, idx = _joint_differences(physics, self.joints, goal_state)
        hinge = physics.model.jnt_type[idx] == HINGE
        return np.where(hinge, (diff + np.pi) % (2 * np.pi) - np.pi, diff)

    def distance(self, physics, goal_state: np.ndarray) -> float:
        return float(np.max(np.abs(self.differences(physics, goal_state))))

    def threshold(self, physics) -> float:
        return self.tolerance

    def describe(self, env: DMCEnv) -> tuple[str, str]:
        return f"{env.goal_steps} steps ahead on a random trajectory", f"every coordinate within {self.tolerance}"


JointAngleGoal = JointGoal
"""The earlier name of :class:`JointGoal` (reacher's protocol)."""

HINGE = 3
"""MuJoCo's ``mjJNT_HINGE``"""
