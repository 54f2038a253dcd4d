"""How a job runs changes nothing it computes: `warmstart.run` calls a function in a child forked
from the warm server or in the job's own process, with the same arguments and log either way; the
child reports its failure, and no server starts inside SLURM. Only this user's processes meet at
the socket (a planted folder, another user's server or client are refused), no job process
outlives its client or its server, and a starting server removes dead servers' files. A real
model job gives the numbers of a fresh process. Apart from the model jobs, the jobs here are
tests/warmstart_jobs.py."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from sweetspot import study as study_module
from sweetspot.runtime import warmstart
from sweetspot.data import synthetic
from snakemake.utils import validate

from conftest import ROOT, SCHEMA, TINY, process_ended

TRAIN_DENSE = "sweetspot.jobs.checkpoints:train_dense"

SERVER = re.compile(r"runs as process (\d+) of server (\d+)")
PYTHONPATH = os.pathsep.join([str(ROOT), str(ROOT / "tests")])  # the checkout and warmstart_jobs


def stop_servers(folder: Path) -> None:
    """SIGTERM the servers whose logs are under `folder`."""
    for log in folder.rglob("*.log"):
        for pid in re.findall(r"sweetspot warm-start server (\d+) ready", log.read_text()):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


@pytest.fixture
def tmp():
    """An XDG_RUNTIME_DIR for the clients, and so for their servers; those are stopped afterwards."""
    folder = tempfile.mkdtemp(prefix="ss", dir="/tmp")  # private, as a real one is
    yield folder
    stop_servers(Path(folder))
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def here(tmp, monkeypatch):
    """This process sees what the clients see, so that server_address gives their server's socket."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", tmp)
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH)
    return tmp


def client_env(tmp: str, **extra: str) -> dict[str, str]:
    """TMPDIR too, so that a client that refuses XDG_RUNTIME_DIR still keeps its server in `tmp`."""
    return {**os.environ, "XDG_RUNTIME_DIR": tmp, "TMPDIR": tmp, "PYTHONPATH": PYTHONPATH, **extra}


