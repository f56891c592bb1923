"""Inference methods on one Bayesian MLP for scikit-learn's bundled digits, through the common harness.

Fits a 64-32-10 tanh MLP (``mlp_classifier``) with several backends, then writes the harness report
(``ppl_uq.report.harness_report``) to ``--out``: calibration and reliability diagrams, uncertainty
histograms for correct vs wrong predictions, misclassification / OOD / balanced adversarial-detection
AUROC, PGD L-infinity robustness curves, the transfer matrix with Gaussian-noise control rows, DeepFool /
L-BFGS / min-norm minimum distortions, the seed-002 density confidence and its failure counts, corruption
curves (noise, blur, JPEG) and the attack sanity checks.

OOD inputs: the test digits with their pixels shuffled (independently per image): the same pixel values
and ink mass, no digit structure. The data ship with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run."""

    members: int
    svi_steps: int
    num_draws: int
    num_attack: int
    min_distortion_points: int
    pgd_steps: int


PROFILES = {
    "quick": Profile(members=5, svi_steps=3_000, num_draws=100, num_attack=200, min_distortion_points=50,
                     pgd_steps=20),
    "full": Profile(members=10, svi_steps=10_000, num_draws=200, num_attack=497, min_distortion_points=200,
                    pgd_steps=40),
}

#: backend name -> options for a profile.
BACKENDS = {
    "map": lambda p: {},
    "laplace": lambda p: {"jitter": 0.1, "num_samples": p.num_draws},
    "svi": lambda p: {"guide": "meanfield", "num_steps": p.svi_steps, "num_samples": p.num_draws},
    "ml-mixture": lambda p: {"guide": "meanfield", "num_steps": p.svi_steps, "num_samples": p.num_draws},
    "deep-ensemble": lambda p: {"num_members": p.members},
}

EPS_VALUES = (0.0, 0.02, 0.05, 0.1, 0.2)


def _say(start: float, message: str) -> None:
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", file=sys.stderr, flush=True)


def run(profile_name: str, backends: Sequence[str], seed: int, out: Path) -> dict[str, Any]:
    """Fit every backend and write the harness report to ``out``; return the report's payload."""
    import jax
    import numpy as np

    import ppl_uq
    from ppl_uq.data import load_digits_split
    from ppl_uq.inference import ConvergenceWarning
    from ppl_uq.models import mlp_classifier
    from ppl_uq.report import harness_report

    start = time.perf_counter()
    profile = PROFILES[profile_name]
    master = jax.random.key(seed)
    data = load_digits_split(jax.random.fold_in(master, 0))
    model = functools.partial(mlp_classifier, hidden=(32,), num_classes=data.num_classes)
    posteriors = {}
    for index, name in enumerate(backends):
        _say(start, f"{name}: fitting")
        with warnings.catch_warnings():
            # Recorded in Posterior.info and shown as a gate flag in the report instead.
            warnings.simplefilter("ignore", ConvergenceWarning)
            posteriors[name] = ppl_uq.fit(name, model, data.train, rng_key=jax.random.fold_in(master, 1 + index),
                                          **BACKENDS[name](profile))
        _say(start, f"{name}: {posteriors[name].num_samples} draws in {posteriors[name].cost['fit_seconds']:.1f}s")
    x_test, y_test = data.test
    ood = np.asarray(jax.random.permutation(jax.random.fold_in(master, 100), x_test, axis=1, independent=True))
    _say(start, "harness report (calibration, uncertainty, attacks, transfer, density, corruptions, sanity)")
    payload = harness_report(
        posteriors, data.test, out, rng_key=jax.random.fold_in(master, 200), eps_values=EPS_VALUES,
        detection_eps=0.1, norm="linf", steps=profile.pgd_steps, bounds=(0.0, 1.0), ood=ood,
        num_attack_points=profile.num_attack, image_shape=data.image_shape,
        min_distortion_points=profile.min_distortion_points, sanity=True, train=data.train,
        title=f"Digits MLP 64-32-10, profile {profile_name}, seed {seed}",
    )
    _say(start, f"wrote {out / 'harness.md'} and its figures")
    return payload


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the digits harness experiment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS),
                        help=f"backends to compare (default: all of {', '.join(BACKENDS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/digits"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown or not args.backends:
        parser.error(f"--backends must name some of {sorted(BACKENDS)}; unknown: {unknown}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python experiments/digits_harness.py`` and ``ppl-uq digits``."""
    args = parse_args(argv)
    from ppl_uq.experiments import enable_compilation_cache

    enable_compilation_cache()
    run(args.profile, args.backends, args.seed, args.out)
    return 0
