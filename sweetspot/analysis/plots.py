"""Figures of the sweet-spot analysis, drawn from the curves frame of
`sweetspot.analysis.table.compute` (headline and exploratory metrics: diagnostic ones never
reach the curves, so no figure can show one).

- `task_curves`: one task's headline metrics versus sparsity as small multiples: rows =
  metric (top-1 first, so the accuracy cost is in view), columns = architecture, one line per
  pruning method, its matched control and the dense model as reference lines.
- `overview`: the gain over the control at every sparsity as heatmaps: rows = task / metric,
  columns = method x sparsity, one block per architecture.

A pruning method has one colour in every figure (`method_colours`), and every figure stays
within MAX_INCHES at DPI (1550 px a side): panels and cells shrink when a study has many rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colors, patheffects, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sweetspot import artifacts, catalog
from sweetspot.analysis.table import ACCURACY_TASK as ACCURACY
from sweetspot.analysis.table import TOP1

DPI = 100
MAX_INCHES = 15.5  # 1550 px at DPI: every figure fits a screen at 100 % zoom

# Okabe-Ito colours (distinguishable with colour-vision deficiencies); the order is the catalog's.
METHOD_COLOURS = dict(zip(catalog.PRUNING_METHODS, ("#0072B2", "#D55E00", "#009E73", "#CC79A7")))
_SPARE_COLOURS = ("#E69F00", "#56B4E9", "#000000", "#F0E442")
DENSE_COLOUR, HUMAN_COLOUR = "0.45", "black"
_DASH = 3.0  # points: the dash of a control line

# Legend entries besides the pruning methods: the reference lines and the markers.
CONTROL = "matched control (dashed, the method's colour)"
DENSE = "dense model"
BAND = "simultaneous band of the gain"
SWEET_SPOT = "sweet spot"
HUMANS = "humans: mean ± s.d. between observers"
SIGNIFICANT = "significant gain, not a sweet spot"
NON_INFERIOR = "top-1 non-inferior to the control"
COLLAPSED = "layers collapsed"
REFERENCE_LABELS = (CONTROL, DENSE, BAND, SWEET_SPOT, HUMANS, SIGNIFICANT, NON_INFERIOR, COLLAPSED)

# A model metric and the human reference metric it is drawn against (sweetspot.metrics.human).
HUMAN_METRIC = {"top1": "accuracy", "correct": "accuracy"}

ROW = ["task", "metric", "dataset", "variant"]  # one row of small multiples, one heatmap row


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """Method -> colour: the catalog's methods always the same, others from a spare palette."""
    present = set(methods)
    ordered = [m for m in catalog.PRUNING_METHODS if m in present] + sorted(present - set(catalog.PRUNING_METHODS))
    spare = iter(_SPARE_COLOURS * (1 + len(ordered) // len(_SPARE_COLOURS)))
    return {m: METHOD_COLOURS[m] if m in METHOD_COLOURS else next(spare) for m in ordered}


def human_reference(reference: pd.DataFrame, experiments: Mapping[str, str]) -> pd.DataFrame:
    """Human-to-human values (human/reference.csv) keyed like the curves: dataset, variant and
    the reference's metric, with value and std. An experiment with one condition is a dataset
    without conditions (variant ""); otherwise the condition is the variant."""
    rows = []
    for dataset, experiment in sorted(experiments.items()):
        own = reference[reference["experiment"] == experiment]
        single = own["condition"].nunique() == 1
        for r in own.itertuples(index=False):
            rows.append({"dataset": dataset, "variant": "" if single else str(r.condition), "metric": r.metric,
                         "value": float(r.value), "std": float(r.std)})
    return pd.DataFrame(rows, columns=["dataset", "variant", "metric", "value", "std"])


# --- curves ------------------------------------------------------------------------------------


def task_curves(curves: pd.DataFrame, task: str, variant: str | None = None,
                human: pd.DataFrame | None = None) -> Figure:
    """Headline metrics of `task` (of one `variant` when given) versus sparsity: a row per
    metric (and dataset / variant), top-1 first; a column per architecture; a line per
    pruning method with its simultaneous band, stars at sweet spots; the method's control
    dashed in its colour, the dense model grey and, where `human` has it, the humans' value."""
    rows = _rows(curves, task, "headline", variant)
    # the architectures with this task (and variant): attention maps exist for ViTs only
    archs = (sorted(_select(curves, [r for r in rows if r[0] == task])["arch"].unique())
             or sorted(curves["arch"].unique()) or ["(no data)"])
    colours = method_colours(curves["method"].unique())
    n_rows, n_cols = max(len(rows), 1), len(archs)
    width = min(3.2, (MAX_INCHES - 1.4) / n_cols)
    height = min(2.1, (MAX_INCHES - 1.8) / n_rows)
    fig = Figure(figsize=(width * n_cols + 1.4, height * n_rows + 1.8), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey="row")
    sparsities = sorted(set(curves.loc[curves["task"].isin([task, ACCURACY]), "sparsity"]) | {0.0})
    show_dataset = len({r[2] for r in rows}) > 1
    drew_human = False
    for i, row in enumerate(rows or [None]):
        facet = _select(curves, [row]) if row else curves.iloc[:0]
        reference = _human_value(human, row) if row else None
        for j, arch in enumerate(archs):
            ax = axes[i, j]
            panel = facet[facet["arch"] == arch]
            if panel.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
            else:
                _draw_panel(ax, panel, colours)
                if reference is not None:
                    value, std = reference
                    ax.axhspan(value - std, value + std, color=HUMAN_COLOUR, alpha=0.08, linewidth=0)
                    ax.axhline(value, color=HUMAN_COLOUR, linestyle=":", linewidth=1.2)
                    drew_human = True
            _sparsity_axis(ax, sparsities, label=i == n_rows - 1)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(arch, fontsize=10)
            if j == 0:
                ax.set_ylabel(_row_label(row, show_dataset, show_variant=variant is None, wrap=True) if row else "",
                              fontsize=8)
            ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=colours[m], marker="o", markersize=4, label=m) for m in colours]
    handles += [Line2D([], [], color="black", linestyle=(0, (3, 2)), linewidth=1, label=CONTROL),
                Line2D([], [], color=DENSE_COLOUR, linewidth=0.8, label=DENSE),
                Patch(color="black", alpha=0.15, label=BAND),
                Line2D([], [], color="black", marker="*", markersize=9, linestyle="", label=SWEET_SPOT)]
    if drew_human:
        handles.append(Line2D([], [], color=HUMAN_COLOUR, linestyle=":", linewidth=1.2, label=HUMANS))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    name = catalog.VARIANT_NAMES.get(variant, variant) if variant else ""
    fig.suptitle(f"{task}{': ' + name if name else ''}: headline metrics versus sparsity", fontsize=11)
    return fig


