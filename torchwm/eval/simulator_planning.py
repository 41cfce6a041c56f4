"""The planner's ceiling: the same planner, driven by the simulator itself instead of a learned world model.

:class:`SimulatorModel` predicts exactly: it rolls each candidate action sequence out in MuJoCo (``mujoco.rollout``,
batched in C) from the episode's true state, and "embeds" a state as the goal protocol's position coordinates
(slides in metres, hinges as cosine and sine). :class:`SimulatorPolicy` plans with it under the goal protocol
(:func:`~torchwm.eval.goal_reaching.run_episodes`). What it reaches is what the planner, its budget and the
episode's step budget allow with perfect prediction and a cost that is the success measure itself; the gap between
it and a learned model's success is what the representation costs, the gap between it and 100% what the planner
costs.
"""

from __future__ import annotations

from typing import Any, Callable

import mujoco
import mujoco.rollout
import numpy as np
import torch

from torchwm.envs.domains import coordinate_features
from torchwm.planning.base import Planner, RecedingHorizon

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class SimulatorModel:
    """Exact prediction for a planner: ``rollout(context (B, S), actions (B, T, A)) -> (B, T, D)``.

    ``context`` rows are MuJoCo full-physics states (:meth:`state`); the output is the embedding (:meth:`embed`)
    after each of the T env steps, each action held for ``env.physics_steps_per_step`` MuJoCo steps (the env's
    action repeat and the task's sub-steps). Actions go to ``ctrl`` unchanged, as the suite's tasks do.
    ``threads``: MuJoCo threads that share a rollout's batch.
    """

    def __init__(self, env: Any, threads: int = 1) -> None:
        env = env.unwrapped
        self.mj_model = env.physics.model.ptr
        # rollout scratch, one per thread, so the env's own data is never touched
        self._data = [mujoco.MjData(self.mj_model) for _ in range(max(1, int(threads)))]
        self.repeat = int(env.physics_steps_per_step)
        self.nq = int(self.mj_model.nq)
        self.state_size = mujoco.mj_stateSize(self.mj_model, _FULL)
        self.embed_dim = env.domain_spec.latent_dim
        self._features = coordinate_features(env.domain_spec.coordinates)
        if self.mj_model.nu != env.action_space.shape[0]:
            raise ValueError(f"{env.domain}: {self.mj_model.nu} actuators but {env.action_space.shape[0]} actions; "
                             "SimulatorModel assumes each action is one actuator's control")

    def state(self, env: Any) -> np.ndarray:
        """The env's current full-physics state ``(S,)`` (time, qpos, qvel, act, ...)."""
        out = np.empty(self.state_size)
        mujoco.mj_getState(self.mj_model, env.unwrapped.physics.data.ptr, out, _FULL)
        return out

    def embed(self, qpos: np.ndarray) -> np.ndarray:
        """``qpos`` ``(..., nq)`` → ``(..., D)``: the domain's coordinates, a slide as itself and a hinge as its sine
        and cosine (:func:`~torchwm.envs.domains.coordinate_features`)."""
        flat = np.asarray(qpos, dtype=np.float64).reshape(-1, qpos.shape[-1])
        return self._features(flat).reshape(*qpos.shape[:-1], self.embed_dim)

    def rollout(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """States ``(B, S)`` and actions ``(B, T, A)`` → embeddings after each step ``(B, T, D)`` (float64)."""
        start = np.ascontiguousarray(context.detach().cpu().numpy(), dtype=np.float64)
        control = np.repeat(actions.detach().cpu().numpy().astype(np.float64), self.repeat, axis=1)
        states, _ = mujoco.rollout.rollout(self.mj_model, self._data, start, np.ascontiguousarray(control))
        qpos = states[:, self.repeat - 1::self.repeat, 1:1 + self.nq]  # after each env step; state[0] is time
        return torch.from_numpy(self.embed(qpos)).to(context.device)


class SimulatorPolicy:
    """A goal policy (:class:`~torchwm.eval.goal_reaching.GoalPolicy`) that plans with :class:`SimulatorModel`.

    It reads the true states and goals of ``envs`` (the environments :func:`run_episodes` makes: pass it a
    ``make_env`` that appends to the same list), re-plans every ``execute_steps`` steps warm-started with the
    previous plan shifted by as many, as :class:`~torchwm.planning.MPCController` does, and returns the plan's next
    action ``(E, A)``. The frames it is handed are not used.
    """

    def __init__(self, envs: list[Any], planner: Planner, threads: int = 1, execute_steps: int = 1) -> None:
        self.schedule = RecedingHorizon(planner.horizon, execute_steps)
        self.envs, self.planner, self.threads = envs, planner, threads
        self.model: SimulatorModel | None = None

    def reset(self, first_frames: np.ndarray, goal_frames: np.ndarray) -> None:
        active = [env.unwrapped for env in self.envs[:len(first_frames)]]
        if self.model is None:
            self.model = SimulatorModel(active[0], self.threads)
        goals = np.stack([self.model.embed(env.goal_state[:self.model.nq]) for env in active])
        self.goal = torch.from_numpy(goals)
        space = active[0].action_space
        self.low = torch.as_tensor(space.low, dtype=torch.float64)
        self.high = torch.as_tensor(space.high, dtype=torch.float64)
        self.schedule.reset()

    @torch.no_grad()
    def act(self, frames: np.ndarray) -> np.ndarray:
        def plan(warm: torch.Tensor | None) -> torch.Tensor:
            context = torch.from_numpy(np.stack([self.model.state(env) for env in self.envs[:len(frames)]]))
            return self.planner.plan(self.model, context, self.goal, self.low, self.high, init_mean=warm).actions

        return self.schedule.next_action(plan).numpy()


def simulator_goal_reaching(make_env: Callable[[], Any], planner: Planner, seeds: list[int], episode_steps: int,
                            parallel: int = 10, progress: bool = True, seed: int = 0, threads: int = 1,
                            execute_steps: int = 1):
    """Goal-reaching with the simulator as the model: a :class:`~torchwm.eval.goal_reaching.PolicyResult`.

    ``make_env`` builds a goal-conditioned env (:func:`torchwm.envs.make`); ``seeds`` and ``episode_steps`` are
    :func:`~torchwm.eval.goal_reaching.run_episodes`'. ``planner``'s samples are drawn from torch's RNG seeded with
    ``seed`` (restored afterwards); ``threads`` MuJoCo threads roll the candidates out; each plan's first
    ``execute_steps`` actions are carried out before the next.
    """
    from torchwm.eval.goal_reaching import run_episodes

    envs: list[Any] = []

    def tracked_env():
        env = make_env()
        envs.append(env)
        return env

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = SimulatorPolicy(envs, planner, threads, execute_steps)
        result, _ = run_episodes(tracked_env, policy, seeds, episode_steps, parallel=parallel, progress=progress,
                                 desc="plan (simulator)")
    return result
