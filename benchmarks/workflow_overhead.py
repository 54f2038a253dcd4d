"""The workflow's fixed costs: per job, per DAG build, per no-op rerun.

(a) One job's fixed cost: a fresh interpreter importing what a job script imports
    (snakemake's script preamble, `sweetspot.jobs.checkpoints` and the modules evaluate / prune jobs
    load), timed in a subprocess several times (median wall and CPU), plus the time to load
    each default architecture's checkpoint (`models.load_checkpoint`).
(b) `snakemake -n --configfile presets/paper.yaml` in an empty temporary directory: the time
    to parse the workflow, check the config and build the paper's DAG (target <= 30 s).
(c) Given a finished study directory: the wall time of a no-op rerun `snakemake --cores 2`
    there (target <= 10 s), and the share of the per-job fixed cost in the study's wall time
    (jobs from results/benchmarks/**/*.tsv, the study's wall from its longest .snakemake log).
    A dry run goes first; if it plans any job, the real rerun is skipped (it would rebuild the
    study), unless --rerun-triggers-mtime is given, which passes `--rerun-triggers mtime`.

    python benchmarks/workflow_overhead.py [--study /tmp/tiny] [--repeats 5] [--rerun-triggers-mtime]
        [--study-configfile FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# What a job process imports: snakemake's preamble for `script:` rules unpickles the job's
# `snakemake` object (snakemake.script), then the job script imports the pipeline, which
# imports the tasks, pruning and training code it calls. With fuse_evaluation (the default
# study) one job imports both the prune and the evaluate modules.
IMPORTS = {
    "bare interpreter": "pass",
    "snakemake script preamble": "from snakemake import script",
    "evaluate job (sweetspot)": ("from sweetspot.jobs import checkpoints; import sweetspot.tasks.interpretability, "
                                 "sweetspot.tasks.discovery, sweetspot.tasks.alignment, sweetspot.tasks.accuracy, "
                                 "sweetspot.models, timm, captum.attr"),
    "prune job (sweetspot)": "from sweetspot.jobs import checkpoints; import sweetspot.pruning, sweetspot.training, timm",
    # aggregate, plots, gallery and data jobs never load a model, so they skip torch and timm
    "report job (sweetspot)": "from sweetspot.jobs import reports; from sweetspot.runtime import joblog; from sweetspot.analysis import table, plots, gallery",
}
IMPORTS["evaluate job, all"] = f"{IMPORTS['snakemake script preamble']}; {IMPORTS['evaluate job (sweetspot)']}"
# With warm_start a model job's own process only connects to the warm-start server (sweetspot/runtime/warmstart.py).
IMPORTS["model job client, warm start"] = f"{IMPORTS['snakemake script preamble']}; from sweetspot.runtime import warmstart"


def timed_subprocess(args: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system of the child) and the finished process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def import_costs(repeats: int) -> dict[str, tuple[float, float]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {}
    for label, code in IMPORTS.items():
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu, done = timed_subprocess([sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir())
            if done.returncode:
                raise SystemExit(f"{label}: import failed:\n{done.stderr}")
            walls.append(wall)
            cpus.append(cpu)
        results[label] = (statistics.median(walls), statistics.median(cpus))
        print(f"  {label:28s} wall {results[label][0]:6.2f} s  cpu {results[label][1]:6.2f} s  "
              f"(median of {repeats}; min wall {min(walls):.2f} s)", flush=True)
    return results


def checkpoint_load_costs(study: Path | None, repeats: int) -> float:
    """Seconds to load each default architecture's checkpoint (in this process, imports done)."""
    sys.path.insert(0, str(ROOT))
    import yaml

    from sweetspot import models

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for arch, arch_cfg in config["architectures"].items():
            path = study / "results" / "models" / arch / "dense" / "seed0.safetensors" if study else None
            if study is not None:
                arch_cfg = yaml.safe_load((study / "config.yaml").read_text())["architectures"].get(arch, arch_cfg)
            if path is None or not path.exists():
                path = Path(tmp) / f"{arch}.safetensors"
                model = models.create(arch_cfg, 8)
                models.save_checkpoint(path, model, {"arch": arch, "num_classes": 8})
            num_classes = int(models.read_sidecar(path)["num_classes"])
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                models.load_checkpoint(path, arch_cfg, num_classes)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            total = max(total, median)
            print(f"  checkpoint load {arch:6s} ({arch_cfg['timm']}, {path.stat().st_size / 2**20:.1f} MB) "
                  f"{median * 1e3:7.1f} ms (median of {repeats}; {path})", flush=True)
    return total


def paper_dry_run() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = [SNAKEMAKE, "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", tmp,
                "--configfile", str(ROOT / "presets" / "paper.yaml"), "--quiet", "rules"]
        wall, cpu, done = timed_subprocess(args, cwd=tmp)
    print(f"  command: {' '.join(args[:1] + ['-n'] + args[2:])} (in an empty temporary directory)")
    if done.returncode:
        print(f"  FAILED (exit {done.returncode}):\n{done.stderr[-3000:]}")
    else:
        counts = re.findall(r"^(\S+)\s+(\d+)$", done.stdout, flags=re.M)
        total = next((int(c) for name, c in counts if name == "total"), None)
        print(f"  planned jobs: {total if total is not None else 'see output'}")
    print(f"  wall {wall:.1f} s  cpu {cpu:.1f} s  (target <= 30 s)", flush=True)
    return wall


