"""Pixel environments: dm_control suite tasks behind the gymnasium API, with goal-reaching protocols.

Importing this package registers ``torchwm/dmc-<domain>-<task>-v0`` with gymnasium.
"""

from torchwm.envs.domains import DOMAINS, DomainSpec
from torchwm.envs.registry import env_domain, env_ids, gym_id, make, parse_env_id, register_gymnasium_ids

register_gymnasium_ids()

__all__ = ["DOMAINS", "DomainSpec", "env_domain", "env_ids", "gym_id", "make", "parse_env_id"]
