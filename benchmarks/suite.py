"""The goal-reaching suite: every domain with a goal protocol, trained and evaluated with one recipe.

Usage::

    python benchmarks/suite.py                                  # every suite domain, the dmc_goal preset
    python benchmarks/suite.py --domains cartpole pendulum      # some domains
    python benchmarks/suite.py --quick                          # 1500 training steps, 20 episodes: a smoke run
    python benchmarks/suite.py --variant vicreg: --variant "sigreg:train.regularizer=sigreg"   # VICReg vs SIGReg
    python benchmarks/suite.py --write docs/BENCHMARKS.md       # also put the table into that file

For each domain (its suite task, from the domain's spec) and variant (the preset plus some ``--set`` overrides,
the same for every domain): collect the data (cached in ``runs/data``), train a world model into
``runs/suite/<variant>-<domain>``, and evaluate goal reaching on ``--episodes`` episodes drawn from ``--seed``
(default 1000: seeds no setting was chosen on; training's own evaluations use the config's seed, 0), the planner
beside a uniform random policy on the same starts and goals. Each domain runs in a process of its own, so its peak
resident memory is its own. Finished rows are kept in ``runs/suite/<variant>-<domain>.json`` and reused
(``--fresh`` reruns them); an interrupted training resumes.

Prints a Markdown table (success with its 95% Wilson interval, random policy, mean final distance, collection
and training time, planning milliseconds per episode-step, peak RSS, the state probe's R² on held-out frames) and
draws a bar figure (``--figure``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
EVAL_SEED = 1000
"""the seed of the suite's evaluation episodes: no setting was chosen on it (screen settings on other seeds)"""


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"sigreg:train.regularizer=sigreg,train.sigreg_weight=0.1"`` → ``("sigreg", [overrides])``."""
    name, _, sets = text.partition(":")
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise SystemExit(f"error: --variant {text!r}: expected NAME:SECTION.FIELD=VALUE,... (NAME letters/digits)")
    return name, [s.strip() for s in sets.split(",") if s.strip()]


def env_id_of(domain: str) -> str:
    """A domain name (or a full ``dmc:domain-task`` id) → the env id the suite runs."""
    from torchwm.envs.domains import domain_spec, goal_domains

    if domain.startswith("dmc:"):
        return domain
    spec = domain_spec(domain)
    if spec.goal is None or not spec.task:
        raise SystemExit(f"error: --domains {domain!r}: not a suite domain; choose from {', '.join(goal_domains())}")
    return f"dmc:{domain}-{spec.task}"


def run_one(preset: str, env_id: str, variant: str, sets: list[str], steps: int | None, episodes: int, seed: int,
            root: Path) -> dict:
    """Collect, train and evaluate one domain in this process; the row of the table as a dict."""
    from torchwm import JEPAAgent
    from torchwm.config import load_config
    from torchwm.envs.ids import parse_env_id

    domain, task = parse_env_id(env_id)
    overrides = [f"env.id={env_id}", f"logging.run_dir={root / f'{variant}-{domain}'}", "logging.progress=false",
                 *sets, *([f"train.steps={steps}"] if steps else [])]
    agent = JEPAAgent(load_config(preset, overrides))
    start = time.perf_counter()
    agent.collect()
    collect_s = time.perf_counter() - start
    resumed = agent.run.has_training_state()
    start = time.perf_counter()
    metrics = agent.train()
    train_s = time.perf_counter() - start
    result = agent.evaluate(episodes=episodes, seed=seed, baseline=True)
    summary = result.summary()
    kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"domain": domain, "task": task, "variant": variant, "overrides": sets, "steps": metrics.get("steps"),
            "embed_dim": agent.cfg.frame_embed_dim, "episode_steps": result.episode_steps,
            "episodes": episodes, "seed": seed, "planner": summary["planner"], "random": summary["random"],
            "collect_s": collect_s, "train_s": train_s, "resumed": resumed, "peak_rss_gib": kib / 2**20,
            "probe_r2": metrics.get("eval/probe_r2")}


def row_file(root: Path, variant: str, env_id: str) -> Path:
    """Where one finished row is kept: ``<root>/<variant>-<domain>.json``."""
    from torchwm.envs.ids import parse_env_id

    root.mkdir(parents=True, exist_ok=True)
    return root / f"{variant}-{parse_env_id(env_id)[0]}.json"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def header(rows: list[dict], preset: str, episodes: int, seed: int) -> str:
    """The line above the table: machine, date, preset, episodes and the seeds the rows were evaluated on (fresh
    only when every row used :data:`EVAL_SEED`)."""
    seeds = sorted({r["seed"] for r in rows} or {seed})
    fresh = " (the suite's evaluation seed, never used to choose settings)" if seeds == [EVAL_SEED] else ""
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {date.today()}; preset `{preset}`, "
            f"{rows[0]['episodes'] if rows else episodes} episodes per domain from seed "
            f"{', '.join(map(str, seeds))}{fresh}, the random policy on the same starts and goals")


def table(rows: list[dict]) -> str:
    lines = ["| domain | variant | embed dim | success | 95% CI | random | final distance (planner / random) "
             "| collection | training | planning ms / episode-step | peak RSS | probe R² |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p, q = r["planner"], r["random"]
        train = _minutes(r["train_s"]) + (" (resumed)" if r["resumed"] else "")
        lines.append(f"| {r['domain']}-{r['task']} | {r['variant']} | {r['embed_dim']} | **{p['success_rate']:.0%}** "
                     f"| {p['success_ci95_low']:.0%}-{p['success_ci95_high']:.0%} | {q['success_rate']:.0%} "
                     f"| {p['final_distance_mean']:.3f} / {q['final_distance_mean']:.3f} | {_minutes(r['collect_s'])} "
                     f"| {train} | {p['ms_per_episode_step']:.1f} | {r['peak_rss_gib']:.2f} GiB "
                     f"| {'-' if r.get('probe_r2') is None else format(r['probe_r2'], '.2f')} |")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    """Success per domain (one bar per variant, the 95% interval as error bars) beside the random policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    domains = list(dict.fromkeys(r["domain"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    width = 0.8 / (len(variants) + 1)
    fig, ax = plt.subplots(figsize=(1.6 * len(domains) + 2, 3.2))
    x = np.arange(len(domains))
    for i, name in enumerate([*variants, "random"]):
        vals, lo, hi = [], [], []
        for d in domains:
            row = next((r for r in rows if r["domain"] == d and (name == "random" or r["variant"] == name)), None)
            s = None if row is None else row["random" if name == "random" else "planner"]
            vals.append(np.nan if s is None else s["success_rate"])
            lo.append(0 if s is None else s["success_rate"] - s["success_ci95_low"])
            hi.append(0 if s is None else s["success_ci95_high"] - s["success_rate"])
        ax.bar(x + (i - len(variants) / 2) * width, vals, width, yerr=[lo, hi], capsize=2,
               label=name if name == "random" else f"planner ({name})", color="0.7" if name == "random" else None)
    ax.set_xticks(x, domains)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("goals reached")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_section(markdown: Path, text: str) -> None:
    """Replace the text between the suite markers of ``markdown`` (append a section when they are missing)."""
    doc = markdown.read_text() if markdown.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip() + f"\n\n## Goal-reaching suite\n\n{block}\n"
    markdown.write_text(doc)


def main() -> None:
    from torchwm.envs.domains import goal_domains

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=None, help=f"default: all ({', '.join(goal_domains())})")
    parser.add_argument("--preset", default="dmc_goal", help="the recipe every domain uses (default dmc_goal)")
    parser.add_argument("--variant", action="append", default=None, metavar="NAME:SECTION.FIELD=VALUE,...",
                        help="a variant of the preset, the same overrides on every domain; repeatable "
                             "(default: 'vicreg:', the preset as it is)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=EVAL_SEED,
                        help=f"seed of the evaluation episodes (default {EVAL_SEED}: fresh; screen settings on others)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--quick", action="store_true", help="1500 training steps and 20 episodes per domain")
    parser.add_argument("--root", default="runs/suite", help="run directories and cached rows")
    parser.add_argument("--fresh", action="store_true", help="rerun rows already in --root")
    parser.add_argument("--figure", default="docs/suite.png", help="bar figure ('' = none)")
    parser.add_argument("--write", default="", help="a Markdown file whose suite section gets the table")
    parser.add_argument("--one", nargs=2, metavar=("ENV_ID", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.episodes = args.steps or 1500, min(args.episodes, 20)
    variants = dict(parse_variant(v) for v in (args.variant or ["vicreg:"]))
    root = Path(args.root)

    if args.one:  # the child process of one row: it writes the row's file itself, so no result hangs on the parent
        env_id, variant = args.one
        row = run_one(args.preset, env_id, variant, variants[variant], args.steps, args.episodes, args.seed, root)
        row_file(root, variant, env_id).write_text(json.dumps(row, indent=1))
        return

    rows = []
    for domain in args.domains or goal_domains():
        env_id = env_id_of(domain)
        for variant in variants:
            cached = row_file(root, variant, env_id)
            if cached.exists() and not args.fresh:
                rows.append(json.loads(cached.read_text()))
                print(f"{env_id} ({variant}): cached in {cached}", file=sys.stderr)
                continue
            print(f"{env_id} ({variant}): collecting, training and evaluating ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--one", env_id, variant, "--preset", args.preset,
                   "--episodes", str(args.episodes), "--seed", str(args.seed), "--root", str(root),
                   *[a for v in (args.variant or ["vicreg:"]) for a in ("--variant", v)],
                   *(["--steps", str(args.steps)] if args.steps else [])]
            done = subprocess.run(cmd)
            if done.returncode != 0 or not cached.exists():
                raise SystemExit(f"error: {env_id} ({variant}) failed with exit status {done.returncode}; rerun to "
                                 "resume it (its training continues from the last checkpoint)")
            rows.append(json.loads(cached.read_text()))

    text = f"{header(rows, args.preset, args.episodes, args.seed)}\n\n{table(rows)}"
    print(text)
    if args.figure and rows:
        figure(rows, Path(args.figure))
        print(f"\nfigure: {args.figure}")
    if args.write:
        write_section(Path(args.write), text + (f"\n\n![suite]({Path(args.figure).name})" if args.figure else ""))


if __name__ == "__main__":
    main()
