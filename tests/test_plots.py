"""Figures (sweetspot.analysis.plots) and the report's front page: what they draw, that they stay
within a screen on study-sized inputs, and that their legends name methods and reference lines only."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

from sweetspot import catalog, study
from sweetspot.analysis import front_page, plots, table as sweetspots
from sweetspot.contract import COLUMNS
from sweetspot.data import distortions
from conftest import ROOT

MAX_PIXELS = 1600
ATTRIBUTIONS = ("saliency", "ig", "ig_smoothgrad", "gradcam", "guided_gradcam", "attention")
EXPLORATORY_ATTRIBUTION = ("pointing_game", "deletion_auc_norm", "insertion_auc_norm")


def _rows_default() -> list[tuple[str, str, str, str, tuple[str, ...] | None]]:
    """(task, dataset, variant, metric, archs or None for all) of the default study's curves."""
    rows = [("accuracy", "synthetic-val", "", m, None) for m in ("top1", "top5")]
    rows += [("interpretability", "synthetic-val", v, m, ("vit",) if v == "attention" else
              ("resnet",) if v == "guided_gradcam" else None)
             for v in ATTRIBUTIONS for m in ("rma", "rra", *EXPLORATORY_ATTRIBUTION)]
    rows += [("discovery", "synthetic-val", "lost", m, None) for m in ("corloc", "iou", "mask_iou")]
    rows += [("alignment", "synthetic-cue-conflict", "", m, None) for m in ("shape_bias", "correct")]
    rows += [("alignment", "synthetic-distortions", distortions.condition_name(name, level), "correct", None)
             for name, levels in distortions.DEFAULT_LEVELS.items() for level in levels]
    return rows


def _rows_geirhos16() -> list[tuple[str, str, str, str, None]]:
    consistency = ("error_consistency", "correct", "observed_consistency", "accuracy_difference")
    rows = [("accuracy", f"geirhos16-{kind}", "", m, None) for kind in ("edge", "silhouette") for m in ("top1", "top5")]
    rows += [("interpretability", "geirhos16-cue-conflict", v, m, None)
             for v in ("saliency", "gradcam", "guided_gradcam", "ig_smoothgrad")
             for m in ("rma", "rra", *EXPLORATORY_ATTRIBUTION)]
    rows += [("discovery", "geirhos16-cue-conflict", "lost", m, None) for m in ("corloc", "iou", "mask_iou")]
    rows += [("alignment", "geirhos16-cue-conflict", "", m, None) for m in ("shape_bias", *consistency)]
    rows += [("alignment", f"geirhos16-{kind}", "", m, None) for kind in ("edge", "silhouette") for m in consistency]
    return rows


def study_curves(archs, methods, sparsities, rows, seed=0) -> pd.DataFrame:
    """A curves frame shaped like table.compute's: every method's curve of every row, its control
    at sparsity 0, random gains with bands, sweet spots where the band clears 0 and top-1 holds."""
    rng = np.random.default_rng(seed)
    settings = sweetspots.Settings(controls={})
    records = []
    for arch in archs:
        for task, dataset, variant, metric, only in rows:
            if only is not None and arch not in only:
                continue
            role = settings.role(task, metric)
            controls = {"control-finetune": rng.uniform(0.3, 0.8), "control-snip": rng.uniform(0.3, 0.8)}
            for method in methods:
                control = "control-snip" if method == "snip" else "control-finetune"
                control_value = controls[control]
                sign = 1.0 if catalog.METRICS[metric].higher_is_better else -1.0
                for sparsity in (0.0, *sparsities):
                    gain = 0.0 if sparsity == 0 else rng.normal(0.0, 0.05)
                    half = 0.0 if sparsity == 0 else abs(rng.normal(0.04, 0.01))
                    significant = sparsity > 0 and gain - half > 0
                    non_inferior = sparsity > 0 and rng.random() < 0.6
                    records.append({
                        "arch": arch, "method": method, "task": task, "dataset": dataset, "variant": variant,
                        "metric": metric, "role": role, "sparsity": sparsity, "sparsity_actual": sparsity,
                        "higher_is_better": sign > 0,
                        "control": control,
                        "value": control_value + sign * gain, "control_value": control_value,
                        "dense_value": control_value + 0.01, "gain": gain, "ci_low": gain - 0.8 * half,
                        "ci_high": gain + 0.8 * half, "band_low": gain - half, "band_high": gain + half,
                        "p_value": 0.5, "p_adjusted": 0.5, "q_value": 0.5, "significant": significant,
                        "top1_gain": 0.0, "top1_lower": 0.0, "non_inferior": non_inferior,
                        "collapsed_layers": float(sparsity >= 0.95),
                        "sweet_spot": significant and non_inferior and role == "headline" and sparsity < 0.95,
                        "n_items": 32, "n_seeds": 1})
    return pd.DataFrame(records)[sweetspots.CURVE_COLUMNS]


