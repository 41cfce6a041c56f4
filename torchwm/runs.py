"""Run directories: where a run's files live, and how its model and metrics are written and read.

Layout of ``run_dir``::

    config.yaml            the config the run was started with
    checkpoints/last.pt    latest training state (model, optimizer, scheduler, RNG, data order, encoder spec)
    model.pt               the finished model: config, whole-model weights, the spatial encoder with its spec,
                           and what training decided from the data (``decided``: a world model's variance floor)
    metrics.jsonl          one JSON record per logged step
    metrics.json           the final metrics (every key's last value, and ``steps``)
    eval/                  evaluation results (JSON) and episode videos
    figures/               figures (PNG)
    events.out.tfevents.*  TensorBoard
    .lock                  held by the process training into the directory (see :mod:`torchwm.locks`)

Every saved model and checkpoint carries its spatial encoder's ``encoder_spec`` (the constructor
arguments of :class:`~torchwm.nn.encoders.SpatialEncoder`), so an encoder is rebuilt from any run file
without rebuilding the model around it: ``model.pt`` holds the encoder's weights as ``encoder``; a
checkpoint names where they sit in the whole model's weights (``encoder_prefix``).

The ground floor of the package: nothing here imports training, models, backbones or agents.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, ContextManager

from torchwm.io import atomic_torch_save, atomic_write_text, remove_stale_temp
from torchwm.locks import hold

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.pt"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
EVAL_DIR = "eval"
GOAL_REACHING_FILE = "goal_reaching.json"
FIGURES_DIR = "figures"
EVENTS_PATTERN = "events.out.tfevents.*"


class TornMetricsWarning(UserWarning):
    """The last line of ``metrics.jsonl`` was cut short (the run was killed while writing it); it is ignored."""


class RunDir:
    """The files of one run directory (see the module docs); nothing is created until written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config = self.path / CONFIG_FILE
        self.model = self.path / MODEL_FILE
        self.checkpoint = self.path / CHECKPOINT_DIR / LAST_CHECKPOINT
        self.metrics_log = self.path / METRICS_LOG
        self.metrics_file = self.path / METRICS_FILE
        self.eval_dir = self.path / EVAL_DIR
        self.figures_dir = self.path / FIGURES_DIR

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def has_training_state(self) -> bool:
        """Whether a run was started here (its config and checkpoints exist)."""
        return self.config.exists() and self.checkpoint.parent.exists()

    def writing(self) -> ContextManager[Path]:
        """Hold the run's lock in a ``with`` block (one writer per run directory; re-entrant in a process).
        Another process holding it raises :class:`~torchwm.locks.RunLockedError` at once. Under torchrun only rank 0
        writes the run directory, so only it takes the lock (``RANK`` is read from the environment: no torch here)."""
        if int(os.environ.get("RANK", "0") or 0) != 0:
            return contextlib.nullcontext(self.path)
        return hold(self.path)

    def start_fresh(self) -> None:
        """Before training from step 0: drop what a run killed before its first checkpoint left (its metrics
        log and TensorBoard event files), so they are not logged twice."""
        self.metrics_log.unlink(missing_ok=True)
        for events in self.path.glob(EVENTS_PATTERN):
            if events.is_file():
                events.unlink()

    def remove_stale_temp(self) -> list[Path]:
        """Remove temporary files of interrupted atomic writes in the run directory and ``checkpoints/``
        (any other process's: the caller holds the run's lock); returns them."""
        folders = (self.path, self.checkpoint.parent)
        return [f for folder in folders for f in remove_stale_temp(folder, every_writer=True)]

    # ----------------------------------------------------------------------------------- metrics
    def read_metrics(self) -> list[dict[str, float]]:
        """The records of ``metrics.jsonl`` in order (empty if there are none).

        A last line cut short (a run killed while writing it) is ignored with a :class:`TornMetricsWarning`;
        the next resume rewrites the log without it. A damaged line elsewhere raises ``ValueError``.
        """
        if not self.metrics_log.exists():
            return []
        lines = [(n, line) for n, line in enumerate(self.metrics_log.read_text(encoding="utf-8").split("\n"), 1)
                 if line.strip()]
        records = []
        for i, (n, line) in enumerate(lines):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"a {type(record).__name__}, not a record")
            except ValueError as err:
                if i == len(lines) - 1:
                    warnings.warn(f"{self.metrics_log}: line {n} is incomplete (the run was killed while writing "
                                  "it) and is ignored; resuming the run rewrites the log without it",
                                  TornMetricsWarning, stacklevel=2)
                    break
                raise ValueError(f"{self.metrics_log}: line {n} is not a JSON record ({err}); delete that line "
                                 "or the file (metrics.json and TensorBoard keep the final values)") from None
            records.append(record)
        return records

    def append_metrics(self, record: dict[str, float]) -> None:
        """Append one record (a line of JSON) to ``metrics.jsonl``."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop records logged after ``step`` (an interrupted run's, which a resumed one logs again)."""
        if self.metrics_log.exists():
            kept = [r for r in self.read_metrics() if r["step"] <= step]
            atomic_write_text(self.metrics_log, "".join(json.dumps(r) + "\n" for r in kept))

    def final_metrics(self) -> dict[str, Any]:
        """``metrics.json`` (empty before a run has finished)."""
        if not self.metrics_file.exists():
            return {}
        return json.loads(self.metrics_file.read_text(encoding="utf-8"))

    def finish_metrics(self, steps: int) -> dict[str, Any]:
        """Fold ``metrics.jsonl`` into ``metrics.json`` (each key's last value, plus ``steps``); returns it."""
        metrics = {k: v for record in self.read_metrics() for k, v in record.items()}
        metrics["steps"] = steps
        write_json(self.metrics_file, metrics)
        return metrics


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------ model files


