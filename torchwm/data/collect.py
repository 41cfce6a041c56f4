"""Reward-free trajectory collection into a :class:`~torchwm.data.store.TrajectoryStore`.

Episode ``i`` is a pure function of ``(seed, i)``: ``np.random.SeedSequence([seed, i])`` seeds both the
environment reset and the policy, so the store does not depend on the number of workers or on the
order in which episodes finish.

Rendering dominates the cost (~7-10 ms per 64x64 frame with Mesa's software EGL on one thread;
physics ~0.01 ms), so ``workers > 1`` spreads episodes over processes. Each worker builds its own
environment (GL contexts cannot cross processes; the "spawn" start method is used), writes its
episodes straight to disk and sends back only ``(index, n_frames)``: the parent never holds frames,
whatever the store size. Measured throughput: ``docs/BENCHMARKS.md``.

Scripts need no ``if __name__ == "__main__":`` guard: workers are started without re-importing the
caller's main module (see :func:`_main_module_hidden`). This module does not import torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import types
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from torchwm.config import DataConfig, EnvConfig
from torchwm.data.policies import (  # noqa: F401 (public here)
    POLICIES, USES_NOISE_BETA, NoisePolicy, Policy, RandomPolicy, make_policy)
from torchwm.data.store import StoreMeta, TrajectoryStore

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ one episode


@dataclass(frozen=True)
class CollectSpec:
    """How episodes are collected: everything that decides their frames, in one picklable object.

    ``action_repeat=0`` and ``camera=-1`` take the domain's defaults
    (:class:`~torchwm.envs.domains.DomainSpec`); the action repeat is resolved on construction, so a
    store records the repeat its frames were made with. Check values with :meth:`check`.
    """

    env_id: str
    steps: int
    """env steps per episode (an episode is shorter if the task's time limit ends it first)"""
    policy: str = DataConfig.policy
    seed: int = 0
    image_size: int = 64
    action_repeat: int = EnvConfig.action_repeat
    camera: int = EnvConfig.camera
    noise_beta: float = DataConfig.noise_beta
    """temporal correlation of the "noise" policy and the "mixed" policy's correlated episodes (unused by "random")"""

    def __post_init__(self) -> None:
        if self.action_repeat == 0 and isinstance(self.env_id, str):
            from torchwm.envs import env_domain

            try:
                object.__setattr__(self, "action_repeat", env_domain(self.env_id).action_repeat)
            except ValueError:
                pass  # an unknown env id: check() names it

    def check(self) -> CollectSpec:
        """Raise ``ValueError`` naming the first bad setting; returns ``self``."""
        from torchwm.envs import parse_env_id

        parse_env_id(self.env_id)
        for name, low in [("steps", 1), ("seed", 0), ("image_size", 1), ("action_repeat", 1), ("camera", -1)]:
            _check_int(name, getattr(self, name), low)
        if self.policy not in POLICIES:
            raise ValueError(f"unknown collection policy {self.policy!r}; valid policies: {', '.join(sorted(POLICIES))}")
        if not 0.0 <= float(self.noise_beta) < 1.0:
            raise ValueError(f"noise_beta={self.noise_beta!r}: must be in [0, 1)")
        return self

    def store_name(self) -> str:
        """``<env>_<size>px_ar<repeat>[_cam<camera>]_<policy>_<steps>steps_seed<seed>``: everything that changes
        the frames is in the name, so specs that agree share a store and a different one never reuses it."""
        env = self.env_id.replace(":", "-")
        camera = "" if self.camera < 0 else f"_cam{self.camera}"
        policy = f"{self.policy}{self.noise_beta:g}" if self.policy in USES_NOISE_BETA else self.policy
        return f"{env}_{self.image_size}px_ar{self.action_repeat}{camera}_{policy}_{self.steps}steps_seed{self.seed}"

    def make_env(self):
        """The environment episodes are collected in."""
        from torchwm.envs import make

        return make(self.env_id, image_size=self.image_size, action_repeat=self.action_repeat, camera=self.camera)


DEFAULT_STORE_ROOT = os.path.join("runs", "data")
"""where :meth:`CollectSpec.store_name` stores go when no path is given (relative to the working directory)"""


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r}: must be an integer >= {low}")


def episode_seeds(seed: int, index: int) -> tuple[int, np.random.Generator]:
    """``(env reset seed, policy RNG)`` of episode ``index``, both derived from ``SeedSequence([seed, index])``."""
    env_ss, policy_ss = np.random.SeedSequence([seed, index]).spawn(2)
    return int(env_ss.generate_state(1, np.uint32)[0]), np.random.default_rng(policy_ss)


