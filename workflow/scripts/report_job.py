"""Run the library job a rule names (params.job, "module:function") in this process: jobs that
import no torch and start in about a second. Params, named inputs and outputs are its arguments."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.runtime import warmstart  # noqa: E402

kwargs = {name: value for name, value in snakemake.params.items() if name != "job"}
kwargs.update(snakemake.input.items())
kwargs.update(snakemake.output.items())
warmstart.run(snakemake.params.job, kwargs, log_path=snakemake.log[0], warm=False)
