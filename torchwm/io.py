"""Atomic file writes: write a temporary file in the target's folder, fsync, then ``os.replace``.

A reader (or a crash) never sees a half-written config or checkpoint: the old file stays intact
until the new one is complete. The temporary file is named ``.tmp-<name>-<pid>-<random>`` (``<pid>``: the
writing process); one left by a killed writer is removed by :func:`remove_stale_temp`.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

TEMP_PREFIX = ".tmp-"
_TEMP_FILE = re.compile(r"^\.tmp-.+-(\d+)-[A-Za-z0-9_]+$")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-{os.getpid()}-", dir=path.parent)
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


def temp_writer(name: str) -> int | None:
    """The PID of the process that wrote the temporary file ``name`` of :func:`atomic_write` (None: not one)."""
    m = _TEMP_FILE.match(name)
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temp(folder: str | os.PathLike[str], every_writer: bool = False) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` in ``folder`` (not below) left by writers that no
    longer run; with ``every_writer`` (the caller holds the folder's lock, so no other process writes there)
    those of any process but this one. Returns the removed files."""
    if not os.path.isdir(folder):
        return []
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            pid = temp_writer(entry.name)
            if pid is None or not entry.is_file(follow_symlinks=False) or pid == os.getpid():
                continue
            if every_writer or not pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
