"""Image pretraining of the spatial encoder (I-JEPA or multi-view SIGReg), as one job's agent.

The only code that turns the image-pretraining part of a config (the encoder sizes, ``root_path`` /
``image_folder`` or the env's episodes, ``pretrain.*``) into objects: the model, the masks or views, the
data and the probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwm import distributed
from torchwm.agents.base import JEPAAgent
from torchwm.agents.trajectory_data import TrajectoryData
from torchwm.masks import BlockMask, MaskSampler, MultiBlockMask, RandomMask

MASK_FIGURE = "masks.png"
VIEWS_FIGURE = "views.png"


class ImagePretrainingAgent(TrajectoryData, JEPAAgent, job="image_pretraining"):
    """Pretrains the spatial encoder on single images: ``pretrain.method`` "ijepa" (masked image blocks; ``model``
    is an :class:`~torchwm.pretrain.ijepa.IJEPA`, whose EMA target encoder is the backbone) or "sigreg"
    (multi-view SIGReg; ``model`` is a :class:`~torchwm.pretrain.sigreg.MultiViewSIGReg`), on the images of
    ``root_path/image_folder`` (dataset "imagefolder") or the frames of the env's episodes ("episodes")."""

    pretrains = True

    # ------------------------------------------------------------------------------ config → objects
    def build_model(self):
        """A freshly initialised model as the config describes it (draws from torch's global RNG)."""
        p = self.cfg.pretrain
        encoder = self.spatial_encoder()
        if p.method == "sigreg":
            from torchwm.pretrain.sigreg import MultiViewSIGReg

            return MultiViewSIGReg(encoder, p.projector_dim, p.projector_hidden, p.sigreg_weight, p.sigreg_directions,
                                   p.global_views)
        from torchwm.pretrain.ijepa import build_ijepa

        return build_ijepa(encoder, predictor_dim=p.predictor_dim, predictor_depth=p.predictor_depth,
                           predictor_heads=p.predictor_heads, ema_start=p.ema_start, ema_end=p.ema_end,
                           var_weight=p.var_weight, cov_weight=p.cov_weight)

    def mask_sampler(self, grid: tuple[int, int] | None = None) -> MaskSampler:
        """I-JEPA: the sampler ``pretrain.mask`` names, over the ViT's patch grid (or ``grid``)."""
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

    def images(self, transform=None, split: str = "train"):
        """``(image, label)`` pairs: the image folder's (labels: its classes) or the frames of the training
        (``split="train"``) or held-out episodes (labels: episode indices)."""
        from torchwm.data.images import open_image_folder

        c = self.cfg
        if c.dataset == "imagefolder":
            return open_image_folder(c.root_path, c.image_folder, transform)
        from torchwm.data import StoreFrames

        store = self.collect()
        frames = StoreFrames(store, self.split(store)[0 if split == "train" else 1])
        return _Mapped(frames, transform) if transform is not None else frames

    def training_data(self):
        """The training dataset (per-sample seeds: augmentations do not depend on loader workers or resumes)
        and the function from one of its batches to the model's ``loss`` arguments."""
        from torchwm.data.images import SeededSamples, train_transform

        c, p = self.cfg, self.cfg.pretrain
        if p.method == "sigreg":
            views = self.views(self.images())
            return SeededSamples(views), lambda batch: (batch[0],)
        masks = self.mask_sampler()
        images = self.images(train_transform(c.image_size, (p.crop_scale_min, 1.0)))
        return SeededSamples(images), lambda batch: (batch[0], masks(batch[0].shape[0]))

    def views(self, images):
        """SIGReg: ``images`` (``(image, label)`` pairs) as stacks of the views training draws."""
        from torchwm.data.images import MultiView

        c, p = self.cfg, self.cfg.pretrain
        return MultiView(images, c.image_size, p.global_views, p.local_views, (p.crop_scale_min, 1.0),
                         (p.local_crop_scale_min, p.crop_scale_min), p.geometric_augment, p.color_jitter)

    def probe(self):
        """The evaluation run during training: for an image folder, linear-probe and k-NN accuracy on
        ``root_path/pretrain.val_folder`` (None without it); for episodes, the physics-state probe."""
        import os

        from torchwm.data.images import eval_transform, open_image_folder
        from torchwm.eval.classification import ImageProbeEvaluator

        c, val = self.cfg, self.cfg.pretrain.val_folder
        if c.dataset == "episodes":
            from torchwm.eval.state_probe import EncoderStateProbe

            store = self.collect()
            return EncoderStateProbe(self.state_probe(store, *self.split(store)))
        if not val or not os.path.isdir(os.path.join(c.root_path, val)):
            return None
        transform = eval_transform(c.image_size)
        return ImageProbeEvaluator(open_image_folder(c.root_path, c.image_folder, transform),
                                   open_image_folder(c.root_path, val, transform), c.pretrain.knn_k, self.device)

    # ---------------------------------------------------------------------------------- training
    def train(self) -> dict[str, Any]:
        """Pretrain the spatial encoder; returns the final metrics (probe scores included)."""
        c, p = self.cfg, self.cfg.pretrain
        self._prepare_run_dir()
        data, batch_fn = self.training_data()
        torch.manual_seed(c.seed)  # the initial weights follow the config's seed
        model = self.build_model()
        trainer = self._trainer(model, data, self._total_steps(len(data)), batch_fn=batch_fn, evaluate=self.probe(),
                                weight_decay_end=p.weight_decay_end, seeded_samples=True)
        metrics = self._fit(model, trainer)
        if distributed.is_main():
            self.visualize()
        return metrics

    def describe(self, metrics: dict[str, Any]) -> str:
        c = self.cfg
        probe = ""
        if "probe/linear_accuracy" in metrics:
            probe = (f"; linear probe {metrics['probe/linear_accuracy']:.1%}, k-NN {metrics['probe/knn_accuracy']:.1%} "
                     f"on {c.root_path}/{c.pretrain.val_folder}")
        if "eval/probe_r2" in metrics:
            probe = f"; state probe R^2 {metrics['eval/probe_r2']:.3f} on held-out frames of {c.env.id}"
        figure = MASK_FIGURE if c.pretrain.method == "ijepa" else VIEWS_FIGURE
        return (f"pretrained {metrics.get('steps', 0)} steps ({c.pretrain.method}){probe}\nencoder: {self.run.model} "
                f"(torchwm.load_backbone or model.pretrained); figure: {self.run.figures_dir / figure}")

    # ---------------------------------------------------------------------------------- figures
    def _examples(self, count: int, folder: str | Path | None, transform) -> list:
        """``count`` images of ``folder`` (default: the training images), chosen by the seed."""
        from torchwm.data.images import ImageFiles

        files = ImageFiles(folder, transform) if folder is not None else self.images(transform)
        picks = np.random.default_rng(self.cfg.seed).choice(len(files), min(count, len(files)), replace=False)
        return [files[int(i)][0] for i in sorted(picks)]

    def mask_figure(self, count: int = 8, folder: str | Path | None = None) -> Path:
        """I-JEPA: masks sampled as in training, drawn over ``count`` images (context green, targets red).

        Images come from ``folder`` (default: the training images, resized and centre-cropped). Saves
        ``run_dir/figures/masks.png`` and logs it to TensorBoard (``masks/examples``); returns the path.
        """
        from torchwm.data.images import eval_transform
        from torchwm.viz.masks import save_mask_figure

        images = torch.stack(self._examples(count, folder, eval_transform(self.cfg.image_size)))
        masks = self.mask_sampler()(len(images), torch.Generator().manual_seed(self.cfg.seed))
        with self._writer() as writer:
            return save_mask_figure(images, masks, self.run.figures_dir / MASK_FIGURE, writer, self.trained_steps)

    def views_figure(self, count: int = 6, folder: str | Path | None = None) -> Path:
        """SIGReg: the views of ``count`` images as training draws them (one row per image, global views first).
        Saves ``run_dir/figures/views.png`` and logs it to TensorBoard (``views/examples``); returns the path."""
        from torchwm.data.images import SeededSamples
        from torchwm.viz.masks import save_image_grid

        c = self.cfg
        views = self.views(_List(self._examples(count, folder, None)))
        rows = [SeededSamples(views)[(i, c.seed + i)][0] for i in range(len(views))]
        with self._writer() as writer:
            return save_image_grid(torch.stack(rows), self.run.figures_dir / VIEWS_FIGURE, writer, self.trained_steps,
                                   tag="views/examples")

    def visualize(self, images: str | Path | None = None, count: int | None = None) -> list[Path]:
        """The mask figure (I-JEPA) or the views figure (SIGReg) over ``count`` images of ``images`` (default:
        the training images)."""
        if self.cfg.pretrain.method == "sigreg":
            return [self.views_figure(count=count or 6, folder=images)]
        return [self.mask_figure(count=count or 8, folder=images)]

    def _model_from_state(self, state: dict[str, Any]):
        model = self.build_model()
        model.load_state_dict(state["model"])
        return model


class _Mapped(torch.utils.data.Dataset):
    """``dataset[i] = (image, label)`` with ``transform`` applied to the image."""

    def __init__(self, dataset, transform) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), label


class _List(torch.utils.data.Dataset):
    """A list of images as an ``(image, index)`` dataset."""

    def __init__(self, images: list) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], index
