"""Command line: ``torchwm demo | collect``.

Every command takes ``--config FILE.yaml`` (a preset from ``configs/`` or a run's ``config.yaml``)
and any number of ``--set section.field=value`` overrides.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
DEMO_PRESET = "dmc_reacher"


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
    from torchwm.data.paths import store_path
    from torchwm.data.collect import ensure_collected
    from torchwm.data.store import StoreError

    cfg = _config(args)
    try:
        store = ensure_collected(
            cfg.env.id, store_path(cfg), episodes=cfg.data.episodes, steps=cfg.data.steps,
            policy=cfg.data.policy, workers=cfg.data.workers, seed=cfg.seed, image_size=cfg.image_size,
            action_repeat=cfg.env.action_repeat, camera=cfg.env.camera, noise_beta=cfg.data.noise_beta,
            progress=cfg.logging.progress,
        )
    except StoreError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{store.path}: {len(store)} episodes, {store.num_frames} frames of {cfg.env.id}")


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job on the default dm_control task (collection is cached on re-runs)."""
    cmd_collect(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="torchwm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, default in [("demo", cmd_demo, DEMO_PRESET), ("collect", cmd_collect, None)]:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        _add_config_args(p, default)
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
