"""Figures: curves per task and gain heatmaps per architecture (sweetspot.analysis.plots)."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from sweetspot.analysis import plots, table as sweetspots
from sweetspot.contract import COLUMNS


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    jobs = [("resnet", "dense", 0.0), ("vit", "dense", 0.0)]
    jobs += [("resnet", m, s) for m in ("magnitude", "snip") for s in (0.5, 0.9)]
    jobs += [("vit", "magnitude", s) for s in (0.5, 0.9)]  # vit has no snip: an empty facet
    for arch, method, sparsity in jobs:
        for variant, metric in (("gradcam", "rma"), ("gradcam", "deletion_auc"), ("gradcam", "flag_zero_map")):
            for i in range(30):
                rows.append((arch, method, sparsity, "interpretability", "synthetic-val", variant, metric,
                             f"img{i}", 0.4 + sparsity * 0.1 + rng.normal(0, 0.05)))
        for i in range(30):
            rows.append((arch, method, sparsity, "accuracy", "synthetic-val", "", "top1", f"img{i}",
                         float(rng.random() < 0.9 - sparsity / 3)))
    for i in range(30):  # a dense-only baseline
        rows.append(("resnet", "dense", 0.0, "discovery", "synthetic-val", "center_box", "corloc", f"img{i}", i % 2))
    frame = pd.DataFrame(rows, columns=["arch", "method", "sparsity", "task", "dataset", "variant", "metric",
                                        "item", "value"])
    frame = frame.assign(benchmark="synthetic", sparsity_actual=frame["sparsity"], seed=0)
    return frame[list(COLUMNS)].astype(COLUMNS)


@pytest.fixture(scope="module")
def curves():
    return sweetspots.compute(_frame(), n_boot=100, seed=0)[0]


def _assert_figure(stem):
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    assert png.stat().st_size > 1000 and svg.stat().st_size > 1000
    image = mpimg.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert "<svg" in svg.read_text()[:2000]


@pytest.mark.parametrize("task", ["interpretability", "discovery", "alignment"])
def test_curves_figure_per_task_even_with_empty_facets(tmp_path, curves, task):
    stem = tmp_path / f"curves-{task}"
    plots.curves_figure(curves, task, stem)
    _assert_figure(stem)


@pytest.mark.parametrize("arch", ["resnet", "vit", "missing"])
def test_gain_heatmap_per_architecture(tmp_path, curves, arch):
    stem = tmp_path / f"gains-{arch}"
    plots.gain_heatmap(curves, arch, stem)
    _assert_figure(stem)


def test_heatmap_grows_with_the_number_of_rows(tmp_path, curves):
    many = pd.concat([curves.assign(dataset=f"set{i}") for i in range(5)], ignore_index=True)
    plots.gain_heatmap(curves, "resnet", tmp_path / "few")
    plots.gain_heatmap(many, "resnet", tmp_path / "many")
    few_height = mpimg.imread(tmp_path / "few.png").shape[0]
    many_height = mpimg.imread(tmp_path / "many.png").shape[0]
    assert many_height > 1.5 * few_height
