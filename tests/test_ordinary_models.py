"""Models written the ordinary NumPyro way, through every backend (1 of 3: eight schools). A plate of
fixed size, group-level data as x, a deterministic site: each backend fits it (or says clearly why it
cannot), keeps the deterministic site per draw, reports the diagnostics of its kind; the samplers agree
with NUTS and the point estimates are flagged degenerate. The GLMs are in test_ordinary_glms.py, the
constrained sites and other likelihoods in test_ordinary_constrained.py."""

import warnings

import jax
import numpy as np
import pytest
from ordinary_models import (
    COUNTS,
    LABELS,
    OPTIONS,
    SCHOOLS_SIGMA,
    SCHOOLS_Y,
    FitCache,
    X,
    bernoulli_classifier,
    check_ordinary_fit,
    eight_schools,
    poisson_regression,
)

import ppl_uq
from ppl_uq.gates import posterior_gate_flags
from ppl_uq.inference import ConvergenceWarning, model_signature, prepare_data
from ppl_uq.inference._degenerate import DegenerateEstimateWarning


@pytest.fixture(scope="module")
def fits():
    """Every backend on the models below, fitted once (lazily) and shared by this module's tests."""
    return FitCache()


def test_the_signature_reads_a_fixed_plate_without_slicing_the_data():
    signature = model_signature(eight_schools, SCHOOLS_SIGMA, SCHOOLS_Y)
    assert signature.latent == {"mu": ((), False), "tau": ((), False), "z": ((8,), False)}
    assert signature.deterministic == ("theta",) and signature.num_classes is None
    assert signature.observed == "y" and signature.likelihood == "Normal"
    binary = model_signature(bernoulli_classifier, X, LABELS)
    assert binary.logits_shape == (len(X),) and binary.num_classes == 2


def test_label_dtypes_follow_the_likelihood():
    _, labels = prepare_data(bernoulli_classifier, (X, LABELS.astype(np.int64)))
    assert labels.dtype == np.float32 and set(np.unique(labels)) == {0.0, 1.0}
    _, counts = prepare_data(poisson_regression, (X, COUNTS.astype(np.float64)))
    assert counts.dtype == np.int32 and np.array_equal(counts, COUNTS)
    _, effects = prepare_data(eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y))
    assert effects.dtype == np.float32


@pytest.mark.parametrize("backend", sorted(OPTIONS))
def test_every_backend_fits_eight_schools(fits, backend):
    check_ordinary_fit(fits(backend, "schools"), "schools")


@pytest.mark.parametrize("backend", ["slice", "pyro-nuts"])
def test_samplers_agree_with_nuts_on_eight_schools(fits, backend):
    reference, posterior = fits("nuts", "schools"), fits(backend, "schools")
    ref = reference.summary()
    ours = posterior.summary()
    for site in ("mu", "theta[0]"):
        se = np.hypot(ref.loc[site, "sd"] / np.sqrt(ref.loc[site, "ess_bulk"]), ours.loc[site, "sd"] / np.sqrt(ours.loc[site, "ess_bulk"]))
        assert abs(ref.loc[site, "mean"] - ours.loc[site, "mean"]) < 4 * se, site
    # tau is heavy-tailed: compare medians within 35 % (its posterior median is about 3).
    assert abs(np.median(posterior.draws["tau"]) / np.median(reference.draws["tau"]) - 1) < 0.35


@pytest.mark.parametrize("backend", ["map", "deep-ensemble", "bootstrap"])
def test_point_estimates_of_a_hierarchical_model_are_flagged_degenerate(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(DegenerateEstimateWarning, match="latent scale"):
            posterior = ppl_uq.fit(backend, eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y), rng_key=jax.random.key(0),
                                   **OPTIONS[backend])
    assert "tau" in posterior.info["degenerate"]
    assert any(flag.startswith("degenerate") for flag in posterior_gate_flags(posterior))
