"""The evaluation-dataset catalog: names, label spaces, human experiments, config fields, human trials."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import GEIRHOS16
from PIL import Image

from sweetspot.data import geirhos, modelvshuman, registry
from sweetspot.data.images import DataError

needs_geirhos = pytest.mark.skipif(not (GEIRHOS16 / "human").is_dir(), reason="shared geirhos16 data absent")


def test_catalog_names_every_dataset_once_with_its_properties():
    names = registry.names()
    assert len(names) == len(set(names)) == 11 + 17
    assert {f"mvh-{n}" for n in modelvshuman.DATASETS} <= set(names)
    for name in names:
        entry = registry.info(name)
        assert entry.name == name and entry.label_space in (registry.OWN, registry.SIXTEEN, registry.NO_LABELS)
        for field in entry.config_fields:
            assert field == "data_dir" or field.removeprefix("datasets.") in registry._HINTS
        assert entry.source is None or registry.info(entry.source).source is None
    with pytest.raises(ValueError, match="unknown evaluation dataset 'voc13'; choose one of synthetic-val"):
        registry.info("voc13")


def test_human_experiments_and_sixteen_class_sets_follow_from_the_catalog():
    joined = {name: registry.human_experiment(name) for name in registry.names() if registry.human_experiment(name)}
    assert {f"mvh-{n}": n for n in modelvshuman.DATASETS}.items() <= joined.items()
    assert {k: v for k, v in joined.items() if k.startswith("geirhos16")} == {
        "geirhos16-cue-conflict": "cue-conflict", "geirhos16-edge": "edge", "geirhos16-silhouette": "silhouette"}
    assert set(joined.values()) == set(modelvshuman.DATASETS)  # all 17 experiments are reachable
    assert {n for n in registry.names() if registry.sixteen_class(n)} == set(joined)
    assert registry.human_experiment("voc12-seg-val") is None and not registry.sixteen_class("imagenet-val")
    with_masks = {n for n in registry.names() if registry.info(n).has_masks}
    assert with_masks == {"synthetic-val", "synthetic-cue-conflict", "synthetic-distortions", "geirhos16-cue-conflict",
                          "geirhos16-silhouette", "voc12-seg-val"}
    assert {n for n in registry.names() if registry.info(n).has_boxes} == with_masks | {"voc07-trainval", "voc12-trainval", "coco20k"}
    assert registry.info("synthetic-distortions").source == "synthetic-val"


@needs_geirhos
def test_human_trials_come_from_geirhos16_or_their_own_field(tmp_path):
    config = {"datasets": {"geirhos16": str(GEIRHOS16)}}
    assert registry.human_trials_dir(config) == GEIRHOS16 / "human"
    trials = registry.load_human_trials(config, "mvh-contrast")
    assert len(trials) == 5120 and trials["item"].iloc[0] == "contrast/knife/n03041632_7380.png"
    assert registry.load_human_trials(config, "voc12-seg-val") is None
    raw = tmp_path / "raw-data"
    shutil.copytree(GEIRHOS16 / "human" / "edge", raw / "edge")
    own = {"datasets": {"human_trials": str(raw)}}
    assert len(registry.load_human_trials(own, "mvh-edge")) == 1600
    with pytest.raises(ValueError, match=r"datasets\.human_trials is not set; point it at the human trial CSVs"):
        registry.load_human_trials({"datasets": {}}, "mvh-edge")
    with pytest.raises(DataError, match="no human trial CSVs"):
        registry.load_human_trials(own, "mvh-contrast")


@needs_geirhos
def test_geirhos16_trials_are_checked_against_its_stimuli(tmp_path):
    root = tmp_path / "g16"
    shutil.copytree(GEIRHOS16 / "human" / "edge", root / "human" / "edge")
    (root / "stimuli" / "edge" / "oven").mkdir(parents=True)  # the edge images are there, but not all
    config = {"datasets": {"geirhos16": str(root)}}
    with pytest.raises(DataError, match=r"edge_subject-01_session_1\.csv: stimulus edge/.* not found"):
        registry.load_human_trials(config, "geirhos16-edge")
    assert len(registry.load_human_trials(config, "mvh-edge")) == 1600  # the model sees model-vs-human's copies


@needs_geirhos
def test_category_indices_are_the_16_groups_in_label_order():
    groups = registry.category_indices({"datasets": {"geirhos16": str(GEIRHOS16)}})
    assert len(groups) == 16 and groups[0] == [404]
    assert groups == [geirhos.load_categories(GEIRHOS16)[c] for c in geirhos.CATEGORIES]


def test_sixteen_class_sets_refuse_another_label_space(tmp_path):
    with pytest.raises(ValueError, match="16 categories"):
        registry.load_eval("mvh-contrast", {"datasets": {"modelvshuman": str(tmp_path)}}, 32, classes=["a", "b"])


def test_modelvshuman_native_size_through_the_registry(tmp_path):
    session = tmp_path / "contrast" / "dnn" / "session-1"
    session.mkdir(parents=True)
    Image.new("RGB", (30, 20), (9, 9, 9)).save(session / "0001_cop_dnn_c30_knife_10_n03041632_7380.png")
    config = {"datasets": {"modelvshuman": str(tmp_path)}}
    (native,) = registry.load_eval("mvh-contrast", config, None)
    assert native.image.shape == (20, 30, 3) and native.extra["condition"] == "c30"
    (capped,) = registry.load_eval("mvh-contrast", config, None, max_side=15)
    assert capped.image.shape == (10, 15, 3)
    (square,) = registry.load_eval("mvh-contrast", config, 16)
    assert square.image.shape == (16, 16, 3)


def test_imagenet_split_uses_the_configured_evaluation_crop(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            (tmp_path / split / wnid).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / split / wnid / "a.JPEG")
    config = {"benchmark": "paper", "datasets": {"imagenet": str(tmp_path)}}
    images, labels, items, classes = registry.classification_split(config, "val", 32)
    assert images.resize_size == 36 and classes == ["n01440764", "n01443537"]
    images, _, _, _ = registry.train_split({**config, "resize_size": 40}, 32)
    assert images.resize_size == 40 and images.random_crops([0, 1], np.random.default_rng(0)).shape == (2, 32, 32, 3)
    samples = registry.load_eval("imagenet-val", config, 32)
    assert [s.item for s in samples] == ["n01440764/a.JPEG", "n01443537/a.JPEG"] and samples[1].label == 1
    with pytest.raises(ValueError, match="fixed central crop"):
        registry.load_eval("imagenet-val", config, None)
