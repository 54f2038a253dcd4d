"""Bootstrap statistics of the sweet-spot table (docs/methods.md, "Statistics").

Every comparison is paired: a pruned model and its control are scored on the same items, and
each bootstrap replicate recomputes both on the same resample, so item-to-item spread cancels.

- Items are resampled with replacement: replicate b gives item i a Multinomial(n, 1/n) count
  W[b, i], and a per-item mean becomes a ratio of two matrix products (NaN items carry no
  weight). Set-level statistics (shape bias, error consistency) are recomputed from their
  per-item ingredients with the same weights, so they get intervals with one seed too.
- With several seeds, replicate b also draws seeds with replacement, and one item draw serves
  every seed of the replicate: items are crossed with seeds (the same images at every seed), so
  drawing items afresh per seed would treat an image that pruning helps at every seed as
  independent noise (Owen, "The pigeonhole bootstrap", Ann. Appl. Stat. 2007).
- Choosing the best sparsity of a grid, or the best of many metrics, must not manufacture
  significance. A simultaneous band over a set of comparisons j uses the bootstrap distribution
  of M = max_j |g*_j - g_j| / se_j (the max-|t| band): g_j +- q_{conf}(M) se_j holds for every j
  at once with the nominal probability (Westfall & Young, 1993; Montiel Olea & Plagborg-Moller,
  "Simultaneous confidence bands", J. Appl. Econometrics 2019). Its single-step adjusted p-value
  is the share of replicates whose M reaches |g_j / se_j|.
- Exploratory metrics get the two-sided normal-approximation p-value g / se and
  Benjamini-Hochberg q-values (scipy.stats.false_discovery_control).

Draws depend only on the stats seed and on what they resample (the item names, the number of
seeds), so adding results elsewhere in a study does not move an existing interval.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

# Replicates x items per block of weights: bounds memory for 20 000-image datasets.
WEIGHT_BLOCK_ENTRIES = 4_000_000


def keyed_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator that depends only on `seed` and `keys`."""
    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng([int(seed), *words])


def items_key(item_names: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(item_names).encode()).hexdigest()


def item_weight_blocks(n_items: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Multinomial(n_items, 1/n_items) resampling counts, (rows, n_items) blocks covering n_boot rows.

    The blocks are drawn in order from one generator, so the replicates do not depend on the block size.
    """
    rows = max(1, WEIGHT_BLOCK_ENTRIES // max(n_items, 1))
    for start in range(0, n_boot, rows):
        block = min(rows, n_boot - start)
        draws = rng.integers(0, n_items, size=(block, n_items))
        draws += np.arange(block)[:, None] * n_items
        yield np.bincount(draws.ravel(), minlength=block * n_items).reshape(block, n_items).astype(np.float64)


def weighted_means(columns: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Replicate means (rows, n_cols) of item columns (n_items, n_cols) with NaN = missing item."""
    valid = ~np.isnan(columns)
    sums = weights @ np.where(valid, columns, 0.0)
    counts = weights @ valid.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)


def seed_draws(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """Seed indices drawn with replacement, (n_boot, n_seeds); one seed gives a column of zeros."""
    if n_seeds == 1:
        return np.zeros((n_boot, 1), dtype=np.int64)
    return keyed_rng(seed, "seeds", n_seeds).integers(0, n_seeds, size=(n_boot, n_seeds))


def paired_gain_replicates(pruned: np.ndarray, control: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Replicates of the mean over seeds of pruned - control.

    pruned, control: (n_boot, n_seeds) replicate statistics per seed (the control already
    matched to each pruned seed); draws: (n_boot, n_seeds) seeds drawn per replicate.
    """
    diffs = pruned - control
    picked = np.take_along_axis(diffs, draws, axis=1)
    with np.errstate(invalid="ignore"):
        return _nanmean(picked, axis=1)


def summarise(replicates: np.ndarray, gain: float, confidence: float) -> dict[str, float]:
    """Point gain, bootstrap standard error, percentile interval, one-sided lower bound and
    normal-approximation two-sided p-value of one comparison's replicates (n_boot,)."""
    finite = replicates[np.isfinite(replicates)]
    alpha = 1.0 - confidence
    if not np.isfinite(gain) or finite.size < 2:
        nan = float("nan")
        return {"gain": gain, "se": nan, "ci_low": nan, "ci_high": nan, "lower_one_sided": nan, "p_value": nan}
    se = float(np.std(finite, ddof=1))
    low, high, lower = np.quantile(finite, [alpha / 2, 1 - alpha / 2, alpha])
    if se > 0:
        p = float(special.erfc(abs(gain) / se / np.sqrt(2.0)))
    else:  # every replicate equal: certain, unless there is no difference at all
        p = 1.0 if gain == 0 else 0.0
    return {"gain": gain, "se": se, "ci_low": float(low), "ci_high": float(high), "lower_one_sided": float(lower),
            "p_value": p}


def studentized_deviations(replicates: np.ndarray, gains: np.ndarray, se: np.ndarray) -> np.ndarray:
    """|g*_bj - g_j| / se_j, (n_boot, n_comparisons); 0 where se is 0 or undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(replicates - gains[None, :]) / se[None, :]
    return np.where(np.isfinite(t), t, 0.0)


def band_critical_value(max_deviation: np.ndarray, confidence: float) -> float:
    """The confidence-quantile of the replicates' largest studentized deviation."""
    return float(np.quantile(max_deviation, confidence)) if max_deviation.size else float("nan")


def maxt_adjusted_p(gains: np.ndarray, se: np.ndarray, max_deviation: np.ndarray) -> np.ndarray:
    """Single-step max-|t| adjusted p-values: (1 + #{b: M_b >= |g_j / se_j|}) / (1 + n_boot)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(gains) / se
    t = np.where(se == 0, np.where(gains == 0, 0.0, np.inf), t)
    counts = (max_deviation[None, :] >= t[:, None]).sum(axis=1)
    p = (1.0 + counts) / (1.0 + max_deviation.size)
    return np.where(np.isfinite(gains) & np.isfinite(se), p, np.nan)


def fdr_q_values(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values; NaN entries stay NaN and are not counted as tests."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        out[tested] = scipy_stats.false_discovery_control(p[tested], method="bh")
    return out


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    ok = ~np.isnan(values)
    count = ok.sum(axis=axis)
    total = np.where(ok, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
