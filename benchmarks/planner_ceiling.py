"""The planner's ceiling on each suite domain: the recipe's planner with the simulator as its model.

Usage::

    python benchmarks/planner_ceiling.py                                   # every suite domain, 20 episodes
    python benchmarks/planner_ceiling.py --domains cartpole acrobot --episodes 40
    python benchmarks/planner_ceiling.py --learned runs/suite              # beside the suite's learned rows
    python benchmarks/planner_ceiling.py --domains acrobot --set planning.horizon=15 --seed 2000   # another budget

For each domain: the preset's planner (CEM, its samples, iterations and horizon, the closest-step cost) plans
with :class:`~torchwm.eval.simulator_planning.SimulatorModel`, which rolls candidates out in MuJoCo from the true
state and scores them by the goal protocol's own coordinates; a uniform random policy runs on the same starts and
goals. Perfect prediction and a cost that is the success measure: what this planner can reach in the episode's
step budget. With ``--learned``, the suite's rows for the same domains (``<dir>/vicreg-<domain>.json``) are put
beside it, with the learned planner's success on the very episodes planned here (from the run's saved
evaluation, when it covered them), so a domain's shortfall splits into what the planner costs (100% - ceiling) and
what the learned representation and model cost (ceiling - learned). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def evaluate(preset: str, domain: str, episodes: int, seed: int, parallel: int, threads: int,
             sets: list[str]) -> dict:
    """Simulator-planner and random-policy results of one domain on ``episodes`` episodes from ``seed``."""
    from suite import env_id_of

    from torchwm import JEPAAgent
    from torchwm.config import load_config
    from torchwm.eval.goal_reaching import RandomPolicy, episode_seeds, run_episodes
    from torchwm.eval.simulator_planning import simulator_goal_reaching

    agent = JEPAAgent(load_config(preset, [f"env.id={env_id_of(domain)}", "logging.progress=false", *sets]))
    seeds, steps = episode_seeds(seed, episodes), agent.episode_steps()
    start = time.perf_counter()
    planned = simulator_goal_reaching(agent.make_env, agent.planner(), seeds, steps, parallel=parallel, seed=seed,
                                      threads=threads, progress=False,
                                      execute_steps=agent.cfg.planning.execute_steps)
    seconds = time.perf_counter() - start
    low, high = agent.action_bounds()
    randomly, _ = run_episodes(agent.make_env, RandomPolicy(low, high, seed), seeds, steps, parallel=parallel,
                               progress=False)
    return {"domain": domain, "episodes": episodes, "seed": seed, "seeds": seeds, "episode_steps": steps,
            "simulator": planned.summary(), "random": randomly.summary(), "seconds": seconds}


def _rate(summary: dict) -> str:
    return (f"{summary['success_rate']:.0%} ({summary['success_ci95_low']:.0%}-"
            f"{summary['success_ci95_high']:.0%})")


def learned_on_same_episodes(run: Path, seeds: list[int]) -> str:
    """The learned planner's successes on ``seeds`` from a saved evaluation of ``run`` that covered them."""
    from torchwm.runs import EVAL_DIR, GOAL_REACHING_FILE

    for path in [run / EVAL_DIR / GOAL_REACHING_FILE, *sorted(run.glob(f"{EVAL_DIR}/seed-*/{GOAL_REACHING_FILE}"))]:
        if not path.exists():  # the run's own planning settings only: not the folders of other settings inside
            continue
        saved = json.loads(path.read_text())
        if saved["seeds"][:len(seeds)] == seeds:
            hits = saved["episodes_detail"]["planner"]["success"][:len(seeds)]
            return f"{sum(hits)}/{len(seeds)}"
    return "-"


def table(rows: list[dict], learned: Path | None) -> str:
    lines = ["| domain | planner on the simulator | learned model (suite) | learned, same episodes | random | "
             "final distance (simulator / random) | ms / episode-step | wall |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        learned_text = same = "-"
        row_path = learned / f"vicreg-{r['domain']}.json" if learned else None
        if row_path is not None and row_path.exists():
            suite_row = json.loads(row_path.read_text())
            learned_text = f"{_rate(suite_row['planner'])}, {suite_row['episodes']} eps, seed {suite_row['seed']}"
            same = learned_on_same_episodes(row_path.with_suffix(""), r["seeds"])
        s, rnd = r["simulator"], r["random"]
        lines.append(f"| {r['domain']} | **{_rate(s)}** | {learned_text} | {same} | {rnd['success_rate']:.0%} | "
                     f"{s['final_distance_mean']:.3f} / {rnd['final_distance_mean']:.3f} | "
                     f"{s['ms_per_episode_step']:.0f} | {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    from torchwm.envs.domains import goal_domains

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", nargs="+", default=None, help=f"default: all ({', '.join(goal_domains())})")
    parser.add_argument("--preset", default="dmc_goal", help="whose planner settings (default dmc_goal)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override the preset (e.g. planning.horizon=15); repeatable")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the episodes (default 1000, the suite's)")
    parser.add_argument("--parallel", type=int, default=10, help="episodes planned in one batch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="MuJoCo rollout threads")
    parser.add_argument("--learned", type=Path, default=None, help="a suite root whose vicreg rows go beside")
    args = parser.parse_args()
    rows = []
    for domain in args.domains or goal_domains():
        rows.append(evaluate(args.preset, domain, args.episodes, args.seed, args.parallel, args.threads, args.sets))
        print(f"{domain}: simulator {_rate(rows[-1]['simulator'])}, random {rows[-1]['random']['success_rate']:.0%}, "
              f"{rows[-1]['seconds'] / 60:.1f} min", flush=True)
    print(f"\n{args.episodes} episodes per domain from seed {args.seed}, preset {args.preset}'s planner "
          f"{' '.join(args.sets)}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {date.today()}\n")
    print(table(rows, args.learned))


if __name__ == "__main__":
    main()
