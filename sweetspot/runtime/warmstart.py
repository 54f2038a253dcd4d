"""Warm start: run a job's function in a process forked from a server that has imported torch.

A job that imports torch, torchvision (which imports torch._dynamo), timm, captum and pandas
spends about 10 CPU-seconds before its first line of work: on two cores that was about 40 % of
the default study. `run("module:function", kwargs, ...)` with warm=True starts (or reuses) a
server that imports those once (PRELOAD); the job's own process connects to it over a UNIX
socket, hands over its stdout and stderr, and the server forks a child that calls the function.
A forked child is the process a fresh interpreter would be after the same imports, so the
numbers are the same (tests/test_warmstart.py compares them). The runtime knows nothing of what
it runs: the workflow's scripts name the function and its arguments.

What keeps the numbers right:
- the server runs no threads of its own (forking a threaded process can hand the child a held
  lock; the one thread its imports start, pyarrow's jemalloc purger, is fork-safe) and never
  runs job code itself (it imports a job's module before forking, so that later jobs find it
  imported, but calls functions only in children), so no torch thread pool or CUDA context
  exists when it forks;
- the child gets the job's environment and working directory, and the function gets its
  arguments decoded from JSON whether it runs warm or not;
- the socket's name hashes the interpreter, PYTHONPATH, the checkout's location and the source
  files of this package and of the target's package: edited code, or another checkout, gets
  its own server; a server exits after IDLE_SECONDS without jobs;
- inside a SLURM allocation (SLURM_JOB_ID set) jobs always run in their own process: a server
  would belong to the first job's cgroup and die with it.

What keeps it private (a job hands the server its environment and output streams):
- the socket lives in a folder only this user may use, $XDG_RUNTIME_DIR/sweetspot, else
  $TMPDIR/sweetspot-<uid>; the folder is opened without following links, checked on the opened
  descriptor and reached through it, so another user cannot redirect jobs by planting or
  swapping its name;
- each end checks the other's user id (SO_PEERCRED) before it sends or reads anything.

What keeps a failed job failed: Snakemake removes a failed job's outputs, and if a job process
wrote them afterwards, the next run would take the job as done. So no job process outlives the
process Snakemake waits for:
- the server kills a child whose client closed its connection (Snakemake cancelled or killed
  the job);
- a child dies with its server (PR_SET_PDEATHSIG), and a client that sees its server vanish
  kills the child and waits until it has ended before it exits non-zero;
- a server starting up removes the lock, log and socket files of servers that are gone.

When no server can be reached or started, the job runs in its own process and says why on
stderr. A warm job's Snakemake benchmark file measures its client process: the wall time is the
job's, cpu_time and max_rss are not; the child logs its own CPU time and peak memory at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import re
import resource
import select
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .joblog import job_logging

PACKAGE = Path(__file__).resolve().parents[1]  # the sweetspot package: its sources key the server
IDLE_SECONDS = 120  # long enough to bridge the gaps between a study's jobs
START_TIMEOUT = 300  # the server's imports take ~10 s alone, longer on a loaded machine
EXIT_TIMEOUT = 30  # how long a client whose server vanished waits for the killed job process to end
HEADER = struct.Struct("!Q")
CREDENTIALS = struct.Struct("3i")  # struct ucred, what SO_PEERCRED gives: pid, uid, gid
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# The heavy third-party modules jobs import (with these, a model job's own imports take 0.2 s, not 10);
# the server imports them once before it accepts jobs.
PRELOAD = ("torch", "torchvision", "timm", "captum.attr", "pandas", "pyarrow.parquet", "scipy.ndimage", "jsonschema",
           "safetensors.torch", "PIL.Image")
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # module:function
SERVER_FILE = re.compile(r"([0-9a-f]{20})\.(?:sock|lock|log|\d+\.tmp)")  # <key>.<what> in the private folder


def run(target: str, kwargs: Mapping[str, Any], *, log_path: str | None, warm: bool) -> None:
    """Call `module:function(**kwargs)` in a warm forked child, or in this process; exit like it did.

    Either way the call runs inside `joblog.job_logging(log_path)`, so the function does no
    logging set-up of its own. kwargs cross a socket as JSON: they must be JSON values, and the
    function gets their JSON-decoded copy either way (tuples arrive as lists). The target's
    module must be importable from this checkout or PYTHONPATH: the server does not see
    sys.path changes made in this process.
    """
    if not TARGET.fullmatch(target):
        raise ValueError(f"warm start: the target {target!r} is not 'module:function', "
                         "e.g. 'sweetspot.jobs.checkpoints:model_job'")
    _check_json(kwargs, "kwargs")
    kwargs = json.loads(json.dumps(kwargs))
    job = {"target": target, "kwargs": kwargs, "log_path": log_path}
    reason = _cannot_warm_start(warm)
    for _ in range(2 if reason is None else 0):  # a server may close between connect and request
        try:
            connection = _connect_or_start(target)
        except OSError as error:
            reason = f"the warm-start server is unavailable ({error})"
            break
        with connection:
            code = _run_remote(connection, job)
        if code is None:
            reason = "the warm-start server closed before it started the job"
            continue
        if code:
            sys.exit(code)
        return
    if warm:
        print(f"sweetspot: running the job in its own process: {reason}", file=sys.stderr, flush=True)
    _call(target, kwargs, log_path)


def _call(target: str, kwargs: Mapping[str, Any], log_path: str | None) -> None:
    with job_logging(log_path):  # an import error of the target lands in the job's log too
        module, _, name = target.partition(":")
        getattr(importlib.import_module(module), name)(**kwargs)


def _check_json(value: Any, where: str) -> None:
    """Raise TypeError naming the first part of `value` that JSON cannot carry."""
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"warm start: {where} has the key {key!r} ({type(key).__name__}), but JSON keys "
                                "are strings: use a string key")
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
    else:
        raise TypeError(f"warm start: {where} is a {type(value).__name__}, which cannot cross to the job as JSON: "
                        "pass strings, numbers, booleans, None, lists or dicts")


def _cannot_warm_start(warm: bool) -> str | None:
    if not warm:
        return "warm_start is off"
    if os.environ.get("SLURM_JOB_ID"):
        return "inside a SLURM job"
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self/fd"):
        return "it needs Linux with /proc (peer credentials, parent-death signal, /proc/self/fd)"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return "this system has no pidfd_open (Linux 5.3 and Python 3.9 have it)"
    return None


# --- the private folder ----------------------------------------------------------------------
# Jobs hand the server their environment and output streams, so the socket must be this user's
# and nobody else's. Another user can plant the folder's name as a link to flip between folders,
# so it is opened without following links, checked on the opened descriptor, and every later use
# goes through that descriptor: /proc/self/fd/N/<name> for the socket (AF_UNIX takes no dir_fd),
# dir_fd for files (without /proc there is no warm start). A name swapped after the check is
# never followed; and both ends check the other's user id (SO_PEERCRED) before they send
# anything, whatever the folder.


def server_address(target: str) -> Path:
    """Where the server for `target` listens: this user's private folder, named by a key of its code.

    The key changes with the interpreter, PYTHONPATH (where the server finds modules), the
    checkout's location and any source file of this package or of the target's top-level
    package, which the server imports.
    """
    digest = hashlib.sha256()
    for part in (os.path.realpath(sys.executable), sys.version, os.environ.get("PYTHONPATH", ""), str(PACKAGE)):
        digest.update(part.encode() + b"\0")
    for path in sorted(set(PACKAGE.rglob("*.py")) | set(_package_sources(target))):
        info = path.stat()
        digest.update(f"{path}:{info.st_mtime_ns}:{info.st_size}\0".encode())
    return _folder() / f"{digest.hexdigest()[:20]}.sock"


def _folder() -> Path:
    """$XDG_RUNTIME_DIR/sweetspot when that folder is this user's and private, else $TMPDIR/sweetspot-<uid>."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        with contextlib.suppress(OSError):
            info = os.lstat(runtime)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
                return Path(runtime) / "sweetspot"
    return Path(tempfile.gettempdir()) / f"sweetspot-{os.getuid()}"


