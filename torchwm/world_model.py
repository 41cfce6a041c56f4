"""The JEPA world model: encode frames, fuse a history, roll the latent forward under actions.

Planners use only :meth:`WorldModel.encode`, :meth:`WorldModel.context` and :meth:`WorldModel.rollout`;
training uses :meth:`WorldModel.loss`. Any module with these methods can be planned with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from torchwm.ema import EMA, momentum_schedule
from torchwm.losses import LossOutput, covariance_loss, prediction_loss, sigreg, temporal_smoothness, variance_loss
from torchwm.nn.encoders import SpatialEncoder
from torchwm.nn.predictor import Predictor
from torchwm.nn.temporal import TemporalEncoder
from torchwm.planning.costs import step_whitening

__all__ = ["LossOutput", "WorldModel", "build_world_model"]


class WorldModel(nn.Module):
    """Spatial encoder + temporal encoder + action-conditioned predictor.

    * ``encode(frames)``: ``(..., 3, H, W)`` uint8 or float in [0, 1] → ``(..., D)``.
    * ``context(z_history)``: ``(B, h, D)`` → ``(B, C)``.
    * ``rollout(context, actions)``: ``(B, C)``, ``(B, T, A)`` → predicted embeddings ``(B, T / k, D)``
      of the frames the actions lead to, one per chunk of ``k = action_chunk`` actions, autoregressively
      (T may exceed the training horizon; it must be a multiple of k).
    * ``loss(frames, actions)``: frames ``(B, L, 3, H, W)`` (k agent steps apart), actions ``(B, (L - h) k, A)``
      (every agent step's), ``L >= h + horizon`` → :class:`LossOutput` (see :meth:`loss`).

    With ``action_chunk = k > 1`` one predictor step covers k agent steps (LeWM / DINO-WM's frame skip): the
    history frames are k steps apart and the predictor reads the chunk's k actions side by side. A plan of T
    actions then costs T / k predictor steps, so the planner sees k times further for the same compute.

    Actions are rescaled from ``[action_low, action_high]`` to [-1, 1] inside the model. With
    ``ema_momentum`` set, prediction targets come from an EMA copy of the encoder (momentum raised to 1
    by a cosine schedule, see :meth:`after_step`); otherwise from the online encoder with stop-gradient.
    With ``vicreg_within_sequence``, the VICReg terms see each frame's deviation from its sequence's mean
    embedding, so content that is constant within an episode cannot meet them. ``within_sequence_std > 0`` splits
    the variance hinge in two: at std 1 on the frame embeddings over the batch (the embedding's scale, set by the
    whole state space as without ``vicreg_within_sequence``) plus at ``within_sequence_std`` on the deviations.
    Deviations within a sequence only compare frames a few steps apart; for a slow body (point_mass) the map they
    shape came out uneven, flat over part of the arena and steep over the rest (docs/world_model.md). With
    ``freeze_encoder`` the spatial encoder is fixed (no gradient, kept in eval mode: a frozen pretrained encoder, as
    in DINO-WM): only the temporal encoder and the predictor train, and the VICReg terms apply to the temporal
    contexts.
    ``smoothness_weight > 0`` adds that weight x the mean squared change of the embedding between consecutive
    frames (:func:`~torchwm.losses.temporal_smoothness`): with the variance hinge holding the spread, the encoder
    then favours features that follow the pose smoothly over ones that jump (slow feature analysis).
    With ``regularizer="sigreg"`` one term replaces the two VICReg ones: ``sigreg_weight`` x SIGReg (the Epps-Pulley
    statistic scaled by the batch size, LeJEPA/LeWM's convention, see :func:`torchwm.losses.sigreg`) of the same
    embeddings, the space the prediction loss measures; with ``sigreg_proj_dim > 0``, of a BatchNorm MLP projection
    of them instead. The projection's BatchNorm rescales whatever reaches it, so it leaves the embeddings' scale
    free: the encoder can shrink them until the prediction error is trivially small (cartpole: std 0.065 against 1.65).

    :meth:`fit_whitening` (the agent calls it after training) stores the ``(D, D)`` map under which a typical
    one-step change of the embedding has unit length in every direction (:func:`~torchwm.planning.costs.step_whitening`);
    :attr:`whitening` returns it (``None`` until fitted) for a planner that measures distances to a goal in it.
    """

    def __init__(self, encoder: SpatialEncoder, temporal: TemporalEncoder, predictor: Predictor,
                 action_low: torch.Tensor, action_high: torch.Tensor, history: int, horizon: int,
                 var_weight: float = 1.0, cov_weight: float = 0.04, ema_momentum: float | None = None,
                 vicreg_within_sequence: bool = False, within_sequence_std: float = 0.0, freeze_encoder: bool = False,
                 regularizer: str = "vicreg", sigreg_weight: float = 0.1, sigreg_directions: int = 256,
                 sigreg_proj_dim: int = 0, action_chunk: int = 1, smoothness_weight: float = 0.0) -> None:
        super().__init__()
        if isinstance(action_chunk, bool) or not isinstance(action_chunk, int) or action_chunk < 1:
            raise ValueError(f"action_chunk={action_chunk!r}: must be an int >= 1")
        if regularizer not in ("vicreg", "sigreg"):
            raise ValueError(f"regularizer must be 'vicreg' or 'sigreg', not {regularizer!r}")
        if freeze_encoder and ema_momentum is not None:
            raise ValueError("a frozen encoder needs no EMA target: set ema_momentum=None (train.ema false)")
        self.encoder, self.temporal, self.predictor = encoder, temporal, predictor
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            encoder.requires_grad_(False).eval()
        self.history, self.horizon, self.action_chunk = int(history), int(horizon), action_chunk
        self.var_weight, self.cov_weight = float(var_weight), float(cov_weight)
        if smoothness_weight < 0:
            raise ValueError(f"smoothness_weight={smoothness_weight!r}: must be >= 0")
        if smoothness_weight > 0 and self.freeze_encoder:
            raise ValueError("a frozen encoder's embeddings cannot be made smoother: set smoothness_weight=0 "
                             "(train.smoothness_weight 0)")
        self.smoothness_weight = float(smoothness_weight)
        self.vicreg_within_sequence = bool(vicreg_within_sequence)
        self.within_sequence_std = float(within_sequence_std)
        if self.within_sequence_std < 0 or (self.within_sequence_std > 0 and not self.vicreg_within_sequence):
            raise ValueError(f"within_sequence_std={within_sequence_std}: must be 0, or > 0 together with "
                             "vicreg_within_sequence=True")
        if self.within_sequence_std > 0 and self.freeze_encoder:
            raise ValueError("a frozen encoder's frame embeddings cannot be scaled and its VICReg terms see the "
                             "temporal contexts: set within_sequence_std=0 (train.within_sequence_std 0)")
        self.regularizer = regularizer
        self.sigreg_weight, self.sigreg_directions = float(sigreg_weight), int(sigreg_directions)
        self.sigreg_projector = None
        if regularizer == "sigreg" and sigreg_proj_dim > 0:
            from torchvision.ops import MLP

            width = temporal.context_dim if self.freeze_encoder else encoder.embed_dim
            self.sigreg_projector = MLP(width, [256, sigreg_proj_dim], norm_layer=nn.BatchNorm1d)
        self.ema_momentum = ema_momentum
        self.target_encoder = EMA(encoder) if ema_momentum is not None else None
        low = torch.as_tensor(action_low, dtype=torch.float32).flatten()
        high = torch.as_tensor(action_high, dtype=torch.float32).flatten()
        if low.shape != high.shape or not bool((high > low).all()):
            raise ValueError(f"action bounds must have one shape with high > low, got {low} and {high}")
        if predictor.action_dim != action_chunk * low.numel():
            raise ValueError(f"the predictor reads {predictor.action_dim} action dims; a chunk of {action_chunk} "
                             f"actions of {low.numel()} needs {action_chunk * low.numel()}")
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)
        self.register_buffer("latent_whitening", torch.zeros(encoder.embed_dim, encoder.embed_dim))  # zeros: not fitted

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        if self.freeze_encoder:  # a frozen encoder stays in eval mode inside a training model
            self.encoder.eval()
        return self

    @property
    def backbone(self) -> SpatialEncoder:
        """The encoder to use downstream (as ``IJEPA.backbone``): the online spatial encoder."""
        return self.encoder

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def context_span(self) -> int:
        """Consecutive agent steps a context covers: ``(history - 1) x action_chunk + 1``; the context reads the
        last of them and every ``action_chunk``-th before it (``steps[::action_chunk]``)."""
        return (self.history - 1) * self.action_chunk + 1

    @property
    def action_dim(self) -> int:
        return self.action_low.numel()

    # ---------------------------------------------------------------------------- planner interface
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``(..., 3, H, W)`` → ``(..., D)``."""
        lead = frames.shape[:-3]
        z = self.encoder(frames.reshape(-1, *frames.shape[-3:]))
        return z.reshape(*lead, z.shape[-1])

    def context(self, z_history: torch.Tensor) -> torch.Tensor:
        """``(B, h, D)`` → ``(B, C)``."""
        return self.temporal(z_history)

    def rollout(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``(B, C)``, ``(B, T, A)`` → ``(B, T / k, D)``: ``ẑ_{j+1} = ẑ_j + predictor(c_j, chunk_j)``, where chunk j
        holds actions ``jk .. jk + k - 1`` side by side (``k = action_chunk``)."""
        if actions.dim() != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be (B, T, {self.action_dim}), got {tuple(actions.shape)}")
        if actions.shape[0] != context.shape[0]:
            raise ValueError(f"actions batch {actions.shape[0]} != context batch {context.shape[0]}")
        if actions.shape[1] % self.action_chunk:
            raise ValueError(f"{actions.shape[1]} actions: the model predicts one frame per chunk of "
                             f"{self.action_chunk} actions, so T must be a multiple of {self.action_chunk}")
        actions = self.normalise_actions(actions)
        actions = actions.reshape(actions.shape[0], -1, self.action_chunk * self.action_dim)
        z = self.temporal.latest(context)
        preds = []
        for k in range(actions.shape[1]):
            z = z + self.predictor(context, actions[:, k])
            preds.append(z)
            if k + 1 < actions.shape[1]:
                context = self.temporal.update(context, z)
        return torch.stack(preds, dim=1)

    @property
    def whitening(self) -> torch.Tensor | None:
        """The ``(D, D)`` step whitening of the embeddings (see :meth:`fit_whitening`), or ``None`` if not fitted."""
        return self.latent_whitening if bool(self.latent_whitening.any()) else None

    @torch.no_grad()
    def fit_whitening(self, embeddings: Iterable[torch.Tensor]) -> torch.Tensor:
        """Fit :attr:`whitening` to this model's embeddings ``(T_i, D)`` of whole episodes (consecutive frames,
        e.g. :func:`~torchwm.eval.state_probe.embed_frames` of each); returns it ``(D, D)``."""
        self.latent_whitening.copy_(step_whitening(embeddings))
        return self.latent_whitening

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # models saved before the whitening existed load with it unfitted
        state_dict.setdefault(prefix + "latent_whitening", torch.zeros_like(self.latent_whitening))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def normalise_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Env units in ``[low, high]`` → [-1, 1]."""
        return (actions - self.action_low) / (self.action_high - self.action_low) * 2 - 1

    # -------------------------------------------------------------------------------------- training
    @torch.no_grad()
    def target_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """Prediction targets for ``(..., 3, H, W)`` frames: EMA encoder if enabled, else the online one."""
        if self.target_encoder is None:
            return self.encode(frames)
        lead = frames.shape[:-3]
        z = self.target_encoder(frames.reshape(-1, *frames.shape[-3:]))
        return z.reshape(*lead, z.shape[-1])

    def loss(self, frames: torch.Tensor, actions: torch.Tensor) -> LossOutput:
        """Multi-step latent prediction loss plus VICReg variance/covariance terms on the embeddings.

        ``frames (B, L, 3, H, W)`` (``action_chunk`` agent steps apart) and ``actions (B, (L - h) k, A)`` (every
        agent step's, ``k = action_chunk``) are sequences of ``L >= h + horizon`` frames; every anchor ``t`` with a
        full history and horizon inside the sequence is trained on
        (``L - h - horizon + 1`` of them), so each encoded frame serves several predictions.
        With ``L = h + horizon`` this is one window per sample.
        """
        b, length = frames.shape[:2]
        h, horizon = self.history, self.horizon
        anchors = length - h - horizon + 1
        k = self.action_chunk
        if anchors < 1 or actions.shape[1] != (length - h) * k:
            raise ValueError(f"frames has {length} steps and actions {actions.shape[1]}; expected at least "
                             f"history + horizon = {h} + {horizon} frames and (frames - history) x action_chunk "
                             f"= {(length - h) * k} actions")
        actions = actions.reshape(b, length - h, k * self.action_dim)  # one row per chunk
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            z = self.encode(frames)  # (B, L, D)
        targets = z.detach() if self.target_encoder is None else self.target_embeddings(frames)
        # Anchor j predicts frames h+j .. h+j+horizon-1 from frames j .. j+h-1 and actions j .. j+horizon-1.
        z_hist = z.unfold(1, h, 1)[:, :anchors]  # (B, anchors, D, h)
        z_hist = z_hist.permute(0, 1, 3, 2).reshape(b * anchors, h, -1)
        acts = actions.unfold(1, horizon, 1)[:, :anchors]  # (B, anchors, kA, horizon)
        acts = acts.permute(0, 1, 3, 2).reshape(b * anchors, horizon * k, -1)  # back to one row per action
        tgt = targets[:, h:].unfold(1, horizon, 1)[:, :anchors]  # (B, anchors, D, horizon)
        tgt = tgt.permute(0, 1, 3, 2).reshape(b * anchors, horizon, -1)
        contexts = self.context(z_hist)  # (B * anchors, C)
        preds = self.rollout(contexts, acts)  # (B * anchors, horizon, D)
        pred, per_step = prediction_loss(preds, tgt)
        flat = z.reshape(b * length, -1)
        # VICReg on what trains: the frames, or their deviations from their sequence's mean (what moves within
        # an episode), or with a frozen encoder the temporal contexts
        if self.freeze_encoder:
            reg = contexts
        elif self.vicreg_within_sequence:
            reg = (z - z.mean(dim=1, keepdim=True)).reshape(b * length, -1)
        else:
            reg = flat
        if self.regularizer == "sigreg":
            projected = reg if self.sigreg_projector is None else self.sigreg_projector(reg)
            statistic = sigreg(projected[None], self.sigreg_directions)
            total = pred + self.sigreg_weight * statistic
            terms = {"total": total, "prediction": pred, "sigreg": statistic}
        else:
            if self.var_weight <= 0:
                var = flat.new_zeros(())
            elif self.within_sequence_std > 0:  # the frames set the scale; what moves must reach a floor
                var = variance_loss(flat) + variance_loss(reg, gamma=self.within_sequence_std)
            else:
                var = variance_loss(reg)
            cov = covariance_loss(reg) if self.cov_weight > 0 else flat.new_zeros(())
            total = pred + self.var_weight * var + self.cov_weight * cov
            terms = {"total": total, "prediction": pred, "variance": var, "covariance": cov}
        if self.smoothness_weight > 0:
            smooth = temporal_smoothness(z)
            total = total + self.smoothness_weight * smooth
            terms["total"], terms["smoothness"] = total, smooth
        terms = {k: v.detach() for k, v in terms.items()}
        terms.update({f"prediction_step{k + 1}": e.detach() for k, e in enumerate(per_step)})
        return LossOutput(total, terms, flat.detach(), b * length)

    def after_step(self, step: int, total_steps: int) -> None:
        """Called by the trainer after each optimiser step: updates the EMA target encoder."""
        if self.target_encoder is not None:
            self.target_encoder.update(self.encoder, momentum_schedule(step, total_steps, self.ema_momentum))

    def extra_repr(self) -> str:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return (f"history={self.history}, horizon={self.horizon}, action_chunk={self.action_chunk}, "
                f"params: encoder={count(self.encoder):,} "
                f"temporal={count(self.temporal):,} predictor={count(self.predictor):,}")


def build_world_model(encoder: SpatialEncoder, action_low: Any, action_high: Any, *, history: int, horizon: int,
                      temporal_hidden: int, predictor_hidden: int, predictor_depth: int, var_weight: float,
                      cov_weight: float, ema_momentum: float | None = None, vicreg_within_sequence: bool = False,
                      within_sequence_std: float = 0.0, freeze_encoder: bool = False, action_chunk: int = 1,
                      **regularizer: Any) -> WorldModel:
    """A world model around ``encoder`` for an env with these action bounds ``(A,)``: a GRU temporal
    encoder of ``temporal_hidden`` units and an MLP predictor (``predictor_depth`` layers of
    ``predictor_hidden``) reading ``action_chunk`` actions per step; the loss settings (``regularizer`` and the
    ``sigreg_*`` ones among them) are
    :class:`WorldModel`'s."""
    temporal = TemporalEncoder(encoder.embed_dim, temporal_hidden)
    low = torch.as_tensor(action_low, dtype=torch.float32).flatten()
    predictor = Predictor(temporal.context_dim, action_chunk * low.numel(), encoder.embed_dim, predictor_hidden,
                          predictor_depth)
    return WorldModel(encoder, temporal, predictor, low, action_high, history, horizon, var_weight=var_weight,
                      cov_weight=cov_weight, ema_momentum=ema_momentum, vicreg_within_sequence=vicreg_within_sequence,
                      within_sequence_std=within_sequence_std, freeze_encoder=freeze_encoder,
                      action_chunk=action_chunk, **regularizer)
