"""How model jobs run changes nothing they compute: a job forked from the warm server gives the
numbers of a fresh process (and dies with its client, reports its failure, never starts a server
inside SLURM), and a fused dense+evaluate job gives those of a separate evaluate job."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from sweetspot.runtime import warmstart as forkserver
from sweetspot.data import synthetic
from snakemake.utils import validate

from conftest import ROOT, SCHEMA, TINY

SERVER = re.compile(r"runs as process (\d+) of server (\d+)")


@pytest.fixture(scope="module")
def short_tmp():
    """A short TMPDIR for the clients: the server's socket path must stay under 108 bytes."""
    folder = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    yield folder
    for sock in Path(folder).rglob("*.sock"):  # stop the servers these tests started
        for line in sock.with_suffix(".log").read_text().splitlines():
            match = re.match(r"sweetspot fork server (\d+) ready", line)
            if match:
                try:
                    os.kill(int(match.group(1)), signal.SIGTERM)
                except ProcessLookupError:
                    pass
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    config = copy.deepcopy(TINY)
    config["data_dir"] = str(root / "data")
    config["synthetic"].update(train_per_class=3, val_per_class=2, cue_conflict_per_class=1)
    config["tasks"] = {"accuracy": {"datasets": ["synthetic-val"]}}
    synthetic.generate(root / "data" / "synthetic", **config["synthetic"])
    validate(config, str(SCHEMA))  # the defaults a workflow run fills in
    return root, config


def dense_job(root: Path, config: dict, name: str, *, epochs: int = 1, evaluate: bool = True) -> dict:
    config = copy.deepcopy(config)
    config["dense"]["epochs"] = epochs
    outputs = {"accuracy": str(root / name / "accuracy.parquet")} if evaluate else {}
    return dict(rule="dense", config=config, wildcards={"arch": "vit", "seed": "0"}, start=None,
                checkpoint=str(root / name / "dense.safetensors"), outputs=outputs,
                log_path=str(root / name / "dense.log"), threads=1)


def client(job: dict, warm: bool, tmp: str, **env) -> subprocess.Popen:
    """A job's own process, as Snakemake starts it: a fresh interpreter calling forkserver.run."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from sweetspot.runtime import warmstart as forkserver; "
            "forkserver.run(json.loads(sys.argv[2]), warm=sys.argv[3] == 'warm')")
    return subprocess.Popen([sys.executable, "-c", code, str(ROOT), json.dumps(job), "warm" if warm else "cold"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": tmp, **env})


def finish(proc: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_a_warm_started_job_gives_the_numbers_of_a_fresh_process(study, short_tmp):
    root, config = study
    runs = {}
    for name, warm in (("cold", False), ("warm", True), ("warm-again", True)):
        code, err = finish(client(dense_job(root, config, name), warm, short_tmp))
        assert code == 0, err
        runs[name] = err
    assert not SERVER.search(runs["cold"])
    first, second = SERVER.search(runs["warm"]), SERVER.search(runs["warm-again"])
    assert first and second and first.group(2) == second.group(2)  # the second job reused the server
    assert first.group(1) != second.group(1)  # each job is its own forked process
    cold = load_file(str(root / "cold" / "dense.safetensors"))
    for name in ("warm", "warm-again"):
        warm = load_file(str(root / name / "dense.safetensors"))
        assert cold.keys() == warm.keys()
        assert all(torch.equal(cold[k], warm[k]) for k in cold)
        pd.testing.assert_frame_equal(pd.read_parquet(root / "cold" / "accuracy.parquet"),
                                      pd.read_parquet(root / name / "accuracy.parquet"))
        assert "warm-started job process" in (root / name / "dense.log").read_text()  # its own CPU and memory


def test_killing_the_job_process_kills_its_forked_child(study, short_tmp):
    root, config = study
    proc = client(dense_job(root, config, "killed", epochs=10_000, evaluate=False), True, short_tmp)
    line = ""
    deadline = time.monotonic() + 300
    while not SERVER.search(line) and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "the client exited before the job started"
    child = int(SERVER.search(line).group(1))
    log = root / "killed" / "dense.log"
    while "epoch 1/" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.2)  # the child is training
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), "the job's forked child outlived its client"
    assert not (root / "killed" / "dense.safetensors").exists()


def test_a_failing_job_exits_nonzero_with_its_traceback(study, short_tmp):
    root, config = study
    job = dense_job(root, config, "failing")
    job["wildcards"]["arch"] = "no_such_arch"
    code, err = finish(client(job, True, short_tmp))
    assert code == 1 and SERVER.search(err)
    assert "Traceback" in err and "KeyError: 'no_such_arch'" in err


def test_inside_slurm_the_job_runs_in_its_own_process(study):
    root, config = study
    tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    try:
        code, err = finish(client(dense_job(root, config, "slurm"), True, tmp, SLURM_JOB_ID="42"))
        assert code == 0, err
        assert "running the job in its own process: inside a SLURM job" in err and not SERVER.search(err)
        assert not list(Path(tmp).rglob("*.sock"))  # no server was started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_edited_library_code_gets_a_new_server(tmp_path, monkeypatch):
    package = tmp_path / "sweetspot"
    shutil.copytree(forkserver.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(forkserver, "PACKAGE", package)
    before = forkserver.server_address()
    assert forkserver.server_address() == before
    (package / "pruning.py").write_text((package / "pruning.py").read_text() + "\n# edited\n")
    assert forkserver.server_address() != before


def test_fused_evaluation_gives_the_numbers_of_a_separate_evaluate_job(study, short_tmp):
    root, config = study
    fused = dense_job(root, config, "fused")
    code, err = finish(client(fused, False, short_tmp))
    assert code == 0, err
    separate = dict(rule="evaluate", config=config, wildcards={"arch": "vit", "method": "dense", "sparsity": "0",
                                                                "seed": "0"},
                    start=None, checkpoint=fused["checkpoint"],
                    outputs={"accuracy": str(root / "separate" / "accuracy.parquet")},
                    log_path=str(root / "separate" / "evaluate.log"), threads=1)
    code, err = finish(client(separate, False, short_tmp))
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(root / "fused" / "accuracy.parquet"),
                                  pd.read_parquet(root / "separate" / "accuracy.parquet"))
