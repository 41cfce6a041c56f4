"""What makes a training run resumable bit for bit: the order of its batches and the state of its random generators.

:class:`ResumableBatchSampler` yields the batches of a seeded order from any position (and each rank's share of them
under DDP); ``_rng_state`` / ``_set_rng_state`` capture and restore torch's, numpy's and python's generators (a
checkpoint stores them); ``_rng_untouched`` runs a block (evaluation, figures) without moving them.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of indices from a fresh seeded permutation each epoch (drop last); its position is state.

    With ``world_size`` processes, ``batch_size`` is the global batch and rank ``rank`` gets its contiguous
    ``batch_size / world_size`` share of each, so N processes see together what one process sees.

    ``state_dict()`` / ``load_state_dict()`` restore the exact epoch and batch, so a resumed run sees the
    same batches in the same order as an uninterrupted one. Iterates forever; the trainer stops it.
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, with_seeds: bool = False, rank: int = 0,
                 world_size: int = 1) -> None:
        if size < batch_size:
            raise ValueError(f"the dataset has {size} samples, fewer than batch_size={batch_size}: "
                             "add data (episodes or images) or lower batch_size")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} is the global batch of {world_size} processes and must be a "
                             f"multiple of it: use a batch_size divisible by {world_size} or another process count")
        self.size, self.batch_size, self.seed, self.with_seeds = size, batch_size, seed, with_seeds
        self.rank, self.world_size = rank, world_size
        self.epoch, self.batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
            while self.batch < self.batches_per_epoch:
                start = self.batch * self.batch_size
                self.batch += 1
                indices = perm[start: start + self.batch_size].tolist()
                share = self.batch_size // self.world_size  # this rank's rows of the global batch
                first = self.rank * share
                if self.with_seeds:  # one seed per (epoch, position): the same on resume and in any worker
                    base = ((self.seed * 1_000_003 + self.epoch) * self.size + start) % 2**62
                    yield [(i, base + j) for j, i in enumerate(indices)][first: first + share]
                else:
                    yield indices[first: first + share]
            self.epoch, self.batch = self.epoch + 1, 0

    def __len__(self) -> int:
        return self.batches_per_epoch

    def position(self, consumed: int) -> dict[str, int]:
        """The state after ``consumed`` batches from the start (a loader may have prefetched further)."""
        return {"size": self.size, "epoch": consumed // self.batches_per_epoch,
                "batch": consumed % self.batches_per_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"cannot resume: the checkpoint was trained on {state['size']} samples, the dataset "
                             f"now has {self.size}; use the same data or a new run directory")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@contextlib.contextmanager
def _rng_untouched(device: torch.device) -> Iterator[None]:
    """Restore the global RNGs (torch's, CUDA's on a CUDA device, numpy's, python's) after the block: what runs
    inside (evaluation, figures) cannot change training, however often it runs."""
    state = _rng_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    _set_rng_state(state)
