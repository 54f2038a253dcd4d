"""Paired bootstrap statistics for the sweet-spot table (DESIGN section 7).

The gain of a pruned model over the dense one is a paired difference: both are scored on the
same items, so the item-to-item spread cancels. Its uncertainty comes from a bootstrap:

- one seed: resample items with replacement (percentile interval);
- several seeds: a hierarchical bootstrap over the two random factors; draw seeds with
  replacement and draw items with replacement. The statistic of one replicate is the mean over
  the drawn seeds of the weighted mean over items of that seed's differences (pruned of seed k
  minus dense of seed k; when the dense model has a single seed every pruned seed is paired
  with it, done by the caller).

Items are crossed with seeds (every seed scores the same images), so one item draw serves all
seeds of a replicate (Owen's "pigeonhole" bootstrap for crossed factors, Ann. Appl. Stat. 2007).
Drawing items afresh within every drawn seed would treat an image that pruning helps at every
seed as independent noise and shrink the item part of the variance by the number of seeds;
it also would ignore that a single dense seed's item noise is shared by all pruned seeds.

Resampling items with replacement is the same as giving item i a Multinomial(n, 1/n) weight,
so a replicate is one row of a weight matrix times the difference matrix. Every comparison
scored on the same items can share one weight matrix, and all bootstrap replicates of many
comparisons become a few matrix products; that is what keeps aggregation of a full study fast.
Missing items (NaN) are skipped by also weighting a validity mask (a ratio estimator).

p-values are two-sided and read from a normal approximation of the bootstrap distribution
(z = gain / bootstrap standard error). The plain bootstrap fraction 2*min(P(<=0), P(>=0)) cannot
go below about 2/n_boot, which no Holm correction over hundreds of comparisons could ever
accept, so the normal tail is used instead; the interval itself is the percentile interval.

Set-level metrics (one number per seed) have only seeds to resample, and a bootstrap over 2-5
values is far too narrow (two seeds give three distinct replicates). For them
`seed_t_interval` gives the Student-t interval and t-test on the per-seed gains instead.
Per-item metrics with few seeds keep the hierarchical bootstrap; with 2-4 seeds it sees only a
handful of distinct seed sets, so when the between-seed spread dominates the item noise its
interval is optimistic (tests/test_stats.py checks coverage with 5 seeds). With a single dense
seed its own seed-to-seed spread is not in the interval: the comparison is with that model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

__all__ = [
    "GainCI",
    "bootstrap_means",
    "holm",
    "item_weights",
    "keyed_rng",
    "paired_gain_ci",
    "point_gain",
    "seed_draws",
    "seed_t_interval",
    "summarise",
]


@dataclass(frozen=True)
class GainCI:
    """One comparison: mean paired gain (pruned - dense), its interval and two-sided p-value."""

    gain: float
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int
    n_seeds: int


def keyed_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator that depends only on `seed` and `keys`, so a comparison's draws do not
    change when other comparisons are added to the same run."""
    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng([int(seed), *words])


def item_weights(n_items: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Multinomial(n_items, 1/n_items) counts, shape (n_boot, n_items): one resample per row."""
    draws = rng.integers(0, n_items, size=(n_boot, n_items))
    draws += np.arange(n_boot)[:, None] * n_items
    counts = np.bincount(draws.ravel(), minlength=n_boot * n_items)
    return counts.reshape(n_boot, n_items).astype(np.float64)


def seed_draws(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Seed indices drawn with replacement, shape (n_boot, n_seeds)."""
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds))


