"""Headless rendering set-up; must run before ``dm_control`` is first imported.

* ``MUJOCO_GL`` defaults to ``egl`` (GPU-less Mesa EGL works headless; ``osmesa`` does not on the
  machines we test on). ``PYOPENGL_PLATFORM`` is made to agree with it, otherwise PyOpenGL picks GLX
  and fails without a display.
* Loading triton's LLVM *after* dm_control has loaded Mesa's EGL driver segfaults the process
  (measured: ``import torchvision`` or ``import triton`` after ``suite.load`` crashes in
  ``triton/knobs.py``; loading triton first, 0.13 s, avoids it). torch/torchvision import triton
  lazily, so we load it before dm_control when it is installed.
* A process forked after its parent rendered a frame hangs at its own first frame (``fork`` is the
  default start method of ``gymnasium.make_vec(..., vectorization_mode="async")`` on Linux). Envs call
  :func:`check_render_process` before each frame, which raises an error naming the fix instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def configure_headless_gl() -> None:
    """Call before importing dm_control: default ``MUJOCO_GL=egl`` with a matching
    ``PYOPENGL_PLATFORM`` (unless the user set them), and load triton first if it is installed."""
    backend = os.environ.setdefault("MUJOCO_GL", "egl")
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


_gl_pid: int | None = None
"""PID of the process that rendered first in this interpreter (a fork child inherits the value)."""

VECTOR_ENV_RECIPE = ('gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="async", '
                     'vector_kwargs={"context": "spawn"})')
"""How to build an async vector env whose workers render: each worker is a fresh process (docs/envs.md)."""


def check_render_process() -> None:
    """Raise ``RuntimeError`` if this process was forked from one that had already rendered.

    A forked child inherits the parent's GL state (EGL display, driver threads, dm_control's render
    thread) without the threads themselves, so its first frame waits forever; measured with Mesa's EGL:
    both an env built in the parent and a new env built in the child hang at ``reset()``. Nothing is
    wrong with a child forked before the parent's first frame, or with one started by "spawn".
    """
    if _gl_pid is not None and _gl_pid != os.getpid():
        raise RuntimeError(
            f"process {os.getpid()} was forked from process {_gl_pid} after that process had rendered a "
            f"frame (MUJOCO_GL={os.environ.get('MUJOCO_GL')}); rendering here would hang forever, because "
            "a forked child cannot use its parent's OpenGL context. Start processes that render with "
            f"'spawn': for vector envs {VECTOR_ENV_RECIPE}, for your own workers "
            "multiprocessing.get_context('spawn'); or fork them before the parent renders its first frame.")


def note_render_process() -> None:
    """Record that this process has made a GL context (call after its first frame)."""
    global _gl_pid
    if _gl_pid is None:
        _gl_pid = os.getpid()
