"""Held-out latent prediction error per horizon step, against the "copy the last embedding" baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch


@dataclass
class PredictionErrors:
    """Mean squared error per predicted step ``k = 1 .. K`` (index ``k - 1``), model and baseline.

    ``baseline[k-1]`` is the error of predicting ``z_{t+k}`` by ``z_t`` (nothing moves). ``ratio`` is
    model / baseline: below 1 the model beats copying, and 0 is perfect.
    """

    model: list[float]
    baseline: list[float]

    @property
    def ratio(self) -> list[float]:
        return [m / b if b > 0 else float("inf") for m, b in zip(self.model, self.baseline)]

    def as_scalars(self, prefix: str = "eval") -> dict[str, float]:
        out: dict[str, float] = {}
        for k, (m, b, r) in enumerate(zip(self.model, self.baseline, self.ratio), start=1):
            out[f"{prefix}/pred_error_step{k}"] = m
            out[f"{prefix}/copy_error_step{k}"] = b
            out[f"{prefix}/pred_over_copy_step{k}"] = r
        return out

    def table(self) -> str:
        rows = ["| step | model MSE | copy-last MSE | model / copy |", "|---:|---:|---:|---:|"]
        rows += [f"| {k} | {m:.4f} | {b:.4f} | {r:.3f} |"
                 for k, (m, b, r) in enumerate(zip(self.model, self.baseline, self.ratio), start=1)]
        return "\n".join(rows)


@torch.no_grad()
def prediction_errors(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], history: int) -> PredictionErrors:
    """Roll ``model`` out on held-out windows and compare with the embeddings of the true frames.

    ``batches`` yields ``(frames (B, history + K, 3, H, W), actions (B, K k, A))`` (frames ``k =
    model.action_chunk`` steps apart, every step's action); targets are the model's own (target) embeddings of
    the future frames, as in training. Works with any ``WorldModel``.
    """
    sq_model = sq_copy = None
    count = 0
    for frames, actions in batches:
        if getattr(model, "target_encoder", None) is None:  # targets are online embeddings: encode once
            z_all = model.encode(frames)
            z, future = z_all[:, :history], z_all[:, history - 1:]
        else:
            z, future = model.encode(frames[:, :history]), model.target_embeddings(frames[:, history - 1:])
        last, targets = future[:, :1], future[:, 1:]  # (B, 1, D), (B, K, D)
        preds = model.rollout(model.context(z), actions)
        m = (preds - targets).pow(2).mean(dim=2).sum(dim=0)
        c = (last - targets).pow(2).mean(dim=2).sum(dim=0)
        sq_model = m if sq_model is None else sq_model + m
        sq_copy = c if sq_copy is None else sq_copy + c
        count += frames.shape[0]
    if count == 0:
        raise ValueError("no held-out windows to evaluate")
    return PredictionErrors((sq_model / count).tolist(), (sq_copy / count).tolist())
