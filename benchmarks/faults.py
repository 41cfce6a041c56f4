"""Random ``kill -9`` during training and collection, then the same command again: does every run end bitwise equal
to an uninterrupted one, with no temp file and no process left behind?

    python benchmarks/faults.py --kills 20          # 20 kills of `torchwm train`, 20 of `torchwm collect`

Training: a tiny point_mass world model (conv encoder, 16 px, 40 steps, a checkpoint every 4 and an evaluation
every 8 steps). Each trial starts ``torchwm train`` into a new run directory, kills the process with SIGKILL at a
random moment of its run (after a random number of its metrics records, then a random delay under a second;
drawn from ``--seed``), runs the same command to completion and compares ``model.pt``
tensor by tensor, and ``metrics.jsonl`` (timings aside), with an uninterrupted run. Collection: ``torchwm collect``
of 12 episodes of 100 steps at 64 px with 2 workers into a new store, killed at a random moment between 10% and
70% of the uninterrupted collection's time and rerun the same way; every episode's arrays are compared
with an uninterrupted collection. After each trial: files named like an unfinished atomic write (``.tmp-*``) and
any process of the killed command still alive 10 s later are reported. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRAIN = ["image_size=16", "embed_dim=16", "batch_size=4", "learning_rate=1e-3", "predict_horizon=2",
         "env.id=dmc:point_mass-easy", "model.encoder=conv", "model.conv_width=4", "model.history=2",
         "model.temporal_hidden=16", "model.predictor_hidden=32", "data.episodes=4", "data.steps=20",
         "data.workers=1", "train.steps=40", "train.eval_every=8", "train.checkpoint_every=4", "train.warmup_steps=2",
         "logging.progress=false", "logging.log_every=2"]
COLLECT = ["env.id=dmc:point_mass-easy", "image_size=64", "data.episodes=12", "data.steps=100", "data.workers=2",
           "logging.progress=false"]
TIMING_KEYS = ("frames_per_s", "time", "_s")
UNITS = {"train": 20}  # metrics records of a training run (40 steps, one every 2)


def command(kind: str, where: Path, store: Path) -> list[str]:
    sets = TRAIN + [f"logging.run_dir={where}", f"data.path={store}"] if kind == "train" else \
        COLLECT + [f"data.path={where}"]
    args = [sys.executable, "-m", "torchwm", "train" if kind == "train" else "collect", "--config", "dmc_point_mass"]
    return args + [a for item in sets for a in ("--set", item)]


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def descendants(pid: int) -> set[int]:
    """PIDs whose ancestry (through /proc) includes ``pid``, or that were reparented but share its process group."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # process group of the command (started with start_new_session)
            found.add(int(entry.name))
    found.discard(pid)
    return found


def progress(kind: str, where: Path) -> int:
    """Lines of the metrics log (training) or episodes written (collection) so far."""
    if kind == "train":
        log = where / "metrics.jsonl"
        return log.read_text().count("\n") if log.exists() else 0
    return len(list(where.glob("ep_*"))) if where.exists() else 0


def killed_then_resumed(cmd: list[str], kind: str, where: Path, after: int, delay: float) -> tuple[int, bool]:
    """Start ``cmd``; once it has made ``after`` units of progress (see :func:`progress`), wait ``delay`` seconds
    more and SIGKILL it; rerun it to completion. Returns (processes still alive 10 s after the kill, whether the
    kill landed before the command ended)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None and progress(kind, where) < after:
        time.sleep(0.02)
    time.sleep(delay)
    landed = proc.poll() is None
    if landed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while descendants(proc.pid) and time.time() < deadline:
        time.sleep(0.25)
    orphans = descendants(proc.pid)
    for pid in orphans:  # leave the machine clean for the next trial
        os.kill(pid, signal.SIGKILL)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return len(orphans), landed


def same_model(a: Path, b: Path) -> bool:
    import torch

    sa = torch.load(a / "model.pt", map_location="cpu", weights_only=True)
    sb = torch.load(b / "model.pt", map_location="cpu", weights_only=True)
    return sa["model"].keys() == sb["model"].keys() and all(torch.equal(sa["model"][k], sb["model"][k])
                                                            for k in sa["model"])


def same_metrics(a: Path, b: Path) -> bool:
    import json

    def read(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not any(t in k for t in TIMING_KEYS)} for r in rows]

    return read(a) == read(b)


def same_store(a: Path, b: Path) -> bool:
    from torchwm.data import TrajectoryStore

    sa, sb = TrajectoryStore(a), TrajectoryStore(b)
    if sa.indices != sb.indices:
        return False
    for i in sa.indices:
        ea, eb = sa.episode(i), sb.episode(i)
        if not all(np.array_equal(x, y) for x, y in zip(ea, eb)):
            return False
    return True


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".tmp")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per kind (training, collection)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=["train", "collect"], choices=["train", "collect"])
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="torchwm-faults-") as tmp:
        root = Path(tmp)
        shared_store = root / "store"
        for kind in args.kinds:
            reference = root / f"{kind}-reference"
            if kind == "train":  # the episodes first, so that trials time (and kill) training
                collect_first = command("train", reference, shared_store)
                collect_first[collect_first.index("train")] = "collect"
                run(collect_first)
            seconds = run(command(kind, reference, shared_store))
            equal = orphans = temps = landed = 0
            for trial in range(args.kills):
                where = root / f"{kind}-{trial}"
                # a random point: training, after a random number of metrics records plus a random delay; collection
                # (whose episodes land in bursts as workers finish), a random moment of the uninterrupted run's time
                if kind == "train":
                    after, delay = int(rng.integers(0, UNITS[kind] - 1)), float(rng.uniform(0.0, 1.0))
                else:
                    after, delay = 0, float(rng.uniform(0.1, 0.7)) * seconds
                left, hit = killed_then_resumed(command(kind, where, shared_store), kind, where, after, delay)
                same = same_store(reference, where) if kind == "collect" else (
                    same_model(reference, where) and same_metrics(reference, where))
                equal += same
                orphans += left
                temps += len(temp_files(where))
                landed += hit
                print(f"{kind} {trial}: killed {delay:.2f} s after {after} {'records' if kind == 'train' else 'episodes'}"
                      f" ({'mid-run' if hit else 'after it'}"
                      f"), {'bitwise equal' if same else 'DIFFERENT'}, {left} orphan(s), "
                      f"{len(temp_files(where))} temp file(s)", flush=True)
            rows.append((kind, args.kills, landed, equal, orphans, temps, seconds))
    print("\n| command | kills | landed mid-run | bitwise equal after resume | orphan processes | temp files left "
          "| uninterrupted run (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, kills, landed, equal, orphans, temps, seconds in rows:
        print(f"| torchwm {kind} | {kills} | {landed} | {equal}/{kills} | {orphans} | {temps} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
