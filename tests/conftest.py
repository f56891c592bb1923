"""Test-session set-up: two host devices (parallel chains), a private cache dir for ArviZ, no display."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ppl_uq_test_cache_")
os.environ["MPLBACKEND"] = "Agg"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ppl_uq.experiments import enable_compilation_cache  # noqa: E402

# Refits with the same shapes (determinism checks, redraws) load compiled programs instead of compiling.
enable_compilation_cache(os.path.join(os.environ["XDG_CACHE_HOME"], "jax"))


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
