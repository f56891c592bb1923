"""``pyro-svi``: the same model declaration fitted by Pyro's SVI (PyTorch engine) with a mean-field guide.

The model is bound to the Pyro handle (as ``pyro-nuts`` does); the guide is Pyro's ``AutoNormal``, an
independent Gaussian per latent coordinate in unconstrained space with sigma = softplus(rho). Its
locations start (``init_loc``, as in the NumPyro backends) at the coordinate-wise median of 15 prior draws
(``"median"``) or, for a network, with every real weight matrix (fan_in, fan_out) uniform on
±sqrt(6 / (fan_in + fan_out)) and every real vector at 0 (``"glorot"``; other sites at the median); its
sds at ``init_scale``, or softplus(``init_rho``) when that is given. The loss is Pyro's
``Trace_ELBO`` (``elbo="trace"``) or ``JitTrace_ELBO`` (``"jit-trace"``, the ELBO and its gradient traced
once by ``torch.jit``) with ``num_particles`` reparameterised draws per step. (``JitTraceMeanField_ELBO``
is left out on purpose: it leaked about 9 MB per step in this project's runs; ``JitTrace_ELBO`` held a flat
resident size over 300 steps of the 784-100-100-10 network.)

Optimiser: Adam on the learning-rate schedule of the NumPyro variational backends (``lr_schedule``:
``warmup_cosine`` or ``constant``, the same numbers step by step, ``_variational.learning_rate_schedule``)
via ``pyro.optim``. ``clip_norm`` differs from NumPyro's: ``pyro.optim`` clips the gradient norm of each
parameter tensor (each site's loc and its scale separately), NumPyro the global norm over all of them,
so the same number clips less here.

Steps and minibatches (the conventions of the NumPyro ``svi`` backend): with ``batch_size=None`` every
step sees all N points, ``num_steps`` times, and ``loss_trace`` is the loss of every step. With
``batch_size=B`` the fit runs ``num_epochs`` epochs (``num_steps`` is then unused); each epoch is a fresh
permutation of the N points cut into ``N // B`` batches of B (the last ``N mod B`` points of that
permutation sit the epoch out, so every step has the same shape), the learning-rate schedule spans all
``num_epochs * (N // B)`` steps, and ``loss_trace`` is the mean loss of every epoch. The observed sites'
log-likelihood is multiplied by N / B and nothing else is (latent sites keep scale 1), so each step's loss
is an unbiased estimate of the full-data negative ELBO. Minibatching needs every latent site to be global:
a latent site inside the observed sites' plate is a ``ValueError``. (NumPyro's early stopping on a
validation split, ``validation_fraction`` / ``patience``, is not offered here.)

Randomness and global state: ``rng_key`` is split into a key for the fit and one for the draws; the fit
seeds torch's default generator inside ``torch.random.fork_rng`` (so the caller's torch state comes back
unchanged), the shuffling uses its own ``torch.Generator``, and the draws another; NumPy's and Python's
generators are never touched. Pyro's parameter store is a private scope for the fit
(``ParamStore.scope``), torch's thread count is ``num_threads`` during the fit and Pyro's validation is
``validate_args`` during the fit; all three are restored afterwards.

Divergence (the rule of ``_variational``): a step whose loss is NaN, infinite, or larger in magnitude
than ``divergence_ratio * max(1, |loss of step 1|)`` raises ``InferenceDivergenceError``; so do
non-finite fitted parameters. Convergence is reported in ``info`` as ``_variational.loss_convergence``
computes it from ``loss_trace`` (per step, or per epoch with minibatches).

Pyro is an optional extra: ``pip install 'ppl-uq[pyro]'``.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ..posterior import Posterior
from ._common import stopwatch
from ._options import check_choice, check_int
from ._variational import (
    InferenceDivergenceError,
    check_init_options,
    check_schedule_options,
    initial_scale,
    learning_rate_schedule,
    loss_convergence,
)
from .pyro_nuts import torch_data, torch_model

#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from a fitted approximating distribution q.
KIND = "variational"

#: The ELBO implementations ``elbo`` chooses between: Pyro's ``Trace_ELBO`` and ``JitTrace_ELBO``.
ELBOS: tuple[str, ...] = ("trace", "jit-trace")

#: The guide families (only the mean-field ``AutoNormal``).
GUIDES: tuple[str, ...] = ("meanfield",)

DEFAULTS: dict[str, Any] = {
    "guide": "meanfield",
    "num_steps": 30_000,
    "batch_size": None,
    "num_epochs": 20,
    "learning_rate": 0.01,
    "lr_schedule": "warmup_cosine",
    "warmup_fraction": 0.05,
    "end_lr_ratio": 0.01,
    "clip_norm": 100.0,
    "num_particles": 1,
    "init_scale": 0.01,
    "init_rho": None,
    "init_loc": "median",
    "num_samples": 1000,
    "divergence_ratio": 1e4,
    "elbo": "trace",
    "validate_args": True,
    "num_threads": 1,
}


def check_options(options: dict[str, Any]) -> None:
    """Validate the pyro-svi options; ``ValueError`` naming the option otherwise. (That ``batch_size``
    is at most the number of points is checked by ``fit``, which knows N.)"""
    check_choice(options, "guide", GUIDES)
    check_choice(options, "elbo", ELBOS)
    check_int(options, "num_steps", "num_epochs", "num_particles", "num_samples", "num_threads")
    if options["batch_size"] is not None:
        check_int(options, "batch_size")
    check_schedule_options(options)
    check_init_options(options)
    if not isinstance(options["validate_args"], bool):
        raise ValueError(f"option 'validate_args' must be True or False, got {options['validate_args']!r}")


def step_plan(options: dict[str, Any], num_points: int) -> tuple[int, int, int]:
    """Returns ``(batch size B, steps per epoch, total steps)`` for ``num_points`` points (module
    docstring; in full batch, one "epoch" is the whole run); ``ValueError`` when ``batch_size`` exceeds
    ``num_points``."""
    batch_size = options["batch_size"]
    if batch_size is None:
        return num_points, options["num_steps"], options["num_steps"]
    if batch_size > num_points:
        raise ValueError(f"option 'batch_size' ({batch_size}) exceeds the number of data points ({num_points})")
    per_epoch = num_points // batch_size
    return batch_size, per_epoch, options["num_epochs"] * per_epoch


def _seed(key: jax.Array) -> int:
    """A non-negative 31-bit integer seed drawn from ``key``."""
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def _scale_observed(factor: float) -> Any:
    """A Pyro messenger multiplying the log-likelihood of observed sample sites by ``factor`` (latent
    sites are left alone)."""
    from pyro.poutine.messenger import Messenger

    class ScaleObserved(Messenger):
        def _process_message(self, msg: dict[str, Any]) -> None:
            if msg["type"] == "sample" and msg["is_observed"]:
                msg["scale"] = factor * msg["scale"]

    return ScaleObserved()


def _batches(x: Any, y: Any, batch_size: int, generator: Any) -> Iterator[tuple[Any, Any]]:
    """Endless (x, y) batches: all of the data when ``batch_size`` is N, else ``N // batch_size`` batches per
    epoch from a fresh permutation (drawn with ``generator``) at the start of each epoch."""
    import torch

    num_points = x.shape[0]
    per_epoch = num_points // batch_size
    while True:
        if batch_size == num_points:  # full batch: no shuffling
            yield x, y
            continue
        order = torch.randperm(num_points, generator=generator)
        for i in range(per_epoch):
            index = order[i * batch_size : (i + 1) * batch_size]
            yield x[index], y[index]


def _latent_sites(pmodel: Callable[..., Any], x: Any, y: Any, minibatch: bool) -> dict[str, Any]:
    """The latent sample sites of one prior run of ``pmodel(x, y)``, by name in model order. With
    ``minibatch``, ``ValueError`` if a latent site lies in a plate of an observed site."""
    from pyro import poutine
    from pyro.poutine.util import site_is_subsample

    nodes = poutine.trace(pmodel).get_trace(x, y).nodes
    sites = {n: s for n, s in nodes.items()
             if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)}
    if minibatch:
        data_plates = {f.name for s in nodes.values() if s["type"] == "sample" and s["is_observed"]
                       for f in s["cond_indep_stack"]}
        local = sorted(n for n, s in sites.items() if data_plates & {f.name for f in s["cond_indep_stack"]})
        if local:
            raise ValueError(f"minibatching (batch_size) needs global latent sites; {local} lie in the data "
                             f"plate(s) {sorted(data_plates)}. Use batch_size=None.")
    return sites


def _init_loc_fn(how: str) -> Callable[[dict[str, Any]], Any]:
    """Pyro's per-site ``init_loc_fn`` for ``init_loc`` ``how`` (module docstring); the Glorot draws come
    from torch's default generator (seeded by ``fit``)."""
    import torch
    from pyro.infer.autoguide.initialization import init_to_median
    from torch.distributions import constraints

    median = init_to_median(num_samples=15)
    if how == "median":
        return median

    def glorot(site: dict[str, Any]) -> Any:
        support = site["fn"].support
        while isinstance(support, constraints.independent):
            support = support.base_constraint
        shape = tuple(site["fn"].shape())
        if support is not constraints.real or len(shape) not in (1, 2):
            return median(site)
        if len(shape) == 1:
            return torch.zeros(shape)
        limit = float(np.sqrt(6.0 / (shape[0] + shape[1])))
        return (2.0 * torch.rand(shape) - 1.0) * limit

    return glorot


