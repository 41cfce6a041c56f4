"""What the world model imagines: latent rollouts against the real future, as figures for TensorBoard.

* :func:`pca_rollout_figure`: predicted (dashed) vs actual (solid) latent trajectories, one colour per
  trajectory, projected to 2-D by a PCA fitted on real frame embeddings.
* :func:`error_curve_figure`: prediction error per horizon step against the copy-last-embedding baseline.
* :func:`retrieval_strip`: for each predicted latent the nearest real frame of a held-out bank, under
  the true future frames (there is no decoder, so "imagined" frames are retrieved, not drawn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Rollouts:
    """Latents of ``B`` held-out windows: ``actual (B, h + T, D)`` (all frames encoded) and
    ``predicted (B, T, D)`` (rolled out from the first ``h`` frames under the window's actions)."""

    actual: torch.Tensor
    predicted: torch.Tensor
    history: int

    @property
    def future(self) -> torch.Tensor:
        """The actual latents of the predicted steps ``(B, T, D)``."""
        return self.actual[:, self.history:]

    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean squared error per step ``(T,)`` of the prediction and of copying the last context latent."""
        future = self.future
        pred = ((self.predicted - future) ** 2).mean(dim=(0, 2))
        copy = ((self.actual[:, self.history - 1: self.history] - future) ** 2).mean(dim=(0, 2))
        return pred.cpu().numpy(), copy.cpu().numpy()


@torch.no_grad()
def latent_rollouts(model, frames: torch.Tensor, actions: torch.Tensor) -> Rollouts:
    """``frames (B, h + T, 3, H, W)``, ``actions (B, T k, A)`` → :class:`Rollouts` (``h = model.history``,
    ``k = model.action_chunk``: frames k steps apart, every step's action)."""
    h, k = model.history, getattr(model, "action_chunk", 1)
    z = model.encode(frames)
    predicted = model.rollout(model.context(z[:, :h]), actions[:, : (frames.shape[1] - h) * k])
    return Rollouts(z.float().cpu(), predicted.float().cpu(), h)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def pca_rollout_figure(rollouts: Rollouts, bank: torch.Tensor | np.ndarray, max_trajectories: int = 6):
    """2-D PCA (fitted on ``bank``, real embeddings ``(N, D)``) of actual (solid) and predicted (dashed)
    trajectories; both start at the last context latent. Returns a matplotlib ``Figure``."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    pca = PCA(n_components=2).fit(np.asarray(bank, dtype=np.float64))
    h = rollouts.history
    n = min(max_trajectories, len(rollouts.actual))
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    bank_2d = pca.transform(np.asarray(bank, dtype=np.float64))
    ax.scatter(bank_2d[:, 0], bank_2d[:, 1], s=3, c="0.85", label="held-out frames", zorder=0)
    colours = plt.get_cmap("tab10")
    for i in range(n):
        actual = pca.transform(rollouts.actual[i, h - 1:].numpy())
        start = rollouts.actual[i, h - 1: h].numpy()
        predicted = pca.transform(np.concatenate([start, rollouts.predicted[i].numpy()]))
        ax.plot(actual[:, 0], actual[:, 1], "-", color=colours(i), lw=1.8, label="actual" if i == 0 else None)
        ax.plot(predicted[:, 0], predicted[:, 1], "--", color=colours(i), lw=1.8,
                label="predicted" if i == 0 else None)
        ax.plot(actual[0, 0], actual[0, 1], "o", color=colours(i), ms=5)
    ratio = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%})")
    ax.set_title(f"latent rollouts, {rollouts.predicted.shape[1]} steps: actual (solid) vs predicted (dashed)",
                 fontsize=8)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def error_curve_figure(rollouts: Rollouts, train_horizon: int | None = None):
    """Prediction error and copy-last error against the horizon step; returns a ``Figure``."""
    plt = _pyplot()
    pred, copy = rollouts.errors()
    steps = np.arange(1, len(pred) + 1)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.plot(steps, pred, "o-", label="predicted")
    ax.plot(steps, copy, "s--", label="copy last embedding")
    if train_horizon:
        ax.axvline(train_horizon + 0.5, color="0.6", lw=1, ls=":", label="training horizon")
    ax.set_xlabel("horizon step")
    ax.set_ylabel("mean squared error")
    ax.set_title("held-out latent prediction error", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def nearest_frames(latents: torch.Tensor, bank_z: torch.Tensor, bank_frames: torch.Tensor) -> torch.Tensor:
    """For each latent ``(..., D)`` the bank frame whose embedding is nearest (L2) → ``(..., 3, H, W)``."""
    flat = latents.reshape(-1, latents.shape[-1]).float()
    idx = torch.cdist(flat, bank_z.float()).argmin(dim=1)
    return bank_frames[idx].reshape(*latents.shape[:-1], *bank_frames.shape[1:])


def retrieval_strip(rollouts: Rollouts, future_frames: torch.Tensor, bank_z: torch.Tensor,
                    bank_frames: torch.Tensor, max_trajectories: int = 4) -> torch.Tensor:
    """An image ``(3, H', W')`` uint8: per trajectory, the true future frames (top row) above the bank frames
    nearest to the predicted latents (bottom row). ``future_frames (B, T, 3, H, W)`` uint8."""
    from torchvision.utils import make_grid

    n = min(max_trajectories, len(rollouts.predicted))
    steps = rollouts.predicted.shape[1]
    imagined = nearest_frames(rollouts.predicted[:n], bank_z, bank_frames)  # (n, T, 3, H, W)
    rows = torch.stack([future_frames[:n].cpu(), imagined.cpu()], dim=1)  # (n, 2, T, 3, H, W)
    tiles = rows.reshape(-1, *future_frames.shape[2:]).float() / 255.0
    grid = make_grid(tiles, nrow=steps, padding=2, pad_value=1.0)
    return (grid * 255).round().to(torch.uint8)
