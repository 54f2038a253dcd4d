"""The evaluation datasets, one catalog: from a name to its loader and what it holds.

Each CATALOG entry says how a dataset is loaded, which label space it uses (its own classes,
the 16 model-vs-human categories, or none), which model-vs-human experiment's human trials it
joins, which config fields locate it, and whether it has object masks and boxes. Everything
else about dataset names (the list of names, which need the 16-class decision, which join
human trials) is read from it by the small functions below, so a new dataset is one entry.

Paths come from the config: the generated synthetic benchmark lives at <data_dir>/synthetic;
real datasets are named under `datasets`. A name whose path is missing or wrong fails with
the config field to fix. Human trials come from `datasets.human_trials` (geirhos16's human/ or
model-vs-human's raw-data/), else from <datasets.geirhos16>/human.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import coco, geirhos, human_trials, imagefolder, modelvshuman, synthetic, voc
from .samples import Sample

OWN, SIXTEEN, NO_LABELS = "own", "sixteen", "none"  # label spaces

# (config, size, max_side, classes) -> samples; size=None: each image at its own size
Loader = Callable[..., list[Sample]]


@dataclass(frozen=True)
class DatasetInfo:
    """One evaluation dataset of the catalog.

    label_space: OWN (the dataset's own classes; the model must be trained on them), SIXTEEN
    (the 16 model-vs-human categories, decided from ImageNet-1k logits) or NO_LABELS.
    config_fields: the config keys that locate it ("data_dir" or "datasets.<field>").
    human_experiment: the model-vs-human experiment whose human trials it joins, or None.
    source: the dataset whose samples it uses when a task derives its images from another's.
    """

    name: str
    load: Loader
    label_space: str
    config_fields: tuple[str, ...]
    human_experiment: str | None = None
    has_masks: bool = False
    has_boxes: bool = False
    source: str | None = None


_HINTS = {
    "geirhos16": "the geirhos16 folder holding stimuli/ and categories.json",
    "voc07": "VOCdevkit/VOC2007",
    "voc12": "VOCdevkit/VOC2012",
    "coco20k.annotations": "COCO's annotations/instances_train2014.json",
    "coco20k.images": "COCO's train2014 image folder",
    "coco20k.names": "LOST's datasets/coco_20k_filenames.txt",
    "imagenet": "an ImageNet folder with train/ and val/ class folders",
    "modelvshuman": "model-vs-human's datasets/ folder (one folder per dataset)",
    "human_trials": "the human trial CSVs, one folder per experiment (geirhos16's human/ or model-vs-human's raw-data/)",
}


def dataset_path(config: Mapping[str, Any], field: str) -> Path:
    """The existing path at config `datasets.<field>` ("coco20k.images" reaches into coco20k)."""
    value: Any = config.get("datasets") or {}
    for key in field.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    hint = _HINTS.get(field, "the dataset's folder")
    if not value:
        raise ValueError(f"datasets.{field} is not set; point it at {hint}")
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise ValueError(f"datasets.{field} = {str(value)!r} does not exist; point it at {hint}")
    return path


def synthetic_root(config: Mapping[str, Any]) -> Path:
    """<data_dir>/synthetic, which must hold a complete generated benchmark (its MANIFEST.json)."""
    if not config.get("data_dir"):
        raise ValueError("data_dir is not set; it names the folder of generated datasets")
    root = Path(str(config["data_dir"])) / "synthetic"
    if not (root / "MANIFEST.json").is_file():
        raise ValueError(f"{root / 'MANIFEST.json'} does not exist (data_dir = {config['data_dir']!r}); "
                         "generate the synthetic benchmark first (snakemake's data rule)")
    return root


def _synthetic_classes(root: Path, classes: Sequence[str] | None) -> list[str]:
    names = synthetic.load_classes(root)
    if classes is not None and list(classes) != names:
        raise ValueError(f"{root / 'classes.json'} lists classes {names}, not the model's {list(classes)}")
    return names


# --- loaders, one per family, all with the Loader signature --------------------------------


def _synthetic_val(config, size, max_side, classes):
    root = synthetic_root(config)
    return voc.load_segmentation(root / "voc", "val", size, _synthetic_classes(root, classes), max_side=max_side)


def _synthetic_cue_conflict(config, size, max_side, classes):
    root = synthetic_root(config)
    return synthetic.load_cue_conflict(root, size, _synthetic_classes(root, classes), max_side=max_side)


def _voc_detection(field: str) -> Loader:
    return lambda config, size, max_side, classes: voc.load_detection(
        dataset_path(config, field), "trainval", size, classes or voc.VOC_CLASSES, max_side=max_side)


def _voc12_segmentation(config, size, max_side, classes):
    return voc.load_segmentation(dataset_path(config, "voc12"), "val", size, classes or voc.VOC_CLASSES, max_side=max_side)


def _coco20k(config, size, max_side, classes):
    return coco.load_coco20k(dataset_path(config, "coco20k.annotations"), dataset_path(config, "coco20k.images"),
                             dataset_path(config, "coco20k.names"), size, max_side=max_side)


def _imagenet_val(config, size, max_side, classes):
    if size is None or max_side is not None:
        raise ValueError("imagenet-val is evaluated on the fixed central crop of the ImageNet recipe; "
                         "give size (the crop) and no max_side")
    images, labels, items, _ = _imagenet_split(config, "val", size, classes)
    samples = []
    for start in range(0, len(items), 256):  # a block at a time: decoded by LazyImages' thread pool
        block = images[start:start + 256]
        samples += [Sample(item=items[start + j], image=block[j], label=int(labels[start + j])) for j in range(len(block))]
    return samples


def _geirhos16(kind: str) -> Loader:
    return lambda config, size, max_side, classes: geirhos.load_stimuli(
        dataset_path(config, "geirhos16"), kind, size, max_side=max_side)


def _modelvshuman(name: str) -> Loader:
    return lambda config, size, max_side, classes: modelvshuman.load_dataset(
        dataset_path(config, "modelvshuman"), name, size, max_side=max_side)


_COCO_FIELDS = ("datasets.coco20k.annotations", "datasets.coco20k.images", "datasets.coco20k.names")

CATALOG: dict[str, DatasetInfo] = {info.name: info for info in [
    DatasetInfo("synthetic-val", _synthetic_val, OWN, ("data_dir",), has_masks=True, has_boxes=True),
    DatasetInfo("synthetic-cue-conflict", _synthetic_cue_conflict, OWN, ("data_dir",), has_masks=True, has_boxes=True),
    # clean synthetic-val images that the alignment task distorts itself
    DatasetInfo("synthetic-distortions", _synthetic_val, OWN, ("data_dir",), has_masks=True, has_boxes=True,
                source="synthetic-val"),
    *(DatasetInfo(f"geirhos16-{kind}", _geirhos16(kind), SIXTEEN, ("datasets.geirhos16",), human_experiment=kind,
                  has_masks=kind != "edge", has_boxes=kind != "edge") for kind in geirhos.KINDS),
    DatasetInfo("voc07-trainval", _voc_detection("voc07"), OWN, ("datasets.voc07",), has_boxes=True),
    DatasetInfo("voc12-trainval", _voc_detection("voc12"), OWN, ("datasets.voc12",), has_boxes=True),
    DatasetInfo("voc12-seg-val", _voc12_segmentation, OWN, ("datasets.voc12",), has_masks=True, has_boxes=True),
    DatasetInfo("coco20k", _coco20k, NO_LABELS, _COCO_FIELDS, has_boxes=True),
    DatasetInfo("imagenet-val", _imagenet_val, OWN, ("datasets.imagenet",)),
    *(DatasetInfo(f"mvh-{name}", _modelvshuman(name), SIXTEEN, ("datasets.modelvshuman",), human_experiment=name)
      for name in modelvshuman.DATASETS),
]}


def names() -> tuple[str, ...]:
    """Every evaluation dataset name, in catalog order."""
    return tuple(CATALOG)


def info(name: str) -> DatasetInfo:
    """The catalog entry of `name`; an unknown name fails listing the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(f"unknown evaluation dataset {name!r}; choose one of {', '.join(CATALOG)}") from None


def human_experiment(name: str) -> str | None:
    """The model-vs-human experiment whose human trials `name` joins, or None."""
    return info(name).human_experiment


def sixteen_class(name: str) -> bool:
    """Whether `name` is labelled with the 16 model-vs-human categories (an ImageNet-1k model
    then decides among them with category_indices)."""
    return info(name).label_space == SIXTEEN


def load_eval(name: str, config: Mapping[str, Any], size: int | None, classes: Sequence[str] | None = None,
              *, max_side: int | None = None) -> list[Sample]:
    """The evaluation dataset `name` at size x size, or with size=None at each image's own size
    (longer side capped at max_side; see geometry.output_size).

    `classes` is the model's label space; datasets with labels check that theirs agrees
    (default: the dataset's own). COCO20k has no labels (-1) and ignores it.
    """
    entry = info(name)
    if entry.label_space == SIXTEEN and classes is not None and list(classes) != list(geirhos.CATEGORIES):
        raise ValueError(f"{name} labels its images with the 16 categories {list(geirhos.CATEGORIES)}; "
                         f"classes={list(classes)} cannot be used")
    return entry.load(config, size, max_side, classes)


def human_trials_dir(config: Mapping[str, Any]) -> Path:
    """The folder of human trial CSVs (one folder per experiment): datasets.human_trials, else
    <datasets.geirhos16>/human."""
    datasets = config.get("datasets") or {}
    if datasets.get("geirhos16") and not datasets.get("human_trials"):
        return dataset_path(config, "geirhos16") / "human"
    return dataset_path(config, "human_trials")


def load_human_trials(config: Mapping[str, Any], name: str) -> pd.DataFrame | None:
    """The human trials that `name` joins (human_trials.load_experiment), or None when it has none.

    For the geirhos16 datasets, whose stimuli are the ones the humans saw, every trial's
    stimulus must also exist under <datasets.geirhos16>/stimuli.
    """
    experiment = human_experiment(name)
    if experiment is None:
        return None
    stimuli = dataset_path(config, "geirhos16") / "stimuli" if "datasets.geirhos16" in info(name).config_fields else None
    return human_trials.load_experiment(human_trials_dir(config), experiment, stimuli)


def category_indices(config: Mapping[str, Any]) -> list[list[int]]:
    """The ImageNet-1k class indices of each of the 16 categories, in label order
    (<datasets.geirhos16>/categories.json): the class groups of a 16-class decision."""
    table = geirhos.load_categories(dataset_path(config, "geirhos16"))
    return [table[category] for category in geirhos.CATEGORIES]


def classification_split(config: Mapping[str, Any], split: str, size: int,
                         classes: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(images, labels, items, classes) of a classification split: the synthetic benchmark's
    when config benchmark is "synthetic" (the default), else ImageNet's (see _imagenet_split)."""
    if config.get("benchmark", "synthetic") == "synthetic":
        root = synthetic_root(config)
        return imagefolder.load_split(root / split, size, classes or synthetic.load_classes(root))
    return _imagenet_split(config, split, size, classes)


def _imagenet_split(config: Mapping[str, Any], split: str, size: int,
                    classes: Sequence[str] | None) -> tuple[imagefolder.LazyImages, np.ndarray, list[str], list[str]]:
    """ImageNet class folders at datasets.imagenet, read on demand with the evaluation recipe:
    shorter side to config `resize_size` (default size / 0.875: 256 for 224), central size x size
    crop. A training loop takes random-resized crops with the images' `random_crops`."""
    folder = dataset_path(config, "imagenet") / split
    if not folder.is_dir():
        raise ValueError(f"{folder} does not exist; datasets.imagenet must hold {split}/ with one folder per class")
    resize_size = config.get("resize_size") or imagefolder.default_resize_size(size)
    return imagefolder.lazy_split(folder, size, classes, resize_size=resize_size)


def train_split(config: Mapping[str, Any], size: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """The study's train split: (uint8 images, int64 labels, items, classes)."""
    return classification_split(config, "train", size)
