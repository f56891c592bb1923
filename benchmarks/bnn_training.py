"""Bayes by Backprop on Fashion-MNIST: ``ppl_uq.fit("svi", ...)`` vs Pyro's SVI, a hand-written eager PyTorch loop
and a hand-written jitted JAX/Optax loop, side by side in one run.

The network: 784-100-100-10 ReLU MLP (``ppl_uq.models.bnn_mlp``), weights and biases with the scale-mixture
prior of Blundell et al. (pi = 0.5, sigma1 = e^-1, sigma2 = e^-7; ``scale_mixture()``), and the iid N(0, 1)
prior (``iid_gaussian(1.0)``) for the cost of the mixture. Variational family: mean-field Gaussian with
sigma = softplus(rho), one reparameterised draw per step, the single-draw ELBO estimate
``log q(w) - log p(w) - (N/B) sum_batch log p(y | x, w)`` (the KL is not in closed form: no closed form exists
for the mixture). Every side trains on the same training points for the same number of epochs of batches
of 128 (reshuffled each epoch, the last N mod 128 points of each permutation left out), with Adam at peak
lr 1e-3 on the same schedule (linear warm-up over 5% of the steps, cosine decay to 1% of the peak) behind
gradient-norm clipping at 100 (``ppl_uq.inference._variational``'s defaults):

- ``ours``: ``ppl_uq.fit("svi", functools.partial(bnn_mlp, widths=(100, 100), prior=...), (x, y),
  rng_key=jax.random.key(0), guide="meanfield", batch_size=128, num_epochs=E, learning_rate=1e-3,
  num_samples=100)``, sigmas starting at 0.01 (its default ``init_scale``).
- ``pyro-trace`` / ``pyro-jit``: the same declaration under Pyro's SVI (the ``pyro-svi`` backend, AutoNormal,
  ``Trace_ELBO`` / ``JitTrace_ELBO``, same schedule; its clipping is per parameter tensor), at
  ``--pyro-threads`` torch threads (default 1).
- ``torch-eager-{1,2}t``: explicit tensors (mu, rho per layer), ``torch.optim.Adam`` + ``LambdaLR``, global
  ``clip_grad_norm_``, at 1 and 2 torch threads. On 2 cores, 2 threads collapse when anything else runs
  (OpenMP threads spin-wait for each other); ``OMP_WAIT_POLICY=PASSIVE python benchmarks/bnn_training.py``
  makes idle OpenMP threads sleep instead (the JSON records the setting; it must be set before torch loads).
- ``jax-scan``: the floor, one jitted ``lax.scan`` over an epoch of Optax steps (``optax.chain(clip, adam)``);
  ``jax-step``: the same step jitted alone, called from a Python loop (what per-step dispatch costs);
  ``jax-deterministic``: the same net without the Bayesian parts (weights = mu, plain mean cross-entropy),
  one scan per epoch, for reference.

Every side starts its sigmas at 0.01 and its locations the same way (``--init-loc``): ``median`` (the default,
ours' default and the call above) is the coordinate-wise median of 15 prior draws (Pyro's ``init_to_median``;
the hand-written loops draw it with NumPy); ``glorot`` is Glorot-uniform weights and zero biases (ours and
Pyro with ``init_loc="glorot"``). On the full data, one epoch, ours reached 0.58 test accuracy from the median
start and 0.85 from the Glorot start (one run each). From the median start the weights sit near the prior's
narrow component (sigma2 = e^-7), where the prior term outweighs the likelihood of a few thousand points: in
``--quick`` runs (50 steps) no side learned from it with the scale-mixture prior (all at chance, with the same
loss on every side), while every side reached 0.66-0.71 from the Glorot start. Smoke tests use
``--quick --init-loc glorot``.

Reported per side: warm steps/s (after compilation / the first step), the compile (or first-step) seconds,
test accuracy of the posterior predictive from 10 draws of q (the mean of the 10 softmax outputs; the
deterministic net from its one weight set) and whether it learned (accuracy > 0.5; chance is 0.1), the
final loss; and the ratios of time per step (above 1: ours is slower) ours/jax-scan, ours/eager-torch (its
best thread setting), ours/pyro (its best ELBO), and scale-mixture/gaussian for ours, jax-scan and
eager torch at 1 thread. Timings are only meaningful on an otherwise idle machine (``--wait-idle``).

    python benchmarks/bnn_training.py --wait-idle 20              # 60,000 points, 2 epochs
    python benchmarks/bnn_training.py --quick --epochs 1 --init-loc glorot   # 6,400 points, 1,000 test points
    python benchmarks/bnn_training.py --quick --skip-ours --skip-pyro       # the hand-written loops only
"""

