"""Spatial encoders: one frame → one embedding (and patch tokens when asked).

All encoders take float images in [0, 1] of shape ``(N, 3, H, W)`` and normalise them internally
(``(x - 0.5) / 0.5``), so callers never need to know the statistics.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _normalise(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    return (images - 0.5) / 0.5


class ConvBackbone(nn.Module):
    """Four stride-2 3x3 convolutions (width, 2x, 4x, 8x channels) with GroupNorm and SiLU.

    ``(N, 3, H, W)`` → feature map ``(N, 8*width, ceil(H/16), ceil(W/16))``. Each cell of the final
    map is one "patch token"; the map is flattened (position kept) into the embedding by a linear layer.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for mult in (1, 2, 4, 8):
            out_ch = width * mult
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1),
                       nn.GroupNorm(min(8, out_ch), out_ch), nn.SiLU()]
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.out_channels = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SpatialSoftmax(nn.Module):
    """Feature map ``(N, K, h, w)`` → expected image coordinates of each channel ``(N, 2K)`` in [-1, 1].

    Each channel becomes a soft "keypoint" (Levine et al. 2016): positions of bodies become linear
    features, which is what a planner's L2 cost and a linear probe want. The temperature is learned.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def attention(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, K, h, w)`` → each keypoint's weights over the map ``(N, K, h*w)`` (sum 1). A peak
        near 1 puts the keypoint on one map position, so it moves in steps of a position as the body moves."""
        return torch.softmax(fmap.flatten(2) / self.log_temperature.exp(), dim=-1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        n, k, h, w = fmap.shape
        attn = self.attention(fmap)  # (N, K, h*w)
        ys = torch.linspace(-1, 1, h, device=fmap.device, dtype=fmap.dtype)
        xs = torch.linspace(-1, 1, w, device=fmap.device, dtype=fmap.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)  # (h*w, 2)
        return (attn @ coords).flatten(1)  # (N, 2K)


class KeypointBackbone(nn.Module):
    """Conv net keeping a 1/4-resolution map: ``(N, 3, H, W)`` → ``(N, keypoints, H/4, W/4)``.

    Two stride-2 and two stride-1 3x3 convolutions (GroupNorm, SiLU), then a 1x1 convolution to one
    channel per keypoint.
    """

    def __init__(self, width: int = 32, keypoints: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch, stride in ((width, 2), (2 * width, 2), (2 * width, 1), (2 * width, 1)):
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1),
                       nn.GroupNorm(min(8, out_ch), out_ch), nn.SiLU()]
            in_ch = out_ch
        layers.append(nn.Conv2d(in_ch, keypoints, 1))
        self.layers = nn.Sequential(*layers)
        self.out_channels = keypoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SpatialEncoder(nn.Module):
    """Frame encoder with a uniform interface over three backbones.

    * ``SpatialEncoder.vit(...)``: a ViT assembled by timm's ``VisionTransformer`` from timm ``Block``s
      (no class token, mean-pooled tokens), sized by image_size / patch_size / embed_dim / depth / heads.
    * ``SpatialEncoder.conv(...)``: a small CNN for fast CPU runs (~6x faster than a 4-block ViT at 64 px).
    * ``SpatialEncoder.from_timm(name)``: any ``timm.create_model`` architecture (random init; nothing
      is downloaded).
    * ``SpatialEncoder.video_vit(...)``: a ViT over clips with tubelet patches (:class:`~torchwm.nn.video.VideoViT`,
      V-JEPA's encoder); a single frame is embedded as a still clip of ``tubelet`` copies of it.

    ``forward(images)``: ``(N, 3, H, W)`` in [0, 1] (or uint8) → ``(N, embed_dim)``.
    ``forward_features(images)``: → patch tokens ``(N, L, token_dim)`` (timm-style name).
    ``num_features`` / ``embed_dim``: the embedding width.
    """

    def __init__(self, kind: str, backbone: nn.Module, embed_dim: int, head: nn.Module | None = None,
                 spec: dict | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()
        self.embed_dim = self.num_features = embed_dim
        self.spec = dict(spec or {}, kind=kind)
        """constructor arguments, enough to rebuild this encoder (saved in checkpoints)"""

    # ------------------------------------------------------------------------------ constructors
    @classmethod
    def vit(cls, image_size: int = 64, patch_size: int = 8, embed_dim: int = 192, depth: int = 4,
            num_heads: int = 3, mlp_ratio: float = 4.0) -> SpatialEncoder:
        from timm.models.vision_transformer import VisionTransformer

        backbone = VisionTransformer(img_size=image_size, patch_size=patch_size, embed_dim=embed_dim,
                                     depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                     num_classes=0, global_pool="avg", class_token=False)
        spec = dict(image_size=image_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                    num_heads=num_heads, mlp_ratio=mlp_ratio)
        return cls("vit", backbone, embed_dim, spec=spec)

    @classmethod
    def conv(cls, image_size: int = 64, embed_dim: int = 128, width: int = 32, head: str = "flatten",
             keypoints: int = 64) -> SpatialEncoder:
        """``head="flatten"``: 4 stride-2 convs, the final map flattened into a linear layer.
        ``head="keypoints"``: a 1/4-resolution map, spatial softmax to ``keypoints`` (x, y) positions,
        then a linear layer (positions of bodies become linear features)."""
        if head == "flatten":
            backbone: nn.Module = ConvBackbone(width)
            side = math.ceil(image_size / 16)
            head_module = nn.Sequential(nn.Flatten(), nn.Linear(backbone.out_channels * side * side, embed_dim))
        elif head == "keypoints":
            backbone = KeypointBackbone(width, keypoints)
            head_module = nn.Sequential(SpatialSoftmax(), nn.Linear(2 * keypoints, embed_dim))
        else:
            raise ValueError(f"conv head must be 'flatten' or 'keypoints', not {head!r}")
        spec = dict(image_size=image_size, embed_dim=embed_dim, width=width, head=head, keypoints=keypoints)
        return cls("conv", backbone, embed_dim, head=head_module, spec=spec)

    @classmethod
    def from_timm(cls, name: str, image_size: int | None = None) -> SpatialEncoder:
        """A ``timm.create_model(name)`` architecture, random init. ``name`` is a timm registry name
        (``timm.list_models()``); a Hub id (``hf-hub:...``, ``timm/...``) or a path raises ``ValueError``
        before timm is called, since timm would fetch its config (and weights) over the network."""
        if not isinstance(name, str) or any(c in name for c in "/\\:"):
            raise ValueError(f"model.timm_model={name!r}: not a timm architecture name. torchwm builds timm "
                             "architectures with random init and never downloads anything, so Hub ids "
                             "('hf-hub:...', 'timm/...') and paths are refused; name the architecture from "
                             "timm.list_models() (e.g. 'resnet18', 'vit_small_patch16_224') and load pretrained "
                             "weights from a local file (encoder.backbone.load_state_dict(torch.load(path)))")
        import timm

        kwargs = {"img_size": image_size} if image_size and _accepts_img_size(name) else {}
        try:
            backbone = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        except RuntimeError as err:  # timm raises RuntimeError for unknown names
            raise ValueError(f"model.timm_model={name!r}: {err}") from None
        spec = dict(name=name, image_size=image_size)
        return cls("timm", backbone, int(backbone.num_features), spec=spec)

    @classmethod
    def video_vit(cls, image_size: int = 64, patch_size: int = 8, tubelet: int = 2, frames: int = 8,
                  embed_dim: int = 192, depth: int = 4, num_heads: int = 3, mlp_ratio: float = 4.0) -> SpatialEncoder:
        """A ViT over clips of up to ``frames`` frames, tokens of ``tubelet`` frames x ``patch_size`` pixels."""
        from torchwm.nn.video import VideoViT

        backbone = VideoViT(image_size, patch_size, tubelet, frames, embed_dim, depth, num_heads, mlp_ratio)
        spec = dict(image_size=image_size, patch_size=patch_size, tubelet=tubelet, frames=frames,
                    embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
        return cls("video_vit", backbone, embed_dim, spec=spec)

    @classmethod
    def from_spec(cls, spec: dict) -> SpatialEncoder:
        """Rebuild an encoder from its ``spec`` (as stored in checkpoints)."""
        spec = dict(spec)
        kind = spec.pop("kind")
        builders = {"vit": cls.vit, "conv": cls.conv, "timm": cls.from_timm, "video_vit": cls.video_vit}
        if kind not in builders:
            raise ValueError(f"unknown encoder kind {kind!r}; known: {', '.join(builders)}")
        return builders[kind](**spec)

    # ------------------------------------------------------------------------------------ forward
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → patch tokens ``(N, L, C)``."""
        x = _normalise(images)
        if self.kind == "conv":
            fmap = self.backbone(x)  # (N, C, h, w)
            return fmap.flatten(2).transpose(1, 2)
        if self.kind == "video_vit":
            return self.backbone.forward_tokens(self._still_clips(x))
        feats = self.backbone.forward_features(x)
        if feats.dim() == 4:  # CNN from timm: (N, C, h, w)
            feats = feats.flatten(2).transpose(1, 2)
        return feats

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(rows, cols)`` of the ViT encoder."""
        self._require_vit("grid_size")
        return tuple(self.backbone.patch_embed.grid_size)  # type: ignore[return-value]

    def forward_tokens(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """ViT only: ``(N, 3, H, W)`` → tokens ``(N, K, C)`` of the patches in ``keep`` (``(N, K)`` indices
        into the row-major patch grid; all patches when None). Dropped patches never enter the
        transformer, which is what makes I-JEPA's context encoder cheap."""
        self._require_vit("forward_tokens")
        vit = self.backbone
        x = vit._pos_embed(vit.patch_embed(_normalise(images)))  # (N, L, C), positions added
        if keep is not None:
            from torchwm.masks import apply_masks

            x = apply_masks(x, keep)
        return vit.norm(vit.blocks(vit.norm_pre(x)))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """ViTs only: tokens ``(N, L, C)`` → the embedding ``forward`` returns ``(N, C)`` (mean, then norm)."""
        if self.kind != "video_vit":
            self._require_vit("pool")
        return self.backbone.forward_head(tokens)

    def forward_clip_tokens(self, clips: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Video ViT only: clips ``(N, T, 3, H, W)`` in [0, 1] (or uint8) → tokens ``(N, K, C)`` of the tokens in
        ``keep`` (``(N, K)`` indices into the row-major ``(T/tubelet, H/patch, W/patch)`` grid; all when None)."""
        if self.kind != "video_vit":
            raise TypeError(f"forward_clip_tokens needs a video ViT (SpatialEncoder.video_vit), this one is {self.kind!r}")
        return self.backbone.forward_tokens(_normalise(clips), keep)

    def token_grid(self, frames: int) -> tuple[int, int, int]:
        """Video ViT only: the token grid ``(T, H, W)`` of clips of ``frames`` frames."""
        grid = self.backbone.grid
        return frames // self.spec["tubelet"], grid[1], grid[2]

    def _require_vit(self, what: str) -> None:
        if self.kind != "vit":
            raise TypeError(f"{what} needs a ViT encoder (SpatialEncoder.vit), this one is {self.kind!r}")

    def _still_clips(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``(N, 3, H, W)`` → still clips ``(N, tubelet, 3, H, W)``."""
        return x.unsqueeze(1).expand(-1, self.spec["tubelet"], -1, -1, -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] (or uint8) → embeddings ``(N, embed_dim)``."""
        x = _normalise(images)
        if self.kind == "conv":
            return self.head(self.backbone(x))
        if self.kind == "video_vit":
            return self.backbone.forward_head(self.backbone.forward_tokens(self._still_clips(x)))
        return self.backbone(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, embed_dim={self.embed_dim}"


def _accepts_img_size(name: str) -> bool:
    return any(key in name for key in ("vit", "deit", "eva", "beit", "swin"))


def build_spatial_encoder(encoder: str, image_size: int, patch_size: int, embed_dim: int, num_layers: int,
                          num_heads: int, conv_width: int = 32, timm_model: str = "", conv_head: str = "flatten",
                          keypoints: int = 64) -> SpatialEncoder:
    """The encoder a config asks for (``model.encoder`` is "vit", "conv" or "timm")."""
    if encoder == "vit":
        return SpatialEncoder.vit(image_size, patch_size, embed_dim, num_layers, num_heads)
    if encoder == "conv":
        return SpatialEncoder.conv(image_size, embed_dim, conv_width, conv_head, keypoints)
    if encoder == "timm":
        return SpatialEncoder.from_timm(timm_model, image_size)
    raise ValueError(f"model.encoder={encoder!r}: unknown encoder; allowed: 'conv', 'timm', 'vit'")
