"""Latent prediction loss, VICReg-style regularisers, collapse metrics, and what a model's loss returns.

Shapes: embeddings ``z`` are ``(N, D)`` (a batch of N vectors); predictions and targets are
``(B, H, D)`` over a horizon of H steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossOutput:
    """What a trainable model's ``loss(...)`` returns (:class:`~torchwm.training.Trainer` optimises it).

    ``total``: the scalar to minimise. ``terms``: detached scalars by name (e.g. ``prediction``,
    ``variance``, ``covariance``, ``prediction_step1`` ..). ``embeddings``: the batch's detached embeddings
    ``(N, D)`` for the collapse metrics. ``frames``: images in the batch (for throughput).
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    embeddings: torch.Tensor
    frames: int


def prediction_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error per horizon step. ``(B, H, D)``, ``(B, H, D)`` → ``(loss, per_step (H,))``.

    The loss is the mean over steps; ``per_step[k]`` is the error of the (k+1)-step prediction.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    per_step = (pred - target).pow(2).mean(dim=(0, 2))
    return per_step.mean(), per_step


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance term: mean over dimensions of ``relu(gamma - sqrt(var + eps))``. ``(N, D)`` → scalar."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term: sum of squared off-diagonal covariances divided by D. ``(N, D)`` → scalar."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = (zc.T @ zc) / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Mean per-dimension standard deviation of ``(N, D)`` embeddings; near 0 means collapse."""
    return float(z.float().std(dim=0).mean())


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): ``exp(entropy)`` of the normalised singular values of ``(N, D)``.

    Between 1 (all embeddings on one line: collapse) and ``min(N, D)`` (full use of the space).
    """
    s = torch.linalg.svdvals(z.float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))