class EpisodeCollector:
    """Owns one environment and writes whole episodes of ``spec`` into the store at ``path``, one at a time."""

    def __init__(self, spec: CollectSpec, path: str) -> None:
        self.spec = spec
        self.env = spec.make_env()
        self.store = TrajectoryStore(path, check=False)

    def run(self, index: int) -> tuple[int, int]:
        """Collect and write episode ``index``; returns ``(index, n_frames)``."""
        s, env = self.spec, self.env
        reset_seed, rng = episode_seeds(s.seed, index)
        space = env.action_space
        policy = make_policy(s.policy, space.low, space.high, rng, s.noise_beta)
        obs, info = env.reset(seed=reset_seed)
        frames = np.empty((s.steps + 1, *obs.shape), dtype=np.uint8)
        states = np.empty((s.steps + 1, info["state"].shape[0]), dtype=np.float64)
        actions = np.empty((s.steps, space.shape[0]), dtype=np.float32)
        rewards = np.empty((s.steps,), dtype=np.float32)
        frames[0], states[0] = obs, info["state"]
        T = 0
        while T < s.steps:
            action = policy()
            obs, reward, terminated, truncated, info = env.step(action)
            actions[T], rewards[T] = action, reward
            T += 1
            frames[T], states[T] = obs, info["state"]
            if terminated or truncated:
                break
        self.store.write_episode(index, frames[:T + 1], actions[:T], states[:T + 1], rewards[:T])
        return index, T + 1

    def close(self) -> None:
        self.env.close()


_WORKER: EpisodeCollector | None = None


def _init_worker(spec: CollectSpec, path: str) -> None:
    """Pool initializer: exit with the parent, ignore Ctrl-C (the parent handles it) and build this
    process's environment."""
    global _WORKER
    _exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = EpisodeCollector(spec, path)


_PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal this process gets when its parent exits."""


def _exit_with_parent(deathsig: bool = True) -> None:
    """End this worker process when the process that started it dies, even by ``kill -9``.

    Otherwise a worker waiting for its next task lives on forever (it holds the write end of its own
    task queue's pipe too, so the pipe never reaches EOF), a few hundred MB each. Linux
    (``deathsig``): ``PR_SET_PDEATHSIG`` has the kernel send SIGKILL when the parent exits (strictly, the
    parent's thread that started the worker: :func:`_run_pool` starts them from the thread that waits for
    them). Everywhere: a daemon thread waits on the parent's sentinel (a pipe that reaches EOF when the
    parent dies) and checks ``os.getppid()`` once a second, then ends the process; finished episodes are
    on disk and partial ones only leave temporary files that the next collection removes.
    """
    parent = mp.parent_process()
    if parent is None:
        return
    if deathsig and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent.pid:  # the parent died before the signal was asked for
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="torchwm-watch-parent", daemon=True).start()


def _watch_parent(parent: mp.process.BaseProcess) -> None:
    while parent.is_alive() and os.getppid() == parent.pid:
        parent.join(1.0)
    os._exit(1)


def _run_episode(index: int) -> tuple[int, int]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(index)


# --------------------------------------------------------------------------------------- public API


def _open_store(spec: CollectSpec, path: str | os.PathLike) -> TrajectoryStore:
    """Open the store at ``path`` (checking it matches ``spec``) or create it, probing the env for its dimensions."""
    env = spec.make_env()
    try:
        meta = StoreMeta(**dataclasses.asdict(spec), frame_shape=tuple(env.observation_space.shape),
                         action_dim=int(env.action_space.shape[0]), state_dim=int(env.unwrapped.state_dim))
    finally:
        env.close()
    return TrajectoryStore.create(path, meta)


def _collect_indices(store: TrajectoryStore, spec: CollectSpec, indices: list[int], workers: int,
                     progress: bool) -> None:
    """Collect ``indices`` into ``store`` in a pool of ``workers`` processes (also for one worker, so
    every renderer runs with the same settings and the parent never creates a GL context)."""
    from tqdm import tqdm

    if not indices:
        return
    store.clean_temp()
    workers = min(workers, len(indices))
    bar = tqdm(total=len(indices) * (spec.steps + 1), unit="frame", unit_scale=True, smoothing=0.1,
               desc=f"collect {spec.env_id}", disable=not progress, dynamic_ncols=True)
    done_frames = 0
    with bar:
        for n in _run_pool(spec, os.fspath(store.path), indices, workers):
            done_frames += n
            bar.update(n)
        bar.total = done_frames  # episodes cut short by the task's time limit have fewer frames


def _run_pool(spec: CollectSpec, path: str, indices: list[int], workers: int) -> Iterable[int]:
    """Yield ``n_frames`` of each finished episode; workers write the episodes themselves.

    ``ProcessPoolExecutor`` rather than ``multiprocessing.Pool``: when a worker dies (OOM killer,
    segfault in the GL driver) it raises ``BrokenProcessPool`` instead of waiting forever for the lost
    task. On any exception (including Ctrl-C) the workers are terminated; finished episodes are on disk.
    """
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker, initargs=(spec, path))
    with _worker_render_threads(workers), _main_module_hidden():  # workers start at the first submits
        pending = {executor.submit(_run_episode, i): i for i in indices}
    finished = 0
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                pending.pop(future)
                try:
                    _, n = future.result()
                except BrokenProcessPool as err:
                    raise RuntimeError(
                        f"a collection worker for {spec.env_id} died ({err}); {len(indices) - finished} of "
                        f"{len(indices)} episodes were not collected. Finished episodes are kept in {path}: "
                        "ensure_collected() (or `torchwm collect`) collects only the missing ones") from err
                finished += 1
                yield n
    except BaseException:
        for future in pending:
            future.cancel()
        for proc in list((getattr(executor, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.terminate()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start spawned workers without re-importing the caller's ``__main__``.

    A spawned child normally imports the parent's main script; a script that calls ``collect`` (or
    ``JEPAAgent(cfg).train()``) at top level without an ``if __name__ == "__main__"`` guard would then
    run again in every worker and fail. Workers need nothing from ``__main__`` (they get a plain
    :class:`CollectSpec` and import ``torchwm`` themselves), so while they start, ``__main__`` is a bare
    module without ``__file__`` or ``__spec__`` and multiprocessing sends no main module to import.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@contextlib.contextmanager
def _worker_render_threads(workers: int) -> Iterator[None]:
    """Give processes started inside this block one renderer thread each (``LP_NUM_THREADS=1``)
    unless the user set ``LP_NUM_THREADS``: ``workers`` is then the number of cores used.

    Mesa's software rasterizer (llvmpipe) otherwise starts one thread per CPU in every process, and
    processes scale better than its threads. Measured on 2 CPUs, one process rendering 64x64 frames:
    point_mass 152 frames/s on 1.0 core with one thread, 173 frames/s on 1.3 cores with two; reacher
    103 vs 119 frames/s. With two workers and default threads, two identical runs gave 154 and 106
    frames/s (oversubscribed), with one thread per worker 157 and 158.
    """
    if "LP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["LP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        del os.environ["LP_NUM_THREADS"]


def collect(spec: CollectSpec, path: str | os.PathLike, episodes: int, workers: int = 1,
            progress: bool = True) -> TrajectoryStore:
    """Append ``episodes`` new reward-free episodes collected as ``spec`` says to the store at ``path``.

    The store is created if needed; an existing one must have been collected with the same settings
    (else :class:`~torchwm.data.store.StoreError`). New episodes take the indices after the largest
    stored one. ``spec.policy`` is a name in :data:`POLICIES` ("random": i.i.d. uniform; "noise": AR(1)
    correlated with coefficient ``spec.noise_beta``). ``workers`` processes collect in parallel (the
    episodes are identical with any number). If interrupted, finished episodes are kept.

    Frames are uint8 ``(T+1, 3, image_size, image_size)`` per episode, ``T = spec.steps`` unless the task's
    time limit ends the episode first. Returns the reopened store. Another process collecting into ``path`` is
    waited for (see :meth:`~torchwm.data.store.TrajectoryStore.writing`).
    """
    _check_run(spec, episodes, workers)
    with TrajectoryStore.writing(path):
        store = _open_store(spec, path)
        start = max(store.indices, default=-1) + 1
        _collect_indices(store, spec, list(range(start, start + episodes)), workers, progress)
    return TrajectoryStore(path)


def ensure_collected(spec: CollectSpec, path: str | os.PathLike, episodes: int, workers: int = 1,
                     progress: bool = True) -> TrajectoryStore:
    """Make sure the store at ``path`` holds episodes ``0 .. episodes-1``; collect only the missing ones.

    Reuses a matching existing store as is (nothing is re-collected; extra episodes beyond ``episodes``
    are kept), tops up a smaller one, and creates a new one. Settings must match as for :func:`collect`.
    """
    _check_run(spec, episodes, workers)
    with TrajectoryStore.writing(path):  # a collector of the same store runs first: its episodes count
        store = _open_store(spec, path)
        missing = [i for i in range(episodes) if i not in store]
        if not missing:
            log.info("%s: %d episodes of %s already collected", store.path, episodes, spec.env_id)
            return store
        log.info("%s: collecting %d episodes of %s (%d already there) with %d worker(s)", store.path, len(missing),
                 spec.env_id, episodes - len(missing), workers)
        _collect_indices(store, spec, missing, workers, progress)
    return TrajectoryStore(path)


def _check_run(spec: CollectSpec, episodes: int, workers: int) -> None:
    if not isinstance(spec, CollectSpec):
        raise TypeError(f"spec must be a CollectSpec, got {type(spec).__name__}")
    _check_int("episodes", episodes, 1)
    _check_int("workers", workers, 1)
    spec.check()
