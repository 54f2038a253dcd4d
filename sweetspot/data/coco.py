"""COCO20k: the 19,817 COCO 2014 train images LOST evaluates object discovery on.

Inputs are the COCO 2014 train instances JSON, the folder of train2014 images and the list
of selected file names, one per line (LOST's datasets/coco_20k_filenames.txt; a leading folder
such as "train2014/" is allowed). Parsed with the standard json module.

Boxes: every annotation of the image except crowd regions (iscrowd = 1), which LOST drops
(valeoai/LOST, datasets.py, extract_gt_COCO); COCO's [x, y, width, height] become
x0, y0, x0 + width, y0 + height. LOST also rounds them to integers; we keep COCO's sub-pixel
values, which changes no IoU threshold decision in practice and keeps the scaling exact.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from .geometry import output_size, resize_rgb, scale_boxes
from .images import DataError, read_rgb, safe_join
from .samples import Sample


def read_names(names_file: str | os.PathLike) -> list[str]:
    """Image file names (base names) listed one per line; blank lines skipped."""
    path = Path(names_file)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: COCO20k names file not found (LOST's datasets/coco_20k_filenames.txt)") from None
    names = [line.strip().replace("\\", "/").rsplit("/", 1)[-1] for line in lines if line.strip()]
    if not names:
        raise DataError(f"{path}: names file lists no images")
    return names


def load_coco20k(
    annotations_json: str | os.PathLike, images_dir: str | os.PathLike, names_file: str | os.PathLike,
    size: int | None, *, max_side: int | None = None,
) -> list[Sample]:
    """The listed images with their non-crowd boxes (label -1: no class space), at size x size
    or at their own size (size=None, longer side capped at max_side), see geometry.output_size.

    extra carries "category_ids" of the kept boxes, "no_box" when none is left, and the COCO "image_id".
    """
    annotations_json = Path(annotations_json)
    try:
        coco = json.loads(annotations_json.read_text())
    except FileNotFoundError:
        raise DataError(f"{annotations_json}: COCO annotations not found (instances_train2014.json)") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{annotations_json}: not valid JSON ({err})") from None
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise DataError(f"{annotations_json}: not a COCO instances file (needs 'images' and 'annotations')")
    try:
        by_name = {entry["file_name"]: entry for entry in coco["images"]}
        per_image: dict[int, list[dict]] = defaultdict(list)
        for ann in coco["annotations"]:
            if len(ann["bbox"]) != 4:
                raise ValueError(f"annotation {ann.get('id')} has bbox {ann['bbox']}")
            if not ann.get("iscrowd", 0):
                per_image[ann["image_id"]].append(ann)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{annotations_json}: malformed entry ({type(err).__name__}: {err}); every image needs "
                        "file_name, id, width, height and every annotation image_id and bbox [x, y, w, h]") from None

    samples = []
    for name in read_names(names_file):
        entry = by_name.get(name)
        if entry is None:
            raise DataError(f"{names_file}: {name!r} is not an image of {annotations_json}; is it the 2014 train json?")
        path = safe_join(images_dir, name)
        image = read_rgb(path)
        height, width = image.shape[:2]
        if (entry.get("width"), entry.get("height")) != (width, height):
            raise DataError(f"{path}: image is {width}x{height} but {annotations_json} says "
                            f"{entry.get('width')}x{entry.get('height')}; the file and the annotations differ")
        anns = per_image.get(entry["id"], [])
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=np.float64).reshape(-1, 4)
        out = output_size(width, height, size, max_side)
        samples.append(Sample(
            item=name,
            image=resize_rgb(image, *out),
            boxes=scale_boxes(boxes, (width, height), out),
            extra={"source": str(path), "image_id": entry["id"], "no_box": len(anns) == 0,
                   "category_ids": [a["category_id"] for a in anns]},
        ))
    return samples
