"""Train (or load) one dense model."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

with pipeline.job_logging(snakemake.log[0]):
    pipeline.dense_job(snakemake.config, snakemake.wildcards.arch, int(snakemake.wildcards.seed),
                       snakemake.output[0], snakemake.threads)
