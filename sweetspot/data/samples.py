"""The one in-memory shape every evaluation task consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """One evaluation image with whatever ground truth its dataset has.

    `image` is uint8 RGB of shape (H, W, 3), at a fixed model input size or at the image's
    own size (see sweetspot.data.geometry); `mask` is a bool (H, W) object mask on the same
    pixel grid; `boxes` is float (n, 4) in pixel x0, y0, x1, y1 (x1, y1 exclusive) of this
    image. `label` is the class index in the model's label space (-1 when unknown);
    `texture_label` is the cue-conflict texture class (-1 when none).
    `ignore` marks pixels (e.g. VOC's 255 boundary) that no localisation metric counts.
    """

    item: str
    image: np.ndarray
    label: int = -1
    mask: np.ndarray | None = None
    boxes: np.ndarray | None = None
    texture_label: int = -1
    ignore: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def stack_images(samples: list[Sample]) -> np.ndarray:
    """(N, H, W, 3) uint8 array of the samples' images; they must share one size."""
    shapes = {s.image.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"samples have different image shapes {sorted(shapes)}; load them at one size, "
                         "or batch them by size (sweetspot.data.geometry.group_by_size)")
    return np.stack([s.image for s in samples])
