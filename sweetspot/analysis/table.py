"""The sweet-spot table: at which sparsity does pruning itself make a representation better
while the model still works? (docs/methods.md, "What a sweet spot is")

`compute` turns the long metrics frame (sweetspot.contract) into
- curves: one row per (arch, method, task, dataset, variant, metric, sparsity), each pruned point
  compared with its matched control, plus the control as the curve's sparsity-0 point;
- the table: one row per curve, at its best sparsity among those where the model still works.

A gain is always "positive = better" (dense - pruned for lower-is-better metrics) and always
against the checkpoint's matched control (`Settings.controls`): a dense model that went through
the same training and differs in the mask alone. The plain dense value stays beside it.

A sweet spot is a (curve, sparsity) whose
- gain is significant: for headline metrics the simultaneous band over every headline
  comparison of its (architecture, task) lies above 0, so picking the best of the grid and of
  the metrics cannot manufacture one; exploratory metrics are never sweet spots (they get
  Benjamini-Hochberg q-values instead);
- top-1 is non-inferior to the control's on every accuracy dataset: the paired one-sided
  lower bound of the top-1 difference lies above minus `top1_margin` points;
- checkpoint has no collapsed layer (the structure task).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from sweetspot import catalog
from sweetspot.analysis import stats
from sweetspot.contract import COLUMNS

log = logging.getLogger(__name__)

GROUP = ["arch", "task", "dataset", "variant"]
CURVE = ["arch", "method", "task", "dataset", "variant", "metric"]
ACCURACY_TASK, TOP1 = "accuracy", "top1"
MIN_SHAPE_OR_TEXTURE = 0.5
MIN_SEEDS_FOR_SEED_INTERVAL = 5

CURVE_COLUMNS = CURVE + [
    "role", "sparsity", "sparsity_actual", "higher_is_better", "control", "value", "control_value", "dense_value",
    "gain", "ci_low", "ci_high", "band_low", "band_high", "p_value", "p_adjusted", "q_value", "significant",
    "top1_gain", "top1_lower", "non_inferior", "collapsed_layers", "sweet_spot", "n_items", "n_seeds",
]
TABLE_COLUMNS = CURVE + [
    "role", "higher_is_better", "control", "control_value", "dense_value", "best_sparsity", "sparsity_actual",
    "best_value", "gain", "ci_low", "ci_high", "significant", "p_adjusted", "q_value", "sweet_spot", "sweet_range",
    "best_any_sparsity", "best_any_gain", "top1", "top1_control", "top1_drop", "top1_lower", "collapsed_at",
    "shape_or_texture", "n_items", "n_seeds", "family_size", "confidence", "caveat",
]


@dataclass(frozen=True)
class Settings:
    """What the aggregation needs from the study (stats section and the grid's controls)."""

    controls: Mapping[str, str]  # pruning method -> the method label of its control ("dense" when none differs)
    headline: Mapping[str, Sequence[str]] = field(default_factory=catalog.default_headline)
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0
    top1_margin: float = 1.0  # points

    def role(self, task: str, metric: str) -> str:
        if catalog.METRICS[metric].role == "diagnostic":
            return "diagnostic"
        return "headline" if metric in self.headline.get(task, ()) else "exploratory"


def compute(frame: pd.DataFrame, settings: Settings, human: pd.DataFrame | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves and sweet-spot table of a contract frame; deterministic for a given settings.seed.

    `human`: trials of human observers (columns dataset, item, subject, correct) for the
    alignment datasets that have them; error consistency and its kin need it.
    """
    if not 0 < settings.confidence < 1:
        raise ValueError(f"stats.confidence must lie in (0, 1), got {settings.confidence}")
    if settings.n_boot < 100:
        raise ValueError(f"stats.n_boot must be at least 100, got {settings.n_boot}")
    frame = _checked(frame, settings)
    evaluated = frame[frame["task"] != "structure"]
    families: dict[tuple[str, str], np.ndarray] = {}
    comparisons: list[dict] = []
    points: list[dict] = []
    for key, rows in evaluated.groupby(GROUP, sort=True, observed=True):
        group = dict(zip(GROUP, key))
        humans = _human_matrix(human, group["dataset"]) if group["task"] == "alignment" else None
        found, values = _group(group, rows, settings, humans, families)
        comparisons += found
        points += values
    if not comparisons:
        return _empty(CURVE_COLUMNS), _empty(TABLE_COLUMNS)
    found = pd.DataFrame(comparisons)
    _add_family_bands(found, families, settings)
    _add_guards(found, frame, settings)
    curves = _curves(found, pd.DataFrame(points))
    table = _table(curves, frame, settings, families)
    return curves, table


def read_metrics(paths: Iterable[str]) -> pd.DataFrame:
    """Concatenate per-job contract Parquet files; string columns as categoricals (small in memory).

    Every file's schema (its footer alone) is checked against the contract first: a file without
    a column would otherwise be read with that column all missing.
    """
    import pyarrow as pa
    import pyarrow.dataset as pa_dataset
    import pyarrow.parquet as pq

    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no metrics files to read; run the evaluation rules first")
    for path in paths:
        try:
            problem = _contract_problem(pq.read_schema(path))
        except (OSError, pa.ArrowException) as err:
            problem = _unreadable(err)
        if problem:
            raise ValueError(_unusable(path, problem))
    strings = [name for name, kind in COLUMNS.items() if kind == "string"]
    schema = pa.schema([(name, pa.dictionary(pa.int32(), pa.string()) if kind == "string"
                         else pa.from_numpy_dtype(np.dtype(kind))) for name, kind in COLUMNS.items()])
    fmt = pa_dataset.ParquetFileFormat(read_options=pa_dataset.ParquetReadOptions(dictionary_columns=strings))
    try:
        table = pa_dataset.dataset(paths, schema=schema, format=fmt).to_table()
    except (OSError, pa.ArrowException) as err:
        for path in paths:  # a sound footer over broken data: find the file, one at a time
            try:
                pq.read_table(path)
            except (OSError, pa.ArrowException) as own:
                raise ValueError(_unusable(path, _unreadable(own))) from None
        raise ValueError(f"metrics files: {err}") from None
    return table.unify_dictionaries().to_pandas()


def _contract_problem(schema) -> str | None:
    """What a Parquet schema lacks of the metrics contract (sweetspot.contract.COLUMNS), or None."""
    import pyarrow as pa

    def fits(kind: str, found: pa.DataType) -> bool:
        if pa.types.is_dictionary(found):
            found = found.value_type
        if kind == "string":
            return pa.types.is_string(found) or pa.types.is_large_string(found)
        if kind == "float64":
            return pa.types.is_floating(found) or pa.types.is_integer(found)
        return pa.types.is_integer(found)

    missing = [name for name in COLUMNS if name not in schema.names]
    if missing:
        return f"missing the contract column(s) {missing} (sweetspot.contract.COLUMNS)"
    wrong = [f"{name} is {schema.field(name).type}, not {kind}" for name, kind in COLUMNS.items()
             if not fits(kind, schema.field(name).type)]
    return f"column types differ from the contract: {'; '.join(wrong)}" if wrong else None


def _unreadable(err: Exception) -> str:
    return f"not a readable Parquet file ({' '.join(str(err).split())})"  # Arrow's messages span lines


def _unusable(path: str, problem: str) -> str:
    return (f"{path}: {problem}; delete it and run snakemake again, which rebuilds it with its evaluate job "
            f"(that job alone: snakemake --cores 1 {path})")


# --- input checks ------------------------------------------------------------------------------


def _checked(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"metrics frame: missing contract columns {missing}")
    if frame.empty:
        raise ValueError("metrics frame: no rows; did every evaluation job write its Parquet file?")
    unknown = sorted(set(frame["metric"].astype(str).unique()) - set(catalog.METRICS))
    if unknown:
        raise ValueError(f"metrics frame: metrics {unknown} are not in sweetspot.catalog.METRICS")
    benchmarks = sorted(map(str, frame["benchmark"].unique()))
    if len(benchmarks) > 1:
        raise ValueError(f"metrics frame mixes benchmarks {benchmarks}; aggregate one benchmark at a time")
    methods = frame["method"].astype(str)
    unpruned = (methods == catalog.DENSE) | methods.str.startswith(catalog.CONTROL_PREFIX)
    if (frame["sparsity"].to_numpy()[unpruned.to_numpy()] != 0).any():
        raise ValueError("metrics frame: dense and control rows must have sparsity 0")
    if (frame["sparsity"].to_numpy()[~unpruned.to_numpy()] <= 0).any():
        raise ValueError("metrics frame: pruned rows need a sparsity > 0")
    for method in sorted(set(methods[~unpruned])):
        if method not in settings.controls:
            raise ValueError(f"metrics frame: pruning method {method!r} has no control in the settings")
    return frame


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


# --- one group: (arch, task, dataset, variant) -------------------------------------------------


@dataclass
class _Group:
    items: np.ndarray  # sorted item names (per-item rows)
    conditions: pd.DataFrame  # method, sparsity, seed, sparsity_actual; one column of every matrix each
    columns: dict[str, np.ndarray]  # per-item metric -> (n_items, n_conditions), NaN = missing
    set_values: dict[str, np.ndarray]  # set-level metric -> (n_conditions,) as the task wrote it


def _group(group: dict, rows: pd.DataFrame, settings: Settings, humans: pd.DataFrame | None,
           families: dict[tuple[str, str], np.ndarray]) -> tuple[list[dict], list[dict]]:
    data = _pivot(group, rows)
    metrics = sorted(set(data.columns) | set(data.set_values))
    testable = [m for m in metrics if settings.role(group["task"], m) != "diagnostic"]
    replicates: dict[str, np.ndarray] = {}  # metric -> (n_boot, n_conditions)
    values: dict[str, np.ndarray] = {}  # metric -> (n_conditions,)
    for metric in testable:
        recipe = _statistic(metric, data, humans)
        if recipe is None:  # a set-level value with no per-item ingredients: no interval
            values[metric] = data.set_values[metric]
            continue
        values[metric] = recipe(np.ones((1, len(data.items))))[0]
        replicates[metric] = np.concatenate([recipe(w) for w in stats.item_weight_blocks(
            len(data.items), settings.n_boot, stats.keyed_rng(settings.seed, "items", stats.items_key(data.items)))])
    comparisons = _comparisons(group, data, values, replicates, settings)
    points = [{**group, "metric": m, "method": c.method, "sparsity": c.sparsity, "seed": c.seed,
               "sparsity_actual": c.sparsity_actual, "value": float(values[m][j])}
              for m in values for j, c in enumerate(data.conditions.itertuples(index=False))]
    _add_curve_bands(comparisons, group, settings, families)
    return comparisons, points


def _pivot(group: dict, rows: pd.DataFrame) -> _Group:
    name = "/".join(str(group[c]) for c in GROUP)
    conditions = (rows.groupby(["method", "sparsity", "seed"], observed=True, sort=True)["sparsity_actual"].mean()
                  .reset_index())
    conditions["method"] = conditions["method"].astype(str)
    condition_index = pd.MultiIndex.from_frame(conditions[["method", "sparsity", "seed"]])
    column = condition_index.get_indexer(pd.MultiIndex.from_arrays(
        [rows["method"].astype(str), rows["sparsity"], rows["seed"]]))
    items = rows["item"].astype(str).to_numpy()
    metrics = rows["metric"].astype(str).to_numpy()
    per_item = items != ""
    names = np.array(sorted(set(items[per_item])), dtype=object)
    item_of = pd.Index(names).get_indexer(items)
    columns: dict[str, np.ndarray] = {}
    set_values: dict[str, np.ndarray] = {}
    for metric in sorted(set(metrics)):
        take = metrics == metric
        if per_item[take].all():
            matrix = np.full((len(names), len(conditions)), np.nan)
            cells = item_of[take] * len(conditions) + column[take]
            if np.bincount(cells).max() > 1:
                raise ValueError(f"{name}/{metric}: an item appears twice for the same method/sparsity/seed; "
                                 "check for duplicated evaluation files")
            matrix.flat[cells] = rows["value"].to_numpy()[take]
            columns[metric] = matrix
        elif not per_item[take].any():
            vector = np.full(len(conditions), np.nan)
            if np.bincount(column[take], minlength=len(conditions)).max() > 1:
                raise ValueError(f"{name}/{metric}: a set-level value appears twice for one method/sparsity/seed")
            vector[column[take]] = rows["value"].to_numpy()[take]
            set_values[metric] = vector
        else:
            raise ValueError(f"{name}: metric {metric!r} mixes set-level rows (item '') with per-item rows")
    return _Group(names, conditions, columns, set_values)


def _statistic(metric: str, data: _Group, humans: pd.DataFrame | None
               ) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function of item weights (rows, n_items) -> the metric per condition (rows, n_conditions)."""
    from sweetspot.metrics import human

    if metric in data.columns:
        return lambda w: stats.weighted_means(data.columns[metric], w)
    if metric == "shape_bias" and {"shape_decision", "texture_decision"} <= set(data.columns):
        shape, texture = data.columns["shape_decision"], data.columns["texture_decision"]
        return lambda w: human.weighted_shape_bias(shape, texture, w)
    if metric in human.SUBJECT_METRICS and "correct" in data.columns and humans is not None:
        matrix = humans.reindex(columns=data.items).to_numpy(dtype=np.float64)
        if np.isfinite(matrix).any():
            correct = data.columns["correct"]
            return lambda w: human.weighted_subject_comparisons(correct, matrix, w)[metric]
    return None


def _human_matrix(human: pd.DataFrame | None, dataset: str) -> pd.DataFrame | None:
    """Subjects x items (1 correct, 0 wrong, NaN unseen) of one dataset's human trials."""
    if human is None or human.empty:
        return None
    trials = human[human["dataset"] == dataset]
    if trials.empty:
        return None
    return trials.pivot_table(index="subject", columns="item", values="correct", aggfunc="mean")


def _comparisons(group: dict, data: _Group, values: dict[str, np.ndarray], replicates: dict[str, np.ndarray],
                 settings: Settings) -> list[dict]:
    """Every pruned (method, sparsity) of the group against its control, for every tested metric."""
    cond = data.conditions
    methods, sparsities, seeds = cond["method"].to_numpy(), cond["sparsity"].to_numpy(), cond["seed"].to_numpy()
    out = []
    for metric in values:
        sign = 1.0 if catalog.METRICS[metric].higher_is_better else -1.0
        role = settings.role(group["task"], metric)
        for method, sparsity in sorted({(m, s) for m, s in zip(methods, sparsities) if s > 0}):
            control = settings.controls[method]
            pruned_at = {int(seeds[j]): j for j in np.flatnonzero((methods == method) & (sparsities == sparsity))}
            control_at = {int(seeds[j]): j for j in np.flatnonzero(methods == control)}
            pairs = _pairs(pruned_at, control_at)
            row = {**group, "metric": metric, "method": method, "sparsity": float(sparsity), "control": control,
                   "role": role, "higher_is_better": sign > 0, "n_seeds": len(pairs),
                   "n_items": int(np.isfinite(data.columns[metric][:, [p for p, _ in pairs]]).any(axis=1).sum())
                   if metric in data.columns and pairs else 0}
            if not pairs:
                out.append({**row, "gain": np.nan, "se": np.nan, "replicates": None})
                continue
            p_cols, c_cols = [p for p, _ in pairs], [c for _, c in pairs]
            gain = float(sign * np.nanmean(values[metric][p_cols] - values[metric][c_cols]))
            if metric not in replicates:
                out.append({**row, "gain": gain, "se": np.nan, "replicates": None})
                continue
            boot = replicates[metric]
            draws = stats.seed_draws(len(pairs), boot.shape[0], settings.seed)
            reps = sign * stats.paired_gain_replicates(boot[:, p_cols], boot[:, c_cols], draws)
            out.append({**row, **stats.summarise(reps, gain, settings.confidence), "replicates": reps})
    return out


def _pairs(pruned_at: dict[int, int], control_at: dict[int, int]) -> list[tuple[int, int]]:
    """(pruned column, control column) per seed: the same seed, or the only control seed."""
    pairs = []
    for seed, column in sorted(pruned_at.items()):
        if seed in control_at:
            pairs.append((column, control_at[seed]))
        elif len(control_at) == 1:
            pairs.append((column, next(iter(control_at.values()))))
    return pairs


def _add_curve_bands(comparisons: list[dict], group: dict, settings: Settings,
                     families: dict[tuple[str, str], np.ndarray]) -> None:
    """Per curve, the critical value of a band simultaneous over its sparsities; headline
    comparisons also feed their family's running maximum of studentized deviations."""
    curves: dict[tuple[str, str], list[dict]] = {}
    for comp in comparisons:
        if comp["replicates"] is not None and np.isfinite(comp["se"]):
            curves.setdefault((comp["metric"], comp["method"]), []).append(comp)
    family = (group["arch"], group["task"])
    for members in curves.values():
        reps = np.stack([c["replicates"] for c in members], axis=1)
        deviations = stats.studentized_deviations(reps, np.array([c["gain"] for c in members]),
                                                  np.array([c["se"] for c in members]))
        worst = deviations.max(axis=1)
        critical = stats.band_critical_value(worst, settings.confidence)
        for c in members:
            c["curve_critical"] = critical
        if members[0]["role"] == "headline":
            families[family] = np.maximum(families.get(family, worst), worst)
    for comp in comparisons:
        comp.pop("replicates")


# --- across groups -----------------------------------------------------------------------------


def _add_family_bands(found: pd.DataFrame, families: dict[tuple[str, str], np.ndarray], settings: Settings) -> None:
    alpha = 1.0 - settings.confidence
    for column in ("band_low", "band_high", "p_adjusted", "q_value", "curve_critical"):
        if column not in found:
            found[column] = np.nan
    found["significant"] = False
    for (arch, task), rows in found.groupby(["arch", "task"], sort=False):
        headline = rows.index[rows["role"] == "headline"]
        if len(headline) and (arch, task) in families:
            worst = families[(arch, task)]
            critical = stats.band_critical_value(worst, settings.confidence)
            gains, se = found.loc[headline, "gain"].to_numpy(float), found.loc[headline, "se"].to_numpy(float)
            found.loc[headline, "band_low"] = gains - critical * se
            found.loc[headline, "band_high"] = gains + critical * se
            found.loc[headline, "p_adjusted"] = stats.maxt_adjusted_p(gains, se, worst)
            found.loc[headline, "significant"] = found.loc[headline, "band_low"].to_numpy(float) > 0
        exploratory = rows.index[rows["role"] == "exploratory"]
        if len(exploratory):
            critical = found.loc[exploratory, "curve_critical"].to_numpy(float)
            gains, se = found.loc[exploratory, "gain"].to_numpy(float), found.loc[exploratory, "se"].to_numpy(float)
            found.loc[exploratory, "band_low"] = gains - critical * se
            found.loc[exploratory, "band_high"] = gains + critical * se
            q = stats.fdr_q_values(found.loc[exploratory, "p_value"].to_numpy(float))
            found.loc[exploratory, "q_value"] = q
            found.loc[exploratory, "significant"] = (q < alpha) & (gains > 0)
    found["significant"] = found["significant"].astype(bool)


def _add_guards(found: pd.DataFrame, frame: pd.DataFrame, settings: Settings) -> None:
    """Top-1 non-inferiority and layer collapse of each pruned checkpoint; then sweet spots."""
    key = ["arch", "method", "sparsity"]
    top1 = found[(found["task"] == ACCURACY_TASK) & (found["metric"] == TOP1) & (found["variant"] == "")]
    margin = settings.top1_margin / 100.0
    lower = top1.groupby(key)["lower_one_sided"].min() if len(top1) else pd.Series(dtype=float)
    non_inferior = lower.gt(-margin)
    own = {(r.arch, r.method, r.sparsity, r.dataset): (r.gain, r.lower_one_sided) for r in top1.itertuples()}
    first = {(r.arch, r.method, r.sparsity): (r.gain, r.lower_one_sided)
             for r in top1.sort_values("dataset", ascending=False).itertuples()}
    top1_gain, top1_lower, ni = [], [], []
    for r in found.itertuples():
        gain, low = own.get((r.arch, r.method, r.sparsity, r.dataset), first.get((r.arch, r.method, r.sparsity),
                                                                                (np.nan, np.nan)))
        top1_gain.append(gain)
        top1_lower.append(low)
        ni.append(non_inferior.get((r.arch, r.method, r.sparsity), np.nan))
    found["top1_gain"], found["top1_lower"] = np.asarray(top1_gain, float), np.asarray(top1_lower, float)
    found["non_inferior"] = pd.array(ni, dtype="boolean")
    collapse = _collapsed_layers(frame)
    found["collapsed_layers"] = [collapse.get((r.arch, r.method, r.sparsity), np.nan) for r in found.itertuples()]
    found["sweet_spot"] = ((found["role"] == "headline") & found["significant"]
                           & found["non_inferior"].fillna(False).astype(bool)
                           & ~(found["collapsed_layers"] > 0))


def _collapsed_layers(frame: pd.DataFrame) -> dict[tuple[str, str, float], float]:
    """(arch, method, sparsity) -> the most collapsed layers over its seeds (structure task)."""
    rows = frame[(frame["task"] == "structure") & (frame["metric"] == "collapsed_layers")]
    if rows.empty:
        return {}
    worst = rows.groupby(["arch", "method", "sparsity"], observed=True)["value"].max()
    return {(str(a), str(m), float(s)): float(v) for (a, m, s), v in worst.items()}


def _curves(found: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Comparisons with the raw values of the pruned point, its control and dense; each
    method's curve starts at its control (sparsity 0, gain 0)."""
    by_point = points.groupby(GROUP + ["metric", "method", "sparsity"], observed=True).agg(
        value=("value", "mean"), sparsity_actual=("sparsity_actual", "mean"))
    keys = GROUP + ["metric"]
    value_of = by_point["value"]
    found = found.copy()
    found["value"] = [value_of.get(tuple(getattr(r, k) for k in keys) + (r.method, r.sparsity), np.nan)
                      for r in found.itertuples()]
    found["sparsity_actual"] = [by_point["sparsity_actual"].get(tuple(getattr(r, k) for k in keys) + (r.method, r.sparsity),
                                                                np.nan) for r in found.itertuples()]
    found["control_value"] = [value_of.get(tuple(getattr(r, k) for k in keys) + (r.control, 0.0), np.nan)
                              for r in found.itertuples()]
    found["dense_value"] = [value_of.get(tuple(getattr(r, k) for k in keys) + (catalog.DENSE, 0.0), np.nan)
                            for r in found.itertuples()]
    starts = (found.sort_values("sparsity").drop_duplicates(CURVE)
              .assign(sparsity=0.0, sparsity_actual=0.0, gain=0.0, value=lambda f: f["control_value"]))
    for column in ("ci_low", "ci_high", "band_low", "band_high", "p_value", "p_adjusted", "q_value", "top1_gain",
                   "top1_lower", "collapsed_layers"):
        starts[column] = np.nan
    starts["significant"] = False
    starts["sweet_spot"] = False
    starts["non_inferior"] = pd.array([pd.NA] * len(starts), dtype="boolean")
    curves = pd.concat([starts, found], ignore_index=True)
    return curves[CURVE_COLUMNS].sort_values(CURVE + ["sparsity"], kind="stable").reset_index(drop=True)


def _table(curves: pd.DataFrame, frame: pd.DataFrame, settings: Settings,
           families: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    pruned = curves[curves["sparsity"] > 0]
    family_size = pruned[pruned["role"] == "headline"].groupby(["arch", "task"]).size()
    shape_or_texture = _point_of(frame, "shape_or_texture")
    recovery_costs = _recovery_costs(curves)
    rows = []
    for key, curve in pruned.groupby(CURVE, sort=True, observed=True):
        curve = curve.sort_values("sparsity")
        eligible = curve[curve["non_inferior"].fillna(False).astype(bool) & ~(curve["collapsed_layers"] > 0)]
        # the best sweet spot where there is one (so the row's interval backs it), else the best
        # sparsity where the model still works
        best = _best(curve[curve["sweet_spot"]]) if curve["sweet_spot"].any() else _best(eligible)
        best_any = _best(curve)
        first = curve.iloc[0]
        chosen = best if best is not None else None
        row = {**dict(zip(CURVE, key)), "role": first["role"], "higher_is_better": bool(first["higher_is_better"]),
               "control": first["control"], "control_value": first["control_value"],
               "dense_value": first["dense_value"], "confidence": settings.confidence,
               "family_size": int(family_size.get((key[0], key[2]), 0)) if first["role"] == "headline" else 0,
               "sweet_spot": bool(curve["sweet_spot"].any()),
               "sweet_range": ", ".join(f"{s:g}" for s in curve.loc[curve["sweet_spot"], "sparsity"]),
               "best_any_sparsity": np.nan if best_any is None else best_any["sparsity"],
               "best_any_gain": np.nan if best_any is None else best_any["gain"],
               "collapsed_at": ", ".join(f"{s:g}" for s in curve.loc[curve["collapsed_layers"] > 0, "sparsity"]),
               "n_items": int(curve["n_items"].max()), "n_seeds": int(curve["n_seeds"].max())}
        if chosen is not None:
            row.update(best_sparsity=chosen["sparsity"], sparsity_actual=chosen["sparsity_actual"],
                       best_value=chosen["value"], gain=chosen["gain"], ci_low=chosen["band_low"],
                       ci_high=chosen["band_high"], significant=bool(chosen["significant"]),
                       p_adjusted=chosen["p_adjusted"], q_value=chosen["q_value"],
                       top1_drop=-100 * chosen["top1_gain"], top1_lower=100 * chosen["top1_lower"])
        else:
            row.update(best_sparsity=np.nan, sparsity_actual=np.nan, best_value=np.nan, gain=np.nan, ci_low=np.nan,
                       ci_high=np.nan, significant=False, p_adjusted=np.nan, q_value=np.nan, top1_drop=np.nan,
                       top1_lower=np.nan)
        row["top1_control"], row["top1"] = _top1_values(curves, key, row["best_sparsity"])
        row["shape_or_texture"] = (shape_or_texture.get((key[0], key[2], key[3], key[4], key[1], row["best_sparsity"]),
                                                        np.nan) if key[5] == "shape_bias" else np.nan)
        row["caveat"] = _caveat(row, curve, settings, recovery_costs.get((key[0], key[1]), (np.nan, "")))
        rows.append(row)
    if not rows:
        return _empty(TABLE_COLUMNS)
    table = pd.DataFrame(rows)
    return table[TABLE_COLUMNS].sort_values(CURVE, kind="stable").reset_index(drop=True)


def _best(curve: pd.DataFrame) -> pd.Series | None:
    """The point with the largest gain (the lowest sparsity among ties)."""
    finite = curve[np.isfinite(curve["gain"].to_numpy(float))]
    if finite.empty:
        return None
    return finite.sort_values(["gain", "sparsity"], ascending=[False, True], kind="stable").iloc[0]


def _top1_curve(curves: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The top-1 curve a row's model is checked on: the row's own dataset where it has top-1, else
    the first accuracy dataset."""
    arch, method, dataset = key[0], key[1], key[3]
    acc = curves[(curves["arch"] == arch) & (curves["method"] == method) & (curves["task"] == ACCURACY_TASK)
                 & (curves["metric"] == TOP1) & (curves["variant"] == "")]
    if acc.empty:
        return acc
    datasets = sorted(acc["dataset"].unique())
    return acc[acc["dataset"] == (dataset if dataset in datasets else datasets[0])]


def _top1_values(curves: pd.DataFrame, key: tuple, sparsity: float) -> tuple[float, float]:
    acc = _top1_curve(curves, key)
    if acc.empty:
        return np.nan, np.nan
    control = acc.loc[acc["sparsity"] == 0, "value"]
    at = acc.loc[acc["sparsity"] == sparsity, "value"] if np.isfinite(sparsity) else pd.Series(dtype=float)
    return (float(control.iloc[0]) if len(control) else np.nan), (float(at.iloc[0]) if len(at) else np.nan)


def _point_of(frame: pd.DataFrame, metric: str) -> pd.Series:
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        return pd.Series(dtype=float)
    return rows.groupby(["arch", "task", "dataset", "variant", "method", "sparsity"], observed=True)["value"].mean()


def _recovery_costs(curves: pd.DataFrame) -> dict[tuple[str, str], tuple[float, str]]:
    """(arch, method) -> the most top-1 points its control lies below the dense model (dense minus
    control) on any accuracy dataset, as the top-1 gate checks every one, and that dataset."""
    acc = curves[(curves["task"] == ACCURACY_TASK) & (curves["metric"] == TOP1) & (curves["variant"] == "")
                 & (curves["control"] != catalog.DENSE)]
    lost = (100.0 * (acc["dense_value"] - acc["control_value"])).groupby(
        [acc["arch"], acc["method"], acc["dataset"]], observed=True).first().dropna()
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for (arch, method, dataset), points in lost.items():
        if points > out.get((arch, method), (-np.inf, ""))[0]:
            out[(arch, method)] = (float(points), str(dataset))
    return out


def _caveat(row: dict, curve: pd.DataFrame, settings: Settings, recovery_cost: tuple[float, str]) -> str:
    notes = []
    lost, where = recovery_cost
    if lost > settings.top1_margin:
        # pruned model and control share their training, so the gain is the mask's; but over a
        # model that training left weaker than the dense one (BatchNorm re-estimated on other
        # images, or SNIP's schedule from initialisation)
        notes.append(f"the control's top-1 is {lost:.1f} points below the dense model's on {where}: gains are "
                     "over a model weaker than the dense one")
    if not np.isfinite(curve["gain"].to_numpy(float)).any():
        notes.append(f"no {row['control']} rows to compare with")
    elif not np.isfinite(curve["ci_low"].to_numpy(float)).any():
        notes.append("no interval: a set-level value without per-item ingredients")
    elif 2 <= row["n_seeds"] < MIN_SEEDS_FOR_SEED_INTERVAL:
        notes.append(f"seed spread from only {row['n_seeds']} seeds")
    if curve["non_inferior"].isna().all():
        notes.append("no top-1 to check that the model still works")
    elif math.isnan(row["best_sparsity"]):
        notes.append(f"top-1 not shown within {settings.top1_margin:g} points of the control at any sparsity")
    if row["collapsed_at"]:
        notes.append(f"collapsed layers at sparsity {row['collapsed_at']}")
    lost = curve[curve["significant"] & ~curve["sweet_spot"] & (curve["role"] == "headline")]
    if len(lost):
        notes.append(f"significant gain but top-1 lost or layers collapsed at {', '.join(f'{s:g}' for s in lost['sparsity'])}")
    if row["shape_or_texture"] < MIN_SHAPE_OR_TEXTURE:
        notes.append(f"only {row['shape_or_texture']:.0%} of decisions were shape or texture")
    return "; ".join(notes)
