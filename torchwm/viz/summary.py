"""Run summaries for TensorBoard: hyperparameters with the final metrics (HPARAMS tab) and as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict → ``{"section.field": value}`` of plain scalars (lists become strings)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def log_run_summary(run_dir: str | Path, config: dict[str, Any], metrics: dict[str, float], step: int = 0) -> None:
    """Write ``add_hparams`` (hyperparameters → final metrics, as ``hparam/<metric>``) and a Markdown table
    of both as text (``run/config``, ``run/final_metrics``) into ``run_dir``'s TensorBoard events.

    ``add_hparams`` is given ``run_name="."`` so it writes into the run's own directory rather than a
    timestamped sub-run.
    """
    from torch.utils.tensorboard import SummaryWriter

    hparams = flatten_config(config)
    finals = {f"hparam/{k}": float(v) for k, v in metrics.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
    with SummaryWriter(str(run_dir)) as writer:
        writer.add_hparams(hparams, finals, run_name=".", global_step=step)
        writer.add_text("run/config", _table(hparams, "field", "value"), step)
        writer.add_text("run/final_metrics", _table({k[len("hparam/"):]: f"{v:.4g}" for k, v in finals.items()},
                                                    "metric", "value"), step)


def _table(rows: dict[str, Any], left: str, right: str) -> str:
    lines = [f"| {left} | {right} |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in rows.items()]
    return "\n".join(lines)
