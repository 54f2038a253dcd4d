"""The sweet-spot table (sweetspot.analysis.table) and its summary: gains against matched
controls, sweet spots that keep top-1 and no collapsed layer, intervals for every metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweetspot.analysis import summary as prose
from sweetspot.analysis import table as sweet
from sweetspot.contract import COLUMNS
from sweetspot.metrics import human
from sweetspot.tasks import alignment

N = 200
SPARSITIES = (0.5, 0.8, 0.9)
SETTINGS = sweet.Settings(controls={"magnitude": "control-finetune"}, n_boot=400)


def rows(method, sparsity, task, dataset, variant, metric, values, items=None, seed=0, arch="resnet"):
    values = np.atleast_1d(np.asarray(values, dtype=float))
    items = [f"img{i:03d}" for i in range(len(values))] if items is None else items
    return pd.DataFrame({"benchmark": "synthetic", "arch": arch, "method": method, "sparsity": sparsity,
                         "sparsity_actual": sparsity, "seed": seed, "task": task, "dataset": dataset,
                         "variant": variant, "metric": metric, "item": items, "value": values})


def study(seeds=(0,)) -> pd.DataFrame:
    """resnet: rma gains 0.1 over the control at 0.5, 0.2 at 0.8 (where 20 % of top-1 is lost) and
    0.3 at 0.9 (where a layer collapsed); the control itself is 0.05 above dense. deletion_auc_norm
    (lower is better) falls by 0.05 at 0.5. Shape bias rises at 0.5. vit: nothing changes."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, N)
    correct = (np.arange(N) % 10 != 0).astype(float)
    points = [("dense", 0.0, -0.05, 0, 0), ("control-finetune", 0.0, 0.0, 0, 0), ("magnitude", 0.5, 0.1, 0, 0),
              ("magnitude", 0.8, 0.2, 40, 0), ("magnitude", 0.9, 0.3, 0, 2)]
    frames = []
    for seed in seeds:
        for method, s, effect, lost, collapsed in points:
            top1 = correct.copy()
            top1[np.flatnonzero(correct)[:lost]] = 0.0
            noise = rng.normal(0, 0.01, N)
            shape = (rng.random(N) < (0.6 if s == 0.5 else 0.3)).astype(float)
            frames += [
                rows(method, s, "accuracy", "synthetic-val", "", "top1", top1, seed=seed),
                rows(method, s, "interpretability", "synthetic-val", "gradcam", "rma", base + effect + noise, seed=seed),
                rows(method, s, "interpretability", "synthetic-val", "gradcam", "deletion_auc_norm",
                     base - (0.05 if s == 0.5 else 0.0) + noise, seed=seed),
                rows(method, s, "interpretability", "synthetic-val", "gradcam", "flag_zero_map", np.zeros(N), seed=seed),
                rows(method, s, "alignment", "synthetic-cue-conflict", "", "shape_decision", shape, seed=seed),
                rows(method, s, "alignment", "synthetic-cue-conflict", "", "texture_decision", 1 - shape, seed=seed),
                rows(method, s, "alignment", "synthetic-cue-conflict", "", "shape_bias", [shape.mean()], [""], seed),
                rows(method, s, "structure", "synthetic-val", "", "collapsed_layers", [collapsed], [""], seed),
                rows(method, s, "interpretability", "synthetic-val", "attention", "rma",
                     base + rng.normal(0, 0.05, N), seed=seed, arch="vit"),
                rows(method, s, "accuracy", "synthetic-val", "", "top1", correct, seed=seed, arch="vit"),
            ]
        frames.append(rows("dense", 0.0, "discovery", "synthetic-val", "center_box", "corloc", np.arange(N) % 2,
                           seed=seed))
    return pd.concat(frames, ignore_index=True).astype(COLUMNS)


@pytest.fixture(scope="module")
def result():
    return sweet.compute(study(), SETTINGS)


def one(table, arch="resnet", metric="rma", variant=None):
    found = table[(table["arch"] == arch) & (table["metric"] == metric)]
    if variant is not None:
        found = found[found["variant"] == variant]
    assert len(found) == 1, found
    return found.iloc[0]


def point(curves, sparsity, metric="rma", arch="resnet"):
    found = curves[(curves["arch"] == arch) & (curves["metric"] == metric) & (curves["sparsity"] == sparsity)]
    assert len(found) == 1
    return found.iloc[0]


def test_gains_are_measured_against_the_matched_control_not_dense(result):
    curves, table = result
    rma = one(table)
    assert rma["control"] == "control-finetune"
    assert rma["control_value"] - rma["dense_value"] == pytest.approx(0.05, abs=0.005)
    assert point(curves, 0.5)["gain"] == pytest.approx(0.1, abs=0.005)  # not 0.15, the gain over dense


