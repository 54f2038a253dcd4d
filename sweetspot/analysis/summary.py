"""The sweet-spot table in sentences, and the table as CSV, Parquet and markdown."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sweetspot import artifacts, catalog
from sweetspot.analysis.table import CURVE

SHOWN_PER_TASK = 4  # sweet-spot sentences per architecture and task; the table has the rest


def summary(table: pd.DataFrame, curves: pd.DataFrame, margin: float, reference: pd.DataFrame | None = None) -> str:
    """Plain-language markdown answer to "when does pruning benefit?", one section per architecture;
    with `reference` (human-to-human values, human/reference.csv) the dense models against humans;
    with several architectures, each one's sweet spots side by side."""
    lines = ["# When does pruning benefit?", ""]
    if table.empty:
        return "\n".join(lines + ["No pruned models were evaluated, so there is nothing to compare.", ""])
    confidence = float(table["confidence"].iloc[0])
    lines += [
        f"Each pruned model is compared with its matched control: a dense model trained exactly like it, minus the "
        f"mask (column `control`). A **sweet spot** is a sparsity where a headline metric gains significantly "
        f"(a {confidence:.0%} band simultaneous over every headline comparison of the architecture and task) while "
        f"top-1 stays within {margin:g} points of the control (one-sided {confidence:.0%} bound) and no layer has "
        f"collapsed. Intervals are paired bootstraps over items (and seeds).", ""]
    pruned = curves[curves["sparsity"] > 0]
    for arch, rows in table.groupby("arch", sort=True):
        lines += [f"## {arch}", ""]
        lines += _collapse_lines(arch, pruned)
        for task, task_rows in rows.groupby("task", sort=True):
            lines += _task_lines(arch, task, task_rows, pruned[(pruned["arch"] == arch) & (pruned["task"] == task)])
        lines.append("")
    if reference is not None and not reference.empty:
        lines += _against_humans(curves, reference)
    if table["arch"].nunique() > 1:
        lines += _across_architectures(table)
    return "\n".join(lines)


# model-vs-human's name for a metric where the model's differs
_HUMAN_METRIC = {"top1": "accuracy", "correct": "accuracy"}


