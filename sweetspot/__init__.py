"""sweetspot: when does pruning benefit vision representations?

The library behind the Snakemake workflow: data (synthetic and real), models (timm),
pruning, training, the four evaluation tasks, statistics and plots.
"""

__version__ = "0.1.0"
