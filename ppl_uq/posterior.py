"""The Posterior: the one interface between inference backends and the harness.

Every backend returns one. It holds draws of every latent site shaped (chain, draw, ...), the method and
its resolved options, per-draw sample statistics (divergences, tree depth, ... for MCMC), optimiser loss
traces, cost, and can (1) evaluate log p(y | x, theta_s) for all draws, (2) convert itself to ArviZ
InferenceData, (3) make an independent posterior by the same method (``redraw``), and (4) save itself to an
ArviZ NetCDF file that ``load_posterior`` reads back in any process (never a pickle).

Kinds (``Posterior.kind``, each backend module's ``KIND``), the family a method's draws come from:

- ``"mcmc"``: Markov chains (``nuts``, ``slice``, ``pyro-nuts``); R-hat / ESS / divergences apply.
- ``"optimisation"``: a point estimate (``map``).
- ``"variational"``: draws from a fitted approximating distribution q (``svi``, ``ml-mixture``, and
  ``laplace``: its q is the Gaussian at the MAP).
- ``"ensemble"``: one optimum per member (``bootstrap``, ``deep-ensemble``).

The file (``Posterior.save``): the groups of ``to_inference_data()`` (``posterior``, ``sample_stats``,
``observed_data`` (y), ``loss_trace``), plus ``constant_data`` (x, the inputs the posterior was fitted
to, which ``redraw`` refits on) and ``ppl_uq_arrays`` (arrays found in the options, info or the model's
hyper-parameters); the root attributes hold ``ppl_uq_format``, ``method``, ``kind`` and, as JSON,
``options``, ``cost``, ``info``, ``model`` (the identity of a zoo model, ``ppl_uq.models.registry``,
or null) and ``deterministic_sites`` (the names of the posterior group's deterministic sites). In the
JSON an array is ``{"__ndarray__": name}`` (a variable of ``ppl_uq_arrays``; a NumPy scalar is
``{"__npscalar__": name}``), a tuple ``{"__tuple__": [...]}`` and a non-finite float
``{"__float__": "nan" | "inf" | "-inf"}``, so everything comes back with its type and bits.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .files import atomic_write
from .models.handles import abstract_trace, numpyro_handle
from .models.registry import describe_model, model_from_identity, model_identity

#: The kinds of inference method (module docstring); ``Posterior.kind`` is one of them or None.
KINDS: tuple[str, ...] = ("mcmc", "optimisation", "variational", "ensemble")

#: The version of the file layout ``Posterior.save`` writes; ``load_posterior`` reads this one.
FILE_FORMAT = 1

#: The NetCDF library used to write and read posterior files (ArviZ's default).
NETCDF_ENGINE = "h5netcdf"

#: The file group holding arrays found in the options, info and model hyper-parameters.
ARRAYS_GROUP = "ppl_uq_arrays"


class PosteriorFileError(ValueError):
    """A file that is not a readable posterior file (not NetCDF, or NetCDF without the ppl_uq layout)."""


def backend_kind(method: str) -> str | None:
    """The ``KIND`` of the backend module named ``method``, or None when ``method`` is no backend."""
    from .inference import BACKENDS  # imported at call time: ppl_uq.inference imports this module

    if method not in BACKENDS:
        return None
    return importlib.import_module(BACKENDS[method]).KIND


def _model_logits_fn(model: Callable[..., Any]) -> Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]:
    """Return ``f(params, x) -> logits (N, C)`` for one parameter draw, read from the ``logits`` site.

    A binary classifier that records logits of shape (N,) (a ``Bernoulli(logits=...)`` likelihood) gets
    the two classes ``[0, logit]``: (N, 2), whose softmax is (1 - sigmoid, sigmoid)."""
    from numpyro import handlers

    numpyro_model = numpyro_handle().bind(model)

    def logits_of_one_draw(params: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
        conditioned = handlers.substitute(handlers.seed(numpyro_model, rng_seed=0), data=params)
        model_trace = handlers.trace(conditioned).get_trace(x)
        if "logits" not in model_trace:
            raise ValueError(
                "this model records no 'logits' site, so it has no class probabilities: the classification "
                "harness needs a classifier that records ppl.deterministic('logits', ...) of shape (N, C) or (N,)"
            )
        logits = model_trace["logits"]["value"]
        if logits.ndim == 1:
            return jnp.stack([jnp.zeros_like(logits), logits], axis=-1)
        return logits

    return logits_of_one_draw


def deterministic_site_names(model: Callable[..., Any], x: Any, y: Any) -> tuple[str, ...]:
    """The model's deterministic sites other than ``logits``, in model order (an abstract trace on ``(x, y)``)."""
    model_trace, _, _ = abstract_trace(model, x, y)
    return tuple(name for name, site in model_trace.items() if site["type"] == "deterministic" and name != "logits")