HUMANS = pd.DataFrame([
    ("cue-conflict", "0", "shape_bias", 0.96, 0.02), ("cue-conflict", "0", "error_consistency", 0.33, 0.06),
    ("cue-conflict", "0", "accuracy", 0.78, 0.07), ("edge", "0", "error_consistency", 0.32, 0.14),
    ("edge", "0", "accuracy", 0.87, 0.10), ("silhouette", "0", "error_consistency", 0.48, 0.11),
    ("silhouette", "0", "accuracy", 0.75, 0.06),
], columns=["experiment", "condition", "metric", "value", "std"]).assign(n=10)
EXPERIMENTS = {f"geirhos16-{kind}": kind for kind in ("cue-conflict", "edge", "silhouette")}

STUDIES = {
    "default": ("config.yaml", lambda: study_curves(("resnet", "vit"), ("magnitude", "imp", "snip", "random"),
                                                   (0.5, 0.7, 0.8, 0.9, 0.95), _rows_default())),
    "geirhos16": ("presets/geirhos16.yaml", lambda: study_curves(
        ("effnet_lite0", "effnet_lite1", "effnet_lite2"), ("magnitude", "random"),
        (0.15, 0.3, 0.45, 0.6, 0.75, 0.9), _rows_geirhos16())),
}


def _draw(curves, spec, human=None):
    if spec["kind"] == "overview":
        return plots.overview(curves, spec["role"])
    return plots.task_curves(curves, spec["task"], spec["variant"], human)


def _legend_labels(fig) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_figure_of_a_study_fits_a_screen_and_names_methods_and_references_only(tmp_path, name):
    config_file, make = STUDIES[name]
    config = yaml.safe_load((ROOT / config_file).read_text())
    curves = make()
    human = plots.human_reference(HUMANS, EXPERIMENTS) if name == "geirhos16" else None
    methods = set(curves["method"])
    diagnostic = {m.display for m in catalog.METRICS.values() if m.role == "diagnostic"}
    for figure, spec in study.figures(config).items():
        fig = _draw(curves, spec, human)
        labels = _legend_labels(fig)
        assert labels and set(labels) <= methods | set(plots.REFERENCE_LABELS), (figure, labels)
        assert not set(labels) & diagnostic
        plots.save(fig, tmp_path / figure)
        height, width = mpimg.imread(tmp_path / f"{figure}.png").shape[:2]
        assert max(height, width) <= MAX_PIXELS, (figure, width, height)
        assert min(height, width) >= 300, (figure, width, height)
        assert "<svg" in (tmp_path / f"{figure}.svg").read_text()[:2000]


def test_figures_cover_every_task_and_attribution_method_of_the_config(default_config):
    names = set(study.figures(default_config))
    assert {"overview", "overview-exploratory", "curves-accuracy", "curves-discovery", "curves-alignment"} <= names
    assert {f"curves-interpretability-{v}" for v in default_config["tasks"]["interpretability"]["methods"]} <= names
    assert not any("structure" in n for n in names)


def test_curves_rows_are_top1_then_the_headline_metrics_and_columns_the_architectures():
    curves = STUDIES["default"][1]()
    fig = plots.task_curves(curves, "interpretability", "gradcam")
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[0]] == ["resnet", "vit"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["top-1 accuracy", "relevance mass accuracy",
                                                      "relevance rank accuracy"]
    attention = plots.task_curves(curves, "interpretability", "attention")
    assert [ax.get_title() for ax in attention.axes[:1]] == ["vit"]  # no empty column for the CNN


def test_a_method_has_one_colour_in_every_figure():
    curves = STUDIES["default"][1]()
    colours = plots.method_colours(["random", "snip", "magnitude", "imp"])
    assert list(colours) == list(catalog.PRUNING_METHODS)
    assert plots.method_colours(["random", "lth"])["random"] == colours["random"]
    for fig in (plots.task_curves(curves, "discovery"), plots.task_curves(curves, "alignment")):
        handles = zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)
        assert {t.get_text(): h.get_color() for t, h in handles if t.get_text() in colours} == colours


def test_alignment_panels_show_the_human_reference():
    curves = STUDIES["geirhos16"][1]()
    human = plots.human_reference(HUMANS, EXPERIMENTS)
    assert set(human["variant"]) == {""}  # one condition per experiment: the datasets without conditions
    fig = plots.task_curves(curves, "alignment", None, human)
    assert plots.HUMANS in _legend_labels(fig)
    shape_bias = [ax for ax in fig.axes if ax.get_ylabel().startswith("shape bias")][0]
    assert any(np.allclose(line.get_ydata(), 0.96) for line in shape_bias.get_lines())
    assert plots.HUMANS not in _legend_labels(plots.task_curves(curves, "alignment", None, None))


