"""Bootstrap primitives of the sweet-spot table (sweetspot.analysis.stats), against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sweetspot.analysis import stats


def test_weight_blocks_are_resamples_of_all_items_and_do_not_depend_on_the_block_size(monkeypatch):
    whole = np.concatenate(list(stats.item_weight_blocks(7, 50, stats.keyed_rng(0, "x"))))
    assert whole.shape == (50, 7) and (whole.sum(axis=1) == 7).all() and (whole >= 0).all()
    monkeypatch.setattr(stats, "WEIGHT_BLOCK_ENTRIES", 7 * 3)  # blocks of 3 replicates
    blocked = np.concatenate(list(stats.item_weight_blocks(7, 50, stats.keyed_rng(0, "x"))))
    assert [len(b) for b in stats.item_weight_blocks(7, 50, stats.keyed_rng(0, "x"))][:2] == [3, 3]
    np.testing.assert_array_equal(blocked[:3], whole[:3])  # the first block is drawn the same way


def test_weighted_means_skip_missing_items():
    columns = np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, 4.0]])
    weights = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0]])
    np.testing.assert_allclose(stats.weighted_means(columns, weights), [[2.0, 3.0], [1.0, 4.0]])


def test_item_bootstrap_interval_agrees_with_scipy_paired_percentile():
    rng = np.random.default_rng(3)
    control = rng.normal(0.5, 0.1, 80)
    pruned = control + rng.normal(0.03, 0.05, 80)
    weights = np.concatenate(list(stats.item_weight_blocks(80, 4000, stats.keyed_rng(1, "a"))))
    replicates = (stats.weighted_means(pruned[:, None], weights) - stats.weighted_means(control[:, None], weights))[:, 0]
    ours = stats.summarise(replicates, float(np.mean(pruned - control)), 0.95)
    reference = scipy_stats.bootstrap((pruned - control,), np.mean, n_resamples=4000, method="percentile",
                                      confidence_level=0.95, random_state=np.random.default_rng(2)).confidence_interval
    assert ours["ci_low"] == pytest.approx(reference.low, abs=0.003)
    assert ours["ci_high"] == pytest.approx(reference.high, abs=0.003)
    assert ours["se"] == pytest.approx(np.std(pruned - control, ddof=1) / np.sqrt(80), rel=0.1)


def test_paired_replicates_with_one_seed_are_the_plain_difference_and_seeds_are_resampled():
    pruned, control = np.arange(6.0).reshape(3, 2), np.ones((3, 2))
    draws = np.array([[0, 1], [1, 1], [0, 0]])
    # replicate b averages pruned - control over the seeds it drew: seeds (0, 1), (1, 1), (0, 0)
    np.testing.assert_allclose(stats.paired_gain_replicates(pruned, control, draws), [-0.5, 2.0, 3.0])
    one = stats.seed_draws(1, 4, seed=0)
    assert one.shape == (4, 1) and not one.any()


def test_a_degenerate_bootstrap_is_certain_only_when_there_is_a_difference():
    assert stats.summarise(np.zeros(10), 0.0, 0.95)["p_value"] == 1.0
    assert stats.summarise(np.full(10, 0.2), 0.2, 0.95)["p_value"] == 0.0
    assert np.isnan(stats.summarise(np.full(10, np.nan), 0.1, 0.95)["se"])


def test_maxt_band_covers_every_comparison_at_once_and_adjusts_p():
    """Under no effect, the simultaneous band misses some comparison in about 5% of experiments,
    while pointwise intervals miss far more often over a grid of 8 correlated comparisons."""
    rng = np.random.default_rng(7)
    n_items, n_comparisons, experiments = 60, 8, 300
    missed_band = missed_pointwise = disagree = 0
    for _ in range(experiments):
        shared = rng.normal(0, 1, (n_items, 1))
        diffs = 0.6 * shared + 0.8 * rng.normal(0, 1, (n_items, n_comparisons))  # true gain 0 everywhere
        weights = next(stats.item_weight_blocks(n_items, 400, rng))
        replicates = stats.weighted_means(diffs, weights)
        gains = diffs.mean(axis=0)
        se = replicates.std(axis=0, ddof=1)
        worst = stats.studentized_deviations(replicates, gains, se).max(axis=1)
        critical = stats.band_critical_value(worst, 0.95)
        missed_band += bool((np.abs(gains) > critical * se).any())
        missed_pointwise += bool((np.abs(gains) > 1.96 * se).any())
        adjusted = stats.maxt_adjusted_p(gains, se, worst)
        disagree += int(((adjusted < 0.05) != (np.abs(gains) > critical * se)).sum())
    assert missed_band / experiments < 0.05 + 2 * np.sqrt(0.05 * 0.95 / experiments)
    assert missed_pointwise / experiments > 0.15
    assert disagree / (experiments * n_comparisons) < 0.01  # the adjusted p and the band decide alike


def test_fdr_q_values_match_scipy_and_skip_untested():
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.5])
    q = stats.fdr_q_values(p)
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3, 4]], scipy_stats.false_discovery_control(p[[0, 2, 3, 4]]))


def test_keyed_generators_depend_only_on_seed_and_keys():
    a = stats.keyed_rng(0, "items", "abc").random(3)
    np.testing.assert_array_equal(a, stats.keyed_rng(0, "items", "abc").random(3))
    assert not np.array_equal(a, stats.keyed_rng(1, "items", "abc").random(3))
    assert not np.array_equal(a, stats.keyed_rng(0, "items", "abd").random(3))
