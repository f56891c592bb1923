"""A Predictor owns its compiled programs: one per Posterior, reused when the Posterior is scored again,
and freed with it, so a long-lived worker scoring many posteriors does not accumulate them."""

import gc
import weakref

import jax
import numpy as np
import psutil
import pytest

from ppl_uq import Posterior
from ppl_uq.harness import as_predictor, evaluate_predictive, predictive_log_probs, uncertainty_measures
from ppl_uq.harness.attacks import Predictor, pgd
from ppl_uq.harness.attacks import as_predictor as attacks_as_predictor
from ppl_uq.harness.attacks._common import Predictor as CommonPredictor
from ppl_uq.harness.attacks._common import as_predictor as common_as_predictor

DIM, CLASSES = 6, 3
#: Allowed RSS growth (MiB) from the 10th to the 50th posterior. Before predictors owned their programs,
#: module-level caches kept every posterior's programs and draws alive: about 7 MiB more per posterior.
RSS_GROWTH_BOUND_MIB = 48.0

TRACES = {"model": 0}


def linear_model(ppl, x, y=None):
    """A tiny softmax-linear model, logits = x @ w (no sampling site for y, so it compiles fast)."""
    TRACES["model"] += 1  # a Python side effect: runs once per trace, never in compiled code
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([DIM, CLASSES]).to_event(2))
    ppl.deterministic("logits", x @ w)


def make_posterior(seed, num_draws=16):
    """A hand-made Posterior of ``linear_model`` with random draws (no fit, for speed)."""
    rng = np.random.default_rng(seed)
    w = (2.0 * rng.normal(size=(1, num_draws, DIM, CLASSES))).astype(np.float32)
    return Posterior(method="handmade", model=linear_model, draws={"w": w}, options={})


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, size=(8, DIM)).astype(np.float32), np.arange(8) % CLASSES


def score(model, x, y, seed=0):
    """What a worker does with each posterior: predictive, metrics, uncertainty and a short PGD."""
    predictive_log_probs(model, x)
    evaluate_predictive(model, x, y)
    uncertainty_measures(model, x)
    return pgd(model, x, y, eps=0.1, steps=2, random_start=False, rng_key=jax.random.key(seed))


def test_one_predictor_class_everywhere():
    assert Predictor is CommonPredictor
    assert as_predictor is common_as_predictor is attacks_as_predictor


def test_a_posterior_keeps_one_predictor(points):
    x, _ = points
    posterior = make_posterior(1)
    first = as_predictor(posterior, x)
    assert isinstance(first, Predictor)
    assert as_predictor(posterior, x) is first
    assert as_predictor(posterior, x[:3]) is first  # another batch size, same model
    assert as_predictor(first, x) is first
    assert (first.num_draws, first.num_classes) == (16, CLASSES)
    with pytest.raises(ValueError, match="attack needs at least 5"):
        as_predictor(posterior, x, min_classes=5)
    fn = posterior.log_prob_fn()
    assert as_predictor(fn, x) is not as_predictor(fn, x)  # a plain callable: a new Predictor each call
    # A Posterior's predictor reads its logits (no log-softmax per call); they normalise to log_prob_fn's.
    logits = np.asarray(first.log_prob_fn(x))
    np.testing.assert_allclose(logits, np.asarray(posterior.logits(x)), rtol=1e-6, atol=1e-6)
    normalised = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(normalised, np.asarray(fn(x)), rtol=1e-5, atol=1e-5)
    chosen = np.asarray(first.draw_log_prob_fn(np.array([3, 0]), x))
    np.testing.assert_allclose(chosen, logits[[3, 0]], rtol=1e-6, atol=1e-6)


def test_scoring_a_posterior_again_compiles_nothing(points):
    x, y = points
    posterior = make_posterior(2)
    before = TRACES["model"]
    first = score(posterior, x, y)
    predictor = as_predictor(posterior, x)
    traced, compiled = TRACES["model"], predictor.num_compiled
    assert traced > before and compiled >= 4  # predictive, metrics, uncertainty, PGD
    again = score(posterior, x, y)
    assert TRACES["model"] == traced  # nothing traced again (so nothing compiled again)
    assert predictor.num_compiled == compiled
    np.testing.assert_array_equal(again.x_adv, first.x_adv)
    # a Predictor passed explicitly is reused the same way
    score(predictor, x, y)
    assert TRACES["model"] == traced and predictor.num_compiled == compiled
    old_programs = list(predictor._compiled.values())  # held, so no new program can reuse an id
    predictor.clear_compiled()
    assert predictor.num_compiled == 0
    score(posterior, x, y)
    # Rebuilt (new programs); the model itself need not be traced again: the Posterior's jitted logits
    # keep their own trace, which dies with the Posterior.
    assert predictor.num_compiled == compiled
    assert not any(new is old for new in predictor._compiled.values() for old in old_programs)


def test_a_plain_callable_wrapped_once_compiles_once(points):
    x, y = points
    weights = jax.numpy.asarray(np.random.default_rng(3).normal(size=(4, DIM, CLASSES)), jax.numpy.float32)
    calls = []

    def log_prob_fn(inputs):
        calls.append(1)  # once per trace
        return jax.nn.log_softmax(jax.numpy.einsum("nd,sdc->snc", inputs, weights), axis=-1)

    predictor = as_predictor(log_prob_fn, x)
    score(predictor, x, y)
    count = len(calls)
    score(predictor, x, y)
    assert len(calls) == count


def score_and_drop(seed, x, y):
    """Score a fresh posterior; return weak references to it, its predictor and its model functions."""
    posterior = make_posterior(seed)
    score(posterior, x, y, seed)
    predictor = as_predictor(posterior, x)
    assert predictor.num_compiled >= 4
    return [weakref.ref(obj) for obj in
            (posterior, predictor, posterior.log_prob_fn(), posterior.draw_log_prob_fn())]


def rss_mib():
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.parametrize("count", [6, pytest.param(50, marks=pytest.mark.slow)])
def test_dropped_posteriors_free_their_compiled_programs(points, count):
    """Score ``count`` posteriors one after another, as a long-lived worker does. Every Posterior, its
    Predictor and the model functions closing over its draws must be freed once dropped; with 50, RSS
    after the 50th posterior stays within ``RSS_GROWTH_BOUND_MIB`` of RSS after the 10th."""
    x, y = points
    refs, rss = [], {}
    for seed in range(1, count + 1):
        refs.append(score_and_drop(seed, x, y))
        gc.collect()
        rss[seed] = rss_mib()
    alive = [i for i, group in enumerate(refs) if any(ref() is not None for ref in group)]
    assert alive == []
    if count >= 50:
        growth = rss[50] - rss[10]
        print(f"\nRSS after posterior 10: {rss[10]:.1f} MiB; after posterior 50: {rss[50]:.1f} MiB "
              f"(growth {growth:.1f} MiB, bound {RSS_GROWTH_BOUND_MIB} MiB)")
        assert growth < RSS_GROWTH_BOUND_MIB
