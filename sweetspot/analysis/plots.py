"""Figures of the sweet-spot analysis: metric-versus-sparsity curves and gain heatmaps.

Both read the curves frame of `sweetspot.analysis.table.compute` and write `<stem>.png` and
`<stem>.svg` atomically. Figure sizes grow with the number of facets, lines and rows, so a
study with many metrics stays legible.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors  # noqa: E402

from sweetspot import artifacts as io  # noqa: E402

_LINE_KEYS = ["dataset", "variant", "metric"]
_STYLES = ["-", "--", ":", "-."]


def curves_figure(curves: pd.DataFrame, task: str, path_stem: str | Path) -> None:
    """Metric versus sparsity for one task: rows = architecture, columns = pruning method, one
    line per (dataset, variant, metric) with its paired interval as a band and the dense value
    as a dashed line; baselines measured only for the dense model appear as dotted lines."""
    rows = curves[curves["task"] == task]
    archs = sorted(rows["arch"].unique()) or ["(none)"]
    methods = sorted(m for m in rows["method"].unique() if m != "dense") or ["dense"]
    lines = sorted({_label(r) for r in rows[_LINE_KEYS].drop_duplicates().itertuples(index=False)})
    colour = {label: plt.get_cmap("tab20")(i % 20) for i, label in enumerate(lines)}
    style = {label: _STYLES[(i // 20) % len(_STYLES)] for i, label in enumerate(lines)}
    legend_rows = max(1, int(np.ceil((len(lines) + 2) / 3)))
    fig, axes = plt.subplots(
        len(archs), len(methods), squeeze=False, sharex=True, layout="constrained",
        figsize=(3.6 * len(methods) + 1, 2.8 * len(archs) + 0.6 + 0.18 * legend_rows),
    )
    for i, arch in enumerate(archs):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            facet = rows[(rows["arch"] == arch) & (rows["method"] == method)]
            baselines = rows[(rows["arch"] == arch) & (rows["method"] == "dense")]
            if facet.empty and baselines.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
            for key, line in facet.groupby(_LINE_KEYS, sort=True):
                _draw_curve(ax, line.sort_values("sparsity"), colour[_label(key)], style[_label(key)])
            if method != "dense":
                for key, line in baselines.groupby(_LINE_KEYS, sort=True):
                    if not ((facet["dataset"] == key[0]) & (facet["variant"] == key[1]) & (facet["metric"] == key[2])).any():
                        ax.axhline(line["value"].mean(), color=colour[_label(key)], linestyle=":", linewidth=1)
            ax.set_title(f"{arch} / {method}", fontsize=9)
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
            if i == len(archs) - 1:
                ax.set_xlabel("sparsity")
            if j == 0:
                ax.set_ylabel("value")
    handles = [plt.Line2D([], [], color=colour[label], linestyle=style[label], label=label) for label in lines]
    handles += [plt.Line2D([], [], color="black", linestyle=(0, (4, 2)), label="dense model"),
                plt.Line2D([], [], color="black", linestyle=":", label="dense-only baseline")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"{task}: metric versus sparsity (bands: paired interval of the gain over dense)", fontsize=10)
    _save(fig, path_stem)


def gain_heatmap(curves: pd.DataFrame, arch: str, path_stem: str | Path) -> None:
    """Gain over dense (positive = better) per (task/dataset/variant/metric) row and sparsity
    column, one panel per method; a dot marks a gain significant after Holm correction."""
    rows = curves[(curves["arch"] == arch) & (curves["sparsity"] > 0)]
    methods = sorted(rows["method"].unique()) or ["(none)"]
    row_keys = sorted({"/".join(filter(None, k)) for k in
                       rows[["task", "dataset", "variant", "metric"]].itertuples(index=False)})
    sparsities = sorted(rows["sparsity"].unique())
    finite = rows["gain"].abs().dropna()
    limit = float(np.quantile(finite, 0.95)) if len(finite) else 1.0
    norm = colors.TwoSlopeNorm(vcenter=0.0, vmin=-(limit or 1.0), vmax=limit or 1.0)
    fig, axes = plt.subplots(
        1, len(methods), squeeze=False, sharey=True, layout="constrained",
        figsize=(0.3 * max(len(sparsities), 4) * len(methods) + 4.5, 0.3 * max(len(row_keys), 4) + 1.8),
    )
    image = None
    for j, method in enumerate(methods):
        ax = axes[0, j]
        if not row_keys:
            ax.text(0.5, 0.5, "no pruned results", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_axis_off()
            continue
        facet = rows[rows["method"] == method].assign(
            row=lambda f: ["/".join(filter(None, k)) for k in f[["task", "dataset", "variant", "metric"]].itertuples(index=False)])
        gain = facet.pivot_table(index="row", columns="sparsity", values="gain", aggfunc="first")
        gain = gain.reindex(index=row_keys, columns=sparsities)
        image = ax.imshow(gain.to_numpy(dtype=float), cmap="RdBu", norm=norm, aspect="auto", interpolation="nearest")
        marked = facet[facet["significant"]]
        ax.scatter([sparsities.index(s) for s in marked["sparsity"]], [row_keys.index(r) for r in marked["row"]],
                   s=10, c="black", marker="o")
        ax.set_xticks(range(len(sparsities)), [f"{s:g}" for s in sparsities], rotation=90, fontsize=7)
        ax.set_yticks(range(len(row_keys)), row_keys, fontsize=7)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("sparsity")
    if image is not None:
        fig.colorbar(image, ax=axes[0, :].tolist(), extend="both", shrink=0.8,
                     label="gain over dense (positive = better)")
    fig.suptitle(f"{arch}: gain over the dense model (dot: significant after Holm)", fontsize=10)
    _save(fig, path_stem)


def _label(key) -> str:
    return " / ".join(str(part) for part in key if str(part))


def _draw_curve(ax, line: pd.DataFrame, colour, style: str) -> None:
    x = line["sparsity"].to_numpy()
    y = line["value"].to_numpy(dtype=float)
    # the paired interval of the gain, drawn around the curve in the metric's own direction
    sign = np.where(line["higher_is_better"].to_numpy(dtype=bool), 1.0, -1.0)
    gain = line["gain"].to_numpy(dtype=float)
    low = y + sign * (line["ci_low"].to_numpy(dtype=float) - gain)
    high = y + sign * (line["ci_high"].to_numpy(dtype=float) - gain)
    at_dense = x == 0  # the reference itself: no width
    low, high = np.where(at_dense, y, low), np.where(at_dense, y, high)
    ax.plot(x, y, color=colour, linestyle=style, marker="o", markersize=3, linewidth=1.2)
    ax.fill_between(x, np.minimum(low, high), np.maximum(low, high), color=colour, alpha=0.15, linewidth=0)
    dense = line.loc[line["sparsity"] == 0, "value"]
    if len(dense):
        ax.axhline(float(dense.iloc[0]), color=colour, linestyle=(0, (4, 2)), linewidth=0.8, alpha=0.8)


def _save(fig, path_stem: str | Path) -> None:
    stem = Path(path_stem)
    try:
        for suffix in (".png", ".svg"):
            io.save_figure(fig, stem.with_name(stem.name + suffix), dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