def _draw_panel(ax, panel: pd.DataFrame, colours: Mapping[str, str]) -> None:
    dense = panel["dense_value"].dropna()
    if len(dense):
        ax.axhline(float(dense.iloc[0]), color=DENSE_COLOUR, linewidth=0.8, zorder=1)
    _draw_controls(ax, panel, colours)
    for method in colours:
        line = panel[panel["method"] == method].sort_values("sparsity")
        if line.empty:
            continue
        x, y = line["sparsity"].to_numpy(float), line["value"].to_numpy(float)
        # the band is an interval of the gain: drawn around the value in the metric's own direction
        sign = np.where(line["higher_is_better"].to_numpy(bool), 1.0, -1.0)
        gain = line["gain"].to_numpy(float)
        low = np.where(x == 0, y, y + sign * (line["band_low"].to_numpy(float) - gain))
        high = np.where(x == 0, y, y + sign * (line["band_high"].to_numpy(float) - gain))
        ax.fill_between(x, np.fmin(low, high), np.fmax(low, high), color=colours[method], alpha=0.12, linewidth=0)
        ax.plot(x, y, color=colours[method], marker="o", markersize=3, linewidth=1.4, zorder=3)
        sweet = line["sweet_spot"].to_numpy(bool)
        ax.plot(x[sweet], y[sweet], linestyle="", marker="*", markersize=11, color=colours[method],
                markeredgecolor="black", markeredgewidth=0.6, zorder=4)


def _draw_controls(ax, panel: pd.DataFrame, colours: Mapping[str, str]) -> None:
    """Each method's control as a dashed line in its colour; methods that share a control take
    turns along one line, so every colour stays visible."""
    first = panel.sort_values("sparsity").drop_duplicates("method")
    for _, shared in first.groupby("control", sort=True):
        methods = [m for m in colours if m in set(shared["method"])]
        value = float(shared["control_value"].iloc[0])
        if not math.isfinite(value):
            continue
        for k, method in enumerate(methods):
            ax.axhline(value, color=colours[method], linewidth=1.0, zorder=2,
                       linestyle=(k * _DASH, (_DASH, _DASH * len(methods))))


