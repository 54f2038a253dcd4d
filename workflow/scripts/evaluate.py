"""Evaluate one checkpoint on every configured task."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.runtime import warmstart  # noqa: E402  (light: torch is imported by the warm server, or on demand)

warmstart.run("sweetspot.jobs.checkpoints:model_job",
              dict(rule="evaluate", config=snakemake.config, wildcards=dict(snakemake.wildcards.items()), start=None,
                   checkpoint=snakemake.input.checkpoint, outputs=dict(snakemake.output.items()),
                   threads=snakemake.threads),
              log_path=snakemake.log[0], warm=bool(snakemake.config.get("warm_start", False)))
