"""Evaluate one checkpoint on every configured task."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

wc = snakemake.wildcards
with pipeline.job_logging(snakemake.log[0]):
    pipeline.evaluate_job(snakemake.config, wc.arch, wc.method, wc.sparsity, int(wc.seed),
                          snakemake.input.checkpoint, dict(snakemake.output.items()), snakemake.threads)
