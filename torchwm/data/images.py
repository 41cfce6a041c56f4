"""Image folders for I-JEPA pretraining and embedding: torchvision ``ImageFolder`` plus what it lacks.

* An unreadable or truncated file is skipped with one warning that names it (torchvision raises an
  ``OSError`` without the file name from inside a loader worker); the next readable image stands in,
  so batches keep their size and the run goes on.
* An empty or missing folder raises an error that says which folder and which layout is expected.
* RGBA, palette and grayscale images are converted to RGB; any size is resized/cropped to ``image_size``.

Images come out as float tensors in [0, 1], shape ``(3, image_size, image_size)``; the encoders
normalise them internally.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = ["ImageFiles", "MultiView", "RobustImageFolder", "SeededSamples", "UnreadableImageWarning", "eval_transform",
           "load_rgb", "open_image_folder", "train_transform", "view_transform"]


class UnreadableImageWarning(UserWarning):
    """An image file could not be decoded and was skipped."""


def load_rgb(path: str) -> Image.Image:
    """Decode ``path`` fully (so a truncated file fails here, not later) and convert it to RGB."""
    with open(path, "rb") as f:
        image = Image.open(f)
        image.load()
        if image.mode.startswith("I"):  # 16/32-bit grayscale: convert("RGB") would clip, so rescale to 8 bits
            values = np.asarray(image, dtype=np.float64)
            span = max(float(values.max()), 1.0) if image.mode == "I" else 65535.0
            image = Image.fromarray(np.clip(values / span * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # composite transparent pixels onto white rather than whatever colour they happen to store
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")


ImageLike = Any
"""A PIL image or a uint8 image tensor ``(3, H, W)`` (a frame of a trajectory store)"""


def train_transform(image_size: int, crop_scale: tuple[float, float] = (0.3, 1.0),
                    flip: bool = False) -> Callable[[ImageLike], torch.Tensor]:
    """I-JEPA's augmentation: a random resized crop (scale ``crop_scale``), optional flip → ``(3, S, S)`` in [0, 1]."""
    steps: list[Any] = [v2.ToImage(), v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])


def eval_transform(image_size: int) -> Callable[[ImageLike], torch.Tensor]:
    """Resize the short side to ``image_size``, centre-crop → ``(3, S, S)`` in [0, 1]."""
    return v2.Compose([v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size),
                       v2.ToDtype(torch.float32, scale=True)])


VIEW_JITTER = 0.8
"""LeJEPA's colour-jitter strength for multi-view pretraining (brightness, contrast, saturation; hue a quarter)"""


