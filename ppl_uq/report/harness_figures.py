"""Figures of the harness report: robustness curves, uncertainty histograms (correct vs wrong) and the
transfer heat map. Each uses a matplotlib ``Figure`` on the Agg canvas (no pyplot state) and is written
atomically."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from .io import atomic_savefig


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def plot_robustness_curves(
    path: str | os.PathLike[str],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str = "robust accuracy",
    title: str,
) -> None:
    """One line per method: ``curves[method] = {"x": levels, "y": values}``, written to ``path``."""
    figure = _figure(6.5, 4.2)
    ax = figure.add_subplot()
    for name, curve in curves.items():
        ax.plot(curve["x"], curve["y"], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    atomic_savefig(path, figure, dpi=120)


def plot_uncertainty_histograms(
    path: str | os.PathLike[str],
    measures: Mapping[str, Mapping[str, np.ndarray]],
    correct: Mapping[str, np.ndarray],
    *,
    title: str,
) -> None:
    """Grid of histograms, one row per method and one column per measure, correct vs wrong predictions.

    Args:
        measures: method -> measure name -> (N,) values.
        correct: method -> (N,) bool, the decision is right.
    """
    methods = list(measures)
    names = list(next(iter(measures.values())))
    height = 2.2 * len(methods) + 0.9
    figure = _figure(3.0 * len(names), height)
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
            if j == 0:
                ax.set_ylabel(method, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
    figure.suptitle(title, y=1 - 0.15 / height)
    # fixed margins, in inches at the top: tight_layout over 50 axes took seconds
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.35 / height, top=1 - 0.75 / height, wspace=0.3, hspace=0.35)
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
    """A heat map of ``values`` (R, M) in [0, 1] with each cell's value printed in percent."""
    values = np.asarray(values, float)
    figure = _figure(1.3 * len(column_names) + 3.0, 0.5 * len(row_names) + 2.0)
    ax = figure.add_subplot()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(column_names)), column_names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=8)
    for (r, c), value in np.ndenumerate(values):
        ax.text(c, r, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.5 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    figure.colorbar(image, ax=ax)
    figure.tight_layout()
    atomic_savefig(path, figure, dpi=120)