def sparsity_position(sparsities: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """Where a sparsity lies on the x axis: log10(s + c) - log10(1 - s), the log of the weights
    removed minus the log of the weights kept. High sparsities spread as by the weights kept (0.9
    and 0.95 lie nearly as far apart as 0.5 and 0.75), and so do low ones, whose grid a method such as
    random pruning may have of its own (0.0025 and 0.005 lie as far apart as 0.005 and 0.01). c, half
    the smallest pruned sparsity, puts the dense model half a step left of it."""
    pruned = [float(s) for s in sparsities if s > 0]
    c = min(pruned) / 2 if pruned else 0.25
    return lambda s: (np.log10(np.clip(np.asarray(s, float), 0.0, None) + c)
                      - np.log10(np.clip(1.0 - np.asarray(s, float), 1e-6, None)))


def _sparsity_axis(ax, sparsities: Sequence[float], label: bool) -> None:
    """Sparsity on sparsity_position's scale; ticks at the study's sparsities (every other one
    when they crowd)."""
    position = sparsity_position(sparsities)
    grid = np.unique(np.concatenate([[0.0], np.geomspace(1e-7, 0.5, 400), 1.0 - np.geomspace(0.5, 1e-6, 400)]))
    inverse = lambda x: np.interp(np.asarray(x, float), position(grid), grid)  # noqa: E731 (increasing)
    ax.set_xscale("function", functions=(position, inverse))
    ticks = list(sparsities)[:: max(1, math.ceil(len(sparsities) / 8))]
    ax.set_xticks(ticks, [f"{s:g}" for s in ticks])
    ax.minorticks_off()
    top = max(sparsities) if sparsities else 0.9
    ax.set_xlim(0.0, 1.0 - (1.0 - top) * 0.8)
    if label:
        ax.set_xlabel("sparsity", fontsize=8)


def _human_value(human: pd.DataFrame | None, row: tuple) -> tuple[float, float] | None:
    if human is None or human.empty:
        return None
    _, metric, dataset, variant = row
    found = human[(human["dataset"] == dataset) & (human["variant"] == variant)
                  & (human["metric"] == HUMAN_METRIC.get(metric, metric))]
    return (float(found["value"].iloc[0]), float(found["std"].iloc[0])) if len(found) else None


# --- overview ----------------------------------------------------------------------------------


def overview(curves: pd.DataFrame, role: str = "headline") -> Figure:
    """Gain over the matched control at every (method, sparsity): one heatmap row per task /
    metric (/ dataset / variant), top-1 on top; the levels of one distortion collapse to their
    mean. A star marks a sweet spot, a ring a significant gain that is not one; on top-1 rows a
    tick marks a model non-inferior to its control and a cross collapsed layers."""
    pruned = curves[curves["sparsity"] > 0]
    groups = _overview_groups(pruned, role)
    archs = sorted(pruned["arch"].unique()) or ["(no data)"]
    methods = list(method_colours(pruned["method"].unique()))
    columns = [(m, s) for m in methods for s in sorted(pruned.loc[pruned["method"] == m, "sparsity"].unique())]
    n_rows = sum(len(labels) for _, labels, _ in groups) or 1
    label_width, colorbar, fixed_height = 4.4, 1.0, 2.0
    cell = min(0.24, (MAX_INCHES - label_width - colorbar) / max(1, len(columns) * len(archs)),
               (MAX_INCHES - fixed_height - 0.15 * len(groups)) / n_rows)
    fig = Figure(figsize=(label_width + colorbar + cell * len(columns) * len(archs),
                          fixed_height + 0.15 * len(groups) + cell * n_rows), layout="constrained")
    if not groups or not columns:
        fig.text(0.5, 0.5, f"no {role} results of pruned models", ha="center", va="center", color="grey")
        return fig
    # a one-row task gets a little more height, so its colour bar keeps readable ticks
    axes = fig.subplots(len(groups), len(archs), squeeze=False, sharex=True,
                        gridspec_kw={"height_ratios": [max(len(labels), 1.6) for _, labels, _ in groups]})
    colours = method_colours(methods)
    for g, (task, labels, cells) in enumerate(groups):
        limit = float(np.nanmax(np.abs(cells["gain"].to_numpy(float)), initial=0.0)) or 1e-3
        norm = colors.Normalize(-limit, limit)
        image = None
        for j, arch in enumerate(archs):
            ax = axes[g, j]
            own = cells[cells["arch"] == arch]
            grid = np.full((len(labels), len(columns)), np.nan)
            at = {key: n for n, key in enumerate(columns)}
            for r in own.itertuples(index=False):
                grid[r.row, at[(r.method, r.sparsity)]] = r.gain
            ax.set_facecolor("0.88")  # no measurement (e.g. attention maps of a CNN)
            image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", norm=norm, aspect="auto",
                              interpolation="nearest")
            _mark_cells(ax, own, at)
            for boundary in np.flatnonzero([a[0] != b[0] for a, b in zip(columns, columns[1:])]):
                ax.axvline(boundary + 0.5, color="white", linewidth=2.5)
            ax.set_yticks(range(len(labels)), labels if j == 0 else [], fontsize=8)
            ax.set_xticks(range(len(columns)), [f"{s:g}" for _, s in columns], rotation=90, fontsize=7)
            ax.tick_params(length=0)
            if j == 0:
                ax.set_ylabel(task, fontsize=9, fontweight="bold", rotation=0, ha="right", va="center", labelpad=8)
            if g == 0:
                _method_header(ax, columns, colours, arch, cell)
            if g == len(groups) - 1:
                ax.set_xlabel("sparsity", fontsize=8)
        bar = fig.colorbar(image, ax=axes[g, :].tolist(), fraction=0.04, pad=0.01, aspect=max(3, 4 * len(labels)),
                           ticks=[-limit, 0.0, limit], format=ticker.FuncFormatter(_signed))
        bar.ax.tick_params(labelsize=7)
        bar.set_label("gain", fontsize=7)
    handles = [Line2D([], [], marker="*", color="black", markerfacecolor="white", markersize=10, linestyle="",
                      label=SWEET_SPOT),
               Line2D([], [], marker="o", color="black", markerfacecolor="none", markersize=6, linestyle="",
                      label=SIGNIFICANT),
               Line2D([], [], marker=r"$\checkmark$", color="black", markersize=8, linestyle="", label=NON_INFERIOR),
               Line2D([], [], marker="x", color="black", markersize=6, linestyle="", label=COLLAPSED)]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Gain over the matched control (positive = better), {role} metrics; "
                 "colour scale per task, in the metrics' units", fontsize=10)
    return fig


