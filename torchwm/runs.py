"""Run directories: where a run's files live, and how its model and metrics are written and read.

Layout of ``run_dir``::

    config.yaml            the config the run was started with
    checkpoints/last.pt    latest training state (model, optimizer, scheduler, RNG, data order, encoder spec)
    model.pt               the finished model: config, whole-model weights, and the spatial encoder with its spec
    metrics.jsonl          one JSON record per logged step
    metrics.json           the final metrics (every key's last value, and ``steps``)
    eval/                  evaluation results (JSON) and episode videos
    figures/               figures (PNG)
    events.out.tfevents.*  TensorBoard

Every saved model and checkpoint carries its spatial encoder's ``encoder_spec`` (the constructor
arguments of :class:`~torchwm.nn.encoders.SpatialEncoder`), so an encoder is rebuilt from any run file
without rebuilding the model around it: ``model.pt`` holds the encoder's weights as ``encoder``; a
checkpoint names where they sit in the whole model's weights (``encoder_prefix``).

The ground floor of the package: nothing here imports training, models, backbones or agents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torchwm.io import atomic_torch_save, atomic_write_text

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.pt"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
EVAL_DIR = "eval"
FIGURES_DIR = "figures"


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

    # ----------------------------------------------------------------------------------- metrics
    def read_metrics(self) -> list[dict[str, float]]:
        """The records of ``metrics.jsonl`` in order (empty if there are none)."""
        if not self.metrics_log.exists():
            return []
        lines = self.metrics_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

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


def load_state(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """``(file, state)`` of a run directory's model (see :func:`find_model_file`) or a ``.pt`` file.

    Loaded with ``weights_only=True`` onto the CPU; a file that does not hold a torchwm model or checkpoint
    (a dict with a ``config`` or an ``encoder_spec``) raises ``ValueError`` naming the file.
    """
    import torch  # here: collection workers import torchwm without torch

    file = find_model_file(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a torch.load failure names neither the file nor what it should hold
        raise ValueError(f"{file}: not a torchwm model or checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or ("config" not in state and "encoder_spec" not in state):
        raise ValueError(f"{file}: not a torchwm model or checkpoint (no config or encoder_spec inside)")
    return file, state


def encoder_prefix(model: Any, encoder: Any) -> str:
    """Where ``encoder``'s weights sit in ``model.state_dict()``: e.g. ``"encoder."``."""
    for name, module in model.named_modules():
        if module is encoder:
            return f"{name}." if name else ""
    raise ValueError(f"the encoder is not a submodule of {type(model).__name__}")


def save_model(path: str | os.PathLike[str], *, config: dict[str, Any], job: str, model: Any, encoder: Any) -> Path:
    """Write a finished model atomically: the config, the whole model's weights (``model``) and its
    spatial ``encoder`` on its own (``encoder_spec`` + ``encoder``); returns the path."""
    state = {"config": config, "kind": job, "model": model.state_dict(), "encoder_spec": dict(encoder.spec),
             "encoder": encoder.state_dict(), "encoder_prefix": encoder_prefix(model, encoder)}
    return atomic_torch_save(state, path)


def checkpoint_extras(config: dict[str, Any], model: Any, encoder: Any) -> dict[str, Any]:
    """What a trainer checkpoint carries beside the training state, so that a run interrupted before
    ``model.pt`` still yields its encoder: the config, ``encoder_spec`` and ``encoder_prefix``."""
    return {"config": config, "encoder_spec": dict(encoder.spec), "encoder_prefix": encoder_prefix(model, encoder)}


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
