"""A lean NumPyro distribution for Blundell et al.'s scale-mixture prior, elementwise
``pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2)``.

NumPyro's generic ``MixtureSameFamily`` (behind the identity transform the Pyro engine needs) evaluates
the same density, but its gathers and transform bookkeeping made a Bayes-by-Backprop step on the
784-100-100-10 network 4.2x as slow as with a Gaussian prior, where a hand-written loop pays 1.3x. This
class computes the log density as one ``logaddexp`` of the two components' closed forms (finite where
either underflows) and samples by a Bernoulli choice of component. Support: the real line.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints


class ScaleMixtureNormal(Distribution):
    """Elementwise two-component zero-mean Gaussian scale mixture with batch shape ``shape``, event shape ().

    Args: ``pi`` the weight of the ``sigma1`` component (0 < pi < 1), ``sigma1``, ``sigma2`` > 0, ``shape``.
    """

    support = constraints.real
    reparametrized_params: list[str] = []

    def __init__(self, pi: float, sigma1: float, sigma2: float, shape: tuple[int, ...] = (), *, validate_args: Any = None) -> None:
        self.pi, self.sigma1, self.sigma2 = float(pi), float(sigma1), float(sigma2)
        self._log_w1 = math.log(self.pi) - math.log(self.sigma1) - 0.5 * math.log(2 * math.pi)
        self._log_w2 = math.log1p(-self.pi) - math.log(self.sigma2) - 0.5 * math.log(2 * math.pi)
        super().__init__(batch_shape=tuple(shape), event_shape=(), validate_args=validate_args)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """log(pi N(value; 0, sigma1^2) + (1 - pi) N(value; 0, sigma2^2)), shaped like ``value``."""
        square = jnp.square(value)
        return jnp.logaddexp(self._log_w1 - 0.5 * square / self.sigma1**2, self._log_w2 - 0.5 * square / self.sigma2**2)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draws of shape ``sample_shape + batch_shape``: component 1 with probability pi, then its Normal."""
        shape = tuple(sample_shape) + self.batch_shape
        key_component, key_normal = jax.random.split(key)
        first = jax.random.bernoulli(key_component, self.pi, shape)
        return jax.random.normal(key_normal, shape) * jnp.where(first, self.sigma1, self.sigma2)

    @property
    def mean(self) -> jax.Array:
        return jnp.zeros(self.batch_shape)

    @property
    def variance(self) -> jax.Array:
        return jnp.full(self.batch_shape, self.pi * self.sigma1**2 + (1 - self.pi) * self.sigma2**2)

    def tree_flatten(self) -> Any:
        """No array leaves: the parameters are Python floats, carried with the shape as static data."""
        return (), (self.pi, self.sigma1, self.sigma2, self.batch_shape)

    @classmethod
    def tree_unflatten(cls, aux_data: Any, params: Any) -> "ScaleMixtureNormal":
        return cls(*aux_data)