def test_the_best_sparsity_keeps_top1_and_the_unconstrained_best_is_kept_beside_it(result):
    curves, table = result
    rma = one(table)
    assert rma["best_sparsity"] == 0.5 and rma["sweet_spot"] and rma["sweet_range"] == "0.5"
    assert rma["best_any_sparsity"] == 0.9  # the largest gain, on a collapsed network
    assert rma["ci_low"] > 0 and rma["ci_low"] < rma["gain"] < rma["ci_high"]
    lost, collapsed = point(curves, 0.8), point(curves, 0.9)
    assert lost["significant"] and not lost["non_inferior"] and not lost["sweet_spot"]
    assert collapsed["significant"] and collapsed["non_inferior"] and collapsed["collapsed_layers"] == 2
    assert not collapsed["sweet_spot"]
    assert "collapsed layers at sparsity 0.9" in rma["caveat"] and "top-1 lost" in rma["caveat"]
    assert rma["top1_drop"] == pytest.approx(0.0) and rma["top1_lower"] <= 0.0


def test_every_sweet_spot_keeps_top1_within_the_margin(result):
    curves, _ = result
    spots = curves[curves["sweet_spot"]]
    assert len(spots) and (spots["top1_lower"] > -SETTINGS.top1_margin / 100).all()
    assert (spots["role"] == "headline").all() and (spots["collapsed_layers"] == 0).all()


def test_a_lower_is_better_metric_counts_a_decrease_as_a_gain_and_exploratory_is_never_a_sweet_spot(result):
    _, table = result
    deletion = one(table, metric="deletion_auc_norm")
    assert not deletion["higher_is_better"] and deletion["role"] == "exploratory"
    assert deletion["best_sparsity"] == 0.5 and deletion["gain"] == pytest.approx(0.05, abs=0.005)
    assert deletion["significant"] and deletion["q_value"] < 0.05 and not deletion["sweet_spot"]


def test_no_change_is_not_significant(result):
    curves, table = result
    vit = one(table, arch="vit")
    assert not vit["sweet_spot"] and not curves[curves["arch"] == "vit"]["significant"].any()


def test_set_level_metrics_get_an_interval_with_one_seed(result):
    curves, table = result
    bias = one(table, metric="shape_bias")
    assert bias["n_seeds"] == 1 and np.isfinite(bias["ci_low"]) and np.isfinite(bias["ci_high"])
    assert bias["sweet_spot"] and bias["best_sparsity"] == 0.5
    assert point(curves, 0.5, "shape_bias")["ci_high"] > point(curves, 0.5, "shape_bias")["ci_low"]


def test_diagnostics_and_baselines_without_pruned_points_stay_out(result):
    curves, table = result
    assert not {"flag_zero_map", "collapsed_layers", "shape_decision", "texture_decision"} & set(table["metric"])
    assert "center_box" not in set(table["variant"]) and "structure" not in set(curves["task"])


def test_each_curve_starts_at_its_control(result):
    curves, _ = result
    start = point(curves, 0.0)
    assert start["method"] == "magnitude" and start["gain"] == 0.0 and start["value"] == start["control_value"]


def test_headline_family_is_the_architecture_and_task(result):
    _, table = result
    interp = table[(table["arch"] == "resnet") & (table["task"] == "interpretability") & (table["role"] == "headline")]
    assert (interp["family_size"] == 3).all()  # rma at three sparsities; deletion is exploratory


def test_seeds_are_paired_and_one_control_seed_serves_every_pruned_seed():
    frame = study(seeds=(0, 1, 2))
    _, table = sweet.compute(frame, SETTINGS)
    assert one(table)["n_seeds"] == 3
    single = frame[~((frame["method"] == "control-finetune") & (frame["seed"] > 0))]
    _, table = sweet.compute(single, SETTINGS)
    assert one(table)["n_seeds"] == 3 and one(table)["gain"] == pytest.approx(0.1, abs=0.01)


def test_compute_is_deterministic(result):
    curves, table = sweet.compute(study(), SETTINGS)
    pd.testing.assert_frame_equal(table, result[1])
    pd.testing.assert_frame_equal(curves, result[0])


