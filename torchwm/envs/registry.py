"""Environment ids: ``make("dmc:<domain>-<task>")`` and gymnasium ids ``torchwm/dmc-<domain>-<task>-v0``."""

from __future__ import annotations

from functools import lru_cache

import gymnasium as gym

from torchwm.envs.rendering import configure_headless_gl

configure_headless_gl()

DMC_PREFIX = "dmc:"
GYM_NAMESPACE = "torchwm"


@lru_cache(maxsize=1)
def _dmc_tasks() -> tuple[tuple[str, str], ...]:
    from dm_control import suite

    return tuple(sorted(suite.ALL_TASKS))


def env_ids() -> list[str]:
    """Every id :func:`make` accepts, e.g. ``"dmc:reacher-easy"``, sorted."""
    return [f"{DMC_PREFIX}{domain}-{task}" for domain, task in _dmc_tasks()]


def parse_env_id(env_id: str) -> tuple[str, str]:
    """``"dmc:reacher-easy"`` → ``("reacher", "easy")``; an unknown id raises ``ValueError`` listing valid ids."""
    if isinstance(env_id, str) and env_id.startswith(DMC_PREFIX):
        domain, sep, task = env_id[len(DMC_PREFIX):].partition("-")
        if sep and (domain, task) in _dmc_tasks():
            return domain, task
    raise ValueError(f"unknown environment id {env_id!r}; valid ids: {', '.join(env_ids())}")


def make(
    env_id: str,
    image_size: int = 64,
    action_repeat: int = 1,
    seed: int | None = None,
    camera: int = -1,
    goal_steps: int = 25,
) -> gym.Env:
    """Build a pixel environment (see :class:`torchwm.envs.dmc.DMCEnv`).

    ``seed`` seeds the first ``reset()`` called without a seed. Observations are uint8 ``(3, H, W)``.
    """
    domain, task = parse_env_id(env_id)
    from torchwm.envs.dmc import DMCEnv

    return DMCEnv(domain, task, image_size=image_size, action_repeat=action_repeat, camera=camera,
                  goal_steps=goal_steps, seed=seed)


make_env = make


def gym_id(env_id: str) -> str:
    """``"dmc:reacher-easy"`` → ``"torchwm/dmc-reacher-easy-v0"``."""
    domain, task = parse_env_id(env_id)
    return f"{GYM_NAMESPACE}/dmc-{domain}-{task}-v0"


def register_gymnasium_ids() -> None:
    """Register every suite task with gymnasium (idempotent)."""
    for domain, task in _dmc_tasks():
        name = f"{GYM_NAMESPACE}/dmc-{domain}-{task}-v0"
        if name not in gym.registry:
            gym.register(id=name, entry_point="torchwm.envs.dmc:DMCEnv",
                         kwargs={"domain": domain, "task": task})
