"""Headless rendering set-up; must run before ``dm_control`` is first imported.

* ``MUJOCO_GL`` defaults to ``egl`` (GPU-less Mesa EGL works headless; ``osmesa`` does not on the
  machines we test on). ``PYOPENGL_PLATFORM`` is made to agree with it, otherwise PyOpenGL picks GLX
  and fails without a display.
* Loading triton's LLVM *after* dm_control has loaded Mesa's EGL driver segfaults the process
  (measured: ``import torchvision`` or ``import triton`` after ``suite.load`` crashes in
  ``triton/knobs.py``; loading triton first, 0.13 s, avoids it). torch/torchvision import triton
  lazily, so we load it before dm_control when it is installed.
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
