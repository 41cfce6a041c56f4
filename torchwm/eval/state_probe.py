"""Probes of the physics state from one frame's embedding, for any encoder (a world model's, or a pretrained
one): how much of where the bodies are an embedding holds linearly, and (k-NN) in any shape.

The targets are the domain's (:class:`~torchwm.envs.domains.DomainSpec`: for reacher the elbow and fingertip
positions, and sin/cos of the joint angles; for point_mass the mass's position). Probes are fitted on frames
of training episodes and scored (R²) on frames of held-out episodes, fixed subsets drawn once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from torchwm.eval.probes import LinearProbe, NeighbourProbe, probe_kinds, probe_targets

NEIGHBOURS = 10
"""neighbours the k-NN state probe averages"""

Encode = Callable[[torch.Tensor], torch.Tensor]
"""uint8 frames ``(N, 3, H, W)`` on a device → embeddings ``(N, D)``"""


def sample_frames(store, episodes: Sequence[int], count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
def embed_frames(encode: Encode, frames: np.ndarray, device: torch.device | str, batch: int = 256) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` → ``(N, D)`` on the CPU, in batches."""
    out = [encode(torch.from_numpy(frames[i: i + batch]).to(device)) for i in range(0, len(frames), batch)]
    return torch.cat(out).float().cpu()


class StateProbe:
    """Probes the physics state of ``env_id`` frames from a store's training and held-out episodes.

    ``probe(encode)`` → ``{"eval/probe_r2": R² on held-out frames, "eval/probe_r2_train": on the training frames,
    ...}``, with ``_joints`` variants where the domain has a second probe kind. Up to ``max_frames`` training and
    ``max_frames / 2`` held-out frames, drawn from ``rng``.
    """

    def __init__(self, env_id: str, store, train_episodes: Sequence[int], test_episodes: Sequence[int],
                 device: torch.device | str = "cpu", rng: np.random.Generator | None = None,
                 max_frames: int = 2000) -> None:
        rng = rng if rng is not None else np.random.default_rng(0)
        self.device = device
        self.train_frames, self.train_states = sample_frames(store, train_episodes, max_frames, rng)
        self.test_frames, self.test_states = (sample_frames(store, test_episodes, max_frames // 2, rng)
                                              if test_episodes else (None, None))
        # metric name suffix → probe kind: eval/probe_r2 reads positions, eval/probe_r2_joints the joints
        self.kinds = {"" if kind == "positions" else f"_{kind}": kind for kind in probe_kinds(env_id)}
        self.train_targets = {k: probe_targets(env_id, self.train_states, kind) for k, kind in self.kinds.items()}
        self.test_targets = ({k: probe_targets(env_id, self.test_states, kind) for k, kind in self.kinds.items()}
                             if self.test_states is not None else None)

    def bank(self) -> tuple[np.ndarray, np.ndarray]:
        """Real frames and their states ``(uint8 (N, 3, H, W), (N, S))``: the held-out ones, else the training ones."""
        if self.test_frames is not None:
            return self.test_frames, self.test_states
        return self.train_frames, self.train_states

    def embed(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings of the training and held-out frames (``None`` without held-out episodes)."""
        z_train = embed_frames(encode, self.train_frames, self.device)
        z_test = embed_frames(encode, self.test_frames, self.device) if self.test_frames is not None else None
        return z_train, z_test

    def scores(self, z_train: torch.Tensor, z_test: torch.Tensor | None) -> dict[str, float]:
        """Held-out and training R² of the linear probe per kind, and with held-out frames the k-NN probe's
        held-out R² (``eval/probe_knn_r2{suffix}``: the state the embedding holds in any shape)."""
        out: dict[str, float] = {}
        for suffix in self.kinds:
            probe = LinearProbe().fit(z_train, self.train_targets[suffix])
            if z_test is not None:
                out[f"eval/probe_r2{suffix}"] = probe.r2(z_test, self.test_targets[suffix])
                if len(z_train) >= NEIGHBOURS:
                    neighbours = NeighbourProbe(NEIGHBOURS).fit(z_train, self.train_targets[suffix])
                    out[f"eval/probe_knn_r2{suffix}"] = neighbours.r2(z_test, self.test_targets[suffix])
            out[f"eval/probe_r2{suffix}_train"] = probe.r2(z_train, self.train_targets[suffix])
        return out

    def __call__(self, encode: Encode) -> dict[str, float]:
        return self.scores(*self.embed(encode))


class EncoderStateProbe:
    """For :class:`~torchwm.training.Trainer`: the state probe of a pretraining model's ``backbone``."""

    def __init__(self, probe: StateProbe) -> None:
        self.probe = probe

    @torch.no_grad()
    def __call__(self, model, step: int) -> dict[str, float]:
        return self.probe(model.backbone)
