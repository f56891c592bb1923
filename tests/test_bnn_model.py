"""The Bayesian MLP family (``ppl_uq.models.bnn``) and its weight priors (``ppl_uq.models.priors``): prior
densities against SciPy (float64, extreme weights), the scale mixture's samples, the matrix-normal
equivalence, the same log joint on both engines, site names and shapes, per-layer priors, errors, the
model's storable identity, and a small MAP fit."""

from __future__ import annotations

import contextlib
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

torch = pytest.importorskip("torch")
pyro = pytest.importorskip("pyro")

import ppl_uq  # noqa: E402
from ppl_uq.inference import ConvergenceWarning  # noqa: E402
from ppl_uq.inference._common import numpyro_model  # noqa: E402
from ppl_uq.inference.pyro_nuts import torch_data, torch_model  # noqa: E402
from ppl_uq.models import (  # noqa: E402
    ACTIVATIONS,
    MODELS,
    PRIORS,
    bnn_mlp,
    iid_gaussian,
    matrix_normal,
    model_from_identity,
    model_identity,
    numpyro_handle,
    prior_distribution,
    pyro_handle,
    scale_mixture,
)

ENGINES = ("numpyro", "pyro")

#: Weights from the far tails to the origin: at |w| = 1e3 both component densities underflow even in
#: float64 (the naive log of the mixture is -inf); 1e-30 squares to 0 in float32.
EXTREME_WEIGHTS = np.array([[-1e3, -3.0, -0.3, -1e-3], [-1e-30, 0.0, 1e-30, 2e-4], [0.05, 1.0, 7.0, 1e3]])


def handle(engine):
    return numpyro_handle() if engine == "numpyro" else pyro_handle()


@contextlib.contextmanager
def precision(engine, float64):
    """Build and evaluate in float64 (JAX's x64 mode, or torch's default dtype) or the usual float32."""
    if not float64:
        yield np.float32
    elif engine == "numpyro":
        with jax.enable_x64(True):
            yield np.float64
    else:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            yield np.float64
        finally:
            torch.set_default_dtype(previous)


def prior_log_density(engine, spec, value, *, float64=True):
    """log p(value) under ``prior_distribution(spec, value.shape)`` on ``engine``, as a Python float."""
    ppl = handle(engine)
    with precision(engine, float64) as dtype:
        distribution = prior_distribution(ppl, spec, np.shape(value))
        assert tuple(distribution.batch_shape) == () and tuple(distribution.event_shape) == np.shape(value)
        return float(distribution.log_prob(ppl.xp.asarray(np.asarray(value, dtype=dtype))))


def scale_mixture_reference(spec, w):
    """SciPy float64: log(pi N(w; 0, s1^2) + (1 - pi) N(w; 0, s2^2)) elementwise, by logsumexp."""
    parts = [
        math.log(spec["pi"]) + scipy.stats.norm.logpdf(w, 0.0, spec["sigma1"]),
        math.log1p(-spec["pi"]) + scipy.stats.norm.logpdf(w, 0.0, spec["sigma2"]),
    ]
    return scipy.special.logsumexp(np.stack(parts), axis=0)


def reference_log_prior(spec, value):
    """An independent float64 log density of any spec (summed over ``value``)."""
    value = np.asarray(value, dtype=np.float64)
    if spec["name"] == "iid_gaussian":
        return scipy.stats.norm.logpdf(value, 0.0, spec["scale"]).sum()
    if spec["name"] == "scale_mixture":
        return scale_mixture_reference(spec, value).sum()
    return scipy.stats.norm.logpdf(value, 0.0, spec["row_scale"] * spec["col_scale"]).sum()


# --- priors ------------------------------------------------------------------------------------


