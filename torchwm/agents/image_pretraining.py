"""Image pretraining of the spatial encoder on an image folder (I-JEPA), as one job's agent.

The only code that turns the image-pretraining part of a config (the top-level ViT sizes, ``root_path``,
``image_folder``, ``pretrain.*``) into objects: the model, the mask sampler, the data and the probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwm.agents.base import JEPAAgent, model_alias
from torchwm.masks import BlockMask, MaskSampler, MultiBlockMask, RandomMask
from torchwm.nn.encoders import SpatialEncoder
from torchwm.pretrain.ijepa import IJEPA, build_ijepa

MASK_FIGURE = "masks.png"


class ImagePretrainingAgent(JEPAAgent, job="image_pretraining"):
    """I-JEPA on ``root_path/image_folder`` (``dataset: imagefolder``); ``model`` is the
    :class:`~torchwm.pretrain.ijepa.IJEPA` (also ``ijepa``), whose EMA target encoder is the backbone."""

    pretrains = True

    ijepa = model_alias("the trained or loaded :class:`~torchwm.pretrain.ijepa.IJEPA` (None before)")

    # ------------------------------------------------------------------------------ config → objects
    def build_model(self) -> IJEPA:
        """A freshly initialised I-JEPA model as the config describes it (draws from torch's global RNG)."""
        c, p = self.cfg, self.cfg.pretrain
        encoder = SpatialEncoder.vit(c.image_size, c.patch_size, c.embed_dim, c.num_layers, c.num_heads)
        return build_ijepa(encoder, predictor_dim=p.predictor_dim, predictor_depth=p.predictor_depth,
                           predictor_heads=p.predictor_heads, ema_start=p.ema_start, ema_end=p.ema_end,
                           var_weight=p.var_weight, cov_weight=p.cov_weight)

    def mask_sampler(self, grid: tuple[int, int] | None = None) -> MaskSampler:
        """The sampler ``pretrain.mask`` names, over the ViT's patch grid (or ``grid``)."""
        c, p = self.cfg, self.cfg.pretrain
        grid = grid or (c.image_size // c.patch_size,) * 2
        target_scale, target_aspect = (p.target_scale_min, p.target_scale_max), (p.target_aspect_min, p.target_aspect_max)
        if p.mask == "multiblock":
            return MultiBlockMask(grid, num_targets=p.num_targets, target_scale=target_scale,
                                  target_aspect=target_aspect, min_keep=p.min_keep,
                                  context_scale=(p.context_scale_min, p.context_scale_max))
        if p.mask == "block":
            return BlockMask(grid, scale=target_scale, aspect=target_aspect, min_keep=p.min_keep)
        return RandomMask(grid, c.mask_ratio)

    def probe(self):
        """Linear-probe and k-NN evaluation on ``root_path/pretrain.val_folder``; None without that folder."""
        import os

        from torchwm.data.images import eval_transform, open_image_folder
        from torchwm.eval.classification import ImageProbeEvaluator

        c, val = self.cfg, self.cfg.pretrain.val_folder
        if not val or not os.path.isdir(os.path.join(c.root_path, val)):
            return None
        transform = eval_transform(c.image_size)
        return ImageProbeEvaluator(open_image_folder(c.root_path, c.image_folder, transform),
                                   open_image_folder(c.root_path, val, transform), c.pretrain.knn_k, self.device)

    # ---------------------------------------------------------------------------------- training
    def train(self) -> dict[str, Any]:
        """I-JEPA pretraining of the spatial encoder; returns the final metrics (probe accuracies included)."""
        from torchwm.data.images import SeededSamples, open_image_folder, train_transform

        c, p = self.cfg, self.cfg.pretrain
        self._prepare_run_dir()
        images = open_image_folder(c.root_path, c.image_folder, train_transform(c.image_size, (p.crop_scale_min, 1.0)))
        torch.manual_seed(c.seed)  # the initial weights follow the config's seed
        model = self.build_model()
        masks = self.mask_sampler(model.encoder.grid_size)
        trainer = self._trainer(model, SeededSamples(images), self._total_steps(len(images)),
                                batch_fn=lambda batch: (batch[0], masks(batch[0].shape[0])), evaluate=self.probe(),
                                weight_decay_end=p.weight_decay_end, seeded_samples=True)
        try:
            trainer.fit()
        finally:
            trainer.close()
        self.model = model
        metrics = self._finish(trainer)
        self.mask_figure()
        return metrics

    def describe(self, metrics: dict[str, Any]) -> str:
        probe = ""
        if "probe/linear_accuracy" in metrics:
            probe = (f"; linear probe {metrics['probe/linear_accuracy']:.1%}, k-NN {metrics['probe/knn_accuracy']:.1%} "
                     f"on {self.cfg.root_path}/{self.cfg.pretrain.val_folder}")
        return (f"pretrained {metrics.get('steps', 0)} steps{probe}\nencoder: {self.run.model} (torchwm.load_backbone "
                f"or model.pretrained); mask figure: {self.run.figures_dir / MASK_FIGURE}")

    # ---------------------------------------------------------------------------------- figures
    def mask_figure(self, count: int = 8, folder: str | Path | None = None) -> Path:
        """Masks sampled as in training, drawn over ``count`` images (context green, targets red).

        Images come from ``folder`` (default: the training folder, resized and centre-cropped). Saves
        ``run_dir/figures/masks.png`` and logs it to TensorBoard (``masks/examples``); returns the path.
        """
        from torchwm.data.images import ImageFiles, eval_transform
        from torchwm.viz.masks import save_mask_figure

        c = self.cfg
        folder = Path(folder) if folder is not None else Path(c.root_path) / c.image_folder
        files = ImageFiles(folder, eval_transform(c.image_size))
        picks = np.random.default_rng(c.seed).choice(len(files), min(count, len(files)), replace=False)
        images = torch.stack([files[int(i)][0] for i in sorted(picks)])
        masks = self.mask_sampler()(len(images), torch.Generator().manual_seed(c.seed))
        with self._writer() as writer:
            return save_mask_figure(images, masks, self.run.figures_dir / MASK_FIGURE, writer, self.trained_steps)

    def visualize(self, images: str | Path | None = None, count: int | None = None) -> list[Path]:
        """The mask figure over ``count`` images (default 8) of ``images`` (default: the training folder)."""
        return [self.mask_figure(count=count or 8, folder=images)]

    def _model_from_state(self, state: dict[str, Any]) -> IJEPA:
        model = self.build_model()
        model.load_state_dict(state["model"])
        return model
