"""Mask samplers over an image's patch grid ``(H, W)``: I-JEPA multi-block, one block, MAE-style random.

A sampler maps a batch size to a :class:`~torchwm.masks.MaskBatch`: ``context (B, Nc)`` for the encoder and
``targets (B, M, Nt)`` for the predictor, indices into the row-major grid of ``L = H*W`` patches. All index
tensors are ``torch.long`` on the CPU; randomness comes only from the ``generator`` passed to the sampler
(torch's global RNG when it is ``None``), so a seeded generator reproduces the masks.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import default_collate, get_worker_info

from torchwm.masks.base import (MaskBatch, MaskSampler, _block_size, _cover, _grid, _int_at_least, _min_keep,
                                _place_blocks, _range, _trim)


# ------------------------------------------------------------------------------------------ samplers
class MultiBlockMask:
    """I-JEPA multi-block masking: ``num_targets`` target blocks, context = a large block minus all targets.

    Per batch one target size and one context size are drawn (``scale`` is a fraction of the patches,
    ``aspect`` is ``h/w`` drawn log-uniformly); per image the blocks are placed uniformly at random.
    An image left with fewer than ``min_keep`` context patches is re-placed up to ``max_tries`` times
    in all. After that, deterministic fallbacks apply to that image: first the context block widens to
    the whole grid (context = complement of the targets); if that is still short, all its targets are
    moved onto its first target block (duplicates), leaving ``H*W - h*w >= min_keep`` context patches
    because target sizes are capped at ``H*W - min_keep``. Contexts are then trimmed to the batch minimum
    by a random subset per image, so they stack: ``context (B, Nc)``, ``targets (B, num_targets, h*w)``.
    """

    def __init__(self, grid: int | tuple[int, int], num_targets: int = 4,
                 target_scale: tuple[float, float] = (0.15, 0.2), target_aspect: tuple[float, float] = (0.75, 1.5),
                 context_scale: tuple[float, float] = (0.85, 1.0), context_aspect: tuple[float, float] = (1.0, 1.0),
                 min_keep: int = 4, max_tries: int = 20) -> None:
        self.grid = _grid(grid)
        self.num_targets = _int_at_least("num_targets", num_targets, 1)
        self.target_scale = _range("target_scale", target_scale, 1.0)
        self.target_aspect = _range("target_aspect", target_aspect, None)
        self.context_scale = _range("context_scale", context_scale, 1.0)
        self.context_aspect = _range("context_aspect", context_aspect, None)
        self.min_keep = _min_keep(min_keep, self.grid)
        self.max_tries = _int_at_least("max_tries", max_tries, 1)

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch:
        b = _int_at_least("batch_size", batch_size, 1)
        m, length = self.num_targets, self.grid[0] * self.grid[1]
        target_size = _block_size(self.grid, self.target_scale, self.target_aspect, generator,
                                  max_area=length - self.min_keep)
        context_size = _block_size(self.grid, self.context_scale, self.context_aspect, generator)

        targets = torch.empty(b, m, target_size[0] * target_size[1], dtype=torch.long)
        keep = torch.empty(b, length, dtype=torch.bool)
        todo = torch.arange(b)
        for _ in range(self.max_tries):
            targets[todo] = _place_blocks(len(todo), m, target_size, self.grid, generator)
            block = _cover(_place_blocks(len(todo), 1, context_size, self.grid, generator), length)
            keep[todo] = block & ~_cover(targets[todo], length)
            todo = todo[keep[todo].sum(1) < self.min_keep]
            if len(todo) == 0:
                break
        if len(todo):  # fallback 1: the context block is the whole grid
            keep[todo] = ~_cover(targets[todo], length)
            todo = todo[keep[todo].sum(1) < self.min_keep]
        if len(todo):  # fallback 2: every target of the image sits on its first block
            targets[todo] = targets[todo, :1].expand(-1, m, -1)
            keep[todo] = ~_cover(targets[todo, :1], length)
        return MaskBatch(_trim(keep, generator), targets, self.grid)


class RandomMask:
    """MAE-style random masking: ``round((1 - mask_ratio)·L)`` random context patches, the rest one target.

    ``context (B, keep)`` and ``targets (B, 1, L - keep)``, both sorted ascending per row.
    """

    def __init__(self, grid: int | tuple[int, int], mask_ratio: float = 0.75) -> None:
        self.grid = _grid(grid)
        length = self.grid[0] * self.grid[1]
        if not (isinstance(mask_ratio, (int, float)) and 0 < mask_ratio < 1):
            raise ValueError(f"mask_ratio={mask_ratio!r}: must be in the open interval (0, 1)")
        self.mask_ratio = float(mask_ratio)
        self.keep = round((1 - self.mask_ratio) * length)
        if not 0 < self.keep < length:
            raise ValueError(f"mask_ratio={mask_ratio!r}: must be such that round((1 - mask_ratio) * {length}) is "
                             f"in [1, {length - 1}] for the {self.grid[0]}x{self.grid[1]} grid, got {self.keep}")

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch:
        b = _int_at_least("batch_size", batch_size, 1)
        order = torch.rand(b, self.grid[0] * self.grid[1], generator=generator).argsort(dim=1)
        context = order[:, :self.keep].sort(dim=1).values
        targets = order[:, self.keep:].sort(dim=1).values.unsqueeze(1)
        return MaskBatch(context, targets, self.grid)


class BlockMask:
    """One target block per image (size drawn per batch, position per image); context = all other patches.

    ``targets (B, 1, h*w)`` and ``context (B, L - h*w)``; block areas are capped at ``L - min_keep``.
    """

    def __init__(self, grid: int | tuple[int, int], scale: tuple[float, float] = (0.15, 0.2),
                 aspect: tuple[float, float] = (0.75, 1.5), min_keep: int = 4) -> None:
        self.grid = _grid(grid)
        self.scale = _range("scale", scale, 1.0)
        self.aspect = _range("aspect", aspect, None)
        self.min_keep = _min_keep(min_keep, self.grid)

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch:
        b = _int_at_least("batch_size", batch_size, 1)
        length = self.grid[0] * self.grid[1]
        size = _block_size(self.grid, self.scale, self.aspect, generator, max_area=length - self.min_keep)
        targets = _place_blocks(b, 1, size, self.grid, generator)
        context = (~_cover(targets, length)).nonzero()[:, 1].view(b, length - size[0] * size[1])
        return MaskBatch(context, targets, self.grid)


class MaskCollator:
    """``collate_fn`` for a DataLoader: ``samples`` → ``(collate(samples), mask_sampler(len(samples)))``.

    With ``seed=None`` masks come from torch's global RNG (which DataLoader seeds per worker and epoch).
    With a ``seed`` the collator owns a generator; inside a worker it is keyed by ``(seed, worker seed)``
    so that workers (and epochs, unless workers persist) draw different masks, reproducibly once the
    DataLoader's own seed is fixed.
    """

    def __init__(self, mask_sampler: MaskSampler, collate: Callable = default_collate, seed: int | None = None) -> None:
        self.mask_sampler = mask_sampler
        self.collate = collate
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._key: int | None = None

    def _rng(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = get_worker_info()
        key = None if info is None else info.seed
        if self._generator is None or key != self._key:
            seed = self.seed if key is None else (self.seed * 6364136223846793005 + key) % 2**64
            self._generator, self._key = torch.Generator().manual_seed(seed), key
        return self._generator

    def __call__(self, samples: list) -> tuple[object, MaskBatch]:
        return self.collate(samples), self.mask_sampler(len(samples), self._rng())


def make_mask_sampler(kind: str, grid: int | tuple[int, int], mask_ratio: float) -> MaskSampler:
    """Sampler of ``kind`` whose masked fraction is about ``mask_ratio`` (in (0, 1)).

    ``"random"``: exactly ``mask_ratio``. ``"block"``: one block of area ``mask_ratio`` (up to rounding).
    ``"multiblock"``: 4 targets of scale ``(mask_ratio/5, 4·mask_ratio/15)`` each (I-JEPA's ``(0.15, 0.2)``
    at the default 0.75), so their summed area before overlap is about ``mask_ratio``.
    """
    if not (isinstance(mask_ratio, (int, float)) and 0 < mask_ratio < 1):
        raise ValueError(f"mask_ratio={mask_ratio!r}: must be in the open interval (0, 1)")
    if kind == "multiblock":
        return MultiBlockMask(grid, target_scale=(mask_ratio / 5, 4 * mask_ratio / 15))
    if kind == "random":
        return RandomMask(grid, mask_ratio)
    if kind == "block":
        return BlockMask(grid, scale=(mask_ratio, mask_ratio))
    raise ValueError(f"kind={kind!r}: must be one of 'multiblock', 'random', 'block'")
