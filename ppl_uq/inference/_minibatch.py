"""Minibatch training for the backends that optimise (``map``, ``laplace``, ``deep-ensemble``,
``bootstrap``, ``mc-dropout``; ``svi`` and ``ml-mixture`` use the schedule and early stopping from here
with NumPyro's ``SVI`` step).

With option ``batch_size`` = B set, a backend replaces its full-data L-BFGS by Adam on minibatches:

* the objective of one batch is ``-[log p(theta) + log|J| + (N/B) sum_{n in batch} w_n log p(y_n | x_n, theta)]``
  in NumPyro's unconstrained space, an unbiased estimate of the full negative log joint (``w_n`` = 1, or
  the bootstrap count of point n);
* every epoch reshuffles the training points with a key derived from the fit's key and the epoch
  number, and runs floor(N/B) batches of exactly B points (the remainder sits out that epoch and is
  drawn into a later one); an epoch is one compiled ``lax.scan``, vmapped over ensemble members;
* with ``validation_fraction`` > 0 that share of the data is held out (a fixed split by key, never
  trained on); after each epoch its mean negative log-likelihood is computed, the best parameters so
  far are kept, and training stops once no member has improved for ``patience`` epochs (seed 004: 5).
  The returned parameters are each member's best; without validation, the last.

The loss trace is per epoch (the mean batch objective). Per-datum log-likelihoods are read from the
observed sites' log-probabilities, which must carry the data along their first axis (observe ``y``
inside a plate over the data, as every model in the zoo does).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import Unit, constraints
from numpyro.distributions.transforms import biject_to
from numpyro.primitives import Messenger

from ._common import numpyro_model, stopwatch
from ._options import check_choice, check_int, check_positive

#: Options every minibatch-capable backend accepts. ``batch_size`` None keeps the backend's full-data path.
MINIBATCH_DEFAULTS: dict[str, Any] = {
    "batch_size": None,
    "num_epochs": 20,
    "validation_fraction": 0.0,
    "patience": 5,
}

#: Extra options of the backends that train by Adam on minibatches (``learning_rate`` is Adam's step size).
ADAM_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-3, "lr_schedule": "cosine", "init_loc": "median"}

#: Step-size schedules of the Adam trainer: ``cosine`` decays ``learning_rate`` to 1 % of it at the last
#: step of ``num_epochs`` (the minibatch noise around the optimum shrinks with it; on a conjugate regression
#: constant steps left the MAP 0.13 posterior sd away, cosine 0.01); ``constant`` keeps it.
LR_SCHEDULES: tuple[str, ...] = ("cosine", "constant")

#: Starting points for the network weights (see ``initial_point``).
INIT_LOCS: tuple[str, ...] = ("median", "glorot", "truncated-prior")
#: Prior draws that estimate a real site's prior mean and sd where its distribution has no moments (``prior_moments``).
PRIOR_SD_DRAWS = 4
#: The standard deviation of a unit normal truncated at ±2.
TRUNCATED_UNIT_SD = 0.879596


def check_minibatch_options(options: dict[str, Any]) -> None:
    """Validate ``batch_size`` (None or an int >= 1), ``num_epochs``, ``patience`` (ints >= 1) and
    ``validation_fraction`` (in [0, 1))."""
    if options["batch_size"] is not None:
        check_int(options, "batch_size")
    check_int(options, "num_epochs", "patience")
    fraction = options["validation_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"option 'validation_fraction' must lie in [0, 1), got {fraction!r}")


def check_adam_options(options: dict[str, Any]) -> None:
    """Validate the options of a backend that trains by ``train_members``: the minibatch options, and
    Adam's ``learning_rate`` (> 0), ``lr_schedule`` (one of ``LR_SCHEDULES``) and, where the backend has
    it, ``init_loc`` (one of ``INIT_LOCS``)."""
    check_minibatch_options(options)
    check_positive(options, "learning_rate")
    check_choice(options, "lr_schedule", LR_SCHEDULES)
    if "init_loc" in options:
        check_choice(options, "init_loc", INIT_LOCS)


class WeightObserved(Messenger):
    """Multiply the log-likelihood of every observed sample site by per-point ``weights`` (N,).

    An observed site's log-probability must have the data axis N as its rightmost batch dimension
    (the model observes ``y`` inside a ``plate`` of size N); ``factor`` sites are left alone.
    """

    def __init__(self, fn: Callable[..., Any] | None = None, weights: Any = None) -> None:
        super().__init__(fn)
        self.weights = weights

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or not msg["is_observed"] or isinstance(msg["fn"], Unit):
            return
        batch_shape = tuple(msg["fn"].batch_shape)
        num_points = self.weights.shape[-1]
        if batch_shape[-1:] != (num_points,):
            raise ValueError(
                f"observed site {msg['name']!r} has batch shape {batch_shape}; its "
                f"rightmost batch dimension must be the {num_points} data points (observe y in a plate)"
            )
        msg["scale"] = self.weights if msg["scale"] is None else msg["scale"] * self.weights


class TrainSplit(NamedTuple):
    """The training points ``(x, y)`` and the held-out validation points (None without validation)."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, rng_key: jax.Array, batch_size: int) -> TrainSplit:
    """Hold out ``round(fraction * N)`` points chosen by ``jax.random.permutation(rng_key, N)`` (the first
    ones of the permutation); ``ValueError`` when the rest is smaller than ``batch_size``."""
    num_points = x.shape[0]
    num_val = int(round(fraction * num_points))
    if fraction > 0 and num_val == 0:
        raise ValueError(f"validation_fraction={fraction} of {num_points} points holds out no point; raise it or pass 0")
    if num_points - num_val < batch_size:
        raise ValueError(
            f"option 'batch_size'={batch_size} exceeds the {num_points - num_val} training points "
            f"({num_points} minus {num_val} held out for validation)"
        )
    if num_val == 0:
        return TrainSplit(x, y, None, None)
    order = np.asarray(jax.random.permutation(rng_key, num_points))
    val, train = order[:num_val], np.sort(order[num_val:])
    return TrainSplit(x[train], y[train], x[val], y[val])


