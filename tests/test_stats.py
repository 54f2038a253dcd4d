"""Paired bootstrap, seed-level intervals and Holm correction (sweetspot.analysis.stats)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sweetspot.analysis import stats

N_REPS = 200
N_BOOT = 500


def _coverage_and_false_benefit(simulate, true_gain: float, seed: int) -> tuple[float, float]:
    """Fraction of intervals covering the true gain, and of intervals wholly above zero."""
    rng = np.random.default_rng(seed)
    covered = above = 0
    for _ in range(N_REPS):
        dense, pruned = simulate(rng)
        result = stats.paired_gain_ci(dense, pruned, n_boot=N_BOOT, confidence=0.95, rng=rng)
        covered += result.ci_low <= true_gain <= result.ci_high
        above += result.ci_low > 0
    return covered / N_REPS, above / N_REPS


def _items(gain: float, n_items: int = 80):
    def simulate(rng):
        difficulty = rng.normal(0.5, 0.2, n_items)  # shared by dense and pruned: the pairing
        dense = difficulty + rng.normal(0, 0.1, n_items)
        pruned = difficulty + gain + rng.normal(0, 0.3, n_items) + rng.exponential(0.1, n_items) - 0.1
        return dense, pruned
    return simulate


def _seeds(gain: float, n_seeds: int = 5, n_items: int = 60):
    """Seed random effects on both models, an item effect of pruning shared across seeds."""
    def simulate(rng):
        difficulty = rng.normal(0.5, 0.2, n_items)
        helped = rng.normal(0, 0.2, n_items)  # some images gain at every seed
        dense = difficulty + rng.normal(0, 0.05, (n_seeds, 1)) + rng.normal(0, 0.2, (n_seeds, n_items))
        pruned = (difficulty + gain + helped + rng.normal(0, 0.05, (n_seeds, 1))
                  + rng.normal(0, 0.2, (n_seeds, n_items)))
        return dense, pruned
    return simulate


@pytest.mark.parametrize("simulate_for", [_items, _seeds], ids=["item-level", "hierarchical"])
def test_intervals_cover_the_true_gain_at_the_nominal_rate(simulate_for):
    coverage, _ = _coverage_and_false_benefit(simulate_for(0.05), 0.05, seed=1)
    assert 0.90 <= coverage <= 0.99


@pytest.mark.parametrize("simulate_for", [_items, _seeds], ids=["item-level", "hierarchical"])
def test_a_zero_effect_is_rarely_called_a_benefit(simulate_for):
    coverage, false_benefit = _coverage_and_false_benefit(simulate_for(0.0), 0.0, seed=2)
    assert false_benefit <= 0.05  # one-sided nominal 2.5% plus slack
    assert coverage >= 0.90


def test_item_bootstrap_agrees_with_scipy_paired_percentile():
    rng = np.random.default_rng(3)
    dense = rng.normal(0.4, 0.2, 150)
    pruned = dense + 0.03 + rng.normal(0, 0.1, 150)
    ours = stats.paired_gain_ci(dense, pruned, n_boot=4000, confidence=0.95, rng=np.random.default_rng(0))
    reference = scipy_stats.bootstrap(
        (pruned, dense), lambda p, d, axis: np.mean(p - d, axis=axis), paired=True, vectorized=True,
        n_resamples=4000, confidence_level=0.95, method="percentile", rng=np.random.default_rng(1),
    )
    half_width = (reference.confidence_interval.high - reference.confidence_interval.low) / 2
    assert ours.gain == pytest.approx(np.mean(pruned - dense))
    assert ours.ci_low == pytest.approx(reference.confidence_interval.low, abs=0.1 * half_width)
    assert ours.ci_high == pytest.approx(reference.confidence_interval.high, abs=0.1 * half_width)
    assert ours.n_items == 150 and ours.n_seeds == 1


def test_same_generator_seed_gives_the_same_interval():
    rng = np.random.default_rng(4)
    dense, pruned = rng.random((3, 40)), rng.random((3, 40))
    first = stats.paired_gain_ci(dense, pruned, n_boot=300, rng=np.random.default_rng(9))
    second = stats.paired_gain_ci(dense, pruned, n_boot=300, rng=np.random.default_rng(9))
    assert first == second


def test_missing_items_are_skipped_not_counted_as_zero():
    dense = np.array([0.0, 0.0, 0.0, 0.0])
    pruned = np.array([1.0, 1.0, np.nan, 1.0])
    result = stats.paired_gain_ci(dense, pruned, n_boot=200, rng=np.random.default_rng(0))
    assert result.gain == 1.0
    assert result.n_items == 3
    assert result.ci_low == pytest.approx(1.0) and result.ci_high == pytest.approx(1.0)


def test_a_single_dense_seed_is_paired_with_every_pruned_seed():
    dense = np.array([0.2, 0.4, 0.6])
    pruned = np.array([[0.3, 0.5, 0.7], [0.4, 0.6, 0.8]])
    result = stats.paired_gain_ci(dense, pruned, n_boot=200, rng=np.random.default_rng(0))
    assert result.gain == pytest.approx(0.15)
    assert result.n_seeds == 2


def test_set_level_metric_with_one_seed_has_no_interval():
    result = stats.paired_gain_ci(np.array([0.4]), np.array([0.6]), n_boot=200, rng=np.random.default_rng(0))
    assert result.gain == pytest.approx(0.2)
    assert np.isnan(result.ci_low) and np.isnan(result.ci_high) and np.isnan(result.p_value)


def test_set_level_metric_with_several_seeds_uses_the_t_interval_over_seeds():
    dense = np.array([[0.40], [0.42], [0.41], [0.39]])
    pruned = np.array([[0.45], [0.50], [0.44], [0.47]])
    result = stats.paired_gain_ci(dense, pruned, n_boot=200, rng=np.random.default_rng(0))
    test = scipy_stats.ttest_1samp((pruned - dense)[:, 0], 0.0)
    interval = test.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))
    assert result.p_value == pytest.approx(test.pvalue)


def test_bootstrap_means_with_unit_weights_reproduce_the_point_gain():
    rng = np.random.default_rng(5)
    diffs = rng.normal(size=(3, 20, 4))
    diffs[1, 5, 2] = np.nan
    weights = np.ones((7, 20))
    draws = np.tile(np.arange(3), (7, 1))  # every replicate keeps each seed once
    boot = stats.bootstrap_means(diffs, weights, draws)
    np.testing.assert_allclose(boot, np.tile(stats.point_gain(diffs), (7, 1)))


def test_item_weights_are_resamples_of_all_items():
    weights = stats.item_weights(50, 30, np.random.default_rng(0))
    assert weights.shape == (30, 50)
    np.testing.assert_array_equal(weights.sum(axis=1), 50)
    assert (weights >= 0).all()


def test_holm_against_a_hand_computed_example():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; then running max
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02, np.nan])


def test_holm_caps_at_one_and_handles_no_tests():
    np.testing.assert_allclose(stats.holm(np.array([0.6, 0.7])), [1.0, 1.0])
    assert np.isnan(stats.holm(np.array([np.nan]))).all()


def test_keyed_generators_depend_only_on_seed_and_keys():
    a = stats.keyed_rng(0, "items", "abc").integers(0, 1000, 5)
    b = stats.keyed_rng(0, "items", "abc").integers(0, 1000, 5)
    c = stats.keyed_rng(1, "items", "abc").integers(0, 1000, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
