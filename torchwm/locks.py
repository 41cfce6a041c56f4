"""Advisory locks on the directories torchwm writes: one writer per run directory and per trajectory store.

A lock is an ``fcntl.flock`` on the file ``.lock`` inside the directory, which holds its holder's PID while
the lock is held. The kernel drops the lock when the holder exits, however it exits (a crash or ``kill -9``
leaves no stale lock); the file itself stays. Readers (loading a finished run, planning, reading a store)
take no lock.

Within one process a lock is re-entrant: an agent holds its run's lock for the whole of ``train()`` and the
:class:`~torchwm.training.Trainer` inside takes it again. Without ``fcntl`` (Windows) locking is a no-op.

The ground floor of the package: nothing here imports another part of torchwm, nor torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"

# lock file (resolved) -> [owning PID, file descriptor, depth]
_held: dict[str, list[int]] = {}


class RunLockedError(RuntimeError):
    """Another torchwm process is writing the run directory (or store) this one was asked to write."""

    def __init__(self, path: str | os.PathLike[str], pid: int | None, what: str = "logging.run_dir") -> None:
        self.path, self.pid = Path(path), pid
        holder = f"PID {pid}" if pid is not None else "PID unknown"
        super().__init__(f"{self.path} is in use by another torchwm process ({holder}); wait for it or use "
                         f"another {what}")


def lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The PID written in ``path/.lock`` (the last or current holder), or None."""
    try:
        text = (Path(path) / LOCK_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def is_held_here(path: str | os.PathLike[str]) -> bool:
    """Whether this process holds the lock of directory ``path``."""
    entry = _held.get(_key(path))
    return entry is not None and entry[0] == os.getpid()


@contextlib.contextmanager
def hold(path: str | os.PathLike[str], *, wait: bool = False,
         on_wait: Callable[[int | None], None] | None = None,
         what: str = "logging.run_dir") -> Iterator[Path]:
    """Hold the lock of directory ``path`` (created if missing) inside the block; yields ``path``.

    Held by another process: ``wait=False`` raises :class:`RunLockedError` at once (its message names the
    holder's PID and ``what`` to change); ``wait=True`` calls ``on_wait(pid)`` once and blocks until it is free.
    Released on leaving the block, also on an exception.
    """
    path = Path(path)
    key = _key(path)
    entry = _held.get(key)
    if entry is not None and entry[0] == os.getpid():  # re-entered in this process
        entry[2] += 1
        try:
            yield path
        finally:
            entry[2] -= 1
        return
    path.mkdir(parents=True, exist_ok=True)
    fd, writable = _open_lock_file(path / LOCK_FILE)
    if fd is None:  # a read-only directory: nothing can be written there, by this process or through it
        yield path
        return
    try:
        _acquire(fd, path, wait, on_wait, what)
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except BaseException:
        os.close(fd)
        raise
    _held[key] = [os.getpid(), fd, 1]
    try:
        yield path
    finally:
        del _held[key]
        if writable:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale PID for the next reader
        os.close(fd)  # closing the only descriptor releases the lock


def print_waiting(path: str | os.PathLike[str], doing: str) -> Callable[[int | None], None]:
    """An ``on_wait`` for :func:`hold` that prints ``waiting for <path> (PID n is <doing>)`` to stderr."""
    def report(pid: int | None) -> None:
        holder = f"PID {pid}" if pid is not None else "another process"
        print(f"waiting for {path} ({holder} is {doing})", file=sys.stderr, flush=True)

    return report


def _open_lock_file(file: Path) -> tuple[int | None, bool]:
    """``(descriptor, writable)``; a lock file another user owns is locked read-only (flock allows it)."""
    try:
        return os.open(file, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:
        pass
    except OSError as err:
        if err.errno != errno.EROFS:
            raise
    try:
        return os.open(file, os.O_RDONLY), False
    except OSError:
        return None, False


def _acquire(fd: int, path: Path, wait: bool, on_wait: Callable[[int | None], None] | None, what: str) -> None:
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pid = lock_holder(path)
    if not wait:
        raise RunLockedError(path, pid, what)
    if on_wait is not None:
        on_wait(pid)
    fcntl.flock(fd, fcntl.LOCK_EX)


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(Path(path) / LOCK_FILE)
