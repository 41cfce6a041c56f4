"""World-model training throughput and peak memory for the dm_control presets.

Usage::

    python benchmarks/train.py                                  # dmc_point_mass and dmc_reacher, 60 steps each
    python benchmarks/train.py --presets dmc_reacher --steps 200

Each preset trains in a fresh interpreter for ``--steps`` optimisation steps into a temporary run
directory, on the preset's own trajectory store (collected first if missing; collection is not timed).
Prints a markdown table: training frames/s (frames encoded per second of optimisation, evaluation
and checkpoints excluded), seconds per step, and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys


_CHILD = r'''
import json, resource, sys, tempfile, time
import torch
from torchwm import JEPAAgent
from torchwm.config import load_config

preset, steps = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory(prefix="torchwm-bench-") as tmp:
    cfg = load_config(preset, [f"train.steps={steps}", f"logging.run_dir={tmp}/run", "logging.progress=false",
                               "logging.tensorboard=false", f"train.eval_every={10 * steps}",
                               f"train.checkpoint_every={10 * steps}", f"logging.log_every={max(steps // 4, 1)}"])
    agent = JEPAAgent(cfg)
    agent.collect()
    start = time.perf_counter()
    metrics = agent.train()
    wall = time.perf_counter() - start
print(json.dumps(dict(fps=metrics["train/frames_per_s"], wall_s=wall, steps=steps,
                      batch=cfg.batch_size, frames_per_step=cfg.batch_size * agent.sequence_length,
                      encoder=cfg.model.encoder, threads=torch.get_num_threads(),
                      rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
'''


def run_one(preset: str, steps: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, preset, str(steps)], capture_output=True, text=True,
                          env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    if proc.returncode != 0:
        raise SystemExit(f"{preset} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]), preset=preset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["dmc_point_mass", "dmc_reacher"])
    parser.add_argument("--steps", type=int, default=60, help="optimisation steps per preset")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print()
    print("| preset | encoder | batch x frames | steps | frames/s | s/step | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for preset in args.presets:
        r = run_one(preset, args.steps)
        print(f"| {r['preset']} | {r['encoder']} | {r['batch']} x {r['frames_per_step'] // r['batch']} | {r['steps']} "
              f"| {r['fps']:.0f} | {r['frames_per_step'] / r['fps']:.3f} | {r['rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
