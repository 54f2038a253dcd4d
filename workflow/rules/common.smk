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
SPARSITIES = [study.sparsity_label(s) for s in sorted(config["pruning"]["sparsities"])]
SEEDS = list(config["seeds"])
TASKS = list(config["tasks"])
CHECKPOINTS = study.checkpoints(config)
CONTROLS = study.controls(config)  # pruning method -> its matched control
DATA_PARAMS = study.data_params(config)


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
