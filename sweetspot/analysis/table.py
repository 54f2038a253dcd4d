"""Sweet spots: where along the sparsity axis does pruning help, and is the help real?

`compute` turns the long metrics frame (sweetspot.contract) into
- curves: one row per (arch, method, task, dataset, variant, metric, sparsity), the dense model
  as the sparsity-0 point of every method's curve;
- the table: one row per curve with pruned points, at its best sparsity (DESIGN section 7).

Sign convention: `gain` (and ci_low, ci_high) is always "positive = better". It is the paired
mean difference pruned - dense for metrics where higher is better and dense - pruned where lower
is better (column `higher_is_better`). `value`, `dense_value` and `best_value` are raw means.

Pairing: pruned seed k is compared with dense seed k; when the dense model has a single seed,
every pruned seed is compared with it; a pruned seed without a dense partner is left out (logged).
Intervals come from sweetspot.analysis.stats (item bootstrap, hierarchical over seeds when there are
several; p-values from the bootstrap standard error). Set-level metrics (item "") get a t
interval over seeds; with one seed no interval, and they are never a benefit. Bootstrap draws
depend only on `seed` and a comparison's own items, so adding results elsewhere in the study
does not move an existing interval.

Multiple testing: one Holm family holds every pruned-vs-dense comparison of every curve that
can enter the table (all methods, tasks, metrics and sparsities of the run; flag_* diagnostics
are left out). Its size is the column `n_comparisons`. `sweet_range` lists the sparsities whose
gain is positive and significant after Holm.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pa_dataset

from sweetspot import artifacts as io
from sweetspot.analysis import stats
from sweetspot.contract import COLUMNS, HIGHER_IS_BETTER

log = logging.getLogger(__name__)

GROUP = ["arch", "method", "task", "dataset", "variant", "metric"]
# Curves that share a dense baseline: the group without the method.
_FAMILY = ["arch", "task", "dataset", "variant", "metric"]
DIAGNOSTIC_PREFIX = "flag_"
ACCURACY = ("accuracy", "", "top1")  # task, variant, metric of the accuracy a sweet spot must keep
MAX_TOP1_DROP_POINTS = 5.0
MIN_SHAPE_OR_TEXTURE = 0.5
MIN_SEEDS_FOR_SEED_INTERVAL = 5
_WEIGHT_CACHE_SIZE = 32

CURVE_COLUMNS = GROUP + [
    "sparsity", "sparsity_actual", "higher_is_better", "value", "gain", "ci_low", "ci_high",
    "p_value", "p_holm", "significant", "n_items", "n_seeds",
]
TABLE_COLUMNS = GROUP + [
    "higher_is_better", "dense_value", "best_sparsity", "sparsity_actual", "best_value", "gain",
    "ci_low", "ci_high", "confidence", "benefit", "p_value", "p_holm", "benefit_holm", "sweet_range", "n_items",
    "n_seeds", "n_comparisons", "top1", "top1_dense", "top1_drop", "shape_or_texture", "caveat",
]


def compute(
    metrics_frame: pd.DataFrame,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    correction: str = "holm",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves and sweet-spot table of a contract frame; deterministic for a given `seed`."""
    if correction != "holm":
        raise ValueError(f"stats.correction: {correction!r} is not supported; use 'holm'")
    if not 0 < confidence < 1:
        raise ValueError(f"stats.confidence must lie in (0, 1), got {confidence}")
    if n_boot < 2:
        raise ValueError(f"stats.n_boot must be at least 2, got {n_boot}")
    frame = _checked(metrics_frame)
    curves = _curves(frame, n_boot=n_boot, confidence=confidence, seed=seed)
    alpha = 1.0 - confidence
    in_family = (curves["sparsity"] > 0) & ~curves["metric"].str.startswith(DIAGNOSTIC_PREFIX)
    curves["p_holm"] = np.nan
    curves.loc[in_family, "p_holm"] = stats.holm(curves.loc[in_family, "p_value"].to_numpy())
    curves["significant"] = curves["p_holm"].lt(alpha)
    n_comparisons = int(curves.loc[in_family, "p_value"].notna().sum())
    table = _table(curves, n_comparisons, confidence)
    return curves, table