def _overview_groups(pruned: pd.DataFrame, role: str) -> list[tuple[str, list[str], pd.DataFrame]]:
    """(task, row labels, cells) per task with rows: cells have arch, method, sparsity, row
    (index into the labels), gain and the markers; top-1 (headline) rows lead the first group."""
    groups = []
    for task in catalog.TASKS:
        rows = _rows(pruned, task, role, with_accuracy=False)
        if task == ACCURACY and role != "headline":
            rows = _rows(pruned, ACCURACY, "headline", with_accuracy=False) + rows
        if not rows:
            continue
        frame = _select(pruned, rows).assign(family=lambda f: [_family(t, v) for t, v in zip(f["task"], f["variant"])])
        keys = ["task", "metric", "dataset", "family"]
        order = list(dict.fromkeys((r[0], r[1], r[2], _family(r[0], r[3])) for r in rows))
        levels = frame.groupby(keys, sort=False)["variant"].nunique()
        show_dataset = len({k[2] for k in order}) > 1
        labels = [_row_label(k, show_dataset, levels=levels[k]) for k in order]
        frame["significant_only"] = frame["significant"] & ~frame["sweet_spot"]
        frame["collapsed"] = frame["collapsed_layers"] > 0
        frame["non_inferior"] = frame["non_inferior"].fillna(False).astype(bool)
        cells = (frame.groupby(keys + ["arch", "method", "sparsity"], sort=False)
                 .agg(gain=("gain", "mean"), sweet_spot=("sweet_spot", "any"),
                      significant_only=("significant_only", "any"), non_inferior=("non_inferior", "all"),
                      collapsed=("collapsed", "any"))
                 .reset_index())
        cells["row"] = [order.index(tuple(k)) for k in cells[keys].itertuples(index=False)]
        cells["top1"] = (cells["task"] == ACCURACY) & (cells["metric"] == TOP1)
        groups.append((task, labels, cells))
    return groups