def test_error_consistency_is_bootstrapped_from_trials_and_equals_the_tasks_own_value():
    rng = np.random.default_rng(4)
    items = [f"cue-conflict/bird/s{i}.png" for i in range(60)]
    trials = pd.DataFrame([{"dataset": "geirhos16-cue-conflict", "subject": f"s{s}", "item": item,
                            "correct": float(rng.random() < 0.8)} for s in range(3) for item in items])
    frames = []
    for method, sparsity in (("control-finetune", 0.0), ("magnitude", 0.5)):
        correct = (rng.random(60) < 0.7).astype(float)
        frames.append(rows(method, sparsity, "alignment", "geirhos16-cue-conflict", "", "correct", correct, items))
        written = alignment.condition_rows(rows(method, sparsity, "alignment", "geirhos16-cue-conflict", "", "correct",
                                                correct, items)[["dataset", "variant", "metric", "item", "value"]],
                                           trials.rename(columns={"dataset": "_"}))
        for metric in human.SUBJECT_METRICS:
            value = written.loc[written["metric"] == metric, "value"].iloc[0]
            frames.append(rows(method, sparsity, "alignment", "geirhos16-cue-conflict", "", metric, [value], [""]))
    curves, table = sweet.compute(pd.concat(frames, ignore_index=True).astype(COLUMNS), SETTINGS, trials)
    ec = curves[(curves["metric"] == "error_consistency") & (curves["sparsity"] == 0.5)].iloc[0]
    written_value = pd.concat(frames).query("metric == 'error_consistency' and method == 'magnitude'")["value"].iloc[0]
    assert ec["value"] == pytest.approx(written_value)  # the table recomputes exactly what the task wrote
    assert np.isfinite(ec["ci_low"]) and ec["ci_low"] < ec["gain"] < ec["ci_high"]
    assert "no top-1" in one(table, metric="error_consistency")["caveat"]  # nothing says the model still works


def test_bad_input_is_refused_with_the_reason():
    frame = study()
    with pytest.raises(ValueError, match="not in sweetspot.catalog.METRICS"):
        sweet.compute(frame.assign(metric=frame["metric"].astype(str).replace("rma", "made_up")), SETTINGS)
    with pytest.raises(ValueError, match="dense and control rows must have sparsity 0"):
        sweet.compute(frame.assign(sparsity=frame["sparsity"] + 0.1), SETTINGS)
    with pytest.raises(ValueError, match="pruning method 'magnitude' has no control"):
        sweet.compute(frame, sweet.Settings(controls={}))
    with pytest.raises(ValueError, match="appears twice"):
        sweet.compute(pd.concat([frame, frame.iloc[:1]], ignore_index=True), SETTINGS)


def test_summary_lists_sweet_spots_and_counts_the_gains_of_broken_models(result):
    curves, table = result
    text = prose.summary(table, curves, 1.0)
    assert "## resnet" in text and "## vit" in text
    assert "magnitude pruning at 50% sparsity changes Grad-CAM relevance mass accuracy" in text
    assert "further significant headline gain" in text  # 0.8 (top-1 lost) and 0.9 (collapse), never headlined
    assert "**Layer collapse**" in text and "magnitude at 0.9 (2)" in text
    assert "at 80% sparsity" not in text and "at 90% sparsity" not in text
    assert prose.summary(table, curves, 1.0) == text


def test_write_tables_and_read_metrics_round_trip(tmp_path, result):
    _, table = result
    paths = {"table": tmp_path / "t.parquet", "csv": tmp_path / "t.csv", "markdown": tmp_path / "t.md"}
    prose.write_tables(table, "# summary", **paths)
    assert pd.read_parquet(paths["table"]).shape == table.shape
    assert paths["markdown"].read_text().startswith("# summary") and "sweet_spot" in paths["markdown"].read_text()
    frame = study()
    frame.to_parquet(tmp_path / "m.parquet")
    back = sweet.read_metrics([tmp_path / "m.parquet"])
    assert len(back) == len(frame) and isinstance(back["metric"].dtype, pd.CategoricalDtype)


def _null_study(rng: np.random.Generator, n_items: int = 80) -> pd.DataFrame:
    """One architecture: top-1 identical to the control, two headline metrics with no effect at any
    of five sparsities (items correlated across sparsities, as pruned models of one parent are)."""
    correct = (rng.random(n_items) < 0.9).astype(float)
    item_effect = rng.normal(0.4, 0.1, n_items)
    frames = []
    for method, s in [("control-finetune", 0.0)] + [("magnitude", s) for s in (0.5, 0.6, 0.7, 0.8, 0.9)]:
        frames.append(rows(method, s, "accuracy", "synthetic-val", "", "top1", correct))
        for metric in ("rma", "rra"):
            frames.append(rows(method, s, "interpretability", "synthetic-val", "gradcam", metric,
                               item_effect + rng.normal(0, 0.05, n_items)))
    return pd.concat(frames, ignore_index=True).astype(COLUMNS)


