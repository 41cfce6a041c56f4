"""Mask samplers over a clip's token grid ``(T, H, W)`` (time steps of tubelets, rows, columns), after V-JEPA.

* :class:`TubeMask`: the 3-D multi-block mask. ``blocks`` spatial blocks, each extended through every time
  step (a tube), make up the target; the context is everything else. V-JEPA's short-range mask is 8 tubes of
  0.15 of the frame, its long-range mask 2 tubes of 0.7.
* :class:`FutureMask`: temporal masking. The last ``steps`` time steps are the target, all earlier ones the
  context: predicting them is predicting the future.

Both return a :class:`~torchwm.masks.MaskBatch` with ``targets (B, 1, Nt)`` (one target set, predicted in one
pass) and ``context (B, Nc)``, indices into the row-major grid (``t * H * W + h * W + w``).
"""

from __future__ import annotations

import math

import torch

from torchwm.masks.base import MaskBatch, _block_size, _cover, _int_at_least, _place_blocks, _range, _trim

__all__ = ["FutureMask", "TubeMask"]


def _grid3d(grid: tuple[int, int, int]) -> tuple[int, int, int]:
    if (not isinstance(grid, (tuple, list)) or len(grid) != 3
            or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid)):
        raise ValueError(f"grid={grid!r}: must be (time steps, rows, columns) of positive ints")
    return tuple(grid)  # type: ignore[return-value]


class TubeMask:
    """V-JEPA's 3-D multi-block mask over ``grid = (T, H, W)`` (see the module docs).

    Per batch one block size is drawn (area ``scale`` of the ``H*W`` positions, aspect ``h/w`` log-uniform in
    ``aspect``); per clip, ``blocks`` blocks are placed uniformly at random and their union, through all ``T``
    time steps, is the target. A clip left with fewer than ``min_keep`` context tokens is re-placed up to
    ``max_tries`` times, then keeps only its first block (block areas are capped so that this leaves
    ``min_keep``). Target and context positions are trimmed to the batch's smallest by a random subset per
    clip, so they stack; trimming drops whole tubes, so every kept position spans all time steps.
    """

    def __init__(self, grid: tuple[int, int, int], blocks: int, scale: float | tuple[float, float],
                 aspect: tuple[float, float] = (0.75, 1.5), min_keep: int = 4, max_tries: int = 20) -> None:
        self.grid = _grid3d(grid)
        t, h, w = self.grid
        self.blocks = _int_at_least("blocks", blocks, 1)
        self.scale = _range("scale", (scale, scale) if isinstance(scale, (int, float)) else scale, 1.0)
        self.aspect = _range("aspect", aspect, None)
        self.min_keep = _int_at_least("min_keep", min_keep, 1, t * (h * w - 1),
                                      f" (a clip keeps at most {t * (h * w - 1)} context tokens once one position "
                                      "is masked)")
        self.max_tries = _int_at_least("max_tries", max_tries, 1)

    def block_size(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """A block's ``(h, w)`` as :meth:`__call__` draws it (once per batch)."""
        t, h, w = self.grid
        return _block_size((h, w), self.scale, self.aspect, generator,
                           max_area=h * w - math.ceil(self.min_keep / t))

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch:
        b = _int_at_least("batch_size", batch_size, 1)
        t, h, w = self.grid
        area = h * w
        size = self.block_size(generator)
        masked = torch.empty(b, area, dtype=torch.bool)  # spatial positions whose tube is a target
        todo = torch.arange(b)
        first = torch.empty(b, 1, size[0] * size[1], dtype=torch.long)
        for _ in range(self.max_tries):
            placed = _place_blocks(len(todo), self.blocks, size, (h, w), generator)
            first[todo] = placed[:, :1]
            masked[todo] = _cover(placed, area)
            todo = todo[t * (~masked[todo]).sum(1) < self.min_keep]
            if len(todo) == 0:
                break
        if len(todo):  # fallback: only the first block
            masked[todo] = _cover(first[todo], area)
        # trim whole positions (tubes stay whole), then repeat them at every time step: t * H * W + position
        steps = torch.arange(t).view(1, t, 1) * area
        targets = (_trim(masked, generator).unsqueeze(1) + steps).flatten(1)
        context = (_trim(~masked, generator).unsqueeze(1) + steps).flatten(1)
        return MaskBatch(context, targets.unsqueeze(1), self.grid)


class FutureMask:
    """Temporal masking over ``grid = (T, H, W)``: the last ``steps`` time steps are the target, the first
    ``T - steps`` the context (every position of each)."""

    def __init__(self, grid: tuple[int, int, int], steps: int) -> None:
        self.grid = _grid3d(grid)
        self.steps = _int_at_least("steps", steps, 1, self.grid[0] - 1,
                                   f" (fewer than the clip's {self.grid[0]} time steps)")

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch:
        b = _int_at_least("batch_size", batch_size, 1)
        t, h, w = self.grid
        split = (t - self.steps) * h * w
        tokens = torch.arange(t * h * w)
        return MaskBatch(tokens[:split].expand(b, -1).clone(), tokens[split:].expand(b, 1, -1).clone(), self.grid)
