"""PASCAL VOC: segmentation masks (interpretability) and detection boxes (object discovery).

Reads the standard layout under a VOC root such as VOCdevkit/VOC2012:
ImageSets/{Segmentation,Main}/<split>.txt, JPEGImages/<id>.jpg (or .png), Annotations/<id>.xml,
SegmentationObject/<id>.png and SegmentationClass/<id>.png. The synthetic benchmark writes
the same layout, so both go through this code.

Conventions: VOC boxes are 1-based and inclusive; a Sample's boxes are 0-based with exclusive
ends, so (xmin, ymin, xmax, ymax) becomes (xmin - 1, ymin - 1, xmax, ymax), the conversion LOST
uses (valeoai/LOST, datasets.py). LOST scores CorLoc against every object in the XML, `difficult`
and `truncated` ones included, unless run with --no_hard; `load_detection` does the same by
default and records each object's difficult flag in extra["difficult"].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
from xml.etree import ElementTree

import numpy as np

from .geometry import output_size, resize_labels, resize_rgb, scale_boxes
from .images import DataError, boxes_from_mask, check_same_size, read_mask, read_rgb, safe_join
from .samples import Sample

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOID = 255  # VOC's object boundary / "don't care" label
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")


def palette() -> list[int]:
    """VOC's label colour map, 768 values for a 'P' PNG (each label's bits spread over the high bits of R, G, B)."""
    colours = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours += [r, g, b]
    return colours


def read_split(voc_root: str | os.PathLike, task: str, split: str) -> list[str]:
    """Image ids listed in ImageSets/<task>/<split>.txt (task: Segmentation or Main)."""
    path = Path(voc_root) / "ImageSets" / task / f"{split}.txt"
    try:
        ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found; is {voc_root} a VOC root such as VOCdevkit/VOC2012?") from None
    if not ids:
        raise DataError(f"{path}: split file lists no images")
    return ids


def image_path(voc_root: str | os.PathLike, image_id: str) -> Path:
    """JPEGImages/<id> with the first suffix that exists (.jpg for VOC, .png for synthetic)."""
    folder = Path(voc_root) / "JPEGImages"
    for suffix in IMAGE_SUFFIXES:
        candidate = safe_join(folder, image_id + suffix)
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / (image_id + '.jpg')}: image not found (also tried {', '.join(IMAGE_SUFFIXES[1:])})")


def read_annotation(path: str | os.PathLike) -> list[dict]:
    """Objects of a VOC XML file: name, difficult, truncated and the box in 0-based exclusive pixels."""
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: annotation not found") from None
    except ElementTree.ParseError as err:
        raise DataError(f"{path}: not valid VOC XML ({err})") from None
    objects = []
    for obj in root.iter("object"):
        try:
            bndbox = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(bndbox.find(key).text) for key in ("xmin", "ymin", "xmax", "ymax"))
            name = obj.find("name").text.strip()
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"{path}: an <object> lacks a name or a numeric bndbox xmin/ymin/xmax/ymax") from None
        objects.append({
            "name": name,
            "difficult": (obj.findtext("difficult") or "0").strip() == "1",
            "truncated": (obj.findtext("truncated") or "0").strip() == "1",
            "box": (xmin - 1.0, ymin - 1.0, xmax, ymax),
        })
    return objects


def _label_index(classes: Sequence[str], name: str, source: Path) -> int:
    try:
        return list(classes).index(name)
    except ValueError:
        raise DataError(f"{source}: object class {name!r} is not one of the given classes {list(classes)}") from None


def _boxes_of(objects: list[dict]) -> np.ndarray:
    return np.array([o["box"] for o in objects], dtype=np.float64).reshape(-1, 4)


def load_segmentation(
    voc_root: str | os.PathLike, split: str, size: int | None, classes: Sequence[str] = VOC_CLASSES,
    mode: str = "object", *, max_side: int | None = None,
) -> list[Sample]:
    """Images of ImageSets/Segmentation/<split>.txt with object masks, at size x size, or at
    their own size (size=None, longer side capped at max_side), see geometry.output_size.

    mask: every object pixel (labels 1..254) of SegmentationObject (mode "object") or
    SegmentationClass (mode "class"); ignore: VOC's 255 band. label: class of the largest
    object (box area) in the XML when there is one, else the most frequent class of
    SegmentationClass; `classes[k]` names label k and SegmentationClass value k + 1.
    boxes: every XML object when the XML exists, else one tight box per mask label.
    """
    if mode not in ("object", "class"):
        raise ValueError(f"mode={mode!r}; use 'object' (SegmentationObject) or 'class' (SegmentationClass)")
    voc_root = Path(voc_root)
    folder = "SegmentationObject" if mode == "object" else "SegmentationClass"
    samples = []
    for image_id in read_split(voc_root, "Segmentation", split):
        path = image_path(voc_root, image_id)
        image = read_rgb(path)
        height, width = image.shape[:2]
        mask_path = safe_join(voc_root / folder, image_id + ".png")
        labels = read_mask(mask_path)
        check_same_size(labels, mask_path, image, path)
        if (labels == VOID).any() and not ((labels > 0) & (labels < VOID)).any():
            # A 0/255 binary mask would silently become "all void, no object": the image left unscored.
            raise DataError(f"{mask_path}: only the values 0 and {VOID}, a binary mask? VOC labels objects "
                            f"1..{VOID - 1} and {VOID} is the void band; save the object pixels as 1")
        xml_path = safe_join(voc_root / "Annotations", image_id + ".xml")
        objects = read_annotation(xml_path) if xml_path.is_file() else []
        if objects:
            largest = max(objects, key=lambda o: (o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]))
            label = _label_index(classes, largest["name"], xml_path)
            boxes = _boxes_of(objects)
        else:
            label = _majority_class(voc_root, image_id, labels if mode == "class" else None, (height, width), len(classes))
            boxes = np.concatenate([boxes_from_mask(labels == v) for v in np.unique(labels) if 0 < v < VOID] or [np.zeros((0, 4))])
        out = output_size(width, height, size, max_side)
        small = resize_labels(labels, *out)
        samples.append(Sample(
            item=image_id,
            image=resize_rgb(image, *out),
            label=label,
            mask=(small > 0) & (small < VOID),
            ignore=small == VOID,
            boxes=scale_boxes(boxes, (width, height), out),
            extra={"source": str(path), "no_box": len(boxes) == 0,
                   "difficult": [o["difficult"] for o in objects]},
        ))
    return samples


def _majority_class(voc_root: Path, image_id: str, class_labels: np.ndarray | None, shape: tuple[int, int], n_classes: int) -> int:
    """Label (value - 1) of the most frequent object class in SegmentationClass; -1 without objects."""
    if class_labels is None:
        path = safe_join(voc_root / "SegmentationClass", image_id + ".png")
        class_labels = read_mask(path)
        if class_labels.shape != shape:
            raise DataError(f"{path}: mask is {class_labels.shape[1]}x{class_labels.shape[0]} but its image is "
                            f"{shape[1]}x{shape[0]}; the mask belongs to another image or was resized")
    values = class_labels[(class_labels > 0) & (class_labels < VOID)]
    if values.size == 0:
        return -1
    value = int(np.bincount(values).argmax())
    if value > n_classes:
        raise DataError(f"{voc_root}/SegmentationClass/{image_id}.png: class value {value} exceeds the {n_classes} given classes")
    return value - 1


def load_detection(
    voc_root: str | os.PathLike, split: str, size: int | None, classes: Sequence[str] = VOC_CLASSES,
    *, max_side: int | None = None,
) -> list[Sample]:
    """Images of ImageSets/Main/<split>.txt with every XML object's box, at size x size or at
    their own size (size=None, longer side capped at max_side), see geometry.output_size.

    difficult and truncated objects are kept (LOST's default); extra["difficult"] flags them.
    An image without objects keeps a (0, 4) boxes array and extra["no_box"] = True.
    label: class of the largest object, -1 when there is none.
    """
    voc_root = Path(voc_root)
    samples = []
    for image_id in read_split(voc_root, "Main", split):
        path = image_path(voc_root, image_id)
        image = read_rgb(path)
        height, width = image.shape[:2]
        xml_path = safe_join(voc_root / "Annotations", image_id + ".xml")
        objects = read_annotation(xml_path)
        names = [o["name"] for o in objects]
        labels = [_label_index(classes, n, xml_path) for n in names]
        boxes = _boxes_of(objects)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        out = output_size(width, height, size, max_side)
        samples.append(Sample(
            item=image_id,
            image=resize_rgb(image, *out),
            label=labels[int(np.argmax(areas))] if labels else -1,
            boxes=scale_boxes(boxes, (width, height), out),
            extra={"source": str(path), "no_box": len(objects) == 0, "names": names,
                   "difficult": [o["difficult"] for o in objects]},
        ))
    return samples
