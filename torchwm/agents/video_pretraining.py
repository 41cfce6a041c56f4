"""Video pretraining of the spatial encoder (V-JEPA), as one job's agent.

The only code that turns the video-pretraining part of a config (the ViT sizes, ``pretrain.*`` clip and mask
settings, and the env's episodes or ``root_path/image_folder``) into objects: the video ViT and its predictor,
the masks, the clips and the probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwm import distributed
from torchwm.agents.base import JEPAAgent
from torchwm.agents.trajectory_data import TrajectoryData
from torchwm.masks import FutureMask, MaskSampler, TubeMask

MASK_FIGURE = "masks.png"


class VideoPretrainingAgent(TrajectoryData, JEPAAgent, job="video_pretraining"):
    """V-JEPA on clips of the env's episodes (dataset "episodes") or of the videos in ``root_path/image_folder``
    (dataset "videos"); ``model`` is a :class:`~torchwm.pretrain.vjepa.VJEPA`, whose EMA target encoder (a video
    ViT that embeds a frame as a still clip) is the backbone."""

    pretrains = True

    # ------------------------------------------------------------------------------ config → objects
    def build_model(self):
        """A freshly initialised V-JEPA model as the config describes it (draws from torch's global RNG)."""
        from torchwm.nn.encoders import SpatialEncoder
        from torchwm.pretrain.vjepa import build_vjepa

        c, p = self.cfg, self.cfg.pretrain
        encoder = SpatialEncoder.video_vit(c.image_size, c.patch_size, p.tubelet, p.clip_frames, c.embed_dim,
                                           c.num_layers, c.num_heads)
        return build_vjepa(encoder, p.clip_frames, predictor_dim=p.predictor_dim, predictor_depth=p.predictor_depth,
                           predictor_heads=p.predictor_heads, ema_start=p.ema_start, ema_end=p.ema_end,
                           var_weight=p.var_weight, cov_weight=p.cov_weight)

    def mask_samplers(self) -> dict[str, MaskSampler]:
        """The masks of every batch, by name: short-range tubes, long-range tubes and the future (those enabled)."""
        c, p = self.cfg, self.cfg.pretrain
        grid = (p.clip_frames // p.tubelet, c.image_size // c.patch_size, c.image_size // c.patch_size)
        aspect = (p.target_aspect_min, p.target_aspect_max)
        samplers: dict[str, MaskSampler] = {}
        if p.short_blocks:
            samplers["short"] = TubeMask(grid, p.short_blocks, p.short_scale, aspect, p.min_keep)
        if p.long_blocks:
            samplers["long"] = TubeMask(grid, p.long_blocks, p.long_scale, aspect, p.min_keep)
        if p.future_frames:
            samplers["future"] = FutureMask(grid, p.future_frames // p.tubelet)
        return samplers

    def clips(self, split: str = "train"):
        """Clips uint8 ``(clip_frames, 3, S, S)``: of the training (``split="train"``) or held-out episodes, or of
        the video folder."""
        c, p = self.cfg, self.cfg.pretrain
        if c.dataset == "videos":
            from torchwm.data.videos import VideoFolder

            return VideoFolder(Path(c.root_path) / c.image_folder, p.clip_frames, p.frame_stride, c.image_size)
        from torchwm.data import StoreClips

        store = self.collect()
        return StoreClips(store, p.clip_frames, p.frame_stride, episodes=self.split(store)[0 if split == "train" else 1])

    def probe(self):
        """Episodes: the physics-state probe of the backbone on held-out frames; a video folder has none."""
        if self.cfg.dataset != "episodes":
            return None
        from torchwm.eval.state_probe import EncoderStateProbe

        store = self.collect()
        return EncoderStateProbe(self.state_probe(store, *self.split(store)))

    # ---------------------------------------------------------------------------------- training
    def train(self) -> dict[str, Any]:
        """V-JEPA pretraining of the spatial encoder; returns the final metrics."""
        c, p = self.cfg, self.cfg.pretrain
        self._prepare_run_dir()
        clips = self.clips()
        samplers = self.mask_samplers()
        torch.manual_seed(c.seed)  # the initial weights follow the config's seed
        model = self.build_model()
        trainer = self._trainer(model, clips, self._total_steps(len(clips)), evaluate=self.probe(),
                                batch_fn=lambda batch: (batch, {k: s(len(batch)) for k, s in samplers.items()}),
                                weight_decay_end=p.weight_decay_end)
        metrics = self._fit(model, trainer)
        if distributed.is_main():
            self.visualize()
        return metrics

    def describe(self, metrics: dict[str, Any]) -> str:
        probe = (f"; state probe R^2 {metrics['eval/probe_r2']:.3f} on held-out frames of {self.cfg.env.id}"
                 if "eval/probe_r2" in metrics else "")
        return (f"pretrained {metrics.get('steps', 0)} steps (vjepa){probe}\nencoder: {self.run.model} "
                f"(torchwm.load_backbone or model.pretrained); mask figure: {self.run.figures_dir / MASK_FIGURE}")

    # ---------------------------------------------------------------------------------- figures
    def visualize(self, images: str | Path | None = None, count: int | None = None) -> list[Path]:
        """The masks of training drawn over ``count`` clips (default 3) chosen by the seed: one row per clip and
        mask, one column per frame. ``images``: for image runs only."""
        if images is not None:
            raise ValueError("images: a video run draws its masks on its own clips")
        from torchwm.viz.masks import clip_mask_figure, save_figure

        clips = self.clips()
        picks = np.random.default_rng(self.cfg.seed).choice(len(clips), min(count or 3, len(clips)), replace=False)
        batch = torch.stack([clips[int(i)] for i in sorted(picks)])
        generator = torch.Generator().manual_seed(self.cfg.seed)
        masks = {k: s(len(batch), generator) for k, s in self.mask_samplers().items()}
        figure = clip_mask_figure(batch, masks, self.cfg.pretrain.tubelet)
        with self._writer() as writer:
            return [save_figure(figure, self.run.figures_dir / MASK_FIGURE, writer, self.trained_steps)]

    def _model_from_state(self, state: dict[str, Any]):
        model = self.build_model()
        model.load_state_dict(state["model"])
        return model
