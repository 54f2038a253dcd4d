"""End-to-end: the whole DAG on a tiny config, as a user runs it."""

from __future__ import annotations

import copy
import json
import re
import shutil

import pandas as pd
import pytest

from sweetspot import contract
from conftest import TINY, run_snakemake, write_study

FAST = {"warm_start": True, "fuse_evaluation": True}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    # as the default study runs: model jobs forked from a warm server, evaluation fused into them
    # (the SLURM and kill tests run the other way: separate evaluate jobs, fresh processes)
    workdir = write_study(tmp_path_factory.mktemp("study"), {**copy.deepcopy(TINY), **FAST})
    proc = run_snakemake(workdir)
    (workdir / "run.log").write_text(proc.stdout + proc.stderr)
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
    assert "warm start, the job runs as process" in (finished_study / "run.log").read_text()
    for png in ("plots/curves-accuracy.png", "plots/overview.png", "plots/gallery/resnet-imp.png"):
        assert (results / png).read_bytes()[:4] == b"\x89PNG"
    # every pruned checkpoint hit its target sparsity
    pruned = metrics[metrics["method"] != "dense"].drop_duplicates(["arch", "method", "sparsity"])
    assert ((pruned["sparsity_actual"] - pruned["sparsity"]).abs() <= 0.005).all()


def test_report_opens_with_the_summary_and_the_overview(finished_study):
    run_snakemake(finished_study, "--report", "results/report.html")
    page = (finished_study / "results" / "report.html").read_text()
    landing = json.loads(re.search(r"var workflow_desc = (.*);\n", page).group(1))
    assert "When does pruning benefit?" in landing and 'src="data:image/png;base64,' in landing
    assert "system-message" not in page  # docutils took workflow.rst, the front page and every caption
    categories = json.loads(re.search(r"var categories = (\{.*\});\n", page).group(1))
    shown = {path.rsplit("/", 1)[-1] for sub in categories.values() for paths in sub.values() for path in paths}
    assert {"summary.html", "overview.png"} <= {path.rsplit("/", 1)[-1] for path in categories["1 Summary"]["Other"]}
    assert {"summary.html", "overview.png", "overview-exploratory.png", "curves-alignment.png",
            "curves-interpretability-gradcam.png", "sweet_spots.csv", "resnet-imp.png"} <= shown
    assert not any(name.endswith(".svg") for name in shown)  # SVGs are for papers, PNGs for the report


def test_rerun_does_nothing(finished_study):
    proc = run_snakemake(finished_study, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def planned_jobs(workdir) -> set[str]:
    """'rule wildcards' of every job a dry run plans."""
    proc = run_snakemake(workdir, "-n")
    jobs, current = set(), None
    for line in (proc.stdout + proc.stderr).splitlines():
        rule = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if rule:
            if current:
                jobs.add(" ".join(current).strip())
            current = [rule.group(1), ""]
        wildcards = re.match(r"^\s*wildcards: (.*)$", line)
        if wildcards and current:
            current[1] = wildcards.group(1)
    if current:
        jobs.add(" ".join(current).strip())
    return jobs


def test_an_added_sparsity_plans_only_the_jobs_that_depend_on_it(finished_study, tmp_path):
    # (the unfused DAG, with its separate evaluate jobs, is checked the same way on SLURM in test_slurm.py)
    config = {**copy.deepcopy(TINY), **FAST}
    workdir = tmp_path / "study"
    shutil.copytree(finished_study, workdir, symlinks=True)
    config["pruning"]["sparsities"] = [0.5, 0.65, 0.8]
    write_study(workdir, config)
    jobs = planned_jobs(workdir)
    # the new level for every method, and the IMP level above it (it now starts from 0.65)
    expected = {f"prune arch={a}, method={m}, sparsity=0.65, seed=0" for a in ("resnet", "vit")
                for m in ("magnitude", "imp", "snip", "random")}
    expected |= {f"prune arch={a}, method=imp, sparsity=0.8, seed=0" for a in ("resnet", "vit")}
    expected |= {f"gallery arch={a}, method={m}" for a in ("resnet", "vit") for m in ("magnitude", "imp", "snip", "random")}
    expected |= {"aggregate", "plots", "all"}
    assert jobs == expected
