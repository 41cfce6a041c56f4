"""A labelled synthetic image dataset ("shapes") for tests, demos and benchmarks of image pretraining.

The class of an image is its shape or pattern (:data:`SHAPE_CLASSES`); everything else is a nuisance
drawn at random per image: foreground colour (always contrasting in luminance with the background),
background (a flat colour, sometimes a gradient and/or light noise), position, scale (25-70% of the image
side), rotation, and 0-2 small distractor blobs of another colour. A classifier therefore has to read shape,
not colour or position.

Image ``index`` of class ``c`` in split ``s`` is a pure function of ``(seed, s, c, index, image_size)``
(its own ``np.random.SeedSequence``), so generation is deterministic, order-free and parallelisable, the
splits differ, and a subset of the classes gives the same images as the full set. Shapes are drawn with
Pillow's ``ImageDraw`` at 2-4x resolution and box-downsampled (antialiased edges).

Layout (torchvision ``ImageFolder``; note that it numbers classes in sorted-name order)::

    root/train/<class>/<index>.png   root/val/<class>/<index>.png   root/shapes.json

Command line: ``python -m torchwm.data.synthetic --out data/shapes --train-per-class 500``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from torchwm.io import atomic_write_text, umask

SHAPE_CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "hexagon", "crescent",
    "stripes", "checkerboard", "arrow", "heart",
)
SPLITS: tuple[str, ...] = ("train", "val")
MANIFEST = "shapes.json"
FORMAT = "torchwm-shapes"
VERSION = 1  # bump when the images for given parameters change: old datasets then no longer match

MIN_IMAGE_SIZE = 16
SCALE_RANGE = (0.25, 0.7)  # shape diameter (circumscribed circle) as a fraction of the image side
MIN_CONTRAST = 80.0  # luminance gap (0-255) between foreground/blob colours and every background colour
_LUMA = np.array([0.299, 0.587, 0.114])

# A shape is a list of parts in unit coordinates (inside the unit circle), drawn in order on a mask:
# ("polygon", (N, 2) vertices, fill) or ("circle", (2,) centre, radius, fill); fill 0 erases.
Part = tuple


# ------------------------------------------------------------------------------------------ dataset


def make_shapes_dataset(
    root: str | os.PathLike,
    train_per_class: int = 500,
    val_per_class: int = 100,
    image_size: int = 64,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the shapes dataset to ``root`` (``ImageFolder`` layout) or reuse it; returns a summary.

    ``classes``: a subset of :data:`SHAPE_CLASSES` (default: all). The images are written to a hidden
    folder next to ``root`` with ``shapes.json`` last, and the folder is renamed to ``root`` only when
    complete, so an interrupted run never leaves a dataset that looks finished. If ``root`` already holds
    a dataset with the same parameters it is returned as is (``summary["cached"]``); different parameters,
    or a non-empty ``root`` that is not a shapes dataset, raise ``ValueError``.
    """
    params = _check_args(train_per_class, val_per_class, image_size, seed, classes)
    root = Path(root)
    if _existing(root, params):
        return _summary(root, params, cached=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp creates 0700; give the root the usual permissions
        _write_images(tmp, params, progress, desc=f"shapes {root.name}")
        atomic_write_text(tmp / MANIFEST, json.dumps(params, indent=2) + "\n")
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished the same root first: reuse it if it matches
            if _existing(root, params):
                return _summary(root, params, cached=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _summary(root, params, cached=False)


def shape_image(class_name: str, index: int, split: str = "train", seed: int = 0, image_size: int = 64) -> Image.Image:
    """Image ``index`` of ``class_name`` in ``split``: exactly what :func:`make_shapes_dataset` writes."""
    if class_name not in SHAPE_CLASSES:
        raise ValueError(f"class_name must be one of {', '.join(SHAPE_CLASSES)}; got {class_name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    _check_int("index", index, 0)
    _check_int("seed", seed, 0)
    _check_int("image_size", image_size, MIN_IMAGE_SIZE)
    seq = np.random.SeedSequence([seed, SPLITS.index(split), SHAPE_CLASSES.index(class_name), index])
    return Image.fromarray(_render(class_name, image_size, np.random.default_rng(seq)), "RGB")


def _write_images(out: Path, params: dict[str, Any], progress: bool, desc: str) -> None:
    from tqdm.auto import tqdm

    counts = {"train": params["train_per_class"], "val": params["val_per_class"]}
    total = sum(counts.values()) * len(params["classes"])
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for split, n in counts.items():
            width = max(4, len(str(n - 1)))
            for name in params["classes"]:
                folder = out / split / name
                folder.mkdir(parents=True)
                for i in range(n):
                    image = shape_image(name, i, split, params["seed"], params["image_size"])
                    image.save(folder / f"{i:0{width}d}.png", format="PNG", compress_level=1)
                    bar.update(1)


def _existing(root: Path, params: dict[str, Any]) -> bool:
    """True if ``root`` holds a dataset made with ``params``, False if it is absent or an empty folder."""
    if not root.exists():
        return False
    if not root.is_dir():
        raise ValueError(f"{root} exists and is not a folder; pick another root for the shapes dataset")
    manifest = root / MANIFEST
    if not manifest.is_file():
        if any(root.iterdir()):
            raise ValueError(f"{root} is not empty and holds no {MANIFEST} (not a finished shapes dataset); "
                             "pick another root or delete it")
        return False
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {manifest} ({err}); pick another root or delete it") from err
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise ValueError(f"{manifest} is not a shapes-dataset manifest; pick another root or delete it")
    diff = [f"{key}: existing {old.get(key)!r}, requested {value!r}" for key, value in params.items()
            if old.get(key) != value]
    if diff:
        raise ValueError(f"{root} holds a shapes dataset with different parameters ({'; '.join(diff)}); "
                         "pick another root or delete it")
    return True


def _summary(root: Path, params: dict[str, Any], cached: bool) -> dict[str, Any]:
    n = len(params["classes"])
    return {"root": str(root), "classes": list(params["classes"]), "train": n * params["train_per_class"],
            "val": n * params["val_per_class"], "train_per_class": params["train_per_class"],
            "val_per_class": params["val_per_class"], "image_size": params["image_size"], "seed": params["seed"],
            "cached": cached}


def _check_args(train_per_class: int, val_per_class: int, image_size: int, seed: int,
                classes: Sequence[str] | None) -> dict[str, Any]:
    """Validate the arguments; returns the manifest (classes in :data:`SHAPE_CLASSES` order)."""
    _check_int("train_per_class", train_per_class, 1)
    _check_int("val_per_class", val_per_class, 1)
    _check_int("image_size", image_size, MIN_IMAGE_SIZE)
    _check_int("seed", seed, 0)
    if classes is None:
        classes = SHAPE_CLASSES
    if isinstance(classes, str) or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty list of names from {', '.join(SHAPE_CLASSES)}; got {classes!r}")
    unknown = [c for c in classes if c not in SHAPE_CLASSES]
    if unknown:
        raise ValueError(f"classes: unknown class name(s) {unknown}; allowed: {', '.join(SHAPE_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes: duplicate names in {list(classes)}")
    return {"format": FORMAT, "version": VERSION, "train_per_class": int(train_per_class),
            "val_per_class": int(val_per_class), "image_size": int(image_size), "seed": int(seed),
            "classes": [c for c in SHAPE_CLASSES if c in classes]}


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


# ------------------------------------------------------------------------------------------ rendering


def _render(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 image of shape ``name``; all nuisances drawn from ``rng``."""
    image, lum_range = _background(size, rng)
    for _ in range(rng.integers(0, 3)):
        _composite(image, _blob_mask(size, rng), _contrasting_colour(rng, *lum_range))
    colour = _contrasting_colour(rng, *lum_range)
    diameter = rng.uniform(*SCALE_RANGE) * size
    margin = 0.4 * diameter  # at most ~10% of the shape's extent leaves the image on any side
    centre = rng.uniform(margin, size - margin, 2)
    angle = rng.uniform(0.0, 2 * np.pi)
    mask = _draw_mask(_SHAPES[name](rng), size, centre, diameter / 2, angle)
    _composite(image, mask, colour)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _background(size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """Float32 ``(size, size, 3)`` background and the luminance range of its colours (noise aside)."""
    c0 = rng.uniform(0, 255, 3)
    c1 = c0
    if rng.random() < 0.4:  # linear gradient towards a nearby colour, in a random direction
        c1 = np.clip(c0 + rng.uniform(-35, 35, 3), 0, 255)
        phi = rng.uniform(0, 2 * np.pi)
        ramp = np.arange(size, dtype=np.float32)
        t = ramp[None, :] * np.float32(np.cos(phi)) + ramp[:, None] * np.float32(np.sin(phi))
        t = (t - t.min()) / (t.max() - t.min())
        image = c0.astype(np.float32) + t[..., None] * (c1 - c0).astype(np.float32)
    else:
        image = np.empty((size, size, 3), np.float32)
        image[:] = c0
    if rng.random() < 0.4:  # light pixel noise
        sigma = np.float32(rng.uniform(2.0, 6.0))
        image += rng.standard_normal((size, size, 3), dtype=np.float32) * sigma
    lums = (float(c0 @ _LUMA), float(c1 @ _LUMA))
    return image, (min(lums), max(lums))


def _contrasting_colour(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """A random RGB colour whose luminance is at least ``MIN_CONTRAST`` below ``lo`` or above ``hi``.

    A uniform colour that contrasts too little keeps its hue and is darkened or lightened to a random
    luminance on a randomly chosen feasible side.
    """
    colour = rng.uniform(0, 255, 3)
    lum = float(colour @ _LUMA)
    dark_max, light_min = lo - MIN_CONTRAST, hi + MIN_CONTRAST
    if lum <= dark_max or lum >= light_min:
        return colour
    sides = [s for s, ok in (("dark", dark_max >= 0), ("light", light_min <= 255)) if ok]
    if sides[rng.integers(len(sides))] == "dark":
        return colour * (rng.uniform(0, dark_max) / lum)
    target = rng.uniform(light_min, 255)
    return 255 - (255 - colour) * ((255 - target) / (255 - lum))


def _composite(image: np.ndarray, mask: Image.Image, colour: np.ndarray) -> None:
    """Paint ``colour`` over ``image`` (in place) with opacity ``mask``, only inside the mask's bounding box."""
    box = mask.getbbox()
    if box is None:
        return
    x0, y0, x1, y1 = box
    alpha = np.asarray(mask.crop(box), dtype=np.float32)[..., None] / np.float32(255)
    region = image[y0:y1, x0:x1]
    region += (colour.astype(np.float32) - region) * alpha


def _supersampling(size: int) -> int:
    return max(2, min(4, 256 // size))


def _draw_mask(parts: list[Part], size: int, centre: np.ndarray, radius: float, angle: float) -> Image.Image:
    """Rasterise unit-coordinate ``parts`` rotated by ``angle``, scaled by ``radius``, moved to ``centre``
    (drawn supersampled, box-downsampled to an antialiased ``L`` mask)."""
    ss = _supersampling(size)
    canvas = Image.new("L", (size * ss, size * ss), 0)
    draw = ImageDraw.Draw(canvas)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def place(points: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(points) @ rot.T * radius + centre) * ss

    for part in parts:
        if part[0] == "polygon":
            draw.polygon([tuple(p) for p in place(part[1]).tolist()], fill=part[2])
        else:
            (cx, cy), r = place(part[1])[0], part[2] * radius * ss
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=part[3])
    return canvas.reduce(ss)


def _blob_mask(size: int, rng: np.random.Generator) -> Image.Image:
    """A small irregular blob (radius 4-8% of the side) anywhere in the image."""
    n = 9
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.6, 1.0, n)
    points = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
    return _draw_mask([("polygon", points, 255)], size, rng.uniform(0, size, 2), rng.uniform(0.04, 0.08) * size, 0.0)


# ------------------------------------------------------------------------------------------ shapes


def _regular(n: int, radius: float = 1.0, offset: float = np.pi / 2) -> np.ndarray:
    theta = offset + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(theta), np.sin(theta)], 1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _star(rng: np.random.Generator) -> list[Part]:
    points = np.empty((10, 2))
    points[0::2] = _regular(5, 1.0)
    points[1::2] = _regular(5, rng.uniform(0.38, 0.48), np.pi / 2 + np.pi / 5)
    return [("polygon", points, 255)]


def _cross(rng: np.random.Generator) -> list[Part]:
    w, a = rng.uniform(0.22, 0.32), 0.95
    points = np.array([[w, a], [w, w], [a, w], [a, -w], [w, -w], [w, -a],
                       [-w, -a], [-w, -w], [-a, -w], [-a, w], [-w, w], [-w, a]])
    return [("polygon", points, 255)]


def _stripes(rng: np.random.Generator) -> list[Part]:
    h, bars = 0.68, int(rng.integers(3, 5))
    width = 2 * h / (2 * bars - 1)
    return [("polygon", _rect(-h + 2 * k * width, -h, -h + (2 * k + 1) * width, h), 255) for k in range(bars)]


def _checkerboard(rng: np.random.Generator) -> list[Part]:
    h, k = 0.68, int(rng.integers(3, 5))
    cell = 2 * h / k
    return [("polygon", _rect(-h + i * cell, -h + j * cell, -h + (i + 1) * cell, -h + (j + 1) * cell), 255)
            for i in range(k) for j in range(k) if (i + j) % 2 == 0]


def _arrow(rng: np.random.Generator) -> list[Part]:
    w, head, neck = rng.uniform(0.14, 0.22), rng.uniform(0.5, 0.6), 0.15
    points = np.array([[-0.98, -w], [neck, -w], [neck, -head], [1.0, 0.0], [neck, head], [neck, w], [-0.98, w]])
    return [("polygon", points, 255)]


def _heart(rng: np.random.Generator) -> list[Part]:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    points = np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1)
    points -= (points.max(0) + points.min(0)) / 2
    return [("polygon", points / np.linalg.norm(points, axis=1).max(), 255)]


_SHAPES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "circle": lambda rng: [("circle", np.zeros(2), 1.0, 255)],
    "square": lambda rng: [("polygon", _regular(4, 1.0, np.pi / 4), 255)],
    "triangle": lambda rng: [("polygon", _regular(3), 255)],
    "star": _star,
    "cross": _cross,
    "ring": lambda rng: [("circle", np.zeros(2), 1.0, 255), ("circle", np.zeros(2), rng.uniform(0.5, 0.65), 0)],
    "hexagon": lambda rng: [("polygon", _regular(6), 255)],
    "crescent": lambda rng: [("circle", np.zeros(2), 1.0, 255),
                             ("circle", np.array([rng.uniform(0.35, 0.5), 0.0]), rng.uniform(0.8, 0.9), 0)],
    "stripes": _stripes,
    "checkerboard": _checkerboard,
    "arrow": _arrow,
    "heart": _heart,
}
assert tuple(_SHAPES) == SHAPE_CLASSES


# ------------------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None, prog: str = "python -m torchwm.data.synthetic") -> int:
    """``python -m torchwm.data.synthetic --out DIR [...]`` (or ``torchwm shapes``): write (or reuse) a shapes dataset."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="dataset root (gets train/, val/ and shapes.json)")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--val-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                        help=f"subset of: {' '.join(SHAPE_CLASSES)} (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = make_shapes_dataset(args.out, args.train_per_class, args.val_per_class, args.image_size,
                                      args.seed, args.classes, progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    what = "reused existing" if summary["cached"] else "wrote"
    size = summary["image_size"]
    print(f"{what} shapes dataset in {summary['root']}: {len(summary['classes'])} classes, "
          f"{summary['train']} train + {summary['val']} val images ({summary['train_per_class']} + "
          f"{summary['val_per_class']} per class), {size}x{size} RGB PNG, seed {summary['seed']}")
    print(f"classes: {' '.join(summary['classes'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
