"""Figures for comparison reports (matplotlib, Agg backend, saved atomically)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from .io import atomic_savefig


def plot_distributions(
    path: str | os.PathLike[str],
    values: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    title: str,
) -> None:
    """Box-and-strip plot of one distribution per method (method -> values), written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    data = [np.asarray(values[n], dtype=float) for n in names]
    ax.boxplot(data, vert=False, tick_labels=names, showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.scatter(d, i + rng.uniform(-0.2, 0.2, size=d.size), s=4, alpha=0.35)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    atomic_savefig(path, fig, dpi=120)
    plt.close(fig)
