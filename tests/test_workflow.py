"""End-to-end: the whole DAG on the tiny study (tests/configs/tiny.yaml), as a user runs it, and
what a later edit of its config plans."""

from __future__ import annotations

import copy
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from sweetspot import catalog, contract
from conftest import ROOT, TINY, run_snakemake, write_study

ARCHS = ("resnet", "vit")


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    workdir = write_study(tmp_path_factory.mktemp("study"), copy.deepcopy(TINY))
    proc = run_snakemake(workdir)
    (workdir / "run.log").write_text(proc.stdout + proc.stderr)
    return workdir


def test_tiny_study_runs_end_to_end(finished_study):
    results = finished_study / "results"
    metrics = pd.read_parquet(results / "metrics.parquet")
    contract.validate(metrics)
    assert set(metrics["task"]) == set(catalog.TASKS)
    assert set(metrics["method"]) == {"dense", "control-finetune", "control-snip", "magnitude", "imp", "snip", "random"}
    for name in ("sweet_spots.csv", "sweet_spots.md", "sweet_spots.parquet", "summary.md"):
        assert (results / name).stat().st_size > 0
    assert "warm start, the job runs as process" in (finished_study / "run.log").read_text()
    for png in ("plots/curves-accuracy.png", "plots/overview.png", "plots/gallery/resnet-imp.png"):
        assert (results / png).read_bytes()[:4] == b"\x89PNG"
    pruned = metrics[~metrics["method"].isin(["dense", "control-finetune", "control-snip"])]
    pruned = pruned.drop_duplicates(["arch", "method", "sparsity"])
    assert ((pruned["sparsity_actual"] - pruned["sparsity"]).abs() <= 0.005).all()


def test_every_checkpoint_has_structure_rows_and_the_table_names_controls_and_sweet_spots(finished_study):
    results = finished_study / "results"
    metrics = pd.read_parquet(results / "metrics.parquet")
    checkpoints = metrics.drop_duplicates(["arch", "method", "sparsity", "seed"])
    structure = metrics[metrics["task"] == "structure"].drop_duplicates(["arch", "method", "sparsity", "seed"])
    assert len(structure) == len(checkpoints) == 2 * (3 + 4 * 2)
    table = pd.read_csv(results / "sweet_spots.csv", keep_default_na=False, na_values=[""])
    assert {"control", "sweet_spot", "control_value", "dense_value", "best_any_sparsity"} <= set(table.columns)
    assert set(table.loc[table["method"] == "snip", "control"]) == {"control-snip"}
    assert set(table.loc[table["method"] == "imp", "control"]) == {"control-finetune"}
    curves = pd.read_parquet(results / "curves.parquet")
    spots = curves[curves["sweet_spot"]]
    assert (spots["top1_lower"] > -1.0 / 100).all() and (spots["collapsed_layers"] == 0).all()
    bias = curves[(curves["metric"] == "shape_bias") & (curves["sparsity"] > 0) & np.isfinite(curves["gain"])]
    assert len(bias) and np.isfinite(bias[["ci_low", "ci_high"]].to_numpy(float)).all()  # one seed, still an interval


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


def edited_copy(finished_study, tmp_path, edit) -> set[str]:
    workdir = tmp_path / "study"
    shutil.copytree(finished_study, workdir, symlinks=True)
    config = copy.deepcopy(TINY)
    edit(config)
    write_study(workdir, config)
    return planned_jobs(workdir)


def evaluations(task, checkpoints) -> set[str]:
    return {f"evaluate task={task}, arch={a}, method={m}, sparsity={s}, seed=0" for a, m, s in checkpoints}


def all_checkpoints():
    out = []
    for arch in ARCHS:
        out += [(arch, "dense", "0"), (arch, "control-finetune", "0"), (arch, "control-snip", "0")]
        out += [(arch, m, s) for m in ("magnitude", "imp", "snip", "random") for s in ("0.5", "0.8")]
    return out


def test_an_added_sparsity_plans_only_the_jobs_that_depend_on_it(finished_study, tmp_path):
    jobs = edited_copy(finished_study, tmp_path, lambda c: c["pruning"].update(sparsities=[0.5, 0.65, 0.8]))
    new = [(a, m, "0.65") for a in ARCHS for m in ("magnitude", "imp", "snip", "random")]
    rebuilt = new + [(a, "imp", "0.8") for a in ARCHS]  # the IMP level above it now starts from 0.65
    expected = {f"prune arch={a}, method={m}, sparsity={s}, seed=0" for a, m, s in rebuilt}
    for task in catalog.TASKS:
        expected |= evaluations(task, rebuilt)
    expected |= {f"gallery arch={a}, method={m}" for a in ARCHS for m in ("magnitude", "imp", "snip", "random")}
    expected |= {"aggregate", "plots", "all"}
    assert jobs == expected


def test_a_method_given_its_own_sparsities_plans_only_its_new_levels(finished_study, tmp_path):
    """Random pruning breaks a model far below where magnitude pruning does: random gets its own
    grid, and only random's new level runs (its 0.8 leaves the study, nothing else moves)."""
    jobs = edited_copy(finished_study, tmp_path,
                       lambda c: c["pruning"].update(sparsities_by_method={"random": [0.2, 0.5]}))
    new = [(a, "random", "0.2") for a in ARCHS]
    expected = {f"prune arch={a}, method={m}, sparsity={s}, seed=0" for a, m, s in new}
    for task in catalog.TASKS:
        expected |= evaluations(task, new)
    expected |= {f"gallery arch={a}, method=random" for a in ARCHS} | {"aggregate", "plots", "all"}
    assert jobs == expected


def test_a_changed_task_setting_reruns_only_that_tasks_evaluations(finished_study, tmp_path):
    jobs = edited_copy(finished_study, tmp_path, lambda c: c["tasks"]["discovery"].update(k_patches=50))
    assert jobs == evaluations("discovery", all_checkpoints()) | {"aggregate", "plots", "all"}


def test_an_added_task_plans_only_its_jobs(finished_study, tmp_path):
    """The study finished without the alignment task, then the task is added back to the config."""
    workdir = tmp_path / "study"
    shutil.copytree(finished_study, workdir, symlinks=True)
    without = copy.deepcopy(TINY)
    del without["tasks"]["alignment"]
    write_study(workdir, without)
    run_snakemake(workdir)  # re-aggregates without it
    shutil.rmtree(workdir / "results" / "metrics" / "alignment")
    write_study(workdir, copy.deepcopy(TINY))
    assert planned_jobs(workdir) == evaluations("alignment", all_checkpoints()) | {"aggregate", "plots", "all"}


def test_snakemake_lint_finds_nothing():
    proc = run_snakemake(ROOT, "--lint", "--configfile", str(ROOT / "tests" / "configs" / "tiny.yaml"), check=False)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
