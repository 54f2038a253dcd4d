"""The paper preset end to end: presets/paper.yaml as it is, on tiny datasets in the real on-disk
formats (tests/paper_fixtures.py), the whole DAG through snakemake.

Overridden, and why (everything else is the preset's, protocol and recipe included):
- paths: results, data_dir and `datasets` point at the generated fixtures (the human trials are
  the real CSVs restricted to the written stimuli);
- sizes: image_size 48 with resize_size 54 (the fixture images are 44-80 px; SNIP needs a ResNet
  feature map above 1x1), 1 training epoch,
  2 IMP levels, a few images per task, 100 bootstrap draws, scheduler requests of a 2-core runner;
- architectures: the hub weights of resnet18/50 and ViT-B/32 cannot load offline, so timm's tiny
  test_resnet and test_vit stand in, trained here from scratch (`weights: scratch`) on the
  fixture ImageNet, with the preset's 1000 outputs so that model-vs-human's 16-class decisions
  apply; resnet50 is left out (the same code path as resnet18);
- warm_start: true, an execution setting that saves ~10 CPU-s per job (the preset leaves it off
  for clusters).
Device and AMP stay the preset's `auto`: on a machine with a GPU the same test runs on CUDA.
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml

from conftest import GEIRHOS16, ROOT, run_snakemake, write_study
from paper_fixtures import write_paper_datasets
from sweetspot import catalog, contract
from sweetspot.data.modelvshuman import DATASETS

pytestmark = pytest.mark.slow

PRESET = yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text())
ARCHITECTURES = {
    "resnet": {"timm": "test_resnet", "weights": "scratch", "num_classes": 1000},
    "vit": {"timm": "test_vit", "kwargs": {"img_size": 48, "patch_size": 8}, "weights": "scratch",
            "num_classes": 1000},
}


def tiny_paper_config(root) -> dict:
    config = copy.deepcopy(PRESET)
    config["datasets"] = write_paper_datasets(root / "datasets", human_dir=GEIRHOS16 / "human",
                                              categories=GEIRHOS16 / "categories.json")
    config.update(results="results", data_dir="data", image_size=48, resize_size=54, warm_start=True,
                  architectures=copy.deepcopy(ARCHITECTURES))
    config["dense"].update(epochs=1, batch_size=6)
    config["pruning"]["sparsities"] = [0.2, 0.36]
    config["pruning"]["recovery"]["epochs"] = 1
    tasks = config["tasks"]
    tasks["interpretability"].update(n_images=2, ig_steps=2, deletion_steps=2, gallery_images=1, batch_size=2)
    tasks["discovery"].update(n_images=3)
    tasks["alignment"].update(n_images=8)
    config["stats"]["n_boot"] = 100
    config["resources"] = {"default": {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}}
    return config


@pytest.fixture(scope="module")
def paper_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    workdir = write_study(root / "study", tiny_paper_config(root))
    proc = run_snakemake(workdir)
    (workdir / "run.log").write_text(proc.stdout + proc.stderr)
    return workdir


def test_the_paper_preset_runs_end_to_end_and_writes_every_artifact(paper_study):
    results = paper_study / "results"
    metrics = pd.read_parquet(results / "metrics.parquet")
    contract.validate(metrics)
    assert set(metrics["task"]) == set(catalog.TASKS)
    assert set(metrics["arch"]) == set(ARCHITECTURES)
    assert set(metrics["method"]) == {"dense", "control-finetune", "control-snip", "imp", "snip"}
    datasets = metrics.groupby("task")["dataset"].unique().map(set).to_dict()
    assert datasets["accuracy"] == {"imagenet-val"} and datasets["interpretability"] == {"voc12-seg-val"}
    assert datasets["discovery"] == {"voc07-trainval", "voc12-trainval", "coco20k"}
    assert datasets["alignment"] == {f"mvh-{name}" for name in DATASETS}
    alignment = metrics[metrics["task"] == "alignment"]
    assert {"error_consistency", "shape_bias"} <= set(alignment["metric"])  # real human trials joined
    for name in ("sweet_spots.csv", "sweet_spots.md", "sweet_spots.parquet", "summary.md", "curves.parquet",
                 "human/reference.csv", "human/trials.parquet"):
        assert (results / name).stat().st_size > 0, name
    methods = PRESET["tasks"]["interpretability"]["methods"]
    curves = ["accuracy", "discovery", "alignment", *(f"interpretability-{m}" for m in methods)]
    figures = [f"plots/curves-{name}.{ext}" for name in curves for ext in ("png", "svg")]
    figures += ["plots/overview.png", "plots/overview-exploratory.png"]
    figures += [f"plots/gallery/{arch}-{method}.png" for arch in ARCHITECTURES for method in ("imp", "snip")]
    for figure in figures:
        assert (results / figure).stat().st_size > 0, figure


def test_native_resolution_the_recipe_and_the_prunable_set_are_the_presets(paper_study):
    metrics = pd.read_parquet(paper_study / "results" / "metrics.parquet")
    # LOST at each image's own size: the fixture's VOC and COCO sizes give several grids (stride 16
    # for the dilated ResNet, patch 8 for the ViT), each with fewer patches than k_patches
    k = metrics[(metrics["metric"] == "k_effective") & (metrics["variant"] == "lost")].groupby("arch")["value"]
    assert (k.nunique() > 1).all() and (k.max() < 100).all()
    # the ViT's q/k/v projections stay dense, as torchvision's fused projection in the paper
    vit_imp = (metrics["arch"] == "vit") & (metrics["method"] == "imp")
    layers = metrics[(metrics["metric"] == "layer_sparsity") & vit_imp]
    qkv = layers["item"].str.contains(r"attn\.qkv")
    assert qkv.any() and (layers.loc[qkv, "value"] == 0).all() and (layers.loc[~qkv, "value"] > 0).any()
    sidecar = yaml.safe_load((paper_study / "results" / "models" / "vit" / "imp" / "0.36" / "seed0.safetensors.json")
                             .read_text())
    assert sidecar["parent"].endswith("vit/imp/0.2/seed0.safetensors") and sidecar["num_classes"] == 1000
    assert len(sidecar["train_history"]["loss"]) == 1  # a full (here: 1-epoch) schedule per level
