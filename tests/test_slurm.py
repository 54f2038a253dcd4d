"""The cluster profile against a real SLURM cluster: profiles/slurm submits every non-local job
with sbatch (one submission per job, each task's evaluation included), gives the
same results as a local run, and an added sparsity submits only its jobs; with the job groups the
profile documents, a checkpoint's evaluation jobs go to SLURM as one submission that fits a node.

Runs on the single-node cluster from ../shared/tools/local-slurm (root, as in CI) or on any
machine where `sinfo` already works. The shipped profile is used as it is; the command line adds
only what a cluster without accounting needs (job status from squeue), a quicker first status
check, and keeping the SLURM logs of successful jobs so the test can read them.
On a multi-node cluster put the studies on a shared filesystem: `pytest --basetemp=<shared dir>`.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, SHARED, TINY, run_snakemake, snakemake_bin, write_study

SETUP = SHARED / "tools" / "local-slurm" / "setup.sh"
PROFILE = ROOT / "profiles" / "slurm"
LOCAL_CLUSTER_ARGS = (
    "--slurm-status-command", "squeue",  # the local cluster has no accounting, so no sacct
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",
)
# The grouping documented in profiles/slurm/config.yaml, for a cluster whose nodes have 2 CPUs
GROUPED = ("--groups", "evaluate=eval_{arch}_{method}_{sparsity}_{seed}",
           "--group-components", "eval_{arch}_{method}_{sparsity}_{seed}=8", "--cores", "2")
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
KEY_COLUMNS = ["benchmark", "arch", "method", "sparsity", "seed", "task", "dataset", "variant", "metric", "item"]


def _sinfo_works() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:  # installed, but no controller answers
        return False


def _can_start_local_cluster() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and SETUP.is_file()


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(not (_can_start_local_cluster() or _sinfo_works()),
                       reason=f"needs a SLURM cluster: run as root with {SETUP} present, or where `sinfo` works"),
]


def small_study(sparsities: list[float]) -> dict:
    """One architecture, the IMP chain, two tasks: every rule of the DAG with few, quick jobs."""
    config = copy.deepcopy(TINY)
    config["architectures"] = {"resnet": config["architectures"]["resnet"]}
    config["synthetic"].update(train_per_class=6, val_per_class=2, cue_conflict_per_class=1)
    config["pruning"]["methods"] = ["imp"]
    config["pruning"]["sparsities"] = sparsities
    config["tasks"] = {"accuracy": {"datasets": ["synthetic-val"]},
                       "discovery": {"datasets": ["synthetic-val"], "n_images": 4}}
    config["stats"] = {"n_boot": 100}
    # a CPU-only cluster: gpu 0 must not put any GPU option on the sbatch line
    config["resources"] = {"default": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}}
    return config


def run_on_slurm(workdir: Path, limit_s: int, extra: tuple[str, ...] = ()) -> str:
    """Run the study with the shipped profile (and `extra` arguments); return Snakemake's output."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    # a stuck Snakemake ignores SIGTERM; SIGINT also cancels its SLURM jobs
    command = ["timeout", "-s", "INT", "-k", "30", str(limit_s), snakemake_bin(),
               "--profile", str(PROFILE), *LOCAL_CLUSTER_ARGS, *extra]
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env, timeout=limit_s + 60)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"snakemake on SLURM failed ({proc.returncode}):\n{output[-8000:]}")
    return output


def submissions(output: str, workdir: Path) -> dict[str, tuple[str, str]]:
    """SLURM job id -> (rule, wildcards) of every job the plugin submitted with sbatch.

    Each id must own a log file that SLURM wrote under .snakemake/slurm_logs/rule_<rule>/<wildcards>/.
    """
    logs = workdir / ".snakemake" / "slurm_logs"
    jobs = {}
    for job_id, log in SUBMITTED.findall(output):
        log_path = Path(log)
        assert log_path.name == f"{job_id}.log" and log_path.is_file(), f"no SLURM log for job {job_id}: {log}"
        rule_dir, *wildcards = log_path.parent.relative_to(logs).parts
        jobs[job_id] = (rule_dir.removeprefix("rule_"), "/".join(wildcards))
    return jobs


