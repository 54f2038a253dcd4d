"""Tiny datasets in exactly the real on-disk formats the paper preset reads, for end-to-end runs.

`write_paper_datasets(root)` writes in seconds a few images of each dataset, every image with a
drawn object inside its mask or box, and returns the `datasets:` section of a config:

- ImageNet class folders `train/<wnid>/<wnid>_<n>.JPEG` and `val/<wnid>/ILSVRC2012_val_<n>.JPEG`
  at varied non-square sizes, with one grayscale and one CMYK JPEG, as the real set has;
- VOC2007 (`JPEGImages/*.jpg`, `Annotations/*.xml` with difficult and truncated objects,
  `ImageSets/Main/trainval.txt`) and VOC2012 (the same, plus `ImageSets/Segmentation/val.txt`
  and palette ('P') PNGs in `SegmentationClass/` and `SegmentationObject/` with the 255 void
  band straddling each object's edge);
- COCO20k: `annotations/instances_train2014.json` with crowd regions, `train2014/*.jpg` (one
  grayscale) and LOST's `coco_20k_filenames.txt` ("train2014/<file>" lines);
- model-vs-human's `datasets/` for all 17 datasets (`<name>/dnn/session-1/<imagename>` or
  `<name>/<category>/<image>`), named after stimuli of the real human CSVs when a human trials
  folder is given, so that model trials join the real human trials;
- a geirhos16 folder: `categories.json`, `human/<experiment>/*.csv` (the given CSVs restricted to
  the written stimuli, or two invented observers without them) and `stimuli/` for cue-conflict,
  edge and silhouette, each cue-conflict object exactly the silhouette of its content image.

The same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy import ndimage

from sweetspot.data import voc
from sweetspot.data.geirhos import CATEGORIES
from sweetspot.data.human_trials import parse_imagename
from sweetspot.data.modelvshuman import CATEGORY_FOLDER_DATASETS, DATASETS, WITHOUT_CONDITIONS

IMAGENET_WNIDS = ("n01440764", "n02102040", "n02979186")  # tench, English springer, cassette player
IMAGENET_SIZES = ((64, 48), (48, 64), (80, 56), (56, 72), (72, 60), (60, 44))
VOC07_IDS = ("000005", "000007", "000009", "000012")
VOC12_IDS = ("2007_000032", "2007_000033", "2008_000002", "2008_000003")
COCO_IMAGES = {9: (72, 56), 25: (56, 64), 30: (64, 48), 34: (80, 60), 36: (48, 48)}  # id: (width, height)
COCO_CATEGORIES = ((1, "person", "person"), (3, "car", "vehicle"), (18, "dog", "animal"))
STIMULUS_SIZE = 64
HUMAN_HEADER = ("subj", "session", "trial", "rt", "object_response", "category", "condition", "imagename")


def write_paper_datasets(root: str | Path, *, human_dir: str | Path | None = None,
                         categories: str | Path | None = None, seed: int = 0) -> dict:
    """Write every dataset under `root`; return the config's `datasets:` section (string paths).

    human_dir: real human trial CSVs (geirhos16's human/ or model-vs-human's raw-data/) whose
    stimuli the model-vs-human images are named after; None invents stimuli and two observers.
    categories: the real categories.json to copy; None writes a placeholder that maps category
    k to ImageNet class 10 k (valid for the loaders, not the real mapping).
    """
    root = Path(root)
    geirhos16 = root / "geirhos16"
    write_imagenet(root / "imagenet", seed)
    write_voc(root / "VOCdevkit" / "VOC2007", VOC07_IDS, segmentation=False, seed=seed)
    write_voc(root / "VOCdevkit" / "VOC2012", VOC12_IDS, segmentation=True, seed=seed)
    write_coco20k(root / "coco", seed)
    write_modelvshuman(root / "model-vs-human" / "datasets", geirhos16, human_dir, seed=seed)
    table = (json.loads(Path(categories).read_text()) if categories is not None
             else {name: [10 * k] for k, name in enumerate(CATEGORIES)})
    geirhos16.mkdir(parents=True, exist_ok=True)
    (geirhos16 / "categories.json").write_text(json.dumps(table, indent=1) + "\n")
    return {
        "imagenet": str(root / "imagenet"),
        "voc07": str(root / "VOCdevkit" / "VOC2007"),
        "voc12": str(root / "VOCdevkit" / "VOC2012"),
        "coco20k": {"annotations": str(root / "coco" / "annotations" / "instances_train2014.json"),
                    "images": str(root / "coco" / "train2014"),
                    "names": str(root / "coco" / "coco_20k_filenames.txt")},
        "modelvshuman": str(root / "model-vs-human" / "datasets"),
        "geirhos16": str(geirhos16),
        "human_trials": str(geirhos16 / "human"),
    }


# --- drawing: a textured object on a noisy background ---------------------------------------


def _rng(*keys: int | str) -> np.random.Generator:
    """A generator per file, seeded from stable keys (crc32 of strings), so files do not depend on order."""
    return np.random.default_rng([zlib.crc32(k.encode()) if isinstance(k, str) else k for k in keys])


def _object_mask(rng: np.random.Generator, width: int, height: int, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A bool (height, width) ellipse or polygon filling 50-90% of `region` (x0, y0, x1, y1; default the middle)."""
    x0, y0, x1, y1 = region or (width // 6, height // 6, width - width // 6, height - height // 6)
    w, h = (x1 - x0) * rng.uniform(0.5, 0.9), (y1 - y0) * rng.uniform(0.5, 0.9)
    left, top = x0 + rng.uniform(0, x1 - x0 - w), y0 + rng.uniform(0, y1 - y0 - h)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if rng.random() < 0.5:
        draw.ellipse((left, top, left + w, top + h), fill=255)
    else:
        draw.polygon([(left + w / 2, top), (left + w, top + h), (left, top + h)], fill=255)  # a triangle
    return np.asarray(canvas) > 0


def _scene(rng: np.random.Generator, masks: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """uint8 RGB: low-contrast noise, each object filled with its own striped colour pair."""
    image = rng.integers(100, 156, (height, width, 3)).astype(np.uint8)
    stripes = (np.add.outer(np.arange(height), np.arange(width)) // 3) % 2 == 0
    for mask in masks:
        light, dark = rng.integers(150, 256, 3), rng.integers(0, 100, 3)
        image[mask & stripes] = light
        image[mask & ~stripes] = dark
    return image


def _save_jpeg(image: np.ndarray, path: Path, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).convert(mode).save(path, format="JPEG", quality=92)


def _save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


# --- ImageNet ------------------------------------------------------------------------------


def write_imagenet(root: Path, seed: int = 0, train_per_class: int = 4, val_per_class: int = 2) -> None:
    """ImageNet class folders with non-square images; the first train image is grayscale, the second CMYK."""
    counter = 0
    for c, wnid in enumerate(IMAGENET_WNIDS):
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for i in range(count):
                counter += 1
                width, height = IMAGENET_SIZES[(c + i) % len(IMAGENET_SIZES)]
                rng = _rng(seed, "imagenet", split, wnid, i)
                image = _scene(rng, [_object_mask(rng, width, height)], height, width)
                name = f"{wnid}_{1000 + i}.JPEG" if split == "train" else f"ILSVRC2012_val_{counter:08d}.JPEG"
                mode = {(0, 0): "L", (0, 1): "CMYK"}.get((c, i), "RGB") if split == "train" else "RGB"
                _save_jpeg(image, root / split / wnid / name, mode)


# --- PASCAL VOC ----------------------------------------------------------------------------


def write_voc(root: Path, image_ids: tuple[str, ...], *, segmentation: bool, seed: int = 0) -> None:
    """A VOC year folder: every image lists its objects in Annotations; with segmentation, the
    first half of the images are also in ImageSets/Segmentation/val.txt with palette label PNGs.

    Objects sit in separate vertical strips of the image; the first image's first object touches
    the left edge (truncated) and each image's last object is marked difficult when it has two.
    """
    segmented = image_ids[: len(image_ids) // 2] if segmentation else ()
    for n, image_id in enumerate(image_ids):
        rng = _rng(seed, "voc", root.name, image_id)
        width, height = (80, 60) if n % 2 == 0 else (60, 76)
        count = 1 + n % 2
        strips = [(k * width // count, 0, (k + 1) * width // count, height) for k in range(count)]
        masks = [_object_mask(rng, width, height, strip) for strip in strips]
        truncated = [n == 0 and k == 0 for k in range(count)]
        for k in range(count):
            if truncated[k]:  # shift the object onto the left edge
                xs = np.nonzero(masks[k].any(axis=0))[0]
                masks[k] = np.roll(masks[k], -int(xs.min()), axis=1)
        names = [voc.VOC_CLASSES[int(rng.integers(len(voc.VOC_CLASSES)))] for _ in range(count)]
        difficult = [count > 1 and k == count - 1 for k in range(count)]
        _save_jpeg(_scene(rng, masks, height, width), root / "JPEGImages" / f"{image_id}.jpg")
        xml = _voc_xml(root.name, image_id, width, height, image_id in segmented,
                       [(name, mask, t, d) for name, mask, t, d in zip(names, masks, truncated, difficult)])
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_bytes(xml)
        if image_id in segmented:
            _save_png(_label_png(masks, list(range(1, count + 1))), root / "SegmentationObject" / f"{image_id}.png")
            values = [voc.VOC_CLASSES.index(name) + 1 for name in names]
            _save_png(_label_png(masks, values), root / "SegmentationClass" / f"{image_id}.png")
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    (main / "trainval.txt").write_text("".join(f"{i}\n" for i in image_ids))
    if segmentation:
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in segmented))


def _label_png(masks: list[np.ndarray], values: list[int]) -> Image.Image:
    """A VOC label image: each object's inside at its value, a 255 band straddling its edge, 0 elsewhere."""
    labels = np.zeros(masks[0].shape, dtype=np.uint8)
    for mask, value in zip(masks, values):
        inside = ndimage.binary_erosion(mask)
        labels[inside] = value
        labels[ndimage.binary_dilation(mask) & ~inside] = voc.VOID
    image = Image.fromarray(labels, "P")
    image.putpalette(voc.palette())
    return image


def _voc_xml(folder: str, image_id: str, width: int, height: int, segmented: bool,
             objects: list[tuple[str, np.ndarray, bool, bool]]) -> bytes:
    """A VOC annotation as the devkit writes it: bndbox 1-based with inclusive ends."""
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = folder
    ElementTree.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ElementTree.SubElement(root, "source")
    ElementTree.SubElement(source, "database").text = f"The {folder} Database"
    size = ElementTree.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, key).text = str(value)
    ElementTree.SubElement(root, "segmented").text = str(int(segmented))
    for name, mask, truncated, difficult in objects:
        obj = ElementTree.SubElement(root, "object")
        for key, value in (("name", name), ("pose", "Unspecified"), ("truncated", str(int(truncated))),
                           ("difficult", str(int(difficult)))):
            ElementTree.SubElement(obj, key).text = value
        ys, xs = np.nonzero(mask)
        bndbox = ElementTree.SubElement(obj, "bndbox")
        for key, value in (("xmin", xs.min() + 1), ("ymin", ys.min() + 1), ("xmax", xs.max() + 1), ("ymax", ys.max() + 1)):
            ElementTree.SubElement(bndbox, key).text = str(int(value))
    ElementTree.indent(root, space="\t")
    return ElementTree.tostring(root, encoding="utf-8") + b"\n"


# --- COCO20k -------------------------------------------------------------------------------


def write_coco20k(root: Path, seed: int = 0) -> None:
    """COCO 2014 train images and instances; image 25 has only a crowd region, image 30 is grayscale,
    image 36 is left out of the 20k names file."""
    images, annotations = [], []
    for image_id, (width, height) in COCO_IMAGES.items():
        rng = _rng(seed, "coco", image_id)
        name = f"COCO_train2014_{image_id:012d}.jpg"
        images.append({"license": 1, "file_name": name, "height": height, "width": width, "id": image_id})
        masks = [_object_mask(rng, width, height, (0, 0, width // 2, height)),
                 _object_mask(rng, width, height, (width // 2, 0, width, height))][: 1 + image_id % 2]
        for k, mask in enumerate(masks):
            crowd = image_id == 25 or (image_id == 9 and k == 1)
            annotations.append(_coco_annotation(len(annotations) + 1, image_id, COCO_CATEGORIES[k][0], mask, crowd))
        _save_jpeg(_scene(rng, masks, height, width), root / "train2014" / name, "L" if image_id == 30 else "RGB")
    instances = {
        "info": {"description": "sweetspot paper fixture in the COCO 2014 format", "version": "1.0", "year": 2014},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in COCO_CATEGORIES],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(instances))
    listed = [image["file_name"] for image in images if image["id"] != 36]
    (root / "coco_20k_filenames.txt").write_text("".join(f"train2014/{name}\n" for name in listed))


def _coco_annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray, crowd: bool) -> dict:
    """A COCO instance: a polygon (the box outline) for objects, uncompressed RLE for crowds."""
    ys, xs = np.nonzero(mask)
    x, y, w, h = float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())
    if crowd:
        flat = mask.flatten(order="F").astype(np.int8)  # COCO's RLE runs down the columns, starting with zeros
        edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
        counts = np.diff(np.concatenate([[0], edges])).tolist()
        segmentation = {"counts": counts, "size": list(mask.shape)}
    else:
        segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": segmentation,
            "area": float(mask.sum()), "bbox": [x, y, w, h], "iscrowd": int(crowd)}


# --- model-vs-human and geirhos16 ------------------------------------------------------------


def write_modelvshuman(datasets_dir: Path, geirhos16: Path, human_dir: str | Path | None = None, *,
                       names: tuple[str, ...] = DATASETS, conditions: int = 2, per_condition: int = 2,
                       seed: int = 0) -> dict[str, list[str]]:
    """Model-vs-human images of `names`, their human CSVs under <geirhos16>/human and, for
    cue-conflict, edge and silhouette, the same images under <geirhos16>/stimuli.

    Each dataset gets `per_condition` stimuli in each of its first `conditions` conditions
    (sorted), taken from the first CSV of `human_dir` in trial order, or invented without it.
    Returns each dataset's human image names.
    """
    chosen = {}
    for name in names:
        imagenames = (_real_imagenames(Path(human_dir) / name, conditions, per_condition) if human_dir is not None
                      else _invented_imagenames(name, conditions, per_condition))
        chosen[name] = imagenames
        for number, imagename in enumerate(imagenames, start=1):
            condition, category, identifier = parse_imagename(imagename)
            image = _stimulus(name, category, identifier, seed)
            if name in CATEGORY_FOLDER_DATASETS:
                _save_png(image, datasets_dir / name / category / identifier)
                _save_png(image, geirhos16 / "stimuli" / name / category / identifier)
            else:
                fields = imagename.split("_")
                dnn_name = "_".join([f"{number:04d}", fields[1], "dnn", *fields[3:]])
                _save_png(image, datasets_dir / name / "dnn" / "session-1" / dnn_name)
        if human_dir is not None:
            _copy_trials(Path(human_dir) / name, geirhos16 / "human" / name, set(imagenames))
        else:
            _invent_trials(geirhos16 / "human" / name, name, imagenames, seed)
    _write_silhouettes(geirhos16 / "stimuli", chosen.get("cue-conflict", []), seed)
    return chosen


def _real_imagenames(folder: Path, conditions: int, per_condition: int) -> list[str]:
    first = sorted(folder.glob("*.csv"))[0]
    frame = pd.read_csv(first, dtype=str, keep_default_na=False)
    frame.columns = [c.strip().lower() for c in frame.columns]
    frame["parsed_condition"] = [parse_imagename(n)[0] for n in frame["imagename"]]
    picked = []
    for condition in sorted(frame["parsed_condition"].unique())[:conditions]:
        picked += frame.loc[frame["parsed_condition"] == condition, "imagename"].head(per_condition).tolist()
    return picked


def _invented_imagenames(name: str, conditions: int, per_condition: int) -> list[str]:
    levels = ["0"] if name in WITHOUT_CONDITIONS else [str(level) for level in range(conditions)]
    names = []
    for level in levels:
        for i in range(per_condition):
            n = len(names)
            category, other = CATEGORIES[n % 16], CATEGORIES[(n + 5) % 16]
            identifier = {"cue-conflict": f"{category}{n + 1}-{other}{n + 1}.png", "edge": f"{category}{n + 1}.png",
                          "silhouette": f"{category}{n + 1}.png"}.get(name, f"n0{n:07d}_{n + 1}.png")
            names.append(f"{n + 1:04d}_xx_s01_{level}_{category}_10_{identifier}")
    return names


def _content(category: str, identifier: str) -> str:
    """The content image a stimulus shows: `bird3` for cue-conflict `bird3-cat1.png` and for `bird3.png`."""
    return Path(identifier).stem.split("-")[0] if identifier[: len(category)] == category else f"{category}/{identifier}"


def _content_mask(content: str, seed: int) -> np.ndarray:
    return _object_mask(_rng(seed, "content", content), STIMULUS_SIZE, STIMULUS_SIZE)


def _stimulus(dataset: str, category: str, identifier: str, seed: int) -> Image.Image:
    """An RGB stimulus: edges as a dark outline on white, silhouettes filled black on white,
    everything else the content's object textured on noise."""
    mask = _content_mask(_content(category, identifier), seed)
    if dataset in ("edge", "silhouette"):
        dark = mask if dataset == "silhouette" else mask & ~ndimage.binary_erosion(mask)
        return Image.fromarray(np.where(dark, 0, 255).astype(np.uint8)).convert("RGB")
    rng = _rng(seed, dataset, category, identifier)
    return Image.fromarray(_scene(rng, [mask], STIMULUS_SIZE, STIMULUS_SIZE))


def _write_silhouettes(stimuli: Path, cue_conflict: list[str], seed: int) -> None:
    """The silhouette of each cue-conflict content image, which the geirhos16 loader takes as its mask."""
    for imagename in cue_conflict:
        _, category, identifier = parse_imagename(imagename)
        content = _content(category, identifier)
        _save_png(_stimulus("silhouette", category, f"{content}.png", seed), stimuli / "silhouette" / category / f"{content}.png")


def _copy_trials(source: Path, target: Path, imagenames: set[str]) -> None:
    """Each CSV of `source` restricted to the trials on the chosen stimuli (the same stimulus has
    another trial number and observer field in every CSV), header spelling kept."""
    keys = {parse_imagename(n)[1:] for n in imagenames}
    target.mkdir(parents=True, exist_ok=True)
    for csv in sorted(source.glob("*.csv")):
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        column = next(c for c in frame.columns if c.strip().lower() == "imagename")
        keep = [parse_imagename(n)[1:] in keys for n in frame[column]]
        frame[keep].to_csv(target / csv.name, index=False)


def _invent_trials(target: Path, experiment: str, imagenames: list[str], seed: int) -> None:
    """Two observers who see every stimulus, right about 70% of the time."""
    target.mkdir(parents=True, exist_ok=True)
    for subject in (1, 2):
        rng = _rng(seed, "trials", experiment, subject)
        rows = []
        for trial, imagename in enumerate(imagenames, start=1):
            condition, category, _ = parse_imagename(imagename)
            response = category if rng.random() < 0.7 else CATEGORIES[int(rng.integers(16))]
            fields = imagename.split("_")
            shown = "_".join([f"{trial:04d}", fields[1], f"s{subject:02d}", *fields[3:]])
            rows.append((f"subject-{subject:02d}", "1", str(trial), f"{rng.uniform(0.4, 1.5):.3f}", response,
                         category, condition, shown))
        pd.DataFrame(rows, columns=list(HUMAN_HEADER)).to_csv(
            target / f"{experiment}_subject-{subject:02d}_session_1.csv", index=False)
