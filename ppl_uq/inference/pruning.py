"""Signal-to-noise pruning of Gaussian variational posteriors (Blundell et al. 2015; seed 004 prunes
25-98 % of the weights).

For a guide with a Gaussian factor per coordinate (``svi`` / ``ml-mixture`` with the ``meanfield`` or
``matrix-normal`` guide; ``pyro-svi``), the signal-to-noise ratio of a weight is |mu| / sigma. Pruning a
fraction f sets the round(f * P) weights of lowest SNR, over every real-valued latent site together, to
zero in every draw; the rest keep their draws from q. Ties are broken by position (a stable sort), so
exactly that many are pruned.
"""

from __future__ import annotations

import jax
import numpy as np

from ..posterior import Posterior


def snr_by_site(posterior: Posterior) -> dict[str, np.ndarray]:
    """|mu| / sigma of every coordinate of every real latent site, shaped like the site; ``ValueError``
    for a posterior without a per-coordinate Gaussian q (its ``info`` lacks ``site_locs`` / ``site_scales``)."""
    locs, scales = posterior.info.get("site_locs"), posterior.info.get("site_scales")
    if not locs or not scales:
        raise ValueError(
            f"prune_by_snr needs a Gaussian variational posterior with per-weight means and scales (svi or ml-mixture "
            f"with guide 'meanfield' or 'matrix-normal'); this {posterior.method!r} posterior has none"
        )
    return {name: np.abs(np.asarray(locs[name])) / np.asarray(scales[name]) for name in locs if name in posterior.draws}


def snr_keep_masks(snr: dict[str, np.ndarray], fraction: float) -> tuple[dict[str, np.ndarray], float]:
    """Keep-masks (1 keep, 0 prune) shaped like each site, pruning exactly round(fraction * P) of the P
    coordinates with the lowest SNR; also the SNR of the last pruned coordinate (the threshold; -inf
    when nothing is pruned)."""
    names = sorted(snr)
    flat = np.concatenate([snr[name].ravel() for name in names])
    num_pruned = int(round(fraction * flat.size))
    keep = np.ones(flat.size, bool)
    order = np.argsort(flat, kind="stable")
    keep[order[:num_pruned]] = False
    threshold = float(flat[order[num_pruned - 1]]) if num_pruned else float("-inf")
    masks, start = {}, 0
    for name in names:
        size = snr[name].size
        masks[name] = keep[start : start + size].reshape(snr[name].shape)
        start += size
    return masks, threshold


def prune_by_snr(posterior: Posterior, fraction: float) -> Posterior:
    """A new Posterior whose draws have the ``fraction`` of weights with the lowest |mu|/sigma set to zero
    (see the module docstring); same sites and shapes as ``posterior``. Its ``redraw(key)`` redraws from
    the original q and prunes the same weights. ``info`` gains ``pruned_fraction``, ``pruned_count``,
    ``snr_threshold`` and ``pruned_sites``."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 <= fraction < 1:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction!r}")
    snr = snr_by_site(posterior)
    for name, value in snr.items():
        if value.shape != posterior.draws[name].shape[2:]:
            raise ValueError(f"site {name!r}: q's parameters have shape {value.shape}, its draws {posterior.draws[name].shape[2:]}")
    masks, threshold = snr_keep_masks(snr, float(fraction))
    pruned_count = int(sum((~mask).sum() for mask in masks.values()))
    info = {**posterior.info, "pruned_fraction": float(fraction), "pruned_count": pruned_count,
            "snr_threshold": threshold, "pruned_sites": sorted(masks)}

    def pruned(source: Posterior) -> Posterior:
        draws = {name: value * masks[name] if name in masks else value for name, value in source.draws.items()}
        return Posterior(method=source.method, kind=source.kind, model=source.model, draws=draws, options=source.options,
                         sample_stats=source.sample_stats, loss_trace=source.loss_trace, cost=source.cost, info=info,
                         observed=source.observed, redraw_fn=redraw)

    def redraw(key: jax.Array) -> Posterior:
        return pruned(posterior.redraw(key))

    return pruned(posterior)


__all__ = ["prune_by_snr", "snr_by_site", "snr_keep_masks"]
