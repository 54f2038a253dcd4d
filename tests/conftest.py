"""Shared fixtures: the repository root, the shared data, a tiny study config."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SHARED = Path(os.environ.get("SWEETSPOT_SHARED", ROOT.parent / "shared"))
GEIRHOS16 = SHARED / "data" / "geirhos16"

torch.set_num_threads(1)


def snakemake_bin() -> str:
    exe = Path(sys.executable).with_name("snakemake")
    return str(exe) if exe.exists() else shutil.which("snakemake")


@pytest.fixture
def torch_global_state():
    """Jobs called in-process pin threads and switch on deterministic algorithms: undo that for other tests."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@pytest.fixture
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


TINY = {
    "benchmark": "synthetic",
    "results": "results",
    "data_dir": "data",
    "device": "cpu",
    "synthetic": {"seed": 0, "image_size": 32, "n_classes": 8, "train_per_class": 12, "val_per_class": 4,
                  "cue_conflict_per_class": 2, "texture_match": 0.8, "clutter": 2},
    "architectures": {"resnet": {"timm": "test_resnet", "kwargs": {}},
                      "vit": {"timm": "test_vit", "kwargs": {"img_size": 32, "patch_size": 4}}},
    "dense": {"epochs": 1, "batch_size": 32, "lr": 0.003},
    "seeds": [0],
    "pruning": {"methods": ["magnitude", "imp", "snip", "random"], "sparsities": [0.5, 0.8],
                "recovery": {"mode": "finetune", "epochs": 1, "lr": 0.001},
                "snip": {"batches": 1}},
    "tasks": {
        "accuracy": {"datasets": ["synthetic-val"]},
        "interpretability": {"datasets": ["synthetic-val"], "n_images": 6, "ig_steps": 4,
                             "smoothgrad_samples": 2, "deletion_steps": 4, "gallery_images": 2},
        "discovery": {"datasets": ["synthetic-val"], "n_images": 8},
        "alignment": {"datasets": ["synthetic-cue-conflict", "synthetic-distortions"], "n_images": 4},
    },
    "stats": {"n_boot": 200},
}


@pytest.fixture
def tiny_config() -> dict:
    return copy.deepcopy(TINY)


def write_study(workdir: Path, config: dict) -> Path:
    """A runnable copy of the workflow in `workdir` with `config` as its config.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "sweetspot", "envs"):
        target = workdir / name
        if not target.exists():
            target.symlink_to(ROOT / name)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def run_snakemake(workdir: Path, *args: str, timeout: int = 1500, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([snakemake_bin(), "--cores", "2", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc
