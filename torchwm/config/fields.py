"""The rules behind every config field: declared in a field's ``metadata``, checked by one walker.

Supported metadata keys:

``min`` / ``max``            inclusive bounds
``gt`` / ``lt``              exclusive bounds
``open_interval: (lo, hi)``  shorthand for ``gt=lo, lt=hi``
``choices: (...)``           allowed values (strings or numbers)
``pattern`` + ``allowed``    allowed strings as a regular expression, and how to show them
``nonempty: True``           the string may not be empty

Also here: building a config dataclass from nested dicts (strict, every problem collected), lossless
type conversion of YAML values and resolving ``section.field`` override keys.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import field
from functools import lru_cache
from typing import Any, TypeVar

_T = TypeVar("_T")


def opt(default: Any, **rules: Any) -> Any:
    """A dataclass field with a default value and declarative validation rules in its metadata."""
    return field(default=default, metadata=rules)


def section(cls: type) -> Any:
    """A nested-section field."""
    return field(default_factory=cls)


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def typed_fields(obj_or_cls: Any) -> list[tuple[dataclasses.Field, Any]]:
    """``(field, resolved type)`` pairs of a dataclass, in declaration order."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range_text(meta: dict[str, Any]) -> str:
    """Human form of the numeric rules, e.g. ``>= 1``, ``in [0, 1)``, ``in the open interval (0, 1)``."""
    if "open_interval" in meta:
        lo, hi = meta["open_interval"]
        return f"in the open interval ({_fmt(lo)}, {_fmt(hi)})"
    lo = ("[", meta["min"]) if "min" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["max"]) if "max" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{_fmt(lo[1])}, {_fmt(hi[1])}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {_fmt(lo[1])}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {_fmt(hi[1])}"
    return ""


def _in_range(x: float, meta: dict[str, Any]) -> bool:
    if "open_interval" in meta:
        lo, hi = meta["open_interval"]
        return lo < x < hi
    return (("min" not in meta or x >= meta["min"]) and ("gt" not in meta or x > meta["gt"])
            and ("max" not in meta or x <= meta["max"]) and ("lt" not in meta or x < meta["lt"]))


def _has_type(value: Any, tp: Any) -> bool:
    """Strict type test: bool is not accepted as int/float; int is accepted as float."""
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if typing.get_origin(tp) is tuple:
        return isinstance(value, tuple)
    return isinstance(value, tp)


def _choice_problems(path: str, name: str, value: Any, meta: Any) -> list[str]:
    """The problem with ``value`` if the field's ``choices`` exclude it (none without choices)."""
    if "choices" not in meta or value in meta["choices"]:
        return []
    allowed = ", ".join(repr(c) for c in sorted(meta["choices"]))
    return [f"{path}={value!r}: unknown {name}; allowed: {allowed}"]


def field_problems(obj: Any, prefix: str) -> list[str]:
    """Check every field of a config dataclass (recursing into sections) against its type and metadata."""
    problems: list[str] = []
    for f, tp in typed_fields(obj):
        path = prefix + f.name
        value = getattr(obj, f.name)
        if is_section(tp):
            if isinstance(value, tp):
                problems += field_problems(value, path + ".")
            else:
                problems.append(f"{path}={value!r}: must be a {tp.__name__} section")
            continue
        meta = f.metadata
        rng = _range_text(meta)
        if tp in (int, float):
            kind = _type_name(tp)
            if not _has_type(value, tp):
                problems.append(f"{path}={value!r}: must be {kind} {rng}".rstrip() + f", got {type(value).__name__}")
            elif tp is float and not math.isfinite(value):
                problems.append(f"{path}={value!r}: must be a finite number {rng}".rstrip())
            elif not _in_range(value, meta):
                want = f"{kind} {rng}" if tp is int else rng
                problems.append(f"{path}={value!r}: must be {want}")
            else:
                problems += _choice_problems(path, f.name, value, meta)
            continue
        if not _has_type(value, tp):
            problems.append(f"{path}={value!r}: must be {_type_name(tp)}, got {type(value).__name__}")
            continue
        problems += _choice_problems(path, f.name, value, meta)
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            allowed = ", ".join(repr(c) for c in meta.get("allowed", (meta["pattern"],)))
            problems.append(f"{path}={value!r}: unknown {f.name}; allowed: {allowed}")
        if meta.get("nonempty") and not value:
            problems.append(f"{path}={value!r}: must be a non-empty string")
    return problems


def coerce(path: str, value: Any, tp: Any) -> tuple[Any, str | None]:
    """Convert ``value`` to ``tp`` where that loses nothing; return ``(value, problem or None)``."""
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value), None
            except ValueError:
                pass
        elif _has_type(value, float):
            return float(value), None
    elif tp is int:
        if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
            return int(value), None
        if _has_type(value, int):
            return value, None
    elif typing.get_origin(tp) is tuple:  # YAML has no tuples: a list becomes a tuple
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(args) == 2 and args[1] is Ellipsis:
            items = [coerce(f"{path}[{i}]", v, args[0]) for i, v in enumerate(value)]
            bad = next((p for _, p in items if p), None)
            return (value, bad) if bad else (tuple(v for v, _ in items), None)
        if isinstance(value, (list, tuple)) and (not args or len(args) == len(value)):
            return tuple(value), None
    elif _has_type(value, tp):
        return value, None
    return value, f"{path}={value!r}: expected {_type_name(tp)}, got {type(value).__name__}"


def build(cls: type[_T], d: Any, prefix: str, problems: list[str]) -> _T:
    """Instantiate dataclass ``cls`` from a (partial) dict, collecting problems."""
    where = f"keys of section {prefix[:-1]!r}" if prefix else "top-level keys"
    if d is None:  # a section whose keys are all commented out
        d = {}
    if not isinstance(d, dict):
        problems.append(f"{prefix[:-1] or 'config'}={d!r}: expected a mapping of {cls.__name__} keys")
        return cls()
    fields = typed_fields(cls)
    names = [f.name for f, _ in fields]
    for key in d:
        if key not in names:
            problems.append(f"{prefix}{key}: unknown key; valid {where}: {', '.join(names)}")
    kwargs: dict[str, Any] = {}
    for f, tp in fields:
        if f.name not in d:
            continue
        path = prefix + f.name
        if is_section(tp):
            kwargs[f.name] = build(tp, d[f.name], path + ".", problems)
            continue
        value, problem = coerce(path, d[f.name], tp)
        if problem:
            problems.append(problem)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


def resolve(cfg: Any, key: str) -> tuple[Any, str, Any, str | None]:
    """Find ``(object, field name, field type, problem)`` for a dotted override key."""
    obj: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = dict((f.name, tp) for f, tp in typed_fields(obj))
        here = ".".join(parts[:i])
        where = f"fields of section {here!r}" if here else "top-level fields"
        if part not in fields:
            return None, "", None, (f"{key!r}: unknown field {part!r}; valid {where}: "
                                    f"{', '.join(fields)}")
        tp = fields[part]
        last = i == len(parts) - 1
        if is_section(tp):
            if last:
                sub = ", ".join(f"{key}.{f.name}" for f in dataclasses.fields(tp))
                return None, "", None, f"{key!r}: is a section, not a field; set one of: {sub}"
            obj = getattr(obj, part)
        elif not last:
            return None, "", None, f"{key!r}: {'.'.join(parts[:i + 1])!r} is a field, not a section"
        else:
            return obj, part, tp, None
    raise AssertionError("unreachable")
