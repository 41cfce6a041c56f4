"""Presets: YAML configs shipped inside the package (``torchwm/config/presets/<name>.yaml``), read with
``importlib.resources`` so that they work from any directory and from an installed wheel."""

from __future__ import annotations

import os
from importlib import resources

PRESET_SUFFIX = ".yaml"


def _preset_folder():
    return resources.files("torchwm.config") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted (e.g. ``"dmc_point_mass"``)."""
    return sorted(p.name[: -len(PRESET_SUFFIX)] for p in _preset_folder().iterdir()
                  if p.name.endswith(PRESET_SUFFIX))


def preset_text(name: str) -> str:
    """The YAML text of preset ``name`` (with or without ``.yaml``); ``KeyError`` listing the presets."""
    stem = name[: -len(PRESET_SUFFIX)] if name.endswith(PRESET_SUFFIX) else name
    if stem not in preset_names():
        raise KeyError(f"no preset {name!r}; presets: {', '.join(preset_names())}")
    return (_preset_folder() / f"{stem}{PRESET_SUFFIX}").read_text(encoding="utf-8")


def read_config_text(source: str | os.PathLike[str]) -> tuple[str, str]:
    """``(where, YAML text)`` of ``source``: a file when one exists at that path, else a preset's name.

    Neither raises ``FileNotFoundError`` that names the path and lists the presets.
    """
    path = os.fspath(source)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    if os.path.exists(path):
        raise IsADirectoryError(f"config {path!r} is a directory, not a YAML file or a preset name")
    if os.sep not in path and "/" not in path:
        try:
            return f"preset {path}", preset_text(path)
        except KeyError:
            pass
    raise FileNotFoundError(f"config {path!r}: no such file, and not a preset name; presets: "
                            f"{', '.join(preset_names())}")
