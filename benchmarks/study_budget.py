"""A whole study's wall time, peak memory and CPU time per rule, as a user runs it.

Runs `snakemake --cores N` on a config in a fresh folder (the workflow linked in, results and
generated data written there), samples the machine's used memory every 0.5 s and prints:

- wall time of the run;
- peak memory above the level before the run (psutil's `virtual_memory().used`): the study's
  footprint, warm-start server and forked jobs included, on an otherwise idle machine;
- per rule: jobs, CPU seconds of the jobs' own processes (the line every job writes at the end
  of its log) and their wall seconds (Snakemake's benchmark files).

    PYTHONPATH=. python benchmarks/study_budget.py [--config config.yaml] [--cores 2]
        [--set key=value ...] [--workdir DIR]

`--set` overrides config keys with a dotted path and a YAML value, e.g.
`--set datasets.geirhos16=/data/geirhos16`. The load average before and after is printed:
other processes on the machine lengthen the wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
USED = re.compile(r"used ([0-9.]+) CPU-s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", help="folder to run in (default: a new temporary one)")
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sweetspot-budget-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "sweetspot", "envs"):
        if not (workdir / name).exists():
            (workdir / name).symlink_to(ROOT / name)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    print(f"study {args.config} in {workdir}, --cores {args.cores}; load average {os.getloadavg()}")
    baseline = psutil.virtual_memory().used
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], psutil.virtual_memory().used)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.time()
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--cores", str(args.cores)],
                          cwd=workdir, capture_output=True, text=True)
    wall = time.time() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"snakemake failed ({proc.returncode})")
    results = workdir / config.get("results", "results")
    print(f"wall {wall / 60:.1f} min; peak memory above the start {(peak[0] - baseline) / 2**30:.1f} GiB; "
          f"load average {os.getloadavg()}")
    cpu, jobs, job_wall = defaultdict(float), defaultdict(int), defaultdict(float)
    for log in (results / "logs").rglob("*.log"):
        rule = log.relative_to(results / "logs").parts[0].removesuffix(".log")
        found = USED.findall(log.read_text(errors="replace"))
        if found:
            cpu[rule] += float(found[-1])
        jobs[rule] += 1
    for bench in (results / "benchmarks").rglob("*.tsv"):
        rule = bench.relative_to(results / "benchmarks").parts[0].removesuffix(".tsv")
        job_wall[rule] += float(bench.read_text().splitlines()[1].split("\t")[0])
    print(f"{'rule':16s} {'jobs':>5s} {'job CPU-s':>10s} {'job wall-s':>11s}")
    for rule in sorted(jobs):
        print(f"{rule:16s} {jobs[rule]:5d} {cpu[rule]:10.0f} {job_wall[rule]:11.0f}")
    print(f"{'all':16s} {sum(jobs.values()):5d} {sum(cpu.values()):10.0f} {sum(job_wall.values()):11.0f}")


if __name__ == "__main__":
    main()