def read_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read and concatenate per-job contract Parquet files (multithreaded); string columns come
    back as categoricals, which keeps a study of millions of rows small in memory."""
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no metrics files to read; run the evaluation rules first")
    strings = [name for name, kind in COLUMNS.items() if kind == "string"]
    schema = pa.schema([(name, pa.dictionary(pa.int32(), pa.string()) if kind == "string"
                         else pa.from_numpy_dtype(np.dtype(kind))) for name, kind in COLUMNS.items()])
    fmt = pa_dataset.ParquetFileFormat(read_options=pa_dataset.ParquetReadOptions(dictionary_columns=strings))
    try:
        table = pa_dataset.dataset(paths, schema=schema, format=fmt).to_table()
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"metrics files: {err}; delete the file it names and rerun the job that writes it") from None
    return table.unify_dictionaries().to_pandas()


def write_tables(table: pd.DataFrame, summary_md: str, prefix: str | Path) -> None:
    """Write <prefix>.parquet, .csv and .md (the summary above a rounded markdown table)."""
    prefix = Path(prefix)
    io.write_parquet(prefix.with_name(prefix.name + ".parquet"), table)
    with io.atomic_path(prefix.with_name(prefix.name + ".csv")) as tmp:
        table.to_csv(tmp, index=False)
    io.write_text(prefix.with_name(prefix.name + ".md"), summary_md.rstrip() + "\n\n" + markdown_table(table) + "\n")


def markdown_table(table: pd.DataFrame) -> str:
    """The table as markdown: the columns a reader needs, numbers rounded to 3 places."""
    shown = table[[
        "arch", "method", "task", "dataset", "variant", "metric", "dense_value", "best_sparsity",
        "best_value", "gain", "ci_low", "ci_high", "p_holm", "benefit_holm", "sweet_range", "top1_drop", "caveat",
    ]].copy()
    for column in ("dense_value", "best_value", "gain", "ci_low", "ci_high", "top1_drop"):
        shown[column] = shown[column].map(lambda x: "" if pd.isna(x) else f"{x:.3f}")
    shown["p_holm"] = shown["p_holm"].map(lambda x: "" if pd.isna(x) else f"{x:.2g}")
    shown["best_sparsity"] = shown["best_sparsity"].map(lambda x: "" if pd.isna(x) else f"{x:g}")
    shown["benefit_holm"] = shown["benefit_holm"].map({True: "yes", False: "no"})
    return shown.to_markdown(index=False)


SUMMARY_PER_TASK = 3  # sentences per task and architecture; the table has the rest


def summary(table: pd.DataFrame) -> str:
    """Plain-language markdown answer to "when does pruning benefit?", one section per arch."""
    lines = ["# When does pruning benefit?", ""]
    if table.empty:
        return "\n".join(lines + ["No pruned models were evaluated, so there is nothing to compare.", ""])
    n_comparisons = int(table["n_comparisons"].iloc[0])
    lines.append(
        f"Gains are paired differences against the dense model on the same items, with "
        f"{table['confidence'].iloc[0]:.0%} intervals (bootstrap over items and seeds; t over seeds for set-level "
        f"metrics); 'significant' means after Holm correction over all {n_comparisons} pruned-vs-dense comparisons."
    )
    lines.append("")
    for arch, rows in table.sort_values(GROUP).groupby("arch", sort=True):
        lines += [f"## {arch}", ""]
        wins = rows[rows["benefit_holm"]]
        if wins.empty:
            lines.append(f"{arch}: no metric improves significantly over the dense model at any sparsity "
                         f"({len(rows)} curve{'s' if len(rows) != 1 else ''} tested).")
        for task, task_wins in wins.groupby("task", sort=True):
            tested = int((rows["task"] == task).sum())
            lines.append(f"**{task}**: {len(task_wins)} of {tested} curves gain significantly; "
                         f"the strongest evidence:")
            strongest = task_wins.sort_values(["p_holm", "p_value"], kind="stable").head(SUMMARY_PER_TASK)
            for row in strongest.itertuples(index=False):
                lines.append(f"- {_sentence(row, n_comparisons)}")
            if len(task_wins) > SUMMARY_PER_TASK:
                lines.append(f"- ... and {len(task_wins) - SUMMARY_PER_TASK} more in sweet_spots.md.")
            lines.append("")
        weak = rows[rows["benefit"] & ~rows["benefit_holm"]]
        if len(weak):
            lines.append(f"{len(weak)} further curve(s) of {arch} have an interval above zero before correction "
                         f"but not after: " + ", ".join(_name(r) for r in weak.itertuples(index=False)) + ".")
        lines.append("")
    return "\n".join(lines)


# --- internals -------------------------------------------------------------------------------


def _checked(frame: pd.DataFrame) -> pd.DataFrame:
    """Contract checks without copying millions of rows (validate() would cast every column)."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"metrics frame: missing contract columns {missing}")
    if frame.empty:
        raise ValueError("metrics frame: no rows; did every evaluation job write its Parquet file?")
    unknown = sorted(set(frame["metric"].unique()) - set(HIGHER_IS_BETTER))
    if unknown:
        raise ValueError(f"metrics frame: metrics {unknown} have no direction in sweetspot.contract.HIGHER_IS_BETTER")
    benchmarks = sorted(map(str, frame["benchmark"].unique()))
    if len(benchmarks) > 1:
        raise ValueError(f"metrics frame mixes benchmarks {benchmarks}; aggregate one benchmark at a time")
    dense = frame["method"].eq("dense").to_numpy()
    if (frame["sparsity"].to_numpy()[dense] != 0).any():
        raise ValueError("metrics frame: rows with method 'dense' must have sparsity 0")
    if (frame["sparsity"].to_numpy()[~dense] <= 0).any():
        raise ValueError("metrics frame: pruned rows (method != 'dense') need a sparsity > 0")
    return frame