def _package_sources(target: str) -> list[Path]:
    """The source files of the target's top-level module or package, found without importing it."""
    top = target.partition(":")[0].partition(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise ModuleNotFoundError(f"warm start: no module named {top!r} (the target {target!r})", name=top)
    if spec.submodule_search_locations:
        return [path for root in spec.submodule_search_locations for path in Path(root).rglob("*.py")]
    return [Path(spec.origin)] if spec.origin and os.path.isfile(spec.origin) else []


def _open_private(folder: Path) -> int:
    """A descriptor of `folder` (made if missing); PermissionError unless it is a folder of this user's, private."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PermissionError(f"{folder} is a link or a file, not a folder: remove it (another user may have "
                                  "planted it to receive jobs)") from None
        raise
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        os.close(fd)
        raise PermissionError(f"{folder} belongs to user {info.st_uid} with mode {info.st_mode & 0o777:o}, but must be "
                              f"this user's ({os.getuid()}) and private: remove it, or chown it and chmod 700")
    return fd


def _via(folder: int, name: str) -> str:
    """`name` in the opened folder, reached through its descriptor rather than its name."""
    return f"/proc/self/fd/{folder}/{name}"


def _peer(sock: socket.socket) -> tuple[int, int]:
    """The (pid, uid) of the process at the other end of `sock`, as the kernel knows them."""
    pid, uid, _ = CREDENTIALS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CREDENTIALS.size))
    return pid, uid


def _lock(folder: int, key: str) -> int:
    """Hold <key>.lock: while one client starts that server, the others wait and no cleanup takes its files."""
    while True:
        lock = os.open(f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(f"{key}.lock", dir_fd=folder, follow_symlinks=False).st_ino == os.fstat(lock).st_ino:
                return lock
        os.close(lock)  # a cleanup removed the file while we waited for it: lock the one in its place


# --- client -----------------------------------------------------------------------------------


def _connect(folder: int, address: Path) -> socket.socket | None:
    """A connection to this user's server at `address`, or None when none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_via(folder, address.name))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    pid, uid = _peer(sock)
    if uid != os.getuid():
        sock.close()
        raise PermissionError(f"{address} is served by process {pid} of user {uid}, not by this user "
                              f"({os.getuid()}); nothing was sent to it: remove that socket")
    return sock


def _connect_or_start(target: str) -> socket.socket:
    address = server_address(target)
    folder = _open_private(address.parent)  # PermissionError (an OSError) unless the folder is private
    try:
        sock = _connect(folder, address)
        if sock is not None:
            return sock
        # One client starts the server; the others wait on the lock, then connect to it.
        lock = _lock(folder, address.stem)
        try:
            sock = _connect(folder, address)
            if sock is not None:
                return sock
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.name, dir_fd=folder)  # a dead server's socket
            return _start(folder, address)
        finally:
            os.close(lock)
    finally:
        os.close(folder)


