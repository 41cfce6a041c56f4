"""Latent prediction loss, VICReg-style regularisers, collapse metrics, and what a model's loss returns.

Shapes: embeddings ``z`` are ``(N, D)`` (a batch of N vectors); predictions and targets are
``(B, H, D)`` over a horizon of H steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torchwm.distributed import gather_batch, same_on_all_ranks


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


def temporal_smoothness(z: torch.Tensor) -> torch.Tensor:
    """Mean squared change between consecutive embeddings of sequences ``z (B, L, D)``, ``L >= 2`` → scalar (the
    mean over the ``B (L - 1)`` steps and the D dimensions). Beside a variance hinge that holds the spread, it
    favours features that follow the pose smoothly over ones that jump (slow feature analysis).

    Not divided by the variance within the sequences (slow feature analysis' scale-free Δ-value): that ratio
    is also lowered by shrinking a dimension until its spread is below the division's epsilon, and on acrobot
    the embedding collapsed (std 0) within 700 steps at weight 0.25 and 1600 at weight 1."""
    if z.dim() != 3 or z.shape[1] < 2:
        raise ValueError(f"temporal_smoothness needs sequences (B, L >= 2, D), got {tuple(z.shape)}")
    return (z[:, 1:] - z[:, :-1]).pow(2).mean()


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
    z = gather_batch(z)  # the global batch's rows under DDP (torchwm.distributed)
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term: sum of squared off-diagonal covariances divided by D. ``(N, D)`` → scalar."""
    z = gather_batch(z)
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


def sigreg(z: torch.Tensor, directions: int = 256, knots: int = 17, t_max: float = 3.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """SIGReg (LeJEPA, Balestriero & LeCun 2025): how far ``z`` is from an isotropic standard Gaussian.

    ``z (..., N, D)``: N embeddings (per leading index, e.g. per view) → scalar. The embeddings are
    projected on ``directions`` random unit vectors; along each, the Epps-Pulley statistic
    ``N ∫ |φ_N(t) - exp(-t²/2)|² exp(-t²/2) dt`` compares the empirical characteristic function
    ``φ_N(t) = mean_n exp(i t x_n)`` with the standard normal's, integrated over ``[-t_max, t_max]`` by the
    trapezoid rule on ``knots`` points of ``[0, t_max]`` (the integrand is even). The result is the mean over
    directions (and leading indices). Scaled by N like LeJEPA's (eb_jepa's is not): Gaussian embeddings
    score about 1 whatever N (the expectation is ``∫ (1 - exp(-t²)) exp(-t²/2) dt ≈ 1.05``), a collapsed
    batch (all rows equal) ``0.40 N``, so the statistic separates the two more sharply in larger batches.

    Directions are drawn from ``generator`` (torch's global RNG when None), fresh at every call.
    """
    if z.dim() < 2:
        raise ValueError(f"z must be (..., N, D), got {tuple(z.shape)}")
    z = gather_batch(z, dim=z.dim() - 2)
    n = z.shape[-2]
    a = same_on_all_ranks(torch.randn(z.shape[-1], directions, generator=generator, dtype=z.dtype).to(z.device))
    a = a / a.norm(dim=0, keepdim=True)
    t = torch.linspace(0.0, t_max, knots, dtype=z.dtype, device=z.device)
    phi = torch.exp(-0.5 * t.square())
    weights = torch.full_like(t, 2 * t_max / (knots - 1))  # both halves of the even integrand
    weights[[0, -1]] /= 2
    xt = (z @ a).unsqueeze(-1) * t  # (..., N, directions, knots)
    error = (xt.cos().mean(-3) - phi).square() + xt.sin().mean(-3).square()  # (..., directions, knots)
    return (error @ (weights * phi)).mul(n).mean()
