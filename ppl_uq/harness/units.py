"""Unit inspection (Szegedy et al., seed 001, section 3): are single hidden units more meaningful than random
directions of the same layer?

The paper takes the inputs x' = argmax_x <phi(x), e_i> that maximise one unit's activation (e_i a natural
basis vector) and the inputs x' = argmax_x <phi(x), v> for a random direction v, and finds the two sets
equally "semantically coherent". Here phi is a dense network's hidden layer (``models.bnn_mlp`` or
``mlp_classifier``: sites ``w0, b0, w1, b1, ...``) evaluated at one posterior draw; the argmax runs over a
held-out image set. The images are shown side by side by ``report.harness_figures.plot_image_rows``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..data.validate import as_finite_array
from ..models import ACTIVATIONS
from .lipschitz import dense_weight_sites


def dense_hidden_activations(model: Any, x: Any, *, layer: int, activation: str, draw: int = 0) -> np.ndarray:
    """Activations of hidden layer ``layer`` (0 = the first hidden layer) of a dense network at one draw.

    Args:
        model: a ``Posterior`` (its ``flat_draws()``) or a dict of draws (S, ...) with sites w0, b0, ...
        x: (N, D) inputs.
        layer: hidden layer index, 0 <= layer < number of weight layers - 1.
        activation: the network's hidden activation, a key of ``models.ACTIVATIONS``.
        draw: which posterior draw (0 for a point estimate).
    Returns:
        (N, U) float64 array, U the layer's width.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    draws = model.flat_draws() if hasattr(model, "flat_draws") else model
    names = dense_weight_sites(draws)
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not 0 <= layer < len(names) - 1:
        raise ValueError(f"layer must be a hidden layer index in [0, {len(names) - 1}), got {layer!r}")
    num_draws = np.asarray(draws[names[0]]).shape[0]
    if not isinstance(draw, (int, np.integer)) or isinstance(draw, bool) or not 0 <= draw < num_draws:
        raise ValueError(f"draw must be an index in [0, {num_draws}), got {draw!r}")
    h = np.asarray(as_finite_array(x, "x"), np.float64)
    if h.ndim != 2 or h.shape[1] != np.asarray(draws["w0"]).shape[1]:
        raise ValueError(f"x must be (N, {np.asarray(draws['w0']).shape[1]}), got shape {h.shape}")
    act = ACTIVATIONS[activation]
    for index in range(layer + 1):
        w = np.asarray(draws[f"w{index}"], np.float64)[draw]
        b = np.asarray(draws[f"b{index}"], np.float64)[draw]
        h = np.asarray(act(np, h @ w + b))
    return h


def top_inputs(activations: Any, direction: Any, k: int) -> np.ndarray:
    """Indices of the ``k`` inputs with the largest projection <phi(x), direction>, largest first.
    ``activations`` (N, U), ``direction`` (U,). Returns (k,) int64."""
    phi = np.asarray(as_finite_array(activations, "activations"), np.float64)
    v = np.asarray(as_finite_array(direction, "direction"), np.float64)
    if phi.ndim != 2 or v.shape != (phi.shape[1],):
        raise ValueError(f"activations must be (N, U) and direction (U,), got {phi.shape} and {v.shape}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= phi.shape[0]:
        raise ValueError(f"k must be an integer in [1, {phi.shape[0]}], got {k!r}")
    scores = phi @ v
    return np.argsort(-scores, kind="stable")[:k]


def inspect_units(activations: Any, *, units: Any, num_random: int, k: int, rng_key: jax.Array) -> dict[str, np.ndarray]:
    """The top-``k`` inputs of each natural basis direction in ``units`` and of ``num_random`` random
    directions (standard normal, then normalised; drawn from ``rng_key``).

    Returns ``{"unit 3": (k,) indices, ..., "random 0": (k,) indices, ...}`` in that order.
    """
    phi = np.asarray(as_finite_array(activations, "activations"), np.float64)
    if phi.ndim != 2:
        raise ValueError(f"activations must be (N, U), got shape {phi.shape}")
    width = phi.shape[1]
    units = [int(u) for u in np.atleast_1d(np.asarray(units))]
    if any(not 0 <= u < width for u in units):
        raise ValueError(f"units must be indices in [0, {width}), got {units}")
    if not isinstance(num_random, (int, np.integer)) or isinstance(num_random, bool) or num_random < 0:
        raise ValueError(f"num_random must be an integer >= 0, got {num_random!r}")
    out = {f"unit {u}": top_inputs(phi, np.eye(width)[u], k) for u in units}
    directions = np.asarray(jax.random.normal(rng_key, (num_random, width)), np.float64)
    for index, v in enumerate(directions):
        out[f"random {index}"] = top_inputs(phi, v / np.linalg.norm(v), k)
    return out
