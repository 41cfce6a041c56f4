"""Stand-ins the training tests share: a linear model fitted to random targets (the smallest thing a
:class:`~torchwm.training.Trainer` trains), its data, small trainer settings, an exception standing in for a kill,
and a look at a run's or store's lock from another process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from torchwm.losses import LossOutput, covariance_loss, variance_loss
from torchwm.training import TrainSettings


class LinearFit(nn.Module):
    """A linear map ``in_dim -> out_dim`` fitted to targets by mean squared error; ``loss(x, y)`` as the trainer wants.

    ``noise``: inputs jittered by that much of torch's global RNG (so a resume must restore the RNG);
    ``vicreg``: VICReg variance (0.5) and covariance (0.1) terms on the outputs (batch statistics).
    """

    def __init__(self, in_dim: int = 4, out_dim: int = 2, *, noise: float = 0.0, vicreg: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear, self.noise, self.vicreg = nn.Linear(in_dim, out_dim), noise, vicreg

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> LossOutput:
        z = self.linear(x + self.noise * torch.randn_like(x) if self.noise else x)
        total = ((z - y) ** 2).mean()
        if self.vicreg:
            total = total + 0.5 * variance_loss(z) + 0.1 * covariance_loss(z)
        return LossOutput(total, {"total": total.detach()}, z.detach(), len(x))


def regression_data(samples: int = 32, in_dim: int = 4, out_dim: int = 2, seed: int = 0) -> TensorDataset:
    """``samples`` random inputs ``(in_dim,)`` and targets ``(out_dim,)``, the same for a seed."""
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(samples, in_dim, generator=g), torch.randn(samples, out_dim, generator=g))


def tiny_settings(defaults: dict, **overrides) -> TrainSettings:
    """``TrainSettings`` from a test module's ``defaults`` and ``overrides``, without TensorBoard or progress bars
    unless asked for."""
    return TrainSettings(**{"tensorboard": False, "progress": False, **defaults, **overrides})


class Killed(Exception):
    """Stands in for the process being killed."""


# Exit status 0 if the lock of argv[1] is free, 1 if another process holds it.
_PROBE = """
import fcntl, os, sys
fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
"""


def locked_elsewhere(path: Path) -> bool:
    """Whether a fresh process sees the lock of ``path`` (a run directory or store) taken."""
    return subprocess.run([sys.executable, "-c", _PROBE, str(path)]).returncode == 1
