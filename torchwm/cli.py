"""Command line: ``torchwm demo | collect | train | plan | pretrain | embed | visualize | shapes``.

Every command that takes ``--config`` accepts a YAML file (e.g. a run's ``config.yaml``) or the name of
a preset shipped with torchwm, and any number of ``--set section.field=value`` overrides.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shlex
import sys
from pathlib import Path
from typing import Iterator

DEMO_PRESET = "dmc_point_mass"
GOAL_PRESET = "dmc_goal"
PRETRAIN_PRESET = "sigreg_tiny"


def _add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    from torchwm.config import preset_names

    parser.add_argument("--config", default=default,
                        help=f"a YAML config file, or a preset: {', '.join(preset_names())}"
                             + (f" (default: {default})" if default else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field; repeatable")


def _config(args: argparse.Namespace):
    from torchwm.config import load_config

    env = getattr(args, "env", None)
    if env:
        from torchwm.envs.ids import parse_env_id

        try:
            domain, task = parse_env_id(env)
        except ValueError as err:
            raise SystemExit(_error_line(f"--env: {err}")) from None
    if args.config is None:  # train/collect: the library's defaults are a 224 px ViT-Base, not a CPU job
        args.config = GOAL_PRESET if env else DEMO_PRESET
        if args.command != "demo" or env:
            print(f"no --config given: using the preset {args.config} (pass --config FILE_OR_PRESET to choose)",
                  file=sys.stderr)
    try:
        cfg = load_config(args.config, args.overrides)
        if env:
            sets = _env_overrides(env, domain, task, cfg.logging.run_dir, args.overrides)
            return cfg.override(sets).validate(check_paths=False)
        return cfg
    except (OSError, ValueError) as err:
        text = str(err)
        raise SystemExit(_error_line(text if str(args.config) in text else f"{args.config}: {text}")) from None


def _env_overrides(env_id: str, domain: str, task: str, run_dir: str, overrides: list[str]) -> list[str]:
    """``--env`` (its ``domain`` and ``task`` parsed): the env id, and (unless ``--set logging.run_dir=...`` names
    one) a run directory of its own, ``<run_dir>-<domain>-<task>``, so one config trains several domains side by
    side."""
    sets = [f"env.id={env_id}"]
    if not any(o.split("=", 1)[0].strip() == "logging.run_dir" for o in overrides):
        sets.append(f"logging.run_dir={run_dir.rstrip('/')}-{domain}-{task}")
    return sets


def _error_line(message: str) -> str:
    """``error: ...`` on one line (multi-line messages, such as config problem lists, joined with "; ")."""
    parts = [part.strip() for part in str(message).splitlines() if part.strip()]
    text = "; ".join(parts).replace(":;", ":")
    return text if text.startswith("error: ") else f"error: {text}"


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise SystemExit(_error_line(f"{name} {value}: must be a positive integer"))


def _agent(args: argparse.Namespace, need: str = ""):
    """The agent of ``--config``, which must be able to do what ``need`` names: "episodes" (its data is collected
    from env.id), "planning" (a world model) or "pretraining"."""
    from torchwm import JEPAAgent

    agent = JEPAAgent(_config(args))
    able = {"": True, "episodes": getattr(agent, "reads_episodes", False), "planning": hasattr(agent, "evaluate"),
            "pretraining": agent.pretrains}[need]
    if not able:
        what = {"episodes": "a config whose data is collected from env.id (dataset trajectories or episodes)",
                "planning": "a world-model config (dataset: trajectories), e.g. --config dmc_point_mass",
                "pretraining": "a pretraining config (dataset imagefolder, episodes or videos), e.g. --config "
                               f"{PRETRAIN_PRESET}"}[need]
        raise SystemExit(f"error: {args.command} needs {what}; this config has dataset={agent.cfg.dataset!r}")
    return agent


def cmd_collect(args: argparse.Namespace) -> None:
    """Collect reward-free episodes for ``env.id`` into the config's trajectory store."""
    from torchwm.data.store import StoreError

    agent = _agent(args, need="episodes")
    try:
        store = agent.collect()
    except StoreError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{store.path}: {len(store)} episodes, {store.num_frames} frames of {agent.cfg.env.id}")


def cmd_train(args: argparse.Namespace) -> None:
    """Train what the config describes (a world model, collecting its data first if needed, or an encoder's
    pretraining); resumes an interrupted run."""
    agent = _agent(args)
    print(agent.describe(agent.train()))


def cmd_plan(args: argparse.Namespace) -> None:
    """Evaluate goal reaching with a trained run (planner vs random policy on the same starts and goals)."""
    from torchwm.runs import GOAL_REACHING_FILE, RunDir

    run = Path(args.run)
    if not RunDir(run).config.exists():
        raise SystemExit(f"error: {run} is not a run directory (no config.yaml); train one with `torchwm train`")
    agent = _load(run)
    if not hasattr(agent, "evaluate"):
        raise SystemExit(f"error: {run} is an image-pretraining run; plan needs a world-model run")
    if args.overrides:
        try:
            agent.cfg = agent.cfg.override(args.overrides).validate(check_paths=False)
        except ValueError as err:
            raise SystemExit(f"error: invalid override:\n{err}") from None
    _positive("--episodes", args.episodes)
    result = agent.evaluate(episodes=args.episodes, seed=args.seed)
    print(result.table())
    out = agent.evaluation_dir
    print(f"results: {out / GOAL_REACHING_FILE}; videos: {out / 'videos'}")