def test_the_prior_registry_and_specs_are_plain_dicts():
    assert set(PRIORS) == {"iid_gaussian", "scale_mixture", "matrix_normal"}
    assert iid_gaussian() == {"name": "iid_gaussian", "scale": 1.0}
    assert scale_mixture() == {"name": "scale_mixture", "pi": 0.5, "sigma1": math.exp(-1), "sigma2": math.exp(-7)}
    assert matrix_normal(2, 0.5) == {"name": "matrix_normal", "row_scale": 2.0, "col_scale": 0.5}
    assert type(matrix_normal(np.float32(2.0))["row_scale"]) is float  # NumPy scalars become plain floats


@pytest.mark.parametrize("engine", ENGINES)
def test_scale_mixture_log_density_matches_scipy_in_float64(engine):
    spec = scale_mixture(0.3, math.exp(-1), math.exp(-7))
    expected = scale_mixture_reference(spec, EXTREME_WEIGHTS)
    assert np.all(np.isfinite(expected))
    # The reference is the mixture density itself where that does not underflow, and finite where the
    # naive log of the density is -inf even in float64.
    def naive(w):
        with np.errstate(divide="ignore"):
            return np.log(
                spec["pi"] * scipy.stats.norm.pdf(w, 0, spec["sigma1"])
                + (1 - spec["pi"]) * scipy.stats.norm.pdf(w, 0, spec["sigma2"])
            )

    moderate = np.abs(EXTREME_WEIGHTS) < 10
    np.testing.assert_allclose(naive(EXTREME_WEIGHTS[moderate]), expected[moderate], rtol=1e-12)
    assert np.all(np.isneginf(naive(EXTREME_WEIGHTS[~moderate])))
    for index, w in np.ndenumerate(EXTREME_WEIGHTS):  # shape (): one weight at a time
        ours = prior_log_density(engine, spec, np.float64(w))
        np.testing.assert_allclose(ours, expected[index], rtol=1e-12, atol=1e-12, err_msg=f"w={w}")
    np.testing.assert_allclose(prior_log_density(engine, spec, EXTREME_WEIGHTS), expected.sum(), rtol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_scale_mixture_is_finite_with_finite_gradients_in_float32(engine):
    """float32, the precision the backends run in: each term is O(10) (log normalisers 7 + 0.9) or the
    exact quadratic; a few roundings at float32's 6e-8 give ~1e-6 absolute, so atol 1e-5 with rtol 1e-6
    (for the -3.7e6 at |w| = 1e3). A wrong weight or scale moves a term by >= 1e-2."""
    spec = scale_mixture()
    expected = scale_mixture_reference(spec, EXTREME_WEIGHTS)
    for index, w in np.ndenumerate(EXTREME_WEIGHTS):
        ours = prior_log_density(engine, spec, np.float32(w), float64=False)
        assert np.isfinite(ours)
        np.testing.assert_allclose(ours, expected[index], rtol=1e-6, atol=1e-5, err_msg=f"w={w}")
    ppl = handle(engine)
    distribution = prior_distribution(ppl, spec, EXTREME_WEIGHTS.shape)
    if engine == "numpyro":
        grad = np.asarray(jax.grad(distribution.log_prob)(jnp.asarray(EXTREME_WEIGHTS, dtype=jnp.float32)))
    else:
        w = torch.tensor(EXTREME_WEIGHTS, dtype=torch.float32, requires_grad=True)
        distribution.log_prob(w).backward()
        grad = w.grad.numpy()
    assert np.all(np.isfinite(grad))
    # Far out the wide component dominates: d/dw log p = -w / sigma1^2.
    np.testing.assert_allclose(grad[0, 0], 1e3 / spec["sigma1"] ** 2, rtol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_scale_mixture_samples_have_the_mixture_variance_and_spike(engine):
    spec = scale_mixture(0.25, math.exp(-1), math.exp(-7))
    pi, s1, s2 = spec["pi"], spec["sigma1"], spec["sigma2"]
    n = 200_000
    distribution = prior_distribution(handle(engine), spec, (n,))
    if engine == "numpyro":
        w = np.asarray(distribution.sample(jax.random.key(0)), dtype=np.float64)
    else:
        pyro.set_rng_seed(0)
        w = distribution.sample().numpy().astype(np.float64)
    assert w.shape == (n,)
    # E[w^2] = pi s1^2 + (1 - pi) s2^2 (mean 0 known); the estimate's sd is sqrt((E[w^4] - E[w^2]^2) / n).
    variance = pi * s1**2 + (1 - pi) * s2**2
    fourth = 3 * (pi * s1**4 + (1 - pi) * s2**4)
    assert abs(np.mean(w**2) - variance) < 5 * math.sqrt((fourth - variance**2) / n)
    # The spike: P(|w| < 5 s2) = (1 - pi) P(|Z| < 5) + pi P(|Z| < 5 s2 / s1), binomial sd; 5 sigma.
    p = (1 - pi) * (1 - 2 * scipy.stats.norm.sf(5)) + pi * (1 - 2 * scipy.stats.norm.sf(5 * s2 / s1))
    assert abs(np.mean(np.abs(w) < 5 * s2) - p) < 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("engine", ENGINES)
def test_matrix_normal_is_the_iid_normal_with_the_product_scale(engine):
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 4)) * 2.0, rng.normal(size=4)
    spec = matrix_normal(0.5, 3.0)
    scipy_mn = scipy.stats.matrix_normal(mean=np.zeros((3, 4)), rowcov=0.25 * np.eye(3), colcov=9.0 * np.eye(4))
    ours = prior_log_density(engine, spec, w)
    np.testing.assert_allclose(ours, scipy_mn.logpdf(w), rtol=1e-12)
    np.testing.assert_allclose(ours, scipy.stats.norm.logpdf(w, 0.0, 1.5).sum(), rtol=1e-12)
    np.testing.assert_allclose(ours, prior_log_density(engine, iid_gaussian(1.5), w), rtol=1e-12)
    # A bias vector gets the same iid N(0, (row_scale col_scale)^2).
    np.testing.assert_allclose(prior_log_density(engine, spec, b), scipy.stats.norm.logpdf(b, 0.0, 1.5).sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="matrix .r, c. or a vector"):
        prior_distribution(handle(engine), spec, (2, 3, 4))


