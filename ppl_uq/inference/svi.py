"""``svi``: stochastic variational inference with NumPyro's ``SVI`` and an autoguide.

Maximises the beta-weighted ELBO, ``sum_n (1/K) sum_k log p(y_n | x_n, theta_k) - beta * KL(q || p)``,
with K = ``num_particles`` reparameterised draws per step: NumPyro's ``Trace_ELBO(num_particles=K)``
when ``beta == 1`` (``TraceMeanField_ELBO``, the KL in closed form where one exists, with option
``elbo="meanfield"``), otherwise ``MixtureELBO(mixture=False)`` (the beta-ELBO form of the ML-mixture
objective). Guides (``guide``): ``meanfield``, ``fullrank``, ``hierarchical`` (see ``_guides``).

The optimiser is Adam behind gradient-norm clipping (``clip_norm``) on a warm-up + cosine-decay schedule
(``learning_rate`` is the peak); a diverging loss raises ``InferenceDivergenceError`` (rule in
``_variational``). The Posterior holds ``num_samples`` draws from the fitted q, shaped (1, S, ...), the
loss per step in ``loss_trace`` and the fitted guide parameters in ``info["params"]``;
``redraw(key)`` takes fresh draws from the same q.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from numpyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ..posterior import Posterior
from ._variational import COMMON_DEFAULTS, check_common_options, fit_variational
from .ml_mixture import MixtureELBO

#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from a fitted approximating distribution q.
KIND = "variational"

DEFAULTS: dict[str, Any] = dict(COMMON_DEFAULTS)


def check_options(options: dict[str, Any]) -> None:
    """Validate the SVI options (guide, steps, learning-rate schedule, particles, scales, draws).

    ``elbo="meanfield"`` (the closed-form KL) exists only for ``beta == 1``; with another beta it is refused
    rather than silently replaced by the Monte Carlo KL of the beta-ELBO."""
    check_common_options(options)
    if options["elbo"] == "meanfield" and options["beta"] != 1:
        raise ValueError(f"option elbo='meanfield' (the closed-form KL) needs beta = 1, got beta={options['beta']!r}; "
                         "use elbo='trace' for the beta-ELBO with a Monte Carlo KL")


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Fit the guide by maximising the beta-ELBO; return draws from q shaped (1, num_samples, ...)."""
    if options["beta"] == 1 and options["elbo"] == "meanfield":
        loss: Any = TraceMeanField_ELBO(num_particles=options["num_particles"])
    elif options["beta"] == 1:
        loss = Trace_ELBO(num_particles=options["num_particles"])
    else:
        loss = MixtureELBO(num_particles=options["num_particles"], beta=float(options["beta"]), mixture=False)
    return fit_variational("svi", model, x, y, rng_key=rng_key, options=options, loss=loss, kind=KIND,
                           say=progress or (lambda message: None))
