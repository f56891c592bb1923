"""The runner shared by the variational backends (``svi``, ``ml-mixture``): options, the Optax
optimiser, one compiled optimisation loop with divergence detection, and draws from the fitted q.

Divergence rule (checked at every step, inside the compiled loop, which stops at the first bad step):
a step diverges when its loss is NaN or infinite, or when ``|loss| > divergence_ratio * max(1, |loss_0|)``
with ``loss_0`` the loss at the initial parameters; after the loop every fitted parameter must be
finite. A divergence raises ``InferenceDivergenceError`` (with the step); it is never returned as a
posterior. The motivating failure: a full-rank guide under plain Adam (lr 0.01) on the spheres model
drives ``scale_tril`` ill-conditioned, and the loss runs to -5e23 through round-off in log q.

Clipping: ``clip_norm`` (default 100) caps the gradient's global norm. On the spheres model (D = 500)
the single-draw gradient norm is about 2,200 at the start and 150-600 later, so clipping tames the
noisy steps (measured: 20k steps, final loss 283 with clip 10, 298 with 100, 729 with 1,000). Clipping
that is active at every step biases q, though: on a small linear regression (gradient noise ~10)
clip 10 inflated the posterior sds by ~10%, clip 100 left them exact.

Convergence (reported, not enforced): ``info["converged"]`` is True when the whole loss trace passes three
rules (``loss_convergence``): the last 10% of steps are not below the 10% before (a plateau), the second
half shows no steady fall larger than the loss's noise (a trend), and the loss fell from its start (it
left its initialisation). ``info["convergence_reason"]`` names the rule that failed.

Minibatch (option ``batch_size`` = B): every observed site's log-likelihood is scaled by N/B (the
effect handler ``WeightObserved``, so the ELBO of a batch is an unbiased estimate of the full one; the
ML-mixture objective reads the scale as a per-datum weight outside its log-mean-exp), the data are
reshuffled every epoch by key, one epoch is one compiled ``lax.scan`` of ``SVI.update``, the schedule
runs over ``num_epochs * floor(N/B)`` steps (``num_steps`` is then unused), and with
``validation_fraction`` > 0 training stops early on the held-out predictive NLL (10 draws from q, with the
same key every epoch, so the epochs differ by q and not by Monte Carlo noise) with ``patience``, keeping
the best guide parameters. The loss trace is then per epoch.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, init_to_value
from numpyro.infer.elbo import ELBO

from ..posterior import Posterior
from ._common import latent_site_names, numpyro_model, stopwatch
from ._guides import GUIDES, make_guide
from ._minibatch import (
    INIT_LOCS,
    MINIBATCH_DEFAULTS,
    WeightObserved,
    check_minibatch_options,
    epoch_indices,
    initial_point,
    log_joint,
    split_validation,
)
from ._options import check_choice, check_int, check_positive
from ._psis import PSIS_DRAWS, pareto_k

#: Options every variational backend accepts (the backends override some defaults).
COMMON_DEFAULTS: dict[str, Any] = {
    "guide": "meanfield",
    "num_steps": 30_000,
    "learning_rate": 0.01,
    "lr_schedule": "warmup_cosine",
    "warmup_fraction": 0.05,
    "end_lr_ratio": 0.01,
    "clip_norm": 100.0,
    "num_particles": 1,
    "init_scale": 0.01,
    "beta": 1.0,
    "num_samples": 1000,
    "divergence_ratio": 1e4,
    "init_loc": "median",
    "init_rho": None,
    "elbo": "trace",
    **MINIBATCH_DEFAULTS,
}

#: ELBO estimators of ``svi`` at beta = 1: ``trace`` (NumPyro's ``Trace_ELBO``, Monte Carlo KL) or
#: ``meanfield`` (``TraceMeanField_ELBO``: the KL in closed form wherever q and the prior have one).
ELBOS: tuple[str, ...] = ("trace", "meanfield")

#: Draws from q for the validation predictive NLL of early stopping.
VALIDATION_DRAWS = 10

SCHEDULES: tuple[str, ...] = ("warmup_cosine", "constant")


class InferenceDivergenceError(FloatingPointError):
    """The optimisation diverged (non-finite or exploding loss, or non-finite parameters).

    Attributes: ``step`` (1-based step at which it was detected), ``loss`` (the loss there) and
    ``loss_trace`` (losses of steps 1..step, a NumPy array).
    """

    def __init__(self, message: str, *, step: int, loss: float, loss_trace: np.ndarray) -> None:
        super().__init__(message)
        self.step = step
        self.loss = loss
        self.loss_trace = loss_trace


def check_common_options(options: dict[str, Any]) -> None:
    """Validate the options in ``COMMON_DEFAULTS``; ``ValueError`` naming the option otherwise."""
    check_choice(options, "guide", GUIDES)
    check_int(options, "num_steps", "num_particles", "num_samples")
    check_positive(options, "beta")
    check_schedule_options(options)
    check_init_options(options)
    check_choice(options, "elbo", ELBOS)
    check_minibatch_options(options)


def check_schedule_options(options: dict[str, Any]) -> None:
    """Validate the optimiser options the variational backends share (``svi``, ``ml-mixture``,
    ``pyro-svi``): ``lr_schedule``, ``learning_rate``, ``warmup_fraction``, ``end_lr_ratio``, ``clip_norm``
    (None or > 0) and ``divergence_ratio``."""
    check_choice(options, "lr_schedule", SCHEDULES)
    check_positive(options, "learning_rate", "divergence_ratio")
    if options["clip_norm"] is not None:
        check_positive(options, "clip_norm")
    fraction = options["warmup_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"option 'warmup_fraction' must lie in [0, 1), got {fraction!r}")
    ratio = options["end_lr_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"option 'end_lr_ratio' must lie in (0, 1], got {ratio!r}")


def check_init_options(options: dict[str, Any]) -> None:
    """Validate how a guide starts: ``init_loc`` (one of ``INIT_LOCS``), ``init_scale`` (> 0) and
    ``init_rho`` (None or finite; see ``initial_scale``)."""
    check_choice(options, "init_loc", INIT_LOCS)
    check_positive(options, "init_scale")
    rho = options["init_rho"]
    if rho is not None and (isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho)):
        raise ValueError(f"option 'init_rho' must be None or a finite number (sigma = log(1 + exp(rho))), got {rho!r}")


def initial_scale(options: dict[str, Any]) -> float:
    """The starting sigma of every guide factor: softplus(``init_rho``) when given, else ``init_scale``."""
    rho = options["init_rho"]
    if rho is None:
        return float(options["init_scale"])
    return float(np.logaddexp(0.0, rho))


def learning_rate_schedule(options: dict[str, Any]) -> optax.Schedule:
    """``warmup_cosine``: linear warm-up from 0 over ``warmup_fraction * num_steps`` steps to
    ``learning_rate``, then cosine decay to ``learning_rate * end_lr_ratio`` at ``num_steps``;
    ``constant``: ``learning_rate`` throughout."""
    peak = float(options["learning_rate"])
    if options["lr_schedule"] == "constant":
        return optax.constant_schedule(peak)
    num_steps = options["num_steps"]
    warmup = int(options["warmup_fraction"] * num_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1),
        end_value=peak * float(options["end_lr_ratio"]),
    )


def make_optimizer(options: dict[str, Any]) -> optax.GradientTransformation:
    """Adam on the schedule above, after clipping the gradient's global norm to ``clip_norm``
    (no clipping when ``clip_norm`` is None)."""
    adam = optax.adam(learning_rate_schedule(options))
    if options["clip_norm"] is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(float(options["clip_norm"])), adam)


def _compiled_loop(svi: SVI, num_steps: int, divergence_ratio: float) -> Callable[..., Any]:
    """``loop(state, x, y) -> (steps_done, state, losses (num_steps,), diverged)``, a ``while_loop``
    that stops at the first diverging step (unrun steps keep NaN in ``losses``)."""

    def loop(state: Any, x: jax.Array, y: jax.Array) -> Any:
        def cond(carry: Any) -> jax.Array:
            step, _, _, _, diverged = carry
            return (step < num_steps) & ~diverged

        def body(carry: Any) -> Any:
            step, state, losses, reference, _ = carry
            state, loss = svi.update(state, x, y)
            reference = jnp.where(step == 0, jnp.maximum(1.0, jnp.abs(loss)), reference)
            diverged = ~jnp.isfinite(loss) | (jnp.abs(loss) > divergence_ratio * reference)
            return step + 1, state, losses.at[step].set(loss), reference, diverged

        losses = jnp.full((num_steps,), jnp.nan, dtype=jnp.result_type(float))
        init = (jnp.array(0), state, losses, jnp.array(1.0, dtype=losses.dtype), jnp.array(False))
        step, state, losses, _, diverged = jax.lax.while_loop(cond, body, init)
        return step, state, losses, diverged

    return loop


def loss_convergence(losses: np.ndarray) -> dict[str, Any]:
    """Judge a stochastic loss trace (``losses`` (steps,)) by three rules; it has converged when all pass:

    1. plateau: the mean of the last 10% of steps is not below the mean of the 10% before by more than
       3 standard errors (``loss_drift``, ``loss_drift_se``);
    2. trend: over the second half of the trace, the least-squares slope is not significantly negative
       (t statistic ``loss_trend_t`` >= -3) or the fall it predicts over that half is smaller than the
       loss's own noise (the residual sd): a loss still falling steadily has not converged, even when
       two adjacent windows cannot tell;
    3. moved: the fall from the first 10% of steps to the last 10% exceeds 3 standard errors: a fit that
       never left its initialisation has not converged, however flat its end.

    Returns ``converged`` (bool), ``convergence_reason`` (the first failed rule in words, "" when it
    converged), ``loss_drift``, ``loss_drift_se``, ``loss_trend_t``, ``relative_improvement`` ((first
    mean - last mean) / |first mean|) and ``final_loss`` (the mean of the last 10%).
    """
    losses = np.asarray(losses, dtype=np.float64)
    window = max(len(losses) // 10, 2)
    if len(losses) < 2 * window or len(losses) < 8:
        nan = float("nan")
        return {"converged": False, "convergence_reason": f"only {len(losses)} loss values: too few to judge",
                "loss_drift": nan, "loss_drift_se": nan, "loss_trend_t": nan, "relative_improvement": nan,
                "final_loss": float(losses[-1]) if len(losses) else nan}
    first, last, before = losses[:window], losses[-window:], losses[-2 * window : -window]
    drift = float(np.mean(before) - np.mean(last))
    se = float(np.sqrt(np.var(before, ddof=1) / window + np.var(last, ddof=1) / window))
    half = losses[len(losses) // 2 :]
    steps = np.arange(half.size, dtype=np.float64)
    slope, intercept = np.polyfit(steps, half, 1)
    residual = half - (slope * steps + intercept)
    noise = float(np.sqrt(np.sum(residual**2) / max(half.size - 2, 1)))
    slope_se = noise / float(np.sqrt(np.sum((steps - steps.mean()) ** 2)))
    trend_t = float(slope / slope_se) if slope_se > 0 else (0.0 if slope == 0 else float(-np.inf * np.sign(-slope)))
    fall = float(np.mean(first) - np.mean(last))
    fall_se = float(np.sqrt(np.var(first, ddof=1) / window + np.var(last, ddof=1) / window))
    reason = ""
    if drift > 3.0 * se:
        reason = f"loss still falling at the end (last 10% below the 10% before by {drift:.3g}, {drift / max(se, 1e-300):.1f} se)"
    elif trend_t < -3.0 and -slope * half.size > noise:
        reason = (f"loss still falling over the second half (slope t = {trend_t:.1f}, a fall of {-slope * half.size:.3g} "
                  f"against noise sd {noise:.3g})")
    elif fall <= 3.0 * fall_se:
        reason = (f"loss never fell below its start (fall {fall:.3g}, {fall / max(fall_se, 1e-300):.1f} se): "
                  "the fit did not leave its initialisation")
    return {"converged": not reason, "convergence_reason": reason, "loss_drift": drift, "loss_drift_se": se,
            "loss_trend_t": trend_t, "relative_improvement": fall / max(abs(float(np.mean(first))), 1e-300),
            "final_loss": float(np.mean(last))}


def optimize(
    rng_key: jax.Array, svi: SVI, x: jax.Array, y: jax.Array, *, num_steps: int, divergence_ratio: float, cost: dict[str, float]
) -> tuple[dict[str, jax.Array], np.ndarray]:
    """Initialise ``svi`` and run ``num_steps`` updates in one compiled loop.

    Returns the fitted (constrained) guide parameters and the loss per step, (num_steps,). Adds
    ``compile_seconds`` and ``optimize_seconds`` to ``cost``. Raises ``InferenceDivergenceError``.
    """
    with stopwatch(cost, "compile_seconds"):
        state = svi.init(rng_key, x, y)
        compiled = jax.jit(_compiled_loop(svi, num_steps, divergence_ratio)).lower(state, x, y).compile()
    with stopwatch(cost, "optimize_seconds"):
        steps, state, losses, diverged = jax.block_until_ready(compiled(state, x, y))
    steps, losses = int(steps), np.asarray(losses)
    if bool(diverged):
        raise InferenceDivergenceError(
            f"optimisation diverged at step {steps} of {num_steps}: loss {losses[steps - 1]:.4g} "
            f"(initial loss {losses[0]:.4g}; the rule is a non-finite loss or |loss| > "
            f"divergence_ratio={divergence_ratio:g} x max(1, |initial loss|)). Lower learning_rate "
            "or clip_norm, or use a smaller init_scale.",
            step=steps,
            loss=float(losses[steps - 1]),
            loss_trace=losses[:steps],
        )
    params = svi.get_params(state)
    bad = sorted(name for name, value in params.items() if not np.all(np.isfinite(np.asarray(value))))
    if bad:
        raise InferenceDivergenceError(
            f"optimisation diverged: parameters {bad} are not finite after {num_steps} steps",
            step=num_steps,
            loss=float(losses[-1]),
            loss_trace=losses,
        )
    return params, losses


def fit_variational(
    method: str, model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any], loss: ELBO,
    kind: str = "variational", say: Callable[[str], None] = lambda message: None,
) -> Posterior:
    """Fit the guide ``options["guide"]`` to ``model`` on ``(x, y)`` by minimising ``loss`` and return
    a Posterior of ``num_samples`` draws from q, shaped (1, num_samples, ...).

    ``rng_key`` is split into a key for the fit (guide initialisation and the per-step draws) and one
    for the posterior draws; ``Posterior.redraw(key)`` takes fresh draws from the same fitted q.
    ``loss_trace`` holds the loss at every step (every epoch when minibatch); ``info`` the convergence
    check and the final loss (mean over the last 10% of steps); ``kind`` is the Posterior's (the calling
    backend's ``KIND``); ``say`` prints per-epoch progress.
    """
    key_fit, key_draw = jax.random.split(rng_key)
    nmodel = numpyro_model(model)
    cost: dict[str, float] = {}
    minibatch = options["batch_size"] is not None
    with stopwatch(cost, "fit_seconds"):
        key_split, key_init, key_fit = jax.random.split(key_fit, 3)
        split = split_validation(x, y, options["validation_fraction"] if minibatch else 0.0, key_split,
                                 options["batch_size"] or 1)
        x_train, y_train = jnp.asarray(split.x), jnp.asarray(split.y)
        init_loc_fn = None
        joint = None
        if options["init_loc"] != "median" or minibatch:
            joint = log_joint(model, x_train, y_train, key_init)
        if options["init_loc"] != "median":
            start, _ = joint.constrain(initial_point(joint, key_init, options["init_loc"]))
            init_loc_fn = init_to_value(values=start)
        guide = make_guide(options["guide"], nmodel, x_train, y_train, init_scale=initial_scale(options), init_loc_fn=init_loc_fn)
        extra: dict[str, Any] = {}
        if minibatch:
            params, losses, extra = optimize_minibatch(key_fit, nmodel, guide, loss, split, joint, options=options, cost=cost, say=say)
            num_steps = extra["steps"]
        else:
            svi = SVI(nmodel, guide, make_optimizer(options), loss)
            params, losses = optimize(
                key_fit, svi, x_train, y_train, num_steps=options["num_steps"], divergence_ratio=float(options["divergence_ratio"]),
                cost=cost,
            )
            num_steps = options["num_steps"]
        names = list(joint.shapes) if joint is not None else latent_site_names(model, x_train, y_train)
        sample_q = jax.jit(lambda key: guide.sample_posterior(key, params, sample_shape=(options["num_samples"],)))

        def draws_from_q(key: jax.Array) -> dict[str, np.ndarray]:
            samples = jax.block_until_ready(sample_q(key))
            return {name: np.asarray(samples[name])[None] for name in names}

        with stopwatch(cost, "sample_seconds"):
            draws = draws_from_q(key_draw)
        deferred: dict[str, Callable[[], Any]] = {}
        if not minibatch:  # full-data fits: PSIS_DRAWS evaluations of the full-data log joint, when first asked for
            deferred["pareto_k"] = functools.cache(
                lambda: _guide_pareto_k(jax.random.fold_in(key_draw, 1), params, nmodel, guide, x_train, y_train))
    cost["grad_evals"] = float(num_steps * options["num_particles"])
    cost["ms_per_step"] = 1000.0 * cost["optimize_seconds"] / num_steps
    window = max(len(losses) // 10, 1)
    info = {
        "guide": options["guide"],
        "final_loss": float(np.mean(losses[-window:])),
        **loss_convergence(losses),
        **extra,
        "params": {name: np.asarray(value) for name, value in params.items()},
    }
    if hasattr(guide, "site_scales") or options["guide"] == "meanfield":
        info["site_scales"] = {name: np.asarray(value) for name, value in guide_site_scales(guide, params).items()}
        info["site_locs"] = {name: np.asarray(params[f"{name}_auto_loc"]) for name in info["site_scales"]}

    def make_posterior(sample_draws: dict[str, np.ndarray], sample_cost: dict[str, float]) -> Posterior:
        return Posterior(
            method=method,
            kind=kind,
            model=model,
            draws=sample_draws,
            options=options,
            loss_trace=losses,
            cost=sample_cost,
            info=info,
            observed=(np.asarray(x), np.asarray(y)),
            redraw_fn=redraw,
            deferred_info=deferred,
        )

    def redraw(key: jax.Array) -> Posterior:
        redraw_cost = dict(cost)
        redraw_cost["sample_seconds"] = 0.0
        with stopwatch(redraw_cost, "sample_seconds"):
            new_draws = draws_from_q(key)
        return make_posterior(new_draws, redraw_cost)

    return make_posterior(draws, cost)


def _guide_pareto_k(rng_key: jax.Array, params: dict[str, Any], model: Callable[..., Any], guide: Any, x: jax.Array,
                    y: jax.Array) -> float:
    """k-hat of p/q over ``PSIS_DRAWS`` draws from the fitted guide: log w = log p(theta, y) - log q(theta),
    both in the constrained space (the guide's trace carries its transforms' Jacobians)."""
    from numpyro.infer.util import log_density

    def log_weight(key: jax.Array) -> jax.Array:
        from numpyro import handlers

        seeded = handlers.seed(handlers.substitute(guide, data=params), key)
        guide_trace = handlers.trace(seeded).get_trace(x, y)
        log_q, _ = log_density(handlers.substitute(guide, data=params), (x, y), {},
                               {name: site["value"] for name, site in guide_trace.items() if site["type"] == "sample"})
        latent = {name: site["value"] for name, site in guide_trace.items()
                  if site["type"] == "sample" and not name.startswith("_")}
        log_p, _ = log_density(model, (x, y), {}, latent)
        return log_p - log_q

    keys = jax.random.split(rng_key, PSIS_DRAWS)
    return pareto_k(np.asarray(jax.jit(lambda k: jax.lax.map(log_weight, k, batch_size=100))(keys)))


def guide_site_scales(guide: Any, params: dict[str, Any]) -> dict[str, jax.Array]:
    """The standard deviation of every factor of a ``meanfield`` or ``matrix-normal`` guide, by site,
    in the unconstrained space (the SNR pruning reads these with the locations)."""
    if hasattr(guide, "site_scales"):
        return guide.site_scales(params)
    suffix = f"_{guide.prefix}_scale"
    return {name[: -len(suffix)]: value for name, value in params.items() if name.endswith(suffix)}


def optimize_minibatch(
    rng_key: jax.Array, nmodel: Callable[..., Any], guide: Any, loss: ELBO, split: Any, joint: Any, *, options: dict[str, Any],
    cost: dict[str, float], say: Callable[[str], None],
) -> tuple[dict[str, jax.Array], np.ndarray, dict[str, Any]]:
    """Minibatch SVI (module docstring). Returns the fitted (constrained) guide parameters (the best on
    validation, else the last), the mean loss per epoch (E,), and info: epochs, steps, early stopping,
    the validation NLL per epoch. Raises ``InferenceDivergenceError``."""
    batch_size, num_epochs, patience = options["batch_size"], options["num_epochs"], options["patience"]
    x, y = jnp.asarray(split.x), jnp.asarray(split.y)
    num_train = x.shape[0]
    batches_per_epoch = num_train // batch_size
    total_steps = num_epochs * batches_per_epoch
    data_scale = num_train / batch_size

    def scaled_model(xb: Any, yb: Any = None) -> Any:
        with WeightObserved(weights=jnp.full((xb.shape[0],), data_scale, jnp.float32)):
            return nmodel(xb, yb)

    svi = SVI(scaled_model, guide, make_optimizer({**options, "num_steps": total_steps}), loss)

    def epoch(state: Any, key: jax.Array, x: jax.Array, y: jax.Array) -> Any:
        def step(state: Any, index: jax.Array) -> Any:
            return svi.update(state, x[index], y[index])

        return jax.lax.scan(step, state, epoch_indices(key, num_train, batch_size))

    key_init, key_epochs, key_val = jax.random.split(rng_key, 3)
    validate = None
    if split.x_val is not None:
        x_val, y_val = jnp.asarray(split.x_val), jnp.asarray(split.y_val)

        def validation_nll(params: dict[str, jax.Array], key: jax.Array) -> jax.Array:
            draws = guide.sample_posterior(key, params, sample_shape=(VALIDATION_DRAWS,))
            names = list(joint.shapes)

            def log_lik(sites: dict[str, jax.Array]) -> jax.Array:
                return joint.terms(sites, jnp.zeros(()), x_val, y_val)[1]

            per_draw = jax.lax.map(log_lik, {name: draws[name] for name in names})
            return -jnp.mean(jax.scipy.special.logsumexp(per_draw, axis=0) - math.log(VALIDATION_DRAWS))

        validate = jax.jit(validation_nll)
    with stopwatch(cost, "compile_seconds"):
        state = svi.init(key_init, x[:batch_size], y[:batch_size])
        compiled = jax.jit(epoch).lower(state, key_epochs, x, y).compile()
    epoch_losses: list[float] = []
    val_trace: list[float] = []
    reference = None
    best = (math.inf, None, 0)
    stopped_early = False
    for index in range(num_epochs):
        with stopwatch(cost, "optimize_seconds"):
            state, losses = jax.block_until_ready(compiled(state, jax.random.fold_in(key_epochs, index), x, y))
        losses = np.asarray(losses)
        reference = max(1.0, abs(float(losses[0]))) if reference is None else reference
        bad = ~np.isfinite(losses) | (np.abs(losses) > float(options["divergence_ratio"]) * reference)
        if bad.any():
            step = index * batches_per_epoch + int(np.argmax(bad)) + 1
            raise InferenceDivergenceError(
                f"minibatch optimisation diverged in epoch {index + 1} (step {step}): loss {losses[np.argmax(bad)]:.4g} "
                f"(first loss {reference:.4g}); lower learning_rate or clip_norm, or use a smaller init_scale / init_rho.",
                step=step, loss=float(losses[np.argmax(bad)]), loss_trace=np.asarray(epoch_losses),
            )
        epoch_losses.append(float(np.mean(losses)))
        message = f"epoch {index + 1}/{num_epochs}: loss {epoch_losses[-1]:.6g}"
        if validate is not None:
            with stopwatch(cost, "validation_seconds"):
                params = svi.get_params(state)
                val = float(validate(params, key_val))  # the same draws' noise every epoch: epochs compare fairly
            val_trace.append(val)
            message += f", validation NLL {val:.4f}"
            if val < best[0]:
                best = (val, params, index)
            elif index - best[2] >= patience:
                say(message + f" (no improvement for {patience} epochs: stopping)")
                stopped_early = index + 1 < num_epochs
                break
        say(message)
    params = svi.get_params(state) if validate is None else best[1]
    bad_params = sorted(name for name, value in params.items() if not np.all(np.isfinite(np.asarray(value))))
    if bad_params:
        raise InferenceDivergenceError(f"optimisation diverged: parameters {bad_params} are not finite",
                                       step=len(epoch_losses) * batches_per_epoch, loss=epoch_losses[-1],
                                       loss_trace=np.asarray(epoch_losses))
    info: dict[str, Any] = {"training": "minibatch", "batch_size": batch_size, "epochs_run": len(epoch_losses),
                            "steps": len(epoch_losses) * batches_per_epoch, "stopped_early": stopped_early}
    if validate is not None:
        info.update(validation_nll=val_trace, best_epoch=best[2], best_validation_nll=best[0])
    return params, np.asarray(epoch_losses), info