def _optimizer(options: dict[str, Any], total_steps: int) -> tuple[Any, Any]:
    """Returns ``(pyro optimiser, scheduler or None)``: Adam at ``learning_rate`` (constant), or on the
    NumPyro backends' schedule over ``total_steps`` (a ``LambdaLR`` to step once per step)."""
    import pyro.optim
    import torch

    peak = float(options["learning_rate"])
    clip = None if options["clip_norm"] is None else {"clip_norm": float(options["clip_norm"])}
    if options["lr_schedule"] == "constant":
        return pyro.optim.Adam({"lr": peak}, clip_args=clip), None
    schedule = learning_rate_schedule({**options, "num_steps": total_steps})
    factors = (np.asarray(jax.vmap(schedule)(jnp.arange(total_steps + 1))) / peak).tolist()

    def factor(step: int) -> float:
        return factors[min(step, total_steps)]

    scheduler = pyro.optim.LambdaLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": peak}, "lr_lambda": factor}, clip_args=clip
    )
    return scheduler, scheduler


def _sample_q(locs: dict[str, np.ndarray], scales: dict[str, np.ndarray], transforms: dict[str, Any], num_samples: int,
              seed: int) -> dict[str, np.ndarray]:
    """``num_samples`` draws from the fitted mean-field q, site by site: loc + scale * eps in unconstrained
    space mapped to the support. Returns site -> float32 array (1, num_samples, *site_shape)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    draws = {}
    with torch.no_grad():
        for name in locs:
            loc, scale = torch.from_numpy(locs[name]), torch.from_numpy(scales[name])
            noise = torch.randn((num_samples, *loc.shape), generator=generator, dtype=loc.dtype)
            draws[name] = transforms[name](loc + scale * noise).numpy().astype(np.float32)[None]
    return draws


def _train(svi: Any, scheduler: Any, batches: Iterator[tuple[Any, Any]], total_steps: int, divergence_ratio: float,
           cost: dict[str, float], report_every: int, unit: str, say: Callable[[str], None]) -> np.ndarray:
    """Run ``total_steps`` SVI steps; returns the loss per step, (total_steps,). Adds
    ``first_step_seconds`` (guide set-up, and the trace for ``jit-trace``) and ``optimize_seconds`` (all
    steps) to ``cost``; calls ``say`` with the mean loss of every ``report_every`` steps, counted in
    ``unit`` (``"epoch"``: one per ``report_every`` steps, or ``"step"``). Raises
    ``InferenceDivergenceError``."""
    losses = np.full(total_steps, np.nan)
    reference = 1.0
    with stopwatch(cost, "optimize_seconds"):
        for step in range(total_steps):
            with stopwatch(cost, "first_step_seconds") if step == 0 else contextlib.nullcontext():
                loss = float(svi.step(*next(batches)))
            if scheduler is not None:
                scheduler.step()
            losses[step] = loss
            if step == 0:
                reference = max(1.0, abs(loss))
            if not np.isfinite(loss) or abs(loss) > divergence_ratio * reference:
                raise InferenceDivergenceError(
                    f"optimisation diverged at step {step + 1} of {total_steps}: loss {loss:.4g} (initial loss "
                    f"{losses[0]:.4g}; the rule is a non-finite loss or |loss| > divergence_ratio="
                    f"{divergence_ratio:g} x max(1, |initial loss|)). Lower learning_rate or clip_norm, or use a "
                    "smaller init_scale.",
                    step=step + 1,
                    loss=loss,
                    loss_trace=losses[: step + 1],
                )
            if (step + 1) % report_every == 0:
                done, of = ((step + 1) // report_every, total_steps // report_every) if unit == "epoch" else (step + 1, total_steps)
                say(f"{unit} {done}/{of}: mean loss {np.mean(losses[step + 1 - report_every : step + 1]):.6g}")
    return losses


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Fit the mean-field guide with Pyro's SVI; return a Posterior with ``num_samples`` draws from q,
    shaped (1, num_samples, ...) (NumPy float32, the model's latent site names).

    ``progress(message)``, when given, gets the mean loss of each epoch (minibatches) or of each tenth of
    the steps (full batch).

    ``loss_trace`` is the loss of every step, (num_steps,), or with minibatches the mean loss of every
    epoch, (num_epochs,); ``cost`` has ``fit_seconds``, ``first_step_seconds``, ``optimize_seconds``,
    ``ms_per_step`` (over the steps after the first), ``sample_seconds``, ``steps`` and ``grad_evals``;
    ``info`` the final loss (mean of the last 10% of ``loss_trace``), the convergence check, the step plan
    (``training``, ``batch_size``, ``steps``, ``epochs_run``, ``likelihood_scale``) and the fitted guide:
    ``params`` (``{site}_auto_loc`` and ``{site}_auto_scale``, NumPyro's AutoNormal names) and the same
    per site in ``site_locs`` / ``site_scales`` (unconstrained space, as the NumPyro backends report them).
    ``redraw(key)`` takes fresh draws from the same q.
    """
    import pyro
    import torch
    from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
    from pyro.infer.autoguide import AutoNormal
    from torch.distributions import biject_to

    batch_size, per_epoch, total_steps = step_plan(options, x.shape[0])
    minibatch = options["batch_size"] is not None
    key_init, key_shuffle, key_draw = jax.random.split(rng_key, 3)
    x_t, y_t = torch_data(x, y)
    pmodel = torch_model(model)
    train_model = _scale_observed(x.shape[0] / batch_size)(pmodel) if minibatch else pmodel
    cost: dict[str, float] = {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(options["num_threads"])
    try:
        with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope(), \
                pyro.validation_enabled(options["validate_args"]), stopwatch(cost, "fit_seconds"):
            torch.manual_seed(_seed(key_init))
            sites = _latent_sites(pmodel, x_t[:batch_size], y_t[:batch_size], minibatch)
            guide = AutoNormal(pmodel, init_loc_fn=_init_loc_fn(options["init_loc"]), init_scale=initial_scale(options))
            loss_class = JitTrace_ELBO if options["elbo"] == "jit-trace" else Trace_ELBO
            loss_kwargs = {"ignore_jit_warnings": True} if options["elbo"] == "jit-trace" else {}
            loss = loss_class(num_particles=options["num_particles"], **loss_kwargs)
            optimizer, scheduler = _optimizer(options, total_steps)
            svi = SVI(train_model, guide, optimizer, loss)
            batches = _batches(x_t, y_t, batch_size, torch.Generator().manual_seed(_seed(key_shuffle)))
            report_every = per_epoch if minibatch else max(total_steps // 10, 1)
            step_losses = _train(svi, scheduler, batches, total_steps, float(options["divergence_ratio"]), cost,
                                 report_every, "epoch" if minibatch else "step", progress or (lambda message: None))
            with torch.no_grad():
                locs = {name: operator.attrgetter(name)(guide.locs).detach().numpy().copy() for name in sites}
                scales = {name: operator.attrgetter(name)(guide.scales).detach().numpy().copy() for name in sites}
    finally:
        torch.set_num_threads(previous_threads)
    bad = sorted(name for name in sites if not (np.all(np.isfinite(locs[name])) and np.all(np.isfinite(scales[name]))))
    if bad:
        raise InferenceDivergenceError(
            f"optimisation diverged: the guide parameters of {bad} are not finite after {total_steps} steps",
            step=total_steps, loss=float(step_losses[-1]), loss_trace=step_losses,
        )
    losses = step_losses.reshape(-1, per_epoch).mean(axis=1) if minibatch else step_losses
    transforms = {name: biject_to(site["fn"].support) for name, site in sites.items()}
    with stopwatch(cost, "sample_seconds"):
        draws = _sample_q(locs, scales, transforms, options["num_samples"], _seed(key_draw))
    cost["fit_seconds"] += cost["sample_seconds"]
    cost["steps"] = float(total_steps)
    cost["grad_evals"] = float(total_steps * options["num_particles"])
    cost["ms_per_step"] = (1000.0 * (cost["optimize_seconds"] - cost["first_step_seconds"]) / (total_steps - 1)
                           if total_steps > 1 else 1000.0 * cost["optimize_seconds"])
    window = max(len(losses) // 10, 1)
    info: dict[str, Any] = {
        "guide": options["guide"],
        "elbo": options["elbo"],
        "final_loss": float(np.mean(losses[-window:])),
        **loss_convergence(losses),
        "training": "minibatch" if minibatch else "full-batch",
        "batch_size": batch_size,
        "steps": total_steps,
        "epochs_run": options["num_epochs"] if minibatch else None,
        "likelihood_scale": x.shape[0] / batch_size,
        "params": {
            **{f"{name}_auto_loc": value for name, value in locs.items()},
            **{f"{name}_auto_scale": value for name, value in scales.items()},
        },
        "site_locs": locs,
        "site_scales": scales,
    }

    def make_posterior(sample_draws: dict[str, np.ndarray], sample_cost: dict[str, float]) -> Posterior:
        return Posterior(
            method="pyro-svi",
            kind=KIND,
            model=model,
            draws=sample_draws,
            options=options,
            loss_trace=losses,
            cost=sample_cost,
            info=info,
            observed=(x, y),
            redraw_fn=redraw,
        )

    def redraw(key: jax.Array) -> Posterior:
        """Fresh draws from the same fitted q (no refit); the fit's costs with the new sampling time."""
        redraw_cost = dict(cost)
        redraw_cost["sample_seconds"] = 0.0
        with stopwatch(redraw_cost, "sample_seconds"):
            new_draws = _sample_q(locs, scales, transforms, options["num_samples"], _seed(key))
        return make_posterior(new_draws, redraw_cost)

    return make_posterior(draws, cost)
