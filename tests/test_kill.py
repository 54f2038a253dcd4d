"""Killed jobs: SIGKILL at the worst moments, rerun, and get exactly the uninterrupted result.

One study is run without interruption (the reference) while a copy of it is killed three
times: a prune job's process in mid-training, the whole Snakemake process tree the moment an
evaluate job has written its first task file, and the aggregate job right after it wrote
metrics.parquet. After each kill no output of the killed job may be taken as finished: it is
absent, or (when Snakemake itself died) whole but marked incomplete so that no run uses it.
The last rerun must reproduce the reference's metrics.parquet value for value. A warm-start
server killed in the middle of a job fails that job for good: its forked process ends before
Snakemake removes the outputs, so nothing appears afterwards, and a rerun completes.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, process_ended, snakemake_bin, write_study

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds job processes through /proc"),
]

# The smallest study with every stage and every task: one architecture, one pruned checkpoint.
CONFIG = copy.deepcopy(TINY)
CONFIG["architectures"] = {"resnet": TINY["architectures"]["resnet"]}
CONFIG["pruning"]["methods"] = ["magnitude"]
CONFIG["pruning"]["sparsities"] = [0.5]
TARGET = "results/metrics.parquet"  # what the comparison needs; plots and galleries add nothing here
PRUNED = "resnet/magnitude/0.5/seed0"
STEP_TIMEOUT = 480  # seconds any one wait may take before the test fails instead of hanging


def start(workdir: Path, *args: str, cores: int = 2, target: str = TARGET, **env: str) -> subprocess.Popen:
    """Snakemake in its own session, so that this test can kill exactly its process tree."""
    log = workdir / f"snakemake-{time.monotonic_ns()}.log"
    with open(log, "w") as fh:
        run = subprocess.Popen([snakemake_bin(), "--cores", str(cores), *args, target], cwd=workdir, stdout=fh,
                               stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0", **env},
                               start_new_session=True)
    run.log_path = log
    return run


def output_of(run: subprocess.Popen) -> str:
    return run.log_path.read_text()


def finish(run: subprocess.Popen) -> int:
    try:
        return run.wait(timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_tree(run)
        raise AssertionError(f"snakemake did not finish within {STEP_TIMEOUT} s:\n{output_of(run)[-3000:]}")


def wait_for(condition: Callable[[], bool], run: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not condition():
        if run.poll() is not None:
            raise AssertionError(f"snakemake ended ({run.returncode}) before {what}:\n{output_of(run)[-3000:]}")
        if time.monotonic() > deadline:
            kill_tree(run)
            raise AssertionError(f"timed out waiting for {what}:\n{output_of(run)[-3000:]}")
        time.sleep(0.05)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def descendants(pid: int) -> list[int]:
    children, found, todo = _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def job_processes(run: subprocess.Popen, rule: str) -> list[int]:
    """The Python processes of this run that execute a script job of `rule`.

    Every model job runs workflow/scripts/model_job.py and every report job report_job.py, so the
    rule is told apart by its log folder, which Snakemake writes into the job's copy of the script.
    """
    pids = []
    for pid in descendants(run.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            scripts = [Path(f"/proc/{pid}/cwd", arg) for arg in argv if ".snakemake/scripts/" in arg]
            if "python" in Path(argv[0]).name and any(f"logs/{rule}".encode() in s.read_bytes() for s in scripts):
                pids.append(pid)
        except OSError:
            continue  # the process or its script is gone meanwhile
    return pids


def kill_tree(run: subprocess.Popen) -> None:
    """SIGKILL snakemake and every process it started, as a crashed node would."""
    tree = descendants(run.pid)
    for pid in [run.pid, *tree]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    run.wait(timeout=30)


def present(workdir: Path, relative: str) -> bool:
    return (workdir / relative).exists()


def visible_files(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_killed_jobs_leave_nothing_complete_and_reruns_reproduce_the_uninterrupted_metrics(tmp_path):
    reference_dir = write_study(tmp_path / "reference", copy.deepcopy(CONFIG))
    killed_dir = write_study(tmp_path / "killed", copy.deepcopy(CONFIG))
    reference = start(reference_dir, cores=1)
    runs = [reference]
    try:
        # 1. A prune job killed in mid-training: Snakemake sees it fail and stops.
        run = start(killed_dir)
        runs.append(run)
        checkpoint = f"results/models/{PRUNED}.safetensors"
        prune_log = killed_dir / f"results/logs/prune/{PRUNED}.log"
        wait_for(lambda: job_processes(run, "prune") and prune_log.exists() and prune_log.stat().st_size > 0,
                 run, "the prune job to log that it started")
        for pid in job_processes(run, "prune"):
            os.kill(pid, signal.SIGKILL)
        assert finish(run) != 0
        assert not present(killed_dir, checkpoint), "a killed prune job left its checkpoint"
        assert "Error in rule prune" in output_of(run)

        # 2. The whole process tree killed as soon as the evaluate job wrote its first task file.
        run = start(killed_dir)
        runs.append(run)
        outputs = [f"results/metrics/{task}/{PRUNED}.parquet" for task in CONFIG["tasks"]]
        wait_for(lambda: any(present(killed_dir, p) for p in outputs), run, "the evaluate job's first output")
        kill_tree(run)
        written = [p for p in outputs if present(killed_dir, p)]
        assert 0 < len(written) < len(outputs), "the kill was meant to land between two outputs"
        for p in written:
            pd.read_parquet(killed_dir / p)  # each file is whole (atomic write), only the job is unfinished
        assert present(killed_dir, checkpoint)  # the earlier, finished job keeps its result
        # What was written belongs to an unfinished job, and Snakemake knows: a plain run refuses to use it.
        dry = subprocess.run([snakemake_bin(), "--cores", "1", "-n", TARGET], cwd=killed_dir, capture_output=True,
                             text=True, timeout=STEP_TIMEOUT, env={**os.environ, "PYTHONHASHSEED": "0"})
        assert dry.returncode != 0 and "incomplete" in dry.stdout + dry.stderr
        assert all(p in dry.stdout + dry.stderr for p in written)

        # Snakemake itself was killed too, so its lock stayed: the user unlocks, as its message says.
        unlock = subprocess.run([snakemake_bin(), "--unlock", TARGET], cwd=killed_dir, capture_output=True,
                                text=True, timeout=STEP_TIMEOUT)
        assert unlock.returncode == 0, unlock.stderr[-3000:]

        # 3. The aggregate job killed right after it wrote metrics.parquet, before the tables.
        run = start(killed_dir, "--rerun-incomplete")
        runs.append(run)
        metrics = killed_dir / TARGET
        wait_for(lambda: metrics.exists() and job_processes(run, "aggregate"), run, "aggregate to write metrics.parquet")
        for pid in job_processes(run, "aggregate"):
            os.kill(pid, signal.SIGKILL)
        assert finish(run) != 0
        assert not present(killed_dir, TARGET), "the failed aggregate job's metrics.parquet was kept"
        assert not present(killed_dir, "results/summary.md")

        # 4. A plain rerun completes (the failed job left no incomplete marker) and equals the reference.
        run = start(killed_dir)
        runs.append(run)
        assert finish(run) == 0, output_of(run)[-3000:]
        assert finish(reference) == 0, output_of(reference)[-3000:]
    finally:
        for run in runs:
            if run.poll() is None:
                kill_tree(run)
    # Besides the hidden temporary file a killed write may leave, the two runs hold the same files.
    assert visible_files(killed_dir) == visible_files(reference_dir)
    got = pd.read_parquet(killed_dir / TARGET)
    want = pd.read_parquet(reference_dir / TARGET)
    assert len(want) > 0 and set(want["task"]) == {*CONFIG["tasks"], "structure"}
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # The pruned weights that were redone after the kill are the same tensors.
    redone, uninterrupted = (load_file(d / checkpoint) for d in (killed_dir, reference_dir))
    assert redone.keys() == uninterrupted.keys()
    assert all(torch.equal(redone[k], uninterrupted[k]) for k in redone)


def test_a_killed_warm_start_server_fails_its_job_for_good_and_a_rerun_completes(tmp_path):
    config = copy.deepcopy(CONFIG)
    config.update(warm_start=True, tasks={"accuracy": CONFIG["tasks"]["accuracy"]})
    config["pruning"]["recovery"]["epochs"] = 20  # seconds of training: time to kill the server mid-job
    workdir = write_study(tmp_path / "study", config)
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)  # the servers' private folder, apart from the user's own servers
    checkpoint = workdir / f"results/models/{PRUNED}.safetensors"
    prune_log = workdir / f"results/logs/prune/{PRUNED}.log"
    run = start(workdir, target=str(checkpoint.relative_to(workdir)), XDG_RUNTIME_DIR=str(runtime))
    try:
        started = re.compile(r"runs as process (\d+) of server (\d+)")
        wait_for(lambda: "epoch 1/" in (prune_log.read_text() if prune_log.exists() else "")
                 and len(started.findall(output_of(run))) == 2, run, "the prune job to train")
        job, server = map(int, started.findall(output_of(run))[-1])  # dense ran first, then prune
        os.kill(server, signal.SIGKILL)
        assert finish(run) != 0
        assert "Error in rule prune" in output_of(run) and "stopped during the job" in output_of(run)
        assert process_ended(job), "the job's process outlived the Snakemake run that failed it"
        time.sleep(5)  # the job would have gone on training and then written
        assert not checkpoint.exists(), "the job of a killed server wrote its checkpoint after Snakemake failed it"
        run = start(workdir, target=str(checkpoint.relative_to(workdir)), XDG_RUNTIME_DIR=str(runtime))
        assert finish(run) == 0, output_of(run)[-3000:]
        assert checkpoint.exists() and started.search(output_of(run))  # warm again, with a new server
    finally:
        if run.poll() is None:
            kill_tree(run)
        for log in runtime.rglob("*.log"):  # the rerun's server
            for pid in re.findall(r"warm-start server (\d+) ready", log.read_text()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)
