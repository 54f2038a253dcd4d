"""Sweet-spot table, curves, summary and file outputs (sweetspot.analysis.table)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweetspot import artifacts as io
from sweetspot.analysis import stats
from sweetspot.analysis import table as sweetspots
from sweetspot.contract import COLUMNS

N_ITEMS = 60
SPARSITIES = (0.5, 0.8, 0.9)


def _rows(arch, method, sparsity, seed, task, dataset, variant, metric, values, items=None):
    items = [f"img{i:03d}" for i in range(len(values))] if items is None else items
    return pd.DataFrame({
        "benchmark": "synthetic", "arch": arch, "method": method, "sparsity": sparsity,
        "sparsity_actual": sparsity * 0.99, "seed": seed, "task": task, "dataset": dataset,
        "variant": variant, "metric": metric, "item": items, "value": np.asarray(values, dtype=float),
    })


def _study(seeds=(0,)) -> pd.DataFrame:
    """resnet: rma peaks at 0.8, deletion_auc (lower is better) is best at 0.5, top1 drops 10
    points at 0.8, shape bias rises on few shape-or-texture decisions; vit: nothing changes."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, N_ITEMS)
    correct = (np.arange(N_ITEMS) % 10 != 0).astype(float)  # dense top1 0.9
    rma_effect = {0.0: 0.0, 0.5: 0.05, 0.8: 0.2, 0.9: -0.1}
    deletion_effect = {0.0: 0.0, 0.5: -0.1, 0.8: -0.02, 0.9: 0.1}
    top1_lost = {0.0: 0, 0.5: 0, 0.8: 6, 0.9: 30}  # items turned wrong
    frames = []
    for seed in seeds:
        for method, sparsities in (("dense", (0.0,)), ("magnitude", SPARSITIES)):
            for s in sparsities:
                noise = rng.normal(0, 0.01, N_ITEMS)
                top1 = correct.copy()
                top1[np.flatnonzero(correct)[:top1_lost[s]]] = 0.0
                frames += [
                    _rows("resnet", method, s, seed, "accuracy", "synthetic-val", "", "top1", top1),
                    _rows("resnet", method, s, seed, "interpretability", "synthetic-val", "gradcam", "rma",
                          base + rma_effect[s] + noise),
                    _rows("resnet", method, s, seed, "interpretability", "synthetic-val", "gradcam", "deletion_auc",
                          base + deletion_effect[s] + noise),
                    _rows("resnet", method, s, seed, "interpretability", "synthetic-val", "gradcam", "flag_zero_map",
                          np.zeros(N_ITEMS)),
                    _rows("resnet", method, s, seed, "alignment", "synthetic-cue-conflict", "", "shape_bias",
                          [0.3 + s / 4], items=[""]),
                    _rows("resnet", method, s, seed, "alignment", "synthetic-cue-conflict", "", "shape_or_texture",
                          [0.9 - s * 0.8], items=[""]),
                    _rows("vit", method, s, seed, "interpretability", "synthetic-val", "attention", "rma",
                          base + rng.normal(0, 0.05, N_ITEMS)),
                ]
        frames.append(_rows("resnet", "dense", 0.0, seed, "discovery", "synthetic-val", "center_box", "corloc",
                            (np.arange(N_ITEMS) % 3 == 0).astype(float)))
    return pd.concat(frames, ignore_index=True).astype(COLUMNS)


@pytest.fixture(scope="module")
def result():
    return sweetspots.compute(_study(), n_boot=400, seed=0)