from __future__ import annotations

from ppl_uq.runs.setup import configure_process  # noqa: E402

configure_process(compilation_cache=False)

import argparse  # noqa: E402
import functools  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
from _util import wait_for_quiet_machine, with_threads, write_result  # noqa: E402

import ppl_uq  # noqa: E402
from ppl_uq.inference._options import resolve_options  # noqa: E402
from ppl_uq.inference._variational import COMMON_DEFAULTS, learning_rate_schedule  # noqa: E402
from ppl_uq.models.bnn import bnn_mlp  # noqa: E402
from ppl_uq.models.priors import iid_gaussian, scale_mixture  # noqa: E402

WIDTHS = (100, 100)
NUM_CLASSES = 10
BATCH = 128
LEARNING_RATE = 1e-3
INIT_SIGMA = 0.01
PREDICTIVE_DRAWS = 10
OURS_DRAWS = 100
LEARNED = 0.5  # test accuracy that counts as having learned (chance: 0.1)
QUICK = {"train_points": 50 * BATCH, "test_points": 1000}
RESULTS = Path(__file__).resolve().parent / "results"
PRIORS = {"scale_mixture": scale_mixture(), "gaussian": iid_gaussian(1.0)}
LAYER_NAMES = ("w0", "b0", "w1", "b1", "w2", "b2")


# -- shared pieces -----------------------------------------------------------------------------------
def load_data(train_points: int | None, test_points: int | None) -> dict[str, np.ndarray]:
    """Fashion-MNIST (``ppl_uq.data.load_fashion_mnist``): the first ``train_points`` / ``test_points`` rows
    (all when None) as x float32 (N, 784) in [0, 1], y int32 (N,)."""
    data = ppl_uq.data.load_fashion_mnist()
    (x, y), (x_test, y_test) = data.train, data.test
    return {"x": x[:train_points], "y": y[:train_points], "x_test": x_test[:test_points], "y_test": y_test[:test_points],
            "source": data.source}


def layer_shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """Site name -> shape for the 784-100-100-10 net: w{l} (fan_in, fan_out), b{l} (fan_out,)."""
    sizes = [dim, *WIDTHS, NUM_CLASSES]
    shapes = {}
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shapes[f"w{layer}"], shapes[f"b{layer}"] = (fan_in, fan_out), (fan_out,)
    return shapes


