"""Environment ids: ``"dmc:<domain>-<task>"`` for every dm_control suite task, and their gymnasium names.

Imports nothing else of torchwm but the headless-rendering set-up, so the config can check ids with it.
"""

from __future__ import annotations

from functools import lru_cache

from torchwm.envs.rendering import configure_headless_gl

configure_headless_gl()

DMC_PREFIX = "dmc:"
GYM_NAMESPACE = "torchwm"


@lru_cache(maxsize=1)
def dmc_tasks() -> tuple[tuple[str, str], ...]:
    """Every ``(domain, task)`` of the dm_control suite, sorted."""
    from dm_control import suite

    return tuple(sorted(suite.ALL_TASKS))


def env_ids() -> list[str]:
    """Every id :func:`torchwm.envs.make` accepts, e.g. ``"dmc:reacher-easy"``, sorted."""
    return [f"{DMC_PREFIX}{domain}-{task}" for domain, task in dmc_tasks()]


def parse_env_id(env_id: str) -> tuple[str, str]:
    """``"dmc:reacher-easy"`` → ``("reacher", "easy")``; an unknown id raises ``ValueError`` listing valid ids."""
    if isinstance(env_id, str) and env_id.startswith(DMC_PREFIX):
        domain, sep, task = env_id[len(DMC_PREFIX):].partition("-")
        if sep and (domain, task) in dmc_tasks():
            return domain, task
    raise ValueError(f"unknown environment id {env_id!r}; valid ids: {', '.join(env_ids())}")


def gym_name(domain: str, task: str) -> str:
    """``("reacher", "easy")`` → ``"torchwm/dmc-reacher-easy-v0"``."""
    return f"{GYM_NAMESPACE}/dmc-{domain}-{task}-v0"


def gym_id(env_id: str) -> str:
    """``"dmc:reacher-easy"`` → ``"torchwm/dmc-reacher-easy-v0"``."""
    return gym_name(*parse_env_id(env_id))
