"""Classification splits in the ImageFolder layout: <split_dir>/<class>/<image>.

Used for the synthetic benchmark's train/val and for ImageNet-style class folders. Small
splits are read into memory; splits too large for memory (ImageNet) are read on demand by
LazyImages. The order is sorted and therefore the same on every machine.

ImageNet preprocessing is the standard torchvision recipe, done with PIL exactly as
torchvision does it on PIL images: evaluation resizes the shorter side to `resize_size`
(bilinear, aspect kept) and takes the central `crop_size` square (Resize(256) +
CenterCrop(224)); training takes a random-resized crop (area fraction in (0.08, 1), aspect
ratio in (3/4, 4/3), the Inception crop of Szegedy et al., CVPR 2015) resized to the crop
size, flipped left-right with probability 1/2. Training draws come from a numpy Generator
passed per batch, so a training run is reproducible from its seed.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .images import DataError, open_rgb, read_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CROP_FRACTION = 0.875  # the evaluation crop takes 224 of 256 pixels (timm's crop_pct)
CROP_SCALE = (0.08, 1.0)  # random-resized crop: fraction of the image area
CROP_RATIO = (3 / 4, 4 / 3)  # random-resized crop: width / height


def list_split(split_dir: str | os.PathLike, classes: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """(items relative to split_dir, int64 labels, class names) without reading any pixels."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split folder not found; expected <split>/<class>/<image> folders")
    folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = folders
    else:
        classes = list(classes)
        extra = sorted(set(folders) - set(classes))
        missing = sorted(set(classes) - set(folders))
        if extra or missing:
            raise DataError(
                f"{split_dir}: class folders do not match the expected classes "
                f"(extra folders: {extra or 'none'}; missing folders: {missing or 'none'})"
            )
    if not classes:
        raise DataError(f"{split_dir}: no class folders; expected <split>/<class>/<image> folders")
    items: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            p.name for p in (split_dir / name).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(f"{split_dir / name}: class folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        items += [f"{name}/{f}" for f in files]
        labels += [label] * len(files)
    return items, np.asarray(labels, dtype=np.int64), list(classes)


def load_split(
    split_dir: str | os.PathLike, size: int, classes: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Read a whole split resized to size x size: (uint8 (N, H, W, 3), int64 labels, items, classes).

    `classes` defaults to the sorted folder names; when given, the folders must match it
    exactly and labels follow its order.
    """
    items, labels, classes = list_split(split_dir, classes)
    images = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for i, item in enumerate(items):
        images[i] = read_rgb(Path(split_dir) / item, size)
    return images, labels, items, classes


def default_resize_size(crop_size: int) -> int:
    """The shorter side before the evaluation crop: 256 for a 224 crop (crop_size / 0.875, floored as timm does)."""
    return math.floor(crop_size / CROP_FRACTION)


def center_crop(image: Image.Image, resize_size: int, crop_size: int) -> np.ndarray:
    """uint8 (crop_size, crop_size, 3): the shorter side resized to resize_size (bilinear), then
    the central square, as torchvision's Resize(resize_size) + CenterCrop(crop_size)."""
    if crop_size > resize_size:
        raise ValueError(f"crop_size={crop_size} exceeds resize_size={resize_size}; the crop must fit in the resized image")
    width, height = image.size
    if width <= height:
        size = (resize_size, int(resize_size * height / width))
    else:
        size = (int(resize_size * width / height), resize_size)
    if size != image.size:
        image = image.resize(size, Image.BILINEAR)
    top = int(round((size[1] - crop_size) / 2.0))
    left = int(round((size[0] - crop_size) / 2.0))
    return np.asarray(image.crop((left, top, left + crop_size, top + crop_size)), dtype=np.uint8)


def random_crop_box(width: int, height: int, rng: np.random.Generator,
                    scale: tuple[float, float] = CROP_SCALE, ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of a random-resized crop of a width x height image.

    Up to 10 draws of an area fraction (uniform in `scale`) and an aspect ratio (log-uniform
    in `ratio`) until the box fits; else the largest central box whose aspect lies in `ratio`.
    The same rule as torchvision's RandomResizedCrop.get_params, drawn from `rng`.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    aspect = width / height
    if aspect < min(ratio):
        crop_w, crop_h = width, int(round(width / min(ratio)))
    elif aspect > max(ratio):
        crop_w, crop_h = int(round(height * max(ratio))), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def random_resized_crop(image: Image.Image, crop_size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = CROP_SCALE, ratio: tuple[float, float] = CROP_RATIO) -> np.ndarray:
    """uint8 (crop_size, crop_size, 3): a random_crop_box resized bilinear, flipped left-right with
    probability 1/2 (torchvision's RandomResizedCrop + RandomHorizontalFlip, drawn from `rng`)."""
    top, left, crop_h, crop_w = random_crop_box(*image.size, rng, scale, ratio)
    crop = image.crop((left, top, left + crop_w, top + crop_h)).resize((crop_size, crop_size), Image.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.uint8)


class LazyImages:
    """A read-on-demand stand-in for a (N, size, size, 3) uint8 array of image files.

    Indexing with an int, a slice or an index array decodes just those images (in a thread
    pool: PIL releases the GIL while decoding), so a training loop over ImageNet holds one
    batch in memory instead of the whole split. Indexing gives the evaluation view: each image
    resized to size x size, or with `resize_size` the shorter side resized to it and the
    central size x size crop (center_crop). `random_crops` gives the training view.
    """

    def __init__(self, paths: Sequence[Path], size: int, *, resize_size: int | None = None, workers: int | None = None):
        if resize_size is not None and resize_size < size:
            raise ValueError(f"resize_size={resize_size} is smaller than the crop size {size}")
        self.paths = list(paths)
        self.size = size
        self.resize_size = resize_size
        self.shape = (len(self.paths), size, size, 3)
        self.dtype = np.dtype(np.uint8)
        self._pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> np.ndarray:
        picked = np.arange(len(self.paths))[index]
        if np.ndim(picked) == 0:
            return self._evaluation_view(int(picked))
        return self._stack(list(self._pool.map(self._evaluation_view, picked.tolist())))

    def random_crops(self, index, rng: np.random.Generator, scale: tuple[float, float] = CROP_SCALE,
                     ratio: tuple[float, float] = CROP_RATIO) -> np.ndarray:
        """uint8 (n, size, size, 3): a random_resized_crop of each indexed image.

        Each image draws from its own Generator seeded from `rng` in index order, so the
        batch is the same whatever order the thread pool decodes it in.
        """
        picked = np.atleast_1d(np.arange(len(self.paths))[index])
        seeds = rng.integers(0, 2**63, size=len(picked)).tolist()

        def crop(i: int, seed: int) -> np.ndarray:
            return random_resized_crop(open_rgb(self.paths[i]), self.size, np.random.default_rng(seed), scale, ratio)

        return self._stack(list(self._pool.map(crop, picked.tolist(), seeds)))

    def _evaluation_view(self, i: int) -> np.ndarray:
        if self.resize_size is None:
            return read_rgb(self.paths[i], self.size)
        return center_crop(open_rgb(self.paths[i]), self.resize_size, self.size)

    def _stack(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack(images) if images else np.empty((0, self.size, self.size, 3), np.uint8)


def lazy_split(
    split_dir: str | os.PathLike, size: int, classes: Sequence[str] | None = None, *, resize_size: int | None = None
) -> tuple[LazyImages, np.ndarray, list[str], list[str]]:
    """Like load_split, but the images are read only when indexed; with resize_size, as the
    ImageNet evaluation recipe (shorter side to resize_size, central size x size crop)."""
    items, labels, classes = list_split(split_dir, classes)
    return LazyImages([Path(split_dir) / item for item in items], size, resize_size=resize_size), labels, items, classes
