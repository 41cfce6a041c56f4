"""The predictor of I-JEPA and V-JEPA: a narrow ViT that predicts the representations of masked patch tokens."""

from __future__ import annotations

import torch
from timm.layers import build_sincos2d_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from torchwm.masks import apply_masks


class MaskedPredictor(nn.Module):
    """Context tokens plus mask tokens at the target positions → predicted target tokens.

    ``forward(context (B, Nc, D), context_idx (B, Nc), target_idx (B, M, Nt))`` → ``(B, M, Nt, D)``.
    Each of the ``M`` target blocks is predicted in its own pass (the context is repeated), as in
    I-JEPA: blocks do not see each other's mask tokens. Indices are into the row-major token ``grid``:
    ``(H, W)`` patches of an image or ``(T, H, W)`` tubelets of a clip. The transformer is built from timm
    ``Block``s at width ``dim`` (narrower than the encoder) and uses fixed sin-cos positions (timm's 2-D ones
    for images, :func:`~torchwm.nn.video.sincos_positions` for clips).
    """

    def __init__(self, grid: tuple[int, ...], embed_dim: int, dim: int = 96, depth: int = 4,
                 num_heads: int = 3, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"predictor width {dim} must be divisible by its heads {num_heads}")
        self.grid = tuple(grid)
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        if len(self.grid) == 2:
            pos = build_sincos2d_pos_embed(list(self.grid), dim=dim)  # (H*W, dim)
        else:
            from torchwm.nn.video import sincos_positions

            pos = sincos_positions(self.grid, dim)  # (T*H*W, dim)
        self.register_buffer("pos_embed", pos.reshape(1, -1, dim), persistent=False)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, embed_dim)
        trunc_normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        b, nc, _ = context.shape
        _, m, nt = target_idx.shape
        pos = self.pos_embed.expand(b, -1, -1)
        x = self.embed(context) + apply_masks(pos, context_idx)  # (B, Nc, dim)
        x = x.repeat_interleave(m, dim=0)  # (B*M, Nc, dim)
        targets = apply_masks(pos, target_idx).reshape(b * m, nt, -1)
        x = torch.cat([x, self.mask_token + targets], dim=1)
        x = self.norm(self.blocks(x))[:, nc:]
        return self.proj(x).reshape(b, m, nt, -1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