def client(target: str, kwargs: dict, warm: bool, tmp: str, log_path: Path | None = None,
           **env: str) -> subprocess.Popen:
    """A job's own process, as Snakemake starts it: a fresh interpreter calling warmstart.run."""
    code = ("import json, sys; from sweetspot.runtime import warmstart; "
            "warmstart.run(sys.argv[1], json.loads(sys.argv[2]), log_path=sys.argv[3] or None, "
            "warm=sys.argv[4] == 'warm')")
    return subprocess.Popen([sys.executable, "-c", code, target, json.dumps(kwargs), str(log_path or ""),
                             "warm" if warm else "cold"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(tmp, **env))


def finish(proc: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_until_started(proc: subprocess.Popen) -> tuple[int, int]:
    """The (job process, server) a warm client reports once its job runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "the client exited before the job started"
        match = SERVER.search(line)
        if match:
            return int(match.group(1)), int(match.group(2))
    raise AssertionError("the job did not start within 60 s")


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within 60 s"
        time.sleep(0.02)


def start_server(address: Path, env: dict[str, str]) -> subprocess.Popen:
    """A server at `address` that preloads nothing: it starts in a second, not ten."""
    code = ("import sys; from pathlib import Path; from sweetspot.runtime import warmstart; "
            "warmstart.serve(Path(sys.argv[1]), preload=())")
    address.parent.mkdir(mode=0o700, exist_ok=True)
    with open(address.with_suffix(".log"), "ab") as log:
        server = subprocess.Popen([sys.executable, "-c", code, str(address)], cwd=ROOT, env=env, stdout=log,
                                  stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not listening(address):
        assert server.poll() is None, address.with_suffix(".log").read_text()
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.05)
    return server


def listening(address: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(address))
            return True
        except OSError:
            return False


@pytest.fixture
def server(here):
    """A light server where the clients of tests/warmstart_jobs.py look for theirs."""
    proc = start_server(warmstart.server_address("warmstart_jobs:report"), client_env(here))
    yield proc
    proc.kill()
    proc.wait()


# --- the runtime, with small jobs --------------------------------------------------------------


def test_the_server_imports_the_module_and_a_forked_child_calls_the_function(server, here, tmp_path):
    reports = []
    for name in ("first", "second"):
        out, log = tmp_path / f"{name}.json", tmp_path / f"{name}.log"
        code, err = finish(client("warmstart_jobs:report", {"path": str(out), "value": {"a": [1, 2]}}, True, here,
                                  log, WARMSTART_TEST=name))
        assert code == 0, err
        job, server_pid = map(int, SERVER.search(err).groups())
        assert server_pid == server.pid
        reports.append(json.loads(out.read_text()))
        assert reports[-1]["pid"] == job and reports[-1]["ppid"] == server.pid  # called in the forked child
        assert reports[-1]["imported_in"] == server.pid  # imported by the server, before it forked
        assert reports[-1]["env"] == name and reports[-1]["cwd"] == os.getcwd()  # the client's environment
        assert reports[-1]["value"] == {"a": [1, 2]}
        assert "reporting to" in log.read_text() and "warm-started job process" in log.read_text()
    assert reports[0]["pid"] != reports[1]["pid"]  # each job is its own process


def test_a_cold_job_runs_here_with_the_json_copy_of_its_arguments_and_its_log(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    out, log = tmp_path / "report.json", tmp_path / "logs" / "cold.log"
    warmstart.run("warmstart_jobs:report", {"path": str(out), "value": (1, 2)}, log_path=str(log), warm=False)
    report = json.loads(out.read_text())
    assert report["pid"] == os.getpid() and report["value"] == [1, 2]  # what a warm job gets: JSON's list
    assert "reporting to" in log.read_text()


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
@pytest.mark.parametrize("target, kwargs, exit_code, stderr, traceback", [
    ("warmstart_jobs:fail", {"message": "boom"}, 1, "RuntimeError: boom", True),
    ("warmstart_jobs:no_such_function", {}, 1, "AttributeError", True),
    ("warmstart_jobs:exit_with", {"code": 3}, 3, "", False),
    ("warmstart_jobs:exit_with", {"code": "stopped: no data"}, 1, "stopped: no data", False),
])
def test_a_job_exits_like_its_function(request, tmp_path, warm, target, kwargs, exit_code, stderr, traceback):
    if warm:
        request.getfixturevalue("server")
    log = tmp_path / "job.log"
    code, err = finish(client(target, kwargs, warm, request.getfixturevalue("here"), log))
    assert code == exit_code, err
    assert bool(SERVER.search(err)) == warm
    assert stderr in err
    assert ("Traceback" in err) == traceback
    assert "job failed" in log.read_text()


def test_bad_targets_and_arguments_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"the target 'warmstart_jobs\.report' is not 'module:function'"):
        warmstart.run("warmstart_jobs.report", {}, log_path=None, warm=True)
    with pytest.raises(TypeError, match=r"kwargs\['config'\]\['sizes'\] is a set, which cannot cross to the job "
                                        r"as JSON"):
        warmstart.run("warmstart_jobs:report", {"config": {"sizes": {1, 2}}}, log_path=None, warm=True)
    with pytest.raises(TypeError, match=r"kwargs\['config'\] has the key 0\.5 \(float\), but JSON keys are strings"):
        warmstart.run("warmstart_jobs:report", {"config": {0.5: "half"}}, log_path=None, warm=True)
    with pytest.raises(TypeError, match=r"kwargs\['path'\] is a PosixPath"):
        warmstart.run("warmstart_jobs:report", {"path": tmp_path}, log_path=None, warm=False)


def test_killing_the_job_process_kills_its_forked_child(server, here, tmp_path):
    out = tmp_path / "out"
    proc = client("warmstart_jobs:write_after", {"path": str(out), "seconds": 3}, True, here)
    job, _ = wait_until_started(proc)
    wait_for(Path(f"{out}.started"))  # the job runs
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not process_ended(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_ended(job), "the job's forked child outlived its client"
    time.sleep(4)  # past the moment the job would have written
    assert not out.exists()


def test_inside_slurm_the_job_runs_in_its_own_process(tmp, tmp_path):
    out = tmp_path / "report.json"
    code, err = finish(client("warmstart_jobs:report", {"path": str(out)}, True, tmp, SLURM_JOB_ID="42"))
    assert code == 0, err
    assert "running the job in its own process: inside a SLURM job" in err and not SERVER.search(err)
    report = json.loads(out.read_text())
    assert report["pid"] == report["imported_in"]  # imported and called in the job's own process
    assert not list(Path(tmp).rglob("*.sock"))  # no server was started


def test_the_server_key_follows_the_code_it_runs(tmp_path, monkeypatch):
    package = tmp_path / "checkout" / "sweetspot"
    shutil.copytree(warmstart.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(warmstart, "PACKAGE", package)
    before = warmstart.server_address(TRAIN_DENSE)
    assert warmstart.server_address(TRAIN_DENSE) == before
    assert warmstart.server_address("sweetspot.jobs.reports:aggregate_job") == before  # one server per package
    (package / "pruning.py").write_text((package / "pruning.py").read_text() + "\n# edited\n")
    assert warmstart.server_address(TRAIN_DENSE) != before
    # the target's own package keys it too: an edited job module outside this package
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "tiny_jobs.py").write_text("def run():\n    pass\n")
    monkeypatch.syspath_prepend(str(jobs))
    first = warmstart.server_address("tiny_jobs:run")
    (jobs / "tiny_jobs.py").write_text("def run():\n    return 1\n")
    assert warmstart.server_address("tiny_jobs:run") != first


# --- only this user's processes, and no job outliving its server ------------------------------

PEER = "sweetspot-peer"  # the second local user the tests below run processes as


@pytest.fixture(scope="module")
def peer() -> tuple[int, int, str]:
    """A second local user (created when missing): its uid, gid, and a Python it may run."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as a second local user")
    try:
        entry = pwd.getpwnam(PEER)
    except KeyError:
        if not shutil.which("useradd"):
            pytest.skip("no useradd to create a second local user")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PEER], check=True)
        entry = pwd.getpwnam(PEER)
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            subprocess.run([python, "-c", "pass"], cwd="/", check=True, capture_output=True,
                           user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
            return entry.pw_uid, entry.pw_gid, python
        except (OSError, subprocess.CalledProcessError):
            continue
    pytest.skip(f"no Python interpreter that user {PEER} may run")


def as_peer(peer: tuple[int, int, str], code: str, *args: str) -> subprocess.Popen:
    uid, gid, python = peer
    return subprocess.Popen([python, "-c", code, *args], cwd="/", user=uid, group=gid, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={"PATH": "/usr/bin:/bin"})


@pytest.fixture
def shared(tmp_path):
    """A folder any user may write, for what the second user's processes report."""
    folder = Path(tempfile.mkdtemp(prefix="ss", dir="/tmp"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("planted", ["link", "open", "foreign"])
def test_a_planted_or_open_socket_folder_gets_no_job(request, tmp, tmp_path, planted):
    folder = Path(tmp) / f"sweetspot-{os.getuid()}"  # in TMPDIR: another user may create names there
    decoy = Path(tmp) / "decoy"
    decoy.mkdir(mode=0o700)
    if planted == "link":  # flipped between a folder of the victim and one of the attacker's in the attack
        folder.symlink_to(decoy)
        message = f"{folder} is a link or a file, not a folder"
    elif planted == "open":
        folder.mkdir()
        folder.chmod(0o755)
        message = f"{folder} belongs to user {os.getuid()} with mode 755, but must be this user's"
    else:
        uid = request.getfixturevalue("peer")[0]
        folder.mkdir(mode=0o700)
        os.chown(folder, uid, -1)
        message = f"{folder} belongs to user {uid} with mode 700"
    out = tmp_path / "report.json"
    code, err = finish(client("warmstart_jobs:report", {"path": str(out)}, True, tmp, XDG_RUNTIME_DIR=""))
    assert code == 0, err
    assert "running the job in its own process: the warm-start server is unavailable" in err and message in err
    report = json.loads(out.read_text())
    assert report["pid"] == report["imported_in"]  # it ran in its own process
    assert not any(decoy.iterdir()) and not list(Path(tmp).rglob("*.sock"))


def test_the_socket_folder_is_xdg_runtime_dir_when_private_else_tmpdir(tmp, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", tmp)
    assert warmstart.server_address(TRAIN_DENSE).parent == Path(tmp) / "sweetspot"
    fallback = Path(tempfile.gettempdir()) / f"sweetspot-{os.getuid()}"
    link = Path(tmp) / "link"
    link.symlink_to(tmp)
    for runtime, mode in ((str(link), 0o700), (tmp, 0o755), ("", 0o700)):
        Path(tmp).chmod(mode)
        monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
        assert warmstart.server_address(TRAIN_DENSE).parent == fallback, (runtime, oct(mode))
    Path(tmp).chmod(0o700)


FAKE_SERVER = """
import json, os, socket, sys
os.umask(0)
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen()
conn, _ = listener.accept()
received = fds = 0
while True:
    data, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(64))
    fds += sum(len(item) // 4 for _, _, item in ancillary)
    if not data:
        break
    received += len(data)
with open(sys.argv[2], "w") as out:
    json.dump({"bytes": received, "fds": fds}, out)
"""


def test_a_server_of_another_user_is_sent_nothing(peer, here, tmp_path, shared):
    address = warmstart.server_address("warmstart_jobs:report")
    address.parent.mkdir(mode=0o700)
    # The setting an attacker needs, made by hand: their socket inside the victim's folder.
    Path(here).chmod(0o711)
    address.parent.chmod(0o777)
    fake = as_peer(peer, FAKE_SERVER, str(address), str(shared / "received.json"))
    deadline = time.monotonic() + 30
    while not address.exists():
        assert fake.poll() is None and time.monotonic() < deadline, fake.stdout.read()
        time.sleep(0.05)
    address.parent.chmod(0o700)
    Path(here).chmod(0o700)
    out = tmp_path / "report.json"
    code, err = finish(client("warmstart_jobs:report", {"path": str(out)}, True, here))
    assert code == 0, err
    assert f"{address} is served by process {fake.pid} of user {peer[0]}, not by this user" in err
    assert "nothing was sent to it" in err and json.loads(out.read_text())["pid"] != fake.pid  # ran here instead
    fake.wait(timeout=30)
    assert json.loads((shared / "received.json").read_text()) == {"bytes": 0, "fds": 0}


FOREIGN_CLIENT = """
import json, socket, struct, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
job = {"target": "warmstart_jobs:report", "kwargs": {"path": sys.argv[2]}, "log_path": None, "cwd": "/",
       "env": {}}
payload = json.dumps(job).encode()
try:
    socket.send_fds(sock, [struct.pack("!Q", len(payload))], [1, 2])
    sock.sendall(payload)
    print("answer", sock.recv(64))
except OSError as error:
    print("refused", error)
"""


def test_the_server_refuses_a_client_of_another_user(peer, server, here, tmp_path, shared):
    address = warmstart.server_address("warmstart_jobs:report")
    for path, mode in ((Path(here), 0o711), (address.parent, 0o711), (address, 0o777)):
        path.chmod(mode)  # so that the second user can reach the socket at all
    out = shared / "report.json"
    foreign = as_peer(peer, FOREIGN_CLIENT, str(address), str(out))
    answer, _ = foreign.communicate(timeout=30)
    assert answer.startswith("answer b''") or answer.startswith("refused"), answer  # closed, nothing started
    assert not out.exists()
    log = address.with_suffix(".log").read_text()
    assert f"refused a connection from process {foreign.pid} of user {peer[0]}" in log
    for path in (Path(here), address.parent):
        path.chmod(0o700)
    code, err = finish(client("warmstart_jobs:report", {"path": str(tmp_path / "mine.json")}, True, here))
    assert code == 0 and SERVER.search(err).group(2) == str(server.pid), err  # its own user's jobs still run


def test_a_killed_server_takes_its_job_with_it_and_a_rerun_recovers(server, here, tmp_path):
    out = tmp_path / "out"
    proc = client("warmstart_jobs:write_after", {"path": str(out), "seconds": 3}, True, here)
    job, server_pid = wait_until_started(proc)
    assert server_pid == server.pid
    wait_for(Path(f"{out}.started"))  # the job runs
    server.kill()
    assert proc.wait(timeout=60) == 1
    assert process_ended(job), "the client exited while its job's process still ran"
    assert f"the warm-start server {server_pid} stopped during the job; ending job process {job}" in proc.stderr.read()
    time.sleep(4)  # past the moment the job would have written
    assert not out.exists(), "the job wrote its output after its client had failed"
    # The rerun starts a new server (with the full preload) over the dead one's socket, and does the job.
    code, err = finish(client("warmstart_jobs:write_after", {"path": str(out), "seconds": 0}, True, here))
    assert code == 0 and int(SERVER.search(err).group(2)) != server_pid, err
    assert out.read_text() == "written"


def test_a_starting_server_removes_only_the_files_of_servers_that_are_gone(here):
    address = warmstart.server_address("warmstart_jobs:report")
    folder = address.parent
    folder.mkdir(mode=0o700)
    dead, live, starting = "a" * 20, "b" * 20, "c" * 20
    with socket.socket(socket.AF_UNIX) as gone_socket:
        gone_socket.bind(str(folder / f"{dead}.sock"))  # a socket file nobody listens at
    for name in (f"{dead}.log", f"{dead}.lock", f"{dead}.4242.tmp", f"{live}.log", f"{starting}.log", "notes.txt"):
        (folder / name).write_text("")
    with socket.socket(socket.AF_UNIX) as live_socket, open(folder / f"{starting}.lock", "w") as lock:
        live_socket.bind(str(folder / f"{live}.sock"))
        live_socket.listen()
        fcntl.flock(lock, fcntl.LOCK_EX)  # a client starting that server holds it
        proc = start_server(address, client_env(here))
        proc.kill()
        proc.wait()
    left = {path.name for path in folder.iterdir()}
    assert not {name for name in left if name.startswith(dead)}
    assert {f"{live}.sock", f"{live}.log", f"{starting}.lock", f"{starting}.log", "notes.txt"} <= left
    assert address.with_suffix(".log").name in left


# --- real model jobs ---------------------------------------------------------------------------


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


EVALUATE_TASK = "sweetspot.jobs.evaluation:evaluate_task"


def job_args(root: Path, config: dict, name: str) -> tuple[dict, dict]:
    """The arguments workflow/scripts/model_job.py gives the dense and accuracy jobs of the vit."""
    common = dict(arch="vit", arch_cfg=config["architectures"]["vit"], seed=0, data=study_module.data_params(config),
                  device="cpu", amp=False, threads=1)
    dense = dict(out=str(root / name / "dense.safetensors"), schedule=study_module.schedule(config, "vit"), **common)
    accuracy = dict(out=str(root / name / "accuracy.parquet"), task="accuracy", settings=config["tasks"]["accuracy"],
                    method="dense", sparsity="0", checkpoint=dense["out"], **common)
    return dense, accuracy


def test_a_warm_started_model_job_gives_the_numbers_of_a_fresh_process(study, tmp):
    root, config = study
    runs = {}
    for name, warm in (("cold", False), ("warm", True), ("warm-again", True)):
        dense, accuracy = job_args(root, config, name)
        code, err = finish(client(TRAIN_DENSE, dense, warm, tmp, root / name / "dense.log"))
        assert code == 0, err
        runs[name] = err
        code, err = finish(client(EVALUATE_TASK, accuracy, warm, tmp, root / name / "accuracy.log"))
        assert code == 0, err
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
