"""Model inputs of the per-image tasks (interpretability, discovery): batches of one image size.

At the study's fixed size every image already has the model's input size. At native resolution
(a task's `native_resolution: true`) images keep their own sizes, so they are grouped by size
and each is made a multiple of the model's stride or patch size (sweetspot.models.input_multiple):
- "pad" (interpretability) extends the bottom and right edges with the normalisation mean, which
  normalises to 0, and marks the added pixels `ignore`, so no localisation metric counts them;
- "crop" (discovery) drops the bottom and right remainder, as LOST does.
Masks and boxes keep their pixels: the top-left origin never moves (data.geometry.fit_to_multiple).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from ..data.geometry import fit_to_multiple, group_by_size
from ..data.samples import Sample, stack_images
from ..models import input_multiple


@dataclass
class Batch:
    """Samples of one size as the model sees them, and where their own pixels are."""

    samples: list[Sample]
    x: torch.Tensor  # (n, 3, H, W) normalised
    extent: tuple[int, int]  # (rows, columns) of the images' own pixels; the rest is padding

    def valid(self) -> torch.Tensor:
        """Bool (n, H, W): True on the images' own pixels, False on padding."""
        n, _, height, width = self.x.shape
        inside = torch.zeros(height, width, dtype=torch.bool, device=self.x.device)
        inside[: self.extent[0], : self.extent[1]] = True
        return inside.expand(n, height, width)


def batches(model: torch.nn.Module, samples: Sequence[Sample], *, native: bool, mode: str, batch_size: int,
            preprocess: Callable[..., torch.Tensor], device: torch.device | str) -> Iterator[Batch]:
    """The samples as model inputs, `batch_size` at a time: in order at the fixed size, or grouped
    by size and fitted to the model's multiple by `mode` ("pad" or "crop") at native resolution.
    Padding needs a `Preprocess` (its mean is the fill)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if mode not in ("pad", "crop"):
        raise ValueError(f"mode={mode!r}; use 'pad' or 'crop'")
    groups = group_by_size(samples) if native else [list(samples)] if samples else []
    multiple = input_multiple(model) if native else None
    fill = tuple(round(255 * m) for m in preprocess.mean) if native and mode == "pad" else 0
    for group in groups:
        height, width = group[0].image.shape[:2]
        fitted = group if multiple is None else [fit_to_multiple(s, multiple, mode, fill) for s in group]
        for start in range(0, len(fitted), batch_size):
            chunk = fitted[start:start + batch_size]
            x = preprocess(stack_images(chunk), device)
            if mode == "pad":
                # The mean colour in uint8 is off by up to half a grey level: make padding exactly 0.
                x[:, :, height:] = 0
                x[:, :, :, width:] = 0
            yield Batch(chunk, x, (min(height, x.shape[-2]), min(width, x.shape[-1])))