@pytest.mark.parametrize("engine", ENGINES)
def test_iid_gaussian_matches_scipy(engine):
    w = np.random.default_rng(1).normal(size=(5, 2)) * 3
    np.testing.assert_allclose(prior_log_density(engine, iid_gaussian(0.7), w), scipy.stats.norm.logpdf(w, 0, 0.7).sum(), rtol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_prior_has_real_support_with_a_bijection(engine):
    """NUTS, MAP and the autoguides map each site to unconstrained space with ``biject_to(support)``;
    torch's bare ``MixtureSameFamily`` has a support it cannot map."""
    if engine == "numpyro":
        from numpyro.distributions.transforms import biject_to
    else:
        from torch.distributions import biject_to
    for spec in (iid_gaussian(), scale_mixture(), matrix_normal()):
        for shape in ((3, 4), (4,)):
            support = prior_distribution(handle(engine), spec, shape).support
            assert support.event_dim == len(shape)
            transform = biject_to(support)
            z = handle(engine).xp.asarray(np.linspace(-2, 2, 12, dtype=np.float32)[: math.prod(shape)].reshape(shape))
            np.testing.assert_array_equal(np.asarray(transform(z)), np.asarray(z))  # the identity on reals


def test_pyro_initialises_the_scale_mixture_model(small_data):
    from pyro.infer.mcmc.util import initialize_model

    x, y = small_data
    model = torch_model(functools.partial(bnn_mlp, widths=(4, 3), num_classes=3, prior=scale_mixture()))
    pyro.set_rng_seed(0)
    init, potential, _, _ = initialize_model(model, model_args=torch_data(x, y))
    assert list(init) == ["w0", "b0", "w1", "b1", "w2", "b2"] and np.isfinite(float(potential(init)))


# --- activations --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "elu"])
def test_activations_match_both_libraries_and_have_finite_gradients(name):
    assert set(ACTIVATIONS) == {"relu", "tanh", "sigmoid", "elu"}
    act = ACTIVATIONS[name]
    h = np.array([-200.0, -30.0, -2.0, -0.5, 0.0, 1e-3, 0.7, 3.0, 90.0, 200.0], dtype=np.float32)
    jax_reference = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "elu": jax.nn.elu}[name]
    torch_reference = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                       "elu": torch.nn.functional.elu}[name]
    np.testing.assert_allclose(np.asarray(act(jnp, jnp.asarray(h))), np.asarray(jax_reference(h)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(act(torch, torch.tensor(h)).numpy(), torch_reference(torch.tensor(h)).numpy(), rtol=1e-6, atol=1e-7)
    grad = np.asarray(jax.vmap(jax.grad(lambda v: act(jnp, v)))(jnp.asarray(h)))
    reference_grad = np.asarray(jax.vmap(jax.grad(jax_reference))(jnp.asarray(h)))
    assert np.all(np.isfinite(grad))
    keep = h != 0.0  # relu / elu: any subgradient at 0
    np.testing.assert_allclose(grad[keep], reference_grad[keep], rtol=1e-5, atol=1e-7)


# --- the model ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_data():
    """30 points, 5 features, 3 classes."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(30, 5)).astype(np.float32), rng.integers(0, 3, size=30).astype(np.int32)


def numpyro_log_joint(model, x, y, params):
    """NumPyro's log joint at ``params``, jit-compiled (one compilation instead of one per operation)."""
    from numpyro.infer.util import log_density

    return float(jax.jit(lambda p: log_density(numpyro_model(model), (x, y), {}, p)[0])(params))


def pyro_log_joint(model, x, y, params):
    from pyro import poutine

    conditioned = poutine.condition(torch_model(model), {k: torch.tensor(np.array(v)) for k, v in params.items()})
    return float(poutine.trace(conditioned).get_trace(*torch_data(x, y)).log_prob_sum())


def prior_draw(model, x, y, seed):
    """One draw of every latent site from the prior (NumPyro, jit-compiled): name -> array."""
    from numpyro import handlers

    def draw(key):
        model_trace = handlers.trace(handlers.seed(numpyro_model(model), rng_seed=key)).get_trace(x, y)
        return {
            name: site["value"]
            for name, site in model_trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        }

    return {name: np.asarray(value) for name, value in jax.jit(draw)(jax.random.key(seed)).items()}


def numpyro_sites(model, x, y):
    """The NumPyro trace's sites without running it (``jax.eval_shape``): name -> (type, is_observed, shape)."""
    from numpyro import handlers

    kinds = {}

    def run():
        model_trace = handlers.trace(handlers.seed(numpyro_model(model), rng_seed=0)).get_trace(x, y)
        kinds.update({name: (site["type"], site.get("is_observed")) for name, site in model_trace.items()})
        return {name: site["value"] for name, site in model_trace.items() if site["type"] != "plate"}

    shapes = jax.eval_shape(run)
    return {name: (*kind, tuple(shapes[name].shape) if name in shapes else None) for name, kind in kinds.items()}


def reference_log_joint(x, y, params, weight_priors, bias_priors, activation=lambda h: np.maximum(h, 0)):
    """NumPy float64: sum of each layer's prior log densities plus the categorical log likelihood."""
    h = np.asarray(x, dtype=np.float64)
    num_layers = len(weight_priors)
    total = 0.0
    for layer in range(num_layers):
        w, b = (np.asarray(params[f"{k}{layer}"], dtype=np.float64) for k in "wb")
        total += reference_log_prior(weight_priors[layer], w) + reference_log_prior(bias_priors[layer], b)
        h = h @ w + b
        if layer < num_layers - 1:
            h = activation(h)
    log_softmax = h - scipy.special.logsumexp(h, axis=-1, keepdims=True)
    return total + log_softmax[np.arange(len(y)), y].sum()


@pytest.mark.parametrize("prior", [iid_gaussian(0.7), scale_mixture(), matrix_normal(0.5, 3.0)], ids=lambda p: p["name"])
def test_both_engines_give_the_same_log_joint(small_data, prior):
    x, y = small_data
    model = functools.partial(bnn_mlp, widths=(4, 3), num_classes=3, prior=prior)
    for seed in (0, 1):
        params = prior_draw(model, x, y, seed)
        ours = numpyro_log_joint(model, x, y, params)
        theirs = pyro_log_joint(model, x, y, params)
        assert np.isfinite(ours)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
        np.testing.assert_allclose(ours, reference_log_joint(x, y, params, [prior] * 3, [prior] * 3), rtol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "elu"])
def test_both_engines_agree_for_every_activation(small_data, activation):
    x, y = small_data
    model = functools.partial(bnn_mlp, widths=(4, 3), num_classes=3, activation=activation)
    params = prior_draw(model, x, y, 0)
    ours = numpyro_log_joint(model, x, y, params)
    np.testing.assert_allclose(ours, pyro_log_joint(model, x, y, params), rtol=1e-5)
    forward = {"tanh": np.tanh, "sigmoid": scipy.special.expit, "elu": lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0)))}
    spec = iid_gaussian(1.0)
    np.testing.assert_allclose(ours, reference_log_joint(x, y, params, [spec] * 3, [spec] * 3, forward[activation]), rtol=1e-5)


