"""The workflow's fixed costs: per job cold and warm, what one job per checkpoint and task adds, DAG builds.

The DAG runs one evaluate job per checkpoint and task (the default study: 46 model jobs and
230 evaluate jobs). Every model and evaluate job runs workflow/scripts/model_job.py: Snakemake's
script preamble, then `sweetspot.runtime.warmstart.run("module:function", ...)`, which either
imports torch and the job's modules in the job's own process (cold: warm_start false, or inside
SLURM) or forks the job from a server that imported them once (warm: warm_start true, the
default). Report jobs run workflow/scripts/report_job.py, always in their own process.

(a) Imports of one job process: fresh interpreters importing what a job process imports
    (median wall and CPU of --repeats).
(b) One job through Snakemake, end to end: a temporary workflow of --jobs jobs that run the
    project's model_job.py on a target with an evaluate job's set-up and imports and no work
    (`noop_job` below), with --cores 1, cold and warm (the server started beforehand; its
    start is printed apart). Per job: (run of N jobs - run of none) / N, wall and CPU; warm
    jobs' CPU adds the forked children's own CPU time from their logs (the server's is not
    in it: forking costs it a few ms per job).
(c) What the fused job shared and an evaluate job now does again: load the checkpoint (each
    default architecture) and the task's datasets (generated synthetic benchmark; a fused job
    loaded each source once per checkpoint).
(d) The estimate for the default study: `snakemake -n` of config.yaml counts its jobs; the
    per-task DAG costs its evaluate jobs x ((b) + checkpoint load) + the datasets loaded again,
    over a DAG that evaluated every task inside the job that made the checkpoint.
(e) `snakemake -n` of config.yaml and presets/paper.yaml in empty temporary folders: the time to
    parse the workflow, check the config and build the DAG (target <= 30 s for the paper's).
(f) With --study, a finished study: a no-op rerun (target <= 10 s; a dry run goes first and
    the rerun is skipped if it plans any job, unless --rerun-triggers-mtime) and the share of
    the per-job fixed cost in its jobs' summed wall and CPU (results/benchmarks/**/*.tsv; warm
    children's CPU from their logs).

    PYTHONPATH=. python benchmarks/workflow_overhead.py [--repeats 3] [--jobs 8] [--study DIR]
        [--rerun-triggers-mtime] [--study-configfile FILE] [--skip PART ...]
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
NOOP = "workflow_overhead:noop_job"
# Where a job process (and the warm server it starts) finds the project and this script's noop_job.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}

PREAMBLE = "from snakemake import script"  # what Snakemake's script preamble imports (it unpickles the job)
EVALUATE_MODULES = ("sweetspot.jobs.evaluation, sweetspot.tasks.accuracy, sweetspot.tasks.interpretability, "
                    "sweetspot.tasks.discovery, sweetspot.tasks.alignment, sweetspot.tasks.structure")
IMPORTS = {
    "bare interpreter": "pass",
    "snakemake script preamble": PREAMBLE,
    "model job, cold": f"{PREAMBLE}; from sweetspot.runtime import warmstart; import {EVALUATE_MODULES}",
    # a warm job's own process imports only the runtime: the server has torch, timm, captum...
    "model job client, warm": f"{PREAMBLE}; from sweetspot.runtime import warmstart",
    "report job": f"{PREAMBLE}; from sweetspot.runtime import warmstart; import sweetspot.jobs.reports, "
                  "sweetspot.analysis.table, sweetspot.analysis.plots, sweetspot.analysis.gallery",
}


def noop_job(*, out: str, task: str, threads: int = 1, reuse_freed_memory: bool = True) -> None:
    """An evaluate job without its work: the same set-up and imports (part b's jobs run it)."""
    from sweetspot import tasks
    from sweetspot.jobs import evaluation  # noqa: F401  (an evaluate job's module)
    from sweetspot.runtime import device

    device.setup(threads, 0, reuse_freed_memory)
    tasks.load(task)
    Path(out).write_text("")


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def timed_subprocess(args: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system of the waited-for children) and the finished process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def import_costs(repeats: int) -> dict[str, tuple[float, float]]:
    results = {}
    for label, code in IMPORTS.items():
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu, done = timed_subprocess([sys.executable, "-c", code], env=ENV, cwd=tempfile.gettempdir())
            if done.returncode:
                raise SystemExit(f"{label}: import failed:\n{done.stderr}")
            walls.append(wall)
            cpus.append(cpu)
        results[label] = (statistics.median(walls), statistics.median(cpus))
        print(f"  {label:28s} wall {results[label][0]:6.2f} s  cpu {results[label][1]:6.2f} s  "
              f"(median of {repeats}; min wall {min(walls):.2f} s)", flush=True)
    return results


SNAKEFILE = """
rule all:
    input: expand("out/{{i}}.done", i=range(config["jobs"]))

rule job:
    output: out="out/{{i}}.done"
    params: job="{target}", task="interpretability"
    log: "logs/{{i}}.log"
    threads: 1
    script: "{script}"
"""


def snakemake_jobs(folder: Path, n: int, warm: bool) -> tuple[float, float, float]:
    """Wall and CPU seconds of a Snakemake run of n no-op jobs, and the warm children's own CPU seconds."""
    for sub in ("out", "logs"):
        for path in (folder / sub).glob("*"):
            path.unlink()
    args = [SNAKEMAKE, "--cores", "1", "--quiet", "--config", f"jobs={n}", f"warm_start={warm}"]
    wall, cpu, done = timed_subprocess(args, cwd=folder, env=ENV)
    if done.returncode:
        raise SystemExit(f"snakemake failed in {folder}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    children = sum(float(m) for log in (folder / "logs").glob("*.log")
                   for m in re.findall(r"used ([0-9.]+) CPU-s", log.read_text()))
    if warm and n and not children:
        raise SystemExit(f"warm jobs in {folder} did not run warm:\n{done.stderr[-2000:]}")
    return wall, cpu, children


def per_job_costs(n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per job through Snakemake, cold and warm."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "Snakefile").write_text(SNAKEFILE.format(target=NOOP,
                                                           script=ROOT / "workflow" / "scripts" / "model_job.py"))
        print(f"  command: cd {folder} && snakemake --cores 1 --quiet --config jobs={n} warm_start=False|True "
              f"(Snakefile: {n} jobs of model_job.py running {NOOP}), PYTHONPATH={ENV['PYTHONPATH']}")
        wall, cpu, _ = snakemake_jobs(folder, 1, warm=True)
        print(f"  warm-start server started by a first job: {wall:.1f} s wall for that run (once per study and "
              "code version; the server's imports are not in the CPU figures)", flush=True)
        for warm in (False, True):
            label = "warm" if warm else "cold"
            walls, cpus = [], []
            for _ in range(repeats):
                wall_0, cpu_0, _ = snakemake_jobs(folder, 0, warm)
                wall_n, cpu_n, children = snakemake_jobs(folder, n, warm)
                walls.append((wall_n - wall_0) / n)
                cpus.append((cpu_n - cpu_0 + children) / n)
            results[label] = (statistics.median(walls), statistics.median(cpus))
            print(f"  {label}: {results[label][0]:5.2f} s wall, {results[label][1]:5.2f} s CPU per job (median of "
                  f"{repeats} runs of {n} jobs; wall {min(walls):.2f}-{max(walls):.2f} s, CPU "
                  f"{min(cpus):.2f}-{max(cpus):.2f} s; Snakemake alone {wall_0:.1f} s wall); load average {load()}",
                  flush=True)
    return results