def view_transform(image_size: int, crop_scale: tuple[float, float], geometric: bool = True,
                   jitter: float = VIEW_JITTER) -> Callable[[ImageLike], torch.Tensor]:
    """One random view of an image for multi-view pretraining (LeJEPA's recipe, torchvision ``transforms.v2``):
    colour jitter of strength ``jitter`` (p 0.8), grayscale (p 0.2), Gaussian blur (p 0.5) and solarisation
    (p 0.2), after a random resized crop of ``crop_scale`` and a horizontal flip when ``geometric`` (else every
    view keeps the whole image, unmoved) → ``(3, S, S)`` in [0, 1]."""
    blur = max(3, image_size // 10 | 1)  # odd kernel, about a tenth of the image
    crop = [v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True), v2.RandomHorizontalFlip()]
    steps = [v2.ToImage(), *(crop if geometric else [v2.Resize((image_size, image_size), antialias=True)]),
             v2.RandomApply([v2.ColorJitter(jitter, jitter, jitter, jitter / 4)], p=0.8), v2.RandomGrayscale(p=0.2),
             v2.RandomApply([v2.GaussianBlur(blur, sigma=(0.1, 2.0))], p=0.5),
             v2.RandomSolarize(threshold=128, p=0.2), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(steps)


class MultiView(Dataset):
    """``dataset[i] = (image, label)`` → ``(views (global_views + local_views, 3, S, S), label)``: global views
    are crops of ``global_scale`` of the image, local ones of ``local_scale`` (both resized to ``S``), see
    :func:`view_transform`."""

    def __init__(self, dataset: Dataset, image_size: int, global_views: int, local_views: int,
                 global_scale: tuple[float, float], local_scale: tuple[float, float], geometric: bool = True,
                 jitter: float = VIEW_JITTER) -> None:
        self.dataset, self.global_views, self.local_views = dataset, global_views, local_views
        self.global_view = view_transform(image_size, global_scale, geometric, jitter)
        self.local_view = view_transform(image_size, local_scale, geometric, jitter)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, label = self.dataset[index]
        views = ([self.global_view(image) for _ in range(self.global_views)]
                 + [self.local_view(image) for _ in range(self.local_views)])
        return torch.stack(views), label


class _SkipUnreadable:
    """Mixin: ``__getitem__`` that skips unreadable files (one warning per file) for datasets with ``samples``."""

    samples: list[tuple[str, int]]
    _warned: set[str]

    def _load(self, index: int) -> Any:  # pragma: no cover - provided by the dataset class
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        for offset in range(len(self.samples)):
            i = (index + offset) % len(self.samples)
            try:
                return self._load(i)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                path = self.samples[i][0]
                if path not in self._warned:
                    self._warned.add(path)
                    warnings.warn(f"skipping unreadable image {path}: {err}", UnreadableImageWarning, stacklevel=2)
        raise RuntimeError(f"none of the {len(self.samples)} images could be read (see the warnings above)")


class RobustImageFolder(_SkipUnreadable, ImageFolder):
    """``torchvision.datasets.ImageFolder`` (``root/<class>/<image>``) that skips unreadable files.

    ``dataset[i]`` → ``(image, class_index)``; a file that fails to decode is reported once with an
    :class:`UnreadableImageWarning` naming it, and the next readable sample is returned instead.
    """

    def __init__(self, root: str | os.PathLike[str], transform: Callable | None = None) -> None:
        super().__init__(str(root), transform=transform, loader=load_rgb)
        self._warned = set()

    def _load(self, index: int) -> tuple[Any, int]:
        return ImageFolder.__getitem__(self, index)


class ImageFiles(_SkipUnreadable, Dataset):
    """Every image file under ``root`` (recursively, sorted), any layout: ``dataset[i]`` → ``(image, i)``.

    ``files`` lists the paths in order. Unreadable files are skipped as in :class:`RobustImageFolder`;
    use :meth:`readable` to know which ones were.
    """

    def __init__(self, root: str | os.PathLike[str], transform: Callable | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
        self.files = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not self.files:
            raise ValueError(f"image folder {str(root)!r} holds no images (looked for {', '.join(IMG_EXTENSIONS)})")
        self.samples = [(f, i) for i, f in enumerate(self.files)]
        self.transform = transform
        self._warned = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> tuple[Any, int]:
        image = load_rgb(self.files[index])
        return (self.transform(image) if self.transform else image), index

    def readable(self, index: int) -> bool:
        """Whether file ``index`` decodes (it is not skipped)."""
        try:
            load_rgb(self.files[index])
            return True
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return False


class SeededSamples(Dataset):
    """Wraps a dataset so that ``dataset[(index, seed)]`` draws its random augmentation from ``seed``.

    With per-sample seeds (see ``ResumableBatchSampler(with_seeds=True)``) augmentations do not depend
    on which loader worker ran them or on where a run was resumed. ``dataset[index]`` also works.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | Sequence[int]) -> Any:
        if isinstance(key, (tuple, list)):
            index, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                return self.dataset[int(index)]
        return self.dataset[key]


def open_image_folder(root_path: str | os.PathLike[str], image_folder: str,
                      transform: Callable | None = None) -> RobustImageFolder:
    """``RobustImageFolder(root_path/image_folder)`` with errors that say what is wrong and what to do."""
    folder = Path(root_path) / image_folder
    layout = (f"expected the torchvision ImageFolder layout {folder}/<class_name>/<image>.png "
              "(a single sub-folder is fine for unlabelled images)")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} (root_path/image_folder) does not exist; {layout}")
    try:
        return RobustImageFolder(folder, transform=transform)
    except FileNotFoundError as err:  # no class folders, or class folders without images
        raise FileNotFoundError(f"image folder {str(folder)!r} has no usable images ({err}); {layout}") from None
