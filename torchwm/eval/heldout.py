"""Held-out evaluation of a world model during training: scalars (prediction error per horizon step vs
copy-last, linear probe of the physics state) and TensorBoard views (latent rollout figures,
"imagined" retrieval strips, the embedding projector).

Fixed subsets (the same windows and frames every time) keep the curves comparable across steps.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwm.io import atomic_write_png


class StaticEmbeddingWarning(UserWarning):
    """Held-out prediction does not beat copying the last embedding: the encoder may hold nothing that moves."""


class CopyBaselineCheck:
    """Warns once (:class:`StaticEmbeddingWarning`) when the held-out step-1 prediction error has been at
    least ``threshold`` times the copy-last baseline's at ``patience`` evaluations in a row.

    The VICReg terms can be satisfied by content that differs between episodes but not within one
    (a reacher target, a background): the collapse metrics then look healthy while the model has
    learned nothing about motion. This ratio staying at 1 is the symptom.
    """

    def __init__(self, threshold: float = 0.98, patience: int = 2) -> None:
        self.threshold, self.patience = threshold, patience
        self.streak, self.warned = 0, False

    def __call__(self, step: int, ratio: float) -> None:
        self.streak = self.streak + 1 if ratio >= self.threshold else 0
        if self.streak >= self.patience and not self.warned:
            self.warned = True
            warnings.warn(
                f"step {step}: held-out prediction error is {ratio:.2f}x that of copying the last embedding "
                f"({self.streak} evaluations in a row): training is too short, or the embedding holds only "
                "what does not move within an episode. Check eval/probe_r2; for the second, set "
                "train.vicreg_within_sequence=true or widen embed_dim (docs/world_model.md, 'Choosing embed_dim').",
                StaticEmbeddingWarning, stacklevel=2)


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
        from torchwm.eval.state_probe import StateProbe

        self.env_id, self.history, self.device, self.heldout = env_id, history, device, heldout
        rng = np.random.default_rng(seed)
        if heldout is not None:
            self.windows = np.sort(rng.choice(len(heldout), min(len(heldout), self.MAX_WINDOWS), replace=False))
        self.probe = StateProbe(env_id, store, train_set.episodes, heldout.episodes if heldout is not None else [],
                                device, rng, self.MAX_PROBE_FRAMES)
        # real frames for the views: held-out ones, or training ones without held-out episodes
        self.bank_frames, self.bank_states = self.probe.bank()
        self._bank_z: tuple[int, torch.Tensor] | None = None  # (step, embeddings) of the last evaluation
        self.copy_check = CopyBaselineCheck()

    @torch.no_grad()
    def __call__(self, model, step: int) -> dict[str, float]:
        from torchwm.eval.prediction import prediction_errors

        out: dict[str, float] = {}
        if self.heldout is not None:
            errors = prediction_errors(model, self._batches(), self.history)
            out.update(errors.as_scalars("eval"))
            self.copy_check(step, out["eval/pred_over_copy_step1"])
        z_train, z_test = self.probe.embed(model.encode)
        out.update(self.probe.scores(z_train, z_test))
        self._bank_z = (step, z_test if z_test is not None else z_train)  # reused by the views
        return out

    def _batches(self, indices: np.ndarray | None = None, size: int = 64):
        indices = self.windows if indices is None else indices
        for start in range(0, len(indices), size):
            items = [self.heldout[int(i)] for i in indices[start: start + size]]
            frames = torch.stack([w.frames for w in items]).to(self.device)
            actions = torch.stack([w.actions for w in items]).to(self.device)
            yield frames, actions

    # ------------------------------------------------------------------------------- TensorBoard
    def bank(self, model, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Real held-out (or, without held-out episodes, training) frames and their embeddings at ``step``:
        ``(frames uint8 (N, 3, H, W), z (N, D))``. Embeddings computed by the evaluation of the same step
        are reused."""
        if self._bank_z is None or self._bank_z[0] != step:
            from torchwm.eval.state_probe import embed_frames

            self._bank_z = (step, embed_frames(model.encode, self.bank_frames, self.device))
        return torch.from_numpy(self.bank_frames), self._bank_z[1]

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
        bank_frames, bank_z = self.bank(model, step)
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
                atomic_write_png(Path(save_dir) / f"{tag.split('/')[-1]}.png", view)
        _close_figures(views)
        return views

    @torch.no_grad()
    def projector(self, model, step: int, writer: Any, count: int = 500) -> None:
        """``add_embedding`` of up to ``count`` held-out frame embeddings with thumbnails and state labels."""
        from torchwm.viz.projector import add_projector

        z = self.bank(model, step)[1][:count]
        add_projector(writer, z, self.bank_frames[:count], self.env_id, self.bank_states[:count], step)


def _close_figures(views: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for view in views.values():
        if not isinstance(view, torch.Tensor):
            plt.close(view)
