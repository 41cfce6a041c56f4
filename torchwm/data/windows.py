"""Fixed-length training windows over a :class:`~torchwm.data.store.TrajectoryStore`.

A window of ``length`` frames anchored at step ``t`` of an episode holds ``history`` frames up to and
including ``o_t``, the ``F = length - history`` actions ``a_t .. a_{t+F-1}`` and the ``F`` frames they
lead to::

    frames  o_{t-history+1} .. o_t, o_{t+1} .. o_{t+F}      (length, 3, H, W)   uint8
    actions                  a_t .. a_{t+F-1}               (F, A)              float32
    states  the physics states of the same frames           (length, S)         float64

Valid anchors are ``history - 1 <= t <= T - F`` for an episode of ``T`` steps. Items are read
from the store's memory maps (only the window is copied), which each process opens lazily, so the
dataset works with ``DataLoader(num_workers > 0)`` under fork or spawn.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from torchwm.data.store import Episode, TrajectoryStore


class Window(NamedTuple):
    """One training window (batched by ``DataLoader`` into the same type with a leading batch dim)."""

    frames: torch.Tensor
    """uint8 (length, 3, H, W)"""
    actions: torch.Tensor
    """float32 (length - history, A)"""
    states: torch.Tensor
    """float64 (length, S)"""


class TrajectoryWindows(Dataset):
    """Every valid ``(episode, t)`` window of ``length`` frames in ``store`` (see module docs), the first
    ``history`` of them the context, optionally over a subset of episodes.

    ``episodes``: indices of the episodes to use (e.g. from :func:`split_episodes`); default all.
    Episodes too short for one window are skipped; if none is long enough, ``ValueError``.
    """

    def __init__(self, store: TrajectoryStore, history: int, length: int,
                 episodes: Sequence[int] | None = None) -> None:
        for name, value, low in (("history", history, 1), ("length", length, 2)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}={value!r}: must be an integer >= {low}")
        if length <= history:
            raise ValueError(f"length={length!r}: must be > history={history!r} (a window holds the history "
                             "frames and at least one frame after them)")
        self.store = store
        self.history, self.length = int(history), int(length)
        self.future = self.length - self.history
        """frames after the anchor (and actions) in each window"""
        lengths = store.lengths
        if episodes is None:
            episodes = list(lengths)
        else:
            episodes = [int(i) for i in episodes]
            unknown = [i for i in episodes if i not in lengths]
            if unknown:
                raise ValueError(f"episodes {unknown[:10]} are not in the store {store.path} "
                                 f"({len(lengths)} episodes stored)")
        if not episodes:
            raise ValueError(f"no episodes to build windows from (store {store.path} holds {len(lengths)})")
        need = self.length - 1  # steps T an episode needs for one window
        counts = np.array([max(0, lengths[i] - need + 1) for i in episodes], dtype=np.int64)
        if counts.sum() == 0:
            found = sorted({lengths[i] for i in episodes})
            raise ValueError(
                f"no episode is long enough for windows of length={self.length}: a window needs episodes of "
                f">= {need} steps, the selected episodes have {found} steps; collect longer episodes or use "
                "shorter windows")
        keep = counts > 0
        self.episodes: list[int] = [i for i, k in zip(episodes, keep) if k]
        self._counts = counts[keep]
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)])
        self._cache: dict[int, Episode] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, item: int) -> tuple[int, int]:
        """Dataset index -> ``(episode index, anchor step t)``."""
        n = len(self)
        if item < 0:
            item += n
        if not 0 <= item < n:
            raise IndexError(f"window {item} out of range for {n} windows")
        k = int(np.searchsorted(self._offsets, item, side="right")) - 1
        return self.episodes[k], int(item - self._offsets[k]) + self.history - 1

    def _episode(self, index: int) -> Episode:
        if self._pid != os.getpid():  # forked into a DataLoader worker: open our own maps
            self._cache, self._pid = {}, os.getpid()
        ep = self._cache.get(index)
        if ep is None:
            ep = self._cache[index] = self.store.episode(index)
        return ep

    def __getitem__(self, item: int) -> Window:
        index, t = self.locate(int(item))
        ep = self._episode(index)
        lo, hi = t - self.history + 1, t + self.future + 1
        return Window(
            frames=torch.from_numpy(np.array(ep.frames[lo:hi])),
            actions=torch.from_numpy(np.array(ep.actions[t:t + self.future])),
            states=torch.from_numpy(np.array(ep.states[lo:hi])),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}  # memory maps are reopened in the receiving process
        return state

    def __repr__(self) -> str:
        return (f"TrajectoryWindows({len(self)} windows from {len(self.episodes)} episodes of "
                f"{self.store.meta.env_id}, history={self.history}, length={self.length})")


def split_episodes(store: TrajectoryStore | Sequence[int], heldout_fraction: float,
                   seed: int = 0) -> tuple[list[int], list[int]]:
    """Split episode indices into ``(train, heldout)`` lists (each ascending), deterministically.

    ``round(heldout_fraction * n)`` episodes are held out, at least one when ``heldout_fraction > 0``
    and ``n >= 2``, and never all of them. The same indices and seed always give the same split.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction!r}: must be in [0, 1)")
    indices = sorted(int(i) for i in (store.indices if isinstance(store, TrajectoryStore) else store))
    n = len(indices)
    n_held = int(math.floor(heldout_fraction * n + 0.5))
    if heldout_fraction > 0 and n >= 2:
        n_held = min(max(n_held, 1), n - 1)
    else:
        n_held = 0
    perm = np.random.default_rng(seed).permutation(n)
    held = set(perm[:n_held].tolist())
    train = [idx for k, idx in enumerate(indices) if k not in held]
    heldout = [idx for k, idx in enumerate(indices) if k in held]
    return train, heldout
