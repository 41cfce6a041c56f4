"""Action-conditioned predictor: context and action → change of the frame embedding."""

from __future__ import annotations

import torch
from torch import nn


class Predictor(nn.Module):
    """MLP ``[context, action] → Δz``; the world model predicts ``ẑ_{t+1} = z_t + Δz``.

    Predicting the change keeps the "nothing moves" solution one zero away, so the network spends its
    capacity on the motion. ``forward(context (B, C), action (B, A)) → Δz (B, D)``.
    """

    def __init__(self, context_dim: int, action_dim: int, embed_dim: int, hidden_dim: int = 512,
                 depth: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth={depth}: must be >= 1")
        layers: list[nn.Module] = []
        width = context_dim + action_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
            width = hidden_dim
        out = nn.Linear(width, embed_dim)
        # Start at "nothing moves" (Δz = 0): a random output layer would predict changes larger than the
        # per-step motion, and the first few hundred steps would be spent unlearning them.
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        layers.append(out)
        self.net = nn.Sequential(*layers)
        self.action_dim = action_dim

    def forward(self, context: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if action.shape[-1] != self.action_dim:
            raise ValueError(f"action has {action.shape[-1]} dims, the predictor expects {self.action_dim}")
        return self.net(torch.cat([context, action], dim=-1))

