"""Mask samplers over a patch grid (torchwm.masks)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from torchwm.masks import (BlockMask, MaskBatch, MaskCollator, MultiBlockMask, RandomMask, apply_masks,
                           make_mask_sampler)

pytestmark = pytest.mark.usefixtures("one_thread")

GRIDS = [8, 14, (6, 10), (10, 6)]
DRAWS = 200


# ------------------------------------------------------------------------------------------ helpers
def hw(grid: int | tuple[int, int]) -> tuple[int, int]:
    return (grid, grid) if isinstance(grid, int) else grid


def reachable(h: int, w: int, grid: tuple[int, int], scale: tuple[float, float],
              aspect: tuple[float, float]) -> bool:
    """Can some area ``A = s·H·W`` (s in ``scale``) and ratio ``r`` in ``aspect`` give the block ``(h, w)``?

    The sampler rounds ``x = sqrt(A·r)`` to ``h`` and ``y = sqrt(A/r)`` to ``w`` and clamps to ``[1, grid]``,
    so ``x`` lies in ``[h - 1/2, h + 1/2]`` (widened to 0 at ``h = 1`` and to infinity at ``h = H``), same
    for ``y``. In logs ``u = log x``, ``v = log y`` this is a 2-D linear feasibility problem
    ``u + v ∈ log(scale·H·W)``, ``u - v ∈ log(aspect)``, solved exactly by checking the breakpoints.
    """
    height, width = grid

    def bounds(n: int, top: int) -> tuple[float, float]:
        return (math.log(n - 0.5) if n > 1 else -30.0), (math.log(n + 0.5) if n < top else 30.0)

    (u0, u1), (v0, v1) = bounds(h, height), bounds(w, width)
    p0, p1 = math.log(scale[0] * height * width), math.log(scale[1] * height * width)
    q0, q1 = math.log(aspect[0]), math.log(aspect[1])

    def slack(u: float) -> float:  # >= 0 iff some v fits for this u
        return min(v1, p1 - u, u - q0) - max(v0, p0 - u, u - q1)

    lines = [v0, v1]
    candidates = [u0, u1] + [(p + q) / 2 for p in (p0, p1) for q in (q0, q1)]
    candidates += [p - c for p in (p0, p1) for c in lines] + [q + c for q in (q0, q1) for c in lines]
    return max(slack(min(max(u, u0), u1)) for u in candidates) >= -1e-9


def allowed_sizes(grid, scale, aspect) -> set[tuple[int, int]]:
    height, width = hw(grid)
    return {(h, w) for h in range(1, height + 1) for w in range(1, width + 1)
            if reachable(h, w, (height, width), scale, aspect)}


def block_shapes(targets: torch.Tensor, width: int) -> tuple[int, int]:
    """Assert every block of ``targets (B, M, K)`` is a full axis-aligned rectangle; return its ``(h, w)``."""
    rows, cols = targets // width, targets % width
    r0, c0 = rows.amin(-1), cols.amin(-1)
    h, w = rows.amax(-1) - r0 + 1, cols.amax(-1) - c0 + 1
    assert (h == h.flatten()[0]).all() and (w == w.flatten()[0]).all(), "blocks in a batch differ in size"
    bh, bw = int(h.flatten()[0]), int(w.flatten()[0])
    assert bh * bw == targets.shape[-1], f"{targets.shape[-1]} indices do not fill a {bh}x{bw} bounding box"
    rect = (r0[..., None, None] + torch.arange(bh).view(bh, 1)) * width + c0[..., None, None] + torch.arange(bw)
    assert torch.equal(targets.sort(-1).values, rect.flatten(-2)), "a target block is not a rectangle"
    return bh, bw


def cover(indices: torch.Tensor, length: int) -> torch.Tensor:
    mask = torch.zeros(len(indices), length, dtype=torch.bool)
    return mask.scatter_(1, indices.reshape(len(indices), -1), True)


def check_common(mb: MaskBatch, batch: int, grid: tuple[int, int], min_keep: int) -> None:
    length = grid[0] * grid[1]
    assert mb.grid == grid
    for t in (mb.context, mb.targets):
        assert t.dtype == torch.long and t.device.type == "cpu" and len(t) == batch
        assert int(t.min()) >= 0 and int(t.max()) < length
    assert mb.context.shape[1] >= min_keep
    assert (mb.context.diff(dim=1) > 0).all(), "context must be strictly increasing (sorted, unique)"
    assert not (cover(mb.context, length) & cover(mb.targets, length)).any(), "context overlaps a target"


# ------------------------------------------------------------------------------------------ multi-block
@pytest.mark.parametrize("grid", GRIDS)
def test_multiblock_invariants(grid) -> None:
    sampler = MultiBlockMask(grid)
    g = torch.Generator().manual_seed(0)
    height, width = hw(grid)
    allowed = allowed_sizes(grid, sampler.target_scale, sampler.target_aspect)
    assert (height, width) not in allowed and (1, 1) not in allowed  # the tolerance is not vacuous
    seen = set()
    for _ in range(DRAWS):
        mb = sampler(8, g)
        check_common(mb, 8, (height, width), sampler.min_keep)
        assert mb.targets.shape[1] == 4
        h, w = block_shapes(mb.targets, width)
        assert (h, w) in allowed, (f"{h}x{w} block: fraction {h * w / (height * width):.3f}, aspect {h / w:.2f} "
                                   f"not reachable from scale {sampler.target_scale}, aspect {sampler.target_aspect}")
        seen.add((h, w))
    assert len(seen) > 1  # sizes are drawn, not fixed


def test_allowed_sizes_match_by_hand() -> None:
    # 8x8, scale (0.15, 0.2): area in [9.6, 12.8]; aspect h/w in [0.75, 1.5].
    # 4x4 comes from area 12.8, ratio 1 (sqrt(12.8) = 3.58 rounds to 4); 5x3 would need y >= 3 when
    # x >= 4.5 (ratio <= 1.5), an area >= 13.5 > 12.8.
    sizes = allowed_sizes(8, (0.15, 0.2), (0.75, 1.5))
    assert sizes == {(3, 3), (3, 4), (4, 3), (4, 4)}


@pytest.mark.parametrize("grid, scale, aspect", [((14, 14), (0.15, 0.2), (0.75, 1.5)), ((6, 10), (0.15, 0.2), (0.75, 1.5)),
                                                 ((4, 4), (0.5, 1.0), (0.2, 5.0))])
def test_allowed_sizes_cover_a_dense_sweep(grid, scale, aspect) -> None:
    """The helper is not stricter than the rounding it models: every size of a dense sweep is allowed."""
    height, width = grid
    area = torch.linspace(*scale, 301, dtype=torch.float64).view(-1, 1) * height * width
    ratio = torch.linspace(math.log(aspect[0]), math.log(aspect[1]), 301, dtype=torch.float64).exp()
    h = (area * ratio).sqrt().add(0.5).floor().clamp(1, height).long()
    w = (area / ratio).sqrt().add(0.5).floor().clamp(1, width).long()
    swept = set(zip(h.flatten().tolist(), w.flatten().tolist()))
    assert swept <= allowed_sizes(grid, scale, aspect)


def test_multiblock_context_inside_context_block() -> None:
    grid, scale = (14, 14), (0.3, 0.4)
    sampler = MultiBlockMask(grid, num_targets=1, context_scale=scale)
    largest = allowed_sizes(grid, scale, (1.0, 1.0))
    max_h, max_w = max(h for h, _ in largest), max(w for _, w in largest)
    assert max_h < 14 and max_w < 14
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        ctx = sampler(8, g).context
        rows, cols = ctx // 14, ctx % 14
        assert (rows.amax(1) - rows.amin(1) < max_h).all() and (cols.amax(1) - cols.amin(1) < max_w).all()


def test_multiblock_fallback_keeps_min_keep_and_disjointness() -> None:
    # A 1x1 context block never leaves 8 patches: every image falls back to context = grid minus targets,
    # and where four 2x2 targets cover more than 8 of the 16 patches, all targets collapse onto the first.
    sampler = MultiBlockMask(4, num_targets=4, target_scale=(0.25, 0.25), context_scale=(1 / 16, 1 / 16),
                             min_keep=8, max_tries=1)
    g = torch.Generator().manual_seed(0)
    collapsed = 0
    for _ in range(DRAWS):
        mb = sampler(1, g)
        check_common(mb, 1, (4, 4), 8)
        assert block_shapes(mb.targets, 4) == (2, 2)
        assert torch.equal(cover(mb.context, 16), ~cover(mb.targets, 16))
        collapsed += bool((mb.targets == mb.targets[:, :1]).all())
    assert 0 < collapsed < DRAWS


def test_target_area_is_capped_to_leave_min_keep() -> None:
    mb = MultiBlockMask(4, num_targets=2, target_scale=(1.0, 1.0), min_keep=5)(16, torch.Generator().manual_seed(0))
    check_common(mb, 16, (4, 4), 5)
    h, w = block_shapes(mb.targets, 4)
    assert h * w <= 16 - 5


def test_context_trimmed_to_batch_minimum_at_random() -> None:
    sampler = MultiBlockMask(14)
    g = torch.Generator().manual_seed(0)
    batch = sampler(32, g)
    # Every row keeps Nc patches; rows differ (the trimmed subsets are not all the same).
    assert len({tuple(r.tolist()) for r in batch.context}) > 1
    # The trimmed subset is uniform over each image's remaining context: no systematic bias to low indices.
    means = torch.stack([sampler(32, g).context.float().mean() for _ in range(50)])
    assert abs(float(means.mean()) - 97.5) < 15


# ------------------------------------------------------------------------------------------ reproducibility
SAMPLERS = [lambda g: MultiBlockMask(g), lambda g: RandomMask(g), lambda g: BlockMask(g)]


@pytest.mark.parametrize("make", SAMPLERS, ids=["multiblock", "random", "block"])
@pytest.mark.parametrize("grid", [14, (6, 10)])
def test_same_seed_same_masks(make, grid) -> None:
    sampler = make(grid)
    a, b = sampler(16, torch.Generator().manual_seed(7)), sampler(16, torch.Generator().manual_seed(7))
    c = sampler(16, torch.Generator().manual_seed(8))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    assert not (torch.equal(a.context, c.context) and torch.equal(a.targets, c.targets))
    torch.manual_seed(3)
    d = sampler(16)
    torch.manual_seed(3)
    e = sampler(16)
    assert torch.equal(d.context, e.context) and torch.equal(d.targets, e.targets)


# ------------------------------------------------------------------------------------------ random / block
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.75, 0.9])
def test_random_mask(grid, ratio) -> None:
    height, width = hw(grid)
    length = height * width
    keep = round((1 - ratio) * length)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        mb = RandomMask(grid, ratio)(8, g)
        check_common(mb, 8, (height, width), 1)
        assert mb.context.shape == (8, keep) and mb.targets.shape == (8, 1, length - keep)
        both = torch.cat([mb.context, mb.targets[:, 0]], dim=1).sort(dim=1).values
        assert torch.equal(both, torch.arange(length).expand(8, -1))
        assert len({tuple(r.tolist()) for r in mb.context}) > 1


@pytest.mark.parametrize("grid", GRIDS)
def test_block_mask_complement(grid) -> None:
    sampler = BlockMask(grid)
    height, width = hw(grid)
    length = height * width
    allowed = allowed_sizes(grid, sampler.scale, sampler.aspect)
    g = torch.Generator().manual_seed(0)
    for _ in range(DRAWS):
        mb = sampler(8, g)
        check_common(mb, 8, (height, width), sampler.min_keep)
        assert mb.targets.shape[1] == 1
        h, w = block_shapes(mb.targets, width)
        assert (h, w) in allowed
        assert mb.context.shape[1] == length - h * w
        both = torch.cat([mb.context, mb.targets[:, 0]], dim=1).sort(dim=1).values
        assert torch.equal(both, torch.arange(length).expand(8, -1))


# ------------------------------------------------------------------------------------------ MaskBatch, apply_masks
def test_mask_batch_bool_masks_and_to() -> None:
    mb = MultiBlockMask((6, 10))(5, torch.Generator().manual_seed(0))
    context, targets = mb.bool_masks()
    assert context.shape == targets.shape == (5, 60) and context.dtype == torch.bool
    assert (context.sum(1) == mb.context.shape[1]).all()
    for b in range(5):
        assert set(context[b].nonzero().flatten().tolist()) == set(mb.context[b].tolist())
        assert set(targets[b].nonzero().flatten().tolist()) == set(mb.targets[b].flatten().tolist())
    assert not (context & targets).any()
    moved = mb.to("meta")
    assert moved.context.device.type == moved.targets.device.type == "meta" and moved.grid == (6, 10)
    assert mb.context.device.type == "cpu"  # the original is untouched


def test_mask_batch_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="context"):
        MaskBatch(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 1, 2, dtype=torch.long), (4, 4))


def test_apply_masks_matches_indexing() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, 60, 5, generator=g)
    mb = MultiBlockMask((6, 10))(4, g)
    ctx = apply_masks(tokens, mb.context)
    assert ctx.shape == (4, mb.context.shape[1], 5)
    assert torch.equal(ctx, torch.stack([tokens[b, mb.context[b]] for b in range(4)]))
    tgt = apply_masks(tokens, mb.targets)
    assert tgt.shape == (4, *mb.targets.shape[1:], 5)
    expected = torch.stack([torch.stack([tokens[b, mb.targets[b, m]] for m in range(4)]) for b in range(4)])
    assert torch.equal(tgt, expected)
    tokens.requires_grad_(True)
    apply_masks(tokens, mb.context).sum().backward()
    assert torch.equal(tokens.grad[..., 0] != 0, mb.bool_masks()[0])


def test_apply_masks_rejects_mismatched_batch() -> None:
    with pytest.raises(ValueError, match="indices"):
        apply_masks(torch.zeros(2, 8, 3), torch.zeros(3, 4, dtype=torch.long))


# ------------------------------------------------------------------------------------------ collator
def _dataset() -> TensorDataset:
    return TensorDataset(torch.arange(10 * 3 * 8 * 8, dtype=torch.float32).view(10, 3, 8, 8), torch.arange(10))


def test_mask_collator_with_dataloader() -> None:
    data = _dataset()
    loader = DataLoader(data, batch_size=4, collate_fn=MaskCollator(MultiBlockMask(4, min_keep=2), seed=0))
    sizes = []
    for i, ((images, labels), masks) in enumerate(loader):
        n = len(labels)
        sizes.append(n)
        assert torch.equal(images, data.tensors[0][4 * i:4 * i + n]) and torch.equal(labels, torch.arange(10)[4 * i:][:n])
        assert isinstance(masks, MaskBatch) and masks.grid == (4, 4)
        assert len(masks.context) == len(masks.targets) == n
    assert sizes == [4, 4, 2]


def test_mask_collator_seed_is_reproducible() -> None:
    def masks(seed):
        loader = DataLoader(_dataset(), batch_size=5, collate_fn=MaskCollator(RandomMask(8), seed=seed))
        return [m.context for _, m in loader]

    a, b, c = masks(1), masks(1), masks(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # the generator advances between batches
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_mask_collator_workers_draw_different_masks() -> None:
    def masks():
        loader = DataLoader(_dataset(), batch_size=5, num_workers=2, generator=torch.Generator().manual_seed(0),
                            collate_fn=MaskCollator(RandomMask(8), seed=1))
        return [m.context for _, m in loader]

    first, again = masks(), masks()
    assert not torch.equal(first[0], first[1])  # worker 0 and worker 1 are not clones of one stream
    assert all(torch.equal(x, y) for x, y in zip(first, again))


# ------------------------------------------------------------------------------------------ factory
def test_make_mask_sampler() -> None:
    multi = make_mask_sampler("multiblock", 14, 0.75)
    assert isinstance(multi, MultiBlockMask) and multi.target_scale == pytest.approx((0.15, 0.2))
    rand = make_mask_sampler("random", (6, 10), 0.5)
    assert isinstance(rand, RandomMask) and rand(2).context.shape == (2, 30)
    block = make_mask_sampler("block", 8, 0.25)
    assert isinstance(block, BlockMask) and block(2).targets.shape[-1] in {h * w for h, w in allowed_sizes(8, (0.25, 0.25), block.aspect)}


# ------------------------------------------------------------------------------------------ validation
INVALID = [
    (lambda: MultiBlockMask(0), "grid=0"),
    (lambda: MultiBlockMask((4, 0)), "grid=(4, 0)"),
    (lambda: MultiBlockMask((4, 4, 4)), "grid=(4, 4, 4)"),
    (lambda: MultiBlockMask(2.5), "grid=2.5"),
    (lambda: MultiBlockMask(8, num_targets=0), "num_targets=0"),
    (lambda: MultiBlockMask(8, target_scale=(0.0, 0.2)), "target_scale=(0.0, 0.2)"),
    (lambda: MultiBlockMask(8, target_scale=(0.3, 0.2)), "target_scale=(0.3, 0.2)"),
    (lambda: MultiBlockMask(8, target_scale=(0.5, 1.5)), "target_scale=(0.5, 1.5)"),
    (lambda: MultiBlockMask(8, target_scale=0.2), "target_scale=0.2"),
    (lambda: MultiBlockMask(8, target_aspect=(0.0, 1.0)), "target_aspect=(0.0, 1.0)"),
    (lambda: MultiBlockMask(8, context_scale=(0.9, 1.1)), "context_scale=(0.9, 1.1)"),
    (lambda: MultiBlockMask(8, context_aspect=(2.0, 1.0)), "context_aspect=(2.0, 1.0)"),
    (lambda: MultiBlockMask(8, min_keep=64), "min_keep=64"),
    (lambda: MultiBlockMask(8, min_keep=0), "min_keep=0"),
    (lambda: MultiBlockMask(1), "min_keep=4"),
    (lambda: MultiBlockMask(8, max_tries=0), "max_tries=0"),
    (lambda: MultiBlockMask(8)(0), "batch_size=0"),
    (lambda: RandomMask(8, mask_ratio=1.0), "mask_ratio=1.0"),
    (lambda: RandomMask(8, mask_ratio=0.0), "mask_ratio=0.0"),
    (lambda: RandomMask(2, mask_ratio=0.95), "mask_ratio=0.95"),  # keeps round(0.2) = 0 of 4 patches
    (lambda: BlockMask(8, scale=(0.1, 2.0)), "scale=(0.1, 2.0)"),
    (lambda: BlockMask(8, aspect=(-1.0, 1.0)), "aspect=(-1.0, 1.0)"),
    (lambda: BlockMask(2, min_keep=4), "min_keep=4"),
    (lambda: make_mask_sampler("nope", 8, 0.5), "kind='nope'"),
    (lambda: make_mask_sampler("random", 8, 1.5), "mask_ratio=1.5"),
]


@pytest.mark.parametrize("make, needle", INVALID, ids=[n for _, n in INVALID])
def test_invalid_arguments(make, needle) -> None:
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert message.startswith(needle + ":"), message
    assert "must be" in message  # states the allowed range
