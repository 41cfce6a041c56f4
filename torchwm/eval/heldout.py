"""Held-out evaluation of a world model during training: scalars (prediction error per horizon step vs
copy-last, linear probe of the physics state) and TensorBoard views (latent rollout figures,
"imagined" retrieval strips, the embedding projector).

Fixed subsets (the same windows and frames every time) keep the curves comparable across steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


class HeldOutEvaluator:
    """``evaluator(model, step) -> {name: float}`` for :class:`~torchwm.training.Trainer`'s ``evaluate``;
    :meth:`figures` for its ``visualize``; :meth:`projector` once at the end.

    ``store``: the trajectory store; ``train_set`` / ``heldout``: :class:`~torchwm.data.TrajectoryWindows`
    over the training and held-out episodes (``heldout`` windows span ``history + 2 * horizon`` frames).
    """

    MAX_WINDOWS = 256
    MAX_PROBE_FRAMES = 2000
    FIGURE_WINDOWS = 6

    def __init__(self, env_id: str, store, train_set, heldout, history: int, device: torch.device,
                 seed: int = 0) -> None:
        from torchwm.eval.probes import probe_targets

        self.env_id, self.history, self.device, self.heldout = env_id, history, device, heldout
        rng = np.random.default_rng(seed)
        if heldout is not None:
            self.windows = np.sort(rng.choice(len(heldout), min(len(heldout), self.MAX_WINDOWS), replace=False))
        self.train_frames, self.train_states = sample_frames(store, train_set.episodes, self.MAX_PROBE_FRAMES, rng)
        heldout_eps = heldout.episodes if heldout is not None else []
        self.test_frames, self.test_states = (sample_frames(store, heldout_eps, self.MAX_PROBE_FRAMES // 2, rng)
                                              if heldout_eps else (None, None))
        self.train_targets = probe_targets(env_id, self.train_states)
        self.test_targets = probe_targets(env_id, self.test_states) if self.test_states is not None else None

    @torch.no_grad()
    def __call__(self, model, step: int) -> dict[str, float]:
        from torchwm.eval.prediction import prediction_errors
        from torchwm.eval.probes import LinearProbe

        out: dict[str, float] = {}
        if self.heldout is not None:
            errors = prediction_errors(model, self._batches(), self.history)
            out.update(errors.as_scalars("eval"))
        z_train = embed_frames(model, self.train_frames, self.device)
        probe = LinearProbe().fit(z_train, self.train_targets)
        if self.test_frames is not None:
            out["eval/probe_r2"] = probe.r2(embed_frames(model, self.test_frames, self.device), self.test_targets)
        out["eval/probe_r2_train"] = probe.r2(z_train, self.train_targets)
        return out

    def _batches(self, indices: np.ndarray | None = None, size: int = 64):
        indices = self.windows if indices is None else indices
        for start in range(0, len(indices), size):
            items = [self.heldout[int(i)] for i in indices[start: start + size]]
            frames = torch.stack([w.frames for w in items]).to(self.device)
            actions = torch.stack([w.actions for w in items]).to(self.device)
            yield frames, actions

    # ------------------------------------------------------------------------------- TensorBoard
    def bank(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        """Real held-out (or, without held-out episodes, training) frames and their embeddings:
        ``(frames uint8 (N, 3, H, W), z (N, D))``."""
        frames = self.test_frames if self.test_frames is not None else self.train_frames
        return torch.from_numpy(frames), embed_frames(model, frames, self.device)

    @torch.no_grad()
    def figures(self, model, step: int, writer: Any, save_dir: str | Path | None = None) -> dict[str, Any]:
        """Log the rollout views at ``step``: ``rollouts/pca`` (figure), ``rollouts/error_by_step``
        (figure), ``rollouts/imagined`` (image: true future frames above retrieved ones). With
        ``save_dir`` also write them as ``<name>.png`` there. Returns them."""
        from torchwm.viz.rollouts import error_curve_figure, latent_rollouts, pca_rollout_figure, retrieval_strip

        if self.heldout is None:
            return {}
        frames, actions = next(self._batches(self.windows[:: max(1, len(self.windows) // self.FIGURE_WINDOWS)]
                                             [: self.FIGURE_WINDOWS]))
        rollouts = latent_rollouts(model, frames, actions)
        bank_frames, bank_z = self.bank(model)
        views = {
            "rollouts/pca": pca_rollout_figure(rollouts, bank_z.numpy()),
            "rollouts/error_by_step": error_curve_figure(rollouts, train_horizon=getattr(model, "horizon", None)),
            "rollouts/imagined": retrieval_strip(rollouts, frames[:, self.history:].cpu(), bank_z, bank_frames),
        }
        for tag, view in views.items():
            if writer is not None:
                if isinstance(view, torch.Tensor):
                    writer.add_image(tag, view, step)
                else:
                    writer.add_figure(tag, view, step, close=False)
            if save_dir is not None:
                _save_view(view, Path(save_dir) / f"{tag.split('/')[-1]}.png")
        _close_figures(views)
        return views

    @torch.no_grad()
    def projector(self, model, step: int, writer: Any, count: int = 500) -> None:
        """``add_embedding`` of up to ``count`` held-out frame embeddings with thumbnails and state labels."""
        from torchwm.viz.projector import add_projector

        frames = self.test_frames if self.test_frames is not None else self.train_frames
        states = self.test_states if self.test_states is not None else self.train_states
        frames, states = frames[:count], states[:count]
        add_projector(writer, embed_frames(model, frames, self.device), frames, self.env_id, states, step)


def _save_view(view: Any, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    if isinstance(view, torch.Tensor):
        Image.fromarray(view.permute(1, 2, 0).numpy()).save(tmp)
    else:
        view.savefig(tmp, dpi=110)
    tmp.replace(path)


def _close_figures(views: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for view in views.values():
        if not isinstance(view, torch.Tensor):
            plt.close(view)


def sample_frames(store, episodes, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` random ``(frame, state)`` pairs from ``episodes`` of ``store`` (uint8, float64)."""
    pairs = [(ep, t) for ep in episodes for t in range(store.lengths[ep] + 1)]
    chosen = sorted(rng.choice(len(pairs), min(count, len(pairs)), replace=False))
    by_episode: dict[int, list[int]] = {}
    for i in chosen:
        ep, t = pairs[i]
        by_episode.setdefault(ep, []).append(t)
    frames, states = [], []
    for ep, steps in by_episode.items():  # one memory map per episode, fancy-indexed once
        episode = store.episode(ep)
        frames.append(np.asarray(episode.frames[steps]))
        states.append(np.asarray(episode.states[steps]))
    return np.concatenate(frames), np.concatenate(states)


@torch.no_grad()
def embed_frames(model, frames: np.ndarray, device: torch.device, batch: int = 256) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` → ``(N, D)`` on the CPU with the model's encoder, in batches."""
    out = [model.encode(torch.from_numpy(frames[i: i + batch]).to(device)) for i in range(0, len(frames), batch)]
    return torch.cat(out).cpu()
