"""Does distance in the embedding follow distance in the world? (point_mass)

Usage::

    python benchmarks/latent_distance.py --run runs/point_mass

Renders the mass at ``--positions`` random positions (at rest) around one seeded goal, embeds them
with the run's encoder and prints the Spearman rank correlation between latent L2 distance to the
goal's embedding and physical distance, plus the mean latent distance per physical-distance band.
A planner can only follow the latent distance where it keeps growing with the physical one.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    from scipy.stats import spearmanr

    from torchwm import JEPAAgent, make_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/point_mass")
    parser.add_argument("--positions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    agent = JEPAAgent.load(args.run)
    cfg = agent.cfg
    if not cfg.env.id.startswith("dmc:point_mass"):
        raise SystemExit(f"error: this benchmark needs a point_mass run, {args.run} is {cfg.env.id}")
    env = make_env(cfg.env.id, image_size=cfg.image_size, action_repeat=cfg.env.action_repeat)
    _, info = env.reset(seed=args.seed)
    goal_state = info["goal_state"]
    rng = np.random.default_rng(0)
    frames, positions = [], []
    for _ in range(args.positions):
        state = goal_state.copy()
        state[:2] = rng.uniform(-0.29, 0.29, 2)
        state[2:] = 0.0
        frames.append(env.unwrapped.render_state(state))
        positions.append(state[:2])
    env.close()
    model = agent.world_model
    with torch.no_grad():
        z = model.encode(torch.from_numpy(np.stack(frames)))
        z_goal = model.encode(torch.from_numpy(info["goal_image"][None]))
    latent = (z - z_goal).norm(dim=1).numpy()
    physical = np.linalg.norm(np.stack(positions) - goal_state[:2], axis=1)
    rho = spearmanr(latent, physical).statistic
    print(f"{args.run}: Spearman(latent distance, physical distance) = {rho:.2f} over {args.positions} positions")
    print()
    print("| physical distance (m) | positions | latent distance (mean ± std) |")
    print("|---|---:|---:|")
    for lo, hi in [(0, .02), (.02, .05), (.05, .1), (.1, .2), (.2, .4), (.4, .9)]:
        sel = (physical >= lo) & (physical < hi)
        if sel.any():
            print(f"| {lo:.2f}-{hi:.2f} | {sel.sum()} | {latent[sel].mean():.2f} ± {latent[sel].std():.2f} |")


if __name__ == "__main__":
    main()
