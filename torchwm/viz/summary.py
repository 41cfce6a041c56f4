"""TensorBoard summaries: the run's hyperparameters and final metrics (text tables, HParams tab), and
episodes as animated GIFs (TensorBoard plays a GIF logged as an image; ``add_video`` needs moviepy)."""

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
    """Write the run's hyperparameters and final metrics into ``run_dir``'s TensorBoard events.

    * Text: Markdown tables of every config field (``run/config``) and of the final metrics
      (``run/final_metrics``), each metric once.
    * HParams tab: the hyperparameters, with the final metrics as references to the scalar tags training
      already logged (``loss/total``, ``eval/...``). Unlike ``SummaryWriter.add_hparams``, no scalar is
      written again (no ``hparam/*`` copies) and no timestamped sub-run is made.
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    hparams = flatten_config(config)
    finals = {k: float(v) for k, v in metrics.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "steps")}
    with SummaryWriter(str(run_dir)) as writer:
        file_writer = writer._get_file_writer()
        for summary in hparams_summaries(hparams, finals):  # experiment, session start, session end
            file_writer.add_summary(summary, step)
        writer.add_text("run/config", _table(hparams, "field", "value"), step)
        table = {k: f"{v:.4g}" for k, v in finals.items()}
        if "steps" in metrics:
            table["steps"] = metrics["steps"]
        writer.add_text("run/final_metrics", _table(table, "metric", "value"), step)


def add_gif(writer: Any, tag: str, video: Any, step: int, fps: int = 10, scale: int = 2) -> bytes:
    """Log ``video`` (uint8 ``(T, H, W, 3)``) as an animated GIF image summary under ``tag``; returns its bytes.

    ``writer`` is a ``torch.utils.tensorboard.SummaryWriter``; the GIF is the one
    :func:`torchwm.eval.goal_reaching.gif_bytes` encodes (``scale`` times enlarged, ``fps`` frames/s).
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    from torchwm.eval.goal_reaching import gif_bytes

    _, height, width, channels = video.shape
    data = gif_bytes(video, fps=fps, scale=scale)
    image = Summary.Image(height=height * scale, width=width * scale, colorspace=channels, encoded_image_string=data)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    return data


def _table(rows: dict[str, Any], left: str, right: str) -> str:
    lines = [f"| {left} | {right} |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in rows.items()]
    return "\n".join(lines)
