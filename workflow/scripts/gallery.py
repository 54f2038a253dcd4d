"""Draw one attribution gallery across sparsities."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

with pipeline.job_logging(snakemake.log[0]):
    pipeline.gallery_job(list(snakemake.input), snakemake.output[0],
                         f"{snakemake.wildcards.arch}, {snakemake.wildcards.method} pruning")
