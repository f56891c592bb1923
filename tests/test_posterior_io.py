"""Posterior files: ``Posterior.save`` / ``ppl_uq.load_posterior`` round trips (in this process and in a fresh
one), the model registry that lets a zoo model be rebuilt, and the errors for a missing model or a bad file."""

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import ppl_uq
from ppl_uq.models import MODELS, mlp_classifier, model_from_identity, model_identity, squared_logistic
from ppl_uq.models.logistic import binary_logits
from ppl_uq.posterior import Posterior, PosteriorFileError

#: Tiny fits on the 10-dimensional spheres data (a round-trip check, not an accuracy one).
FITS = {
    "map": ("map", {}),
    "nuts": ("nuts", {"num_warmup": 30, "num_samples": 20, "num_chains": 2}),
    "svi": ("svi", {"guide": "meanfield", "num_steps": 150, "num_samples": 20}),
    "deep-ensemble": ("deep-ensemble", {"num_members": 3}),
    "user": ("map", {}),
}


def user_logistic(ppl, x, y=None, *, prior_scale=5.0):
    """A user's own model (not in the zoo): logistic regression on the raw inputs."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, prior_scale).expand([x.shape[-1]]).to_event(1))
    b = ppl.sample("b", ppl.dist.Normal(0.0, prior_scale))
    return binary_logits(ppl, x @ w + b, y)


USER_MODEL = functools.partial(user_logistic, prior_scale=3.0)


@pytest.fixture(scope="module")
def fits(tiny_spheres):
    """name -> Posterior, each fitted with key 1 (the ``user`` one to ``USER_MODEL``)."""
    data, zoo_model = tiny_spheres
    out = {}
    for name, (backend, options) in FITS.items():
        model = USER_MODEL if name == "user" else zoo_model
        out[name] = ppl_uq.fit(backend, model, data.train, rng_key=jax.random.key(1), **options)
    return out


@pytest.fixture(scope="module")
def saved(fits, tmp_path_factory):
    """name -> path of the saved posterior."""
    folder = tmp_path_factory.mktemp("posteriors")
    return {name: posterior.save(folder / f"{name}.nc") for name, posterior in fits.items()}


def assert_same(expected, actual, where="value"):
    """Deep equality with types: arrays by dtype, shape and bits (NaN equal), tuples stay tuples."""
    assert type(actual) is type(expected), f"{where}: {type(expected).__name__} came back as {type(actual).__name__}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys differ"
        for key in expected:
            assert_same(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: lengths differ"
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            assert_same(a, b, f"{where}.{i}")
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert actual.dtype == expected.dtype and np.shape(actual) == np.shape(expected), where
        np.testing.assert_array_equal(actual, expected, err_msg=where)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), where
    else:
        assert actual == expected, where


def assert_same_posterior(expected: Posterior, actual: Posterior) -> None:
    """Everything saved comes back: draws, stats, loss trace, options, cost, info, kind, data."""
    assert (actual.method, actual.kind) == (expected.method, expected.kind)
    assert_same(expected.draws, actual.draws, "draws")
    assert_same(expected.sample_stats, actual.sample_stats, "sample_stats")
    assert_same(expected.loss_trace, actual.loss_trace, "loss_trace")
    for name in ("options", "cost", "info"):
        assert_same(getattr(expected, name), getattr(actual, name), name)
    assert_same(expected.observed, actual.observed, "observed")


@pytest.mark.parametrize("name", sorted(FITS))
def test_round_trip_in_this_process(fits, saved, tiny_spheres, name):
    data, _ = tiny_spheres
    posterior = fits[name]
    loaded = ppl_uq.load_posterior(saved[name], model=USER_MODEL if name == "user" else None)
    assert_same_posterior(posterior, loaded)
    assert loaded.is_mcmc == (name == "nuts")
    x = data.x_val[:16]
    np.testing.assert_array_equal(np.asarray(loaded.log_probs(x)), np.asarray(posterior.log_probs(x)))


CHILD = """
import functools, json, os, sys
import jax, numpy as np
from ppl_uq.runs.setup import configure_process
configure_process(cache_dir=os.path.join(os.environ["XDG_CACHE_HOME"], "jax"))
import ppl_uq
sys.path.insert(0, {tests!r})
from test_posterior_io import USER_MODEL
spec = json.loads(sys.argv[1])
x = np.load(spec["x"])
report = {{}}
for name, path in spec["files"].items():
    posterior = ppl_uq.load_posterior(path, model=USER_MODEL if name == "user" else None)
    again = posterior.redraw(jax.random.key(5))
    np.savez(os.path.join(spec["out"], name + ".npz"), log_probs=np.asarray(posterior.log_probs(x)),
             redraw_w=again.draws["w"])
    report[name] = {{"method": again.method, "kind": again.kind, "same_options": again.options == posterior.options}}