def study_wall(study: Path) -> tuple[float, list[str]]:
    """Summed wall seconds of the study's Snakemake runs that ran jobs, and their log names."""
    total, logs = 0.0, []
    for log in sorted((study / ".snakemake" / "log").glob("*.snakemake.log")):
        stamps = [datetime.strptime(m, "%a %b %d %H:%M:%S %Y")
                  for m in re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", log.read_text(), flags=re.M)]
        if stamps:
            total += (max(stamps) - datetime.strptime(log.name[:17], "%Y-%m-%dT%H%M%S")).total_seconds()
            logs.append(log.name)
    return total, logs


def job_benchmarks(study: Path) -> list[tuple[str, float, float]]:
    """(job, wall s, cpu s) from the study's Snakemake benchmark files."""
    jobs = []
    for tsv in sorted((study / "results" / "benchmarks").rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        header = lines[0].split("\t")
        for line in lines[1:]:
            values = dict(zip(header, line.split("\t")))
            cpu = float(values["cpu_time"]) if values.get("cpu_time", "NA") != "NA" else float("nan")
            jobs.append((str(tsv.relative_to(study)), float(values["s"]), cpu))
    return jobs


def noop_rerun(study: Path, mtime_only: bool, configfile: Path | None) -> float | None:
    flags = (["--rerun-triggers", "mtime"] if mtime_only else []) + (["--configfile", str(configfile)] if configfile else [])
    dry_wall, _, dry = timed_subprocess([SNAKEMAKE, "-n", "--cores", "2", *flags], cwd=study)
    planned = re.findall(r"^(\S+)\s+(\d+)$", dry.stdout, flags=re.M)
    if dry.returncode or "Nothing to be done" not in dry.stdout + dry.stderr:
        print(f"  dry run ({dry_wall:.1f} s) plans jobs, so the rerun would not be a no-op; skipped. "
              f"Planned: {planned or dry.stderr[-800:]}")
        print("  (reason lines: " + "; ".join(sorted(set(re.findall(r"reason: ([^\n]+)", dry.stdout)))[:3]) + ")")
        return None
    args = [SNAKEMAKE, "--cores", "2", *flags]
    wall, cpu, done = timed_subprocess(args, cwd=study)
    ok = done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr
    print(f"  command: cd {study} && {' '.join(['snakemake'] + args[1:])}")
    print(f"  no-op rerun wall {wall:.1f} s  cpu {cpu:.1f} s  {'(nothing to be done)' if ok else '(NOT a no-op!)'}"
          f"  (target <= 10 s); dry run before it {dry_wall:.1f} s", flush=True)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, help="a finished study directory (for part c)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rerun-triggers-mtime", action="store_true",
                        help="judge the no-op rerun by file times only (code or parameter edits since the study ran "
                             "would otherwise plan jobs)")
    parser.add_argument("--study-configfile", type=Path,
                        help="run the study with this config instead of its config.yaml (e.g. one updated to a newer "
                             "schema)")
    parser.add_argument("--skip-dry-run", action="store_true", help="leave out part (b)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}, python {sys.executable}")

    print("\n(a) fixed cost of one job: a fresh interpreter and its imports")
    imports = import_costs(args.repeats)
    load_s = checkpoint_load_costs(args.study, args.repeats)
    fixed_wall = imports["evaluate job, all"][0] + load_s
    fixed_cpu = imports["evaluate job, all"][1] + load_s
    print(f"  => fixed cost per job ~ {fixed_wall:.2f} s wall, {fixed_cpu:.2f} s cpu "
          "(preamble + evaluate imports + the slower checkpoint load)")
    warm_wall, warm_cpu = imports["model job client, warm start"]
    print(f"  => with warm_start ~ {warm_wall + load_s:.2f} s wall, {warm_cpu + load_s:.2f} s cpu per model job "
          "(its client's start-up + the checkpoint load; the server pays the imports once per study)")

    if not args.skip_dry_run:
        print("\n(b) DAG of the paper study")
        paper_dry_run()

    if args.study:
        study = args.study.resolve()
        print(f"\n(c) study {study}")
        import yaml

        warm = bool(yaml.safe_load((args.study_configfile or study / "config.yaml").read_text()).get("warm_start"))
        if warm:
            fixed_wall, fixed_cpu = warm_wall + load_s, warm_cpu + load_s
            print(f"  the study used warm_start: fixed cost per job {fixed_wall:.2f} s wall, {fixed_cpu:.2f} s cpu")
        noop_rerun(study, args.rerun_triggers_mtime, args.study_configfile)
        jobs = job_benchmarks(study)
        wall = study_wall(study)
        if jobs and wall[0] > 0:
            job_wall = sum(j[1] for j in jobs)
            job_cpu = sum(j[2] for j in jobs if j[2] == j[2])
            if warm:
                # benchmark files see a warm job's client only; its forked child logs its own CPU time
                forked = [float(m) for log in (study / "results" / "logs").rglob("*.log")
                          for m in re.findall(r"used ([0-9.]+) CPU-s", log.read_text())]
                job_cpu += sum(forked)
                print(f"  {len(forked)} warm-started jobs used {sum(forked):.0f} CPU-s in their forked children")
            print(f"  {len(jobs)} jobs with benchmark files: sum of job wall {job_wall:.0f} s, of job cpu {job_cpu:.0f} s; "
                  f"study wall {wall[0]:.0f} s (summed over {', '.join(wall[1])})")
            print(f"  fixed cost share: {len(jobs)} x {fixed_wall:.2f} s = {len(jobs) * fixed_wall:.0f} s "
                  f"= {100 * len(jobs) * fixed_wall / wall[0]:.0f}% of the study's wall "
                  f"(jobs overlap on --cores 2), {100 * len(jobs) * fixed_wall / job_wall:.0f}% of the jobs' summed wall, "
                  f"{100 * len(jobs) * fixed_cpu / job_cpu:.0f}% of their summed cpu")
        else:
            print("  no results/benchmarks/*.tsv or .snakemake/log found: share not computed")
    print(f"\nload average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
