"""Train (or load) one dense model, and evaluate it when fuse_evaluation is on."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.runtime import warmstart  # noqa: E402  (light: torch is imported by the warm server, or on demand)

outputs = dict(snakemake.output.items())
warmstart.run("sweetspot.jobs.checkpoints:model_job",
              dict(rule="dense", config=snakemake.config, wildcards=dict(snakemake.wildcards.items()), start=None,
                   checkpoint=outputs.pop("checkpoint"), outputs=outputs, threads=snakemake.threads),
              log_path=snakemake.log[0], warm=bool(snakemake.config.get("warm_start", False)))