def _row(table, arch="resnet", metric="rma"):
    rows = table[(table["arch"] == arch) & (table["metric"] == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_best_sparsity_benefit_and_sweet_range(result):
    _, table = result
    rma = _row(table)
    assert rma["best_sparsity"] == 0.8
    assert rma["gain"] == pytest.approx(0.2, abs=0.01)
    assert rma["best_value"] - rma["dense_value"] == pytest.approx(0.2, abs=0.01)
    assert rma["benefit"] and rma["benefit_holm"]
    assert rma["sweet_range"] == "0.5, 0.8"  # 0.9 is significantly worse
    assert rma["sparsity_actual"] == pytest.approx(0.8 * 0.99)
    assert rma["n_items"] == N_ITEMS and rma["n_seeds"] == 1


def test_lower_is_better_metric_counts_a_decrease_as_a_gain(result):
    _, table = result
    deletion = _row(table, metric="deletion_auc")
    assert not deletion["higher_is_better"]
    assert deletion["best_sparsity"] == 0.5
    assert deletion["gain"] == pytest.approx(0.1, abs=0.01)
    assert deletion["best_value"] < deletion["dense_value"]
    assert 0 < deletion["ci_low"] < deletion["gain"] < deletion["ci_high"]
    assert deletion["sweet_range"] == "0.5, 0.8"


def test_no_change_is_not_a_benefit(result):
    _, table = result
    vit = _row(table, arch="vit")
    assert not vit["benefit_holm"]
    assert vit["sweet_range"] == ""


def test_holm_family_is_every_tested_comparison_of_the_table(result):
    curves, table = result
    in_family = (curves["sparsity"] > 0) & ~curves["metric"].str.startswith("flag_")
    p = curves.loc[in_family, "p_value"]
    # rma, deletion_auc, top1 (resnet) and rma (vit) at 3 sparsities; one-seed set-level metrics have no p
    assert p.notna().sum() == 12
    assert (table["n_comparisons"] == 12).all()
    np.testing.assert_allclose(curves.loc[in_family, "p_holm"], stats.holm(p.to_numpy()))
    rma = _row(table)
    assert rma["p_holm"] >= rma["p_value"]


def test_diagnostics_and_dense_only_baselines_stay_out_of_the_table(result):
    curves, table = result
    assert not table["metric"].str.startswith("flag_").any()
    assert "center_box" not in set(table["variant"])
    baseline = curves[curves["variant"] == "center_box"]
    assert list(baseline["method"]) == ["dense"] and list(baseline["sparsity"]) == [0.0]
    assert curves["metric"].eq("flag_zero_map").any()


def test_dense_is_the_first_point_of_every_method_curve(result):
    curves, _ = result
    rma = curves[(curves["arch"] == "resnet") & (curves["metric"] == "rma")]
    assert list(rma["sparsity"]) == [0.0, *SPARSITIES]
    assert rma.iloc[0]["gain"] == 0.0 and rma.iloc[0]["method"] == "magnitude"


def test_accuracy_at_the_sweet_spot_and_its_drop(result):
    _, table = result
    rma = _row(table)
    assert rma["top1_dense"] == pytest.approx(0.9)
    assert rma["top1"] == pytest.approx(0.8)
    assert rma["top1_drop"] == pytest.approx(10.0)
    assert "top-1 dropped by 10.0 points" in rma["caveat"]
    deletion = _row(table, metric="deletion_auc")
    assert deletion["top1_drop"] == pytest.approx(0.0) and deletion["caveat"] == ""


def test_shape_bias_carries_its_shape_or_texture_fraction(result):
    _, table = result
    bias = _row(table, metric="shape_bias")
    assert bias["best_sparsity"] == 0.9
    assert bias["shape_or_texture"] == pytest.approx(0.9 - 0.9 * 0.8)
    assert "only 18% of decisions were shape or texture" in bias["caveat"]
    assert np.isnan(bias["ci_low"]) and not bias["benefit"] and not bias["benefit_holm"]


def test_seeds_are_paired_and_counted():
    curves, table = sweetspots.compute(_study(seeds=(0, 1, 2)), n_boot=200, seed=0)
    rma = _row(table)
    assert rma["n_seeds"] == 3 and rma["best_sparsity"] == 0.8
    bias = _row(table, metric="shape_bias")
    assert np.isfinite(bias["ci_low"])  # several seeds: an interval over seeds
    assert "interval from only 3 seeds" in bias["caveat"]


def test_a_single_dense_seed_serves_every_pruned_seed():
    frame = _study(seeds=(0, 1))
    frame = frame[~((frame["method"] == "dense") & (frame["seed"] == 1))]
    _, table = sweetspots.compute(frame, n_boot=200, seed=0)
    assert _row(table)["n_seeds"] == 2


def test_compute_is_deterministic(result):
    curves, table = sweetspots.compute(_study(), n_boot=400, seed=0)
    pd.testing.assert_frame_equal(curves, result[0])
    pd.testing.assert_frame_equal(table, result[1])


def test_bad_input_is_refused_with_the_reason():
    frame = _study()
    with pytest.raises(ValueError, match="HIGHER_IS_BETTER"):
        sweetspots.compute(frame.assign(metric="made_up"), n_boot=50)
    with pytest.raises(ValueError, match="twice"):
        sweetspots.compute(pd.concat([frame, frame.iloc[:1]]), n_boot=50)
    with pytest.raises(ValueError, match="missing contract columns"):
        sweetspots.compute(frame.drop(columns="item"), n_boot=50)


def test_summary_names_every_architecture_and_is_deterministic(result):
    _, table = result
    text = sweetspots.summary(table)
    assert "## resnet" in text and "## vit" in text
    assert "magnitude pruning at 80% sparsity raises Grad-CAM relevance mass accuracy" in text
    assert "lowers Grad-CAM deletion AUC (lower is better)" in text
    assert "vit: no metric improves significantly" in text
    assert "over 12 comparisons" in text
    assert text == sweetspots.summary(table.sample(frac=1.0, random_state=1))


def test_write_tables_and_read_metrics_round_trip(tmp_path, result):
    _, table = result
    sweetspots.write_tables(table, sweetspots.summary(table), tmp_path / "sweet_spots")
    assert pd.read_parquet(tmp_path / "sweet_spots.parquet").shape == table.shape
    assert len(pd.read_csv(tmp_path / "sweet_spots.csv")) == len(table)
    markdown = (tmp_path / "sweet_spots.md").read_text()
    assert markdown.startswith("# When does pruning benefit?") and "| resnet" in markdown

    frame = _study()
    for i, (key, job) in enumerate(frame.groupby(["arch", "method", "sparsity"])):
        io.write_parquet(tmp_path / "metrics" / f"job{i}.parquet", job)
    read = sweetspots.read_metrics(sorted((tmp_path / "metrics").glob("*.parquet")))
    assert len(read) == len(frame)
    curves, table_again = sweetspots.compute(read, n_boot=400, seed=0)
    pd.testing.assert_frame_equal(table_again, table, check_dtype=False, check_categorical=False)
