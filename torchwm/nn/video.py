"""A ViT over clips (V-JEPA's encoder): tubelet patch embedding, fixed 3-D sin-cos positions, timm ``Block``s.

timm has 2-D patch embeddings and positions only; the tubelet embedding (one ``Conv3d``) and the 3-D
positions are the two small pieces written here, everything else is timm's.
"""

from __future__ import annotations

import math

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from torchwm.masks import apply_masks

def sincos_positions(grid: tuple[int, ...], dim: int) -> torch.Tensor:
    """Fixed sin-cos positions of a row-major grid: ``(prod(grid), dim)``.

    Each axis gets its own band of channels (for ``(T, H, W)``: a quarter for time, the rest split between
    rows and columns, as in V-JEPA), filled with ``sin(p·ω), cos(p·ω)`` at geometric frequencies ``ω``.
    """
    if len(grid) == 3:
        bands = [dim // 4, 3 * dim // 8, dim - dim // 4 - 3 * dim // 8]
    else:
        bands = [dim // len(grid)] * (len(grid) - 1) + [dim - (len(grid) - 1) * (dim // len(grid))]
    if any(b % 2 or b == 0 for b in bands):
        raise ValueError(f"width {dim} cannot be split into even sin-cos bands {bands} for a {len(grid)}-d grid; "
                         "use a multiple of 16")
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in grid], indexing="ij")
    parts = []
    for band, coord in zip(bands, coords):
        omega = 1.0 / 10000 ** (torch.arange(band // 2, dtype=torch.float64) / (band // 2))
        angles = coord.reshape(-1, 1) * omega  # (L, band / 2)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


class TubeletEmbed(nn.Module):
    """Clips ``(N, T, 3, H, W)`` → tokens ``(N, T/tubelet · H/patch · W/patch, D)`` (time steps first, then rows),
    one ``Conv3d`` with kernel and stride ``(tubelet, patch, patch)``."""

    def __init__(self, patch_size: int, tubelet: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size, self.tubelet = patch_size, tubelet
        self.proj = nn.Conv3d(3, embed_dim, (tubelet, patch_size, patch_size), stride=(tubelet, patch_size, patch_size))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5 or clips.shape[2] != 3 or clips.shape[1] % self.tubelet:
            raise ValueError(f"clips must be (N, T, 3, H, W) with T a multiple of the tubelet {self.tubelet}, "
                             f"got {tuple(clips.shape)}")
        return self.proj(clips.transpose(1, 2)).flatten(2).transpose(1, 2)


class VideoViT(nn.Module):
    """Tubelet embedding + 3-D sin-cos positions + ``depth`` timm ``Block``s, for clips of up to ``frames``
    frames of ``image_size`` pixels.

    * ``forward_tokens(clips (N, T, 3, H, W) normalised, keep (N, K) or None)`` → tokens ``(N, K or L, D)``: only
      the kept tokens enter the transformer (V-JEPA's context encoder);
    * ``forward_head(tokens (N, L, D))`` → ``(N, D)``: mean then LayerNorm (as timm's ViT with ``global_pool="avg"``).
    """

    def __init__(self, image_size: int, patch_size: int, tubelet: int, frames: int, embed_dim: int, depth: int,
                 num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if image_size % patch_size or frames % tubelet:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size} and frames "
                             f"{frames} of tubelet {tubelet}")
        self.grid = (frames // tubelet, image_size // patch_size, image_size // patch_size)
        self.patch_embed = TubeletEmbed(patch_size, tubelet, embed_dim)
        self.register_buffer("pos_embed", sincos_positions(self.grid, embed_dim)[None], persistent=False)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.fc_norm = nn.LayerNorm(embed_dim)
        self.apply(_init_weights)

    def forward_tokens(self, clips: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_embed(clips)
        if x.shape[1] > self.pos_embed.shape[1] or x.shape[1] % (self.grid[1] * self.grid[2]):
            raise ValueError(f"clips of {clips.shape[1]} frames of {tuple(clips.shape[-2:])} px give {x.shape[1]} "
                             f"tokens; this encoder takes up to {math.prod(self.grid)} ({self.grid} time steps, rows, "
                             "columns)")
        x = x + self.pos_embed[:, : x.shape[1]]
        if keep is not None:
            x = apply_masks(x, keep)
        return self.blocks(x)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc_norm(tokens.mean(dim=1))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