def study_config(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def checkpoint_load_costs(repeats: int) -> dict[str, float]:
    """Median seconds to load each default architecture's checkpoint (in this process, imports done)."""
    sys.path.insert(0, str(ROOT))
    from sweetspot import models

    costs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch, arch_cfg in study_config(ROOT / "config.yaml")["architectures"].items():
            path = Path(tmp) / f"{arch}.safetensors"
            models.save_checkpoint(path, models.create(arch_cfg, 8), {"arch": arch, "num_classes": 8})
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                models.load_checkpoint(path, arch_cfg, 8)
                times.append(time.perf_counter() - start)
            costs[arch] = statistics.median(times)
            print(f"  checkpoint load {arch:6s} ({arch_cfg['timm']}, {path.stat().st_size / 2**20:.1f} MB) "
                  f"{costs[arch] * 1e3:7.1f} ms (median of {repeats})", flush=True)
    return costs


def dataset_load_costs(repeats: int) -> tuple[float, float]:
    """Seconds per checkpoint to load every task's datasets: one job per task, and one fused job."""
    from sweetspot import study
    from sweetspot.data import registry, synthetic

    config = study_config(ROOT / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthetic.generate(Path(tmp) / "synthetic", **config["synthetic"])
        print(f"  generated the synthetic benchmark in {time.perf_counter() - start:.1f} s", flush=True)
        data = {**study.data_params(config), "data_dir": tmp}
        size = int(data["image_size"])
        sources = {dataset: registry.info(dataset).source or dataset
                   for task in config["tasks"].values() for dataset in task["datasets"]}
        seconds = {}
        for source in sorted(set(sources.values())):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                registry.load_eval(source, data, size)
                times.append(time.perf_counter() - start)
            seconds[source] = statistics.median(times)
            print(f"  load {source:24s} {seconds[source] * 1e3:7.1f} ms (median of {repeats})", flush=True)
    # a job loads each source its task's datasets need once (EvalContext caches by source)
    per_task = sum(seconds[s] for task in config["tasks"].values()
                   for s in {sources[d] for d in task["datasets"]})
    return per_task, sum(seconds.values())


def dry_run(configfile: Path) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` plans for `configfile` in an empty folder, with its time."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [SNAKEMAKE, "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", tmp,
                "--configfile", str(configfile), "--quiet", "rules"]
        wall, cpu, done = timed_subprocess(args, cwd=tmp)
    print(f"  snakemake -n --configfile {configfile.relative_to(ROOT)} (empty folder): wall {wall:.1f} s, "
          f"cpu {cpu:.1f} s; load average {load()}", flush=True)
    if done.returncode:
        print(f"  FAILED (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return {}
    counts = {name: int(c) for name, c in re.findall(r"^(\S+)\s+(\d+)$", done.stdout, flags=re.M)}
    print("  planned: " + ", ".join(f"{name} {c}" for name, c in counts.items()))
    return counts


def estimate(counts: dict[str, int], jobs: dict[str, tuple[float, float]], checkpoint_s: dict[str, float],
             data_s: tuple[float, float]) -> None:
    evaluate = counts.get("evaluate", 0)
    checkpoints = sum(counts.get(rule, 0) for rule in ("dense", "control", "prune"))
    if not evaluate or not checkpoints:
        print("  the dry run planned no evaluate or model jobs: no estimate")
        return
    tasks = evaluate // checkpoints
    load_s = statistics.mean(checkpoint_s.values()) + data_s[0] / tasks  # per evaluate job, average
    loads_again = evaluate * load_s - checkpoints * data_s[1]  # the fused job loaded each source once
    print(f"  {evaluate} evaluate jobs ({checkpoints} checkpoints x {tasks} tasks) beside {checkpoints} model jobs")
    print(f"  each evaluate job loads its checkpoint and datasets again: {load_s:.2f} s on average; over a fused job "
          f"that loaded each source once: {loads_again:.0f} s in all")
    for label, (wall, cpu) in jobs.items():
        extra_cpu = evaluate * cpu + loads_again
        extra_wall = evaluate * wall + loads_again
        print(f"  {label}: {evaluate} x {cpu:.2f} s + {loads_again:.0f} s = {extra_cpu:.0f} CPU-s more than the fused "
              f"DAG; about {extra_wall / 2:.0f} s of wall on 2 cores ({evaluate} x {wall:.2f} s job wall + loads, "
              "two jobs at a time)")


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


def noop_rerun(study: Path, mtime_only: bool, configfile: Path | None) -> None:
    flags = (["--rerun-triggers", "mtime"] if mtime_only else []) + (["--configfile", str(configfile)] if configfile else [])
    dry_wall, _, dry = timed_subprocess([SNAKEMAKE, "-n", "--cores", "2", *flags], cwd=study)
    planned = re.findall(r"^(\S+)\s+(\d+)$", dry.stdout, flags=re.M)
    if dry.returncode or "Nothing to be done" not in dry.stdout + dry.stderr:
        print(f"  dry run ({dry_wall:.1f} s) plans jobs, so the rerun would not be a no-op; skipped. "
              f"Planned: {planned or dry.stderr[-800:]}")
        return
    args = [SNAKEMAKE, "--cores", "2", *flags]
    wall, cpu, done = timed_subprocess(args, cwd=study)
    ok = done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr
    print(f"  command: cd {study} && {' '.join(['snakemake'] + args[1:])}")
    print(f"  no-op rerun wall {wall:.1f} s  cpu {cpu:.1f} s  {'(nothing to be done)' if ok else '(NOT a no-op!)'}"
          f"  (target <= 10 s); dry run before it {dry_wall:.1f} s", flush=True)


def study_share(study: Path, configfile: Path | None, jobs_cost: dict[str, tuple[float, float]]) -> None:
    warm = bool(study_config(configfile or study / "config.yaml").get("warm_start"))
    wall_per_job, cpu_per_job = jobs_cost["warm" if warm else "cold"]
    jobs = job_benchmarks(study)
    wall = study_wall(study)
    if not jobs or wall[0] <= 0:
        print("  no results/benchmarks/*.tsv or .snakemake/log found: share not computed")
        return
    job_wall = sum(j[1] for j in jobs)
    job_cpu = sum(j[2] for j in jobs if j[2] == j[2])
    if warm:  # benchmark files see a warm job's client only; its forked child logs its own CPU time
        forked = [float(m) for log in (study / "results" / "logs").rglob("*.log")
                  for m in re.findall(r"used ([0-9.]+) CPU-s", log.read_text())]
        job_cpu += sum(forked)
        print(f"  {len(forked)} warm-started jobs used {sum(forked):.0f} CPU-s in their forked children")
    print(f"  {len(jobs)} jobs: summed wall {job_wall:.0f} s, cpu {job_cpu:.0f} s; study wall {wall[0]:.0f} s "
          f"({', '.join(wall[1])})")
    print(f"  fixed cost ({'warm' if warm else 'cold'}): {len(jobs)} x {wall_per_job:.2f} s = "
          f"{len(jobs) * wall_per_job:.0f} s = {100 * len(jobs) * wall_per_job / job_wall:.0f}% of the jobs' summed "
          f"wall; {100 * len(jobs) * cpu_per_job / job_cpu:.0f}% of their summed cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8, help="no-op jobs per Snakemake run in part (b)")
    parser.add_argument("--study", type=Path, help="a finished study directory (part f)")
    parser.add_argument("--rerun-triggers-mtime", action="store_true",
                        help="judge the no-op rerun by file times only (code or parameter edits since the study ran "
                             "would otherwise plan jobs)")
    parser.add_argument("--study-configfile", type=Path,
                        help="run the study with this config instead of its config.yaml")
    parser.add_argument("--skip", nargs="*", default=[], choices=["a", "e"], help="parts to leave out")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {load()}, python {sys.executable}")

    if "a" not in args.skip:
        print("\n(a) imports of one job process (a fresh interpreter)")
        import_costs(args.repeats)
    print("\n(b) one job through Snakemake (model_job.py), cold and warm")
    jobs_cost = per_job_costs(args.jobs, args.repeats)
    print("\n(c) what an evaluate job loads again")
    checkpoint_s = checkpoint_load_costs(args.repeats)
    data_s = dataset_load_costs(args.repeats)
    print(f"  datasets per checkpoint: {data_s[0]:.2f} s with one job per task, {data_s[1]:.2f} s in one fused job")
    print("\n(d) the per-task DAG against the fused one, default study (config.yaml)")
    counts = dry_run(ROOT / "config.yaml")
    estimate(counts, jobs_cost, checkpoint_s, data_s)
    if "e" not in args.skip:
        print("\n(e) DAG of the paper's study")
        dry_run(ROOT / "presets" / "paper.yaml")
    if args.study:
        study = args.study.resolve()
        print(f"\n(f) study {study}")
        noop_rerun(study, args.rerun_triggers_mtime, args.study_configfile)
        study_share(study, args.study_configfile, jobs_cost)
    print(f"\nload average at the end {load()}")


if __name__ == "__main__":
    main()
