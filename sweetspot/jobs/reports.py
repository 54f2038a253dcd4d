"""The workflow's jobs that never touch a model: data generation, aggregation, figures.

They import neither torch nor timm, so each starts in about a second instead of the
several seconds a model job pays before its first line of work (benchmarks/workflow_overhead.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from .. import artifacts as io, contract
from ..data import registry

log = logging.getLogger("sweetspot")


def synthetic_job(config: Mapping, out: str | Path) -> None:
    """Generate the synthetic benchmark into the folder of `out` (its MANIFEST.json)."""
    from ..data import synthetic

    params = dict(config.get("synthetic", {}))
    log.info("generating the synthetic benchmark: %s", params)
    synthetic.generate(Path(out).parent, **params)


def aggregate_job(config: Mapping, inputs: list[str], outputs: Mapping[str, str]) -> None:
    """metrics.parquet, the sweet-spot tables and the plain-language summary."""
    from ..analysis import table as sweetspots

    started = time.time()
    metrics = sweetspots.read_metrics(inputs)
    io.write_parquet(outputs["metrics"], metrics, contract.provenance(config))
    stats = config.get("stats", {})
    curves, table = sweetspots.compute(metrics, n_boot=stats.get("n_boot", 1000),
                                       confidence=stats.get("confidence", 0.95),
                                       correction=stats.get("correction", "holm"), seed=stats.get("seed", 0))
    io.write_parquet(outputs["curves"], curves)
    summary = sweetspots.summary(table)
    sweetspots.write_tables(table, summary, str(Path(outputs["table"]).with_suffix("")))
    io.write_text(outputs["summary"], summary)
    log.info("aggregated %d rows from %d files into %d sweet-spot rows in %.1f s",
             len(metrics), len(inputs), len(table), time.time() - started)


def plots_job(curves_path: str | Path, outputs: list[str]) -> None:
    """Curves per task and gain heatmaps per architecture, as PNG and SVG."""
    import pandas as pd

    from ..analysis import plots

    curves = pd.read_parquet(curves_path)
    stems = sorted({str(Path(p).with_suffix("")) for p in outputs})
    for stem in stems:
        kind, _, name = Path(stem).name.partition("-")
        if kind == "curves":
            plots.curves_figure(curves, name, stem)
        else:
            plots.gain_heatmap(curves, name, stem)


def gallery_job(inputs: list[str], out: str | Path, title: str) -> None:
    """One PNG: a few images' attribution maps for every method across sparsities."""
    from safetensors import safe_open

    from ..analysis import gallery

    maps: dict[str, dict[float, np.ndarray]] = {}
    images = None
    for path in inputs:
        with safe_open(path, framework="np") as fh:
            sparsity = float((fh.metadata() or {})["sparsity"])
            arrays = {key: fh.get_tensor(key) for key in fh.keys()}
        images = arrays.pop("images", images)
        for method, array in arrays.items():
            maps.setdefault(method, {})[sparsity] = array
    gallery.render(images, maps, title, out)


def human_reference_job(config: Mapping, experiments: list[str], out: str | Path) -> None:
    """Human-to-human values per experiment and condition, the reference line for the model's."""
    import pandas as pd

    from ..data import human_trials
    from ..metrics import human

    root = registry.dataset_path(config, "geirhos16")
    trials = pd.concat([human_trials.load_trials(root, e) for e in experiments], ignore_index=True)
    reference = human.human_reference(trials)
    with io.atomic_path(out) as tmp:
        reference.to_csv(tmp, index=False)
    log.info("human reference for %s: %d rows", ", ".join(experiments), len(reference))
