"""Figures for comparison reports (a matplotlib ``Figure`` on the Agg canvas, no pyplot state; saved
atomically)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from .harness_figures import new_figure
from .io import atomic_savefig


def plot_distributions(
    path: str | os.PathLike[str],
    values: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    title: str,
) -> None:
    """Box-and-strip plot of one distribution per method (method -> values in [0, 1]), written to ``path``."""
    names = list(values)
    figure = new_figure(8, 0.45 * len(names) + 1.5)
    ax = figure.add_subplot()
    data = [np.asarray(values[n], dtype=float) for n in names]
    ax.boxplot(data, vert=False, tick_labels=names, showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.scatter(d, i + rng.uniform(-0.2, 0.2, size=d.size), s=4, alpha=0.35)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    atomic_savefig(path, figure, dpi=120)
