"""On-disk store of collected episodes, read back through memory maps.

Layout of a store directory ``path``::

    path/meta.json                      collection settings and array shapes (:class:`StoreMeta`)
    path/episodes/ep_000000/frames.npy  uint8   (T+1, 3, H, W)  observations o_0 .. o_T
                           actions.npy  float32 (T, A)          a_t taken in o_t
                           states.npy   float64 (T+1, S)        physics state of each frame
                           rewards.npy  float32 (T,)            task reward (stored, never used to collect)
    path/episodes/ep_000001/...

Writes are atomic: an episode is written into a hidden temporary directory (``episodes/.tmp-ep_...``)
and renamed into place, and ``meta.json`` is replaced in one rename, so a process killed mid-write
never leaves a partial episode visible. Leftover temporary directories are ignored when reading and
removed by the next write once their writer process is gone.

Episode ``i`` is a pure function of the collection settings, so writing an episode that is already stored
with the same arrays is a no-op; different arrays raise :class:`StoreError`. Collectors hold the store's lock
(``path/.lock``, :meth:`TrajectoryStore.writing`): a second one waits, then finds the episodes it needs done.

Opening a store validates it from the ``.npy`` headers and file sizes only (no array data is read),
so opening a store of 100k frames takes milliseconds; problems raise :class:`StoreError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import ContextManager, NamedTuple

import numpy as np

from torchwm.data.store_format import (ARRAY_DTYPES, COMPAT_FIELDS, FORMAT_VERSION, StoreError, StoreMeta,
                                       read_npy_header)
from torchwm.io import atomic_write_text, pid_alive, remove_stale_temp
from torchwm.locks import LOCK_FILE, hold, print_waiting

__all__ = ["ARRAY_DTYPES", "COMPAT_FIELDS", "FORMAT_VERSION", "Episode", "StoreError", "StoreMeta", "TrajectoryStore",
           "episode_dirname", "read_npy_header"]

META_FILE = "meta.json"
EPISODES_DIR = "episodes"
TEMP_PREFIX = ".tmp-"
_EPISODE_RE = re.compile(r"^ep_(\d+)$")
_TEMP_RE = re.compile(r"^\.tmp-ep_\d+-(\d+)-[0-9a-f]+$")


class Episode(NamedTuple):
    """One stored episode of ``T`` steps; read-only memory maps (slicing reads from disk)."""

    frames: np.ndarray
    """uint8 (T+1, 3, H, W)"""
    actions: np.ndarray
    """float32 (T, A)"""
    states: np.ndarray
    """float64 (T+1, S)"""
    rewards: np.ndarray
    """float32 (T,)"""

    @property
    def length(self) -> int:
        """Number of steps ``T`` (frames hold ``T + 1``)."""
        return int(self.actions.shape[0])


def episode_dirname(index: int) -> str:
    """``7`` -> ``"ep_000007"``."""
    return f"ep_{index:06d}"


def _refuse_non_store(path: Path) -> None:
    """Raise :class:`StoreError` if ``path`` is neither missing, nor a store, nor an empty directory."""
    if not path.exists() or (path / META_FILE).exists():
        return
    if not path.is_dir():
        raise StoreError(f"{path}: exists and is not a directory; choose another store path")
    leftovers = [p.name for p in path.iterdir() if p.name not in (EPISODES_DIR, LOCK_FILE)]
    has_episodes = (path / EPISODES_DIR).is_dir() and any(
        _EPISODE_RE.match(p.name) for p in (path / EPISODES_DIR).iterdir())
    if leftovers or has_episodes:
        raise StoreError(f"{path}: directory is not empty and has no {META_FILE}, so it is not a "
                         "trajectory store; choose an empty or new directory")


class TrajectoryStore:
    """Episodes of one environment and collection setting, stored under ``path`` (see module docs).

    ``TrajectoryStore(path)`` opens an existing store and validates every episode from its file
    headers (fast; no array data is read). Create a store with :meth:`create`. Episodes are
    addressed by their integer index (``store.indices``), not necessarily contiguous.

    ``check=False`` skips the per-episode validation (used by collection workers that only write).
    """

    def __init__(self, path: str | os.PathLike, *, check: bool = True) -> None:
        self.path = Path(path)
        self.meta = self._read_meta()
        self._lengths: dict[int, int] = {}
        self._checked = check
        self._temp_cleaned = False
        if check:
            self.refresh()

    # ------------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, path: str | os.PathLike, meta: StoreMeta) -> TrajectoryStore:
        """Create an empty store at ``path`` with ``meta``, or open the existing one there.

        An existing store must match ``meta`` on :data:`COMPAT_FIELDS`, otherwise :class:`StoreError`
        names each differing field with both values. A non-empty directory that is not a store is refused.
        """
        path = Path(path)
        if (path / META_FILE).exists():
            store = cls(path)
            problems = store.meta.mismatches(meta)
            if problems:
                raise StoreError(
                    f"{path}: existing store was collected with different settings ("
                    + "; ".join(problems)
                    + "); use another store path, or delete this one to re-collect")
            return store
        _refuse_non_store(path)
        (path / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        if not meta.created:
            meta = dataclasses.replace(meta, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_text(path / META_FILE, json.dumps(meta.to_dict(), indent=2) + "\n")
        return cls(path)

    @staticmethod
    def writing(path: str | os.PathLike) -> ContextManager[Path]:
        """Hold the lock of the store at ``path`` (missing, a store or an empty directory) in a ``with`` block.

        One collector at a time: if another process holds it, ``waiting for <path> (PID n is collecting)`` is
        printed once and this one waits; reopen the store inside the block to see what the other one wrote.
        """
        path = Path(path)
        _refuse_non_store(path)
        return hold(path, wait=True, on_wait=print_waiting(path, "collecting"), what="data.path")

    def _read_meta(self) -> StoreMeta:
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            what = "does not exist" if not self.path.exists() else f"has no {META_FILE}"
            raise StoreError(f"{self.path}: not a trajectory store ({what}); collect one with "
                             "torchwm.data.collect(...) or `torchwm collect`, or check the path")
        try:
            data = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{meta_path}: corrupt ({err}); delete the store directory and re-collect") from None
        return StoreMeta.from_dict(data, source=str(meta_path))

    # ------------------------------------------------------------------------------------ reading
    def refresh(self) -> None:
        """Re-scan ``episodes/`` (e.g. after other processes wrote episodes) and validate each one."""
        lengths: dict[int, int] = {}
        ep_root = self.path / EPISODES_DIR
        if ep_root.is_dir():
            for entry in os.scandir(ep_root):
                m = _EPISODE_RE.match(entry.name)
                if m and entry.is_dir():
                    index = int(m.group(1))
                    lengths[index] = self._check_episode(index, Path(entry.path))
        self._lengths = dict(sorted(lengths.items()))
        self._checked = True

    def _check_episode(self, index: int, ep_dir: Path) -> int:
        """Validate one episode directory from headers and sizes; returns its length ``T``."""
        fix = f"delete the episode directory {ep_dir} or re-collect the store"
        shapes: dict[str, tuple[int, ...]] = {}
        for name, dtype in ARRAY_DTYPES.items():
            file = ep_dir / f"{name}.npy"
            try:
                shape, got = read_npy_header(file)
            except FileNotFoundError:
                raise StoreError(f"episode {index} ({ep_dir}): {name}.npy is missing; {fix}") from None
            except StoreError as err:
                raise StoreError(f"episode {index}: {err}; {fix}") from None
            if got != dtype:
                raise StoreError(f"episode {index} ({ep_dir}): {name}.npy has dtype {got}, expected {dtype}; {fix}")
            shapes[name] = shape
        m = self.meta
        frames, actions, states, rewards = (shapes[k] for k in ARRAY_DTYPES)
        problems = []
        if len(frames) != 4 or frames[1:] != tuple(m.frame_shape):
            problems.append(f"frames.npy has shape {frames}, expected (T+1, {', '.join(map(str, m.frame_shape))})")
        elif frames[0] < 2:
            problems.append(f"frames.npy holds {frames[0]} frame(s); an episode needs at least 2")
        T = frames[0] - 1 if frames else -1
        if actions != (T, m.action_dim):
            problems.append(f"actions.npy has shape {actions}, expected ({T}, {m.action_dim}) "
                            f"(one action per step between the {T + 1} frames)")
        if states != (T + 1, m.state_dim):
            problems.append(f"states.npy has shape {states}, expected ({T + 1}, {m.state_dim}) (one per frame)")
        if rewards != (T,):
            problems.append(f"rewards.npy has shape {rewards}, expected ({T},) (one per step)")
        if problems:
            raise StoreError(f"episode {index} ({ep_dir}): " + "; ".join(problems) + f"; {fix}")
        return T

    def _require_checked(self) -> None:
        if not self._checked:
            self.refresh()

    @property
    def indices(self) -> list[int]:
        """Stored episode indices, ascending."""
        self._require_checked()
        return list(self._lengths)

    @property
    def lengths(self) -> dict[int, int]:
        """``{index: T}``: number of steps of each episode (frames hold ``T + 1``)."""
        self._require_checked()
        return dict(self._lengths)

    @property
    def num_frames(self) -> int:
        """Total frames over all episodes (``sum(T + 1)``)."""
        self._require_checked()
        return sum(T + 1 for T in self._lengths.values())

    @property
    def num_steps(self) -> int:
        """Total transitions over all episodes (``sum(T)``)."""
        self._require_checked()
        return sum(self._lengths.values())

    def __len__(self) -> int:
        self._require_checked()
        return len(self._lengths)

    def __contains__(self, index: object) -> bool:
        self._require_checked()
        return index in self._lengths

    def __repr__(self) -> str:
        n = f"{len(self)} episodes, {self.num_frames} frames" if self._checked else "unscanned"
        return f"TrajectoryStore({str(self.path)!r}, {self.meta.env_id}, {n})"

    def episode_dir(self, index: int) -> Path:
        """Directory of episode ``index`` (whether or not it exists)."""
        return self.path / EPISODES_DIR / episode_dirname(index)

    def episode(self, index: int) -> Episode:
        """Episode ``index`` as read-only memory maps (nothing is read into RAM until sliced)."""
        self._require_checked()
        if index not in self._lengths:
            raise KeyError(f"{self.path}: no episode {index}; stored indices: {_summarize(self.indices)}")
        ep_dir = self.episode_dir(index)
        try:
            arrays = [np.load(ep_dir / f"{name}.npy", mmap_mode="r") for name in ARRAY_DTYPES]
        except (OSError, ValueError) as err:
            raise StoreError(f"episode {index} ({ep_dir}): cannot be read ({err}); delete the episode "
                             "directory or re-collect the store") from None
        return Episode(*arrays)

    # ------------------------------------------------------------------------------------ writing
    def write_episode(
        self,
        index: int,
        frames: np.ndarray,
        actions: np.ndarray,
        states: np.ndarray,
        rewards: np.ndarray,
        *,
        overwrite: bool = False,
    ) -> Path:
        """Atomically write episode ``index``; returns its directory.

        frames uint8 (T+1, 3, H, W); actions (T, A), states (T+1, S), rewards (T,) are cast to float32 /
        float64 / float32. Shapes must agree with each other and with :attr:`meta`. An existing episode
        ``index`` is left as it is if it holds the same arrays (another collector of these settings wrote it),
        and raises :class:`StoreError` naming what differs if not, unless ``overwrite``.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"episode index must be an integer >= 0, got {index!r}")
        index = int(index)
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T+1, 3, H, W), got dtype {frames.dtype}")
        arrays = {
            "frames": frames,
            "actions": np.asarray(actions, dtype=np.float32),
            "states": np.asarray(states, dtype=np.float64),
            "rewards": np.asarray(rewards, dtype=np.float32),
        }
        m = self.meta
        T = frames.shape[0] - 1 if frames.ndim == 4 else -1
        expected = {"frames": (T + 1, *m.frame_shape), "actions": (T, m.action_dim),
                    "states": (T + 1, m.state_dim), "rewards": (T,)}
        if T < 1:
            raise ValueError(f"frames must have shape (T+1, {', '.join(map(str, m.frame_shape))}) with T >= 1, "
                             f"got {frames.shape}")
        for name, arr in arrays.items():
            if arr.shape != expected[name]:
                raise ValueError(f"{name} has shape {arr.shape}, expected {expected[name]} for an episode of "
                                 f"{T} steps in this store")
        ep_root = self.path / EPISODES_DIR
        final = ep_root / episode_dirname(index)
        if final.exists() and not overwrite:
            return self._already_stored(index, arrays)
        if not self._temp_cleaned:
            self.clean_temp()
        tmp = ep_root / f"{TEMP_PREFIX}{episode_dirname(index)}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(parents=True)
        try:
            for name, arr in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as f:
                    np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            if final.exists():  # overwrite: move the old one aside first (rename cannot replace a non-empty dir)
                old = ep_root / f"{TEMP_PREFIX}{episode_dirname(index)}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                try:
                    os.replace(tmp, final)
                except OSError:  # another writer put it in place since the check above
                    if not final.exists():
                        raise
                    return self._already_stored(index, arrays)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._lengths[index] = T
        self._lengths = dict(sorted(self._lengths.items()))
        return final

    def _already_stored(self, index: int, arrays: dict[str, np.ndarray]) -> Path:
        """Episode ``index`` exists: done if it holds exactly ``arrays``, else :class:`StoreError`."""
        final = self.episode_dir(index)
        T = self._check_episode(index, final)
        differ = []
        for name, arr in arrays.items():
            stored = np.load(final / f"{name}.npy", mmap_mode="r")
            if stored.shape != arr.shape or not np.array_equal(stored, arr, equal_nan=arr.dtype.kind == "f"):
                differ.append(f"{name} {tuple(stored.shape)}" if stored.shape != arr.shape else name)
        if differ:
            raise StoreError(f"{final}: episode {index} is already stored with different {', '.join(differ)} than "
                             "collected now with the same settings (collected by another torchwm or simulator "
                             f"version?); collect into another store path, or delete {self.path} to re-collect it "
                             "(write_episode(..., overwrite=True) replaces one episode)")
        self._lengths[index] = T
        self._lengths = dict(sorted(self._lengths.items()))
        return final

    def clean_temp(self) -> list[Path]:
        """Remove temporary episode directories (and files of ``meta.json``) left by writers that no longer run;
        returns them."""
        removed = []
        ep_root = self.path / EPISODES_DIR
        if ep_root.is_dir():
            for entry in os.scandir(ep_root):
                if not entry.name.startswith(TEMP_PREFIX):
                    continue
                m = _TEMP_RE.match(entry.name)
                if m and pid_alive(int(m.group(1))):
                    continue
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
        removed += remove_stale_temp(self.path)  # of meta.json
        self._temp_cleaned = True
        return removed


def _summarize(indices: list[int], limit: int = 10) -> str:
    if not indices:
        return "none"
    if len(indices) <= limit:
        return ", ".join(map(str, indices))
    return f"{', '.join(map(str, indices[:limit]))}, ... ({len(indices)} in all)"
