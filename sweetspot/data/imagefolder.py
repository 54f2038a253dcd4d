"""Classification splits in the ImageFolder layout: <split_dir>/<class>/<image>.

Used for the synthetic benchmark's train/val and for ImageNet-style class folders. Small
splits are read into memory; splits too large for memory (ImageNet) are read on demand by
LazyImages. The order is sorted and therefore the same on every machine.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .images import DataError, read_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


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


class LazyImages:
    """A read-on-demand stand-in for a (N, size, size, 3) uint8 array of image files.

    Indexing with an int, a slice or an index array decodes just those images (in a thread
    pool: PIL releases the GIL while decoding), so a training loop over ImageNet holds one
    batch in memory instead of the whole split.
    """

    def __init__(self, paths: Sequence[Path], size: int, workers: int | None = None):
        self.paths = list(paths)
        self.size = size
        self.shape = (len(self.paths), size, size, 3)
        self.dtype = np.dtype(np.uint8)
        self._pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> np.ndarray:
        picked = np.arange(len(self.paths))[index]
        if np.ndim(picked) == 0:
            return read_rgb(self.paths[int(picked)], self.size)
        images = list(self._pool.map(lambda i: read_rgb(self.paths[i], self.size), picked.tolist()))
        return np.stack(images) if images else np.empty((0, self.size, self.size, 3), np.uint8)


def lazy_split(
    split_dir: str | os.PathLike, size: int, classes: Sequence[str] | None = None
) -> tuple[LazyImages, np.ndarray, list[str], list[str]]:
    """Like load_split, but the images are read only when indexed."""
    items, labels, classes = list_split(split_dir, classes)
    return LazyImages([Path(split_dir) / item for item in items], size), labels, items, classes
