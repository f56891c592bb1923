"""Test-session set-up: two host devices (parallel chains), a private cache dir for ArviZ, no display."""

import os
import tempfile

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ppl_uq_test_cache_")
os.environ["MPLBACKEND"] = "Agg"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.register_assert_rewrite("ordinary_models")  # its check_ordinary_fit asserts like a test

from ppl_uq.runs.setup import configure_process  # noqa: E402

# Refits with the same shapes (determinism checks, redraws) load compiled programs instead of compiling.
configure_process(cache_dir=os.path.join(os.environ["XDG_CACHE_HOME"], "jax"))


@pytest.fixture(scope="session")
def tiny_spheres():
    """A small spheres data set (D=10, 120 train, 400 val) and the standard model bound to it."""
    import functools

    from ppl_uq.data import make_spheres
    from ppl_uq.models import squared_logistic

    data = make_spheres(jax.random.key(0), dim=10, num_train=120, num_val=400)
    return data, functools.partial(squared_logistic, **data.model_kwargs)


@pytest.fixture(scope="session")
def regression_data():
    """A 3-feature linear-regression data set (N=40) with known noise sd 1."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=40)).astype(np.float32)
    return x, y


@pytest.fixture(scope="session")
def correlated_regression():
    """Linear regression (N = 50) with two strongly correlated inputs: the posterior correlation of w0 and w1
    is about -0.9, so mean-field and full-rank answers differ clearly (the mean-field sds, conditional sds
    1 / sqrt(precision_ii), are a third of the marginal sds there and equal to them for w2)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    x[:, 1] = x[:, 0] + 0.4 * rng.normal(size=50)
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=50)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.fixture(scope="session")
def digits_data():
    """scikit-learn's bundled digits, [0, 1] pixels, 1,300 train / 497 test (key 0)."""
    from ppl_uq.data import load_digits_split

    return load_digits_split(jax.random.key(0))


@pytest.fixture(scope="session")
def digits_mlp(digits_data):
    """MAP and a 4-member deep ensemble of a 64-32-10 tanh MLP on the digits (~98 % test accuracy).

    Returns ``{"map": Posterior, "deep-ensemble": Posterior}``. L-BFGS runs 300 iterations; the
    ConvergenceWarning that it stopped early is expected and silenced here.
    """
    import functools
    import warnings

    import ppl_uq
    from ppl_uq.inference import ConvergenceWarning
    from ppl_uq.models import mlp_classifier

    model = functools.partial(mlp_classifier, hidden=(32,), num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return {
            "map": ppl_uq.fit("map", model, digits_data.train, rng_key=jax.random.key(1), max_iter=300),
            "deep-ensemble": ppl_uq.fit(
                "deep-ensemble", model, digits_data.train, rng_key=jax.random.key(2), num_members=4, max_iter=300
            ),
        }
