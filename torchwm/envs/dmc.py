"""dm_control suite tasks as gymnasium pixel environments, with goals where the domain has them."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from torchwm.config import EnvConfig
from torchwm.envs.domains import domain_spec
from torchwm.envs.rendering import check_render_process, configure_headless_gl, note_render_process

configure_headless_gl()

SHADOW_MAP_SIZE = 1024
"""Shadow map side in pixels (dm_control's models ask for 2048). The shadow pass is most of the cost of
a small frame with Mesa's software renderer: measured at 64x64, one render thread, 1024 instead of
2048 takes point_mass from 98 to 152 frames/s (identical pixels) and reacher from 66 to 103 frames/s
(mean absolute pixel difference 0.015 of 255)."""


class DMCEnv(gym.Env):
    """A dm_control suite task seen through its camera.

    Observations are ``uint8`` images of shape ``(3, image_size, image_size)``; actions are ``float32``
    vectors in the task's bounds (``Box`` from the action spec; out-of-bounds values are clipped). Each
    ``step`` repeats the action ``action_repeat`` times and returns the summed task reward. ``camera=-1``
    and ``action_repeat=0`` take the domain's own (:class:`~torchwm.envs.domains.DomainSpec`). Episodes
    end with ``truncated=True`` at the task's time limit (``terminated`` only if the task sets a zero
    discount).

    ``info`` always holds ``"state"``: the physics state (``physics.get_state()``, float64).

    Goal-conditioned domains (a :class:`~torchwm.envs.domains.DomainSpec` with a ``goal``): each ``reset`` also
    draws a reachable goal state from the env's seeded RNG (reacher: ``goal_steps`` steps ahead of the
    start on a random-action trajectory; point_mass: at rest anywhere in the arena). The reset ``info`` holds ``"goal_image"`` (3, H, W) and ``"goal_state"``; every
    ``info`` holds the physics ``"distance"`` to the goal and ``"success"`` (distance below the domain's
    threshold). The goal is also available as ``env.unwrapped.goal_image`` / ``goal_state``.

    Rendering in a process forked after its parent rendered raises ``RuntimeError`` (it would hang): build
    async vector envs with ``vector_kwargs={"context": "spawn"}`` (:mod:`torchwm.envs.rendering`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        domain: str,
        task: str,
        image_size: int = 64,
        action_repeat: int = EnvConfig.action_repeat,
        camera: int = EnvConfig.camera,
        goal_steps: int = EnvConfig.goal_steps,
        seed: int | None = None,
        render_mode: str | None = "rgb_array",
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size={image_size!r}: must be >= 1")
        if action_repeat < 0:
            raise ValueError(f"action_repeat={action_repeat!r}: must be >= 1, or 0 for the domain's default")
        if goal_steps < 1:
            raise ValueError(f"goal_steps={goal_steps!r}: must be >= 1")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: only 'rgb_array' is supported")
        from dm_control import suite

        self.domain, self.task = domain, task
        self.domain_spec = domain_spec(domain)
        """what torchwm knows about this domain (:class:`~torchwm.envs.domains.DomainSpec`)"""
        self.image_size = image_size
        self.action_repeat = action_repeat or self.domain_spec.action_repeat
        self.camera = self.domain_spec.camera if camera < 0 else camera
        self.goal_steps = goal_steps
        self.render_mode = render_mode
        self._dmc = suite.load(domain, task, task_kwargs={"random": 0})
        quality = self._dmc.physics.model.vis.quality
        quality.shadowsize = min(int(quality.shadowsize), SHADOW_MAP_SIZE)  # before the first render
        self._goal_spec = self.domain_spec.goal
        self._initial_seed = seed
        self._episode_over = True

        spec = self._dmc.action_spec()
        self.action_space = spaces.Box(
            low=spec.minimum.astype(np.float32),
            high=spec.maximum.astype(np.float32),
            shape=spec.shape,
            dtype=np.float32,
        )
        self.observation_space = spaces.Box(0, 255, (3, image_size, image_size), dtype=np.uint8)
        physics = self._dmc.physics
        self._n_sub_steps = int(round(self._dmc.control_timestep() / physics.timestep()))
        self.state_dim = int(physics.get_state().shape[0])
        self.goal_state: np.ndarray | None = None
        self.goal_image: np.ndarray | None = None
        self._last_obs: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------- API
    @property
    def physics(self):
        """The underlying ``dm_control`` physics (read it, or set a state with :meth:`set_state`)."""
        return self._dmc.physics

    @property
    def physics_steps_per_step(self) -> int:
        """MuJoCo steps one :meth:`step` takes: ``action_repeat`` x the task's physics steps per control step."""
        return self.action_repeat * self._n_sub_steps

    @property
    def has_goals(self) -> bool:
        """Whether this domain implements the goal-conditioned protocol."""
        return self._goal_spec is not None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._initial_seed is not None:
            seed, self._initial_seed = self._initial_seed, None
        super().reset(seed=seed)
        # The task's own initial-state sampler draws from its RandomState: derive it from our RNG so
        # that starts are reproducible from the gymnasium seed.
        self._dmc.task.random.seed(int(self.np_random.integers(2**31 - 1)))
        self._dmc.reset()
        self._episode_over = False
        info: dict[str, Any] = {}
        if self.has_goals:
            self.goal_state, self.goal_image = self._sample_goal()
            info.update(goal_image=self.goal_image.copy(), goal_state=self.goal_state.copy())
        obs = self._observe()
        info.update(self._step_info())
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._episode_over:
            raise RuntimeError("the episode is over (or never started): call reset() before step()")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action has shape {action.shape}, expected {self.action_space.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._dmc.step(action)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        self._episode_over = terminated or truncated
        return self._observe(), reward, terminated, truncated, self._step_info()

    def render(self) -> np.ndarray:
        """The current frame, ``(H, W, 3)`` uint8."""
        if self._last_obs is None:
            raise RuntimeError("call reset() before render()")
        return self._last_obs.transpose(1, 2, 0).copy()

    def render_state(self, state: np.ndarray) -> np.ndarray:
        """Render a physics state as an observation ``(3, H, W)`` without changing the episode."""
        physics = self.physics
        saved = physics.get_state().copy()
        self._set_physics_state(state)
        frame = self._render_frame()
        self._set_physics_state(saved)
        return frame

    def set_state(self, state: np.ndarray) -> np.ndarray:
        """Put the simulator in ``state`` (``physics.get_state()`` layout); returns the new observation."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self.state_dim,):
            raise ValueError(f"state has shape {state.shape}, expected ({self.state_dim},)")
        self._set_physics_state(state)
        return self._observe()

    def goal_distance(self) -> float:
        """Physics distance from the current state to the goal (see :mod:`torchwm.envs.goals`)."""
        if self._goal_spec is None or self.goal_state is None:
            raise RuntimeError(f"domain {self.domain!r} has no goal protocol, or reset() was not called")
        return self._goal_spec.distance(self.physics, self.goal_state)

    def is_success(self) -> bool:
        """Whether the current state reaches the goal (distance below the domain's threshold)."""
        return self.goal_distance() < self._goal_spec.threshold(self.physics)

    def random_rollout(self, steps: int) -> np.ndarray:
        """The physics state after ``steps`` env steps of uniform random actions (from ``np_random``)
        starting at the current state; the simulator is put back where it was."""
        physics = self.physics
        start = physics.get_state().copy()
        start_time, start_ctrl = physics.data.time, physics.data.ctrl.copy()
        low, high = self.action_space.low, self.action_space.high
        for _ in range(steps):
            action = self.np_random.uniform(low, high).astype(np.float64)
            for _ in range(self.action_repeat):
                self._dmc.task.before_step(action, physics)
                physics.step(self._n_sub_steps)
                self._dmc.task.after_step(physics)
        end = physics.get_state().copy()
        self._set_physics_state(start)
        physics.data.time = start_time
        physics.data.ctrl[:] = start_ctrl
        return end

    def close(self) -> None:
        self._dmc.close()

    # ------------------------------------------------------------------------------------ internals
    def _render_frame(self) -> np.ndarray:
        check_render_process()  # a frame in a process forked after its parent rendered would never come
        pixels = self.physics.render(self.image_size, self.image_size, camera_id=self.camera)
        note_render_process()
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def _observe(self) -> np.ndarray:
        self._last_obs = self._render_frame()
        return self._last_obs

    def _step_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.physics.get_state().copy()}
        if self.has_goals and self.goal_state is not None:
            distance = self.goal_distance()
            info["distance"] = distance
            info["success"] = bool(distance < self._goal_spec.threshold(self.physics))
        return info

    def _set_physics_state(self, state: np.ndarray) -> None:
        physics = self.physics
        with physics.reset_context():
            physics.set_state(state)

    def _sample_goal(self) -> tuple[np.ndarray, np.ndarray]:
        goal_state = self._goal_spec.sample(self)
        return goal_state, self.render_state(goal_state)
