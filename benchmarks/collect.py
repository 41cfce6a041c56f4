"""Collection throughput: frames/s of ``torchwm.data.collect`` for 1 and N worker processes.

Usage::

    python benchmarks/collect.py                          # point_mass and reacher, 32 x 100 steps, 1 and 2 workers
    python benchmarks/collect.py --episodes 16 --steps 200 --workers 1 2 4
    python benchmarks/collect.py --rss-frames 2000 20000  # also: peak memory of larger collections

Each configuration runs in a fresh interpreter and collects into a fresh temporary store; the wall time
covers the whole ``collect()`` call (store creation, worker start-up, every episode written to disk),
not the interpreter's own imports. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

DEFAULT_ENVS = ["dmc:point_mass-easy", "dmc:reacher-easy"]

_CHILD = '''
import json, os, resource, sys, tempfile, time

from torchwm.data import CollectSpec, collect


def main(env_id: str, episodes: int, steps: int, workers: int, image_size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="torchwm-bench-") as tmp:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        start = time.perf_counter()
        store = collect(CollectSpec(env_id, steps=steps, image_size=image_size), os.path.join(tmp, "store"),
                        episodes=episodes, workers=workers, progress=False)
        wall = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(tmp) for f in files)
        frames = store.num_frames
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - cpu0
    print(json.dumps(dict(frames=frames, wall_s=wall, cpu_s=cpu, store_mib=size / 2**20,
                          parent_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          worker_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)))


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
'''


def run_one(env_id: str, episodes: int, steps: int, workers: int, image_size: int) -> dict:
    """One ``collect()`` into a temporary store, in a fresh interpreter (nothing carried between runs).

    Returns ``frames``, ``wall_s`` (the ``collect()`` call), ``fps``, ``cpu_s`` (CPU seconds of the process
    and its workers during the call), ``store_mib`` and the peak RSS in MiB
    of the collecting process (``parent_mib``) and of its largest worker (``worker_mib``; 0 with 1 worker).
    """
    with tempfile.TemporaryDirectory(prefix="torchwm-bench-") as tmp:
        script = os.path.join(tmp, "run_collect.py")
        with open(script, "w") as f:
            f.write(_CHILD)
        proc = subprocess.run([sys.executable, script, env_id, str(episodes), str(steps), str(workers),
                               str(image_size)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark run {env_id} workers={workers} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(env=env_id, workers=workers, episodes=episodes, steps=steps,
                  fps=result["frames"] / result["wall_s"])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=DEFAULT_ENVS, help="environment ids")
    parser.add_argument("--episodes", type=int, default=32, help="episodes per configuration")
    parser.add_argument("--steps", type=int, default=100, help="env steps per episode")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (first = baseline)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rss-frames", type=int, nargs="*", default=[],
                        help="also collect about this many frames each (first env) and report peak memory")
    parser.add_argument("--rss-workers", type=int, default=2, help="workers for the --rss-frames collections")
    args = parser.parse_args(argv)

    print(f"{platform.machine()}, {os.cpu_count()} CPUs, MUJOCO_GL={os.environ.get('MUJOCO_GL', 'egl')}, "
          f"Python {platform.python_version()}; {args.image_size}x{args.image_size} frames\n")
    print("| env | workers | episodes x steps | frames | wall (s) | frames/s | speed-up | CPU cores busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for env_id in args.envs:
        base = None
        for workers in args.workers:
            r = run_one(env_id, args.episodes, args.steps, workers, args.image_size)
            base = base or r["fps"]
            print(f"| {env_id} | {workers} | {args.episodes} x {args.steps} | {r['frames']} | {r['wall_s']:.2f} "
                  f"| {r['fps']:.1f} | {r['fps'] / base:.2f}x | {r['cpu_s'] / r['wall_s']:.2f} |", flush=True)

    if args.rss_frames:
        print("\n| env | workers | frames | store on disk (MiB) | wall (s) | frames/s "
              "| main process peak RSS (MiB) | worker peak RSS (MiB) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        env_id = args.envs[0]
        for frames in args.rss_frames:
            episodes = max(1, round(frames / (args.steps + 1)))
            r = run_one(env_id, episodes, args.steps, args.rss_workers, args.image_size)
            print(f"| {env_id} | {args.rss_workers} | {r['frames']} | {r['store_mib']:.0f} | {r['wall_s']:.1f} "
                  f"| {r['fps']:.1f} | {r['parent_mib']:.0f} | {r['worker_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