def _factorize(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes in sorted order of the values, and the sorted values; a categorical's own
    codes are reused (no hashing of millions of strings)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = np.asarray(column.cat.categories, dtype=object)
        order = np.argsort(categories)
        rank = np.empty(len(categories), dtype=np.int64)
        rank[order] = np.arange(len(categories))
        codes = column.cat.codes.to_numpy()
        values = categories[order]
        codes = np.where(codes < 0, -1, rank[codes])
    else:
        codes, values = pd.factorize(column, sort=True)
        values = np.asarray(values, dtype=object)
    if (codes < 0).any():
        raise ValueError(f"metrics frame: column {column.name!r} has missing values; every row needs one")
    return codes.astype(np.int64), values


def _codes(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """One integer code per distinct combination of `columns`, and the combinations."""
    parts, uniques, sizes = [], [], []
    for column in columns:
        codes, values = _factorize(frame[column])
        parts.append(codes)
        uniques.append(values)
        sizes.append(max(len(values), 1))
    combined = np.ravel_multi_index(parts, sizes)
    codes, keys = pd.factorize(combined, sort=True)
    unravelled = np.unravel_index(keys, sizes)
    table = pd.DataFrame({c: u[i] for c, u, i in zip(columns, uniques, unravelled)})
    return codes.astype(np.int64), table


def _curves(frame: pd.DataFrame, *, n_boot: int, confidence: float, seed: int) -> pd.DataFrame:
    family_codes, families = _codes(frame, _FAMILY)
    condition_codes, conditions = _codes(frame, ["method", "sparsity", "seed"])
    item_codes, items = _codes(frame, ["item"])
    item_names = items["item"].astype(str).to_numpy()
    values = frame["value"].to_numpy(dtype=np.float64)
    actual = frame["sparsity_actual"].to_numpy(dtype=np.float64)
    order = np.argsort(family_codes, kind="stable")
    bounds = np.searchsorted(family_codes[order], np.arange(len(families) + 1))
    weights = _WeightCache(n_boot=n_boot, seed=seed)
    rows: list[dict] = []
    for f, family in enumerate(families.itertuples(index=False)):
        take = order[bounds[f]:bounds[f + 1]]
        rows += _family_curves(
            family._asdict(), item_codes[take], condition_codes[take], values[take], actual[take],
            conditions, item_names, weights, confidence=confidence,
        )
    curves = pd.DataFrame(rows)
    curves["p_holm"] = np.nan
    curves["significant"] = False
    return curves[CURVE_COLUMNS].sort_values(GROUP + ["sparsity"], kind="stable").reset_index(drop=True)


class _WeightCache:
    """Item-resampling weights keyed by the item universe, shared by every comparison scored
    on the same items; seed draws keyed by the number of seeds."""

    def __init__(self, *, n_boot: int, seed: int):
        self.n_boot, self.seed = n_boot, seed
        self._weights: OrderedDict[str, np.ndarray] = OrderedDict()

    def items(self, item_names: np.ndarray) -> np.ndarray:
        key = hashlib.sha256("\x1f".join(item_names).encode()).hexdigest()
        if key not in self._weights:
            rng = stats.keyed_rng(self.seed, "items", key)
            self._weights[key] = stats.item_weights(len(item_names), self.n_boot, rng)
            if len(self._weights) > _WEIGHT_CACHE_SIZE:
                self._weights.popitem(last=False)
        return self._weights[key]

    def seeds(self, n_seeds: int) -> np.ndarray:
        return stats.seed_draws(n_seeds, self.n_boot, stats.keyed_rng(self.seed, "seeds", n_seeds))


def _family_curves(
    family: dict, item_codes: np.ndarray, condition_codes: np.ndarray, values: np.ndarray,
    actual: np.ndarray, conditions: pd.DataFrame, item_names: np.ndarray, weights: _WeightCache,
    *, confidence: float,
) -> list[dict]:
    """Curves of one (arch, task, dataset, variant, metric): every method against the shared dense."""
    name = "/".join(str(family[c]) for c in _FAMILY)
    local_items, item_index = _local_codes(item_codes, len(item_names))
    names = item_names[local_items]  # sorted, so the weights' item order is the table's row order
    set_level = bool((names == "").any())
    if set_level and len(names) > 1:
        raise ValueError(f"{name}: mixes set-level rows (item '') with per-item rows; a metric is one or the other")
    local_conditions, condition_index = _local_codes(condition_codes, len(conditions))
    cond = conditions.iloc[local_conditions].reset_index(drop=True)
    cells = item_index * len(local_conditions) + condition_index
    if np.bincount(cells, minlength=len(local_items) * len(local_conditions)).max() > 1:
        raise ValueError(f"{name}: an item appears twice for the same method/sparsity/seed; "
                         "check for duplicated evaluation files")
    table = np.full((len(local_items), len(local_conditions)), np.nan)
    table[item_index, condition_index] = values
    actual_mean = np.bincount(condition_index, actual) / np.bincount(condition_index)
    item_means = _nanmean(table, axis=0)

    sign = 1.0 if HIGHER_IS_BETTER[family["metric"]] else -1.0
    methods = cond["method"].to_numpy()
    sparsities = cond["sparsity"].to_numpy(dtype=np.float64)
    seed_of = cond["seed"].to_numpy(dtype=np.int64)
    is_dense = methods == "dense"
    base = {**family, "higher_is_better": sign > 0}

    def point(method: str, sparsity: float, columns: np.ndarray, **extra) -> dict:
        observed = ~np.isnan(table[:, columns])
        return {**base, "method": method, "sparsity": sparsity,
                "sparsity_actual": float(actual_mean[columns].mean()),
                "value": float(np.nanmean(item_means[columns])) if np.isfinite(item_means[columns]).any() else np.nan,
                "n_items": 0 if set_level else int(observed.any(axis=1).sum()),
                "n_seeds": len(columns), **extra}

    dense_columns = np.flatnonzero(is_dense)
    dense_point = {"gain": 0.0, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    if dense_columns.size == len(cond):
        return [point("dense", 0.0, dense_columns, **dense_point)]

    partners = _dense_partners(seed_of[~is_dense], dict(zip(seed_of[is_dense].tolist(), dense_columns.tolist())), name)
    curve_keys = sorted(set(zip(methods[~is_dense], sparsities[~is_dense].tolist())))
    column_of = {(m, sp, sd): i for i, (m, sp, sd) in enumerate(zip(methods, sparsities.tolist(), seed_of.tolist()))}
    diffs = np.full((len(partners), len(local_items), len(curve_keys)), np.nan)
    for j, (method, sparsity) in enumerate(curve_keys):
        for k, (s, partner) in enumerate(partners.items()):
            column = column_of.get((method, sparsity, s))
            if column is not None:
                diffs[k, :, j] = table[:, column] - table[:, partner]
    gains, lows, highs, p_values, seeds_used, items_used = _bootstrap_columns(
        diffs, names, weights, confidence=confidence, set_level=set_level)

    rows = []
    for j, (method, sparsity) in enumerate(curve_keys):
        if (j == 0 or curve_keys[j - 1][0] != method) and dense_columns.size:
            rows.append(point(method, 0.0, dense_columns, **dense_point))  # the curve's first point
        columns = np.flatnonzero((methods == method) & (sparsities == sparsity))
        low, high = sorted((sign * lows[j] + 0.0, sign * highs[j] + 0.0))
        rows.append(point(method, sparsity, columns, gain=sign * gains[j] + 0.0, ci_low=low, ci_high=high,
                          p_value=p_values[j]))
        rows[-1]["n_seeds"] = int(seeds_used[j])
        rows[-1]["n_items"] = 0 if set_level else int(items_used[j])
    return rows


def _local_codes(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct global codes present (sorted) and each row's index among them; np.unique
    with return_inverse does the same, far slower on millions of rows."""
    present = np.zeros(size, dtype=bool)
    present[codes] = True
    position = np.cumsum(present) - 1
    return np.flatnonzero(present), position[codes]


def _dense_partners(pruned_seeds: np.ndarray, dense_column: dict[int, int], name: str) -> dict[int, int]:
    """Pruned seed -> column of its dense partner: the same seed, or the only dense seed."""
    if not dense_column:
        log.warning("%s: no dense rows; gains cannot be computed", name)
        return {}
    partners = {}
    for s in sorted(set(pruned_seeds.tolist())):
        if s in dense_column:
            partners[s] = dense_column[s]
        elif len(dense_column) == 1:
            partners[s] = next(iter(dense_column.values()))
        else:
            log.warning("%s: pruned seed %d has no dense model of the same seed; left out", name, s)
    return partners


def _bootstrap_columns(
    diffs: np.ndarray, names: np.ndarray, weights: _WeightCache, *, confidence: float, set_level: bool,
) -> tuple[np.ndarray, ...]:
    """Point gain, interval and p-value of every column of `diffs` (seeds, items, columns).

    Columns are bootstrapped together when the same seeds are present for them; a column
    whose seeds differ (a missing job) gets its own seed resampling.
    """
    n_cols = diffs.shape[2]
    gains, lows, highs, p_values = (np.full(n_cols, np.nan) for _ in range(4))
    valid = ~np.isnan(diffs)
    seed_present = valid.any(axis=1)  # (seeds, columns)
    seeds_used = seed_present.sum(axis=0)
    items_used = valid.any(axis=0).sum(axis=0)
    patterns: dict[tuple[bool, ...], list[int]] = {}
    for j in range(n_cols):
        patterns.setdefault(tuple(seed_present[:, j]), []).append(j)
    for pattern, columns in patterns.items():
        seeds = np.flatnonzero(pattern)
        if seeds.size == 0:
            continue
        sub = diffs[np.ix_(seeds, np.arange(diffs.shape[1]), columns)]
        point = stats.point_gain(sub)
        gains[columns] = point
        if set_level or len(names) < 2:  # one number per seed: a t interval over seeds
            lows[columns], highs[columns], p_values[columns] = stats.seed_t_interval(sub[:, 0, :], confidence)
            continue
        boot = stats.bootstrap_means(sub, weights.items(names), weights.seeds(seeds.size))
        lows[columns], highs[columns], p_values[columns] = stats.summarise(boot, point, confidence)
    return gains, lows, highs, p_values, seeds_used, items_used


def _nanmean(table: np.ndarray, axis: int) -> np.ndarray:
    ok = ~np.isnan(table)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, table, 0.0).sum(axis=axis) / ok.sum(axis=axis)


def _table(curves: pd.DataFrame, n_comparisons: int, confidence: float) -> pd.DataFrame:
    pruned = curves[(curves["sparsity"] > 0) & ~curves["metric"].str.startswith(DIAGNOSTIC_PREFIX)]
    if pruned.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    dense = curves[curves["sparsity"] == 0].set_index(GROUP)["value"]
    best = (pruned.sort_values(GROUP + ["gain", "sparsity"], ascending=[True] * 6 + [False, True], na_position="last")
            .drop_duplicates(GROUP).set_index(GROUP))
    winners = pruned[pruned["significant"] & (pruned["gain"] > 0)]
    sweet = winners.groupby(GROUP, sort=False)["sparsity"].agg(lambda s: ", ".join(f"{x:g}" for x in sorted(s)))
    table = best.rename(columns={"sparsity": "best_sparsity", "value": "best_value"})
    table["dense_value"] = dense.reindex(table.index)
    table["benefit"] = table["ci_low"].gt(0)
    table["benefit_holm"] = table["significant"] & table["gain"].gt(0)
    table["sweet_range"] = sweet.reindex(table.index).astype(object).fillna("").astype(str)
    table["n_comparisons"] = n_comparisons
    table["confidence"] = confidence
    table = table.reset_index()
    _add_accuracy(table, curves)
    _add_shape_or_texture(table, curves)
    table["caveat"] = [_caveat(row) for row in table.itertuples(index=False)]
    return table[TABLE_COLUMNS].sort_values(GROUP, kind="stable").reset_index(drop=True)


def _add_accuracy(table: pd.DataFrame, curves: pd.DataFrame) -> None:
    """top1 at the best sparsity and its drop from dense in points; the accuracy dataset is the
    row's own dataset when it has top1 rows, else the first accuracy dataset (sorted)."""
    task, variant, metric = ACCURACY
    acc = curves[(curves["task"] == task) & (curves["variant"] == variant) & (curves["metric"] == metric)]
    lookup = {(r.arch, r.method, r.dataset, float(r.sparsity)): r.value for r in acc.itertuples(index=False)}
    datasets = {arch: sorted(rows["dataset"].unique()) for arch, rows in acc.groupby("arch")}
    top1, top1_dense = [], []
    for row in table.itertuples(index=False):
        options = datasets.get(row.arch, [])
        dataset = row.dataset if row.dataset in options else (options[0] if options else None)
        top1.append(lookup.get((row.arch, row.method, dataset, float(row.best_sparsity)), np.nan))
        top1_dense.append(lookup.get((row.arch, row.method, dataset, 0.0), np.nan))
    table["top1"] = np.asarray(top1, dtype=float)
    table["top1_dense"] = np.asarray(top1_dense, dtype=float)
    table["top1_drop"] = (table["top1_dense"] - table["top1"]) * 100.0


def _add_shape_or_texture(table: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Fraction of decisions that were shape or texture at all, for shape_bias rows: the
    shape_or_texture metric when present, else shape_decision + texture_decision."""
    keys = ["arch", "method", "task", "dataset", "variant", "sparsity"]
    by_metric = {m: curves[curves["metric"] == m].set_index(keys)["value"]
                 for m in ("shape_or_texture", "shape_decision", "texture_decision")}
    fractions = []
    for row in table.itertuples(index=False):
        key = (row.arch, row.method, row.task, row.dataset, row.variant, row.best_sparsity)
        if row.metric != "shape_bias":
            fractions.append(np.nan)
        elif key in by_metric["shape_or_texture"].index:
            fractions.append(float(by_metric["shape_or_texture"].loc[key]))
        elif key in by_metric["shape_decision"].index and key in by_metric["texture_decision"].index:
            fractions.append(float(by_metric["shape_decision"].loc[key] + by_metric["texture_decision"].loc[key]))
        else:
            fractions.append(np.nan)
    table["shape_or_texture"] = np.asarray(fractions, dtype=float)


def _caveat(row) -> str:
    notes = []
    if not math.isfinite(row.gain):
        notes.append("no dense baseline to compare with")
    elif row.n_items == 0 and row.n_seeds < 2:
        notes.append("set-level metric with one seed: no interval")
    elif row.n_items == 0 and row.n_seeds < MIN_SEEDS_FOR_SEED_INTERVAL:
        notes.append(f"interval from only {row.n_seeds} seeds")
    if row.shape_or_texture < MIN_SHAPE_OR_TEXTURE:
        notes.append(f"only {row.shape_or_texture:.0%} of decisions were shape or texture")
    if row.top1_drop > MAX_TOP1_DROP_POINTS:
        notes.append(f"top-1 dropped by {row.top1_drop:.1f} points")
    return "; ".join(notes)


_METRIC_NAMES = {
    "top1": "top-1 accuracy", "top5": "top-5 accuracy", "rma": "relevance mass accuracy",
    "rra": "relevance rank accuracy", "pointing_game": "pointing-game accuracy", "deletion_auc": "deletion AUC",
    "insertion_auc": "insertion AUC", "corloc": "CorLoc", "iou": "box IoU", "mask_iou": "mask IoU",
    "correct": "decision accuracy", "accuracy": "decision accuracy", "shape_bias": "shape bias",
    "shape_decision": "fraction of shape decisions", "texture_decision": "fraction of texture decisions",
    "accuracy_difference": "accuracy difference to humans", "observed_consistency": "observed consistency with humans",
    "error_consistency": "error consistency with humans", "shape_or_texture": "fraction of shape-or-texture decisions",
}
_VARIANT_NAMES = {
    "saliency": "saliency", "ig": "Integrated Gradients", "ig_smoothgrad": "IG+SmoothGrad", "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM", "attention": "attention", "lost": "LOST",
}


def _name(row) -> str:
    metric = _METRIC_NAMES.get(row.metric, row.metric)
    variant = _VARIANT_NAMES.get(row.variant, row.variant)
    return f"{variant + ' ' if variant else ''}{metric} on {row.dataset} ({row.method})"


def _sentence(row, n_comparisons: int) -> str:
    metric = _METRIC_NAMES.get(row.metric, row.metric)
    variant = _VARIANT_NAMES.get(row.variant, row.variant)
    direction = 1.0 if row.higher_is_better else -1.0
    change, low, high = direction * row.gain, *sorted((direction * row.ci_low, direction * row.ci_high))
    verb = "raises" if change >= 0 else "lowers"
    better = "" if row.higher_is_better else " (lower is better)"
    text = (f"{row.method} pruning at {100 * row.best_sparsity:.3g}% sparsity {verb} {variant + ' ' if variant else ''}"
            f"{metric}{better} on {row.dataset} from {row.dense_value:.3g} to {row.best_value:.3g} "
            f"({change:+.3g}, {row.confidence:.0%} CI {low:.3g} to {high:.3g}; significant after Holm correction over "
            f"{n_comparisons} comparisons)")
    if math.isfinite(row.top1_drop) and row.task != "accuracy":
        drop = round(row.top1_drop, 1)
        text += (", with top-1 unchanged" if drop == 0 else
                 f", with top-1 {'down' if drop > 0 else 'up'} {abs(drop):.1f} points")
    if row.sweet_range and row.sweet_range != f"{row.best_sparsity:g}":
        text += f"; significant gains at sparsities {row.sweet_range}"
    text += "."
    if row.caveat:
        text += f" Caveat: {row.caveat}."
    return text