def slurm_records(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """What slurmctld knows of recently finished jobs: state, comment (rule and wildcards), limits."""
    records = {}
    for job_id in job_ids:
        proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"slurmctld forgot job {job_id} (MinJobAge too short?): {proc.stderr}"
        records[job_id] = dict(re.findall(r"(\w+)=(\S*)", proc.stdout))
    return records


def sorted_metrics(results: Path) -> pd.DataFrame:
    metrics = pd.read_parquet(results / "metrics.parquet")
    metrics = metrics.astype({c: str for c in metrics.columns if str(metrics[c].dtype) == "category"})
    return metrics.sort_values(KEY_COLUMNS).reset_index(drop=True)


TASKS = ("accuracy", "discovery", "structure")  # small_study's tasks; structure is always evaluated


def evaluations(method: str, sparsity: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of a checkpoint's evaluation jobs, one per task."""
    return {("evaluate", f"{task}_resnet_{method}_{sparsity}_0") for task in TASKS}


def grid_jobs(sparsities: list[str]) -> set[tuple[str, str]]:
    """(rule, wildcards) of the prune job and the evaluation jobs of each pruned checkpoint."""
    return {("prune", f"resnet_imp_{s}_0") for s in sparsities} | {j for s in sparsities for j in evaluations("imp", s)}


def evaluation_group(method: str, sparsity: str) -> str:
    """The log folder of a checkpoint's bundled evaluation jobs (GROUPED)."""
    return f"group_eval_resnet_{method}_{sparsity}_0_evaluate"


@pytest.fixture(scope="module")
def cluster():
    if _can_start_local_cluster():
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{SETUP} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def studies(cluster, tmp_path_factory):
    """The same study run on SLURM and, at the same time, locally with --cores 2."""
    on_slurm = write_study(tmp_path_factory.mktemp("slurm"), small_study([0.5]))
    local = write_study(tmp_path_factory.mktemp("local"), small_study([0.5]))
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(run_snakemake, local, timeout=600)
        output = run_on_slurm(on_slurm, limit_s=900)
        local_run.result()
    return {"slurm": on_slurm, "local": local, "submitted": submissions(output, on_slurm)}


def test_every_cluster_job_went_through_sbatch(studies):
    submitted = sorted(studies["submitted"].values())
    expected = sorted({("dense", "resnet_0"), ("control", "resnet_finetune_0")} | evaluations("dense", "0")
                      | evaluations("control-finetune", "0") | grid_jobs(["0.5"]))
    assert submitted == expected  # one sbatch each; data, aggregate and plots are local rules
    assert (studies["slurm"] / "results" / "plots" / "curves-accuracy.png").is_file()


def test_slurm_results_equal_local_results(studies):
    on_slurm = sorted_metrics(studies["slurm"] / "results")
    local = sorted_metrics(studies["local"] / "results")
    assert len(on_slurm) > 0 and set(on_slurm["method"]) == {"dense", "control-finetune", "imp"}
    pd.testing.assert_frame_equal(on_slurm, local, check_exact=True)


def test_added_sparsity_submits_only_its_jobs_and_one_group_per_checkpoint(studies):
    workdir = studies["slurm"]
    results = workdir / "results"
    done = {p: p.stat().st_mtime_ns for d in ("models", "metrics") for p in (results / d).rglob("*") if p.is_file()}
    write_study(workdir, small_study([0.5, 0.8]))

    output = run_on_slurm(workdir, limit_s=600, extra=GROUPED)

    submitted = submissions(output, workdir)
    group = evaluation_group("imp", "0.8")
    assert sorted(submitted.values()) == sorted({("prune", "resnet_imp_0.8_0"), (group, "")})
    # slurmctld ran exactly these, with the study's resources and no GPU request
    for job_id, record in slurm_records(list(submitted)).items():
        rule, wildcards = submitted[job_id]
        assert record["JobState"] == "COMPLETED"
        assert "gpu" not in record.get("TresPerJob", "") + record.get("TresPerNode", "")
        if rule == group:
            # three 1-thread tasks on a 2-CPU node: two layers (two tasks, then one) of at most
            # --cores CPUs; memory of the larger layer, the layers' time limits added up
            assert (record["NumCPUs"], record["MinMemoryNode"], record["TimeLimit"]) == ("2", "2000M", "00:20:00")
            group_log = next((workdir / ".snakemake" / "slurm_logs").glob(f"{group}/*.log")).read_text()
            assert all(f"task={task}" in group_log for task in TASKS)
        else:
            assert record["Comment"] == f"rule_{rule}_wildcards_{wildcards}"
            assert record["TimeLimit"] == "00:10:00" and record["MinMemoryNode"] == "1000M"
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in done.items())  # nothing done before was redone
    metrics = sorted_metrics(results)
    assert set(metrics.loc[metrics["sparsity"] == 0.8, "method"]) == {"imp"}
    assert set(metrics.loc[metrics["sparsity"] == 0.8, "task"]) == set(TASKS)
