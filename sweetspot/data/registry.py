"""Evaluation datasets by name: one call from a study config to a list of Samples.

Paths come from the config: the generated synthetic benchmark lives at <data_dir>/synthetic;
real datasets are named under `datasets` (geirhos16, voc07, voc12, coco20k, imagenet). A name
whose path is missing or wrong fails with the config field to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import coco, geirhos, imagefolder, modelvshuman, synthetic, voc
from .samples import Sample

EVAL_DATASETS = (
    "synthetic-val",
    "synthetic-cue-conflict",
    "geirhos16-cue-conflict",
    "geirhos16-edge",
    "geirhos16-silhouette",
    "voc07-trainval",
    "voc12-trainval",
    "voc12-seg-val",
    "coco20k",
    "imagenet-val",
    "synthetic-distortions",
) + tuple(f"mvh-{name}" for name in modelvshuman.DATASETS)
# Datasets made from another dataset's images: the alignment task distorts the clean images itself.
DERIVED = {"synthetic-distortions": "synthetic-val"}
_HINTS = {
    "geirhos16": "the geirhos16 folder holding stimuli/ and categories.json",
    "voc07": "VOCdevkit/VOC2007",
    "voc12": "VOCdevkit/VOC2012",
    "coco20k.annotations": "COCO's annotations/instances_train2014.json",
    "coco20k.images": "COCO's train2014 image folder",
    "coco20k.names": "LOST's datasets/coco_20k_filenames.txt",
    "imagenet": "an ImageNet folder with train/ and val/ class folders",
    "modelvshuman": "model-vs-human's datasets/ folder (one folder per dataset)",
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


def _fixed_label_space(name: str, own: Sequence[str], classes: Sequence[str] | None) -> None:
    if classes is not None and list(classes) != list(own):
        raise ValueError(f"{name} labels its images with its own classes {list(own)}; classes={list(classes)} cannot be used")


def load_eval(name: str, config: Mapping[str, Any], size: int, classes: Sequence[str] | None = None) -> list[Sample]:
    """The evaluation dataset `name` (one of EVAL_DATASETS) at size x size.

    `classes` is the model's label space; datasets with labels check that theirs agrees
    (default: the dataset's own). COCO20k has no labels (-1) and ignores it.
    """
    name = DERIVED.get(name, name)
    loaders: dict[str, Callable[[], list[Sample]]] = {
        "synthetic-val": lambda: voc.load_segmentation(
            synthetic_root(config) / "voc", "val", size, _synthetic_classes(synthetic_root(config), classes)),
        "synthetic-cue-conflict": lambda: synthetic.load_cue_conflict(
            synthetic_root(config), size, _synthetic_classes(synthetic_root(config), classes)),
        "voc07-trainval": lambda: voc.load_detection(dataset_path(config, "voc07"), "trainval", size, classes or voc.VOC_CLASSES),
        "voc12-trainval": lambda: voc.load_detection(dataset_path(config, "voc12"), "trainval", size, classes or voc.VOC_CLASSES),
        "voc12-seg-val": lambda: voc.load_segmentation(dataset_path(config, "voc12"), "val", size, classes or voc.VOC_CLASSES),
        "coco20k": lambda: coco.load_coco20k(dataset_path(config, "coco20k.annotations"),
                                             dataset_path(config, "coco20k.images"),
                                             dataset_path(config, "coco20k.names"), size),
    }
    for mvh in modelvshuman.DATASETS:
        loaders[f"mvh-{mvh}"] = lambda mvh=mvh: modelvshuman.load_dataset(dataset_path(config, "modelvshuman"), mvh, size)
    for kind in geirhos.KINDS:
        loaders[f"geirhos16-{kind}"] = lambda kind=kind: geirhos.load_stimuli(dataset_path(config, "geirhos16"), kind, size)
    if name not in loaders:
        raise ValueError(f"unknown evaluation dataset {name!r}; choose one of {', '.join(EVAL_DATASETS)}")
    if name == "imagenet-val":
        return _classification_samples(config, "val", size)
    if name.startswith(("geirhos16", "mvh-")):
        _fixed_label_space(name, geirhos.CATEGORIES, classes)
    return loaders[name]()


def classification_split(config: Mapping[str, Any], split: str, size: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(images, labels, items, classes) of a classification split: the synthetic benchmark's
    when config benchmark is "synthetic" (the default), else ImageNet class folders at datasets.imagenet."""
    if config.get("benchmark", "synthetic") == "synthetic":
        root = synthetic_root(config)
        return imagefolder.load_split(root / split, size, synthetic.load_classes(root))
    folder = dataset_path(config, "imagenet") / split
    if not folder.is_dir():
        raise ValueError(f"{folder} does not exist; datasets.imagenet must hold {split}/ with one folder per class")
    return imagefolder.lazy_split(folder, size)


def train_split(config: Mapping[str, Any], size: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """The study's train split: (uint8 images, int64 labels, items, classes)."""
    return classification_split(config, "train", size)


def _classification_samples(config: Mapping[str, Any], split: str, size: int) -> list[Sample]:
    images, labels, items, _ = classification_split(config, split, size)
    return [Sample(item=item, image=images[i], label=int(labels[i])) for i, item in enumerate(items)]