def test_per_layer_priors_apply_to_their_own_layers(small_data):
    x, y = small_data
    priors = [iid_gaussian(2.0), scale_mixture(0.3, 1.0, 0.01), matrix_normal(0.5, 3.0)]
    model = functools.partial(bnn_mlp, widths=(4, 3), num_classes=3, prior=priors)
    params = prior_draw(model, x, y, 0)
    ours = numpyro_log_joint(model, x, y, params)
    np.testing.assert_allclose(ours, reference_log_joint(x, y, params, priors, priors), rtol=1e-5)
    np.testing.assert_allclose(pyro_log_joint(model, x, y, params), ours, rtol=1e-5)
    # Negative control: the same priors in another order give another log joint.
    reordered = functools.partial(bnn_mlp, widths=(4, 3), num_classes=3, prior=priors[::-1])
    assert abs(numpyro_log_joint(reordered, x, y, params) - ours) > 1.0
    # One bias prior for every layer; the weights keep their own.
    bias = iid_gaussian(0.1)
    with_bias = functools.partial(model, bias_prior=bias)
    expected = reference_log_joint(x, y, params, priors, [bias] * 3)
    np.testing.assert_allclose(numpyro_log_joint(with_bias, x, y, params), expected, rtol=1e-5)
    np.testing.assert_allclose(pyro_log_joint(with_bias, x, y, params), expected, rtol=1e-5)