print(json.dumps(report))
"""


def test_fresh_process_loads_scores_and_redraws(fits, saved, tiny_spheres, tmp_path):
    """A new interpreter rebuilds the zoo model by itself (the user's model is passed), gets the same
    log-probabilities bit for bit, and refits with the same backend, options and saved data."""
    data, _ = tiny_spheres
    x = data.x_val[:16]
    np.save(tmp_path / "x.npy", x)
    spec = {"x": str(tmp_path / "x.npy"), "out": str(tmp_path), "files": {k: str(v) for k, v in saved.items()}}
    env = dict(os.environ, XLA_FLAGS=os.environ["XLA_FLAGS"], XDG_CACHE_HOME=os.environ["XDG_CACHE_HOME"], MPLBACKEND="Agg")
    script = CHILD.format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", script, json.dumps(spec)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name, posterior in fits.items():
        with np.load(tmp_path / f"{name}.npz") as child:
            np.testing.assert_array_equal(child["log_probs"], np.asarray(posterior.log_probs(x)), err_msg=name)
            redrawn = child["redraw_w"]
        assert report[name] == {"method": posterior.method, "kind": posterior.kind, "same_options": True}
        assert redrawn.shape == posterior.draws["w"].shape
        if posterior.method == "map":  # a point estimate: the refit finds the same optimum
            np.testing.assert_allclose(redrawn, posterior.draws["w"], rtol=1e-3, atol=1e-3)
        else:
            assert not np.allclose(redrawn, posterior.draws["w"]), f"{name}: redraw returned the same draws"


def test_zoo_model_is_rebuilt_and_a_given_model_is_used(saved, tiny_spheres):
    data, zoo_model = tiny_spheres
    rebuilt = ppl_uq.load_posterior(saved["map"]).model
    assert isinstance(rebuilt, functools.partial) and rebuilt.func is squared_logistic and rebuilt.args == ()
    assert_same(dict(zoo_model.keywords), dict(rebuilt.keywords), "kwargs")
    given = functools.partial(squared_logistic, **data.model_kwargs)
    assert ppl_uq.load_posterior(saved["map"], model=given).model is given


def test_user_model_must_be_passed(saved):
    with pytest.raises(ValueError, match=r"user_logistic.*model=") as caught:
        ppl_uq.load_posterior(saved["user"])
    assert "load_posterior(path, model=...)" in str(caught.value)


def test_missing_corrupt_and_foreign_files(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="no posterior file"):
        ppl_uq.load_posterior(tmp_path / "absent.nc")
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"not a netcdf file at all" * 10)
    with pytest.raises(PosteriorFileError, match="not a readable NetCDF"):
        ppl_uq.load_posterior(garbage)
    truncated = tmp_path / "truncated.nc"
    content = Path(saved["map"]).read_bytes()
    truncated.write_bytes(content[: len(content) // 2])
    with pytest.raises(PosteriorFileError):
        ppl_uq.load_posterior(truncated)
    foreign = tmp_path / "foreign.nc"
    Posterior(method="map", model=squared_logistic, draws={"w": np.zeros((1, 1, 2))}, options={}).to_inference_data().to_netcdf(
        str(foreign)
    )
    with pytest.raises(PosteriorFileError, match="not a ppl_uq posterior"):
        ppl_uq.load_posterior(foreign)


def test_save_is_atomic_and_respects_the_umask(fits, tmp_path):
    target = tmp_path / "new" / "posterior.nc"  # the folder is created
    previous = os.umask(0o027)
    try:
        assert fits["map"].save(target) == target
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o777 == 0o640
    fits["deep-ensemble"].save(target)  # overwrite in place
    assert ppl_uq.load_posterior(target).method == "deep-ensemble"
    before = target.read_bytes()
    bad = Posterior(method="map", model=squared_logistic, draws={"w": np.zeros((1, 1, 2))}, options={},
                    info={"callback": print})
    with pytest.raises(TypeError, match=r"info\.callback"):
        bad.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["posterior.nc"]  # no temporary files left


def test_hand_made_posterior_keeps_types_of_options_and_info(tmp_path):
    model = functools.partial(mlp_classifier, hidden=(3,), num_classes=2, prior_scale=0.5)
    rng = np.random.default_rng(0)
    shapes = {"w0": (4, 3), "b0": (3,), "w1": (3, 2), "b1": (2,)}
    draws = {name: rng.normal(size=(1, 5, *shape)).astype(np.float32) for name, shape in shapes.items()}
    posterior = Posterior(
        method="handmade", model=model, draws=draws,
        options={"pair": (1, 2.5), "nested": {"a": [1, None, "s", True]}, "shape": [(2, 3)]},
        cost={"fit_seconds": 0.25},
        info={"nan": float("nan"), "minus_inf": -math.inf, "scalar": np.float32(1.5), "flag": np.bool_(True),
              "counts": np.arange(3, dtype=np.int16), "params": {"loc": np.ones((2, 2), np.float64)}},
        loss_trace=np.linspace(3.0, 1.0, 7).reshape(1, 7),
    )
    assert posterior.kind is None and not posterior.is_mcmc
    loaded = ppl_uq.load_posterior(posterior.save(tmp_path / "handmade.nc"))
    assert_same_posterior(posterior, loaded)
    assert model_identity(loaded.model) == {"name": "mlp_classifier", "kwargs": {"hidden": (3,), "num_classes": 2, "prior_scale": 0.5}}
    x = rng.normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded.log_probs(x)), np.asarray(posterior.log_probs(x)))
    with pytest.raises(NotImplementedError, match="cannot be refitted"):
        loaded.redraw(jax.random.key(0))


def test_model_registry():
    assert MODELS == {
        "normal_precision": ppl_uq.models.normal_precision,
        "squared_logistic": squared_logistic,
        "hierarchical_logistic": ppl_uq.models.hierarchical_logistic,
        "nonzero_mean_logistic": ppl_uq.models.nonzero_mean_logistic,
        "mlp_classifier": mlp_classifier,
        "bnn_mlp": ppl_uq.models.bnn_mlp,
        "autoencoder_classifier": ppl_uq.models.autoencoder_classifier,
        "normal_mean": ppl_uq.models.normal_mean,
        "linear_regression": ppl_uq.models.linear_regression,
    }
    loc = np.arange(3, dtype=np.float32)
    assert model_identity(squared_logistic) == {"name": "squared_logistic", "kwargs": {}}
    identity = model_identity(functools.partial(squared_logistic, feature_loc=loc, prior_scale=2.0))
    assert identity["name"] == "squared_logistic" and identity["kwargs"]["feature_loc"] is loc
    assert model_identity(user_logistic) is None
    assert model_identity(USER_MODEL) is None
    assert model_identity(functools.partial(squared_logistic, None)) is None  # positional arguments
    assert model_identity(functools.partial(squared_logistic, prior_scale=print)) is None  # not plain
    assert model_from_identity({"name": "normal_mean", "kwargs": {}}) is ppl_uq.models.normal_mean
    rebuilt = model_from_identity({"name": "mlp_classifier", "kwargs": {"hidden": (4,)}})
    assert rebuilt.func is mlp_classifier and rebuilt.keywords == {"hidden": (4,)}
    with pytest.raises(ValueError, match="not in ppl_uq.models.MODELS"):
        model_from_identity({"name": "no_such_model", "kwargs": {}})
    with pytest.raises(ValueError, match="identity must be"):
        model_from_identity("squared_logistic")
