"""TensorBoard projector: held-out frame embeddings with thumbnails and physics-state labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchwm.envs.registry import env_domain


def state_labels(env_id: str, states: np.ndarray, bins: int = 8) -> tuple[list[str], list[list[str]]]:
    """Physics states ``(N, S)`` → ``(header, rows)`` of readable, binned labels for the projector.

    One column per position coordinate of the domain (:class:`~torchwm.envs.domains.Coordinate`): a hinge
    in ``bins`` sectors of the circle (e.g. "shoulder_deg 45..90"), a slide in ``bins`` equal-width bins
    over its range; a domain without coordinates gets the first two state values in quantile bins.
    """
    states = np.asarray(states, dtype=np.float64)
    coordinates = env_domain(env_id).coordinates
    header, columns = [], []
    for j, c in enumerate(coordinates):
        if c.kind == "hinge":
            width = 360 // bins
            degrees = np.degrees(np.mod(states[:, j], 2 * np.pi)).astype(int) // width * width
            header.append(f"{c.joint}_deg")
            columns.append([f"{d}..{d + width}" for d in degrees])
        else:
            header.append(c.joint)
            columns.append(_binned(states[:, j], np.linspace(c.low, c.high, bins + 1)))
    if not coordinates:
        header = ["state0", "state1"][: min(2, states.shape[1])]
        columns = [_binned(states[:, j], np.quantile(states[:, j], np.linspace(0, 1, bins + 1)))
                   for j in range(len(header))]
    return header, [list(row) for row in zip(*columns)]


def _binned(values: np.ndarray, edges: np.ndarray) -> list[str]:
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return [f"{edges[i]:+.2f}..{edges[i + 1]:+.2f}" for i in idx]


PROJECTOR_MIN_DIM = 3


def add_projector(writer: Any, embeddings: torch.Tensor, frames: np.ndarray | torch.Tensor, env_id: str,
                  states: np.ndarray, step: int = 0, tag: str = "heldout_frames", thumbnail: int = 32) -> None:
    """``writer.add_embedding`` of ``embeddings (N, D)`` with frame thumbnails and state labels.

    ``frames`` uint8 ``(N, 3, H, W)``; thumbnails are downscaled to ``thumbnail`` px (the projector's
    sprite sheet must stay small). Embeddings narrower than 3 are padded with zero columns: the
    projector's PCA view draws nothing (variance described: NaN) for fewer than 3 dimensions.
    """
    import torch.nn.functional as F

    images = torch.as_tensor(np.asarray(frames)).float() / 255.0
    if images.shape[-1] > thumbnail:
        images = F.interpolate(images, size=(thumbnail, thumbnail), mode="bilinear", antialias=True,
                               align_corners=False)
    header, rows = state_labels(env_id, states)
    embeddings = embeddings.float().cpu()
    if embeddings.shape[1] < PROJECTOR_MIN_DIM:
        embeddings = F.pad(embeddings, (0, PROJECTOR_MIN_DIM - embeddings.shape[1]))
    writer.add_embedding(embeddings, metadata=rows, metadata_header=header, label_img=images,
                         global_step=step, tag=tag)
