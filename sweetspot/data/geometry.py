"""The pixel grid of an evaluation sample: the size a loader returns, and fitting it to a model.

A loader returns each image either at a fixed size x size (accuracy and alignment: every image
in one batch) or at its own size with its aspect kept (interpretability and discovery, which
the paper scores at native resolution), optionally shrunk so that its longer side is at most
`max_side`. Label images are resized nearest and boxes scaled by the exact ratio of the two
grids, so masks, the ignore band and boxes stay aligned with the returned pixels.

Native sizes differ from image to image, so a task batches with `group_by_size` and, once it
knows the model's stride or patch size, makes each image a multiple of it with
`fit_to_multiple` (crop, as LOST does, or pad with the padded pixels marked ignored).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from PIL import Image

from .samples import Sample


def output_size(width: int, height: int, size: int | None = None, max_side: int | None = None) -> tuple[int, int]:
    """(width, height) a loader returns for a width x height image.

    size: a fixed size x size square (aspect not kept). size=None: the native size, shrunk
    keeping the aspect so that the longer side is max_side when it is longer (never enlarged).
    """
    if size is not None and max_side is not None:
        raise ValueError(f"size={size} and max_side={max_side}: give size for a fixed square, or "
                         "max_side (with size=None) for the native size capped, not both")
    for name, value in (("size", size), ("max_side", max_side)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name}={value!r}; it must be a positive number of pixels")
    if size is not None:
        return int(size), int(size)
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return width, height
    scale = max_side / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 RGB (H, W, 3) resized to width x height, bilinear (PIL, antialiased when shrinking)."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """A bool mask or a label image (values 0..255) resized to width x height, nearest; dtype kept."""
    if labels.shape == (height, width):
        return labels
    if labels.dtype != bool and labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label values {labels.min()}..{labels.max()} do not fit 0..255; nearest resizing goes through uint8")
    small = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((width, height), Image.NEAREST))
    return small.astype(labels.dtype)


def scale_boxes(boxes: np.ndarray, source: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """Boxes (n, 4) x0, y0, x1, y1 in a source (width, height) image -> the same boxes in its
    resize to target (width, height)."""
    (sw, sh), (tw, th) = source, target
    factors = np.array([tw / sw, th / sh, tw / sw, th / sh])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factors


def fit_to_multiple(sample: Sample, multiple: int, mode: str = "pad", fill: int | Sequence[int] = 0) -> Sample:
    """A copy of `sample` whose height and width are multiples of `multiple` (a stride or patch size).

    mode "pad": extend at the bottom and right; the image with `fill` (a grey level or an RGB
    triple), the mask with False and `ignore` with True, so localisation metrics skip the
    padding. mode "crop": drop the bottom and right remainder, as LOST does; boxes may then
    reach past the image, as in LOST. Boxes are unchanged in both modes: the top-left origin
    stays. A sample already fitting is returned as it is.
    """
    if mode not in ("pad", "crop"):
        raise ValueError(f"mode={mode!r}; use 'pad' or 'crop'")
    if not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"multiple={multiple!r}; it must be a positive number of pixels")
    fill_rgb = np.broadcast_to(np.asarray(fill), (3,))
    if not ((fill_rgb >= 0) & (fill_rgb <= 255)).all():
        raise ValueError(f"fill={fill!r}; give a grey level or an RGB triple in 0..255")
    height, width = sample.image.shape[:2]
    if mode == "pad":
        new_h, new_w = math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple
    else:
        new_h, new_w = height // multiple * multiple, width // multiple * multiple
        if new_h == 0 or new_w == 0:
            raise ValueError(f"{sample.item}: {width}x{height} is smaller than one {multiple}-pixel patch; "
                             "use mode='pad' or a larger max_side")
    if (new_h, new_w) == (height, width):
        return sample
    if mode == "crop":
        cut = (slice(0, new_h), slice(0, new_w))
        return dataclasses.replace(
            sample, image=sample.image[cut], extra=dict(sample.extra),
            mask=None if sample.mask is None else sample.mask[cut],
            ignore=None if sample.ignore is None else sample.ignore[cut])
    image = np.empty((new_h, new_w, 3), dtype=np.uint8)
    image[...] = fill_rgb.astype(np.uint8)
    image[:height, :width] = sample.image
    ignore = np.ones((new_h, new_w), dtype=bool)
    ignore[:height, :width] = False if sample.ignore is None else sample.ignore
    mask = None
    if sample.mask is not None:
        mask = np.zeros((new_h, new_w), dtype=bool)
        mask[:height, :width] = sample.mask
    return dataclasses.replace(sample, image=image, mask=mask, ignore=ignore, extra=dict(sample.extra))


def group_by_size(samples: Sequence[Sample]) -> list[list[Sample]]:
    """The samples split into groups of one image size (H, W), so that each group stacks into batches.

    Groups come in the order of their first sample; samples keep their order within a group.
    """
    groups: dict[tuple[int, int], list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.image.shape[:2], []).append(sample)
    return list(groups.values())