def _against_humans(curves: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """Dense values next to the human-to-human mean and spread of the same experiment and condition."""
    from sweetspot.data import registry

    dense = curves[curves["sparsity"] == 0].drop_duplicates(["arch", "task", "dataset", "variant", "metric"])
    rows = []
    for r in dense.sort_values(["dataset", "metric", "arch"]).itertuples(index=False):
        experiment = registry.human_experiment(r.dataset) if r.dataset in registry.names() else None
        if experiment is None:
            continue
        found = reference[(reference["experiment"] == experiment)
                          & (reference["metric"] == _HUMAN_METRIC.get(r.metric, r.metric))]
        conditions = sorted(found["condition"].astype(str).unique())
        match = found[found["condition"].astype(str) == (r.variant if r.variant else conditions[0])] \
            if r.variant or len(conditions) == 1 else found.iloc[0:0]
        if match.empty or not pd.notna(r.dense_value):
            continue
        human = match.iloc[0]
        rows.append(f"| {r.arch} | {r.dataset}{' ' + r.variant if r.variant else ''} | {catalog.display(r.metric)} | "
                    f"{r.dense_value:.3f} | {human['value']:.3f} ± {human['std']:.3f} (n = {int(human['n'])}) |")
    if not rows:
        return []
    return ["## Dense models against humans", "",
            "The dense model's value beside the human observers' (mean ± standard deviation over observers, or "
            "over pairs of observers for the consistency metrics; results/human/reference.csv).", "",
            "| architecture | dataset | metric | dense | humans |", "| --- | --- | --- | --- | --- |", *rows, ""]


def _across_architectures(table: pd.DataFrame) -> list[str]:
    """Each architecture's sweet range for every headline curve that has a sweet spot anywhere:
    does the sweet spot move with the architecture (its size, when the architectures are sizes)?"""
    key = ["method", "task", "dataset", "variant", "metric"]
    headline = table[table["role"] == "headline"]
    spotted = headline[headline["sweet_spot"]][key].drop_duplicates()
    archs = sorted(table["arch"].unique())
    lines = ["## Across architectures", ""]
    if spotted.empty:
        return lines + [f"No architecture ({', '.join(archs)}) has a sweet spot, so none moves.", ""]
    lines += ["Sweet ranges (sparsities) per architecture for every headline curve with a sweet spot somewhere; "
              "'-' none, blank not measured.", "",
              "| method | task | dataset | variant | metric | " + " | ".join(archs) + " |",
              "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in archs) + " |"]
    for r in spotted.sort_values(key).itertuples(index=False):
        same = headline[(headline[key] == pd.Series(r._asdict())).all(axis=1)].set_index("arch")
        cells = [(same.loc[a, "sweet_range"] or "-") if a in same.index else "" for a in archs]
        lines.append(f"| {r.method} | {r.task} | {r.dataset} | {r.variant} | {catalog.display(r.metric)} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def _collapse_lines(arch: str, pruned: pd.DataFrame) -> list[str]:
    collapsed = (pruned[(pruned["arch"] == arch) & (pruned["collapsed_layers"] > 0)]
                 .drop_duplicates(["method", "sparsity"]).sort_values(["method", "sparsity"]))
    if collapsed.empty:
        return []
    where = ", ".join(f"{r.method} at {r.sparsity:g} ({r.collapsed_layers:.0f})" for r in collapsed.itertuples())
    return [f"**Layer collapse** (prunable layers at 100 % or with a constant output; never a sweet spot): {where}. "
            "The structure task's `layer_collapsed` rows name the layers.", ""]


def _task_lines(arch: str, task: str, rows: pd.DataFrame, points: pd.DataFrame) -> list[str]:
    headline = rows[rows["role"] == "headline"]
    spots = headline[headline["sweet_spot"]].sort_values(["p_adjusted", "gain"], ascending=[True, False])
    lines = []
    if spots.empty:
        lines.append(f"**{task}**: no sweet spot ({len(headline)} headline curves tested).")
    else:
        lines.append(f"**{task}**: {len(spots)} of {len(headline)} headline curves have a sweet spot:")
        lines += [f"- {_sentence(r)}" for r in spots.head(SHOWN_PER_TASK).itertuples(index=False)]
        if len(spots) > SHOWN_PER_TASK:
            lines.append(f"- ... and {len(spots) - SHOWN_PER_TASK} more in sweet_spots.md.")
    lost = points[(points["role"] == "headline") & points["significant"] & ~points["sweet_spot"]]
    if len(lost):
        lines.append(f"  {len(lost)} further significant headline gain(s) came where top-1 was not shown to hold or a "
                     "layer collapsed; they are not pruning benefits of a working model.")
    exploratory = rows[(rows["role"] == "exploratory") & rows["significant"]]
    if len(exploratory):
        lines.append(f"  Exploratory (FDR-controlled, not sweet spots): "
                     + "; ".join(_name(r) for r in exploratory.itertuples(index=False)) + ".")
    lines.append("")
    return lines


def _name(row) -> str:
    variant = catalog.VARIANT_NAMES.get(row.variant, row.variant)
    return (f"{variant + ' ' if variant else ''}{catalog.display(row.metric)} on {row.dataset} "
            f"({row.method} {row.best_sparsity:g}, {row.gain:+.3g})")


def _sentence(row) -> str:
    variant = catalog.VARIANT_NAMES.get(row.variant, row.variant)
    direction = 1.0 if row.higher_is_better else -1.0
    low, high = sorted((direction * row.ci_low, direction * row.ci_high))
    text = (f"{row.method} pruning at {100 * row.best_sparsity:.3g}% sparsity changes "
            f"{variant + ' ' if variant else ''}{catalog.display(row.metric)} on {row.dataset} from "
            f"{row.control_value:.3g} ({row.control}) to {row.best_value:.3g}: {direction * row.gain:+.3g} "
            f"[{low:.3g}, {high:.3g}]{'' if row.higher_is_better else ' (lower is better)'}, "
            f"adjusted p {row.p_adjusted:.2g}")
    if math.isfinite(row.top1_drop):
        text += f"; top-1 {-row.top1_drop:+.1f} points (lower bound {row.top1_lower:+.1f})"
    if row.sweet_range and row.sweet_range != f"{row.best_sparsity:g}":
        text += f"; sweet range {row.sweet_range}"
    return text + (f". Caveat: {row.caveat}." if row.caveat else ".")


def markdown_table(table: pd.DataFrame) -> str:
    """The table as markdown: what a reader needs, numbers rounded."""
    shown = table[CURVE + ["role", "control_value", "best_sparsity", "best_value", "gain", "ci_low", "ci_high",
                           "p_adjusted", "q_value", "sweet_spot", "sweet_range", "top1_drop", "caveat"]].copy()
    for column in ("control_value", "best_value", "gain", "ci_low", "ci_high", "top1_drop"):
        shown[column] = shown[column].map(lambda x: "" if pd.isna(x) else f"{x:.3f}")
    for column in ("p_adjusted", "q_value"):
        shown[column] = shown[column].map(lambda x: "" if pd.isna(x) else f"{x:.2g}")
    shown["best_sparsity"] = shown["best_sparsity"].map(lambda x: "" if pd.isna(x) else f"{x:g}")
    shown["sweet_spot"] = shown["sweet_spot"].map({True: "yes", False: "no"})
    return shown.to_markdown(index=False)


def write_tables(frame: pd.DataFrame, summary_md: str, *, table: str | Path, csv: str | Path,
                 markdown: str | Path) -> None:
    """The table as Parquet and CSV, and as markdown below the summary."""
    artifacts.write_parquet(table, frame)
    with artifacts.atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    artifacts.write_text(markdown, summary_md.rstrip() + "\n\n" + markdown_table(frame) + "\n")