def test_overview_collapses_distortion_levels_and_puts_top1_first():
    curves = STUDIES["default"][1]()
    fig = plots.overview(curves, "exploratory")
    labels = [t.get_text() for ax in fig.axes if ax.get_yticklabels() for t in ax.get_yticklabels()]
    assert labels[0] == "top-1 accuracy"
    contrast = [label for label in labels if "contrast" in label]
    assert contrast == ["decision accuracy · contrast (8 levels) · synthetic-distortions"]
    assert not any("diagnostic" in label or "raw probability" in label for label in labels)


def test_overview_marks_sweet_spots_and_top1_guards():
    curves = STUDIES["default"][1]()
    fig = plots.overview(curves, "headline")
    markers = [c for ax in fig.axes for c in ax.collections if len(c.get_offsets())]
    assert len(markers) >= 3  # stars, ticks and crosses (collapsed at 0.95) all drawn


def test_empty_inputs_draw_a_placeholder(tmp_path):
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in sweetspots.CURVE_COLUMNS})
    for fig in (plots.overview(empty), plots.task_curves(empty, "discovery")):
        plots.save(fig, tmp_path / "empty")
        assert mpimg.imread(tmp_path / "empty.png").shape[1] > 100  # the placeholder text


def _metrics_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    jobs = [("resnet", "dense", 0.0), ("vit", "dense", 0.0)]
    jobs += [("resnet", m, s) for m in ("magnitude", "snip") for s in (0.5, 0.9)]
    jobs += [("vit", "magnitude", s) for s in (0.5, 0.9)]  # vit has no snip
    for arch, method, sparsity in jobs:
        for metric in ("rma", "deletion_auc", "flag_zero_map"):
            for i in range(30):
                rows.append((arch, method, sparsity, "interpretability", "synthetic-val", "gradcam", metric,
                             f"img{i}", 0.4 + sparsity * 0.1 + rng.normal(0, 0.05)))
        for i in range(30):
            rows.append((arch, method, sparsity, "accuracy", "synthetic-val", "", "top1", f"img{i}",
                         float(rng.random() < 0.9 - sparsity / 3)))
    frame = pd.DataFrame(rows, columns=["arch", "method", "sparsity", "task", "dataset", "variant", "metric",
                                        "item", "value"])
    frame = frame.assign(benchmark="synthetic", sparsity_actual=frame["sparsity"], seed=0)
    return frame[list(COLUMNS)].astype(COLUMNS)


def test_figures_of_computed_curves_never_show_a_diagnostic_metric(tmp_path):
    settings = sweetspots.Settings(controls={"magnitude": "dense", "snip": "dense"}, n_boot=100)
    curves = sweetspots.compute(_metrics_frame(), settings)[0]
    for fig in (plots.overview(curves), plots.overview(curves, "exploratory"),
                plots.task_curves(curves, "interpretability", "gradcam")):
        labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()] + [ax.get_ylabel() for ax in fig.axes]
        assert not any("raw probability" in label or "all-zero" in label for label in labels)
        plots.save(fig, tmp_path / "figure")


def test_front_page_renders_the_summary_and_embeds_the_overview():
    page = front_page.render("# When?\n\nText with `control` and **bold** <x>.\n\n**task**: two:\n- one\n- two\n"
                             "  a note\n", b"\x89PNG fake")
    assert "<h1>When?</h1>" in page and "<code>control</code>" in page and "<strong>bold</strong>" in page
    assert "&lt;x&gt;" in page
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n<p>a note</p>" in page
    assert 'src="data:image/png;base64,' in page


def test_front_page_lines_stay_short_for_docutils():
    summary = "# When?\n\n" + " ".join(["**imp** at 0.9 (+0.01)"] * 2000) + "\n" + "- item\n" * 300
    page = front_page.render(summary, bytes(range(256)) * 400)
    assert max(len(line) for line in page.splitlines()) < 1000


def test_the_sparsity_axis_spreads_a_low_per_method_grid_and_high_sparsities_alike():
    """Random pruning's own grid (0.0025-0.025) beside magnitude's (0.15-0.6) must not collapse onto
    the dense model, and 0.9 and 0.95 must stay nearly as far apart as 0.5 and 0.75 (a fifth of it on
    a linear axis)."""
    position = plots.sparsity_position([0.0025, 0.005, 0.01, 0.025, 0.15, 0.3, 0.45, 0.6])
    x = position(np.array([0.0, 0.0025, 0.005, 0.01, 0.025, 0.15, 0.3, 0.45, 0.6]))
    assert np.all(np.diff(x) > 0)
    width = x[-1] - x[0]
    assert np.diff(x).min() > 0.05 * width  # each level its own place: the old axis put all of random within 1 %
    assert x[1] - x[0] == pytest.approx(np.log10(3), abs=0.01)  # dense half a step left of the lowest level
    high = plots.sparsity_position([0.5, 0.7, 0.9, 0.95])
    assert high(0.95) - high(0.9) > 0.7 * (high(0.75) - high(0.5))
