"""``slice``: slice sampling (Neal 2003) along an adapted whitening basis, run by NumPyro's ``MCMC``.

The kernel is ``slice_kernel.SliceKernel``; this module builds its target from the model and runs the
chains. For classifiers whose ``logits`` are affine in the unconstrained parameters (``squared_logistic``,
``nonzero_mean_logistic``) the target is evaluated through the cached linear predictor; other models
use the full potential. Which one ran, and why, is in ``Posterior.info["slice_mode"]`` and
``info["slice_mode_reason"]``.

Options beyond NumPyro's ``num_warmup``, ``num_samples``, ``num_chains``, ``chain_method``,
``thinning`` (keep every k-th sweep; ``num_samples`` counts sweeps): ``width`` (initial width in
whitened units), ``width_factor``, ``max_steps_out``, ``max_shrinks``, ``basis``, ``overrelax``,
``bisection_steps`` (see ``SliceKernel``) and ``linear_predictor`` (False forces the generic mode).

Sample statistics per draw (the sweep that produced it): ``n_evals`` (log-density evaluations, the
per-sweep exact one included), ``n_steps_out``, ``n_shrinks`` (shrinkage steps, and in overrelaxed
updates the bisections), ``n_step_out_capped`` (stepping out stopped by ``max_steps_out``: allowed by
Neal's procedure, but a sign the width is too small; in an overrelaxed update the chain then stays
put), ``n_shrink_exhausted`` (shrinkage hit ``max_shrinks`` and the chain stayed put along that
direction), ``n_overrelaxed`` (overrelaxed updates), ``n_overrelax_stayed`` (of those, how many kept
the current point), ``lp`` (log density). ``cost`` has ``grad_evals = 0``, ``logdensity_evals`` (warm-up and sampling) and
the timings.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import MCMC, init_to_median
from numpyro.infer.util import constrain_fn, potential_energy

from ..posterior import Posterior
from ._common import flat_potential, initialize, latent_site_names, numpyro_model, stopwatch
from ._options import check_choice, check_int, check_positive
from .nuts import resolve_chain_method
from .slice_kernel import COUNTERS, LinearPredictor, SliceKernel, SliceTarget

#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from Markov chains.
KIND = "mcmc"

DEFAULTS: dict[str, Any] = {
    "num_warmup": 500,
    "num_samples": 500,
    "num_chains": 2,
    "chain_method": "auto",
    "thinning": 1,
    "width": 2.0,
    "width_factor": 3.0,
    "max_steps_out": 32,
    "max_shrinks": 100,
    "basis": "dense",
    "overrelax": 0.8,
    "bisection_steps": 3,
    "linear_predictor": True,
}

#: Largest jacobian (N * C * P entries) the linear-predictor mode will hold (about 400 MB in float32).
MAX_JACOBIAN_ENTRIES = 100_000_000

_FIELDS = ("lp", "total_evals", *COUNTERS)


def check_options(options: dict[str, Any]) -> None:
    """Validate slice options (counts, widths, basis, chain method)."""
    check_int(options, "num_warmup", minimum=0)
    check_int(options, "num_samples", "num_chains", "thinning", "max_steps_out", "max_shrinks")
    check_positive(options, "width", "width_factor")
    check_choice(options, "chain_method", ["auto", "parallel", "sequential", "vectorized"])
    check_choice(options, "basis", ["dense", "diagonal", "identity"])
    check_int(options, "bisection_steps", minimum=0)
    overrelax = options["overrelax"]
    if isinstance(overrelax, bool) or not isinstance(overrelax, (int, float)) or not (0 <= overrelax < 1):
        raise ValueError(f"option 'overrelax' must be a probability in [0, 1), got {overrelax!r}")
    if not isinstance(options["linear_predictor"], bool):
        raise ValueError(f"option 'linear_predictor' must be True or False, got {options['linear_predictor']!r}")
    if options["num_samples"] < options["thinning"]:
        raise ValueError(
            f"option 'num_samples' ({options['num_samples']}) must be >= option 'thinning' ({options['thinning']})"
        )


def _close(a: jax.Array, b: jax.Array, rtol: float) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = 1.0 + max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return bool(np.all(np.isfinite(a)) and np.max(np.abs(a - b), initial=0.0) <= rtol * scale)


def softplus(v: jax.Array) -> jax.Array:
    """``log(1 + e^v)`` elementwise, to float32 rounding (relative error < 3e-7), about twice as fast on
    CPU as ``jax.nn.softplus``: ``max(v, 0) + log1p(e^-|v|)`` with log1p by Goldberg's
    ``log(w) * u / (w - 1)``, ``w = 1 + u`` (XLA's log1p is slow on CPU)."""
    u = jnp.exp(-jnp.abs(v))
    w = 1.0 + u
    return jnp.maximum(v, 0.0) + jnp.where(w == 1.0, u, jnp.log(w) * (u / (w - 1.0)))


def categorical_nll(labels: np.ndarray, constant_rows: np.ndarray, varying: list[int]) -> Callable[[jax.Array], jax.Array]:
    """``nll(v) = -sum_n log softmax(table[:, n])[labels[n]]`` where the logits table (C, N) has the
    rows ``constant_rows[c]`` for constant classes and ``v.reshape(len(varying), N)`` for the classes in
    ``varying``. Class-major layout, so the log-sum-exp runs over contiguous rows."""
    num_classes, num_points = constant_rows.shape
    onehot = (np.asarray(labels)[None, :] == np.arange(num_classes)[:, None]).astype(np.float32)
    constant_picked = jnp.float32(np.sum(np.delete(onehot * constant_rows, varying, axis=0)))
    onehot_varying = jnp.asarray(onehot[varying].reshape(-1))
    rows_of = {c: k for k, c in enumerate(varying)}
    constant = jnp.asarray(constant_rows)

    if num_classes == 2 and len(varying) == 1:  # log(e^c + e^v) = c + softplus(v - c): one exp, one log
        fixed = constant[1 - varying[0]]

        def nll(v: jax.Array) -> jax.Array:
            return jnp.sum(fixed + softplus(v - fixed)) - constant_picked - onehot_varying @ v

        return nll

    def nll(v: jax.Array) -> jax.Array:
        rows = jnp.reshape(v, (len(varying), num_points))
        table = jnp.stack([rows[rows_of[c]] if c in rows_of else constant[c] for c in range(num_classes)])
        return jnp.sum(jax.nn.logsumexp(table, axis=0)) - constant_picked - onehot_varying @ v

    return nll


def linear_predictor(
    model: Callable[..., Any], x: np.ndarray, y: np.ndarray, flat: Any, rng_key: jax.Array, rtol: float = 1e-4
) -> tuple[LinearPredictor | None, str]:
    """Try to write the potential as ``prior(z) + nll(jacobian @ z + offset)``.

    Checks, at the starting point and three random points around it, that the ``logits`` site is
    affine in ``z`` and that the split reproduces the full potential (to ``rtol`` relative to the
    values' size). Classes whose logits do not depend on ``z`` (the constant 0 of a binary model) are
    kept as constants, so the jacobian is (N * C_varying, P), class-major. Returns
    ``(LinearPredictor, reason)`` on success, ``(None, reason)`` otherwise; the reason says what was
    checked or what failed.
    """
    nmodel = numpyro_model(model)
    z0 = flat.init
    dim = z0.shape[0]

    def logits_of(z: jax.Array) -> jax.Array:  # class-major flat logits (C * N,)
        sites = constrain_fn(nmodel, (x, y), {}, flat.unravel(z), return_deterministic=True)
        if "logits" not in sites:
            raise KeyError("logits")
        return jnp.reshape(jnp.transpose(sites["logits"]), (-1,))

    try:
        logits0 = logits_of(z0)
    except KeyError:
        return None, "the model records no 'logits' site"
    if logits0.size * dim > MAX_JACOBIAN_ENTRIES:
        return None, f"the logits jacobian would have {logits0.size * dim} entries (limit {MAX_JACOBIAN_ENTRIES})"
    num_points = len(y)
    num_classes = logits0.size // num_points
    logits_of = jax.jit(logits_of)
    jacobian = jax.jit(jax.jacfwd(logits_of))(z0)
    offset = logits0 - jacobian @ z0
    points = jnp.stack([z0, *(z0 + jax.random.normal(rng_key, (3, dim), z0.dtype))])
    for z in points:
        if not _close(logits_of(z), jacobian @ z + offset, rtol):
            return None, "the 'logits' site is not an affine function of the unconstrained parameters"

    per_class = np.asarray(jacobian).reshape(num_classes, num_points, dim)
    varying = [c for c in range(num_classes) if np.any(per_class[c] != 0)]
    constant_rows = np.asarray(offset).reshape(num_classes, num_points).copy()
    constant_rows[varying] = 0.0
    nll = categorical_nll(np.asarray(y), constant_rows, varying)
    jacobian = jnp.asarray(per_class[varying].reshape(-1, dim))
    offset = jnp.asarray(np.asarray(offset).reshape(num_classes, num_points)[varying].reshape(-1))

    # The prior part: the potential of the model on one data row with its observed sites hidden.
    prior_model = handlers.block(nmodel, hide_fn=lambda site: bool(site.get("is_observed", False)))
    x_one, y_one = x[:1], y[:1]

    def prior(z: jax.Array) -> jax.Array:
        return potential_energy(prior_model, (x_one, y_one), {}, flat.unravel(z))

    try:
        split = jax.jit(jax.vmap(lambda z: prior(z) + nll(jacobian @ z + offset)))(points)
    except Exception as exc:  # e.g. a model with per-data-point latent sites cannot run on one row
        return None, f"the prior part could not be evaluated on one data row ({type(exc).__name__}: {exc})"
    if not _close(split, jax.jit(jax.vmap(flat.potential))(points), rtol):
        return None, "the potential is not prior + categorical likelihood of the 'logits' site"
    reason = (
        f"'logits' ({num_points} x {num_classes}, {len(varying)} varying classes) is affine in the {dim} "
        "unconstrained parameters and prior + categorical likelihood reproduces the potential (checked at 4 points)"
    )
    return LinearPredictor(jacobian, offset, prior, nll), reason


def chain_inits(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, rng_key: jax.Array, num_chains: int) -> jax.Array:
    """Flat unconstrained starting points (num_chains, P), one ``init_to_median`` draw per chain."""
    keys = jax.random.split(rng_key, num_chains)
    info = initialize(keys, numpyro_model(model), x, y, init_to_median(num_samples=15))
    return jax.vmap(lambda tree: ravel_pytree(tree)[0])(info.param_info.z)


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Run the slice sampler and return its Posterior (draws (chain, draw, ...), counters in
    ``sample_stats``, the evaluation mode in ``info``).

    ``progress`` is accepted for the common contract; the chains print nothing themselves (``ppl_uq.fit``
    reports the start and the end)."""
    key_init, key_check, key_chains, key_run = jax.random.split(rng_key, 4)
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        with stopwatch(cost, "setup_seconds"):
            flat = flat_potential(model, x, y, key_init)
            inits = chain_inits(model, x, y, key_chains, options["num_chains"])
            linear, reason = None, "option linear_predictor=False"
            if options["linear_predictor"]:
                linear, reason = linear_predictor(model, x, y, flat, key_check)
        target = SliceTarget(potential=flat.potential, constrain=flat.constrain, linear=linear)
        kernel = SliceKernel(
            target,
            width=options["width"],
            width_factor=options["width_factor"],
            max_steps_out=options["max_steps_out"],
            max_shrinks=options["max_shrinks"],
            basis=options["basis"],
            overrelax=options["overrelax"],
            bisection_steps=options["bisection_steps"],
        )
        chain_method = resolve_chain_method(options["chain_method"], options["num_chains"])
        mcmc = MCMC(
            kernel,
            num_warmup=options["num_warmup"],
            num_samples=options["num_samples"],
            num_chains=options["num_chains"],
            thinning=options["thinning"],
            chain_method=chain_method,
            progress_bar=False,
        )
        init_params = inits if options["num_chains"] > 1 else inits[0]
        mcmc.run(key_run, x, y, init_params=init_params, extra_fields=_FIELDS)
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    total = float(np.sum(np.asarray(mcmc.last_state.total_evals)))
    cost["grad_evals"] = 0.0
    cost["logdensity_evals"] = total
    if options["thinning"] == 1:  # evaluations before the first kept sweep = the warm-up's
        first = np.asarray(extra["total_evals"])[:, 0] - np.asarray(extra["n_evals"])[:, 0]
        cost["logdensity_evals_warmup"] = float(np.sum(first))
    names = latent_site_names(model, x, y)
    mode = "linear-predictor" if linear is not None else "generic"
    return Posterior(
        method="slice",
        kind=KIND,
        model=model,
        draws={name: np.asarray(samples[name]) for name in names},
        options={**options, "chain_method": chain_method},
        sample_stats={name: np.asarray(extra[name]) for name in ("lp", *COUNTERS)},
        cost=cost,
        info={
            "slice_mode": mode,
            "slice_mode_reason": reason,
            "num_directions": int(flat.init.shape[0]),
            "evals_note": (
                "in linear-predictor mode a log-density evaluation costs O(N C + P) (cached logits), "
                "plus one exact O(N C P) evaluation per sweep, counted in n_evals"
                if linear is not None
                else "every log-density evaluation is a full pass of the model's potential"
            ),
        },
        observed=(x, y),
    )