def test_false_sweet_spots_over_a_whole_grid_stay_at_the_nominal_rate():
    """With no effect anywhere, some sweet spot appears in at most 5 % of studies (plus Monte
    Carlo error): choosing the best of the grid and of the metrics does not manufacture one."""
    rng = np.random.default_rng(11)
    studies, settings = 120, sweet.Settings(controls={"magnitude": "control-finetune"}, n_boot=300)
    false = 0
    for k in range(studies):
        _, table = sweet.compute(_null_study(rng), sweet.Settings(**{**settings.__dict__, "seed": k}))
        false += bool(table["sweet_spot"].any())
    assert false / studies <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / studies)


def test_summary_sets_architectures_side_by_side_and_dense_models_against_humans(result):
    curves, table = result
    text = prose.summary(table, curves, 1.0)
    across = text[text.index("## Across architectures"):]
    assert "| magnitude | interpretability | synthetic-val | gradcam | relevance mass accuracy | 0.5 |  |" in across  # vit has no Grad-CAM rows

    dense = pd.DataFrame([{"arch": "lite0", "task": "alignment", "dataset": "geirhos16-cue-conflict", "variant": "",
                           "metric": "shape_bias", "sparsity": 0.0, "dense_value": 0.24},
                          {"arch": "lite0", "task": "accuracy", "dataset": "geirhos16-edge", "variant": "",
                           "metric": "top1", "sparsity": 0.0, "dense_value": 0.36}])
    reference = pd.DataFrame([{"experiment": "cue-conflict", "condition": "0", "metric": "shape_bias", "value": 0.958,
                               "std": 0.02, "n": 10},
                              {"experiment": "edge", "condition": "0", "metric": "accuracy", "value": 0.871,
                               "std": 0.096, "n": 10}])
    lines = prose._against_humans(dense, reference)
    assert "| lite0 | geirhos16-cue-conflict | shape bias | 0.240 | 0.958 ± 0.020 (n = 10) |" in lines
    assert "| lite0 | geirhos16-edge | top-1 accuracy | 0.360 | 0.871 ± 0.096 (n = 10) |" in lines


def test_a_curve_with_a_sweet_spot_reports_it_even_where_a_larger_gain_is_not_significant():
    frame = study()
    # at 0.8 top-1 now holds, and rma gains more there than at 0.5, but on far noisier items
    noisy = (frame["method"] == "magnitude") & (frame["sparsity"] == 0.8)
    top1 = noisy & (frame["metric"] == "top1") & (frame["arch"] == "resnet")
    frame.loc[top1, "value"] = frame.loc[(frame["method"] == "control-finetune") & (frame["metric"] == "top1")
                                         & (frame["arch"] == "resnet"), "value"].to_numpy()
    rma = noisy & (frame["metric"] == "rma") & (frame["arch"] == "resnet")
    frame.loc[rma, "value"] += np.random.default_rng(1).normal(0, 3.0, int(rma.sum())) + 0.2
    curves, table = sweet.compute(frame, SETTINGS)
    larger = point(curves, 0.8)
    assert larger["gain"] > point(curves, 0.5)["gain"] and larger["non_inferior"] and not larger["significant"]
    row = one(table)
    assert row["sweet_spot"] and row["best_sparsity"] == 0.5 and row["ci_low"] > 0


def test_a_control_that_its_recovery_weakened_is_named_in_the_caveat():
    """BatchNorm re-estimated on cue-conflict stimuli cost EfficientNet-Lite2's control 31 points of
    silhouette top-1: a gain over that control is the mask's, but over a weakened model, and the row
    says so, whichever accuracy dataset the loss is on (the top-1 gate checks them all)."""
    frame = study()
    top1 = frame[(frame["arch"] == "resnet") & (frame["task"] == "accuracy")].copy()
    top1["dataset"] = "synthetic-z"  # a second accuracy dataset, where the dense model is 10 points better
    top1.loc[top1["method"] == "dense", "value"] = 1.0
    curves, table = sweet.compute(pd.concat([frame, top1], ignore_index=True).astype(COLUMNS), SETTINGS)
    assert "the control's top-1 is 10.0 points below the dense model's on synthetic-z" in one(table)["caveat"]
    assert one(table)["sweet_spot"]  # the rules are unchanged; the sweet spot's sentence carries the note
    assert "Caveat: the control's top-1 is 10.0 points below" in prose.summary(table, curves, 1.0)
    _, table = sweet.compute(frame, SETTINGS)  # the control as good as dense: no such note
    assert "below the dense model's" not in one(table)["caveat"]
