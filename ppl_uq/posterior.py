"""The Posterior: the one interface between inference backends and the harness.

Every backend returns one. It holds draws of every latent site shaped (chain, draw, ...), the method and
its resolved options, per-draw sample statistics (divergences, tree depth, ... for MCMC), optimiser loss
traces, cost, and can (1) evaluate log p(y | x, theta_s) for all draws, (2) convert itself to ArviZ
InferenceData, and (3) make an independent posterior by the same method (``redraw``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .models.handles import numpyro_handle

#: Methods whose draws come from a Markov chain: their R-hat / ESS / divergences are gated.
MCMC_METHODS = frozenset({"nuts", "slice", "pyro-nuts"})


def _model_logits_fn(model: Callable[..., Any]) -> Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]:
    """Return ``f(params, x) -> logits (N, C)`` for one parameter draw, read from the ``logits`` site."""
    from numpyro import handlers

    numpyro_model = numpyro_handle().bind(model)

    def logits_of_one_draw(params: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
        conditioned = handlers.substitute(handlers.seed(numpyro_model, rng_seed=0), data=params)
        model_trace = handlers.trace(conditioned).get_trace(x)
        if "logits" not in model_trace:
            raise ValueError("this model records no 'logits' site, so it has no class probabilities")
        return model_trace["logits"]["value"]

    return logits_of_one_draw


class Posterior:
    """Draws from (an approximation to) a posterior, made by one inference method.

    Attributes:
        method: the backend name (``"nuts"``, ``"laplace"``, ...).
        model: the model declaration ``model(ppl, x, y=None)`` with its hyper-parameters bound.
        draws: latent site name -> array of shape (chain, draw, *site_shape), constrained space.
        options: the backend's resolved options (defaults filled in).
        sample_stats: name -> array (chain, draw) of per-draw statistics (ArviZ names where they exist:
            ``diverging``, ``tree_depth``, ``n_steps``, ``step_size``, ``energy``, ``acceptance_rate``).
        loss_trace: optimiser loss per step, (steps,) or (members, steps); ``None`` for samplers.
        cost: ``fit_seconds``, and where known ``compile_seconds``, ``sample_seconds``, ``grad_evals``.
        info: anything else a backend reports (e.g. the Laplace jitter, the slice sampler's mode).
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
    ) -> None:
        if not draws:
            raise ValueError("a Posterior needs at least one latent site")
        shapes = {name: np.shape(value)[:2] for name, value in draws.items()}
        if len(set(shapes.values())) != 1 or any(len(s) != 2 for s in shapes.values()):
            raise ValueError(f"every site must be shaped (chain, draw, ...); got leading dims {shapes}")
        self.method = method
        self.model = model
        self.draws = {name: np.asarray(value) for name, value in draws.items()}
        self.options = dict(options)
        self.sample_stats = {k: np.asarray(v) for k, v in (sample_stats or {}).items()}
        self.loss_trace = None if loss_trace is None else np.asarray(loss_trace)
        self.cost = dict(cost or {})
        self.info = dict(info or {})
        self.observed = observed
        self._redraw_fn = redraw_fn
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
        """Site name -> array (S, *site_shape), chains concatenated."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.draws.items()}

    # -- prediction ---------------------------------------------------------------------------
    @functools.cached_property
    def _logits_all(self) -> Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]:
        return jax.jit(jax.vmap(_model_logits_fn(self.model), in_axes=(0, None)))

    @property
    def _device_draws(self) -> dict[str, jax.Array]:
        # Put on the device once, eagerly (in __init__'s first use below would risk a trace: logits()
        # may first be called inside someone's jit, and an array made there would leak as a tracer).
        if self._device_draws_cache is None:
            with jax.ensure_compile_time_eval():
                self._device_draws_cache = {k: jax.device_put(v) for k, v in self.flat_draws().items()}
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
        draws = self._device_draws
        logits_all = self._logits_all
        return lambda x: jax.nn.log_softmax(logits_all(draws, x), axis=-1)

    def draw_log_prob_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Return the pure function ``(indices (k,), x) -> (k, N, C)`` log-probabilities of the chosen draws.

        Only the k chosen draws are evaluated: the attacks' expectation over transformation (EOT) picks
        fresh draws at each step with it.
        """
        return self._draw_log_prob_fn

    @functools.cached_property
    def _draw_log_prob_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        draws = self._device_draws
        logits_one = jax.vmap(_model_logits_fn(self.model), in_axes=(0, None))

        def log_probs_of_draws(indices: jax.Array, x: jax.Array) -> jax.Array:
            chosen = {name: value[indices] for name, value in draws.items()}
            return jax.nn.log_softmax(logits_one(chosen, x), axis=-1)

        return log_probs_of_draws

    # -- resampling ---------------------------------------------------------------------------
    def redraw(self, rng_key: jax.Array) -> "Posterior":
        """An independent posterior made by the same method and options (fresh chain, fresh draws
        from q, a new bootstrap ensemble); used for the resampled error."""
        if self._redraw_fn is None:
            raise NotImplementedError(f"{self.method}: this posterior was built without a redraw function")
        return self._redraw_fn(rng_key)

    # -- diagnostics --------------------------------------------------------------------------
    @property
    def is_mcmc(self) -> bool:
        """True when the draws come from Markov chains (R-hat / ESS / divergences apply)."""
        return self.method in MCMC_METHODS

    def diagnostics(self) -> dict[str, float]:
        """Convergence summary over all latent coordinates.

        Returns ``rhat_max`` (NaN with one chain), ``ess_bulk_min``, ``ess_tail_min`` (NaN with fewer
        than 4 draws per chain) and
        ``divergences`` (total count, 0 when the method has none).
        """
        divergences = int(np.sum(self.sample_stats.get("diverging", 0)))
        if self.num_draws < 4:  # a point estimate or a handful of draws: no ESS / R-hat to speak of
            nan = float("nan")
            return {"ess_bulk_min": nan, "ess_tail_min": nan, "divergences": divergences, "rhat_max": nan}
        az = import_arviz()
        idata = self.to_inference_data()
        ess_bulk = az.ess(idata, method="bulk")
        ess_tail = az.ess(idata, method="tail")
        out = {
            "ess_bulk_min": _min_over_dataset(ess_bulk),
            "ess_tail_min": _min_over_dataset(ess_tail),
            "divergences": divergences,
        }
        out["rhat_max"] = _max_over_dataset(az.rhat(idata)) if self.num_chains > 1 else float("nan")
        return out

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
        """``arviz.summary`` of the draws (a pandas DataFrame). For a point estimate (fewer than 4 draws)
        only the ``stats`` columns are meaningful: sd is NaN and no diagnostics are computed."""
        import warnings

        az = import_arviz()
        if self.num_samples >= 4:
            return az.summary(self.to_inference_data(), **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # sd of one draw: NaN, said above
            return az.summary(self.to_inference_data(), **{"kind": "stats", **kwargs})

    def __repr__(self) -> str:
        sites = ", ".join(f"{k}{tuple(v.shape[2:])}" for k, v in self.draws.items())
        return (
            f"Posterior(method={self.method!r}, chains={self.num_chains}, draws={self.num_draws}, "
            f"sites=[{sites}])"
        )


def import_arviz() -> Any:
    """Import ArviZ without its once-a-day FutureWarning about the coming 1.0 refactor."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


def _min_over_dataset(dataset: Any) -> float:
    values = [np.min(np.asarray(v)) for v in dataset.data_vars.values()]
    return float(np.min(values))


def _max_over_dataset(dataset: Any) -> float:
    values = [np.max(np.asarray(v)) for v in dataset.data_vars.values()]
    return float(np.max(values))
