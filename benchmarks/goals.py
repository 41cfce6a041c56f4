"""The goal protocols of the suite domains, measured: how far goals are from the start, and what a random policy reaches.

Usage::

    python benchmarks/goals.py                     # every domain with a goal protocol, 100 episodes each
    python benchmarks/goals.py --domains cartpole --action-repeats 1 2 4 8

For each domain (its suite task) and action repeat: over ``--episodes`` seeded episodes (the evaluation's seeds),
the share of goals already met at the start, the median start-to-goal distance per coordinate, and the share a
uniform random policy reaches within the domain's step budget. Success is judged from the physics, so frames are
not rendered here (rendering is ~99% of an episode's cost at 64 px); the planner's figures come from
``benchmarks/suite.py``. Prints the Markdown table of ``docs/goals.md``.
"""

from __future__ import annotations

import argparse

import numpy as np

from torchwm.envs.dmc import DMCEnv
from torchwm.envs.domains import domain_spec, goal_domains
from torchwm.eval.goal_reaching import episode_seeds, wilson_interval


class PhysicsOnlyEnv(DMCEnv):
    """A :class:`DMCEnv` whose observations are a blank 1x1 frame: goals, distances and successes unchanged."""

    def _render_frame(self) -> np.ndarray:
        return np.zeros((3, 1, 1), dtype=np.uint8)


def measure(domain: str, action_repeat: int, episodes: int, seed: int) -> dict:
    spec = domain_spec(domain)
    env = PhysicsOnlyEnv(domain, spec.task, image_size=1, action_repeat=action_repeat)
    rng = np.random.default_rng(seed)
    at_start, reached, offsets = 0, 0, []
    for s in episode_seeds(seed, episodes):
        _, info = env.reset(seed=s)
        offsets.append(np.abs(spec.goal.differences(env.physics, env.goal_state)))
        success = info["success"]
        at_start += success
        for _ in range(spec.episode_steps):
            *_, info = env.step(rng.uniform(env.action_space.low, env.action_space.high))
            success = success or info["success"]
        reached += success
    lo, hi = wilson_interval(reached, episodes)
    where, success = spec.goal.describe(env)
    return {"domain": domain, "action_repeat": env.action_repeat, "at_start": at_start / episodes, "where": where,
            "success": success,
            "random": reached / episodes, "random_ci": (lo, hi), "offset": np.median(np.array(offsets), axis=0)}


def coordinates_text(domain: str) -> str:
    spec = domain_spec(domain)
    return ", ".join(f"{c.joint} ({'rad' if c.kind == 'hinge' else 'm'})" for c in spec.coordinates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=goal_domains())
    parser.add_argument("--action-repeats", nargs="+", type=int, default=[0], help="0 = the domain's (default)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the episodes (default 1000, the suite's)")
    args = parser.parse_args()
    print(f"{args.episodes} episodes per row from seed {args.seed}; the random policy draws uniform actions\n")
    print("| domain | coordinates | success | goal | action repeat | budget | median start-to-goal offset "
          "| met at the start | random policy | 95% CI |")
    print("|---|---|---|---|---:|---:|---|---:|---:|---:|")
    for domain in args.domains:
        spec = domain_spec(domain)
        for repeat in args.action_repeats:
            r = measure(domain, repeat, args.episodes, args.seed)
            offset = " / ".join(f"{v:.3f}" for v in r["offset"])
            print(f"| {domain}-{spec.task} | {coordinates_text(domain)} | {r['success']} | {r['where']} "
                  f"| {r['action_repeat']} | {spec.episode_steps} | {offset} | {r['at_start']:.0%} | {r['random']:.0%} "
                  f"| {r['random_ci'][0]:.0%}-{r['random_ci'][1]:.0%} |", flush=True)


if __name__ == "__main__":
    main()
