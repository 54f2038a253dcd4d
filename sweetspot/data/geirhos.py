"""Geirhos-16 stimuli: cue-conflict, edge and silhouette images of the 16 entry-level categories.

Layout (see shared/data/geirhos16/README.md): <root>/categories.json and
<root>/stimuli/<kind>/<category>/<file>.png. A cue-conflict file <shape><i>-<texture><j>.png
takes its object shape from content image <shape><i>, whose filled silhouette
stimuli/silhouette/<shape>/<shape><i>.png (dark pixels, < 128) is the object's exact mask.

Sample.item is the path relative to <root>/stimuli ("cue-conflict/bird/bird3-bird2.png"),
the same string the human trials resolve to, so model and human trials pair up by item.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .geometry import output_size, resize_labels, resize_rgb
from .images import DataError, boxes_from_mask, check_same_size, read_mask, read_rgb, safe_join
from .samples import Sample

CATEGORIES = (
    "airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat",
    "chair", "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck",
)
KINDS = ("cue-conflict", "edge", "silhouette")
_CUE_CONFLICT_NAME = re.compile(r"^(?P<shape>[a-z]+)(?P<i>\d+)-(?P<texture>[a-z]+)(?P<j>\d+)\.png$")


def load_categories(root: str | os.PathLike) -> dict[str, list[int]]:
    """categories.json: each of the 16 categories -> its ImageNet-1k class indices."""
    path = Path(root) / "categories.json"
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is {root} the geirhos16 folder (with stimuli/ and categories.json)?") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if sorted(table) != list(CATEGORIES):
        raise DataError(f"{path}: categories {sorted(table)} differ from the 16 expected {list(CATEGORIES)}")
    bad = [name for name, idx in table.items() if not idx or not all(isinstance(i, int) and 0 <= i < 1000 for i in idx)]
    if bad:
        raise DataError(f"{path}: categories {bad} need a non-empty list of ImageNet-1k indices (0..999)")
    return {name: list(table[name]) for name in CATEGORIES}


def list_stimuli(root: str | os.PathLike, kind: str) -> list[str]:
    """Sorted items "<kind>/<category>/<file>.png" of one stimulus kind."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; choose one of {KINDS}")
    folder = Path(root) / "stimuli" / kind
    if not folder.is_dir():
        raise DataError(f"{folder}: stimulus folder not found; is {root} the geirhos16 folder?")
    items = []
    for category_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if category_dir.name not in CATEGORIES:
            raise DataError(f"{category_dir}: {category_dir.name!r} is not one of the 16 categories")
        items += [f"{kind}/{category_dir.name}/{f.name}" for f in sorted(category_dir.iterdir()) if f.suffix.lower() == ".png"]
    if not items:
        raise DataError(f"{folder}: no .png stimuli")
    return items


def load_stimuli(root: str | os.PathLike, kind: str, size: int | None, *, max_side: int | None = None) -> list[Sample]:
    """Every stimulus of `kind`, labelled by its shape category, at size x size or at its own
    size (size=None, longer side capped at max_side), see geometry.output_size.

    cue-conflict: texture_label from the file name, mask and box from the content image's
    silhouette; silhouette: mask = its own dark pixels; edge: no mask.
    """
    stimuli = Path(root) / "stimuli"
    masks: dict[str, np.ndarray] = {}  # one silhouette serves the 16 cue-conflict images of its content
    samples = []
    for item in list_stimuli(root, kind):
        category, name = item.split("/")[1:]
        path = safe_join(stimuli, item)
        image = read_rgb(path)
        out = output_size(image.shape[1], image.shape[0], size, max_side)
        sample = Sample(item=item, image=resize_rgb(image, *out), label=CATEGORIES.index(category))
        if kind == "cue-conflict":
            match = _CUE_CONFLICT_NAME.match(name)
            if match is None or match["shape"] != category or match["texture"] not in CATEGORIES:
                raise DataError(f"{path}: expected a name <shape><i>-<texture><j>.png with shape "
                                f"{category!r} and texture one of the 16 categories")
            sample.texture_label = CATEGORIES.index(match["texture"])
            silhouette = f"silhouette/{category}/{category}{match['i']}.png"
            if silhouette not in masks:
                masks[silhouette] = _silhouette_mask(safe_join(stimuli, silhouette), image, path, out)
                masks[silhouette].setflags(write=False)  # shared by several samples
            sample.mask = masks[silhouette]
            sample.extra["mask_source"] = silhouette
        elif kind == "silhouette":
            sample.mask = _silhouette_mask(path, image, path, out)
        if sample.mask is not None:
            if not sample.mask.any():
                raise DataError(f"{stimuli / sample.extra.get('mask_source', item)}: silhouette has no dark (< 128) pixels")
            sample.boxes = boxes_from_mask(sample.mask)
        samples.append(sample)
    return samples


def _silhouette_mask(mask_path: Path, image: np.ndarray, image_path: Path, out: tuple[int, int]) -> np.ndarray:
    """The dark pixels of a silhouette on its image's native grid, then resized like the image."""
    mask = read_mask(mask_path, dark_is_object=True)
    check_same_size(mask, mask_path, image, image_path)
    return resize_labels(mask, *out)