def test_site_names_and_shapes_on_both_engines():
    from pyro import poutine

    x = np.random.default_rng(0).normal(size=(9, 7)).astype(np.float32)
    y = np.arange(9, dtype=np.int32) % 4
    model = functools.partial(bnn_mlp, widths=(6, 5), num_classes=4, prior=scale_mixture())
    expected = {"w0": (7, 6), "b0": (6,), "w1": (6, 5), "b1": (5,), "w2": (5, 4), "b2": (4,)}

    sites = numpyro_sites(model, x, y)
    latent = {name: shape for name, (kind, observed, shape) in sites.items() if kind == "sample" and not observed}
    assert list(latent) == list(expected) and latent == expected
    assert sites["logits"] == ("deterministic", None, (9, 4)) and sites["y"] == ("sample", True, (9,))
    assert sites["data"][0] == "plate"

    pyro.set_rng_seed(0)
    pyro_trace = poutine.util.prune_subsample_sites(poutine.trace(torch_model(model)).get_trace(*torch_data(x, y)))
    nodes = pyro_trace.nodes
    pyro_latent = {k: tuple(s["value"].shape) for k, s in nodes.items() if s["type"] == "sample" and not s["is_observed"]}
    assert list(pyro_latent) == list(expected) and pyro_latent == expected
    assert nodes["logits"]["infer"].get("_deterministic") and tuple(nodes["logits"]["value"].shape) == (9, 4)
    assert nodes["y"]["is_observed"]

    default_sites = numpyro_sites(bnn_mlp, np.zeros((2, 64), np.float32), None)
    assert [default_sites[f"w{layer}"][2] for layer in range(3)] == [(64, 100), (100, 100), (100, 10)]
    assert "w3" not in default_sites and default_sites["logits"][2] == (2, 10)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: iid_gaussian(0.0), "iid_gaussian: scale must be a finite number > 0"),
        (lambda: iid_gaussian(float("inf")), "scale must be a finite number > 0"),
        (lambda: iid_gaussian(True), "scale must be a finite number > 0"),
        (lambda: iid_gaussian("1"), "scale must be a finite number > 0"),
        (lambda: scale_mixture(pi=1.0), "pi must be a number strictly between 0 and 1"),
        (lambda: scale_mixture(pi=float("nan")), "pi must be a number strictly between 0 and 1"),
        (lambda: scale_mixture(sigma2=-1.0), "scale_mixture: sigma2 must be a finite number > 0"),
        (lambda: matrix_normal(col_scale=float("nan")), "matrix_normal: col_scale must be a finite number > 0"),
        (lambda: prior_distribution(numpyro_handle(), {"name": "laplace"}, (2,)), r"prior names prior 'laplace'; known"),
        (lambda: prior_distribution(numpyro_handle(), {"name": "iid_gaussian", "sd": 1.0}, (2,)),
         r"no parameter\(s\) \['sd'\]; its parameters are \['scale'\]"),
        (lambda: prior_distribution(numpyro_handle(), {"name": "iid_gaussian", "scale": -1}, (2,)), "prior: iid_gaussian: scale"),
        (lambda: prior_distribution(numpyro_handle(), 1.0, (2,)), "prior must be a prior spec"),
        (lambda: prior_distribution(numpyro_handle(), iid_gaussian(), (2, 0)), "shape must be a tuple of integers >= 1"),
        (lambda: prior_distribution(numpyro_handle(), iid_gaussian(), 3), "shape must be a tuple of integers >= 1"),
        (lambda: PRIORS["scale_mixture"](numpyro_handle(), iid_gaussian(), (2,)), "got a 'iid_gaussian' prior spec"),
    ],
)
def test_prior_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "kwargs, x_shape, match",
    [
        ({}, (30,), r"x must be 2-D, shaped \(N, D\) \(flatten images to rows\), got shape \(30,\)"),
        ({}, (30, 8, 8), "x must be 2-D"),
        ({"widths": (4, 0)}, (30, 5), "widths must be a tuple of integers >= 1"),
        ({"widths": (4.0,)}, (30, 5), "widths must be a tuple of integers >= 1"),
        ({"widths": (True,)}, (30, 5), "widths must be a tuple of integers >= 1"),
        ({"widths": 4}, (30, 5), "widths must be a tuple of integers >= 1"),
        ({"num_classes": 1}, (30, 5), "num_classes must be an integer >= 2"),
        ({"num_classes": 3.0}, (30, 5), "num_classes must be an integer >= 2"),
        ({"activation": "softplus"}, (30, 5), r"activation must be one of \['elu', 'relu', 'sigmoid', 'tanh'\]"),
        ({"widths": (4,), "prior": [iid_gaussian()] * 3}, (30, 5), r"prior has 3 specs but the network has 2 layers"),
        ({"widths": (4,), "bias_prior": [iid_gaussian()]}, (30, 5), "bias_prior has 1 specs but the network has 2 layers"),
        ({"widths": (4,), "prior": [iid_gaussian(), {"name": "cauchy"}]}, (30, 5), r"prior\[1\] names prior 'cauchy'"),
        ({"prior": "scale_mixture"}, (30, 5), "prior must be a prior spec .* or a list of one per layer"),
    ],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_model_errors_name_the_argument(engine, kwargs, x_shape, match):
    ppl = handle(engine)
    x = ppl.xp.zeros(x_shape)
    with pytest.raises(ValueError, match=match):
        bnn_mlp(ppl, x, **{"num_classes": 3, **kwargs})


