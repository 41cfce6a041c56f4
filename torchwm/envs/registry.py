"""Making environments: ``make("dmc:<domain>-<task>")``, their domain specs, and the gymnasium ids
``torchwm/dmc-<domain>-<task>-v0`` (ids themselves: :mod:`torchwm.envs.ids`)."""

from __future__ import annotations

import gymnasium as gym

from torchwm.config import EnvConfig
from torchwm.envs.domains import DomainSpec, domain_spec
from torchwm.envs.ids import dmc_tasks, env_ids, gym_id, gym_name, parse_env_id

__all__ = ["env_domain", "env_ids", "gym_id", "make", "make_env", "parse_env_id", "register_gymnasium_ids"]


def env_domain(env_id: str) -> DomainSpec:
    """The :class:`~torchwm.envs.domains.DomainSpec` of ``env_id``'s domain (``ValueError`` for an unknown id)."""
    return domain_spec(parse_env_id(env_id)[0])


def make(
    env_id: str,
    image_size: int = 64,
    action_repeat: int = EnvConfig.action_repeat,
    seed: int | None = None,
    camera: int = EnvConfig.camera,
    goal_steps: int = EnvConfig.goal_steps,
) -> gym.Env:
    """Build a pixel environment (see :class:`torchwm.envs.dmc.DMCEnv`).

    ``seed`` seeds the first ``reset()`` called without a seed. Observations are uint8 ``(3, H, W)``.
    ``action_repeat=0`` and ``camera=-1`` take the domain's defaults (:func:`env_domain`).
    """
    domain, task = parse_env_id(env_id)
    from torchwm.envs.dmc import DMCEnv

    return DMCEnv(domain, task, image_size=image_size, action_repeat=action_repeat, camera=camera,
                  goal_steps=goal_steps, seed=seed)


make_env = make


def register_gymnasium_ids() -> None:
    """Register every suite task with gymnasium (idempotent)."""
    for domain, task in dmc_tasks():
        name = gym_name(domain, task)
        if name not in gym.registry:
            gym.register(id=name, entry_point="torchwm.envs.dmc:DMCEnv",
                         kwargs={"domain": domain, "task": task})