class LogJoint(NamedTuple):
    """A model's log joint in one flat unconstrained vector, split into prior and per-datum terms.

    ``init`` (P,) the ``init_to_median`` start; ``unravel(z)`` the unconstrained sites; ``constrain(z)
    -> (sites, log_det)`` the constrained latent sites and the log-Jacobian of the map;
    ``terms(sites, log_det, x, y, lik_sites=None) -> (log_prior (), log_lik (B,))``: the log prior (with
    log_det) at ``sites`` and the per-datum log-likelihood at ``lik_sites`` (default ``sites``; MC dropout
    passes masked weights there); ``shapes`` the constrained shape of each latent site; ``priors`` each
    latent site's prior distribution as the model's first run built it.
    """

    init: jax.Array
    unravel: Callable[[jax.Array], dict[str, jax.Array]]
    constrain: Callable[[jax.Array], tuple[dict[str, jax.Array], jax.Array]]
    terms: Callable[..., tuple[jax.Array, jax.Array]]
    shapes: dict[str, tuple[int, ...]]
    supports: dict[str, Any]
    priors: dict[str, Any]


def log_joint(model: Callable[..., Any], x: Any, y: Any, rng_key: jax.Array) -> LogJoint:
    """Build the ``LogJoint`` of ``model`` from one eager run on ``(x, y)`` whose latent sites take
    NumPyro's ``init_to_median`` values (the median of 15 prior draws, site by site). No compilation:
    NumPyro's ``initialize_model`` takes 5-20 s here for a small MLP, this a fraction of a second."""
    from numpyro.infer import init_to_median

    nmodel = numpyro_model(model)
    seeded = handlers.seed(nmodel, rng_seed=rng_key)
    prototype = handlers.trace(handlers.substitute(seeded, substitute_fn=init_to_median(num_samples=15))).get_trace(x, y)
    latent = {name: site for name, site in prototype.items() if site["type"] == "sample" and not site["is_observed"]}
    if not latent:
        raise ValueError("the model has no latent sample site to infer")
    transforms = {name: biject_to(site["fn"].support) for name, site in latent.items()}
    init, unravel = ravel_pytree({name: transforms[name].inv(site["value"]) for name, site in latent.items()})
    if not bool(jnp.all(jnp.isfinite(init))):
        raise ValueError("the model's starting point (the median of 15 prior draws) is not finite in the unconstrained space")

    def constrain(z: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
        unconstrained = unravel(z)
        sites, log_det = {}, jnp.zeros((), z.dtype)
        for name, transform in transforms.items():
            sites[name] = transform(unconstrained[name])
            if not _is_identity(transform):
                log_det = log_det + jnp.sum(transform.log_abs_det_jacobian(unconstrained[name], sites[name]))
        return sites, log_det

    def terms(sites: dict[str, jax.Array], log_det: jax.Array, xb: Any, yb: Any,
              lik_sites: dict[str, jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
        substituted = handlers.substitute(handlers.seed(nmodel, rng_seed=0), data=lik_sites or sites)
        model_trace = handlers.trace(substituted).get_trace(xb, yb)
        log_prior, log_lik = log_det, None
        for name, site in model_trace.items():
            if site["type"] != "sample":
                continue
            scale = 1.0 if site["scale"] is None else site["scale"]
            if not site["is_observed"]:
                log_prior = log_prior + jnp.sum(scale * site["fn"].log_prob(sites[name]))
                continue
            per_point = scale * site["fn"].log_prob(site["value"])
            if isinstance(site["fn"], Unit):  # a factor: not a per-datum term
                log_prior = log_prior + jnp.sum(per_point)
                continue
            per_point = _per_datum(name, per_point, xb.shape[0])
            log_lik = per_point if log_lik is None else log_lik + per_point
        if log_lik is None:
            raise ValueError("minibatch training needs observed data: the model has no observed sample site")
        return log_prior, log_lik

    shapes = {name: tuple(np.shape(site["value"])) for name, site in latent.items()}
    supports = {name: site["fn"].support for name, site in latent.items()}
    priors = {name: site["fn"] for name, site in latent.items()}
    return LogJoint(init, unravel, constrain, terms, shapes, supports, priors)


def prior_moments(joint: LogJoint, name: str, rng_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The prior mean and standard deviation of site ``name``, each pooled over its entries (scalars): from
    the distribution's ``mean`` and ``variance`` (the root of the mean variance), or, for a prior without
    them, from ``PRIOR_SD_DRAWS`` prior draws (4 draws of a 784 x 100 matrix pin the sd to ~0.1 %)."""
    prior = joint.priors[name]
    try:
        return jnp.mean(prior.mean), jnp.sqrt(jnp.mean(prior.variance))
    except NotImplementedError:
        draws = prior.sample(rng_key, (PRIOR_SD_DRAWS,))
        return jnp.mean(draws), jnp.std(draws)


def _base_support(support: Any) -> Any:
    return support.base_constraint if isinstance(support, constraints.independent) else support


def _is_identity(transform: Any) -> bool:
    from numpyro.distributions.transforms import IdentityTransform, IndependentTransform

    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, IdentityTransform)


def _per_datum(name: str, log_prob: jax.Array, num_points: int) -> jax.Array:
    """Reduce an observed site's log-probability to one number per datum, (B,)."""
    if jnp.ndim(log_prob) == 0 or log_prob.shape[0] != num_points:
        raise ValueError(
            f"observed site {name!r} has log-probability shape {jnp.shape(log_prob)}; minibatch training needs "
            f"one term per data point along the first axis ({num_points}): observe y inside a plate over the data"
        )
    return jnp.sum(jnp.reshape(log_prob, (num_points, -1)), axis=1)


def is_matrix_site(shape: tuple[int, ...], support: Any) -> bool:
    """A real-valued latent site of rank 2 (a weight matrix (fan_in, fan_out))."""
    base = support.base_constraint if isinstance(support, constraints.independent) else support
    return len(shape) == 2 and base is constraints.real


def initial_point(joint: LogJoint, rng_key: jax.Array, how: str) -> jax.Array:
    """A starting point (P,) in the flat unconstrained space.

    ``"median"``: the coordinate-wise median of 15 prior draws (NumPyro's ``init_to_median``, what
    NUTS starts from). ``"glorot"``: every real matrix site (fan_in, fan_out) uniform on
    ±sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio), every real vector site 0, other sites at the
    median; the usual start for a network, whose prior draws are far too large for training to begin well.
    ``"truncated-prior"``: every real site from a normal truncated at ±2 of its scale, with the mean and
    sd of the site's prior (``prior_moments``), other sites at the median: seed 004's start for Bayes by
    Backprop, which gives the mean weights a signal that a large starting sigma does not drown.
    """
    if how == "median":
        return joint.init
    if how not in INIT_LOCS:
        raise ValueError(f"init_loc must be one of {list(INIT_LOCS)}, got {how!r}")
    build = {"glorot": _glorot_start, "truncated-prior": _truncated_prior_start}[how]
    start = jax.jit(functools.partial(build, joint))(rng_key)  # one compiled program, not one per eager op
    flat, _ = ravel_pytree(start)
    return flat


def _glorot_start(joint: LogJoint, rng_key: jax.Array) -> dict[str, jax.Array]:
    sites = joint.unravel(joint.init)
    keys = jax.random.split(rng_key, len(sites))
    start = {}
    for key, (name, value) in zip(keys, sorted(sites.items()), strict=True):
        shape, support = joint.shapes[name], joint.supports[name]
        if is_matrix_site(shape, support):
            limit = math.sqrt(6.0 / (shape[0] + shape[1]))
            start[name] = jax.random.uniform(key, shape, value.dtype, -limit, limit)
        elif len(shape) == 1 and _base_support(support) is constraints.real:
            start[name] = jnp.zeros(shape, value.dtype)
        else:
            start[name] = value
    return start


def _truncated_prior_start(joint: LogJoint, rng_key: jax.Array) -> dict[str, jax.Array]:
    sites = joint.unravel(joint.init)
    keys = jax.random.split(rng_key, len(sites))
    start = {}
    for key, (name, value) in zip(keys, sorted(sites.items()), strict=True):
        if _base_support(joint.supports[name]) is constraints.real:  # a unit normal cut at ±2 has sd 0.8796
            key_draw, key_moments = jax.random.split(key)
            draw = jax.random.truncated_normal(key_draw, -2.0, 2.0, joint.shapes[name], value.dtype)
            mean, sd = prior_moments(joint, name, key_moments)
            start[name] = mean + draw * (sd / TRUNCATED_UNIT_SD)
        else:
            start[name] = value
    return start


def batch_objective(joint: LogJoint, data_scale: float,
                    perturb: Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]] | None = None
                    ) -> Callable[..., jax.Array]:
    """``objective(z, xb, yb, wb, key) -> ()``: minus [log prior + log|J| + data_scale * sum(wb * log_lik)]
    for a batch (wb (B,) per-point weights). ``perturb(sites, key)``, when given, replaces the sites the
    likelihood sees (MC dropout's masks); the prior always sees the unperturbed sites."""

    def objective(z: jax.Array, xb: jax.Array, yb: jax.Array, wb: jax.Array, key: jax.Array) -> jax.Array:
        sites, log_det = joint.constrain(z)
        lik_sites = None if perturb is None else perturb(sites, key)
        log_prior, log_lik = joint.terms(sites, log_det, xb, yb, lik_sites)
        return -(log_prior + data_scale * jnp.sum(wb * log_lik))

    return objective


def mean_nll(joint: LogJoint, z: jax.Array, x: jax.Array, y: jax.Array, batch: int = 2048) -> jax.Array:
    """The mean negative log-likelihood per point of ``(x, y)`` at ``z`` (P,), in chunks of ``batch``."""
    sites, log_det = joint.constrain(z)
    num = x.shape[0]
    total = jnp.zeros((), jnp.float32)
    for start in range(0, num, batch):
        _, log_lik = joint.terms(sites, log_det, x[start : start + batch], y[start : start + batch])
        total = total + jnp.sum(log_lik)
    return -total / num


class MinibatchResult(NamedTuple):
    """The outcome of minibatch training of M members.

    ``params`` (M, P) each member's returned parameters (best on validation, else last);
    ``epoch_loss`` (M, E) the mean batch objective per epoch; ``val_nll`` (M, E) the validation mean
    negative log-likelihood per epoch (None without validation); ``best_epoch`` (M,) 0-based;
    ``stopped_early`` whether patience ran out before ``num_epochs``; ``num_steps`` Adam steps per member.
    """

    params: np.ndarray
    epoch_loss: np.ndarray
    val_nll: np.ndarray | None
    best_epoch: np.ndarray
    stopped_early: bool
    num_steps: int


def epoch_indices(rng_key: jax.Array, num_points: int, batch_size: int) -> jax.Array:
    """Indices (num_points // batch_size, batch_size): a fresh permutation cut into full batches."""
    num_batches = num_points // batch_size
    return jax.random.permutation(rng_key, num_points)[: num_batches * batch_size].reshape(num_batches, batch_size)


def train_members(
    objective: Callable[..., jax.Array],
    inits: jax.Array,
    split: TrainSplit,
    *,
    rng_key: jax.Array,
    options: dict[str, Any],
    cost: dict[str, float],
    joint: LogJoint,
    member_weights: jax.Array | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> MinibatchResult:
    """Train M members (``inits`` (M, P)) by Adam on minibatches of ``split`` (see the module docstring).

    ``objective(z, xb, yb, wb, key)`` is one batch's loss (``batch_objective``), already scaled to the
    whole training set; ``member_weights`` (M, N_train) optional per-member per-point weights (the
    bootstrap counts). Each member gets its own shuffling and dropout keys (fold_in of ``rng_key`` by
    member index and epoch). Compile and run times go into ``cost``; ``say`` prints per-epoch progress.
    """
    batch_size, num_epochs, patience = options["batch_size"], options["num_epochs"], options["patience"]
    x, y = jnp.asarray(split.x), jnp.asarray(split.y)
    num_members, num_train = inits.shape[0], x.shape[0]
    weights = jnp.ones((num_members, num_train), jnp.float32) if member_weights is None else jnp.asarray(member_weights)
    total_steps = num_epochs * (num_train // batch_size)
    if options["lr_schedule"] == "constant":
        optimizer = optax.adam(float(options["learning_rate"]))
    else:
        optimizer = optax.adam(optax.cosine_decay_schedule(float(options["learning_rate"]), total_steps, alpha=0.01))
    member_keys = jax.vmap(lambda m: jax.random.fold_in(rng_key, m))(jnp.arange(num_members))

    def member_epoch(params: jax.Array, opt_state: Any, key: jax.Array, w: jax.Array, x: jax.Array, y: jax.Array) -> Any:
        shuffle_key, step_key = jax.random.split(key)
        batches = epoch_indices(shuffle_key, num_train, batch_size)
        step_keys = jax.random.split(step_key, batches.shape[0])

        def step(carry: Any, inputs: Any) -> Any:
            params, opt_state = carry
            index, key = inputs
            loss, grad = jax.value_and_grad(objective)(params, x[index], y[index], w[index], key)
            updates, opt_state = optimizer.update(grad, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (batches, step_keys))
        return params, opt_state, jnp.mean(losses), jnp.all(jnp.isfinite(losses))

    epoch = jax.jit(jax.vmap(member_epoch, in_axes=(0, 0, 0, 0, None, None)))
    opt_state = jax.vmap(optimizer.init)(inits)
    params = inits
    validate = None
    if split.x_val is not None:
        x_val, y_val = jnp.asarray(split.x_val), jnp.asarray(split.y_val)
        validate = jax.jit(jax.vmap(lambda z: mean_nll(joint, z, x_val, y_val)))
    epoch_losses, val_losses = [], []
    best_params, best_val = np.asarray(inits), np.full(num_members, np.inf)
    best_epoch, since_best = np.zeros(num_members, int), np.zeros(num_members, int)
    with stopwatch(cost, "compile_seconds"):
        keys0 = jax.vmap(lambda k: jax.random.fold_in(k, 0))(member_keys)
        compiled = epoch.lower(params, opt_state, keys0, weights, x, y).compile()
    stopped_early = False
    for index in range(num_epochs):
        keys = jax.vmap(lambda k, i=index: jax.random.fold_in(k, i))(member_keys)
        with stopwatch(cost, "optimize_seconds"):
            params, opt_state, loss, finite = jax.block_until_ready(compiled(params, opt_state, keys, weights, x, y))
        if not bool(jnp.all(finite)):
            from ._variational import InferenceDivergenceError

            trace = np.asarray(epoch_losses + [np.asarray(loss)])
            raise InferenceDivergenceError(
                f"minibatch training diverged in epoch {index + 1}: a batch loss was NaN or inf "
                f"(learning_rate={options['learning_rate']}); lower learning_rate",
                step=index + 1, loss=float(np.max(np.asarray(loss))), loss_trace=trace,
            )
        epoch_losses.append(np.asarray(loss))
        message = f"epoch {index + 1}/{num_epochs}: loss {float(np.mean(loss)):.5g}"
        if validate is not None:
            with stopwatch(cost, "validation_seconds"):
                val = np.asarray(validate(params))
            val_losses.append(val)
            improved = val < best_val
            best_val = np.where(improved, val, best_val)
            best_params = np.where(improved[:, None], np.asarray(params), best_params)
            best_epoch = np.where(improved, index, best_epoch)
            since_best = np.where(improved, 0, since_best + 1)
            message += f", validation NLL {float(np.mean(val)):.4f}"
            if np.all(since_best >= patience):
                say(message + f" (no improvement for {patience} epochs: stopping)")
                stopped_early = index + 1 < num_epochs
                break
        say(message)
    epochs_run = len(epoch_losses)
    if validate is None:
        best_params, best_epoch = np.asarray(params), np.full(num_members, epochs_run - 1)
    return MinibatchResult(
        params=best_params,
        epoch_loss=np.stack(epoch_losses, axis=1),
        val_nll=None if validate is None else np.stack(val_losses, axis=1),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        num_steps=epochs_run * (num_train // batch_size),
    )


def train_point_estimates(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    rng_key: jax.Array,
    options: dict[str, Any],
    cost: dict[str, float],
    num_members: int = 1,
    starts: Callable[[LogJoint, jax.Array, int], jax.Array] | None = None,
    member_weights: Callable[[jax.Array, int, int], jax.Array] | None = None,
    make_perturb: Callable[[LogJoint], Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]]] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> tuple[LogJoint, MinibatchResult]:
    """Hold out the validation split, build the model's ``LogJoint`` and train ``num_members`` point
    estimates by minibatch Adam (the minibatch path of ``map``, ``deep-ensemble``, ``bootstrap``,
    ``mc-dropout`` and ``laplace``).

    ``starts(joint, key, M) -> (M, P)`` gives the starting points (default: ``initial_point`` with
    option ``init_loc``, the same for every member); ``member_weights(key, M, N_train) -> (M, N_train)``
    per-point weights (the bootstrap counts); ``make_perturb(joint)`` the ``perturb`` of ``batch_objective``
    for this model (it may raise, before any training, for a model it cannot serve).
    Returns the ``LogJoint`` and the ``MinibatchResult``.
    """
    key_split, key_joint, key_init, key_weights, key_train = jax.random.split(rng_key, 5)
    split = split_validation(x, y, options["validation_fraction"], key_split, options["batch_size"])
    joint = log_joint(model, jnp.asarray(split.x), jnp.asarray(split.y), key_joint)
    if starts is None:
        start = initial_point(joint, key_init, options.get("init_loc", "median"))
        inits = jnp.broadcast_to(start, (num_members, start.shape[0]))
    else:
        inits = starts(joint, key_init, num_members)
    weights = None if member_weights is None else member_weights(key_weights, num_members, split.x.shape[0])
    perturb = None if make_perturb is None else make_perturb(joint)
    objective = batch_objective(joint, split.x.shape[0] / options["batch_size"], perturb)
    result = train_members(objective, inits, split, rng_key=key_train, options=options, cost=cost, joint=joint,
                           member_weights=weights, say=say)
    return joint, result


def constrained_draws(joint: LogJoint, params: Any) -> dict[str, np.ndarray]:
    """Constrained latent sites of flat vectors (M, P), each shaped (1, M, ...)."""
    sites = jax.jit(jax.vmap(lambda z: joint.constrain(z)[0]))(jnp.asarray(params))
    return {name: np.asarray(value)[None] for name, value in sites.items()}


def minibatch_info(result: MinibatchResult, options: dict[str, Any]) -> dict[str, Any]:
    """What ``Posterior.info`` reports about minibatch training: epochs, steps, the early-stopping state
    and a convergence verdict. ``converged`` is True when validation stopped improving (patience ran out),
    or, without validation, when the last epochs' mean loss no longer falls (``_variational.loss_convergence``
    on the per-epoch losses, averaged over members)."""
    from ._variational import loss_convergence

    epochs_run = result.epoch_loss.shape[1]
    info: dict[str, Any] = {
        "training": "minibatch-adam",
        "batch_size": options["batch_size"],
        "epochs_run": epochs_run,
        "steps": result.num_steps,
        "stopped_early": result.stopped_early,
        "final_loss": float(np.mean(result.epoch_loss[:, -1])),
    }
    if result.val_nll is not None:
        info["best_epoch"] = [int(e) for e in result.best_epoch]
        info["best_validation_nll"] = float(np.mean(np.min(result.val_nll, axis=1)))
        info["converged"] = bool(result.stopped_early)
    else:
        info.update(loss_convergence(np.mean(result.epoch_loss, axis=0)))
    return info


__all__ = [
    "ADAM_DEFAULTS",
    "INIT_LOCS",
    "LogJoint",
    "MINIBATCH_DEFAULTS",
    "MinibatchResult",
    "PRIOR_SD_DRAWS",
    "TRUNCATED_UNIT_SD",
    "TrainSplit",
    "WeightObserved",
    "batch_objective",
    "check_adam_options",
    "check_minibatch_options",
    "constrained_draws",
    "epoch_indices",
    "initial_point",
    "is_matrix_site",
    "log_joint",
    "mean_nll",
    "minibatch_info",
    "prior_moments",
    "split_validation",
    "train_members",
    "train_point_estimates",
]
