"""Clips from a folder of videos: folders of frame images, animated GIF / WebP files (Pillow) and video files
(``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``; decoded with PyAV: ``pip install av``).

``VideoFolder(root, frames, stride, image_size)[i]`` → clip uint8 ``(frames, 3, S, S)``: every clip of ``frames``
frames ``stride`` apart inside every video, each frame resized (short side) and centre-cropped to ``S``. A video
that cannot be read is skipped with one warning naming it; an empty folder raises an error saying what it
looked for.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from torchwm.data.images import UnreadableImageWarning, load_rgb
from torchwm.data.windows import SpanIndex

ANIMATION_SUFFIXES = (".gif", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS and path.suffix.lower() not in ANIMATION_SUFFIXES


def find_videos(root: str | os.PathLike[str]) -> list[Path]:
    """Every video under ``root``, sorted: folders that hold frame images, and animation or video files."""
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"video folder {str(root)!r} {what} (root_path/image_folder must be a folder of "
                                "videos or of folders of frames)")
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_dir() and any(_is_image(p) for p in path.iterdir()):
            found.append(path)
        elif path.is_file() and path.suffix.lower() in ANIMATION_SUFFIXES + VIDEO_SUFFIXES:
            found.append(path)
    if root not in found and any(_is_image(p) for p in root.iterdir()):
        found.insert(0, root)
    if not found:
        raise ValueError(f"video folder {str(root)!r} holds no videos: looked for folders of frame images and for "
                         f"{', '.join(ANIMATION_SUFFIXES + VIDEO_SUFFIXES)} files")
    return found


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("reading video files needs PyAV: pip install av (folders of frames and GIF files need "
                          "nothing more)") from None
    return av


def count_frames(path: str | os.PathLike[str]) -> int:
    """Frames in one video, without decoding its pixels where the format says (folders, animations)."""
    path = Path(path)
    if path.is_dir():
        return sum(1 for p in path.iterdir() if _is_image(p))
    if path.suffix.lower() in ANIMATION_SUFFIXES:
        with Image.open(path) as animation:
            return int(getattr(animation, "n_frames", 1))
    with _av().open(str(path)) as container:
        stream = container.streams.video[0]
        return int(stream.frames) or sum(1 for _ in container.decode(stream))


def read_video(path: str | os.PathLike[str]) -> list[Image.Image]:
    """The frames of one video (a folder of frames in name order, an animation, or a video file) as RGB images."""
    path = Path(path)
    if path.is_dir():
        return [load_rgb(str(p)) for p in sorted(path.iterdir()) if _is_image(p)]
    if path.suffix.lower() in ANIMATION_SUFFIXES:
        with Image.open(path) as animation:
            return [frame.convert("RGB") for frame in ImageSequence.Iterator(animation)]
    with _av().open(str(path)) as container:
        return [frame.to_image().convert("RGB") for frame in container.decode(video=0)]


class VideoFolder(Dataset):
    """Clips of every video under ``root`` (see the module docs): ``dataset[i]`` → uint8 ``(frames, 3, S, S)``."""

    def __init__(self, root: str | os.PathLike[str], frames: int, stride: int = 1, image_size: int = 64,
                 cache: int = 8) -> None:
        if frames < 1 or stride < 1 or image_size < 1:
            raise ValueError(f"frames={frames!r}, stride={stride!r} and image_size={image_size!r} must be >= 1")
        self.frames, self.stride, self.image_size = int(frames), int(stride), int(image_size)
        self.resize = v2.Compose([v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])
        videos, lengths = [], []
        for path in find_videos(root):
            try:
                count = count_frames(path)
            except (OSError, ValueError, SyntaxError) as err:
                warnings.warn(f"skipping unreadable video {path}: {err}", UnreadableImageWarning, stacklevel=2)
                continue
            videos.append(path)
            lengths.append(count - 1)  # steps between its frames
        span = (self.frames - 1) * self.stride
        self._spans = SpanIndex(lengths, span)
        if len(self._spans) == 0:
            raise ValueError(f"no video under {str(root)!r} is long enough for clips of {frames} frames {stride} apart "
                             f"(they need {span + 1} frames; the longest has {max(lengths, default=-1) + 1})")
        self.videos = [videos[k] for k in self._spans.sequences]
        self._load = lru_cache(maxsize=cache)(self._decode)

    def __len__(self) -> int:
        return len(self._spans)

    def _decode(self, k: int) -> torch.Tensor:
        """All frames of video ``k``, resized: uint8 ``(N, 3, S, S)``."""
        return torch.stack([self.resize(frame) for frame in read_video(self.videos[k])]).as_subclass(torch.Tensor)

    def __getitem__(self, item: int) -> torch.Tensor:
        k, start = self._spans.locate(int(item))
        steps = np.arange(self.frames) * self.stride + start
        return self._load(k)[torch.from_numpy(steps)]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_load"]  # decoded videos are not sent to loader workers
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load = lru_cache(maxsize=8)(self._decode)
