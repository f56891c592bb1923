"""Curvature of a classifier's negative log joint without a P x P Hessian, for Laplace approximations of
networks (``laplace`` options ``hessian="diag-ggn"`` and ``"last-layer"``).

The models are classifiers whose likelihood is ``y ~ Categorical(logits)`` with the logits recorded in
a deterministic site ``logits`` (N, C). Write f_n(z) for example n's logits as a function of the
unconstrained parameters z, p_n = softmax(f_n) and J_n = df_n/dz (C, P). The negative log likelihood
-sum_n log p_n[y_n] has Hessian sum_n J_n^T (diag p_n - p_n p_n^T) J_n + (terms in the second
derivatives of f_n); the generalised Gauss-Newton (GGN) keeps the first sum. It is positive
semi-definite, needs no labels, and where f is affine in the chosen coordinates (a network's last
layer) it is the exact Hessian there.

With diag(p) - p p^T = L L^T, L = diag(sqrt p) - p sqrt(p)^T (which uses sum(p) = 1), the GGN is
sum_n sum_c g_nc g_nc^T with g_nc = J_n^T L_n[:, c], one vector-Jacobian product (vjp) per example
and class:

* ``ggn_diagonal`` sums the squares g_nc * g_nc: the exact diagonal, in O(N C P) time and memory bounded
  by ``EXAMPLES_PER_STEP`` examples, not by N. A Jacobian-vector product (jvp) gives one column J_n e_i
  per coordinate, P passes, so per-example vjps are the only practical route to the diagonal.
* ``ggn_block`` stacks the g_nc restricted to a few sites (K coordinates) and returns sum g g^T (K, K).

The rest of the negative log joint (the priors, the log-Jacobians of the unconstrained transforms) is
``prior_potential``; its exact Hessian block comes from ``jax.hessian`` and its exact diagonal from
``hessian_diagonal``. A prior that is not log-concave (a scale mixture, a Student-t) has negative
curvature somewhere; ``psd_diagonal`` / ``psd_block`` clip it at zero and count what they clipped, so
the precision is positive semi-definite by construction.

Everything here works on the dict of unconstrained sites (``FlatPotential.unravel(z)``), whose
``ravel_pytree`` order is the flat vector's: differentiating a dict skips the concatenation of a flat
vector's per-site gradients, which measured 2.4x slower in the per-example loop below (2 CPU cores,
784-100-100-10 MLP).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._common import numpyro_model

#: Examples vmapped together inside ``ggn_diagonal``'s loop; the classes run one at a time (a scan),
#: so the working set is this many per-example gradients (EXAMPLES_PER_STEP x P floats). On the
#: 784-100-100-10 MLP (P = 89,610, 2 CPU cores) 16 examples per step took 0.8 ms per example; 4 took
#: 1.8 ms, 100 took 2.2 ms (a 36 MB working set out of cache), and vmapping the 10 classes too took
#: 6-17 ms (each per-example gradient is then written to memory before it is squared).
EXAMPLES_PER_STEP = 16

LogitsFn = Callable[[dict[str, jax.Array], jax.Array], jax.Array]


def likelihood_sites(model: Callable[..., Any], x: Any, y: Any) -> tuple[str, ...]:
    """The names of the model's observed sites, after checking that the model is a classifier these
    curvatures apply to: a ``logits`` deterministic site and every observed site ``Categorical`` with
    those logits. Runs the model once on the first two rows; ``ValueError`` saying what is missing."""
    import numpyro.distributions as dist
    from numpyro import handlers

    nmodel = numpyro_model(model)
    model_trace = handlers.trace(handlers.seed(nmodel, rng_seed=0)).get_trace(jnp.asarray(x[:2]), jnp.asarray(y[:2]))
    if "logits" not in model_trace:
        raise ValueError(
            "the GGN curvature needs a classifier that records its logits (N, C) in a deterministic site "
            "'logits'; this model has none (use hessian='full')"
        )
    logits = np.asarray(model_trace["logits"]["value"])
    observed = [name for name, site in model_trace.items() if site["type"] == "sample" and site["is_observed"]]
    for name in observed:
        fn = model_trace[name]["fn"]
        if not isinstance(fn, dist.CategoricalLogits) or not np.allclose(np.asarray(fn.logits), logits):
            raise ValueError(
                f"the GGN curvature needs every observed site to be Categorical(logits=<the 'logits' site>); "
                f"site {name!r} is {type(fn).__name__} (use hessian='full')"
            )
    if not observed:
        raise ValueError("the GGN curvature needs an observed Categorical site; the model has no observed site")
    return tuple(observed)


def logits_function(model: Callable[..., Any]) -> LogitsFn:
    """Return ``logits(params, x) -> (N, C)``: the model's ``logits`` site on inputs ``x`` (N, ...) with
    the latent sites at the unconstrained values ``params`` (a dict, as ``FlatPotential.unravel(z)``
    gives; compose with ``unravel`` for a function of the flat vector (P,)). Jittable and differentiable;
    the labels are set to zeros, which the logits do not depend on."""
    from numpyro.infer.util import constrain_fn

    nmodel = numpyro_model(model)

    def logits(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        labels = jnp.zeros(x.shape[0], jnp.int32)
        return constrain_fn(nmodel, (x, labels), {}, params, return_deterministic=True)["logits"]

    return logits


def prior_potential(model: Callable[..., Any], x: Any, y: Any, observed: Sequence[str]) -> Callable[[dict[str, jax.Array]], jax.Array]:
    """Return ``potential(params) -> ()``: the negative log joint without the ``observed`` sites (their
    likelihood), i.e. the negative log prior plus the log-Jacobian of the unconstrained transforms,
    at the unconstrained sites ``params``. The model runs on the first row of ``(x, y)`` only."""
    from numpyro import handlers
    from numpyro.infer.util import potential_energy

    hidden = handlers.block(numpyro_model(model), hide=list(observed))
    args = (jnp.asarray(x[:1]), jnp.asarray(y[:1]))

    def potential(params: dict[str, jax.Array]) -> jax.Array:
        return potential_energy(hidden, args, {}, params)

    return potential


def softmax_hessian_factor(logits: jax.Array) -> jax.Array:
    """L (C, C) with L L^T = diag(p) - p p^T for p = softmax(logits) (C,): L = diag(sqrt p) - p sqrt(p)^T."""
    p = jax.nn.softmax(logits)
    root = jnp.sqrt(p)
    return jnp.diag(root) - jnp.outer(p, root)


def ggn_diagonal(logits_fn: LogitsFn, params: Any, x: Any, *, batch_size: int = 1000) -> Any:
    """The exact diagonal of the GGN of the Categorical negative log likelihood,
    sum_n J_n^T (diag p_n - p_n p_n^T) J_n, at ``params``.

    ``logits_fn(params, x_batch) -> (B, C)``; ``params`` any pytree (the dict of unconstrained sites, or
    a flat vector (P,)); ``x`` (N, ...). Returns a pytree shaped like ``params`` holding each coordinate's
    diagonal entry. Runs one jitted program per batch of ``batch_size`` rows (the last batch padded with
    masked rows), summed here; memory is bounded by ``EXAMPLES_PER_STEP`` per-example gradients.
    """
    batch = jax.jit(functools.partial(_ggn_diagonal_batch, logits_fn))
    total = jax.tree.map(jnp.zeros_like, params)
    for x_batch, mask in _batches(x, batch_size, _leaf_dtype(params)):
        total = jax.tree.map(jnp.add, total, batch(params, x_batch, mask))
    return total


def _ggn_diagonal_batch(logits_fn: LogitsFn, params: Any, x: jax.Array, mask: jax.Array) -> Any:
    """sum over the rows of ``x`` (B, ...) (weighted by ``mask`` (B,), 0 or 1) of sum_c g_nc^2."""
    zeros = jax.tree.map(jnp.zeros_like, params)

    def one_example(x_n: jax.Array, mask_n: jax.Array) -> Any:
        logits, pullback = jax.vjp(lambda p: logits_fn(p, x_n[None])[0], params)
        factor = softmax_hessian_factor(logits) * mask_n

        def add_class(acc: Any, column: jax.Array) -> tuple[Any, None]:
            (grad,) = pullback(column)
            return jax.tree.map(lambda a, g: a + g * g, acc, grad), None

        return jax.lax.scan(add_class, zeros, factor.T)[0]

    def add_step(total: Any, step: tuple[jax.Array, jax.Array]) -> tuple[Any, None]:
        per_example = jax.vmap(one_example)(*step)
        return jax.tree.map(lambda t, a: t + a.sum(0), total, per_example), None

    width = min(EXAMPLES_PER_STEP, x.shape[0])
    steps = (x.reshape(-1, width, *x.shape[1:]), mask.reshape(-1, width))
    return jax.lax.scan(add_step, zeros, steps)[0]


def ggn_block(logits_fn: LogitsFn, params: dict[str, jax.Array], x: Any, sites: Sequence[str], *,
              batch_size: int = 1000) -> jax.Array:
    """The exact GGN of the Categorical negative log likelihood restricted to the coordinates of
    ``sites``, every other site held at ``params``: (K, K), K the sites' total size, in the order of
    ``ravel_pytree({s: params[s] for s in sites})`` (``flat_coordinates`` maps it into the flat vector).
    Where the logits are affine in those coordinates (a network's last layer) this is the exact
    Hessian of the negative log likelihood there. Batched like ``ggn_diagonal``; memory
    ``batch_size`` x C x K floats.
    """
    block, unravel_block = ravel_pytree({name: params[name] for name in sites})
    batch = jax.jit(functools.partial(_ggn_block_batch, logits_fn, unravel_block))
    total = jnp.zeros((block.shape[0], block.shape[0]), block.dtype)
    for x_batch, mask in _batches(x, batch_size, block.dtype):
        total = total + batch(params, block, x_batch, mask)
    return total


def _ggn_block_batch(logits_fn: LogitsFn, unravel_block: Callable[[jax.Array], dict[str, jax.Array]],
                     params: dict[str, jax.Array], block: jax.Array, x: jax.Array, mask: jax.Array) -> jax.Array:
    """sum over the rows of ``x`` (B, ...) (weighted by ``mask``) of sum_c g_nc g_nc^T, (K, K)."""

    def one_example(x_n: jax.Array, mask_n: jax.Array) -> jax.Array:
        logits, pullback = jax.vjp(lambda u: logits_fn({**params, **unravel_block(u)}, x_n[None])[0], block)
        factor = softmax_hessian_factor(logits) * mask_n
        return jax.vmap(pullback)(factor.T)[0]  # (C, K)

    rows = jax.vmap(one_example)(x, mask).reshape(-1, block.shape[0])
    return jnp.matmul(rows.T, rows, precision=jax.lax.Precision.HIGHEST)


def hessian_diagonal(fn: Callable[[dict[str, jax.Array]], jax.Array], params: dict[str, jax.Array], *,
                     chunk_size: int = 256) -> dict[str, jax.Array]:
    """The exact diagonal of the Hessian of the scalar ``fn(params)``, a dict shaped like ``params``.

    Site by site: when the Hessian within a site is diagonal (each coordinate's term depends on that
    coordinate alone, given the other sites: iid priors, scale mixtures, hierarchical priors), one
    Hessian-vector product with a vector of ones is that diagonal. This is checked with a second
    product, against a fixed random vector v: H v must equal (H 1) * v to 1e-5 of its largest entry
    (float32 rounding leaves ~1e-7). A site that fails (a prior coupling its coordinates, such as a
    matrix normal) gets its diagonal exactly from one-hot products, ``chunk_size`` at a time: O(size)
    products, slow for a large site, never wrong.
    """
    products = jax.jit(functools.partial(_shortcut_products, fn))(params)  # every site in one program
    diagonal = {}
    for name, (row_sums, probe, probed) in products.items():
        gap = float(jnp.max(jnp.abs(probed - row_sums * probe), initial=0.0))
        if params[name].size == 1 or gap <= 1e-5 * float(jnp.max(jnp.abs(row_sums * probe), initial=0.0)):
            diagonal[name] = row_sums
        else:
            product = jax.jit(functools.partial(_site_hvp, fn, name))
            diagonal[name] = _one_hot_diagonal(product, params, name, chunk_size)
    return diagonal


def _shortcut_products(fn: Callable[[dict[str, jax.Array]], jax.Array],
                       params: dict[str, jax.Array]) -> dict[str, tuple[jax.Array, jax.Array, jax.Array]]:
    """Per site: ``(H 1, v, H v)`` for the Hessian H within the site and a fixed random vector v."""
    products = {}
    for index, (name, value) in enumerate(params.items()):
        probe = jax.random.normal(jax.random.key(index), value.shape, value.dtype)
        products[name] = (_site_hvp(fn, name, params, jnp.ones_like(value)), probe, _site_hvp(fn, name, params, probe))
    return products


def _site_hvp(fn: Callable[[dict[str, jax.Array]], jax.Array], name: str, params: dict[str, jax.Array],
              tangent: jax.Array) -> jax.Array:
    """The Hessian of ``fn`` in site ``name`` (other sites fixed) times ``tangent`` (site-shaped)."""

    def of_site(value: jax.Array) -> jax.Array:
        return fn({**params, name: value})

    return jax.jvp(jax.grad(of_site), (params[name],), (tangent,))[1]


def _one_hot_diagonal(product: Callable[..., jax.Array], params: dict[str, jax.Array], name: str,
                      chunk_size: int) -> jax.Array:
    """The diagonal of the Hessian within site ``name`` from one-hot products, ``chunk_size`` at a time."""
    value = params[name]
    size = int(value.size)

    @jax.jit
    def chunk(params: dict[str, jax.Array], start: jax.Array) -> jax.Array:
        index = jnp.minimum(start + jnp.arange(chunk_size), size - 1)
        tangents = jax.nn.one_hot(index, size, dtype=value.dtype).reshape(-1, *value.shape)
        columns = jax.vmap(lambda t: product(params, t).reshape(-1))(tangents)
        return columns[jnp.arange(chunk_size), index]

    entries = jnp.concatenate([chunk(params, start) for start in range(0, size, chunk_size)])
    return entries[:size].reshape(value.shape)


def psd_diagonal(diagonal: jax.Array) -> tuple[jax.Array, int]:
    """``(max(diagonal, 0), number of negative entries clipped)``; ``diagonal`` (P,)."""
    return jnp.maximum(diagonal, 0.0), int(jnp.sum(diagonal < 0))


def psd_block(matrix: jax.Array) -> tuple[jax.Array, int]:
    """The nearest positive semi-definite matrix (K, K) to the symmetric part of ``matrix`` (negative
    eigenvalues set to zero), and the number of eigenvalues clipped."""
    eigvals, eigvecs = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
    clipped = int(jnp.sum(eigvals < 0))
    if clipped == 0:
        return matrix, 0
    return (eigvecs * jnp.maximum(eigvals, 0.0)) @ eigvecs.T, clipped


def flat_coordinates(params: dict[str, jax.Array], sites: Sequence[str]) -> np.ndarray:
    """The positions (K,) in the flat vector ``ravel_pytree(params)[0]`` of the coordinates of ``sites``,
    in the order of ``ravel_pytree({s: params[s] for s in sites})`` (``ggn_block``'s order)."""
    leaves, treedef = jax.tree.flatten(params)
    offsets = np.cumsum([0] + [int(np.size(leaf)) for leaf in leaves])
    positions = jax.tree.unflatten(
        treedef, [np.arange(start, start + np.size(leaf)).reshape(np.shape(leaf)) for start, leaf in zip(offsets[:-1], leaves, strict=True)]
    )
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves({name: positions[name] for name in sites})])


def _leaf_dtype(params: Any) -> Any:
    return jax.tree.leaves(params)[0].dtype


def _batches(x: Any, batch_size: int, dtype: Any) -> Iterator[tuple[jax.Array, jax.Array]]:
    """``(x_batch, mask)`` pairs covering the rows of ``x`` in order, every batch of one shape: B rows
    (``min(batch_size, N)`` rounded up to a multiple of the step width), the last padded with copies of
    its first row whose ``mask`` is 0 (1 elsewhere)."""
    x = np.asarray(x)
    num_rows = x.shape[0]
    rows = min(batch_size, num_rows)
    width = min(EXAMPLES_PER_STEP, rows)
    rows = -(-rows // width) * width
    for start in range(0, num_rows, rows):
        x_batch = x[start : start + rows]
        real = x_batch.shape[0]
        if real < rows:
            x_batch = np.concatenate([x_batch, np.repeat(x_batch[:1], rows - real, axis=0)])
        mask = (np.arange(rows) < real).astype(dtype)
        yield jnp.asarray(x_batch), jnp.asarray(mask)
