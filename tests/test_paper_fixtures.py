"""The paper-format fixtures: every real loader reads what tests/paper_fixtures.py writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import GEIRHOS16
from paper_fixtures import COCO_IMAGES, IMAGENET_WNIDS, VOC07_IDS, VOC12_IDS, write_paper_datasets
from PIL import Image

from sweetspot.data import modelvshuman, registry, voc

REAL = (GEIRHOS16 / "human").is_dir() and (GEIRHOS16 / "categories.json").is_file()


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("paper")
    datasets = write_paper_datasets(root, human_dir=GEIRHOS16 / "human" if REAL else None,
                                    categories=GEIRHOS16 / "categories.json" if REAL else None)
    return {"benchmark": "paper", "datasets": datasets}


def _object_pixels(image: np.ndarray) -> np.ndarray:
    """Pixels of the drawn objects: their stripes lie outside the background's 100..155 grey band."""
    return ((image < 90) | (image > 165)).any(axis=2)


def test_voc_detection_both_years(config):
    for name, ids in (("voc07-trainval", VOC07_IDS), ("voc12-trainval", VOC12_IDS)):
        samples = registry.load_eval(name, config, None)
        assert [s.item for s in samples] == list(ids)
        assert [s.image.shape for s in samples] == [(60, 80, 3), (76, 60, 3)] * 2  # native, non-square
        assert [len(s.boxes) for s in samples] == [1, 2, 1, 2]
        assert [s.extra["difficult"] for s in samples] == [[False], [False, True], [False], [False, True]]
        assert samples[0].boxes[0, 0] == 0  # the truncated object touches the left edge
        for s in samples:
            for x0, y0, x1, y1 in s.boxes.astype(int):
                assert _object_pixels(s.image[y0:y1, x0:x1]).mean() > 0.3  # something to find in every box
        square = registry.load_eval(name, config, 32)
        assert all(s.image.shape == (32, 32, 3) for s in square)


def test_voc12_segmentation_palette_masks_with_void_band(config):
    root = Path(config["datasets"]["voc12"])
    assert (root / "ImageSets/Segmentation/val.txt").read_text().split() == list(VOC12_IDS[:2])
    for folder in ("SegmentationClass", "SegmentationObject"):
        assert Image.open(root / folder / f"{VOC12_IDS[1]}.png").mode == "P"
    samples = registry.load_eval("voc12-seg-val", config, None)
    assert [s.item for s in samples] == list(VOC12_IDS[:2])
    for s in samples:
        assert s.mask.any() and s.ignore.any() and not (s.mask & s.ignore).any()
        assert _object_pixels(s.image)[s.mask].mean() > 0.9
        assert _object_pixels(s.image)[~s.mask & ~s.ignore].mean() < 0.05
        objects = voc.read_annotation(root / "Annotations" / f"{s.item}.xml")
        largest = max(objects, key=lambda o: (o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]))
        assert s.label == voc.VOC_CLASSES.index(largest["name"])


def test_coco20k_names_crowds_and_grayscale(config):
    samples = registry.load_eval("coco20k", config, None)
    ids = [s.extra["image_id"] for s in samples]
    assert ids == [i for i in COCO_IMAGES if i != 36]  # 36 is not in the 20k names
    by_id = {s.extra["image_id"]: s for s in samples}
    assert len(by_id[9].boxes) == 1 and by_id[25].extra["no_box"]  # crowd regions dropped
    assert by_id[30].image.shape == (48, 64, 3)  # the grayscale JPEG, as RGB
    for s in samples:
        for x0, y0, x1, y1 in s.boxes.astype(int):
            assert _object_pixels(s.image[y0:y1, x0:x1]).mean() > 0.3


def test_imagenet_class_folders_with_the_evaluation_and_training_crops(config):
    images, labels, items, classes = registry.classification_split(config, "val", 32)
    assert classes == sorted(IMAGENET_WNIDS) and len(items) == 6 and items[0].endswith(".JPEG")
    assert images[np.arange(6)].shape == (6, 32, 32, 3)
    sizes = {Image.open(path).size for path in images.paths}
    assert all(w != h for w, h in sizes) and len(sizes) > 2
    train, labels, items, _ = registry.train_split(config, 32)
    assert len(items) == 12 and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    modes = {Image.open(path).mode for path in train.paths}
    assert modes == {"RGB", "L", "CMYK"}
    crops = train.random_crops(np.arange(12), np.random.default_rng(0))
    assert crops.shape == (12, 32, 32, 3) and train[np.arange(12)].shape == (12, 32, 32, 3)


def test_all_17_modelvshuman_datasets_join_their_human_trials(config):
    for name in modelvshuman.DATASETS:
        samples = registry.load_eval(f"mvh-{name}", config, None)
        trials = registry.load_human_trials(config, f"mvh-{name}")
        assert len(samples) >= 2 and all(s.image.shape == (64, 64, 3) for s in samples)
        assert {s.item for s in samples} == set(trials["item"]), name
        if name not in modelvshuman.WITHOUT_CONDITIONS:
            by_item = dict(zip(trials["item"], trials["condition"]))
            assert all(s.extra["condition"] == by_item[s.item] for s in samples)
            assert len({s.extra["condition"] for s in samples}) == 2
    assert all(len(registry.load_eval(f"mvh-{n}", config, 32)) for n in ("contrast", "cue-conflict"))


def test_geirhos16_stimuli_with_silhouette_masks(config):
    cue = registry.load_eval("geirhos16-cue-conflict", config, None)
    assert cue and all(s.mask.any() and s.texture_label >= 0 for s in cue)
    for s in cue:
        assert _object_pixels(s.image)[s.mask].mean() > 0.9
    assert all(s.mask.any() for s in registry.load_eval("geirhos16-silhouette", config, None))
    edges = registry.load_eval("geirhos16-edge", config, None)
    for name in ("geirhos16-cue-conflict", "geirhos16-edge", "geirhos16-silhouette"):
        assert len(registry.load_human_trials(config, name))  # every trial's stimulus is on disk
    assert {s.item for s in edges} == set(registry.load_human_trials(config, "geirhos16-edge")["item"])
    assert len(registry.category_indices(config)) == 16


def test_same_arguments_give_identical_bytes(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    write_paper_datasets(tmp_path / "a")
    write_paper_datasets(tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    config = {"datasets": write_paper_datasets(tmp_path / "c", seed=1)}
    assert files(tmp_path / "c") != files(tmp_path / "a")
    for name in modelvshuman.DATASETS:  # invented stimuli join their invented observers
        items = {s.item for s in registry.load_eval(f"mvh-{name}", config, 16)}
        assert items == set(registry.load_human_trials(config, f"mvh-{name}")["item"])