def deterministic_draws(model: Callable[..., Any], x: Any, y: Any, draws: Mapping[str, np.ndarray],
                        names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The deterministic sites ``names`` computed for every draw: name -> (chain, draw, *site_shape).

    ``draws`` are the latent sites, (chain, draw, ...). The model runs on the data ``(x, y)`` the draws
    were fitted to, 32 draws at a time in one compiled program (only the requested sites are computed)."""
    from numpyro import handlers

    nmodel = numpyro_handle().bind(model)
    leading = next(iter(draws.values())).shape[:2]
    flat = {name: jnp.asarray(value.reshape((-1,) + value.shape[2:])) for name, value in draws.items()}
    x, y = jnp.asarray(x), jnp.asarray(y)

    def one(params: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        conditioned = handlers.substitute(handlers.seed(nmodel, rng_seed=0), data=params)
        model_trace = handlers.trace(conditioned).get_trace(x, y)
        return {name: model_trace[name]["value"] for name in names}

    values = jax.jit(lambda d: jax.lax.map(one, d, batch_size=32))(flat)
    return {name: np.asarray(value).reshape(leading + value.shape[1:]) for name, value in values.items()}


class Posterior:
    """Draws from (an approximation to) a posterior, made by one inference method.

    Attributes:
        method: the backend name (``"nuts"``, ``"laplace"``, ...).
        kind: one of ``KINDS`` (see the module docstring), or None for a hand-made posterior of no known
            kind. When not given it is the ``KIND`` of the backend named ``method``.
        model: the model declaration ``model(ppl, x, y=None)`` with its hyper-parameters bound.
        draws: latent site name -> array of shape (chain, draw, *site_shape), constrained space.
        options: the backend's resolved options (defaults filled in).
        sample_stats: name -> array (chain, draw) of per-draw statistics (ArviZ names where they exist:
            ``diverging``, ``tree_depth``, ``n_steps``, ``step_size``, ``energy``, ``acceptance_rate``).
        loss_trace: optimiser loss per step, (steps,) or (members, steps); ``None`` for samplers.
        cost: ``fit_seconds``, and where known ``compile_seconds``, ``sample_seconds``, ``grad_evals``.
        info: anything else a backend reports (e.g. the Laplace jitter, the slice sampler's mode). One key
            changes prediction: ``linearize_at`` (site -> array), when present, makes the logits of every
            draw those of the model linearised at that point (the GLM predictive of Laplace).
        observed: the data ``(x, y)`` the posterior was fitted to (what ``refit`` fits again), or None.
        deterministic_sites: the names in ``draws`` that are the model's deterministic sites (other than
            ``logits``), each computed from the latent sites of the same draw. When not given and
            ``observed`` is, they are found by tracing the model on the data and computed for every
            draw (ArviZ's posterior group then shows them, as NumPyro's MCMC does); prediction
            substitutes only the latent sites.
        deferred_info: info entries that cost a computation (e.g. ``pareto_k``, thousands of log-joint
            evaluations): name -> function of no arguments, called once when ``diagnostics()`` (and so the
            gates) or ``save`` first needs it, then kept in ``info``.

    ``redraw_fn(key) -> Posterior``, when given, is how ``redraw`` makes an independent posterior
    (e.g. fresh draws from the same fitted q); without it ``redraw`` refits (``refit``).
    """

    def __init__(
        self,
        *,
        method: str,
        model: Callable[..., Any],
        draws: Mapping[str, Any],
        options: Mapping[str, Any],
        sample_stats: Mapping[str, Any] | None = None,
        loss_trace: Any = None,
        cost: Mapping[str, float] | None = None,
        info: Mapping[str, Any] | None = None,
        observed: tuple[Any, Any] | None = None,
        redraw_fn: Callable[[jax.Array], "Posterior"] | None = None,
        kind: str | None = None,
        deterministic_sites: tuple[str, ...] | list[str] | None = None,
        deferred_info: Mapping[str, Callable[[], Any]] | None = None,
    ) -> None:
        if not draws:
            raise ValueError("a Posterior needs at least one latent site")
        if kind is None:
            kind = backend_kind(method)
        elif kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)} or None, got {kind!r}")
        shapes = {name: np.shape(value)[:2] for name, value in draws.items()}
        if len(set(shapes.values())) != 1 or any(len(s) != 2 for s in shapes.values()):
            raise ValueError(f"every site must be shaped (chain, draw, ...); got leading dims {shapes}")
        self.method = method
        self.kind = kind
        self.model = model
        self.draws = {name: np.asarray(value) for name, value in draws.items()}
        if deterministic_sites is None:
            deterministic_sites = ()
            if observed is not None:  # computed from the latent draws (any given values are replaced)
                deterministic_sites = deterministic_site_names(model, observed[0], observed[1])
                latent = {name: value for name, value in self.draws.items() if name not in deterministic_sites}
                if deterministic_sites:
                    self.draws = {**latent, **deterministic_draws(model, observed[0], observed[1], latent, deterministic_sites)}
        missing = [name for name in deterministic_sites if name not in self.draws]
        if missing:
            raise ValueError(f"deterministic_sites names {missing}, which are not in draws")
        self.deterministic_sites = tuple(deterministic_sites)
        self.options = dict(options)
        self.sample_stats = {k: np.asarray(v) for k, v in (sample_stats or {}).items()}
        self.loss_trace = None if loss_trace is None else np.asarray(loss_trace)
        self.cost = dict(cost or {})
        self.info = dict(info or {})
        self.observed = observed
        self._redraw_fn = redraw_fn
        self._deferred_info = dict(deferred_info or {})
        self._device_draws_cache: dict[str, jax.Array] | None = None
        for name, value in self.draws.items():
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(
                    f"{method}: draws of site {name!r} contain NaN or inf; the fit failed "
                    "(see loss_trace / sample_stats)"
                )

    # -- shapes -------------------------------------------------------------------------------
    @property
    def num_chains(self) -> int:
        """Number of chains (1 for every non-MCMC method)."""
        return int(next(iter(self.draws.values())).shape[0])

    @property
    def num_draws(self) -> int:
        """Draws per chain."""
        return int(next(iter(self.draws.values())).shape[1])

    @property
    def num_samples(self) -> int:
        """S = chains x draws: the size of the ensemble the harness averages over."""
        return self.num_chains * self.num_draws

    def flat_draws(self) -> dict[str, np.ndarray]:
        """Site name -> array (S, *site_shape), chains concatenated (latent and deterministic sites)."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.draws.items()}

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """The names in ``draws`` that are latent sample sites (``draws`` less ``deterministic_sites``)."""
        return tuple(name for name in self.draws if name not in self.deterministic_sites)

    # -- prediction ---------------------------------------------------------------------------
    def _one_draw_logits_fn(self) -> Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]:
        """``f(params, x) -> (N, C)`` for one draw: the model's logits, or, when ``info["linearize_at"]`` holds
        a point theta* (constrained sites), the model linearised there (the GLM predictive of a Laplace
        approximation): ``f(theta*, x) + J(x) (theta - theta*)``, one Jacobian-vector product per draw."""
        logits = _model_logits_fn(self.model)
        center = self.info.get("linearize_at")
        if center is None:
            return logits
        center = {name: jnp.asarray(value) for name, value in center.items()}

        def linearised(params: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
            delta = {name: params[name] - value for name, value in center.items()}
            others = {name: value for name, value in params.items() if name not in center}
            at_center, change = jax.jvp(lambda p: logits({**others, **p}, x), (center,), (delta,))
            return at_center + change

        return linearised

    @functools.cached_property
    def _logits_all(self) -> Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]:
        return jax.jit(jax.vmap(self._one_draw_logits_fn(), in_axes=(0, None)))

    @property
    def _device_draws(self) -> dict[str, jax.Array]:
        # Put on the device once, eagerly (in __init__'s first use below would risk a trace: logits()
        # may first be called inside someone's jit, and an array made there would leak as a tracer).
        if self._device_draws_cache is None:
            with jax.ensure_compile_time_eval():
                latent = self.latent_sites
                self._device_draws_cache = {k: jax.device_put(v) for k, v in self.flat_draws().items() if k in latent}
        return self._device_draws_cache

    def logits(self, x: Any) -> jax.Array:
        """Class logits for every draw: array (S, N, C). Differentiable in ``x``."""
        return self._logits_all(self._device_draws, jnp.asarray(x))

    def log_probs(self, x: Any) -> jax.Array:
        """log p(y = c | x, theta_s) for every draw s, point n and class c: array (S, N, C).

        Jit-compiled and vmapped over draws; differentiable in ``x`` (use it inside ``jax.grad``).
        """
        return jax.nn.log_softmax(self.logits(x), axis=-1)

    def log_prob_fn(self) -> Callable[[jax.Array], jax.Array]:
        """Return the pure function ``x -> (S, N, C)`` log-probabilities (draws closed over).

        Use this inside other jitted or vmapped code (the attacks).
        """
        return self._log_prob_fn

    @functools.cached_property
    def _log_prob_fn(self) -> Callable[[jax.Array], jax.Array]:
        # One function object per posterior, so the harness's compiled attacks (cached on the callable's
        # identity) are reused across calls.
        logits_fn = self._logits_fn
        return lambda x: jax.nn.log_softmax(logits_fn(x), axis=-1)

    def logits_fn(self) -> Callable[[jax.Array], jax.Array]:
        """Return the pure function ``x -> (S, N, C)`` logits (draws closed over): ``log_prob_fn()`` without
        the log-softmax, which the harness uses (its attacks read only class differences and its
        metrics normalise), saving a pass over (S, N, C) per call."""
        return self._logits_fn

    @functools.cached_property
    def _logits_fn(self) -> Callable[[jax.Array], jax.Array]:
        draws = self._device_draws
        logits_all = self._logits_all
        return lambda x: logits_all(draws, x)

    def draw_logits_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Return the pure function ``(indices (k,), x) -> (k, N, C)``: the logits of the chosen draws."""
        return self._draw_logits_fn

    @functools.cached_property
    def _draw_logits_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        draws = self._device_draws
        logits_one = jax.vmap(self._one_draw_logits_fn(), in_axes=(0, None))
        return lambda indices, x: logits_one({name: value[indices] for name, value in draws.items()}, x)

    def draw_log_prob_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Return the pure function ``(indices (k,), x) -> (k, N, C)`` log-probabilities of the chosen draws.

        Only the k chosen draws are evaluated: the attacks' expectation over transformation (EOT) picks
        fresh draws at each step with it.
        """
        return self._draw_log_prob_fn

    @functools.cached_property
    def _draw_log_prob_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        draw_logits_fn = self._draw_logits_fn
        return lambda indices, x: jax.nn.log_softmax(draw_logits_fn(indices, x), axis=-1)

    # -- resampling ---------------------------------------------------------------------------
    def redraw(self, rng_key: jax.Array) -> "Posterior":
        """An independent posterior made by the same method and options (fresh chain, fresh draws
        from q, a new bootstrap ensemble); used for the resampled error.

        Uses the backend's ``redraw_fn`` when it gave one (NUTS reuses its compiled sampler; Laplace
        and the variational backends draw again from the same fitted q), else ``refit``. A loaded
        posterior always refits: its q is not rebuilt.
        """
        if self._redraw_fn is not None:
            return self._redraw_fn(rng_key)
        return self.refit(rng_key)

    def refit(self, rng_key: jax.Array) -> "Posterior":
        """A new Posterior from ``ppl_uq.fit(self.method, self.model, self.observed, rng_key=rng_key,
        **self.options)``: the same backend, resolved options and data, a new key.

        Raises ``NotImplementedError`` for a posterior without ``observed`` data or whose method is
        not a backend (a hand-made posterior).
        """
        from .inference import BACKENDS, fit  # imported at call time: ppl_uq.inference imports this module

        if self.observed is None or self.method not in BACKENDS:
            raise NotImplementedError(
                f"{self.method}: this posterior cannot be refitted (it needs a backend name as method and "
                "the observed data (x, y)) and was built without a redraw function"
            )
        return fit(self.method, self.model, self.observed, rng_key=rng_key, **self.options)

    # -- diagnostics --------------------------------------------------------------------------
    @property
    def is_mcmc(self) -> bool:
        """True when the draws come from Markov chains (``kind == "mcmc"``: R-hat / ESS / divergences apply)."""
        return self.kind == "mcmc"

    def diagnostics(self) -> dict[str, Any]:
        """The diagnostics that mean something for this posterior's kind (computed once; a fresh copy each call).

        - ``"mcmc"``: ``rhat_max`` (NaN with one chain), ``ess_bulk_min``, ``ess_tail_min`` (NaN with
          fewer than 4 draws per chain) and ``divergences`` (total count).
        - ``"optimisation"``, ``"variational"``, ``"ensemble"``: the optimiser's record, where the backend
          keeps it: ``converged`` (the backend's rule, see ``ppl_uq.gates``), ``grad_norm``,
          ``final_loss``, ``relative_improvement`` (loss fall from the start over |start loss|),
          ``loss_trend_t`` (t statistic of the slope over the second half of the trace; below -3 the
          loss is still falling) and ``pareto_k`` (PSIS k-hat of the draws' importance weights p/q, for
          approximations with a density; above 0.7 the approximation is unreliable).
        - ``"ensemble"`` also: ``num_members``, ``distinct_members`` (the number of groups of members
          that agree in every coordinate to 1e-3 of its scale (max(|value|, 1): an optimiser's tolerance))
          and ``member_spread`` (the largest sd across members of any latent coordinate); an ensemble of identical members is one point.
        - no kind (a hand-made posterior): ``num_samples`` only.
        """
        return dict(self._diagnostics)

    def _resolve_deferred_info(self) -> None:
        """Compute the deferred info entries (``deferred_info``) into ``info``, once."""
        for name, compute in list(self._deferred_info.items()):
            self.info[name] = compute()
            del self._deferred_info[name]

    @functools.cached_property
    def _diagnostics(self) -> dict[str, Any]:
        self._resolve_deferred_info()
        if self.kind == "mcmc":
            return self._mcmc_diagnostics()
        if self.kind is None:
            return {"num_samples": self.num_samples}
        out: dict[str, Any] = {}
        for name in ("converged", "grad_norm", "final_loss", "relative_improvement", "loss_trend_t", "pareto_k"):
            value = self.info.get(name)
            if name == "converged" and "all_converged" in self.info:
                value = self.info["all_converged"]
            if name == "grad_norm" and value is None:
                value = self.info.get("grad_norm_max")
            if name == "final_loss" and value is None:
                value = self.info.get("loss")
            if value is not None:
                out[name] = bool(value) if name == "converged" else float(value)
        if self.kind == "ensemble":
            out.update(self._member_diversity())
        return out

    def _mcmc_diagnostics(self) -> dict[str, float]:
        divergences = int(np.sum(self.sample_stats.get("diverging", 0)))
        if self.num_draws < 4:  # a handful of draws: no ESS / R-hat to speak of
            nan = float("nan")
            return {"ess_bulk_min": nan, "ess_tail_min": nan, "divergences": divergences, "rhat_max": nan}
        import warnings

        az = import_arviz()
        idata = self.to_inference_data()
        with warnings.catch_warnings():  # constant coordinates: 0/0 inside ArviZ, left out below
            warnings.simplefilter("ignore", RuntimeWarning)
            ess_bulk = az.ess(idata, method="bulk")
            ess_tail = az.ess(idata, method="tail")
            rhat = az.rhat(idata) if self.num_chains > 1 else None
        out = {
            "ess_bulk_min": _min_over_dataset(ess_bulk),
            "ess_tail_min": _min_over_dataset(ess_tail),
            "divergences": divergences,
        }
        out["rhat_max"] = _max_over_dataset(rhat) if rhat is not None else float("nan")
        return out

    def _member_diversity(self) -> dict[str, Any]:
        """``num_members``, ``distinct_members`` and ``member_spread`` of an ensemble's latent draws."""
        flat = self.flat_draws()
        members = np.concatenate(
            [flat[name].reshape(self.num_samples, -1).astype(np.float64) for name in self.latent_sites], axis=1)
        scale = np.maximum(np.max(np.abs(members), axis=0), 1.0)
        representatives: list[np.ndarray] = []  # one member per group of (numerically) identical members
        for row in members:
            if not any(np.max(np.abs(row - other) / scale) <= 1e-3 for other in representatives):
                representatives.append(row)
        distinct = len(representatives)
        spread = float(np.max(np.std(members, axis=0))) if members.shape[0] > 1 else 0.0
        return {"num_members": int(members.shape[0]), "distinct_members": distinct, "member_spread": spread}

    def to_inference_data(self) -> Any:
        """ArviZ InferenceData with groups ``posterior``, ``sample_stats`` (when the backend has any),
        ``observed_data`` (when fitted to data) and, for optimisers, ``loss_trace``."""
        az = import_arviz()
        observed = None if self.observed is None else {"y": np.asarray(self.observed[1])}
        idata = az.from_dict(
            posterior=self.draws,
            sample_stats=self.sample_stats or None,
            observed_data=observed,
            attrs={"inference_method": self.method},
        )
        if self.loss_trace is not None:
            import xarray

            trace = np.atleast_2d(self.loss_trace)
            idata.add_groups(loss_trace=xarray.Dataset({"loss": (("member", "step"), trace)}))
        return idata

    def summary(self, **kwargs: Any) -> Any:
        """``arviz.summary`` of the draws (a pandas DataFrame). The MCMC diagnostics columns (MCSE, ESS,
        R-hat) only for Markov chains (``kind == "mcmc"``, or any kind with ``kind="all"`` passed); other
        kinds get the ``stats`` columns (their draws are independent, or a point, or an ensemble whose
        "effective sample size" would mean nothing; a site they leave fixed, e.g. MC dropout's biases,
        has sd 0). For a point estimate (fewer than 4 draws) sd is NaN."""
        import warnings

        az = import_arviz()
        if self.num_samples >= 4:
            with warnings.catch_warnings():  # a coordinate constant over the draws (an LKJ factor's [0, 0]): R-hat NaN
                warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
                return az.summary(self.to_inference_data(), **{"kind": "all" if self.is_mcmc else "stats", **kwargs})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # sd of one draw: NaN, said above
            return az.summary(self.to_inference_data(), **{"kind": "stats", **kwargs})

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this posterior to ``path`` as an ArviZ NetCDF file (layout in the module docstring);
        return the path. ``load_posterior(path)`` reads it back.

        The write is atomic (a temporary file beside ``path``, renamed over it), and the file gets the
        mode ``0o666`` less the umask. Raises ``TypeError`` naming the entry when the options, cost or
        info hold a value with no file form (only ``None``, booleans, numbers, strings, numeric arrays
        and lists, tuples and string-keyed dicts of those are saved).
        """
        idata = self._file_inference_data()
        return atomic_write(path, lambda tmp: idata.to_netcdf(tmp, engine=NETCDF_ENGINE))

    def _file_inference_data(self) -> Any:
        """The InferenceData ``save`` writes: ``to_inference_data()`` plus x, the arrays and the attrs."""
        from . import __version__

        self._resolve_deferred_info()
        az = import_arviz()
        arrays: dict[str, np.ndarray] = {}
        attrs: dict[str, Any] = {"ppl_uq_format": FILE_FORMAT, "ppl_uq_version": __version__, "method": self.method}
        if self.kind is not None:
            attrs["kind"] = self.kind
        for name in ("options", "cost", "info"):
            attrs[name] = _dump_json(getattr(self, name), arrays, name)
        attrs["model"] = _dump_json(model_identity(self.model), arrays, "model")
        attrs["model_description"] = describe_model(self.model)
        attrs["loss_trace_ndim"] = -1 if self.loss_trace is None else self.loss_trace.ndim
        attrs["deterministic_sites"] = json.dumps(list(self.deterministic_sites))
        idata = self.to_inference_data()
        groups = {name: idata[name] for name in idata.groups()}
        if self.observed is not None:
            groups["constant_data"] = _arrays_dataset({"x": np.asarray(self.observed[0])})
        if arrays:
            groups[ARRAYS_GROUP] = _arrays_dataset(arrays)
        return az.InferenceData(attrs=attrs, **groups)

    def __repr__(self) -> str:
        sites = ", ".join(f"{k}{tuple(v.shape[2:])}" for k, v in self.draws.items())
        return (
            f"Posterior(method={self.method!r}, chains={self.num_chains}, draws={self.num_draws}, "
            f"sites=[{sites}])"
        )


def load_posterior(path: str | os.PathLike[str], model: Callable[..., Any] | None = None) -> Posterior:
    """Read a Posterior written by ``Posterior.save``; return it.

    The draws, sample statistics, loss trace, options, cost, info, kind and observed data come back as
    saved (same dtypes and bits), so ``log_probs`` gives the same numbers and ``redraw`` refits with the
    same backend, options and data.

    Args:
        path: the file.
        model: the model the posterior was fitted to. Needed unless the file names a zoo model
            (``ppl_uq.models.MODELS``, bound by ``functools.partial`` to plain hyper-parameters), which
            is then rebuilt; when given it is used as is, even for a zoo model.

    Raises:
        FileNotFoundError: no file at ``path``.
        PosteriorFileError: the file is not a posterior file of a format this version reads.
        ValueError: the posterior's model is not a zoo model and ``model`` was not given.
    """
    idata = _read_inference_data(path)
    attrs = dict(idata.attrs)
    _check_format(attrs, path)
    arrays = _group_arrays(idata, ARRAYS_GROUP)
    meta = {name: _load_json(attrs, name, arrays, path) for name in ("options", "cost", "info", "model")}
    observed = None
    if "constant_data" in idata.groups() and "observed_data" in idata.groups():
        observed = (idata.constant_data["x"].values, idata.observed_data["y"].values)
    return Posterior(
        method=str(attrs["method"]),
        kind=str(attrs["kind"]) if "kind" in attrs else None,
        model=_model_for(meta["model"], model, str(attrs.get("model_description", "unknown")), path),
        draws=_group_arrays(idata, "posterior"),
        options=meta["options"],
        sample_stats=_group_arrays(idata, "sample_stats"),
        loss_trace=_saved_loss_trace(idata, int(attrs.get("loss_trace_ndim", -1))),
        cost=meta["cost"],
        info=meta["info"],
        observed=observed,
        deterministic_sites=tuple(json.loads(str(attrs.get("deterministic_sites", "[]")))),
    )


def _read_inference_data(path: str | os.PathLike[str]) -> Any:
    """The InferenceData in ``path``, loaded into memory (the file is closed on return)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no posterior file at {str(path)!r}")
    az = import_arviz()
    try:
        with az.rc_context(rc={"data.load": "eager"}):
            return az.from_netcdf(os.fspath(path), engine=NETCDF_ENGINE)
    except (OSError, ValueError, KeyError) as exc:
        raise PosteriorFileError(f"{str(path)!r} is not a readable NetCDF posterior file ({type(exc).__name__}: {exc})") from exc


