"""Exponential moving average of a module (target encoders) and its momentum schedule."""

from __future__ import annotations

import copy

import torch
from torch import nn

from torchwm.schedules import cosine_value


def momentum_schedule(step: int, total_steps: int, start: float, end: float = 1.0) -> float:
    """Cosine ramp of the EMA momentum from ``start`` (step 0) to ``end`` (step ``total_steps``)."""
    if total_steps <= 0:
        return end
    return cosine_value(step, total_steps, start, end)


class EMA(nn.Module):
    """A frozen copy of ``model`` updated as ``ema ← m·ema + (1−m)·model``.

    Floating-point parameters *and* buffers are averaged (BatchNorm statistics would go stale
    otherwise); integer buffers (e.g. ``num_batches_tracked``) are copied.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, momentum: float) -> None:
        ema_float, src_float = [], []
        for (name, e), (_, s) in zip(self._tensors(self.module), self._tensors(model)):
            if e.dtype.is_floating_point:
                ema_float.append(e)
                src_float.append(s.detach())
            else:
                e.copy_(s)
        if ema_float:
            torch._foreach_lerp_(ema_float, src_float, 1.0 - momentum)

    @staticmethod
    def _tensors(module: nn.Module):
        yield from module.named_parameters()
        yield from module.named_buffers()

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
