"""Layer 2: inference backends behind one entry point, ``fit(backend, model, data, *, rng_key, **options)``.

The registry is a literal dict from backend name to the module that implements it. Each module has
``KIND`` (one of ``ppl_uq.posterior.KINDS``: ``"mcmc"``, ``"optimisation"``, ``"variational"``,
``"ensemble"``), ``DEFAULTS`` (every option it accepts, with its default), ``check_options(options)`` and
``fit(model, x, y, *, rng_key, options, progress) -> Posterior`` (a Posterior of ``kind=KIND``; ``progress(message)``
prints a line of progress, e.g. per epoch). Modules are
imported on first use, so the Pyro engine (an optional extra) is only needed by ``pyro-nuts``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable

import jax
import numpy as np

from ..data.validate import check_rng_key
from ..posterior import Posterior
from ._optim import ConvergenceWarning
from ._options import resolve_options
from ._signature import ModelSignature, model_signature
from ._signature import prepare_data as _prepare_data

BACKENDS: dict[str, str] = {
    "map": "ppl_uq.inference.map",
    "laplace": "ppl_uq.inference.laplace",
    "nuts": "ppl_uq.inference.nuts",
    "slice": "ppl_uq.inference.slice",
    "svi": "ppl_uq.inference.svi",
    "ml-mixture": "ppl_uq.inference.ml_mixture",
    "bootstrap": "ppl_uq.inference.bootstrap",
    "deep-ensemble": "ppl_uq.inference.deep_ensemble",
    "mc-dropout": "ppl_uq.inference.mc_dropout",
    "pyro-nuts": "ppl_uq.inference.pyro_nuts",
    "pyro-svi": "ppl_uq.inference.pyro_svi",
}


def backends() -> list[str]:
    """The names ``fit`` accepts, sorted."""
    return sorted(BACKENDS)


def backend_module(name: str) -> ModuleType:
    """The module implementing backend ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {backends()}")
    return importlib.import_module(BACKENDS[name])


def default_options(name: str) -> dict[str, Any]:
    """Every option backend ``name`` accepts, with its default."""
    return dict(backend_module(name).DEFAULTS)


def prepare_data(model: Callable[..., Any], data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``data`` for ``model`` and return ``(x, y)`` as NumPy arrays.

    The model is traced abstractly on the full data (``model_signature``): x must fit it (its first
    axis indexes the data points), y must have the likelihood's shape and lie in its support. y's dtype
    follows the likelihood: int32 class indices for a classifier with (N, C) logits, float32 0/1 for a
    binary classifier with (N,) logits or a Bernoulli likelihood, int32 for other discrete likelihoods,
    float32 for continuous ones. ``x`` may be None for a model without inputs: it gets x of shape (N, 0).
    """
    x, y, _ = _prepare_data(model, data)
    return x, y


def fit(backend: str, model: Callable[..., Any], data: Any, *, rng_key: jax.Array, progress: bool | None = None,
        **options: Any) -> Posterior:
    """Fit ``model`` to ``data`` with the named backend and return its Posterior.

    Args:
        backend: one of ``backends()``.
        model: a model declaration ``model(ppl, x, y=None)``; bind hyper-parameters with
            ``functools.partial(model, prior_scale=...)``.
        data: a pair ``(x, y)`` (or an object with a ``.train`` pair, such as ``SpheresData``).
        rng_key: a JAX PRNG key; the fit is deterministic given it.
        progress: print a line on stderr when the fit starts (backend, data size, options) and when it
            ends (seconds, draws); default: only when stderr is a terminal. It changes no number.
        **options: backend options (``default_options(backend)`` lists them); NumPyro's names where
            one exists (``num_warmup``, ``num_samples``, ``num_chains``).

    The Posterior's ``redraw(key)`` is the backend's own redraw where it has one, else a refit with the
    resolved options (``Posterior.refit``).
    """
    module = backend_module(backend)
    resolved = resolve_options(backend, module.DEFAULTS, options)
    module.check_options(resolved)
    rng_key = check_rng_key(rng_key)
    x, y, signature = _prepare_data(model, data)
    discrete = [name for name, (_, is_discrete) in signature.latent.items() if is_discrete]
    if discrete:
        raise ValueError(
            f"backend {backend!r} needs continuous latent sites, but {discrete} are discrete; no backend here samples "
            "or optimises discrete latents: marginalise them out in the model (e.g. a mixture likelihood)")
    say = _progress_printer(backend, progress)
    say(f"fitting {x.shape[0]} points, options {options or 'defaults'}")
    posterior = module.fit(model, x, y, rng_key=rng_key, options=resolved, progress=say)
    say(f"done in {posterior.cost.get('fit_seconds', float('nan')):.1f}s: {posterior.num_chains} chain(s) x "
        f"{posterior.num_draws} draws")
    return posterior


def _progress_printer(backend: str, progress: bool | None) -> Callable[[str], None]:
    """A function printing ``[fit BACKEND] message`` lines to stderr when ``progress`` (or, for None,
    when stderr is a terminal); a no-op otherwise."""
    import sys

    enabled = sys.stderr.isatty() if progress is None else bool(progress)

    def say(message: str) -> None:
        if enabled:
            print(f"[fit {backend}] {message}", file=sys.stderr, flush=True)

    return say


__all__ = [
    "BACKENDS", "ConvergenceWarning", "ModelSignature", "Posterior", "backend_module", "backends", "default_options",
    "fit", "model_signature", "prepare_data",
]