def cmd_compare(args: argparse.Namespace) -> None:
    """Compare two goal-reaching evaluations on the same episodes, episode by episode: how many goals both
    reached, each one alone, and an exact sign test on those it alone reached (two runs or two planner settings
    evaluated with the same `torchwm plan --seed S --episodes N`)."""
    from torchwm.eval.comparison import compare_goal_reaching, load_goal_reaching

    labels = tuple(args.labels) if args.labels else (str(args.a), str(args.b))
    result = compare_goal_reaching(load_goal_reaching(args.a), load_goal_reaching(args.b), policy=args.policy,
                                   labels=labels)
    print(result.table())


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job: collect (cached), train and evaluate zero-shot goal reaching on the default task."""
    from torchwm.envs.domains import require_goals

    agent = _agent(args, need="planning")
    require_goals(agent.cfg.env.id, "torchwm demo (collect, train, then evaluate goal reaching)")
    print(f"[1/3] data: {agent.cfg.data.episodes} reward-free episodes of {agent.cfg.env.id}")
    agent.collect()
    print(f"[2/3] training the world model into {agent.run_dir}")
    print(agent.describe(agent.train()))
    print(f"[3/3] zero-shot goal reaching, {agent.cfg.planning.eval_episodes} episodes")
    result = agent.evaluate()
    print(result.table())
    print(f"TensorBoard: tensorboard --logdir {agent.run_dir}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    """Pretrain the spatial encoder (pretrain.method: sigreg, ijepa or vjepa; on images, episodes or videos);
    resumes an interrupted run."""
    agent = _agent(args, need="pretraining")
    print(agent.describe(agent.train()))


def cmd_embed(args: argparse.Namespace) -> None:
    """Embed every image under a folder with a trained encoder: an .npy of features and a file list."""
    import numpy as np

    from torchwm.backbone import load_backbone
    from torchwm.data.images import ImageFiles
    from torchwm.eval.classification import embed_dataset

    _positive("--batch-size", args.batch_size)
    try:
        backbone = load_backbone(args.run)
        files = ImageFiles(args.images, _resize_to_tensor(backbone.image_size))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    feats, index = embed_dataset(backbone, files, args.batch_size, progress=True)
    # An unreadable file's slot holds its stand-in, the next readable image, labelled with that image's
    # index; so the labels seen are exactly the readable files, each first met with its features.
    readable, first = np.unique(index, return_index=True)
    feats = feats[first]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, feats.astype(np.float32))
    listing = out.with_suffix(".files.txt")
    listing.write_text("".join(files.files[i] + "\n" for i in readable), encoding="utf-8")
    print(f"{out}: {feats.shape[0]} x {feats.shape[1]} float32 features; files in order: {listing}"
          + (f" ({len(files) - len(readable)} unreadable skipped)" if len(readable) < len(files) else ""))


def _resize_to_tensor(size: int):
    """Images of any size → ``(3, size, size)`` in [0, 1] so they batch (no resize when size is 0)."""
    import torch
    from torchvision.transforms import v2

    steps = [v2.Resize((size, size), antialias=True)] if size else []
    return v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.float32, scale=True)])


def cmd_visualize(args: argparse.Namespace) -> None:
    """Figures for a saved run, without training, saved under RUN/figures and logged to TensorBoard:
    world model: latent rollouts (PCA, error by step, imagined frames) and the embedding projector;
    image pretraining: mask overlays (context green, targets red)."""
    run = Path(args.run)
    agent = _load(run)
    try:
        paths = agent.visualize(images=args.images, count=args.count)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"figures: {', '.join(sorted(p.name for p in paths))} in {paths[0].parent} (TensorBoard: tensorboard --logdir {run})")


def _load(run: Path):
    from torchwm import JEPAAgent

    try:
        return JEPAAgent.load(run)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: cannot load the run {run}: {err}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="torchwm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in [("demo", cmd_demo), ("collect", cmd_collect), ("train", cmd_train)]:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        _add_config_args(p)  # none: the demo preset, or with --env the one recipe
        p.add_argument("--env", default=None, metavar="ENV_ID",
                       help=f"a dm_control task, e.g. dmc:cartpole-swingup: trains on it (with the preset {GOAL_PRESET} "
                            "unless --config names another) into a run directory of its own, <run_dir>-<domain>-<task>; without --config "
                            f"or --env: the preset {DEMO_PRESET}")
        p.set_defaults(func=func)
    p = sub.add_parser("pretrain", help=cmd_pretrain.__doc__.splitlines()[0], description=cmd_pretrain.__doc__)
    _add_config_args(p, PRETRAIN_PRESET)
    p.set_defaults(func=cmd_pretrain)
    p = sub.add_parser("embed", help=cmd_embed.__doc__.splitlines()[0], description=cmd_embed.__doc__)
    p.add_argument("--run", required=True, help="a run directory (I-JEPA or world model) or its model.pt")
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", default="embeddings.npy", help="output .npy (N, D); the file list goes beside it")
    p.add_argument("--batch-size", type=int, default=128)
    p.set_defaults(func=cmd_embed)
    p = sub.add_parser("visualize", help=cmd_visualize.__doc__.splitlines()[0], description=cmd_visualize.__doc__)
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--images", default=None, help="image runs: folder of images to draw masks on (default: the "
                                                  "training folder)")
    p.add_argument("--count", type=int, default=None, help="image runs: images in the figure (default 8)")
    p.set_defaults(func=cmd_visualize)
    # listed for --help only: main() hands `torchwm shapes ...` to the generator's own parser
    sub.add_parser("shapes", help="generate the labelled synthetic shapes dataset (train/val ImageFolder) used "
                                  "by the I-JEPA presets; see torchwm shapes --help")
    p = sub.add_parser("compare", help=cmd_compare.__doc__.splitlines()[0], description=cmd_compare.__doc__)
    for name in ("a", "b"):
        p.add_argument(name, help="a goal_reaching.json, the eval folder holding one (RUN/eval/seed-S) or a run "
                                  "directory (its RUN/eval/goal_reaching.json)")
    p.add_argument("--policy", default="planner", help="the policy compared (default: planner; or random)")
    p.add_argument("--labels", nargs=2, default=None, metavar=("A", "B"), help="names for the two in the table")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("plan", help=cmd_plan.__doc__.splitlines()[0], description=cmd_plan.__doc__)
    p.add_argument("--run", required=True, help="run directory written by `torchwm train` or `torchwm demo`")
    p.add_argument("--episodes", type=int, default=None, help="episodes (default: planning.eval_episodes)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the episodes' starts and goals (default: the run's seed); another seed gives "
                        "fresh episodes, e.g. to check planner settings chosen on the default ones")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="planning.FIELD=VALUE",
                   help="override a config field for this evaluation (e.g. planning.samples=100)")
    p.set_defaults(func=cmd_plan)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["shapes"]:  # the generator parses its own options (argparse.REMAINDER drops --flags)
        from torchwm.data.synthetic import main as shapes_main

        code = shapes_main(argv[1:], prog="torchwm shapes")
        if code:
            raise SystemExit(code)
        return
    args = parser.parse_args(argv)
    code = _run(args, argv)
    if code:
        raise SystemExit(code)


# Errors a user can act on: their message names the file or field and what to do; anything else is a bug and
# keeps its traceback. TORCHWM_DEBUG=1 shows the traceback of these too.
def _user_errors() -> tuple[type[BaseException], ...]:
    from torchwm.data.store import StoreError
    from torchwm.training import NonFiniteLossError

    from torchwm.locks import RunLockedError

    return (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, StoreError,
            NonFiniteLossError, RunLockedError)


RESUMABLE_COMMANDS = ("train", "pretrain", "demo", "collect")


@contextlib.contextmanager
def _run_events_shown() -> Iterator[None]:
    """Show torchwm's run events (``logging`` at INFO: start, resume from step N, checkpoints, evaluations) on
    stderr, written around the progress bars (tqdm's ``logging_redirect_tqdm``)."""
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    logger = logging.getLogger("torchwm")
    if os.environ.get("RANK", "0") not in ("", "0"):  # under torchrun, rank 0 speaks for all
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not again through a root handler some dependency installed
    try:
        with logging_redirect_tqdm(loggers=[logger]):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run a command; ordinary failures become one ``error:`` line and exit status 1, Ctrl-C exit status 130."""
    if os.environ.get("TORCHWM_DEBUG"):
        with _run_events_shown():
            args.func(args)
        return 0
    command = "torchwm " + shlex.join(argv)
    other_rank = os.environ.get("RANK", "0") not in ("", "0")  # under torchrun, rank 0 prints for all
    try:
        with _run_events_shown(), contextlib.redirect_stdout(open(os.devnull, "w") if other_rank else sys.stdout):
            args.func(args)
    except KeyboardInterrupt:
        hint = (f"; run the same command to resume from the last checkpoint: {command}"
                if args.command in RESUMABLE_COMMANDS else "")
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno == errno.ENOSPC:
            where = f" writing {err.filename}" if err.filename else ""
            print(_error_line(f"no space left on the device{where}; free some space (nothing written so far is "
                              f"lost: files are replaced atomically), then rerun: {command}"), file=sys.stderr)
            return 1
        if not isinstance(err, _user_errors()):
            raise
        print(_error_line(str(err)), file=sys.stderr)
        return 1
    except _user_errors() as err:
        print(_error_line(str(err)), file=sys.stderr)
        return 1
    finally:
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # torchrun: leave the process group cleanly
            from torchwm import distributed

            distributed.cleanup()
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])
