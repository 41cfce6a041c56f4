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
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = ["ImageFiles", "RobustImageFolder", "SeededSamples", "UnreadableImageWarning", "eval_transform",
           "load_rgb", "open_image_folder", "train_transform"]


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


def train_transform(image_size: int, crop_scale: tuple[float, float] = (0.3, 1.0),
                    flip: bool = False) -> Callable[[Image.Image], torch.Tensor]:
    """I-JEPA's augmentation: a random resized crop (scale ``crop_scale``), optional flip → ``(3, S, S)``."""
    steps: list[Any] = [transforms.RandomResizedCrop(image_size, scale=crop_scale, antialias=True)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps.append(transforms.ToTensor())
    return transforms.Compose(steps)


def eval_transform(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the short side to ``image_size``, centre-crop → ``(3, S, S)`` in [0, 1]."""
    return transforms.Compose([transforms.Resize(image_size, antialias=True), transforms.CenterCrop(image_size),
                               transforms.ToTensor()])


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
