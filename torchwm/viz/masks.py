"""Pretraining figures: which patches the context encoder sees (green) and which it must predict (red), for
images (I-JEPA) and clips (V-JEPA), and the views of multi-view pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from torchwm.masks import MaskBatch

CONTEXT_RGB = np.array([0.1, 0.85, 0.2])
TARGET_RGB = np.array([0.95, 0.1, 0.1])


def mask_overlay(image: torch.Tensor | np.ndarray, context: np.ndarray, targets: np.ndarray, grid: tuple[int, int],
                 alpha: float = 0.45) -> np.ndarray:
    """One image ``(3, H, W)`` in [0, 1] and boolean patch masks ``(rows*cols,)`` → RGB ``(H, W, 3)`` float.

    Context patches are tinted green, target patches red (a patch in both shows red); the rest is dimmed.
    """
    img = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    h, w = img.shape[:2]
    rows, cols = grid
    cell = lambda m: np.kron(m.reshape(rows, cols), np.ones((h // rows, w // cols)))[..., None]  # noqa: E731
    ctx, tgt = cell(context.astype(np.float32)), cell(targets.astype(np.float32))
    ctx = ctx * (1 - tgt)
    rest = 1 - np.clip(ctx + tgt, 0, 1)
    out = (img * rest * 0.35 + ((1 - alpha) * img + alpha * CONTEXT_RGB) * ctx
           + ((1 - alpha) * img + alpha * TARGET_RGB) * tgt)
    return np.clip(out, 0, 1)


def mask_figure(images: torch.Tensor, masks: MaskBatch, columns: int = 4):
    """A matplotlib figure: each image beside its masked view (context green, targets red).

    ``images (B, 3, H, W)`` in [0, 1]; ``masks`` for the same B. Returns the ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    context, targets = (m.cpu().numpy() for m in masks.bool_masks())
    b = len(images)
    columns = min(columns, b)
    rows = (b + columns - 1) // columns
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2.0 * 2 * columns, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(b):
        r, c = divmod(i, columns)
        img = images[i].detach().cpu().float().clamp(0, 1).numpy()
        axes[r, 2 * c].imshow(img.transpose(1, 2, 0))
        axes[r, 2 * c + 1].imshow(mask_overlay(img, context[i], targets[i], masks.grid))
        axes[r, 2 * c + 1].set_title(f"ctx {int(context[i].sum())} / tgt {int(targets[i].sum())}", fontsize=7)
    fig.suptitle("I-JEPA masks: context (green) predicts targets (red)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def save_mask_figure(images: torch.Tensor, masks: MaskBatch, path: str | Path, writer=None, step: int = 0,
                     tag: str = "masks/examples") -> Path:
    """Draw :func:`mask_figure`, save it as PNG at ``path`` and, with a ``SummaryWriter``, log it as ``tag``."""
    return save_figure(mask_figure(images, masks), path, writer, step, tag)


def clip_mask_figure(clips: torch.Tensor, masks: dict[str, MaskBatch], tubelet: int):
    """A matplotlib figure of V-JEPA masks: one row per (clip, mask), one column per frame; in each frame the
    context tokens are green and the target tokens red.

    ``clips (B, T, 3, H, W)`` in [0, 1] (or uint8); ``masks`` over their ``(T / tubelet, h, w)`` token grid.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    clips = clips.float() / 255 if clips.dtype == torch.uint8 else clips.float()
    b, t = clips.shape[:2]
    rows = [(i, name) for i in range(b) for name in masks]
    fig, axes = plt.subplots(len(rows), t, figsize=(1.3 * t, 1.45 * len(rows)), squeeze=False)
    bools = {name: [m.cpu().numpy() for m in mask.bool_masks()] for name, mask in masks.items()}
    for r, (i, name) in enumerate(rows):
        mask = masks[name]
        steps, h, w = mask.grid
        context, targets = (m[i].reshape(steps, h * w) for m in bools[name])
        for f in range(t):
            ax = axes[r, f]
            ax.axis("off")
            img = clips[i, f].detach().cpu().clamp(0, 1).numpy()
            ax.imshow(mask_overlay(img, context[f // tubelet], targets[f // tubelet], (h, w)))
            if f == 0:
                ax.set_title(f"clip {i}: {name}", fontsize=7, loc="left")
    fig.suptitle("V-JEPA masks per frame: context (green) predicts targets (red)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def save_figure(fig, path: str | Path, writer=None, step: int = 0, tag: str = "masks/examples") -> Path:
    """Save a matplotlib ``fig`` as PNG at ``path`` and, with a ``SummaryWriter``, log it as ``tag``; closes it."""
    import matplotlib.pyplot as plt

    from torchwm.io import atomic_write_png

    path = atomic_write_png(path, fig)
    if writer is not None:
        writer.add_figure(tag, fig, step, close=False)
    plt.close(fig)
    return path


def save_image_grid(images: torch.Tensor, path: str | Path, writer=None, step: int = 0,
                    tag: str = "views/examples") -> Path:
    """``images (N, V, 3, H, W)`` in [0, 1] as a grid (one row per item, its V images side by side), saved as
    PNG at ``path`` and, with a ``SummaryWriter``, logged as ``tag``."""
    from torchvision.utils import make_grid

    from torchwm.io import atomic_write_png

    n, v = images.shape[:2]
    grid = make_grid(images.flatten(0, 1).clamp(0, 1), nrow=v, padding=2, pad_value=1.0)
    pixels = (grid * 255).round().to(torch.uint8)
    if writer is not None:
        writer.add_image(tag, pixels, step)
    return atomic_write_png(path, pixels)
