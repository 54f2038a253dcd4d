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


def process_ended(pid: int) -> bool:
    """No such process (gone before or while /proc is read), or a zombie that can do nothing more."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


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


TINY_CONFIG = ROOT / "tests" / "configs" / "tiny.yaml"
TINY = yaml.safe_load(TINY_CONFIG.read_text())  # the smallest study with every stage, task and method


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
