"""Affine softmax models, the attacks' analytic test case (their decision boundaries are hyperplanes)."""

import jax
import jax.numpy as jnp


def affine_model(weights, bias):
    """log_prob_fn ``x (N, D) -> (S, N, C)`` of z_s = x @ W_s.T + b_s.

    ``weights`` (C, D) and ``bias`` (C,) give one draw (S = 1); (S, C, D) and (S, C) give an ensemble.
    """
    weights, bias = jnp.asarray(weights, jnp.float32), jnp.asarray(bias, jnp.float32)
    if weights.ndim == 2:
        weights, bias = weights[None], bias[None]
    return lambda x: jax.nn.log_softmax(jnp.einsum("nd,scd->snc", x, weights) + bias[:, None, :], axis=-1)