def _mark_cells(ax, cells: pd.DataFrame, at: Mapping[tuple[str, float], int]) -> None:
    """One marker per cell, the strongest that applies: a sweet spot (never where layers
    collapsed), then on top-1 rows collapse or non-inferiority, elsewhere a significant gain."""
    x = np.array([at[(m, s)] for m, s in zip(cells["method"], cells["sparsity"])], dtype=float)
    y = cells["row"].to_numpy(float)
    top1, collapsed = cells["top1"].to_numpy(bool), cells["collapsed"].to_numpy(bool)
    sweet = cells["sweet_spot"].to_numpy(bool)
    ring = cells["significant_only"].to_numpy(bool) & ~sweet & ~top1
    tick = top1 & cells["non_inferior"].to_numpy(bool) & ~sweet & ~collapsed
    cross = top1 & collapsed
    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]  # visible on dark cells too
    ax.scatter(x[sweet], y[sweet], marker="*", s=70, c="white", edgecolors="black", linewidths=0.6)
    ax.scatter(x[ring], y[ring], marker="o", s=22, facecolors="none", edgecolors="black", linewidths=0.8,
               path_effects=halo)
    ax.scatter(x[tick], y[tick], marker=r"$\checkmark$", s=40, c="black", linewidths=0, path_effects=halo)
    ax.scatter(x[cross], y[cross], marker="x", s=22, c="black", linewidths=1.0, path_effects=halo)


def _signed(value: float, _position=None) -> str:
    return "0" if value == 0 else f"{value:+.2g}"


def _method_header(ax, columns: Sequence[tuple[str, float]], colours: Mapping[str, str], arch: str,
                   cell: float) -> None:
    """The architecture above each block and every method, in its colour, above its columns
    (in a smaller font where a method has few columns)."""
    ax.set_title(arch, fontsize=10, pad=16)
    for method in dict.fromkeys(m for m, _ in columns):
        span = [n for n, (m, _) in enumerate(columns) if m == method]
        fits = len(span) * cell * 72 / (0.62 * len(method))  # points of font that fit the block
        ax.text((span[0] + span[-1]) / 2, -0.7, method, ha="center", va="bottom", fontsize=min(8.0, fits),
                fontweight="bold", color=colours[method], clip_on=False)


# --- rows --------------------------------------------------------------------------------------


def _rows(curves: pd.DataFrame, task: str, role: str, variant: str | None = None,
          with_accuracy: bool = True) -> list[tuple[str, str, str, str]]:
    """(task, metric, dataset, variant) of the curves of `task` with `role`, in catalog order;
    with_accuracy puts the top-1 (headline accuracy) rows first."""
    own = curves[(curves["task"] == task) & (curves["role"] == role)]
    if variant is not None:
        own = own[own["variant"] == variant]
    rows = sorted(set(own[ROW].itertuples(index=False, name=None)), key=_row_order)
    if with_accuracy and task != ACCURACY:
        top1 = curves[(curves["task"] == ACCURACY) & (curves["role"] == "headline")]
        rows = sorted(set(top1[ROW].itertuples(index=False, name=None)), key=_row_order) + rows
    return rows


def _row_order(row: tuple[str, str, str, str]) -> tuple:
    task, metric, dataset, variant = row
    metrics, variants = list(catalog.METRICS), list(catalog.VARIANT_NAMES)
    return (metrics.index(metric) if metric in metrics else len(metrics), metric, dataset,
            variants.index(variant) if variant in variants else len(variants), variant)


def _select(curves: pd.DataFrame, rows: Sequence[tuple]) -> pd.DataFrame:
    keys = pd.MultiIndex.from_frame(curves[ROW])
    return curves[keys.isin(list(rows))]


def _family(task: str, variant: str) -> str:
    """The distortion of an alignment condition (contrast-c05 -> contrast), else the variant:
    the levels of one distortion share a row in the overview."""
    return variant.rsplit("-", 1)[0] if task == "alignment" and "-" in variant else variant


def _row_label(row: tuple[str, str, str, str], show_dataset: bool, show_variant: bool = True, levels: int = 1,
               wrap: bool = False) -> str:
    _, metric, dataset, variant = row
    lower = metric in catalog.METRICS and not catalog.METRICS[metric].higher_is_better
    parts = [catalog.display(metric) + (" (lower is better)" if lower else "")]
    if variant and show_variant:
        parts.append(catalog.VARIANT_NAMES.get(variant, variant) + (f" ({levels} levels)" if levels > 1 else ""))
    if show_dataset:
        parts.append(dataset)
    return ("\n" if wrap else " · ").join(parts)


def save(fig: Figure, path_stem: str | Path) -> None:
    """`<stem>.png` (the report) and `<stem>.svg` (papers), each written atomically."""
    stem = Path(path_stem)
    for suffix in (".png", ".svg"):
        artifacts.save_figure(fig, stem.with_name(stem.name + suffix), dpi=DPI, bbox_inches="tight")
