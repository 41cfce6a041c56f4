"""Schedules over training steps: the learning-rate factor and cosine ramps (EMA momentum, weight decay).

Pure functions of ``(step, total_steps)``, shared by the trainer and the models' EMA targets.
"""

from __future__ import annotations

import math


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then cosine to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_value(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine interpolation from ``start`` (step 0) to ``end`` (step ``total_steps`` and after)."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))
