"""Prune one checkpoint to one sparsity and recover it."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

wc = snakemake.wildcards
with pipeline.job_logging(snakemake.log[0]):
    pipeline.prune_job(snakemake.config, wc.arch, wc.method, wc.sparsity, int(wc.seed),
                       snakemake.input.get("start") or None, snakemake.output[0], snakemake.threads)
