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


def plot_image_rows(
    path: str | os.PathLike[str],
    rows: Mapping[str, np.ndarray],
    *,
    image_shape: tuple[int, int],
    title: str,
) -> None:
    """A grid of grey images, one labelled row per entry of ``rows`` (label -> (K, H*W) or (K, H, W)
    values in [0, 1]; rows may differ in K), written to ``path``. Used for unit inspection (the inputs that
    maximise one unit beside those that maximise a random direction)."""
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError("rows must be a non-empty mapping label -> images")
    height, width = image_shape
    images = {label: np.asarray(block, dtype=float).reshape(-1, height, width) for label, block in rows.items()}
    columns = max(block.shape[0] for block in images.values())
    figure = new_figure(1.0 * columns + 1.6, 1.0 * len(images) + 0.6)
    grid = figure.add_gridspec(len(images), columns, left=1.5 / (1.0 * columns + 1.6), right=0.99, bottom=0.02,
                               top=1 - 0.5 / (1.0 * len(images) + 0.6), wspace=0.05, hspace=0.08)
    for r, (label, block) in enumerate(images.items()):
        for c in range(columns):
            ax = figure.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c < block.shape[0]:
                ax.imshow(block[c], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(title, fontsize=10)
    atomic_savefig(path, figure, dpi=100)
