"""Temporal encoder: fuses the last few frame embeddings into a context (motion lives here)."""

from __future__ import annotations

import torch
from torch import nn


class TemporalEncoder(nn.Module):
    """A GRU over frame embeddings; the context is ``[hidden state, latest embedding]``.

    Recurrent rather than a causal transformer because planning advances the context one predicted
    step at a time for hundreds of candidate sequences: a GRU step costs O(hidden²) per sample,
    while a transformer would re-attend over the whole history at every step.

    * ``forward(z_history)``: ``(B, h, D)`` → context ``(B, hidden_dim + D)``.
    * ``update(context, z_next)``: ``(B, C)``, ``(B, D)`` → next context ``(B, C)``.
    * ``latest(context)``: ``(B, C)`` → the latest embedding ``(B, D)``.
    """

    def __init__(self, embed_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.embed_dim, self.hidden_dim = embed_dim, hidden_dim
        self.context_dim = hidden_dim + embed_dim
        self.cell = nn.GRUCell(embed_dim, hidden_dim)

    def forward(self, z_history: torch.Tensor) -> torch.Tensor:
        if z_history.dim() != 3 or z_history.shape[-1] != self.embed_dim:
            raise ValueError(f"z_history must be (B, h, {self.embed_dim}), got {tuple(z_history.shape)}")
        h = z_history.new_zeros(z_history.shape[0], self.hidden_dim)
        for t in range(z_history.shape[1]):
            h = self.cell(z_history[:, t], h)
        return torch.cat([h, z_history[:, -1]], dim=-1)

    def update(self, context: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        h = self.cell(z_next, context[:, : self.hidden_dim])
        return torch.cat([h, z_next], dim=-1)

    def latest(self, context: torch.Tensor) -> torch.Tensor:
        return context[:, self.hidden_dim:]
