"""Reading images and masks from disk with clear errors, never a silent drop."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from .geometry import output_size

# The config's max_image_pixels reaches jobs through their environment (workflow/rules/common.smk).
MAX_PIXELS_ENV = "SWEETSPOT_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own default
# Every image larger than the limit is refused below with a DataError; PIL's warning between
# one and two times its limit would only repeat that.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and the fix."""


@contextlib.contextmanager
def _opened(path: Path, what: str) -> Iterator[Image.Image]:
    """Image.open that refuses, before decoding, an image over the max_image_pixels limit."""
    limit = int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))
    Image.MAX_IMAGE_PIXELS = limit  # PIL's own check at open then refuses twice the limit and more
    fix = (f"more than max_image_pixels ({limit}) pixels; if the file is genuine, raise max_image_pixels "
           "in the config, else replace or remove the file")
    try:
        with Image.open(path) as img:
            if img.width * img.height > limit:
                raise DataError(f"{path}: {what} is {img.width}x{img.height}, {fix}")
            yield img
    except Image.DecompressionBombError as err:
        raise DataError(f"{path}: {what} has {fix} ({err})") from None


def open_rgb(path: str | Path) -> Image.Image:
    """Decode any common image into a loaded RGB PIL image.

    Grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are converted;
    a missing, truncated, unreadable or oversized (max_image_pixels) file raises DataError naming it.
    """
    path = Path(path)
    try:
        with _opened(path, "image") as img:
            img.load()
            return _to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: cannot read image ({err}); replace or remove the file") from None


def read_rgb(path: str | Path, size: int | None = None, *, max_side: int | None = None) -> np.ndarray:
    """Read an image (see open_rgb) as uint8 RGB (H, W, 3) at the size geometry.output_size gives:
    size x size, or native (size=None), shrunk keeping the aspect to a longer side of max_side."""
    img = open_rgb(path)
    width, height = output_size(*img.size, size, max_side)
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def read_mask(path: str | Path, *, dark_is_object: bool = False) -> np.ndarray:
    """Read a single-channel label image as an integer array at its own size.

    Never resized here: a loader first checks the mask against its image (check_same_size),
    then resizes both together (geometry), so a mask of another size cannot slip through.
    With dark_is_object (silhouettes), returns a bool mask of pixels with value < 128.
    """
    path = Path(path)
    try:
        with _opened(path, "mask") as img:
            img.load()
            if dark_is_object:
                img = img.convert("L")
            elif img.mode not in ("L", "P", "1", "I"):
                raise DataError(f"{path}: mask has mode {img.mode}; expected a single-channel label image: "
                                "save the label values as a palette (P) or grayscale (L) PNG")
            arr = np.asarray(img)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found; every image with ground truth needs its mask "
                        "(restore it, or drop the image from the dataset's list)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: cannot read mask ({err}); replace or remove the file") from None
    if dark_is_object:
        return arr < 128
    return arr.astype(np.int64)


def check_same_size(mask: np.ndarray, mask_path: str | Path, image: np.ndarray, image_path: str | Path) -> None:
    """Refuse a mask whose grid differs from its image's: it belongs to another image or was resized."""
    if mask.shape != image.shape[:2]:
        raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
                        f"{image.shape[1]}x{image.shape[0]}; the mask belongs to another image or was resized")


def boxes_from_mask(mask: np.ndarray) -> np.ndarray:
    """The tight box (1, 4) x0, y0, x1, y1 (exclusive) of a bool mask; (0, 4) when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros((0, 4), dtype=np.float64)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float64)


def safe_join(root: str | Path, relative: str) -> Path:
    """root / relative, refusing any path that would leave root (e.g. '../../x.png')."""
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise DataError(f"{relative!r} leaves the dataset root {root}; stimulus names must be relative paths inside it")
    return candidate