def _check_format(attrs: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise ``PosteriorFileError`` unless ``attrs`` are those of a posterior file of ``FILE_FORMAT``."""
    if "ppl_uq_format" not in attrs:
        raise PosteriorFileError(f"{str(path)!r} is a NetCDF file but not a ppl_uq posterior (no 'ppl_uq_format' attribute)")
    if str(attrs["ppl_uq_format"]) != str(FILE_FORMAT):
        raise PosteriorFileError(
            f"{str(path)!r} has posterior file format {attrs['ppl_uq_format']}; this version reads format {FILE_FORMAT}"
        )
    missing = sorted({"method", "options", "cost", "info", "model"} - set(attrs))
    if missing:
        raise PosteriorFileError(f"{str(path)!r} is a damaged posterior file: attributes {missing} are missing")


def _model_for(identity: Any, model: Callable[..., Any] | None, description: str, path: str | os.PathLike[str]) -> Callable[..., Any]:
    """``model`` when given, else the zoo model ``identity`` names; ``ValueError`` naming ``model=`` otherwise."""
    if model is not None:
        return model
    if identity is None:
        raise ValueError(
            f"{str(path)!r} was fitted to model {description}, which is not a zoo model (ppl_uq.models.MODELS) "
            "and cannot be rebuilt from the file: pass it, as load_posterior(path, model=...)"
        )
    return model_from_identity(identity)


def _group_arrays(idata: Any, group: str) -> dict[str, np.ndarray]:
    """Variable name -> NumPy array of one InferenceData group; {} when the file has no such group."""
    if group not in idata.groups():
        return {}
    return {str(name): np.asarray(value.values) for name, value in idata[group].data_vars.items()}


def _saved_loss_trace(idata: Any, ndim: int) -> np.ndarray | None:
    """The loss trace as the posterior held it: (steps,) when ``ndim`` is 1, (members, steps) when 2."""
    if ndim < 0 or "loss_trace" not in idata.groups():
        return None
    trace = np.asarray(idata.loss_trace["loss"].values)
    return trace[0] if ndim == 1 else trace


def _arrays_dataset(arrays: Mapping[str, np.ndarray]) -> Any:
    """An xarray Dataset with one variable per array, each on its own dimensions ``{name}.dim_{i}``."""
    import xarray

    return xarray.Dataset({name: ([f"{name}.dim_{i}" for i in range(value.ndim)], value) for name, value in arrays.items()})


# -- JSON with arrays, tuples and non-finite floats (the module docstring's encoding) -------------------
_TAGS = frozenset({"__ndarray__", "__npscalar__", "__tuple__", "__float__"})


def _dump_json(value: Any, arrays: dict[str, np.ndarray], where: str) -> str:
    """``value`` as a JSON string; arrays go into ``arrays`` under names derived from ``where``."""
    return json.dumps(_to_json(value, arrays, where), allow_nan=False)


def _load_json(attrs: Mapping[str, Any], name: str, arrays: Mapping[str, np.ndarray], path: Any) -> Any:
    """Decode the JSON attribute ``name``, taking arrays from ``arrays``; ``PosteriorFileError`` if damaged."""
    try:
        return _from_json(json.loads(str(attrs[name])), arrays)
    except (ValueError, KeyError, TypeError) as exc:
        raise PosteriorFileError(f"{str(path)!r}: attribute {name!r} cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _to_json(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """A JSON-able form of ``value`` (recursive); ``TypeError`` naming ``where`` for unsupported values."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        tag = "__npscalar__" if isinstance(value, np.generic) else "__ndarray__"
        return {tag: _add_array(arrays, where, value)}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (list, tuple)):
        items = [_to_json(item, arrays, f"{where}.{i}") for i, item in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        keys = set(value)
        if not all(isinstance(key, str) for key in keys) or (len(keys) == 1 and keys <= _TAGS):
            raise TypeError(f"cannot save {where}: dict keys must be strings other than a lone {sorted(_TAGS)}")
        return {key: _to_json(item, arrays, f"{where}.{key}") for key, item in value.items()}
    raise TypeError(
        f"cannot save {where}: a {type(value).__name__} has no file form (None, booleans, numbers, strings, "
        "numeric arrays, and lists, tuples and string-keyed dicts of those do)"
    )


def _add_array(arrays: dict[str, np.ndarray], where: str, value: Any) -> str:
    """Put ``value`` into ``arrays`` under a new name made from ``where``; return the name."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"cannot save {where}: arrays of dtype {array.dtype} have no file form (numeric arrays do)")
    base = where.replace("/", "_")
    name, suffix = base, 1
    while name in arrays:
        name, suffix = f"{base}~{suffix}", suffix + 1
    arrays[name] = array
    return name


def _from_json(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Invert ``_to_json``: tagged dicts become arrays, NumPy scalars, tuples and non-finite floats."""
    if isinstance(value, list):
        return [_from_json(item, arrays) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and set(value) <= _TAGS:
        (tag, content), = value.items()
        if tag == "__ndarray__":
            return np.array(arrays[content])
        if tag == "__npscalar__":
            return np.asarray(arrays[content])[()]
        if tag == "__tuple__":
            return tuple(_from_json(item, arrays) for item in content)
        return float(content)
    return {key: _from_json(item, arrays) for key, item in value.items()}


def import_arviz() -> Any:
    """Import ArviZ without its once-a-day FutureWarning about the coming 1.0 refactor."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


def _finite_values(dataset: Any) -> np.ndarray:
    """Every finite entry of every variable of ``dataset``. A coordinate that is constant across all draws
    (an LKJ Cholesky factor's fixed [0, 0] = 1, a pinned site) has NaN R-hat and ESS: it is left out."""
    values = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in dataset.data_vars.values()])
    return values[np.isfinite(values)]


def _min_over_dataset(dataset: Any) -> float:
    values = _finite_values(dataset)
    return float(np.min(values)) if values.size else float("nan")


def _max_over_dataset(dataset: Any) -> float:
    values = _finite_values(dataset)
    return float(np.max(values)) if values.size else float("nan")