def initial_mu(dim: int, seed: int, prior: dict[str, Any], how: str) -> dict[str, np.ndarray]:
    """The hand-written loops' starting locations, float32: ``"median"``, the coordinate-wise median of 15
    prior draws (what ``ours`` and Pyro's ``init_to_median`` start from, in distribution); ``"glorot"``,
    weights uniform on ±sqrt(6 / (fan_in + fan_out)) and zero biases (their ``init_loc="glorot"``)."""
    rng = np.random.default_rng(seed)
    start = {}
    for name, shape in layer_shapes(dim).items():
        if how == "median":
            normal = rng.standard_normal((15, *shape))
            if prior["name"] == "iid_gaussian":
                draws = prior["scale"] * normal
            else:
                wide = rng.random((15, *shape)) < prior["pi"]
                draws = np.where(wide, prior["sigma1"], prior["sigma2"]) * normal
            start[name] = np.median(draws, axis=0).astype(np.float32)
        elif len(shape) == 2:
            limit = math.sqrt(6.0 / (shape[0] + shape[1]))
            start[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
        else:
            start[name] = np.zeros(shape, np.float32)
    return start


def schedule_options(total_steps: int) -> dict[str, Any]:
    """The NumPyro variational backends' schedule and clipping options at peak lr 1e-3 over ``total_steps``."""
    return {**COMMON_DEFAULTS, "learning_rate": LEARNING_RATE, "num_steps": total_steps}


def lr_factors(total_steps: int) -> np.ndarray:
    """The learning rate of steps 0..total_steps as multiples of the peak (``learning_rate_schedule``)."""
    schedule = learning_rate_schedule(schedule_options(total_steps))
    return np.asarray(jax.vmap(schedule)(jnp.arange(total_steps + 1))) / LEARNING_RATE


@jax.jit
def _predictive_labels(draws: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """argmax of the mean over draws of softmax(net(x)); draws are site -> (S, ...)."""

    def probabilities(weights: dict[str, jax.Array]) -> jax.Array:
        return jax.nn.softmax(forward_jax(weights, x), axis=-1)

    return jnp.argmax(jnp.mean(jax.lax.map(probabilities, draws), axis=0), axis=-1)


def predictive_accuracy(draws: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of the predictive mean over the draws (site -> (S, ...)), one evaluation in JAX for every
    side."""
    labels = _predictive_labels({name: jnp.asarray(draws[name], jnp.float32) for name in LAYER_NAMES}, jnp.asarray(x))
    return float(np.mean(np.asarray(labels) == y))


def draws_from_meanfield(mu: dict[str, np.ndarray], sigma: dict[str, np.ndarray], num: int, seed: int) -> dict[str, np.ndarray]:
    """``num`` draws mu + sigma * eps per site (a local NumPy generator)."""
    rng = np.random.default_rng(seed)
    return {name: (mu[name] + sigma[name] * rng.standard_normal((num, *mu[name].shape))).astype(np.float32) for name in mu}


def side_record(*, steps: int, warm_seconds: float, warm_steps: int, first_seconds: float, accuracy: float,
                final_loss: float, **extra: Any) -> dict[str, Any]:
    """One row of the result: warm steps/s and ms/step, compile-or-first-step seconds, accuracy, loss."""
    return {"steps": steps, "warm_steps": warm_steps, "warm_seconds": warm_seconds,
            "steps_per_second_warm": warm_steps / warm_seconds, "ms_per_step_warm": 1e3 * warm_seconds / warm_steps,
            "compile_or_first_step_seconds": first_seconds, "test_accuracy": accuracy, "learned": accuracy > LEARNED,
            "final_loss": final_loss, **extra}


# -- JAX / Optax ---------------------------------------------------------------------------------------
def forward_jax(weights: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Logits (N, 10) of the ReLU net."""
    h = jax.nn.relu(x @ weights["w0"] + weights["b0"])
    h = jax.nn.relu(h @ weights["w1"] + weights["b1"])
    return h @ weights["w2"] + weights["b2"]


def log_prior_jax(w: jax.Array, prior: dict[str, Any]) -> jax.Array:
    """Sum over the entries of ``w`` of the prior's log density (iid N(0, s^2), or the two-scale mixture)."""
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    if prior["name"] == "iid_gaussian":
        s = prior["scale"]
        return jnp.sum(-0.5 * jnp.square(w / s)) - w.size * (math.log(s) + half_log_2pi)
    a = math.log(prior["pi"]) - 0.5 * jnp.square(w / prior["sigma1"]) - math.log(prior["sigma1"]) - half_log_2pi
    b = math.log(1 - prior["pi"]) - 0.5 * jnp.square(w / prior["sigma2"]) - math.log(prior["sigma2"]) - half_log_2pi
    return jnp.sum(jnp.logaddexp(a, b))


def jax_loop(data: dict[str, np.ndarray], prior: dict[str, Any], epochs: int, seed: int, init_loc: str, *,
             mode: str) -> dict[str, Any]:
    """Train by hand in JAX. ``mode``: ``scan`` (one jitted lax.scan per epoch), ``step`` (a jitted step called
    from Python) or ``deterministic`` (scan, no Bayesian parts). Returns the side's record."""
    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
    num_points = x.shape[0]
    per_epoch = num_points // BATCH
    total = epochs * per_epoch
    scale = num_points / BATCH
    bayesian = mode != "deterministic"
    mu = {name: jnp.asarray(value) for name, value in initial_mu(x.shape[1], seed, prior, init_loc).items()}
    rho0 = math.log(math.expm1(INIT_SIGMA))
    params = {"mu": mu, "rho": {name: jnp.full_like(value, rho0) for name, value in mu.items()}} if bayesian else {"mu": mu}
    options = schedule_options(total)
    optimizer = optax.chain(optax.clip_by_global_norm(options["clip_norm"]), optax.adam(learning_rate_schedule(options)))
    opt_state = optimizer.init(params)

    def loss_fn(params: Any, xb: jax.Array, yb: jax.Array, key: jax.Array) -> jax.Array:
        if not bayesian:
            log_p = jax.nn.log_softmax(forward_jax(params["mu"], xb))
            return -jnp.mean(jnp.take_along_axis(log_p, yb[:, None], axis=1))
        keys = dict(zip(LAYER_NAMES, jax.random.split(key, len(LAYER_NAMES)), strict=True))
        weights, log_q, log_prior = {}, 0.0, 0.0
        for name in LAYER_NAMES:
            sigma = jax.nn.softplus(params["rho"][name])
            eps = jax.random.normal(keys[name], sigma.shape)
            weights[name] = params["mu"][name] + sigma * eps
            log_q = log_q + jnp.sum(-0.5 * jnp.square(eps) - jnp.log(sigma)) - eps.size * 0.5 * math.log(2 * math.pi)
            log_prior = log_prior + log_prior_jax(weights[name], prior)
        log_p = jax.nn.log_softmax(forward_jax(weights, xb))
        log_lik = jnp.sum(jnp.take_along_axis(log_p, yb[:, None], axis=1))
        return log_q - log_prior - scale * log_lik

    def step(params: Any, opt_state: Any, xb: jax.Array, yb: jax.Array, key: jax.Array) -> Any:
        loss, grad = jax.value_and_grad(loss_fn)(params, xb, yb, key)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def epoch(params: Any, opt_state: Any, key: jax.Array, x: jax.Array, y: jax.Array) -> Any:
        order_key, step_key = jax.random.split(key)
        batches = jax.random.permutation(order_key, num_points)[: per_epoch * BATCH].reshape(per_epoch, BATCH)

        def body(carry: Any, inputs: Any) -> Any:
            index, k = inputs
            new_params, new_state, loss = step(*carry, x[index], y[index], k)
            return (new_params, new_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (batches, jax.random.split(step_key, per_epoch)))
        return params, opt_state, losses

    key = jax.random.key(seed)
    losses: list[np.ndarray] = []
    if mode == "step":
        start = time.perf_counter()
        compiled = jax.jit(step).lower(params, opt_state, x[:BATCH], y[:BATCH], key).compile()
        first = time.perf_counter() - start
        order = np.random.default_rng(seed)
        start = time.perf_counter()
        for e in range(epochs):
            perm = order.permutation(num_points)
            for i in range(per_epoch):
                index = jnp.asarray(perm[i * BATCH : (i + 1) * BATCH])
                params, opt_state, loss = compiled(params, opt_state, x[index], y[index],
                                                   jax.random.fold_in(key, e * per_epoch + i))
                losses.append(loss)
        jax.block_until_ready(params)
        warm = time.perf_counter() - start
        final_loss = float(np.mean(np.asarray(losses[-per_epoch:])))
    else:
        start = time.perf_counter()
        compiled = jax.jit(epoch).lower(params, opt_state, key, x, y).compile()
        first = time.perf_counter() - start
        start = time.perf_counter()
        for e in range(epochs):
            params, opt_state, epoch_losses = compiled(params, opt_state, jax.random.fold_in(key, e), x, y)
            losses.append(epoch_losses)
        jax.block_until_ready(params)
        warm = time.perf_counter() - start
        final_loss = float(np.mean(np.asarray(losses[-1])))
    mu = {name: np.asarray(value) for name, value in params["mu"].items()}
    if bayesian:
        sigma = {name: np.asarray(jax.nn.softplus(value)) for name, value in params["rho"].items()}
        draws = draws_from_meanfield(mu, sigma, PREDICTIVE_DRAWS, seed + 1)
    else:
        draws = {name: value[None] for name, value in mu.items()}
    accuracy = predictive_accuracy(draws, data["x_test"], data["y_test"])
    return side_record(steps=total, warm_seconds=warm, warm_steps=total, first_seconds=first, accuracy=accuracy,
                       final_loss=final_loss, prior=prior["name"] if bayesian else None,
                       timed="all steps after compilation" + (" (x[index] gathered on the host side of the jit)" if mode == "step" else ""))


# -- eager PyTorch -------------------------------------------------------------------------------------
def log_prior_torch(w: torch.Tensor, prior: dict[str, Any]) -> torch.Tensor:
    """The same sum of log prior densities as ``log_prior_jax``, in torch."""
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    if prior["name"] == "iid_gaussian":
        s = prior["scale"]
        return torch.sum(-0.5 * torch.square(w / s)) - w.numel() * (math.log(s) + half_log_2pi)
    a = math.log(prior["pi"]) - 0.5 * torch.square(w / prior["sigma1"]) - math.log(prior["sigma1"]) - half_log_2pi
    b = math.log(1 - prior["pi"]) - 0.5 * torch.square(w / prior["sigma2"]) - math.log(prior["sigma2"]) - half_log_2pi
    return torch.sum(torch.logaddexp(a, b))


def torch_loop(data: dict[str, np.ndarray], prior: dict[str, Any], epochs: int, seed: int, init_loc: str,
               threads: int) -> dict[str, Any]:
    """Bayes by Backprop in eager PyTorch at ``threads`` intra-op threads. Returns the side's record (the first
    step timed apart from the rest)."""

    def run() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(seed)
        x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"].astype(np.int64))
        num_points = x.shape[0]
        per_epoch = num_points // BATCH
        total = epochs * per_epoch
        scale = num_points / BATCH
        mu = {name: torch.tensor(value, requires_grad=True)
              for name, value in initial_mu(x.shape[1], seed, prior, init_loc).items()}
        rho = {name: torch.full_like(value, math.log(math.expm1(INIT_SIGMA))).requires_grad_(True) for name, value in mu.items()}
        leaves = [*mu.values(), *rho.values()]
        optimizer = torch.optim.Adam(leaves, lr=LEARNING_RATE)
        factors = lr_factors(total).tolist()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: factors[min(i, total)])
        clip = float(COMMON_DEFAULTS["clip_norm"])
        log_2pi_half = 0.5 * math.log(2 * math.pi)
        losses = []
        first = warm = 0.0
        for e in range(epochs):
            order = torch.randperm(num_points, generator=generator)
            for i in range(per_epoch):
                start = time.perf_counter()
                index = order[i * BATCH : (i + 1) * BATCH]
                xb, yb = x[index], y[index]
                weights, log_q, log_p = {}, 0.0, 0.0
                for name in LAYER_NAMES:
                    sigma = torch.nn.functional.softplus(rho[name])
                    eps = torch.randn(sigma.shape, generator=generator)
                    weights[name] = mu[name] + sigma * eps
                    log_q = log_q + torch.sum(-0.5 * eps * eps - torch.log(sigma)) - eps.numel() * log_2pi_half
                    log_p = log_p + log_prior_torch(weights[name], prior)
                h = torch.relu(xb @ weights["w0"] + weights["b0"])
                h = torch.relu(h @ weights["w1"] + weights["b1"])
                logits = h @ weights["w2"] + weights["b2"]
                log_lik = -torch.nn.functional.cross_entropy(logits, yb, reduction="sum")
                loss = log_q - log_p - scale * log_lik
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(leaves, clip)
                optimizer.step()
                scheduler.step()
                losses.append(loss.detach())
                seconds = time.perf_counter() - start
                if e == 0 and i == 0:
                    first = seconds
                else:
                    warm += seconds
        with torch.no_grad():
            mu_np = {name: value.numpy().copy() for name, value in mu.items()}
            sigma_np = {name: torch.nn.functional.softplus(value).numpy().copy() for name, value in rho.items()}
        accuracy = predictive_accuracy(draws_from_meanfield(mu_np, sigma_np, PREDICTIVE_DRAWS, seed + 1),
                                       data["x_test"], data["y_test"])
        final_loss = float(torch.stack(losses[-per_epoch:]).mean())
        return side_record(steps=total, warm_seconds=warm, warm_steps=total - 1, first_seconds=first, accuracy=accuracy,
                           final_loss=final_loss, prior=prior["name"], threads=threads,
                           timed="every step but the first (per-step wall clock, summed)")

    return with_threads(threads, run)


# -- Pyro and ours ---------------------------------------------------------------------------------------
def model_for(prior: dict[str, Any]) -> Callable[..., Any]:
    return functools.partial(bnn_mlp, widths=WIDTHS, prior=prior)


def pyro_side(data: dict[str, np.ndarray], prior: dict[str, Any], epochs: int, init_loc: str, elbo: str,
              threads: int) -> dict[str, Any]:
    """The ``pyro-svi`` backend (called as ``ppl_uq.fit`` would, after its data checks) on the same
    declaration. Returns the side's record; warm = every step after the first."""
    from ppl_uq.inference import pyro_svi

    options = resolve_options("pyro-svi", pyro_svi.DEFAULTS, {
        "batch_size": BATCH, "num_epochs": epochs, "learning_rate": LEARNING_RATE, "num_samples": PREDICTIVE_DRAWS,
        "elbo": elbo, "num_threads": threads, "init_loc": init_loc})
    pyro_svi.check_options(options)
    posterior = pyro_svi.fit(model_for(prior), data["x"], data["y"], rng_key=jax.random.key(0), options=options)
    cost = posterior.cost
    steps = int(cost["steps"])
    accuracy = predictive_accuracy(posterior.flat_draws(), data["x_test"], data["y_test"])
    return side_record(steps=steps, warm_seconds=cost["optimize_seconds"] - cost["first_step_seconds"],
                       warm_steps=steps - 1, first_seconds=cost["first_step_seconds"], accuracy=accuracy,
                       final_loss=float(posterior.loss_trace[-1]), prior=prior["name"], threads=threads,
                       elbo=elbo, cost=cost, timed="every step after the first (the first traces the model and, for "
                                                   "JitTrace_ELBO, compiles)")


def ours_side(data: dict[str, np.ndarray], prior: dict[str, Any], epochs: int, init_loc: str) -> dict[str, Any]:
    """``ppl_uq.fit("svi", ...)`` with the benchmark's settings (``init_loc`` passed only when not the
    default ``"median"``). Returns the side's record; warm = its ``optimize_seconds`` (the compiled epochs),
    first = its ``compile_seconds``."""
    start = time.perf_counter()
    extra = {} if init_loc == "median" else {"init_loc": init_loc}
    posterior = ppl_uq.fit("svi", model_for(prior), (data["x"], data["y"]), rng_key=jax.random.key(0),
                           guide="meanfield", batch_size=BATCH, num_epochs=epochs, learning_rate=LEARNING_RATE,
                           num_samples=OURS_DRAWS, **extra)
    call_seconds = time.perf_counter() - start
    cost = posterior.cost
    steps = int(posterior.info.get("steps", epochs * (data["x"].shape[0] // BATCH)))
    draws = {name: value[:PREDICTIVE_DRAWS] for name, value in posterior.flat_draws().items()}
    accuracy = predictive_accuracy(draws, data["x_test"], data["y_test"])
    accuracy_all = predictive_accuracy(posterior.flat_draws(), data["x_test"], data["y_test"])
    return side_record(steps=steps, warm_seconds=cost["optimize_seconds"], warm_steps=steps,
                       first_seconds=cost.get("compile_seconds", float("nan")), accuracy=accuracy,
                       final_loss=float(posterior.loss_trace[-1]), prior=prior["name"], cost=cost,
                       call_seconds=call_seconds, non_training_seconds=call_seconds - cost["optimize_seconds"],
                       test_accuracy_all_draws=accuracy_all, num_draws=posterior.num_samples,
                       timed="cost['optimize_seconds'] (the compiled epochs); first = cost['compile_seconds']")


# -- the run -------------------------------------------------------------------------------------------
def ratio(result: dict[str, Any], slow: str, fast: str) -> float | None:
    """ms/step of side ``slow`` over side ``fast`` (None when either is missing)."""
    sides = result["sides"]
    if slow not in sides or fast not in sides:
        return None
    return sides[slow]["ms_per_step_warm"] / sides[fast]["ms_per_step_warm"]


def best_of(result: dict[str, Any], prefix: str) -> str | None:
    """The fastest side whose name starts with ``prefix`` (scale-mixture prior), or None."""
    names = [n for n in result["sides"] if n.startswith(prefix) and not n.endswith("-gaussian")]
    return min(names, key=lambda n: result["sides"][n]["ms_per_step_warm"]) if names else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of batches of 128 for every side (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['train_points']} training and {QUICK['test_points']} test points (a smoke test)")
    parser.add_argument("--train-points", type=int, default=None, help="override the training points used")
    parser.add_argument("--test-points", type=int, default=None, help="override the test points scored")
    parser.add_argument("--skip-ours", action="store_true", help="leave out ppl_uq.fit('svi', ...)")
    parser.add_argument("--skip-pyro", action="store_true", help="leave out the Pyro SVI sides")
    parser.add_argument("--pyro-threads", type=int, default=1, help="torch threads for the Pyro sides (default 1)")
    parser.add_argument("--wait-idle", type=float, default=0.0,
                        help="minutes to wait, before timing, for no pytest and a 1-minute load below 1.5")
    parser.add_argument("--init-loc", choices=("median", "glorot"), default="median",
                        help="starting locations of every side: the median of 15 prior draws (default; ours' default) "
                             "or Glorot-uniform weights and zero biases (init_loc='glorot')")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hand-written loops")
    parser.add_argument("--out", default=None, help="JSON path (default results/bnn_training[_quick].json)")
    args = parser.parse_args(argv)
    config = dict(QUICK) if args.quick else {"train_points": None, "test_points": None}
    for name in ("train_points", "test_points"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if args.epochs < 1 or args.pyro_threads < 1 or args.wait_idle < 0 or any(
            v is not None and v < 1 for v in config.values()):
        parser.error("--epochs, --pyro-threads, --train-points and --test-points must be positive, --wait-idle >= 0")
    out = Path(args.out) if args.out else RESULTS / ("bnn_training_quick.json" if args.quick else "bnn_training.json")
    data = load_data(config["train_points"], config["test_points"])
    if data["x"].shape[0] < BATCH:
        parser.error(f"need at least {BATCH} training points")
    idle = wait_for_quiet_machine(args.wait_idle) if args.wait_idle > 0 else None
    load_start = os.getloadavg()
    epochs, seed, init = args.epochs, args.seed, args.init_loc
    runs: dict[str, Callable[[], dict[str, Any]]] = {}
    if not args.skip_ours:
        runs["ours"] = functools.partial(ours_side, data, PRIORS["scale_mixture"], epochs, init)
        runs["ours-gaussian"] = functools.partial(ours_side, data, PRIORS["gaussian"], epochs, init)
    runs["jax-scan"] = functools.partial(jax_loop, data, PRIORS["scale_mixture"], epochs, seed, init, mode="scan")
    runs["jax-scan-gaussian"] = functools.partial(jax_loop, data, PRIORS["gaussian"], epochs, seed, init, mode="scan")
    runs["jax-step"] = functools.partial(jax_loop, data, PRIORS["scale_mixture"], epochs, seed, init, mode="step")
    runs["jax-deterministic"] = functools.partial(jax_loop, data, PRIORS["scale_mixture"], epochs, seed, init, mode="deterministic")
    runs["torch-eager-1t"] = functools.partial(torch_loop, data, PRIORS["scale_mixture"], epochs, seed, init, 1)
    runs["torch-eager-2t"] = functools.partial(torch_loop, data, PRIORS["scale_mixture"], epochs, seed, init, 2)
    runs["torch-eager-1t-gaussian"] = functools.partial(torch_loop, data, PRIORS["gaussian"], epochs, seed, init, 1)
    if not args.skip_pyro:
        runs["pyro-trace"] = functools.partial(pyro_side, data, PRIORS["scale_mixture"], epochs, init, "trace", args.pyro_threads)
        runs["pyro-jit"] = functools.partial(pyro_side, data, PRIORS["scale_mixture"], epochs, init, "jit-trace", args.pyro_threads)
    sides: dict[str, Any] = {}
    for name, run in runs.items():
        print(f"[bnn_training] {name} ...", flush=True)
        sides[name] = {**run(), "load_average_after": os.getloadavg()}
        print(f"[bnn_training] {name}: {sides[name]['ms_per_step_warm']:.2f} ms/step, "
              f"accuracy {sides[name]['test_accuracy']:.3f}", flush=True)
    result: dict[str, Any] = {
        "benchmark": "bnn_training",
        "config": {"epochs": epochs, "batch_size": BATCH, "learning_rate": LEARNING_RATE, "widths": WIDTHS,
                   "train_points": int(data["x"].shape[0]), "test_points": int(data["x_test"].shape[0]),
                   "steps_per_side": epochs * (data["x"].shape[0] // BATCH), "predictive_draws": PREDICTIVE_DRAWS,
                   "priors": PRIORS, "init_sigma": INIT_SIGMA, "init_loc": init, "schedule": "warm-up 5%, cosine to 1% of the peak",
                   "clip_norm": COMMON_DEFAULTS["clip_norm"], "data_source": data["source"], "seed": seed,
                   "quick": args.quick},
        "sides": sides,
    }
    torch_best, pyro_best = best_of(result, "torch-eager"), best_of(result, "pyro")
    result["ratios_time_per_step"] = {
        "note": "ms/step of the first over the second; above 1: the first is slower",
        "ours_over_jax_scan": ratio(result, "ours", "jax-scan"),
        "ours_over_torch_best": ratio(result, "ours", torch_best) if torch_best else None, "torch_best": torch_best,
        "ours_over_pyro_best": ratio(result, "ours", pyro_best) if pyro_best else None, "pyro_best": pyro_best,
        "ours_over_jax_step": ratio(result, "ours", "jax-step"),
        "jax_scan_over_jax_deterministic": ratio(result, "jax-scan", "jax-deterministic"),
        "torch_2t_over_1t": ratio(result, "torch-eager-2t", "torch-eager-1t"),
        "pyro_trace_over_jit": ratio(result, "pyro-trace", "pyro-jit"),
        "scale_mixture_over_gaussian": {
            "ours": ratio(result, "ours", "ours-gaussian"),
            "jax_scan": ratio(result, "jax-scan", "jax-scan-gaussian"),
            "torch_eager_1t": ratio(result, "torch-eager-1t", "torch-eager-1t-gaussian"),
        },
    }
    result["all_learned"] = all(side["learned"] for side in sides.values())
    result["environment"] = {
        "jax": jax.__version__, "torch": torch.__version__, "numpy": np.__version__, "optax": optax.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_start": load_start, "load_average_end": os.getloadavg(), "wait_for_quiet_machine": idle,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "note": "one training run per side on a shared CPU; load averages are (1, 5, 15) min",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, result)
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    config = result["config"]
    print(f"Bayes by Backprop, Fashion-MNIST 784-100-100-10, {config['train_points']} points, {config['epochs']} epoch(s) "
          f"of batches of {config['batch_size']} = {config['steps_per_side']} steps per side")
    print(f"{'side':<26}{'steps/s':>10}{'ms/step':>10}{'compile/first s':>17}{'test acc':>10}{'final loss':>14}")
    for name, side in result["sides"].items():
        print(f"{name:<26}{side['steps_per_second_warm']:>10.1f}{side['ms_per_step_warm']:>10.2f}"
              f"{side['compile_or_first_step_seconds']:>17.2f}{side['test_accuracy']:>10.3f}{side['final_loss']:>14.5g}")
    for name, value in result["ratios_time_per_step"].items():
        if isinstance(value, float):
            print(f"{name:<40}{value:>8.2f}")
        elif isinstance(value, dict):
            print(name + ": " + ", ".join(f"{k} {v:.2f}" for k, v in value.items() if v is not None))


if __name__ == "__main__":
    main()
