"""Run the library job a rule names (params.job, "module:function") in a warm-started process.

The rule's params, named inputs and named outputs are the job's keyword arguments; threads and
memory reuse say how it runs, not what it computes, so they are not params.
"""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.runtime import warmstart  # noqa: E402  (light: torch is imported by the warm server, or on demand)

kwargs = {name: value for name, value in snakemake.params.items() if name != "job"}
kwargs.update(snakemake.input.items())
kwargs.update(snakemake.output.items())
kwargs.update(threads=snakemake.threads, reuse_freed_memory=bool(snakemake.config.get("reuse_freed_memory", True)))
warmstart.run(snakemake.params.job, kwargs, log_path=snakemake.log[0],
              warm=bool(snakemake.config.get("warm_start", False)))
