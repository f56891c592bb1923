"""A slice-sampling MCMC kernel for NumPyro: univariate slice updates with stepping out and shrinkage
(Neal 2003, "Slice sampling", Ann. Statist. 31(3), figs. 3 and 5), mixed with Neal's overrelaxed
univariate updates (section 6), along the directions of an adapted whitening basis.

One MCMC iteration is one sweep: a slice update along every basis direction ``basis[j]`` (a vector in
the flat unconstrained space), in a fresh random order. During warm-up the kernel estimates the
posterior covariance from its own draws in Stan's doubling windows (NumPyro's
``build_adaptation_schedule``), regularises it, and makes the basis its eigenvectors scaled by the
square roots of its eigenvalues (``basis="dense"``) or the coordinate axes scaled by the marginal sds
(``basis="diagonal"``). Each direction has its own width, the running mean of the distance moved along
it times ``width_factor``. Basis and widths are frozen after warm-up, so the sampling phase is a fixed
sequence of exact slice updates and leaves the posterior invariant.

Each directional update is, with probability ``overrelax``, an overrelaxed one (the slice's ends are
located by stepping out and bisection and the point is reflected through their midpoint), otherwise an
ordinary stepping-out-and-shrinkage update. Both leave the posterior invariant, and so does their
random mixture; the ordinary updates keep the chain ergodic. Warm-up's initial buffer (Stan's first 75
iterations) uses ordinary updates only, since reflecting a far-off start through the conditional mode
does not bring it in. Overrelaxation suppresses the random walk
of a Gibbs sweep when the conditionals are much narrower than the marginals, which is the case on the
spheres posterior (its separation constraints): there it roughly doubles the median and triples the
minimum ESS per sweep at about twice the evaluations.

Two ways to evaluate the log density along a line ``z + t d``:

* generic: the model's full potential at every trial point;
* linear predictor: when the model's ``logits`` are an affine function of ``z``
  (``logits = jacobian @ z + offset``) the potential splits into a prior part (latent sites only, O(P))
  and ``nll(logits)``; along ``d`` the logits move by ``t * (jacobian @ d)``, precomputed for every basis
  direction, so a trial point costs O(N C) instead of a pass over the data. The logits are recomputed
  exactly once per sweep so float32 rounding cannot accumulate.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.infer.hmc_util import build_adaptation_schedule
from numpyro.infer.mcmc import MCMCKernel

#: The per-iteration counters a sweep reports (each an int32 scalar in ``SliceState``).
COUNTERS = (
    "n_evals",
    "n_steps_out",
    "n_shrinks",
    "n_step_out_capped",
    "n_shrink_exhausted",
    "n_overrelaxed",
    "n_overrelax_stayed",
)


class LinearPredictor(NamedTuple):
    """The potential of a model whose logits are affine in the flat unconstrained vector ``z`` (P,).

    ``potential(z) = prior(z) + nll(jacobian @ z + offset)`` with ``jacobian`` (M, P) and ``offset``
    (M,), M = N * C flattened logits; ``prior(z) -> scalar`` is the latent sites' part (including
    log-Jacobians of transforms); ``nll(logits (M,)) -> scalar`` the negative log-likelihood.
    """

    jacobian: jax.Array
    offset: jax.Array
    prior: Callable[[jax.Array], jax.Array]
    nll: Callable[[jax.Array], jax.Array]


class SliceTarget(NamedTuple):
    """What the kernel samples: ``potential(z) -> scalar`` (negative log density, jittable) on the flat
    unconstrained space, ``constrain(z) -> dict`` of constrained latent sites (the kernel's
    ``postprocess_fn``), and optionally a ``LinearPredictor`` for the fast line evaluations."""

    potential: Callable[[jax.Array], jax.Array]
    constrain: Callable[[jax.Array], dict[str, jax.Array]]
    linear: LinearPredictor | None = None


class SliceState(NamedTuple):
    """State of one chain. ``z`` (P,) is the sample; ``lp`` the log density there (minus the
    potential); ``basis`` (P, P) holds one direction per row and ``lin_basis`` (P, M) the logits'
    change along each (M = 0 in generic mode); ``widths`` (P,) the slice widths along the directions.
    ``jacobian`` (M, P) and ``offset`` (M,) give the exact logits. ``move_sum`` (P,) and ``move_count``
    accumulate |step| per direction, ``win_n``, ``win_mean`` (P,), ``win_m2`` (P, P) are the Welford
    sums of the current covariance window (warm-up only). The counters are for the last sweep;
    ``total_evals`` counts every log-density evaluation since ``init``."""

    i: jax.Array
    z: jax.Array
    lp: jax.Array
    basis: jax.Array
    lin_basis: jax.Array
    widths: jax.Array
    jacobian: jax.Array
    offset: jax.Array
    move_sum: jax.Array
    move_count: jax.Array
    win_n: jax.Array
    win_mean: jax.Array
    win_m2: jax.Array
    n_evals: jax.Array
    n_steps_out: jax.Array
    n_shrinks: jax.Array
    n_step_out_capped: jax.Array
    n_shrink_exhausted: jax.Array
    n_overrelaxed: jax.Array
    n_overrelax_stayed: jax.Array
    total_evals: jax.Array
    rng_key: jax.Array


def covariance_windows(num_warmup: int) -> list[tuple[int, int]]:
    """The warm-up windows (first, last iteration, 0-based, inclusive) whose draws estimate the
    covariance: Stan's slow windows between its initial and terminal buffers, from NumPyro's
    ``build_adaptation_schedule``. Empty when ``num_warmup < 20`` (too short to adapt a basis)."""
    if num_warmup < 20:
        return []
    schedule = build_adaptation_schedule(num_warmup)
    return [(int(w.start), int(w.end)) for w in schedule[1:-1]]


def regularised_covariance(m2: jax.Array, n: jax.Array) -> jax.Array:
    """Sample covariance ``m2 / (n - 1)`` (P, P) of ``n`` draws, shrunk toward its own diagonal:
    ``(n / (n + 5)) S + (5 / (n + 5)) diag(S)`` plus a 1e-6 relative jitter so it is positive definite
    however few draws there are."""
    cov = m2 / jnp.maximum(n - 1.0, 1.0)
    diag = jnp.diag(cov)
    weight = n / (n + 5.0)
    cov = weight * cov + (1.0 - weight) * jnp.diag(diag)
    jitter = 1e-6 * jnp.mean(diag) + 1e-10
    return cov + jitter * jnp.eye(cov.shape[0], dtype=cov.dtype)


def _is_batched_key(rng_key: jax.Array) -> bool:
    if jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        return rng_key.ndim > 0
    return rng_key.ndim > 1


class SliceKernel(MCMCKernel):
    """Slice sampling along an adapted whitening basis (see the module docstring).

    Args:
        target: the ``SliceTarget`` to sample.
        width: initial slice width along every direction, in whitened units (the units of the basis);
            the width used when adaptation is off.
        width_factor: during warm-up a direction's width is ``width_factor`` times the mean distance
            moved along it since the basis last changed (one pseudo-observation of ``width /
            width_factor``).
        max_steps_out: Neal's ``m``: stepping out extends the interval at most ``m - 1`` widths in all.
        max_shrinks: bound on shrinkage steps; if reached the chain stays put for that direction
            (counted in ``n_shrink_exhausted``; with exact arithmetic it cannot happen).
        basis: ``"dense"`` (eigenvectors of the regularised warm-up covariance), ``"diagonal"``
            (coordinate axes scaled by warm-up sds) or ``"identity"`` (coordinate axes; only the
            widths adapt).
        overrelax: probability that a directional update is overrelaxed (0 turns them off).
        bisection_steps: Neal's ``a``: bisections locating each end of the slice in an overrelaxed
            update (precision ``width / 2^a``).

    ``init(rng_key, num_warmup, init_params, ...)`` takes ``init_params`` (P,) (or (chains, P) with a
    batch of keys for ``chain_method="vectorized"``); ``sample`` performs one sweep.
    """

    sample_field = "z"

    def __init__(
        self,
        target: SliceTarget,
        *,
        width: float = 2.0,
        width_factor: float = 3.0,
        max_steps_out: int = 32,
        max_shrinks: int = 100,
        basis: str = "dense",
        overrelax: float = 0.0,
        bisection_steps: int = 3,
    ) -> None:
        if basis not in ("dense", "diagonal", "identity"):
            raise ValueError(f"basis must be 'dense', 'diagonal' or 'identity', got {basis!r}")
        self.target = target
        self.width = float(width)
        self.width_factor = float(width_factor)
        self.max_steps_out = int(max_steps_out)
        self.max_shrinks = int(max_shrinks)
        self.basis = basis
        self.overrelax = float(overrelax)
        self.bisection_steps = int(bisection_steps)
        self._num_warmup = 0
        self._windows: list[tuple[int, int]] = []
        self._plain_until = 0
        self._sample_fn: Callable[[SliceState], SliceState] | None = None

    # -- MCMCKernel interface -------------------------------------------------------------------
    def postprocess_fn(self, model_args: Any, model_kwargs: Any) -> Callable[[jax.Array], dict[str, jax.Array]]:
        """Map a flat unconstrained sample (P,) to the constrained latent sites."""
        return self.target.constrain

    def init(self, rng_key: jax.Array, num_warmup: int, init_params: Any, model_args: Any, model_kwargs: Any) -> SliceState:
        """Return the initial ``SliceState`` at ``init_params`` (flat (P,), required)."""
        if init_params is None:
            raise ValueError("SliceKernel.init needs init_params: the flat unconstrained starting point (P,)")
        self._num_warmup = int(num_warmup)
        self._windows = covariance_windows(self._num_warmup) if self.basis != "identity" else []
        # Warm-up's initial buffer uses ordinary updates only: overrelaxation reflects a far-off start
        # through the conditional mode instead of moving it in, which slows the approach to the mode.
        self._plain_until = build_adaptation_schedule(self._num_warmup)[0].end + 1 if self._num_warmup >= 20 else 0
        self._sample_fn = self._sample_one
        if _is_batched_key(rng_key):
            return jax.vmap(self._init_one)(rng_key, jnp.asarray(init_params))
        return self._init_one(rng_key, jnp.asarray(init_params))

    def sample(self, state: SliceState, model_args: Any, model_kwargs: Any) -> SliceState:
        """One sweep of slice updates along every basis direction, then (in warm-up) adaptation."""
        if state.z.ndim == 2:
            return jax.vmap(self._sample_one)(state)
        return self._sample_one(state)

    def get_diagnostics_str(self, state: SliceState) -> str:
        """Progress-bar text: the evaluations of the last sweep."""
        return f"{int(np.asarray(state.n_evals).ravel()[0])} evals/sweep"

    # -- internals --------------------------------------------------------------------------------
    def _init_one(self, rng_key: jax.Array, z: jax.Array) -> SliceState:
        z = z.astype(jnp.result_type(float))
        dim = z.shape[0]
        linear = self.target.linear
        if linear is not None:
            jacobian = jnp.asarray(linear.jacobian, z.dtype)
            offset = jnp.asarray(linear.offset, z.dtype)
        else:
            jacobian = jnp.zeros((0, dim), z.dtype)
            offset = jnp.zeros((0,), z.dtype)
        basis = jnp.eye(dim, dtype=z.dtype)
        zero = jnp.zeros((), jnp.int32)
        return SliceState(
            i=zero,
            z=z,
            lp=-self.target.potential(z),
            basis=basis,
            lin_basis=basis @ jacobian.T,
            widths=jnp.full((dim,), self.width, z.dtype),
            jacobian=jacobian,
            offset=offset,
            move_sum=jnp.zeros((dim,), z.dtype),
            move_count=jnp.zeros((), z.dtype),
            win_n=jnp.zeros((), z.dtype),
            win_mean=jnp.zeros((dim,), z.dtype),
            win_m2=jnp.zeros((dim, dim) if self.basis == "dense" else (dim,), z.dtype),
            n_evals=zero,
            n_steps_out=zero,
            n_shrinks=zero,
            n_step_out_capped=zero,
            n_shrink_exhausted=zero,
            n_overrelaxed=zero,
            n_overrelax_stayed=zero,
            total_evals=zero,
            rng_key=rng_key,
        )

    def _line_fn(self, state: SliceState, z: jax.Array, logits: jax.Array, j: jax.Array) -> Callable[[jax.Array], jax.Array]:
        """Log density along basis direction ``j`` through ``z``: ``t -> lp(z + t basis[j])``."""
        direction = state.basis[j]
        linear = self.target.linear
        if linear is None:
            return lambda t: -self.target.potential(z + t * direction)
        delta = state.lin_basis[j]
        return lambda t: -(linear.prior(z + t * direction) + linear.nll(logits + t * delta))

    @staticmethod
    def _step_out(
        inside: Callable[[jax.Array], jax.Array],
        left: jax.Array,
        right: jax.Array,
        width: jax.Array,
        budget_left: jax.Array,
        budget_right: jax.Array,
        max_evals: int,
    ) -> tuple[jax.Array, ...]:
        """Stepping out (Neal 2003, fig. 3): ``while J > 0 and inside(L): L <- L - w, J <- J - 1``, then
        the same to the right with K, evaluating only when the side's budget is positive, and at most
        ``max_evals`` evaluations in all. One loop for both sides (one copy of the log density in the
        compiled program).

        Returns ``(left, right, evals, steps, out_left, out_right, capped_left, capped_right)``: whether
        each side's last evaluation was outside the slice, and whether it stopped inside (budget spent).
        """

        def cond(carry: tuple) -> jax.Array:
            return carry[4]

        def body(carry: tuple) -> tuple:
            left, right, budget_left, budget_right, _, on_left, evals, steps, out_left, out_right = carry
            is_in = inside(jnp.where(on_left, left, right))
            left = jnp.where(on_left & is_in, left - width, left)
            right = jnp.where(~on_left & is_in, right + width, right)
            budget_left = budget_left - (on_left & is_in).astype(jnp.int32)
            budget_right = budget_right - (~on_left & is_in).astype(jnp.int32)
            out_left = jnp.where(on_left, ~is_in, out_left)
            out_right = jnp.where(on_left, out_right, ~is_in)
            evals = evals + 1
            stay = is_in & jnp.where(on_left, budget_left > 0, budget_right > 0) & (evals < max_evals)
            switch = on_left & ~stay & (budget_right > 0) & (evals < max_evals)
            steps = steps + is_in.astype(jnp.int32)
            return left, right, budget_left, budget_right, stay | switch, on_left & ~switch, evals, steps, out_left, out_right

        start_left = budget_left > 0
        go = start_left | (budget_right > 0)
        false = jnp.array(False)
        init = (left, right, budget_left, budget_right, go, start_left, jnp.int32(0), jnp.int32(0), false, false)
        left, right, budget_left, budget_right, _, _, evals, steps, out_left, out_right = lax.while_loop(cond, body, init)
        # A side that was evaluated and whose last evaluation was inside stopped on its budget.
        capped_left = (steps > 0) & ~out_left & (budget_left == 0)
        capped_right = (steps > 0) & ~out_right & (budget_right == 0)
        return left, right, evals, steps, out_left, out_right, capped_left, capped_right

    def _slice_1d(
        self, line: Callable[[jax.Array], jax.Array], lp0: jax.Array, width: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One univariate slice update from t = 0 (Neal 2003, stepping out fig. 3, shrinkage fig. 5).

        Returns ``(t, lp(t), counts)`` with counts (7,) int32 in the order of ``COUNTERS``."""
        k_height, k_place, k_split, k_shrink = jax.random.split(key, 4)
        dtype = lp0.dtype
        log_height = lp0 - jax.random.exponential(k_height, dtype=dtype)
        left = -width * jax.random.uniform(k_place, dtype=dtype)
        m = self.max_steps_out
        budget_left = jnp.floor(m * jax.random.uniform(k_split, dtype=dtype)).astype(jnp.int32)
        left, right, evals, steps, _, _, capped_left, capped_right = self._step_out(
            lambda t: line(t) > log_height, left, left + width, width, budget_left, (m - 1) - budget_left, m + 1
        )

        def shrink_cond(carry: tuple) -> jax.Array:
            _, _, _, _, accepted, n = carry
            return (~accepted) & (n < self.max_shrinks)

        def shrink_body(carry: tuple) -> tuple:
            left, right, _, _, _, n = carry
            u = jax.random.uniform(jax.random.fold_in(k_shrink, n), dtype=dtype)
            t = left + u * (right - left)
            lp_t = line(t)
            accepted = lp_t > log_height
            left = jnp.where(~accepted & (t < 0), t, left)
            right = jnp.where(~accepted & (t >= 0), t, right)
            return left, right, t, lp_t, accepted, n + 1

        init = (left, right, jnp.zeros((), dtype), lp0, jnp.array(False), jnp.int32(0))
        _, _, t, lp_t, accepted, shrinks = lax.while_loop(shrink_cond, shrink_body, init)
        t = jnp.where(accepted, t, 0.0)
        lp_t = jnp.where(accepted, lp_t, lp0)
        capped = capped_left.astype(jnp.int32) + capped_right.astype(jnp.int32)
        counts = jnp.stack([evals + shrinks, steps, shrinks, capped, (~accepted).astype(jnp.int32), 0, 0])
        return t, lp_t, counts

    def _overrelaxed_1d(
        self, line: Callable[[jax.Array], jax.Array], lp0: jax.Array, width: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One overrelaxed univariate slice update from t = 0 (Neal 2003, section 6): locate the slice's
        ends by stepping out on a randomly shifted grid of spacing ``width`` and ``bisection_steps``
        bisections, and move to the reflection ``t1 = L~ + R~`` of 0 through their midpoint.

        The update is an involution given the slice level and the grid: from ``t1`` the same interval
        and the same end estimates are found (stepping out stops at the first grid points outside the
        slice, the narrowing of a one-cell interval follows the same halves, the bisections depend
        only on the interval), and ``t1`` is accepted only if it lies in the slice and in that
        interval; otherwise the chain stays at 0. A stepping-out budget of ``max_steps_out + 1`` grid
        evaluations in total (the same from 0 and from ``t1``) keeps the loop bounded; reaching it
        also means staying put. Returns ``(t, lp(t), counts)`` as ``_slice_1d``.
        """
        k_height, k_grid = jax.random.split(key)
        dtype = lp0.dtype
        log_height = lp0 - jax.random.exponential(k_height, dtype=dtype)
        budget = self.max_steps_out + 1

        def inside(t: jax.Array) -> jax.Array:
            return line(t) > log_height

        left0 = -width * jax.random.uniform(k_grid, dtype=dtype)  # the grid is left0 + k * width
        big = jnp.int32(budget + 1)
        left, right, evals, steps, out_left, out_right, _, _ = self._step_out(
            inside, left0, left0 + width, width, big, big, budget
        )
        capped = ~(out_left & out_right)
        one_cell = steps == 0

        # A one-cell interval: halve toward 0 until the midpoint is inside (at most bisection_steps times).
        def narrow_cond(carry: tuple) -> jax.Array:
            _, _, found, n = carry
            return (~found) & (n < self.bisection_steps)

        def narrow_body(carry: tuple) -> tuple:
            lo, hi, _, n = carry
            mid = 0.5 * (lo + hi)
            found = inside(mid)
            lo = jnp.where(~found & (mid < 0), mid, lo)
            hi = jnp.where(~found & (mid >= 0), mid, hi)
            return lo, hi, found, n + 1

        init = (left, right, ~one_cell | capped, jnp.int32(0))
        lo, hi, found, narrowed = lax.while_loop(narrow_cond, narrow_body, init)
        cell = jnp.where(one_cell, 0.5 * (hi - lo), width)

        # Bisection of the outer cells [lo, lo + cell] and [hi - cell, hi] (outside at lo and hi),
        # both ends evaluated together.
        def bisect(_: jax.Array, carry: jax.Array) -> jax.Array:
            outer, inner = carry
            mid = 0.5 * (outer + inner)
            ok = jax.vmap(inside)(mid)
            return jnp.where(ok, outer, mid), jnp.where(ok, mid, inner)

        usable = found & ~capped
        num_bisect = jnp.where(usable, self.bisection_steps, 0)
        ends = (jnp.stack([lo, hi]), jnp.stack([lo + cell, hi - cell]))
        outer, inner = lax.fori_loop(0, num_bisect, bisect, ends)
        t1 = jnp.sum(0.5 * (outer + inner))
        lp1 = line(t1)
        accepted = usable & (t1 > lo) & (t1 < hi) & (lp1 > log_height)
        t = jnp.where(accepted, t1, 0.0)
        lp_t = jnp.where(accepted, lp1, lp0)
        evals = evals + narrowed + 2 * num_bisect + 1
        counts = jnp.stack(
            [evals, steps, narrowed + num_bisect, capped.astype(jnp.int32), 0, 1, (~accepted).astype(jnp.int32)]
        )
        return t, lp_t, counts

    def _sweep(self, state: SliceState, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Slice-update every direction once, in random order. Returns ``(z, lp, counts (5,), |t| (P,))``."""
        dim = state.z.shape[0]
        k_perm, k_dirs = jax.random.split(key)
        order = jax.random.permutation(k_perm, dim)
        linear = self.target.linear
        z = state.z
        if linear is None:
            logits = jnp.zeros((0,), z.dtype)
            lp = -self.target.potential(z)
        else:
            logits = state.jacobian @ z + state.offset
            lp = -(linear.prior(z) + linear.nll(logits))

        def body(k: jax.Array, carry: tuple) -> tuple:
            z, logits, lp, counts, moves = carry
            j = order[k]
            line = self._line_fn(state, z, logits, j)
            key = jax.random.fold_in(k_dirs, k)
            if self.overrelax > 0:
                k_choice, key = jax.random.split(key)
                use = (jax.random.uniform(k_choice) < self.overrelax) & (state.i >= self._plain_until)
                t, lp, c = lax.cond(
                    use,
                    lambda args: self._overrelaxed_1d(line, *args),
                    lambda args: self._slice_1d(line, *args),
                    (lp, state.widths[j], key),
                )
            else:
                t, lp, c = self._slice_1d(line, lp, state.widths[j], key)
            z = z + t * state.basis[j]
            if linear is not None:
                logits = logits + t * state.lin_basis[j]
            return z, logits, lp, counts + c, moves.at[j].set(jnp.abs(t))

        counts0 = jnp.zeros((len(COUNTERS),), jnp.int32).at[0].set(1)  # the exact evaluation above
        carry = (z, logits, lp, counts0, jnp.zeros((dim,), z.dtype))
        z, _, lp, counts, moves = lax.fori_loop(0, dim, body, carry)
        return z, lp, counts, moves

    def _sample_one(self, state: SliceState) -> SliceState:
        key, k_sweep = jax.random.split(state.rng_key)
        z, lp, counts, moves = self._sweep(state, k_sweep)
        new = state._replace(
            i=state.i + 1,
            z=z,
            lp=lp,
            rng_key=key,
            total_evals=state.total_evals + counts[0],
            **{name: counts[k] for k, name in enumerate(COUNTERS)},
        )
        if self._num_warmup == 0:
            return new
        return lax.cond(state.i < self._num_warmup, self._adapt, lambda s, m: s, new, moves)

    def _adapt(self, state: SliceState, moves: jax.Array) -> SliceState:
        """Warm-up adaptation after iteration ``state.i - 1``: widths from the mean move per direction;
        Welford sums inside covariance windows; a new basis at each window's end."""
        move_sum = state.move_sum + moves
        move_count = state.move_count + 1.0
        widths = self.width_factor * (move_sum + self.width / self.width_factor) / (move_count + 1.0)
        state = state._replace(move_sum=move_sum, move_count=move_count, widths=widths)
        if not self._windows:
            return state
        it = state.i - 1  # index of the iteration just completed
        starts = jnp.array([w[0] for w in self._windows])
        ends = jnp.array([w[1] for w in self._windows])
        in_window = jnp.any((it >= starts) & (it <= ends))
        at_end = jnp.any(it == ends)
        state = lax.cond(in_window, self._welford, lambda s: s, state)
        return lax.cond(at_end, self._new_basis, lambda s: s, state)

    def _welford(self, state: SliceState) -> SliceState:
        n = state.win_n + 1.0
        delta = state.z - state.win_mean
        mean = state.win_mean + delta / n
        if self.basis == "dense":
            m2 = state.win_m2 + jnp.outer(delta, state.z - mean)
        else:
            m2 = state.win_m2 + delta * (state.z - mean)
        return state._replace(win_n=n, win_mean=mean, win_m2=m2)

    def _new_basis(self, state: SliceState) -> SliceState:
        n = state.win_n
        if self.basis == "dense":
            eigval, eigvec = jnp.linalg.eigh(regularised_covariance(state.win_m2, n))
            basis = (eigvec * jnp.sqrt(jnp.maximum(eigval, 0.0))).T
        else:
            var = state.win_m2 / jnp.maximum(n - 1.0, 1.0)
            var = (n / (n + 5.0)) * var + (5.0 / (n + 5.0)) * jnp.mean(var) + 1e-10
            basis = jnp.diag(jnp.sqrt(var))
        dim = state.z.shape[0]
        return state._replace(
            basis=basis,
            lin_basis=basis @ state.jacobian.T,
            widths=jnp.full((dim,), self.width, state.z.dtype),
            move_sum=jnp.zeros_like(state.move_sum),
            move_count=jnp.zeros_like(state.move_count),
            win_n=jnp.zeros_like(state.win_n),
            win_mean=jnp.zeros_like(state.win_mean),
            win_m2=jnp.zeros_like(state.win_m2),
        )
