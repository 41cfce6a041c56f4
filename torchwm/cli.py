"""Command line: ``torchwm demo | collect | train | plan``.

Every command takes ``--config FILE.yaml`` (a preset from ``configs/`` or a run's ``config.yaml``)
and any number of ``--set section.field=value`` overrides.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
DEMO_PRESET = "dmc_point_mass"


def _add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--config", default=default, help="YAML config (a file or a preset name from configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field; repeatable")


def _resolve_config_path(name: str | None) -> str | None:
    if name is None or Path(name).exists():
        return name
    preset = PRESET_DIR / f"{name}.yaml"
    if preset.exists():
        return str(preset)
    presets = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise SystemExit(f"error: config {name!r} is neither a file nor a preset; presets: {', '.join(presets)}")


def _config(args: argparse.Namespace):
    from torchwm.config import load_config

    try:
        return load_config(_resolve_config_path(args.config), args.overrides).validate()
    except ValueError as err:
        raise SystemExit(f"error: invalid config:\n{err}") from None


def cmd_collect(args: argparse.Namespace) -> None:
    """Collect reward-free episodes for ``env.id`` into the config's trajectory store."""
    from torchwm.data.paths import ensure_config_store
    from torchwm.data.store import StoreError

    cfg = _config(args)
    try:
        store = ensure_config_store(cfg)
    except StoreError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{store.path}: {len(store)} episodes, {store.num_frames} frames of {cfg.env.id}")


def cmd_train(args: argparse.Namespace) -> None:
    """Train a world model (collecting its data first if needed); resumes an interrupted run."""
    from torchwm import JEPAAgent

    agent = JEPAAgent(_config(args))
    metrics = agent.train()
    _print_training(agent, metrics)


def cmd_plan(args: argparse.Namespace) -> None:
    """Evaluate goal reaching with a trained run (planner vs random policy on the same starts and goals)."""
    from torchwm import JEPAAgent

    run = Path(args.run)
    if not (run / "config.yaml").exists():
        raise SystemExit(f"error: {run} is not a run directory (no config.yaml); train one with `torchwm train`")
    try:
        agent = JEPAAgent.load(run)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: cannot load the run {run}: {err}") from None
    if args.overrides:
        try:
            agent.cfg = agent.cfg.override(args.overrides).validate(check_paths=False)
        except ValueError as err:
            raise SystemExit(f"error: invalid override:\n{err}") from None
    result = agent.evaluate(episodes=args.episodes)
    print(result.table())
    print(f"results: {run / 'eval' / 'goal_reaching.json'}; videos: {run / 'eval' / 'videos'}")


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job: collect (cached), train and evaluate zero-shot goal reaching on the default task."""
    from torchwm import JEPAAgent

    agent = JEPAAgent(_config(args))
    print(f"[1/3] data: {agent.cfg.data.episodes} reward-free episodes of {agent.cfg.env.id}")
    agent.collect()
    print(f"[2/3] training the world model into {agent.run_dir}")
    metrics = agent.train()
    _print_training(agent, metrics)
    print(f"[3/3] zero-shot goal reaching, {agent.cfg.planning.eval_episodes} episodes")
    result = agent.evaluate()
    print(result.table())
    print(f"TensorBoard: tensorboard --logdir {agent.run_dir}")


def _print_training(agent, metrics: dict) -> None:
    keys = [k for k in sorted(metrics) if k.startswith("eval/pred_over_copy_step")]
    ratios = ", ".join(f"{metrics[k]:.2f}" for k in sorted(keys, key=lambda k: int(k.rsplit("step", 1)[1])))
    print(f"trained {metrics.get('steps', 0)} steps; held-out prediction error / copy-last per step: [{ratios}]; "
          f"probe R^2 {metrics.get('eval/probe_r2', float('nan')):.3f}; model: {agent.run_dir / 'model.pt'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="torchwm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, default in [("demo", cmd_demo, DEMO_PRESET), ("collect", cmd_collect, None),
                                ("train", cmd_train, None)]:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        _add_config_args(p, default)
        p.set_defaults(func=func)
    p = sub.add_parser("plan", help=cmd_plan.__doc__.splitlines()[0], description=cmd_plan.__doc__)
    p.add_argument("--run", required=True, help="run directory written by `torchwm train` or `torchwm demo`")
    p.add_argument("--episodes", type=int, default=None, help="episodes (default: planning.eval_episodes)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="planning.FIELD=VALUE",
                   help="override a config field for this evaluation (e.g. planning.samples=100)")
    p.set_defaults(func=cmd_plan)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
