"""Figures of the harness report: robustness curves, reliability diagrams, uncertainty histograms (correct
vs wrong) and the transfer heat map. Each uses a matplotlib ``Figure`` on the Agg canvas (no pyplot state)
and is written atomically. Drawing only: every number plotted is computed by ``ppl_uq.harness``."""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..harness.calibration import ReliabilityData
from .io import atomic_savefig

#: Marker shapes cycled over the lines of one plot, so coinciding curves stay distinguishable.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
#: Most reliability diagrams side by side; more methods wrap onto further rows.
MAX_COLUMNS = 4


def new_figure(width: float, height: float) -> Any:
    """Return an empty matplotlib ``Figure`` of ``width`` x ``height`` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def coinciding_curves(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> list[list[str]]:
    """Return the groups (two or more names, in input order) of curves with identical x and y values."""
    groups: dict[tuple, list[str]] = {}
    for name, curve in curves.items():
        key = (tuple(np.asarray(curve["x"], float).tolist()), tuple(np.asarray(curve["y"], float).tolist()))
        groups.setdefault(key, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _jitter(index: int, count: int, x: np.ndarray) -> np.ndarray:
    """``x`` shifted by up to +-1.5 % of its range, a different amount per line, so markers do not overlap."""
    span = float(np.ptp(x)) if x.size > 1 else 1.0
    return x + (index - (count - 1) / 2) * 0.03 * span / max(count - 1, 1)


def plot_robustness_curves(
    path: str | os.PathLike[str],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str = "robust accuracy",
    title: str,
    ylim: tuple[float, float] | None = (-0.02, 1.02),
) -> None:
    """One line per method: ``curves[method] = {"x": levels, "y": values}``, written to ``path``; ``ylim``
    None lets the data set the y range.

    Each line has its own marker shape and a small horizontal offset (at most 1.5 % of the x range), and a
    note under the axes names the methods whose curves are identical, so no curve hides another."""
    groups = coinciding_curves(curves)
    figure = new_figure(6.5, 4.2 + 0.2 * len(groups))
    ax = figure.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        x = _jitter(i, len(curves), np.asarray(curve["x"], float))
        ax.plot(x, curve["y"], marker=MARKERS[i % len(MARKERS)], ms=4, label=name, alpha=0.85)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    bottom = 0.0
    if groups:
        note = "\n".join("identical curves: " + ", ".join(names) for names in groups)
        figure.text(0.01, 0.01, note, fontsize=7, va="bottom", ha="left")
        bottom = (0.04 + 0.13 * len(groups)) / (4.2 + 0.2 * len(groups))
    figure.tight_layout(rect=(0, bottom, 1, 1))
    atomic_savefig(path, figure, dpi=120)


def _check_reliability(data_by_method: Any) -> None:
    if not isinstance(data_by_method, Mapping) or not data_by_method:
        raise ValueError("data_by_method must be a non-empty mapping method name -> ReliabilityData")
    for name, data in data_by_method.items():
        if not isinstance(data, ReliabilityData):
            raise TypeError(f"data_by_method[{name!r}] must be a ReliabilityData, got {type(data).__name__}")


def grid_shape(count: int, max_columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """Return (rows, columns) of a grid of ``count`` panels: ``ceil(count / max_columns)`` rows, each as
    evenly filled as possible (``ceil(count / rows)`` columns, so 5 panels are 2 x 3, not 4 + 1)."""
    rows = math.ceil(count / max_columns)
    return rows, math.ceil(count / rows)


def _draw_reliability(top: Any, bottom: Any, name: str, data: ReliabilityData) -> None:
    """One method's diagram: accuracy bars and (mean confidence, accuracy) markers on ``top``, the diagonal,
    and the number of points per bin on ``bottom``."""
    filled = data.nonempty
    left = np.asarray(data.lower.filled(0.0))[filled]
    width = np.maximum(np.asarray(data.upper.filled(0.0))[filled] - left, 0.01)
    accuracy = np.asarray(data.accuracy.filled(0.0))[filled]
    top.bar(left, accuracy, width=width, align="edge", edgecolor="black", linewidth=0.5, alpha=0.8, label="accuracy")
    top.plot(np.asarray(data.mean_confidence.filled(0.0))[filled], accuracy, "o", color="C3", markersize=3,
             label="(mean confidence, accuracy)")
    top.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title(f"{name} ({data.binning} bins)", fontsize=9)
    top.tick_params(labelbottom=False, labelsize=7)
    bottom.bar(left, data.counts[filled], width=width, align="edge", color="C0", edgecolor="black", linewidth=0.5)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence", fontsize=8)
    bottom.tick_params(labelsize=7)


def plot_reliability(
    path: str | os.PathLike[str],
    data_by_method: Mapping[str, ReliabilityData],
    *,
    title: str = "Reliability diagram",
) -> None:
    """Reliability diagrams, one panel per method on a grid of ``grid_shape(len(data_by_method))``, written
    to ``path`` (format from its suffix).

    Each panel: accuracy per non-empty bin as bars spanning the bin, the mean confidence of each bin as a
    marker and the diagonal of perfect calibration, above the number of points per bin. ``data_by_method``
    maps method name -> ``ReliabilityData`` (from ``ppl_uq.harness.calibration.reliability_data``).
    """
    _check_reliability(data_by_method)
    rows, columns = grid_shape(len(data_by_method))
    height = 4.4 * rows + 0.8
    figure = new_figure(3.6 * columns, height)
    outer = figure.add_gridspec(rows, columns, left=0.8 / (3.6 * columns), right=0.98, bottom=0.5 / height,
                                top=1 - 0.75 / height, hspace=0.35, wspace=0.3)
    for index, (name, data) in enumerate(data_by_method.items()):
        cell = outer[index // columns, index % columns].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
        top, bottom = figure.add_subplot(cell[0]), figure.add_subplot(cell[1])
        _draw_reliability(top, bottom, name, data)
        if index % columns == 0:
            top.set_ylabel("accuracy", fontsize=8)
            bottom.set_ylabel("points", fontsize=8)
        if index == 0:
            top.legend(fontsize=6, loc="upper left")
    figure.suptitle(title, y=1 - 0.2 / height)
    atomic_savefig(path, figure, dpi=120)


def plot_uncertainty_histograms(
    path: str | os.PathLike[str],
    measures: Mapping[str, Mapping[str, np.ndarray]],
    correct: Mapping[str, np.ndarray],
    *,
    title: str,
) -> None:
    """Grid of histograms (y: density), one row per method and one column per measure, correct vs wrong
    predictions, written to ``path``. The method names the row in the first column's y label.

    Args:
        measures: method -> measure name -> (N,) values.
        correct: method -> (N,) bool, the decision is right.
    """
    from matplotlib.ticker import MaxNLocator

    methods = list(measures)
    names = list(next(iter(measures.values())))
    height = 2.2 * len(methods) + 0.9
    figure = new_figure(3.0 * len(names), height)
    axes = figure.subplots(len(methods), len(names), squeeze=False)
    for i, method in enumerate(methods):
        hit = np.asarray(correct[method], bool)
        for j, name in enumerate(names):
            ax = axes[i][j]
            values = np.asarray(measures[method][name], float)
            edges = np.histogram_bin_edges(values, bins=30)
            # stepfilled: one polygon per histogram instead of a patch per bar (a 10 x 5 grid drew in 8 s)
            ax.hist(values[hit], bins=edges, alpha=0.6, density=True, histtype="stepfilled",
                    label=f"correct ({hit.sum()})")
            if (~hit).any():
                ax.hist(values[~hit], bins=edges, alpha=0.6, density=True, histtype="stepfilled",
                        label=f"wrong ({(~hit).sum()})")
            if i == 0:
                ax.set_title(name, fontsize=9)
            ax.set_ylabel(f"{method}\ndensity" if j == 0 else "density", fontsize=8 if j else 9)
            ax.tick_params(labelsize=7)
            # three ticks per axis: tick labels are most of the drawing time of a 50-panel grid
            ax.xaxis.set_major_locator(MaxNLocator(3))
            ax.yaxis.set_major_locator(MaxNLocator(3))
            ax.legend(fontsize=6)
    figure.suptitle(title, y=1 - 0.15 / height)
    # fixed margins, in inches at the top: tight_layout over 50 axes took seconds
    figure.subplots_adjust(left=0.9 / (3.0 * len(names)), right=0.99, bottom=0.35 / height, top=1 - 0.75 / height,
                           wspace=0.35, hspace=0.35)
    atomic_savefig(path, figure, dpi=110)


def plot_heatmap(
    path: str | os.PathLike[str],
    values: np.ndarray,
    row_names: Sequence[str],
    column_names: Sequence[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    """A heat map of ``values`` (R, M), fractions in [0, 1], drawn and labelled in percent (cells, colour
    bar 0-100 %), written to ``path``."""
    percent = 100 * np.asarray(values, float)
    figure = new_figure(1.3 * len(column_names) + 3.0, 0.5 * len(row_names) + 2.0)
    ax = figure.add_subplot()
    image = ax.imshow(percent, vmin=0.0, vmax=100.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(column_names)), column_names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=8)
    for (r, c), value in np.ndenumerate(percent):
        ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=7, color="white" if value < 50 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    bar = figure.colorbar(image, ax=ax)
    bar.set_label("%")
    figure.tight_layout()
    atomic_savefig(path, figure, dpi=120)