def test_identity_round_trips_and_rebuilds_the_same_model(small_data):
    x, y = small_data
    model = functools.partial(bnn_mlp, widths=(20,), prior=scale_mixture())
    identity = model_identity(model)
    assert MODELS["bnn_mlp"] is bnn_mlp
    assert identity == {"name": "bnn_mlp", "kwargs": {"widths": (20,), "prior": scale_mixture()}}
    rebuilt = model_from_identity(identity)
    assert rebuilt.func is bnn_mlp and rebuilt.keywords == model.keywords
    params = prior_draw(model, x, y, 0)
    assert numpyro_log_joint(rebuilt, x, y, params) == numpyro_log_joint(model, x, y, params)
    per_layer = functools.partial(bnn_mlp, prior=[iid_gaussian(), scale_mixture(), matrix_normal(2.0, 0.5)])
    assert model_from_identity(model_identity(per_layer)).keywords == per_layer.keywords


def test_init_to_median_starts_finite_under_the_scale_mixture(small_data):
    """The backends start from ``init_to_median`` (``flat_potential``): 15 prior draws per site, their
    median. Under the scale mixture the start, the log joint and its gradient must be finite (the other
    priors are Normals, as in ``mlp_classifier``). Run as ``initialize_model`` runs it, but jit-compiled."""
    from numpyro import handlers
    from numpyro.infer import init_to_median
    from numpyro.infer.util import log_density

    x, y = small_data
    model = numpyro_model(functools.partial(bnn_mlp, widths=(4, 3), num_classes=3, prior=scale_mixture()))

    def start(key):
        starting = handlers.substitute(handlers.seed(model, rng_seed=key), substitute_fn=init_to_median(num_samples=15))
        model_trace = handlers.trace(starting).get_trace(x, y)
        params = {k: s["value"] for k, s in model_trace.items() if s["type"] == "sample" and not s["is_observed"]}
        value, grad = jax.value_and_grad(lambda p: log_density(model, (x, y), {}, p)[0])(params)
        return params, value, grad

    params, value, grad = jax.jit(start)(jax.random.key(0))
    assert {k: v.shape for k, v in params.items()} == {"w0": (5, 4), "b0": (4,), "w1": (4, 3), "b1": (3,), "w2": (3, 3), "b2": (3,)}
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(np.asarray(g))) for g in grad.values())
    assert all(0 < np.max(np.abs(np.asarray(v))) < 1.0 for v in params.values())  # medians: drawn, and near 0


def test_map_fit_learns_the_digits_and_reloads(digits_data, tmp_path):
    x, y = (array[:200] for array in digits_data.train)
    model = functools.partial(bnn_mlp, widths=(8,), num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # stopping at max_iter is fine here
        posterior = ppl_uq.fit("map", model, (x, y), rng_key=jax.random.key(0), max_iter=300)
    assert posterior.draws["w0"].shape == (1, 1, 64, 8) and posterior.draws["b1"].shape == (1, 1, 10)
    log_probs = np.asarray(posterior.log_probs(x))
    assert log_probs.shape == (1, 200, 10)
    accuracy = np.mean(log_probs[0].argmax(-1) == y)
    assert accuracy > 0.8, accuracy  # chance is about 0.1
    loaded = ppl_uq.load_posterior(posterior.save(tmp_path / "bnn.nc"))
    assert model_identity(loaded.model) == model_identity(model)
    np.testing.assert_array_equal(np.asarray(loaded.log_probs(x)), log_probs)
