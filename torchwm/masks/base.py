"""What every mask sampler shares: the :class:`MaskBatch` it returns, the gather that applies it, and the
checks and helpers of the samplers in :mod:`torchwm.masks.image` and :mod:`torchwm.masks.video`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class MaskBatch:
    """Patch indices for one batch: ``context (B, Nc)`` sorted ascending per row, ``targets (B, M, Nt)``.

    Indices are into the row-major flattened ``grid`` of patches: ``(H, W)`` for images, ``(T, H, W)`` for clips
    (time steps of tubelets first).
    """

    context: torch.Tensor
    targets: torch.Tensor
    grid: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.context.dim() != 2 or self.targets.dim() != 3 or len(self.context) != len(self.targets):
            raise ValueError(f"context {tuple(self.context.shape)} must be (B, Nc) and targets "
                             f"{tuple(self.targets.shape)} (B, M, Nt) with the same B")

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskBatch:
        return MaskBatch(self.context.to(device, non_blocking=non_blocking),
                         self.targets.to(device, non_blocking=non_blocking), self.grid)

    def bool_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(context, targets)`` boolean masks ``(B, L)`` over the ``L`` patches of the grid; ``targets`` is the
        union of the target blocks."""
        b, length = len(self.context), math.prod(self.grid)
        context = torch.zeros(b, length, dtype=torch.bool, device=self.context.device)
        targets = torch.zeros(b, length, dtype=torch.bool, device=self.targets.device)
        return context.scatter_(1, self.context, True), targets.scatter_(1, self.targets.reshape(b, -1), True)


def apply_masks(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Gather tokens by patch index: ``(B, L, C)`` with ``(B, K)`` → ``(B, K, C)``; ``(B, M, K)`` → ``(B, M, K, C)``."""
    if tokens.dim() != 3 or indices.dim() not in (2, 3) or len(tokens) != len(indices):
        raise ValueError(f"tokens {tuple(tokens.shape)} must be (B, L, C) and indices {tuple(indices.shape)} "
                         "(B, K) or (B, M, K) with the same B")
    indices = indices.to(tokens.device)
    c = tokens.shape[-1]
    if indices.dim() == 2:
        return tokens.gather(1, indices.unsqueeze(-1).expand(-1, -1, c))
    b, m, k = indices.shape
    return tokens.unsqueeze(1).expand(-1, m, -1, -1).gather(2, indices.unsqueeze(-1).expand(b, m, k, c))


# ------------------------------------------------------------------------------------------ validation
def _grid(grid: int | tuple[int, int]) -> tuple[int, int]:
    pair = (grid, grid) if isinstance(grid, int) else tuple(grid) if isinstance(grid, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in pair):
        raise ValueError(f"grid={grid!r}: must be a positive int or a pair (height, width) of positive ints")
    return pair  # type: ignore[return-value]


def _range(name: str, value: tuple[float, float], upper: float | None) -> tuple[float, float]:
    allowed = f"0 < low <= high <= {upper}" if upper is not None else "0 < low <= high"
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: must be a pair (low, high) with {allowed}") from None
    if not (0 < lo <= hi and math.isfinite(hi) and (upper is None or hi <= upper)):
        raise ValueError(f"{name}={value!r}: must be a pair (low, high) with {allowed}")
    return lo, hi


def _int_at_least(name: str, value: int, low: int, high: int | None = None, why: str = "") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        allowed = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise ValueError(f"{name}={value!r}: must be {allowed}{why}")
    return value


def _min_keep(min_keep: int, grid: tuple[int, int]) -> int:
    length = grid[0] * grid[1]
    return _int_at_least("min_keep", min_keep, 1, length - 1,
                         f" (fewer than the {length} patches of the {grid[0]}x{grid[1]} grid)")


# ------------------------------------------------------------------------------------------ helpers
def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))




def _cover(indices: torch.Tensor, length: int) -> torch.Tensor:
    """Boolean ``(n, length)`` mask of the patches named by ``indices (n, ...)``."""
    mask = torch.zeros(len(indices), length, dtype=torch.bool)
    return mask.scatter_(1, indices.reshape(len(indices), -1), True)




def _trim(keep: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Indices ``(B, n)`` of a uniformly random subset of ``n = min_b keep[b].sum()`` kept patches per row."""
    n = int(keep.sum(1).min())
    scores = torch.rand(keep.shape, generator=generator).masked_fill_(~keep, -1.0)
    return scores.topk(n, dim=1).indices.sort(dim=1).values


# ------------------------------------------------------------------------------------------ blocks
def _block_size(grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float],
                generator: torch.Generator | None, max_area: int | None = None) -> tuple[int, int]:
    """Draw a block ``(h, w)``: area ``scale·H·W``, aspect ``h/w`` log-uniform; rounded and clamped to the grid.

    With ``max_area``, the longer side shrinks one patch at a time until ``h*w <= max_area``.
    """
    height, width = grid
    area = _uniform(*scale, generator) * height * width
    ratio = math.exp(_uniform(math.log(aspect[0]), math.log(aspect[1]), generator))
    h = min(max(math.floor(math.sqrt(area * ratio) + 0.5), 1), height)
    w = min(max(math.floor(math.sqrt(area / ratio) + 0.5), 1), width)
    while max_area is not None and h * w > max_area:
        if h >= w:
            h -= 1
        else:
            w -= 1
    return h, w


def _place_blocks(n: int, m: int, size: tuple[int, int], grid: tuple[int, int],
                  generator: torch.Generator | None) -> torch.Tensor:
    """``n×m`` blocks of ``size`` at uniform positions inside ``grid`` → row-major indices ``(n, m, h*w)``."""
    (h, w), (height, width) = size, grid
    top = torch.randint(0, height - h + 1, (n, m, 1, 1), generator=generator)
    left = torch.randint(0, width - w + 1, (n, m, 1, 1), generator=generator)
    rows = top + torch.arange(h).view(h, 1)
    cols = left + torch.arange(w).view(1, w)
    return (rows * width + cols).reshape(n, m, h * w)


class MaskSampler(Protocol):
    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch: ...
