"""Atomic file writes: write a temporary file in the target's folder, fsync, then ``os.replace``.

A reader (or a crash) never sees a half-written config or checkpoint: the old file stays intact
until the new one is complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (serialised in memory first, then written and renamed)."""
    import io

    import torch  # here, not at module level: collection workers import this module without torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def atomic_write_png(path: str | os.PathLike[str], image: Any, dpi: int = 110) -> Path:
    """Save a matplotlib ``Figure`` or a uint8 image ``(3, H, W)`` (tensor or array) as PNG, atomically."""
    if hasattr(image, "savefig"):
        return atomic_write(path, lambda f: image.savefig(f, format="png", dpi=dpi))
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image.cpu() if hasattr(image, "cpu") else image).transpose(1, 2, 0)
    return atomic_write(path, lambda f: Image.fromarray(pixels).save(f, format="PNG"))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
