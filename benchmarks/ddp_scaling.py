"""Training throughput with 1 and with N processes (torchrun, gloo on the CPU or NCCL on GPUs), same global batch.

    python benchmarks/ddp_scaling.py                            # dmc_reacher_planning, 1 vs 2 processes
    python benchmarks/ddp_scaling.py --config sigreg_tiny --job pretrain --procs 1 2 4

Each run trains ``--steps`` steps into a fresh run directory (the data collected beforehand, so only training is
timed) with ``OMP_NUM_THREADS`` = ``--threads`` per process, and reads ``train/frames_per_s`` (frames of all ranks
per second of training, evaluations excluded) from its metrics log: the median over the logged windows after the
first. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(job: str, config: str, procs: int, steps: int, threads: int, run_dir: Path, extra: list[str]) -> dict:
    sets = [f"train.steps={steps}", f"train.eval_every={steps}", f"train.checkpoint_every={steps}",
            "logging.log_every=10", "logging.progress=false", "logging.tensorboard=false", f"logging.run_dir={run_dir}",
            *extra]
    args = [a for item in sets for a in ("--set", item)]
    launcher = [sys.executable, "-m", "torchwm"] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "-m", "torchwm"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([*launcher, job, "--config", config, *args], check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    fps = [r["train/frames_per_s"] for r in rows if "train/frames_per_s" in r][1:]
    return {"fps": statistics.median(fps), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="dmc_reacher_planning")
    parser.add_argument("--job", default="train", choices=["train", "pretrain"])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more config overrides")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.job == "train":  # collect first: only training is timed
        subprocess.run([sys.executable, "-m", "torchwm", "collect", "--config", args.config,
                        *[a for item in args.extra for a in ("--set", item)]], check=True, capture_output=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="torchwm-scaling-") as tmp:
        for procs in args.procs:
            results[procs] = run(args.job, args.config, procs, args.steps, args.threads, Path(tmp) / f"p{procs}",
                                 args.extra)
            print(f"{procs} process(es): {results[procs]['fps']:.1f} frames/s", flush=True)
    base = results[args.procs[0]]["fps"]
    print(f"\n`{args.config}`, {args.steps} steps, {args.threads} thread(s) per process, global batch unchanged\n")
    print("| processes | frames/s (all ranks) | speed-up | wall incl. start-up (s) |")
    print("|---:|---:|---:|---:|")
    for procs, r in results.items():
        print(f"| {procs} | {r['fps']:.1f} | {r['fps'] / base:.2f}x | {r['wall']:.0f} |")


if __name__ == "__main__":
    main()