def point_gain(diffs: np.ndarray) -> np.ndarray:
    """Mean over seeds of the mean over items; `diffs` is (n_seeds, n_items, n_cols), NaN = missing.

    Returns (n_cols,); NaN where a column has no valid item in any seed.
    """
    valid = ~np.isnan(diffs)
    counts = valid.sum(axis=1)
    sums = np.where(valid, diffs, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = sums / counts  # NaN where a seed has no valid item
    return _nanmean_or_nan(per_seed, axis=0)


def bootstrap_means(diffs: np.ndarray, weights: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of `point_gain(diffs)`, shape (n_boot, n_cols).

    diffs: (n_seeds, n_items, n_cols), NaN where an item is missing.
    weights: (n_boot, n_items) item weights; replicate b reweights the items of every seed it
        drew with the same row (items are crossed with seeds: the same images at every seed).
    draws: (n_boot, n_seeds) seeds drawn with replacement into each slot of a replicate.
    """
    n_seeds, n_items, n_cols = diffs.shape
    if weights.shape[1] != n_items or draws.shape[1] != n_seeds or weights.shape[0] != draws.shape[0]:
        raise ValueError(f"weights {weights.shape} and draws {draws.shape} do not fit diffs {diffs.shape}")
    valid = ~np.isnan(diffs)
    # (n_items, n_seeds * n_cols): every seed's columns side by side, one matrix product
    stacked = np.where(valid, diffs, 0.0).transpose(1, 0, 2).reshape(n_items, -1)
    sums = (weights @ stacked).reshape(-1, n_seeds, n_cols)
    if valid.all():
        denom = weights.sum(axis=1)[:, None, None]
    else:
        denom = (weights @ valid.transpose(1, 0, 2).reshape(n_items, -1).astype(np.float64)).reshape(sums.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = sums / denom  # NaN where a replicate drew no valid item of that seed
    picked = per_seed[np.arange(draws.shape[0])[:, None], draws]  # (n_boot, n_seeds slots, n_cols)
    return _nanmean_or_nan(picked, axis=1)


def summarise(boot: np.ndarray, point: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval and two-sided normal-approximation p-value per column of `boot`."""
    alpha = 1.0 - confidence
    low, high = _nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    with np.errstate(invalid="ignore"):
        se = np.nanstd(boot, axis=0, ddof=1) if boot.shape[0] > 1 else np.full(boot.shape[1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(point) / se
    p = special.erfc(z / np.sqrt(2.0))  # = 2 * (1 - Phi(|z|))
    # a degenerate bootstrap (every replicate equal): certain when the gain is non-zero
    degenerate = (se == 0) & np.isfinite(point)
    p = np.where(degenerate, np.where(point == 0, 1.0, 0.0), p)
    p = np.where(np.isfinite(point) & np.isfinite(se), p, np.nan)
    return low, high, p


def seed_t_interval(per_seed: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Student-t interval and two-sided one-sample t-test p of the mean over seeds.

    per_seed: (n_seeds, n_cols) gains; NaN where a seed is missing. NaN where fewer than 2 seeds.
    """
    per_seed = np.asarray(per_seed, dtype=np.float64)
    n = (~np.isnan(per_seed)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(per_seed, axis=0) if per_seed.size else np.full(per_seed.shape[1], np.nan)
        variance = np.nansum((per_seed - mean) ** 2, axis=0) / (n - 1)
        se = np.sqrt(variance / n)
        df = np.where(n >= 2, n - 1, np.nan)
        half = scipy_stats.t.ppf(0.5 + confidence / 2, df) * se
        p = 2 * scipy_stats.t.sf(np.abs(mean) / se, df)
    p = np.where(se == 0, np.where(mean == 0, 1.0, 0.0), p)
    ok = n >= 2
    return np.where(ok, mean - half, np.nan), np.where(ok, mean + half, np.nan), np.where(ok, p, np.nan)


def paired_gain_ci(
    dense: np.ndarray,
    pruned: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator,
) -> GainCI:
    """Bootstrap interval of the mean paired gain pruned - dense on the same items.

    dense, pruned: (n_items,) for one seed, or (n_seeds, n_items) for several (item columns
    aligned; NaN = missing). A dense of one seed is paired with every pruned seed. One item
    means a set-level metric: `seed_t_interval` over seeds, NaN with a single seed.
    """
    dense = np.atleast_2d(np.asarray(dense, dtype=np.float64))
    pruned = np.atleast_2d(np.asarray(pruned, dtype=np.float64))
    if dense.shape[1] != pruned.shape[1]:
        raise ValueError(f"dense has {dense.shape[1]} items, pruned {pruned.shape[1]}: pass the same items")
    if dense.shape[0] not in (1, pruned.shape[0]):
        raise ValueError(f"dense has {dense.shape[0]} seeds, pruned {pruned.shape[0]}: pass one dense seed or one per pruned seed")
    diffs = (pruned - dense)[:, :, None]
    n_seeds, n_items = pruned.shape
    gain = float(point_gain(diffs)[0])
    paired_items = int((~np.isnan(diffs[:, :, 0])).any(axis=0).sum())
    if n_items == 1:
        low, high, p = seed_t_interval(diffs[:, 0, :], confidence)
        return GainCI(gain, float(low[0]), float(high[0]), float(p[0]), paired_items, n_seeds)
    boot = bootstrap_means(diffs, item_weights(n_items, n_boot, rng), seed_draws(n_seeds, n_boot, rng))
    low, high, p = summarise(boot, np.array([gain]), confidence)
    return GainCI(gain, float(low[0]), float(high[0]), float(p[0]), paired_items, n_seeds)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are left NaN and do not count as tests."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size
    if m == 0:
        return adjusted
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def _nanmean_or_nan(values: np.ndarray, axis: int) -> np.ndarray:
    ok = ~np.isnan(values)
    count = ok.sum(axis=axis)
    total = np.where(ok, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _nanquantile(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    if not np.isnan(values).any():
        return np.quantile(values, q, axis=0)
    out = np.full((len(q), values.shape[1]), np.nan)
    some = ~np.isnan(values).all(axis=0)
    if some.any():
        out[:, some] = np.nanquantile(values[:, some], q, axis=0)
    return out
