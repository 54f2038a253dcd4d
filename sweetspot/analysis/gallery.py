"""A gallery of attribution maps across checkpoints: the same images, one column per checkpoint
(dense, the matched control, then the sparsities)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..artifacts import save_figure


def column_label(method: str, sparsity: float) -> str:
    """Column title: the method for dense and controls, else the sparsity as a percentage ("87.5%")."""
    return method if sparsity == 0 else f"{100 * sparsity:g}%"


MAX_INCHES = 16.0  # at dpi 100: a figure stays within 1600 px on either side, readable at 100 % zoom
CELL_INCHES = 1.6  # one map, when the grid is small enough to allow it
MARGIN_WIDTH, MARGIN_HEIGHT = 1.0, 0.6  # inches for the row labels and for the titles


def cell_inches(rows: int, cols: int) -> float:
    """The side of one map: 1.6 in, smaller when the grid would not fit MAX_INCHES with its margins."""
    return min(CELL_INCHES, (MAX_INCHES - MARGIN_HEIGHT) / rows, (MAX_INCHES - MARGIN_WIDTH) / cols)


def render(images: np.ndarray, maps: Mapping[str, Mapping[str, np.ndarray]], columns: Sequence[str], title: str,
           path: str | os.PathLike) -> None:
    """One PNG: a row per (attribution method, image), one column per entry of `columns`.

    `images` is (k, H, W, 3) uint8; `maps[method][column]` is (k, H, W) with values in
    [0, 1], the map of that column's model overlaid on the image.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"gallery images must be (k, H, W, 3) uint8, got {images.shape}")
    if not maps or not all(maps.values()):
        raise ValueError("gallery needs maps of at least one method and sparsity")
    for method, by_column in maps.items():
        for column, array in by_column.items():
            if np.shape(array) != images.shape[:3]:
                raise ValueError(f"gallery maps of {method} for {column} have shape {np.shape(array)}, "
                                 f"expected {images.shape[:3]}")
    k = images.shape[0]
    rows, cols = k * len(maps), len(columns)
    cell = cell_inches(rows, cols)
    fig = Figure(figsize=(cell * cols + MARGIN_WIDTH, cell * rows + MARGIN_HEIGHT), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for m, (method, by_column) in enumerate(sorted(maps.items())):
        for i in range(k):
            row = m * k + i
            axes[row, 0].text(-0.08, 0.5, method if i == 0 else "", transform=axes[row, 0].transAxes,
                              rotation=90, ha="right", va="center", fontsize=8)
            for col, column in enumerate(columns):
                ax = axes[row, col]
                ax.set_axis_off()
                if row == 0:
                    ax.set_title(column, fontsize=9)
                ax.imshow(images[i])
                if column in by_column:  # a missing column stays the bare image
                    ax.imshow(by_column[column][i], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=100)
