"""End-to-end: the whole DAG on a tiny config, as a user runs it."""

from __future__ import annotations

import pandas as pd
import pytest

from sweetspot import contract
from conftest import run_snakemake, write_study


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    from conftest import TINY
    import copy

    workdir = write_study(tmp_path_factory.mktemp("study"), copy.deepcopy(TINY))
    run_snakemake(workdir)
    return workdir


def test_tiny_study_runs_end_to_end(finished_study):
    results = finished_study / "results"
    metrics = pd.read_parquet(results / "metrics.parquet")
    contract.validate(metrics)
    assert set(metrics["task"]) == set(contract.TASKS)
    assert set(metrics["method"]) == {"dense", "magnitude", "imp", "snip", "random"}
    assert set(metrics["arch"]) == {"resnet", "vit"}
    for name in ("sweet_spots.csv", "sweet_spots.md", "sweet_spots.parquet", "summary.md"):
        assert (results / name).stat().st_size > 0
    for png in ("plots/curves-accuracy.png", "plots/gains-vit.png", "plots/gallery/resnet-imp.png"):
        assert (results / png).read_bytes()[:4] == b"\x89PNG"
    # every pruned checkpoint hit its target sparsity
    pruned = metrics[metrics["method"] != "dense"].drop_duplicates(["arch", "method", "sparsity"])
    assert ((pruned["sparsity_actual"] - pruned["sparsity"]).abs() <= 0.005).all()


def test_rerun_does_nothing(finished_study):
    proc = run_snakemake(finished_study, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
