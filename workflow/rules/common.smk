# Config checks, the grid and path helpers shared by every rule file.

import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the library beside the Snakefile, also without pip install

from sweetspot import study

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
study.check(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml",
            source=", ".join(map(str, workflow.overwrite_configfiles or workflow.configfiles)) or "config")
validate(config, SCHEMA)  # fills schema defaults

RESULTS = config["results"]
DATA = config["data_dir"]
ARCHS = list(config["architectures"])
METHODS = list(config["pruning"]["methods"])
SPARSITIES = [study.sparsity_label(s) for s in sorted(config["pruning"]["sparsities"])]
SEEDS = list(config["seeds"])
TASKS = list(config["tasks"])
CHECKPOINTS = study.checkpoints(config)
FUSED = config["fuse_evaluation"]  # the training / pruning job also evaluates its checkpoint


wildcard_constraints:
    arch="|".join(map(str, ARCHS)),
    method="dense|magnitude|imp|snip|random",
    sparsity=r"0|0\.\d+",
    seed=r"\d+",


def res(rule_name):
    """A rule's threads and resources from the config (resources.<rule> over .default)."""
    return study.resources(config, rule_name)


def data_inputs(wildcards=None):
    """The generated benchmark a job reads (real data is checked by the job itself)."""
    if config["benchmark"] == "synthetic":
        return [f"{DATA}/synthetic/MANIFEST.json"]
    return []


def checkpoint_path(arch, method, sparsity, seed):
    if method == "dense":
        return f"{RESULTS}/models/{arch}/dense/seed{seed}.safetensors"
    return f"{RESULTS}/models/{arch}/{method}/{sparsity}/seed{seed}.safetensors"


def metrics_path(task, arch, method, sparsity, seed):
    return f"{RESULTS}/metrics/{task}/{arch}/{method}/{sparsity}/seed{seed}.parquet"


def evaluate_outputs(method="{method}", sparsity="{sparsity}"):
    """What evaluating one checkpoint writes: one Parquet per task, and the gallery's maps."""
    outputs = {task: metrics_path(task, "{arch}", method, sparsity, "{seed}") for task in TASKS}
    if "interpretability" in TASKS:
        outputs["gallery"] = f"{RESULTS}/gallery/{{arch}}/{method}/{sparsity}/seed{{seed}}.safetensors"
    return outputs


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
        targets.append(f"{RESULTS}/human_reference.csv")
    return targets
