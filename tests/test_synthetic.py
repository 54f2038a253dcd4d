"""The synthetic benchmark generator: determinism, layout, exact masks, cue statistics, atomicity."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sweetspot.data import synthetic
from sweetspot.data.imagefolder import load_split
from sweetspot.data.voc import load_segmentation

TINY = dict(seed=3, image_size=32, n_classes=8, train_per_class=3, val_per_class=2, cue_conflict_per_class=2, clutter=4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen") / "synthetic"
    synthetic.generate(root, **TINY)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_arguments_give_identical_bytes(tiny, tmp_path):
    again = tmp_path / "again"
    synthetic.generate(again, **TINY)
    assert _files(again) == _files(tiny)
    other = tmp_path / "other"
    synthetic.generate(other, **{**TINY, "seed": 4})
    assert _files(other)["train/circle/circle_0000.png"] != _files(tiny)["train/circle/circle_0000.png"]


def test_layout_and_counts(tiny):
    names = json.loads((tiny / "classes.json").read_text())["classes"]
    assert names == synthetic.class_names(8) and len(set(names)) == 8
    for split, per_class in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (tiny / split).iterdir()) == sorted(names)
        for name in names:
            assert sorted(p.name for p in (tiny / split / name).iterdir()) == [f"{name}_{i:04d}.png" for i in range(per_class)]
    val_ids = (tiny / "voc/ImageSets/Segmentation/val.txt").read_text().split()
    assert len(val_ids) == 16 and val_ids == (tiny / "voc/ImageSets/Main/val.txt").read_text().split()
    for image_id in val_ids:
        name = image_id.rsplit("_", 1)[0]
        assert (tiny / f"voc/JPEGImages/{image_id}.png").read_bytes() == (tiny / f"val/{name}/{image_id}.png").read_bytes()
    assert len(list((tiny / "cue-conflict").rglob("*.png"))) == 16
    manifest = json.loads((tiny / "MANIFEST.json").read_text())
    assert manifest["counts"] == {"train": 24, "val": 16, "cue-conflict": 16}
    assert manifest["arguments"]["seed"] == 3 and manifest["version"] == synthetic.VERSION


def test_manifest_is_written_last(tiny):
    manifest_time = (tiny / "MANIFEST.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= manifest_time for p in tiny.rglob("*") if p.is_file())


def test_killed_run_leaves_no_manifest(tiny, tmp_path, monkeypatch):
    root = tmp_path / "synthetic"
    synthetic.generate(root, **TINY)
    calls = {"n": 0}
    real_render = synthetic.render

    def failing_render(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt("killed")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(root, **TINY)
    assert not (root / "MANIFEST.json").exists()  # the old marker is gone, no new one
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_voc_masks_are_the_drawn_object_with_a_void_band(tiny):
    rows = {r["item"]: r for r in _labels(tiny)}
    for image_id in (tiny / "voc/ImageSets/Segmentation/val.txt").read_text().split():
        name = image_id.rsplit("_", 1)[0]
        label = synthetic.class_names(8).index(name)
        obj = np.asarray(Image.open(tiny / f"voc/SegmentationObject/{image_id}.png"))
        cls = np.asarray(Image.open(tiny / f"voc/SegmentationClass/{image_id}.png"))
        mask = obj == 1
        assert set(np.unique(obj)) == {0, 1, 255}
        assert np.array_equal(cls == label + 1, mask) and np.array_equal(cls == 255, obj == 255)
        band = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool)) & ~mask
        assert np.array_equal(obj == 255, band)
        ys, xs = np.nonzero(mask)
        row = rows[f"val/{name}/{image_id}.png"]
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [int(row[k]) for k in ("x0", "y0", "x1", "y1")]
        bndbox = (tiny / f"voc/Annotations/{image_id}.xml").read_text()
        assert f"<xmin>{xs.min() + 1}</xmin>" in bndbox and f"<xmax>{xs.max() + 1}</xmax>" in bndbox
        assert f"<ymin>{ys.min() + 1}</ymin>" in bndbox and f"<ymax>{ys.max() + 1}</ymax>" in bndbox
        assert f"<name>{name}</name>" in bndbox and "<difficult>0</difficult>" in bndbox
        side = obj.shape[0]
        extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert 0.2 * side <= extent <= 0.7 * side


def test_render_changes_only_object_pixels_and_paints_them():
    size, clutter = 48, 5
    image, mask = synthetic.render(np.random.default_rng(11), 4, 2, size, clutter, 8)
    rng = np.random.default_rng(11)  # replay the draws made before the object
    before = synthetic._draw_clutter(rng, synthetic._background(rng, size), clutter, 8)
    changed = np.any(image != np.clip(np.rint(before), 0, 255).astype(np.uint8), axis=2)
    assert mask.any() and not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    assert not (changed & ~mask).any()  # nothing outside the mask was drawn by the object
    assert changed[mask].mean() > 0.9  # and the object's pixels were drawn


@pytest.mark.parametrize("n_classes", [8, 10])
def test_every_class_shape_is_distinct_at_48px(n_classes):
    masks = [synthetic._object_mask(np.random.default_rng(0), k, 48) for k in range(n_classes)]
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            assert (masks[i] != masks[j]).sum() > 20, (synthetic.class_names(n_classes)[i], synthetic.class_names(n_classes)[j])


def test_texture_match_is_honoured(tmp_path):
    args = dict(image_size=32, n_classes=8, val_per_class=1, cue_conflict_per_class=0, clutter=0)
    for match, per_class, low, high in ((1.0, 2, 1.0, 1.0), (0.0, 6, 0.0, 0.0), (0.6, 15, 0.45, 0.75)):  # 0.6: +-3 sd
        root = tmp_path / f"m{match}"
        synthetic.generate(root, train_per_class=per_class, texture_match=match, **args)
        train = [r for r in _labels(root) if r["split"] == "train"]
        matched = np.mean([r["texture_label"] == r["label"] for r in train])
        assert low <= matched <= high, (match, matched)
    # the mismatched textures are spread over the other classes, not one
    others = {r["texture_label"] for r in _labels(tmp_path / "m0.0") if r["label"] == "0" and r["split"] == "train"}
    assert len(others) >= 4 and "0" not in others


def test_cue_conflict_textures_differ_from_shapes_and_masks_match(tiny):
    names = synthetic.class_names(8)
    rows = [r for r in _labels(tiny) if r["split"] == "cue-conflict"]
    assert len(rows) == 16
    for row in rows:
        shape, texture = Path(row["item"]).stem.rsplit("_", 1)[0].split("-")
        assert shape == row["shape"] != texture and names.index(texture) == int(row["texture_label"])
        mask = np.asarray(Image.open(tiny / "cue-conflict-masks" / shape / Path(row["item"]).name))
        assert set(np.unique(mask)) == {0, 255}
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [int(row[k]) for k in ("x0", "y0", "x1", "y1")]


def test_real_loaders_read_the_generated_layout(tiny):
    names = synthetic.class_names(8)
    images, labels, items, classes = load_split(tiny / "train", 32, names)
    assert images.shape == (24, 32, 32, 3) and classes == names and items[0] == "circle/circle_0000.png"
    assert np.array_equal(images[0], np.asarray(Image.open(tiny / "train/circle/circle_0000.png")))
    samples = load_segmentation(tiny / "voc", "val", 32, names)
    assert [s.label for s in samples] == [k for k in range(8) for _ in range(2)]
    for s in samples:
        obj = np.asarray(Image.open(tiny / f"voc/SegmentationObject/{s.item}.png"))
        assert np.array_equal(s.mask, obj == 1) and np.array_equal(s.ignore, obj == 255)
        ys, xs = np.nonzero(s.mask)
        assert s.boxes.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
    cue = synthetic.load_cue_conflict(tiny, 32, names)
    assert len(cue) == 16 and all(s.label != s.texture_label and s.mask.any() for s in cue)
    assert cue[0].item.startswith("cue-conflict/circle/circle-")


@pytest.mark.parametrize("bad", [dict(n_classes=1), dict(n_classes=11), dict(image_size=16), dict(texture_match=1.5)])
def test_out_of_range_arguments_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        synthetic.generate(tmp_path / "x", **{**TINY, **bad})
