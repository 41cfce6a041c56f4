"""The on-disk format of a trajectory store: ``meta.json`` (:class:`StoreMeta`), the arrays of an episode and
their ``.npy`` headers. :class:`~torchwm.data.store.TrajectoryStore` reads and writes stores in it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from torchwm.data.policies import USES_NOISE_BETA

FORMAT_VERSION = 1

# Array files of an episode: name -> dtype. Shapes are checked in :meth:`TrajectoryStore._check_episode`.
ARRAY_DTYPES: dict[str, np.dtype] = {
    "frames": np.dtype(np.uint8),
    "actions": np.dtype(np.float32),
    "states": np.dtype(np.float64),
    "rewards": np.dtype(np.float32),
}

COMPAT_FIELDS: tuple[str, ...] = (
    "env_id", "image_size", "action_repeat", "camera", "policy", "noise_beta", "seed", "steps",
    "frame_shape", "action_dim", "state_dim",
)
"""Fields that must agree for episodes to be added to an existing store."""


class StoreError(ValueError):
    """A trajectory store is missing, corrupt, or does not match the requested collection settings."""


@dataclass(frozen=True)
class StoreMeta:
    """What a store holds and how it was collected (``meta.json``).

    ``camera`` is the value passed at collection (-1 = the domain's default camera). ``steps`` is the
    requested number of env steps per episode (an episode is shorter if the task's time limit ends it).
    ``noise_beta`` only matters for the policies in :data:`~torchwm.data.policies.USES_NOISE_BETA`.
    """

    env_id: str
    image_size: int
    action_repeat: int
    camera: int
    seed: int
    policy: str
    noise_beta: float
    steps: int
    frame_shape: tuple[int, int, int]
    action_dim: int
    state_dim: int
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``frame_shape`` as a list)."""
        d = dataclasses.asdict(self)
        d["frame_shape"] = list(self.frame_shape)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "meta.json") -> StoreMeta:
        """Parse and type-check a ``meta.json`` mapping; raises :class:`StoreError` naming ``source``."""
        if not isinstance(data, dict):
            raise StoreError(f"{source}: expected a JSON object, got {type(data).__name__}; "
                             "delete the store directory and re-collect")
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise StoreError(f"{source}: missing keys {', '.join(missing)}; the store was not written by this "
                             "version of torchwm or is damaged: delete it and re-collect")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise StoreError(f"{source}: store format version {version!r}, this torchwm reads version "
                             f"{FORMAT_VERSION}; re-collect the store with this version")
        kwargs = {k: data[k] for k in names if k in data}
        try:
            kwargs["frame_shape"] = tuple(int(x) for x in kwargs["frame_shape"])
            for k in ("image_size", "action_repeat", "camera", "seed", "steps", "action_dim", "state_dim"):
                if isinstance(kwargs[k], bool) or not isinstance(kwargs[k], int):
                    raise TypeError(f"{k} must be an integer, got {kwargs[k]!r}")
            kwargs["noise_beta"] = float(kwargs["noise_beta"])
            for k in ("env_id", "policy"):
                if not isinstance(kwargs[k], str):
                    raise TypeError(f"{k} must be a string, got {kwargs[k]!r}")
            if len(kwargs["frame_shape"]) != 3:
                raise TypeError(f"frame_shape must have 3 entries, got {kwargs['frame_shape']!r}")
        except (TypeError, ValueError) as err:
            raise StoreError(f"{source}: {err}; delete the store directory and re-collect") from None
        return cls(**kwargs)

    def mismatches(self, other: StoreMeta) -> list[str]:
        """``"field: stored X, requested Y"`` for every field in :data:`COMPAT_FIELDS` that differs."""
        out = []
        for name in COMPAT_FIELDS:
            if name == "noise_beta" and not {self.policy, other.policy} & USES_NOISE_BETA:
                continue  # unused by the other policies
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name}: stored {mine!r}, requested {theirs!r}")
        return out


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from an ``.npy`` header; checks that the file holds exactly that much data.

    Reads only the header (no array data). Raises :class:`StoreError` for an unreadable header or a
    file that is shorter (truncated) or longer than its header says.
    """
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            major, _minor = fmt.read_magic(f)
            if major == 1:
                shape, _fortran, dtype = fmt.read_array_header_1_0(f)
            else:
                shape, _fortran, dtype = fmt.read_array_header_2_0(f)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise StoreError(f"{path}: unreadable .npy header ({err})") from None
    if dtype.hasobject:
        raise StoreError(f"{path}: holds Python objects (dtype {dtype}), not a numeric array")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        raise StoreError(f"{path}: truncated ({size} bytes, its header {shape} {dtype} needs {expected})")
    if size > expected:
        raise StoreError(f"{path}: {size - expected} unexpected bytes after the {shape} {dtype} array")
    return tuple(int(s) for s in shape), dtype
