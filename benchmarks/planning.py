"""Goal-reaching success and planning latency of CEM and MPPI across budgets (samples x iterations).

Usage::

    python benchmarks/planning.py --run runs/reacher                 # a run trained by `torchwm train/demo`
    python benchmarks/planning.py --run runs/point_mass --episodes 50 --budgets 100x5 300x10

For each planner and budget: success rate (95% Wilson interval) over ``--episodes`` goal-reaching
episodes (the same seeds for every row), mean final physics distance, and the latency of one planning
call for 1 episode and for ``--parallel`` episodes planned in one batch. Prints a markdown table and
writes a success-vs-budget plot (``--plot``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch


def latency_ms(agent, episodes: int, repeats: int = 10) -> float:
    """Milliseconds of one planning call for ``episodes`` episodes at once (median of ``repeats``)."""
    model = agent.world_model
    planner = agent.planner()
    h, size = model.history, agent.cfg.image_size
    frames = torch.randint(0, 256, (episodes, h, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        context = model.context(model.encode(frames))
        goal = model.encode(frames[:, -1])
        planner.plan(model, context, goal, model.action_low, model.action_high)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            planner.plan(model, context, goal, model.action_low, model.action_high)
            times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    from torchwm import JEPAAgent

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="trained run directory")
    parser.add_argument("--planners", nargs="+", default=["cem", "mppi"])
    parser.add_argument("--budgets", nargs="+", default=["100x5", "300x10", "600x10"], help="SAMPLESxITERATIONS")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--plot", default="docs/planning_budget.png", help="success-vs-budget figure ('' = none)")
    args = parser.parse_args()

    agent = JEPAAgent.load(args.run)
    agent.cfg.logging.progress = False
    agent.cfg.logging.tensorboard = False
    torch.set_num_threads(os.cpu_count() or 1)
    p = agent.cfg.planning
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; run {args.run} "
          f"({agent.cfg.env.id}, horizon {p.horizon}, {args.episodes} episodes of {agent.episode_steps()} steps)")
    print()
    print("| planner | samples x iterations | success | 95% CI | final distance | ms / call (1 episode) "
          f"| ms / call ({args.parallel} episodes) | ms / episode-step ({args.parallel} episodes) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows, baseline = [], None
    for name in args.planners:
        for budget in args.budgets:
            samples, iterations = map(int, budget.lower().split("x"))
            agent.cfg.planning.planner, agent.cfg.planning.samples = name, samples
            agent.cfg.planning.iterations = iterations
            agent.cfg.planning.elites = min(p.elites, samples)
            one, many = latency_ms(agent, 1), latency_ms(agent, args.parallel)
            result = agent.evaluate(episodes=args.episodes, parallel=args.parallel, baseline=baseline is None, videos=0)
            if baseline is None:
                baseline = result.results["random"]
            r = result.results["planner"]
            lo, hi = r.interval
            rows.append((name, samples * iterations, r.rate))
            print(f"| {name} | {samples} x {iterations} | {r.rate:.0%} | {lo:.0%}-{hi:.0%} | {r.final_distance.mean():.3f} "
                  f"| {one:.1f} | {many:.1f} | {many / args.parallel:.1f} |", flush=True)
    lo, hi = baseline.interval
    print(f"| random | - | {baseline.rate:.0%} | {lo:.0%}-{hi:.0%} | {baseline.final_distance.mean():.3f} | - | - | - |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name in args.planners:
            xs = [b for n, b, _ in rows if n == name]
            ys = [100 * s for n, _, s in rows if n == name]
            ax.plot(xs, ys, marker="o", label=name.upper())
        ax.axhline(100 * baseline.rate, color="gray", linestyle="--", label="random")
        ax.set_xscale("log")
        ax.set_xlabel("rollouts per planning call (samples x iterations)")
        ax.set_ylabel("success rate (%)")
        ax.set_title(agent.cfg.env.id)
        ax.legend()
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
