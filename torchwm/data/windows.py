"""Datasets over a :class:`~torchwm.data.store.TrajectoryStore`: training windows (frames, actions, states),
single frames (image pretraining) and clips (video pretraining).

A window of ``length`` frames anchored at step ``t`` of an episode holds ``history`` frames up to and
including ``o_t``, the ``F = length - history`` actions ``a_t .. a_{t+F-1}`` and the ``F`` frames they
lead to::

    frames  o_{t-history+1} .. o_t, o_{t+1} .. o_{t+F}      (length, 3, H, W)   uint8
    actions                  a_t .. a_{t+F-1}               (F, A)              float32
    states  the physics states of the same frames           (length, S)         float64

Valid anchors are ``history - 1 <= t <= T - F`` for an episode of ``T`` steps. With ``stride = k > 1`` (a
world model that steps over chunks of k actions) the frames are k steps apart, ``o_{t-(history-1)k} .. o_t ..
o_{t+Fk}``, and the actions are still every step's, ``a_t .. a_{t+Fk-1}`` ``(F k, A)``. Items are read
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


class SpanIndex:
    """Every start of a span of ``span`` steps inside sequences of the given ``lengths`` (steps each), in order:
    ``locate(i)`` → ``(sequence, start)``. Sequences shorter than the span have none (``sequences`` lists the
    ones that do)."""

    def __init__(self, lengths: Sequence[int], span: int) -> None:
        counts = np.array([max(0, int(n) - span + 1) for n in lengths], dtype=np.int64)
        self.sequences = [k for k, c in enumerate(counts) if c > 0]
        self._offsets = np.concatenate([[0], np.cumsum(counts[counts > 0])])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, item: int) -> tuple[int, int]:
        n = len(self)
        if item < 0:
            item += n
        if not 0 <= item < n:
            raise IndexError(f"item {item} out of range for {n} items")
        k = int(np.searchsorted(self._offsets, item, side="right")) - 1
        return self.sequences[k], int(item - self._offsets[k])


class EpisodeSpans(Dataset):
    """Items that each cover ``span`` consecutive steps of one episode of ``store`` (every start step that
    fits), over all episodes or the given ``episodes``: the indexing, episode selection and memory-map
    handling that windows, frames and clips share. ``what`` names an item in error messages.

    Episodes too short for one item are skipped; if none is long enough, ``ValueError``.
    """

    def __init__(self, store: TrajectoryStore, span: int, episodes: Sequence[int] | None, what: str) -> None:
        self.store = store
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
            raise ValueError(f"no episodes to take {what}s from (store {store.path} holds {len(lengths)})")
        spans = SpanIndex([lengths[i] for i in episodes], span)
        if len(spans) == 0:
            found = sorted({lengths[i] for i in episodes})
            raise ValueError(f"no episode is long enough for {what}s of {span + 1} frames: one needs episodes of "
                             f">= {span} steps, the selected episodes have {found} steps; collect longer episodes "
                             f"or use shorter {what}s")
        self.episodes: list[int] = [episodes[k] for k in spans.sequences]
        self._spans = spans
        self._cache: dict[int, Episode] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._spans)

    def span_start(self, item: int) -> tuple[int, int]:
        """Dataset index → ``(episode index, first step of the item)``."""
        k, start = self._spans.locate(item)
        return self.episodes[k], start

    def _episode(self, index: int) -> Episode:
        if self._pid != os.getpid():  # forked into a DataLoader worker: open our own maps
            self._cache, self._pid = {}, os.getpid()
        ep = self._cache.get(index)
        if ep is None:
            ep = self._cache[index] = self.store.episode(index)
        return ep

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}  # memory maps are reopened in the receiving process
        return state


class TrajectoryWindows(EpisodeSpans):
    """Every valid ``(episode, t)`` window of ``length`` frames ``stride`` steps apart in ``store`` (see module
    docs), the first ``history`` of them the context, optionally over a subset of episodes.

    ``episodes``: indices of the episodes to use (e.g. from :func:`split_episodes`); default all.
    Episodes too short for one window are skipped; if none is long enough, ``ValueError``.
    """

    def __init__(self, store: TrajectoryStore, history: int, length: int,
                 episodes: Sequence[int] | None = None, stride: int = 1) -> None:
        for name, value, low in (("history", history, 1), ("length", length, 2), ("stride", stride, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}={value!r}: must be an integer >= {low}")
        if length <= history:
            raise ValueError(f"length={length!r}: must be > history={history!r} (a window holds the history "
                             "frames and at least one frame after them)")
        self.history, self.length, self.stride = int(history), int(length), int(stride)
        self.future = self.length - self.history
        """frames after the anchor in each window (``future x stride`` actions)"""
        super().__init__(store, (self.length - 1) * self.stride, episodes, "window")

    def locate(self, item: int) -> tuple[int, int]:
        """Dataset index -> ``(episode index, anchor step t)``."""
        index, start = self.span_start(item)
        return index, start + (self.history - 1) * self.stride

    def __getitem__(self, item: int) -> Window:
        index, t = self.locate(int(item))
        ep = self._episode(index)
        k = self.stride
        frames = slice(t - (self.history - 1) * k, t + self.future * k + 1, k)
        return Window(
            frames=torch.from_numpy(np.array(ep.frames[frames])),
            actions=torch.from_numpy(np.array(ep.actions[t:t + self.future * k])),
            states=torch.from_numpy(np.array(ep.states[frames])),
        )

    def __repr__(self) -> str:
        return (f"TrajectoryWindows({len(self)} windows from {len(self.episodes)} episodes of "
                f"{self.store.meta.env_id}, history={self.history}, length={self.length}, stride={self.stride})")


class StoreFrames(EpisodeSpans):
    """Every frame of some episodes of ``store``, as images: ``dataset[i]`` → ``(frame uint8 (3, H, W), episode)``."""

    def __init__(self, store: TrajectoryStore, episodes: Sequence[int] | None = None) -> None:
        super().__init__(store, 0, episodes, "frame")

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        index, t = self.span_start(int(item))
        return torch.from_numpy(np.array(self._episode(index).frames[t])), index


class StoreClips(EpisodeSpans):
    """Every clip of ``frames`` frames ``stride`` steps apart in some episodes of ``store``:
    ``dataset[i]`` → clip uint8 ``(frames, 3, H, W)``; :meth:`clip_states` gives their physics states."""

    def __init__(self, store: TrajectoryStore, frames: int, stride: int = 1,
                 episodes: Sequence[int] | None = None) -> None:
        if frames < 1 or stride < 1:
            raise ValueError(f"frames={frames!r} and stride={stride!r} must be >= 1")
        self.frames, self.stride = int(frames), int(stride)
        super().__init__(store, (self.frames - 1) * self.stride, episodes, "clip")

    def _steps(self, item: int) -> tuple[int, slice]:
        index, start = self.span_start(int(item))
        return index, slice(start, start + (self.frames - 1) * self.stride + 1, self.stride)

    def __getitem__(self, item: int) -> torch.Tensor:
        index, steps = self._steps(item)
        return torch.from_numpy(np.array(self._episode(index).frames[steps]))

    def clip_states(self, item: int) -> np.ndarray:
        """The physics states ``(frames, S)`` of clip ``item``."""
        index, steps = self._steps(item)
        return np.array(self._episode(index).states[steps])


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
