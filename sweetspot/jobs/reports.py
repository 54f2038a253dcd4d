"""Jobs that never touch a model: data generation, human reference data, aggregation, figures.

They import neither torch nor timm, so each starts in about a second.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

from .. import artifacts, contract
from ..data import registry

log = logging.getLogger("sweetspot")


def generate_synthetic(*, out: str, synthetic: Mapping) -> None:
    """Generate the synthetic benchmark into the folder of `out` (its MANIFEST.json)."""
    from ..data import synthetic as generator

    log.info("generating the synthetic benchmark: %s", dict(synthetic))
    generator.generate(Path(out).parent, **synthetic)


def collect_human_data(*, trials: str, reference: str, experiments: Mapping[str, str], data: Mapping) -> None:
    """Every human trial on the study's alignment datasets (dataset -> experiment), and the
    human-to-human reference values the model's are drawn against."""
    import pandas as pd

    from ..metrics import human

    frames = {dataset: registry.load_human_trials(data, dataset) for dataset in sorted(experiments)}
    rows = pd.concat([frame.assign(dataset=dataset) for dataset, frame in frames.items()], ignore_index=True)
    artifacts.write_parquet(trials, rows[["dataset", "experiment", "subject", "condition", "item", "correct"]])
    unique = pd.concat(frames.values(), ignore_index=True).drop_duplicates(["experiment", "subject", "item"])
    with artifacts.atomic_path(reference) as tmp:
        human.human_reference(unique).to_csv(tmp, index=False)
    log.info("human trials of %s: %d rows", ", ".join(sorted(set(experiments.values()))), len(rows))


def aggregate_study(*, evaluations: Sequence[str], metrics: str, curves: str, table: str, csv: str, markdown: str,
                    summary: str, stats: Mapping, controls: Mapping[str, str], human_trials: str | None = None,
                    human_reference: str | None = None) -> None:
    """metrics.parquet, the curves, the sweet-spot table and the plain-language summary."""
    import pandas as pd

    from ..analysis import summary as prose
    from ..analysis import table as sweet

    started = time.time()
    frame = sweet.read_metrics(evaluations)
    artifacts.write_parquet(metrics, frame, contract.provenance({"stats": dict(stats), "controls": dict(controls)}))
    settings = sweet.Settings(controls=dict(controls), headline={k: list(v) for k, v in stats["headline"].items()},
                              n_boot=int(stats.get("n_boot", 1000)), confidence=float(stats.get("confidence", 0.95)),
                              seed=int(stats.get("seed", 0)), top1_margin=float(stats.get("top1_margin", 1.0)))
    human = _read_human_trials(human_trials) if human_trials else None
    found_curves, found_table = sweet.compute(frame, settings, human)
    artifacts.write_parquet(curves, found_curves)
    reference = pd.read_csv(human_reference) if human_reference else None
    text = prose.summary(found_table, found_curves, settings.top1_margin, reference)
    prose.write_tables(found_table, text, table=table, csv=csv, markdown=markdown)
    artifacts.write_text(summary, text)
    log.info("aggregated %d rows from %d files into %d sweet-spot rows in %.1f s",
             len(frame), len(evaluations), len(found_table), time.time() - started)


def _read_human_trials(path: str):
    import pandas as pd
    import pyarrow as pa

    try:
        trials = pd.read_parquet(path)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"{path}: not a readable Parquet file ({err}); delete it and run snakemake again, "
                         "which rebuilds it with the human_data job") from None
    missing = sorted({"dataset", "subject", "item", "correct"} - set(trials.columns))
    if missing:
        raise ValueError(f"{path}: missing the columns {missing}; delete it and run snakemake again, "
                         "which rebuilds it with the human_data job")
    return trials


def draw_plots(*, curves: str, summary: str, figures: Sequence[str], summary_page: str,
               specs: Mapping[str, Mapping], reference: str | None = None,
               human_experiments: Mapping[str, str] | None = None) -> None:
    """Every figure of `specs` (name -> study.figures' entry) as PNG and SVG, and the report's
    front page: the summary with the overview figure."""
    import pandas as pd

    from ..analysis import front_page, plots

    found = pd.read_parquet(curves)
    human = plots.human_reference(pd.read_csv(reference), human_experiments or {}) if reference else None
    stems = {Path(p).stem: Path(p).with_suffix("") for p in figures}
    for name, spec in specs.items():
        if spec["kind"] == "overview":
            fig = plots.overview(found, spec["role"])
        else:
            fig = plots.task_curves(found, spec["task"], spec["variant"], human)
        plots.save(fig, stems[name])
    overview = stems["overview"].with_suffix(".png")
    artifacts.write_text(summary_page, front_page.render(Path(summary).read_text(), overview.read_bytes()))
