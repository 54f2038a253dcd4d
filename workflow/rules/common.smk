# Config checks, the grid and path helpers shared by every rule file.

import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the library beside the Snakefile, also without pip install

from sweetspot import catalog, study
from sweetspot.data import images

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
SCHEMA_PATH = Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
for configfile_path in workflow.configfiles:
    study.load_yaml(configfile_path)  # Snakemake's own loader keeps the last of a key given twice: refuse that
study.check(config, SCHEMA_PATH, source=", ".join(map(str, workflow.configfiles)) or "config")
validate(config, SCHEMA)  # fills schema defaults
study.check_results(config, SCHEMA_PATH)  # reads <results>/study.json; onstart below writes it
study.with_defaults(config)
# A guard, not a setting of any result: it reaches the jobs (and warm-started ones) through their
# environment, so changing it re-runs nothing.
os.environ[images.MAX_PIXELS_ENV] = str(config["max_image_pixels"])


onstart:
    study.record_identity(config, SCHEMA_PATH)  # not in a dry run: jobs are about to write into RESULTS

RESULTS = config["results"]
DATA = config["data_dir"]
ARCHS = list(config["architectures"])
METHODS = list(config["pruning"]["methods"])
SEEDS = list(config["seeds"])
TASKS = list(config["tasks"])
CHECKPOINTS = study.checkpoints(config)
CONTROLS = study.controls(config)  # pruning method -> its matched control
DATA_PARAMS = study.data_params(config)
# Alignment datasets with human trials: dataset -> human experiment.
HUMAN_EXPERIMENTS = study.human_experiments(config)
FIGURES = study.figures(config)  # figure name -> what the plots job draws there


def alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


wildcard_constraints:
    arch=alternatives(ARCHS),
    method=alternatives(catalog.CHECKPOINT_METHODS),
    recipe=alternatives(catalog.CONTROL_RECIPES),
    sparsity=r"0|0\.\d+",
    seed=r"\d+",
    task=alternatives(catalog.TASKS),


def res(rule_name):
    """A rule's threads and resources from the config (resources.<rule> over .default)."""
    return study.resources(config, rule_name)


CHANGED_DATA = study.changed_data(config)  # benchmark files replaced after generation: their jobs rerun


def data_inputs(wildcards=None):
    """The generated benchmark a job reads (real data is checked by the job itself)."""
    if config["benchmark"] == "synthetic":
        return [f"{DATA}/synthetic/MANIFEST.json", *CHANGED_DATA]
    return []


def checkpoint_path(arch, method, sparsity, seed):
    if method == catalog.DENSE or catalog.is_control(method):
        return f"{RESULTS}/models/{arch}/{method}/seed{seed}.safetensors"
    return f"{RESULTS}/models/{arch}/{method}/{sparsity}/seed{seed}.safetensors"


def metrics_path(task, arch, method, sparsity, seed):
    return f"{RESULTS}/metrics/{task}/{arch}/{method}/{sparsity}/seed{seed}.parquet"


def all_metrics():
    return [metrics_path(t, *c) for t in TASKS for c in CHECKPOINTS]


def final_targets():
    targets = [
        f"{RESULTS}/metrics.parquet",
        f"{RESULTS}/sweet_spots.csv",
        f"{RESULTS}/sweet_spots.md",
        f"{RESULTS}/summary.md",
    ]
    targets += plot_targets()
    if HUMAN_EXPERIMENTS:
        targets += [f"{RESULTS}/human/reference.csv", f"{RESULTS}/human/trials.parquet"]
    # Snakemake does not rebuild a missing input of an up-to-date job: as targets, a deleted
    # per-task file comes back on a plain rerun (and the aggregate after it). Checkpoints are
    # not targets: deleting them frees disk, and they are rebuilt when a job needs them.
    targets += all_metrics()
    return targets


def dense_weights(wildcards):
    """A local weights file is an input, so a change to it redoes the study of that architecture."""
    arch = config["architectures"][wildcards.arch]
    return [arch["weights_path"]] if arch.get("weights", "scratch") == "file" else []


def control_inputs(wildcards):
    if wildcards.recipe == "snip":
        return {}
    return {"dense": checkpoint_path(wildcards.arch, catalog.DENSE, "0", wildcards.seed)}


def prune_inputs(wildcards):
    if wildcards.method == "snip":
        return {}
    parent = study.imp_parent(config, wildcards.sparsity) if wildcards.method == "imp" else None
    if parent is None:
        return {"start": checkpoint_path(wildcards.arch, catalog.DENSE, "0", wildcards.seed)}
    return {"start": checkpoint_path(wildcards.arch, "imp", parent, wildcards.seed)}


def task_resources(wildcards):
    """evaluate's resources with the task's own `resources` on top."""
    return {**res("evaluate"), **config["tasks"][wildcards.task].get("resources", {})}


def plot_targets():
    targets = [f"{RESULTS}/plots/{name}.{ext}" for name in FIGURES for ext in ("png", "svg")]
    targets.append(f"{RESULTS}/summary.html")
    if "interpretability" in TASKS and config["tasks"]["interpretability"].get("gallery_images", 4) > 0:
        targets += [f"{RESULTS}/plots/gallery/{arch}-{method}.png" for arch in ARCHS for method in METHODS]
    return targets


def figure_in_report(name):
    """A figure's PNG in the report: the overview beside the summary, curves by task."""
    spec, path = FIGURES[name], f"{RESULTS}/plots/{name}.png"
    if spec["kind"] == "curves":
        return report(path, caption="../report/curves.rst", category="2 Curves", subcategory=spec["task"])
    if spec["role"] == "headline":
        return report(path, caption="../report/overview.rst", category="1 Summary")
    return report(path, caption="../report/overview_exploratory.rst", category="3 Exploratory metrics")


def plots_inputs(wildcards):
    inputs = {"curves": f"{RESULTS}/curves.parquet", "summary": f"{RESULTS}/summary.md"}
    if HUMAN_EXPERIMENTS:
        inputs["reference"] = f"{RESULTS}/human/reference.csv"
    return inputs


def aggregate_inputs(wildcards):
    inputs = {"evaluations": all_metrics()}
    if HUMAN_EXPERIMENTS:
        inputs["human_trials"] = f"{RESULTS}/human/trials.parquet"
        inputs["human_reference"] = f"{RESULTS}/human/reference.csv"
    return inputs