def _start(folder: int, address: Path) -> socket.socket:
    log = address.with_suffix(".log")
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    server_log = os.open(log.name, flags, 0o600, dir_fd=folder)
    try:
        path = os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))
        server = subprocess.Popen(
            [sys.executable, "-m", "sweetspot.runtime.warmstart", str(address)],
            cwd=PACKAGE.parent, env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.DEVNULL, stdout=server_log, stderr=server_log, start_new_session=True)
    finally:
        os.close(server_log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        sock = _connect(folder, address)
        if sock is not None:
            return sock
        if server.poll() is not None:
            raise OSError(f"it exited with code {server.returncode}; see {log}")
        time.sleep(0.1)
    server.kill()
    raise OSError(f"it did not start within {START_TIMEOUT} s; see {log}")


def _send(sock: socket.socket, message: Mapping[str, Any], fds: list[int] | None = None) -> None:
    payload = json.dumps(message).encode()
    header = HEADER.pack(len(payload))
    if fds:
        socket.send_fds(sock, [header], fds)
    else:
        sock.sendall(header)
    sock.sendall(payload)


def _recv_exact(sock: socket.socket, n: int, first: bytes = b"") -> bytes:
    data = bytearray(first)
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        data += chunk
    return bytes(data)


def _recv(sock: socket.socket, max_fds: int = 0) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if max_fds:
        first, fds, _, _ = socket.recv_fds(sock, HEADER.size, max_fds)
        if not first:
            raise ConnectionError("connection closed before a message")
    else:
        first = b""
    (length,) = HEADER.unpack(_recv_exact(sock, HEADER.size, first))
    return json.loads(_recv_exact(sock, length)), fds


def _run_remote(sock: socket.socket, job: Mapping[str, Any]) -> int | None:
    """The job's exit code, or None when the server closed before starting it."""
    sys.stdout.flush()
    sys.stderr.flush()
    request = {**job, "cwd": os.getcwd(), "env": dict(os.environ)}
    try:
        _send(sock, request, [sys.stdout.fileno(), sys.stderr.fileno()])
        started, _ = _recv(sock)
    except (ConnectionError, BrokenPipeError):
        return None  # nothing started: safe to try again
    pid, server = int(started["pid"]), int(started["server"])
    print(f"sweetspot: warm start, the job runs as process {pid} of server {server}", file=sys.stderr, flush=True)
    # Opened now: the server reaps the child only after it has ended, so the pid is not free for reuse
    # unless the job is done already (then None, or a reused pid only after a full wrap of pid numbers).
    try:
        process = os.pidfd_open(pid)
    except ProcessLookupError:
        process = None
    try:
        finished, _ = _recv(sock)
    except ConnectionError:
        print(f"sweetspot: the warm-start server {server} stopped during the job; ending job process {pid}",
              file=sys.stderr, flush=True)
        _end(process, pid)
        return 1
    finally:
        if process is not None:
            os.close(process)
    return int(finished["exit"])


def _end(process: int | None, pid: int) -> None:
    """Kill the job's process and wait until it has ended, so that it writes nothing after its job failed.

    The child also dies with its server (PR_SET_PDEATHSIG); this covers it still being on its way out
    when Snakemake, seeing this process fail, removes the job's outputs.
    """
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(process, signal.SIGKILL)
    if not select.select([process], [], [], EXIT_TIMEOUT)[0]:
        print(f"sweetspot: job process {pid} has not ended {EXIT_TIMEOUT} s after SIGKILL; end it before rerunning "
              "this job, or it may still write outputs", file=sys.stderr, flush=True)


# --- server -----------------------------------------------------------------------------------


def _child(request: Mapping[str, Any], fds: list[int], close: list[socket.socket], folder: int,
           server: int, prctl: Callable[..., int]) -> None:
    """In the forked child: become the job's process, run it, never return."""
    code = 1
    try:
        # Die with the server, SIGKILL included, so that no job outlives the process its client
        # waits on (it is the forking thread's death that counts: the server forks from its only one).
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != server:  # the server ended before the signal was armed
            os._exit(1)
        for sock in close:
            sock.close()
        os.close(folder)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _call(request["target"], request["kwargs"], request["log_path"])
        code = 0
    except SystemExit as stop:  # as the interpreter ends on it
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the job's failure, reported as its process would
        traceback.print_exc()
    finally:
        _log_usage(request.get("log_path"))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _log_usage(log_path: str | None) -> None:
    """The child's own CPU time and peak memory, which Snakemake's benchmark file cannot see."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    line = (f"sweetspot: warm-started job process {os.getpid()} used {usage.ru_utime + usage.ru_stime:.1f} "
            f"CPU-s; peak RSS {usage.ru_maxrss / 1024:.0f} MB (shared with the server's imports)\n")
    try:
        with open(log_path, "a") as log:
            log.write(line)
    except (OSError, TypeError):
        sys.stderr.write(line)


def _import(module: str) -> None:
    """Import a job's module before forking, so that the jobs after this one find it imported."""
    if module in sys.modules:
        return
    try:
        importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - the child imports it again and reports the error to its job
        print(f"importing {module} failed ({error!r}); the job reports why", flush=True)


def _remove_stale(folder: int, keep: str) -> None:
    """Remove the files of other servers that are gone: none listens at their socket, and none is starting."""
    keys = {match.group(1) for name in os.listdir(folder) if (match := SERVER_FILE.fullmatch(name))} - {keep}
    for key in sorted(keys):
        try:
            lock = os.open(f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a client holds it while it starts that server
            sock = _connect(folder, Path(f"{key}.sock"))
            if sock is not None:
                sock.close()  # alive
                continue
            for name in os.listdir(folder):
                match = SERVER_FILE.fullmatch(name)
                if match and match.group(1) == key and name != f"{key}.lock":
                    os.unlink(name, dir_fd=folder)
            os.unlink(f"{key}.lock", dir_fd=folder)  # last, still held: a client waiting for it locks a new one
        except (BlockingIOError, PermissionError, FileNotFoundError):
            continue  # being started, another user's socket, or removed meanwhile
        finally:
            os.close(lock)


def serve(address: Path, preload: Sequence[str] = PRELOAD) -> None:
    """Import `preload`, then fork one child per job until idle; each job's module is imported here first.

    `address` is a socket in a private folder (server_address); a server starting there first
    removes the files of other servers that are gone.
    """
    folder = _open_private(address.parent)
    _remove_stale(folder, keep=address.stem)
    for name in preload:
        importlib.import_module(name)
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: a forked child only calls it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{address.stem}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging, dir_fd=folder)
    listener.bind(_via(folder, staging))
    listener.listen(16)
    os.replace(staging, address.name, src_dir_fd=folder, dst_dir_fd=folder)  # clients see it once it accepts
    inode = os.stat(address.name, dir_fd=folder).st_ino
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    server = os.getpid()
    idle_since = time.monotonic()
    print(f"sweetspot warm-start server {os.getpid()} ready at {address}", flush=True)
    try:
        while children or time.monotonic() - idle_since < IDLE_SECONDS:
            for key, _ in selector.select(timeout=0.05):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    peer, uid = _peer(conn)
                    if uid != os.getuid():  # read nothing from it: its request would run as this user
                        print(f"refused a connection from process {peer} of user {uid}: this server runs jobs "
                              f"of user {os.getuid()} only", flush=True)
                        conn.close()
                        continue
                    try:
                        conn.settimeout(30)
                        request, fds = _recv(conn, max_fds=2)
                        conn.settimeout(None)
                        module = request["target"].partition(":")[0]
                    except ConnectionError:  # closed before a request: a cleanup's probe, or a client gone
                        conn.close()
                        continue
                    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                        print(f"refused a malformed request: {error!r}", flush=True)
                        conn.close()
                        continue
                    _import(module)
                    pid = os.fork()
                    if pid == 0:
                        _child(request, fds, [listener, conn, *children.values()], folder, server, prctl)
                    for fd in fds:
                        os.close(fd)
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
                    with contextlib.suppress(OSError):  # a client gone already shows up as EOF next
                        _send(conn, {"pid": pid, "server": server})
                else:  # the job's own process closed its end: it was cancelled or killed
                    pid = key.data
                    if pid in children:
                        os.kill(pid, signal.SIGKILL)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is None:
                    continue
                selector.unregister(conn)
                try:
                    _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                except OSError:
                    pass  # the client is gone already
                conn.close()
                idle_since = time.monotonic()
    finally:
        with contextlib.suppress(OSError):
            if os.stat(address.name, dir_fd=folder, follow_symlinks=False).st_ino == inode:  # not a newer server's
                os.unlink(address.name, dir_fd=folder)
        listener.close()
        os.close(folder)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