def find_model_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it is a file; for a run directory its ``model.pt``, else ``checkpoints/last.pt``."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        run = RunDir(path)
        for candidate in (run.model, run.checkpoint):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{path}: no trained model (looked for {run.model} and {run.checkpoint}); "
                                "train one with JEPAAgent(cfg).train(), `torchwm train` or `torchwm pretrain`")
    raise FileNotFoundError(f"no such file or run directory: {str(path)!r} (a run directory holds {MODEL_FILE} "
                            f"or {CHECKPOINT_DIR}/{LAST_CHECKPOINT})")


def read_torch_file(file: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(file, weights_only=True)``; a truncated or foreign file raises ``ValueError`` naming the file and
    what to do (torch's own message names neither, and suggests unsafe loading)."""
    import torch  # here: collection workers import torchwm without torch

    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = first.split(". ")[0].split(" Re-running")[0][:160]
        raise ValueError(f"cannot read {file}: truncated, or not a torchwm model or checkpoint ({reason}); delete "
                         "it to start that run over, or restore it from a copy") from None


def load_state(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """``(file, state)`` of a run directory's model (see :func:`find_model_file`) or a ``.pt`` file.

    Loaded with ``weights_only=True`` onto the CPU; a file that does not hold a torchwm model or checkpoint
    (a dict with a ``config`` or an ``encoder_spec``) raises ``ValueError`` naming the file.
    """
    file = find_model_file(path)
    state = read_torch_file(file, "cpu")
    if not isinstance(state, dict) or ("config" not in state and "encoder_spec" not in state):
        raise ValueError(f"{file}: not a torchwm model or checkpoint (no config or encoder_spec inside)")
    return file, state


def encoder_prefix(model: Any, encoder: Any) -> str:
    """Where ``encoder``'s weights sit in ``model.state_dict()``: e.g. ``"encoder."``."""
    for name, module in model.named_modules():
        if module is encoder:
            return f"{name}." if name else ""
    raise ValueError(f"the encoder is not a submodule of {type(model).__name__}")


def save_model(path: str | os.PathLike[str], *, config: dict[str, Any], job: str, model: Any, encoder: Any,
               decided: dict[str, Any] | None = None) -> Path:
    """Write a finished model atomically: the config, the whole model's weights (``model``) and its
    spatial ``encoder`` on its own (``encoder_spec`` + ``encoder``), and what training decided
    from the data (``decided``, absent from older files); returns the path."""
    state = {**checkpoint_extras(config, model, encoder, decided), "kind": job, "model": model.state_dict(),
             "encoder": encoder.state_dict()}
    return atomic_torch_save(state, path)


def checkpoint_extras(config: dict[str, Any], model: Any, encoder: Any,
                      decided: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a trainer checkpoint carries beside the training state, so that a run interrupted before
    ``model.pt`` still yields its encoder and model: the config, ``encoder_spec``, ``encoder_prefix`` and the
    settings training decided from the data (``decided``)."""
    return {"config": config, "encoder_spec": dict(encoder.spec), "encoder_prefix": encoder_prefix(model, encoder),
            "decided": dict(decided or {})}


def encoder_weights(state: dict[str, Any], source: str | os.PathLike[str] = "the file") -> tuple[dict, dict]:
    """``(encoder_spec, encoder state dict)`` of a saved model or checkpoint (see the module docs)."""
    if "encoder_spec" not in state:
        raise ValueError(f"{source}: holds no encoder spec (a checkpoint of an older torchwm); resume the run "
                         "with the same command: its next checkpoint and its model.pt carry it")
    if "encoder" in state:
        return state["encoder_spec"], state["encoder"]
    prefix = state.get("encoder_prefix", "encoder.")  # older world-model checkpoints: the world model's encoder
    weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{source}: no weights under {prefix!r} in its model")
    return state["encoder_spec"], weights
