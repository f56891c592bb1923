"""Density confidence (Subramanya, Srinivas & Babu; seed 002) and the softmax scaling pathology.

After ordinary training, one diagonal Gaussian per class is fitted to the pre-softmax activations z
(logits, shape (D,) per point) of the training data; the confidence of a new point is the largest class
posterior by Bayes' rule,

    p(y = k | z) = pi_k N(z; mu_k, s Sigma_k) / sum_j pi_j N(z; mu_j, s Sigma_j),

with pi the training class frequencies and Sigma_k = diag(var_k). The covariance scale ``s``
(``cov_scale``) is the paper's answer to the Gaussian annulus: in D dimensions a Gaussian's mass sits
at distance ~sqrt(D) from its mean, so unscaled densities of most points are all vanishingly small and
Bayes' rule saturates. The paper's symbol for the scale is lost in the seed text; here it is a
configurable factor (a reconstruction, see ``../shared/seed-details.md`` section 5). Everything is
computed in log space (``logsumexp`` over classes), so no density underflows.

Which class's posterior is "the confidence"? The paper takes the label from the network ("by looking at
the maximum entry of z") and the confidence from Bayes' rule; read literally that is p(y = predicted | z),
while a common reading is max_k p(y = k | z). The two agree wherever the density's argmax is the
network's (94 % of the clean digits test points below). ``density_confidence`` gives the max by default
and the posterior of given classes with ``classes=``; the robustness curves report both.

Default scale, measured (``DEFAULT_COV_SCALE = 8``): the digits MAP MLP of the test suite (64-32-10
tanh, ``digits_mlp["map"]``: ``fit("map", ..., rng_key=key(1), max_iter=300)`` on
``load_digits_split(key(0))``, 98.0 % test accuracy), density fitted to its 1,300 training logits,
confidence of the 497 test images under Gaussian noise of sd 0, 0.1, ..., 1.0 (``gaussian_noise``,
clipped to [0, 1]); each image's confidence divided by its clean confidence, averaged over images, then
averaged over 8 noise keys (standard error of each entry <= 0.008 for s <= 15); "keys" counts the
single-key curves that fall strictly at every step.

max_k p(y = k | z):

    cov_scale  clean mean  normalised curve, sd = 0 ... 1.0                                   keys
    1          0.994       1.000 1.001 0.995 0.985 0.975 0.968 0.967 0.964 0.963 0.963 0.961  0/8
    3          0.976       1.000 0.997 0.984 0.956 0.929 0.913 0.899 0.893 0.893 0.893 0.892  2/8
    5          0.942       1.000 0.992 0.968 0.933 0.896 0.871 0.853 0.844 0.842 0.842 0.841  2/8
    7          0.890       1.000 0.987 0.957 0.919 0.880 0.852 0.834 0.825 0.821 0.820 0.820  5/8
    8          0.860       1.000 0.986 0.954 0.915 0.878 0.851 0.833 0.824 0.820 0.819 0.819  6/8
    10         0.800       1.000 0.982 0.950 0.914 0.883 0.858 0.845 0.836 0.832 0.831 0.831  4/8
    15         0.672       1.000 0.979 0.957 0.939 0.926 0.917 0.912 0.910 0.910 0.912 0.914  1/8
    30         0.514       1.000 0.995 0.999 1.005 1.013 1.020 1.025 1.030 1.035 1.039 1.043  0/8
    100        0.436       1.000 1.004 1.011 1.021 1.030 1.037 1.042 1.047 1.050 1.052 1.054  0/8

p(y = argmax z | z):

    1          0.990       1.000 1.002 1.005 0.965 0.926 0.891 0.856 0.846 0.846 0.838 0.825  0/8
    3          0.973       1.000 0.992 0.971 0.928 0.877 0.837 0.809 0.789 0.782 0.776 0.768  6/8
    5          0.937       1.000 0.989 0.964 0.915 0.859 0.817 0.791 0.773 0.763 0.758 0.751  5/8
    8          0.848       1.000 0.984 0.953 0.898 0.841 0.800 0.776 0.760 0.750 0.744 0.738  4/8
    10         0.782       1.000 0.980 0.948 0.893 0.839 0.801 0.778 0.764 0.756 0.750 0.745  4/8
    15         0.629       1.000 0.975 0.946 0.897 0.858 0.834 0.818 0.811 0.810 0.805 0.804  0/8
    30         0.381       1.000 0.977 0.976 0.966 0.986 1.013 1.037 1.057 1.078 1.086 1.101  0/8
    100        0.173       1.000 1.005 1.069 1.147 1.308 1.460 1.591 1.686 1.759 1.799 1.855  0/8

    (max softmax of the same model: 1.000 0.986 0.954 0.907 0.855 0.816 0.797 0.786 0.778 0.773 0.771)

s = 8 is the scale whose key-averaged curve falls at every step under both readings (6 to 8 for the max,
3 to 10 for the predicted class), and the most reliable single-key one for the max. At s = 1 clean points
are saturated (the annulus effect) and the first noise levels *raise* confidence; from s ~ 30 up the
fall turns into a rise (the quadratic terms fade and the posterior tends to a point-independent one set
by the priors and the log-determinants). Beyond sd ~ 0.7 every curve is flat to within its standard
error (clipped noise saturates the images). Under blur (sigma 0 to 2) no scale tried gives a monotone
curve: confidence bottoms out near sigma 1.2 and recovers (at s = 8: max 1.000 1.000 0.983 0.906 0.825
0.747 0.710 0.713 0.733 0.754 0.768). Other models and data need their own check: the scale is a keyword
everywhere. This tanh MLP's logits are bounded, so its softmax falls with noise too; the pathology needs
(positively) homogeneous layers, see Lemma 3.1 below.

Posterior ensembles: the pre-softmax activations of a posterior with S draws are taken as the draw-mean
of the per-draw logits (``posterior_features``).

Lemma 3.1 (softmax pathology): for alpha >= 1, ``max softmax(alpha z) >= max softmax(z)``; a network with
positively homogeneous layers maps an input scaled by alpha to logits scaled by alpha, so softmax
confidence rises with the input's norm whatever the data. ``softmax_scaling_demo`` shows it beside the
density confidence of the same scaled logits.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data.validate import as_finite_array, check_labels, check_positive
from .predictive import Predictor, batches, check_batch_size, check_points, pad_rows

#: Covariance scale chosen on the digits data (see the module docstring for the measurements).
DEFAULT_COV_SCALE = 8.0


class DensityConfidence(NamedTuple):
    """Class-conditional diagonal Gaussians over feature vectors (a pytree, so it can enter ``jax.jit``).

    Attributes:
        means: (K, D) per-class feature means.
        variances: (K, D) per-class feature variances (population, ddof 0), floored at ``min_var``.
        log_priors: (K,) log of the training class frequencies.
        cov_scale: the factor the variances are multiplied by when densities are evaluated.
    """

    means: jax.Array
    variances: jax.Array
    log_priors: jax.Array
    cov_scale: float


def fit_density_confidence(
    train_logits: Any,
    y: Any,
    *,
    num_classes: int | None = None,
    cov_scale: float = DEFAULT_COV_SCALE,
    min_var: float = 1e-6,
) -> DensityConfidence:
    """Fit one diagonal Gaussian per class to training features (logits) and the class priors.

    Args:
        train_logits: (N, D) pre-softmax activations of the training data (e.g. ``posterior_features``).
        y: (N,) integer labels in [0, K).
        num_classes: K; default ``max(y) + 1``.
        cov_scale: factor on every variance when densities are evaluated (> 0; see the module docstring).
        min_var: floor on each variance (> 0); a class seen once gets variance ``min_var``.
    Returns:
        a ``DensityConfidence`` (means and variances float32 (K, D), log_priors float32 (K,)); moments
        are computed in float64.
    Raises:
        ValueError: when a class in [0, K) has no training point (its density cannot be fitted), or on
            non-finite features, mismatched shapes, bad labels or non-positive settings.
    """
    features = as_finite_array(train_logits, "train_logits", min_ndim=2)
    if features.ndim != 2:
        raise ValueError(f"train_logits must have shape (N, D), got {features.shape}")
    labels = as_finite_array(y, "y")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"y must have shape ({features.shape[0]},) to match train_logits, got {labels.shape}")
    if num_classes is None:
        if np.issubdtype(labels.dtype, np.floating) and not np.all(labels == np.round(labels)):
            raise ValueError("y holds non-integer values; class labels must be integers")
        num_classes = int(np.max(labels)) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    labels = check_labels(labels, int(num_classes))
    cov_scale = check_positive("cov_scale", cov_scale)
    min_var = check_positive("min_var", min_var)

    counts = np.bincount(labels, minlength=num_classes)
    absent = np.flatnonzero(counts == 0)
    if absent.size:
        raise ValueError(
            f"class(es) {absent.tolist()} have no training point, so their densities cannot be fitted; "
            f"pass the labels of every class in [0, {num_classes}) or a smaller num_classes"
        )
    features = features.astype(np.float64)
    onehot = np.eye(num_classes)[labels]  # (N, K)
    means = onehot.T @ features / counts[:, None]
    variances = onehot.T @ np.square(features - means[labels]) / counts[:, None]
    variances = np.maximum(variances, min_var)
    log_priors = np.log(counts / counts.sum())
    return DensityConfidence(
        means=jnp.asarray(means, jnp.float32),
        variances=jnp.asarray(variances, jnp.float32),
        log_priors=jnp.asarray(log_priors, jnp.float32),
        cov_scale=cov_scale,
    )


def _check_features(density: DensityConfidence, logits: Any) -> jax.Array:
    """``logits`` as a float array (N, D) matching ``density``; finiteness is checked when concrete."""
    if not isinstance(density, DensityConfidence):
        raise TypeError(f"density must be a DensityConfidence (see fit_density_confidence), got {type(density)}")
    if not isinstance(logits, jax.core.Tracer):
        as_finite_array(logits, "logits", min_ndim=2)
    logits = jnp.asarray(logits)
    dim = density.means.shape[1]
    if logits.ndim != 2 or logits.shape[1] != dim:
        raise ValueError(f"logits must have shape (N, {dim}) to match the fitted density, got {logits.shape}")
    return logits


def density_log_posterior(density: DensityConfidence, logits: Any) -> jax.Array:
    """log p(y = k | z) for every point and class, by Bayes' rule with the scaled diagonal Gaussians.

    Pure ``jax.numpy`` (jit-able and differentiable in ``logits``); float32. Differences to the means are
    formed directly (no expanded quadratic, so no cancellation far from the data); memory holds an
    (N, K, D) array, so score very large sets in chunks.

    Args:
        density: a fitted ``DensityConfidence``.
        logits: (N, D) features of the points to score.
    Returns:
        (N, K) log-posteriors; ``logsumexp`` over the last axis is 0.
    """
    z = _check_features(density, logits)
    scaled_var = density.variances * density.cov_scale  # (K, D)
    squared = jnp.square(z[:, None, :] - density.means[None, :, :]) / scaled_var[None]  # (N, K, D)
    log_likelihood = -0.5 * (jnp.sum(squared, axis=-1) + jnp.sum(jnp.log(2.0 * jnp.pi * scaled_var), axis=-1))
    joint = log_likelihood + density.log_priors
    return joint - jax.nn.logsumexp(joint, axis=-1, keepdims=True)


def density_confidence(density: DensityConfidence, logits: Any, classes: Any = None) -> jax.Array:
    """The density confidence of each point: (N,), in (0, 1].

    Args:
        density: a fitted ``DensityConfidence``.
        logits: (N, D) features of the points to score.
        classes: optional (N,) class per point; default ``None`` gives ``max_k p(y = k | z)`` (>= 1/K);
            with classes it gives ``p(y = classes | z)``, e.g. of the network's predicted class.
    Returns:
        float32 array (N,). Pure ``jax.numpy`` (jit-able).
    """
    log_posterior = density_log_posterior(density, logits)
    if classes is None:
        return jnp.exp(jnp.max(log_posterior, axis=-1))
    num_points, num_classes = log_posterior.shape
    if not isinstance(classes, jax.core.Tracer):
        labels = as_finite_array(classes, "classes")
        if labels.shape != (num_points,):
            raise ValueError(f"classes must have shape ({num_points},) to match logits, got {labels.shape}")
        classes = check_labels(labels, num_classes)
    classes = jnp.asarray(classes)
    return jnp.exp(jnp.take_along_axis(log_posterior, classes[:, None].astype(jnp.int32), axis=-1)[:, 0])


def posterior_features(model: Any, x: Any, *, batch_size: int = 1000) -> np.ndarray:
    """Pre-softmax activations of a posterior ensemble: the draw-mean of the per-draw logits.

    A ``Posterior`` (anything with a ``logits(x) -> (S, N, C)`` method) gives the mean over its S draws of
    the per-draw logits. A plain callable ``x -> (S, N, C)`` is used as is: the mean over draws of whatever
    it returns (log-probabilities differ from logits by a per-draw, per-point shift of all C entries, which
    does move the features; pass logits when you have them). A ``Predictor`` is its ``log_prob_fn``, used
    the same way (its compiled program is kept on it). With S = 1 the features are the logits.

    Args:
        model: a ``Posterior``, a ``Predictor`` or a callable ``x (n, ...) -> (S, n, C)``.
        x: (N, ...) inputs, finite.
        batch_size: points per chunk.
    Returns:
        float32 array (N, C).
    """
    x = check_points(x)
    batch_size = check_batch_size(batch_size)
    scores_fn = _scores_fn(model)
    shape = jax.eval_shape(scores_fn, jax.ShapeDtypeStruct((1,) + x.shape[1:], jnp.float32)).shape
    if len(shape) != 3 or shape[1] != 1:
        raise ValueError(f"model must map x (N, ...) to (S, N, C); for N=1 it returned shape {shape}")
    size = min(batch_size, x.shape[0])
    if isinstance(model, Predictor):
        compute = model.reduction(_mean_over_draws)
    else:  # a program of this call only: nothing outlives it
        compute = jax.jit(lambda xb: _mean_over_draws(scores_fn(xb)))
    out = np.empty((x.shape[0], shape[2]), np.float32)
    for start, stop in batches(x.shape[0], size):
        out[start:stop] = np.asarray(compute(pad_rows(x[start:stop], size)))[: stop - start]
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the model returned NaN or infinite logits on these inputs")
    return out


def _mean_over_draws(scores: jax.Array) -> jax.Array:
    """(S, n, C) -> (n, C), the mean over draws."""
    return jnp.mean(scores, axis=0)


def _scores_fn(model: Any) -> Callable[[jax.Array], jax.Array]:
    if isinstance(model, Predictor):
        return model.log_prob_fn
    if hasattr(model, "logits") and callable(model.logits):
        return model.logits
    if callable(model):
        return model
    raise TypeError(f"model must be a Posterior or a callable x -> (S, N, C) (or a Predictor), got {type(model).__name__}")


def max_softmax(logits: Any) -> np.ndarray:
    """``max_c softmax(z)_c = 1 / sum_c exp(z_c - max z)`` per row, in float64 NumPy: (N,)."""
    z = np.asarray(logits, np.float64)
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return 1.0 / np.sum(np.exp(shifted), axis=-1)


def softmax_scaling_demo(
    logits: Any, alphas: Any, *, density: DensityConfidence | None = None
) -> dict[str, Any]:
    """Lemma 3.1 on data: scale the logits by each alpha and compare softmax with density confidence.

    Scaling by alpha > 0 leaves the predicted class (argmax z) unchanged, so the three confidences below
    all refer to the same decision.

    Args:
        logits: (N, C) logits of some points (e.g. test points), unscaled.
        alphas: 1-D sequence of positive scales.
        density: optional ``DensityConfidence`` fitted to the *unscaled* training logits; when given, the
            density confidence of every scaled logit vector is reported too.
    Returns:
        dict with ``alphas`` (list, as given); ``mean_max_softmax`` (list: mean over points of
        max softmax(alpha z), in float64); ``mean_density_confidence`` (mean of max_k p(k | alpha z)) and
        ``mean_density_confidence_predicted`` (mean of p(argmax z | alpha z)), lists, or ``None`` without
        ``density``; ``softmax_non_decreasing`` (bool: per point, max softmax never falls as alpha
        increases, the lemma); and ``statement`` (a sentence).
    """
    z = as_finite_array(logits, "logits", min_ndim=2)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {z.shape}")
    scales = as_finite_array(alphas, "alphas").astype(np.float64)
    if scales.ndim != 1 or np.any(scales <= 0):
        raise ValueError(f"alphas must be a 1-D sequence of numbers > 0, got {np.asarray(alphas)!r}")
    per_alpha = np.stack([max_softmax(alpha * z) for alpha in scales])  # (A, N)
    order = np.argsort(scales, kind="stable")
    non_decreasing = bool(np.all(np.diff(per_alpha[order], axis=0) >= 0))
    density_max = density_predicted = None
    if density is not None:
        predicted = np.argmax(z, axis=1)
        scaled = [(alpha * z).astype(np.float32) for alpha in scales]
        density_max = [float(np.mean(np.asarray(density_confidence(density, s), np.float64))) for s in scaled]
        density_predicted = [
            float(np.mean(np.asarray(density_confidence(density, s, predicted), np.float64))) for s in scaled
        ]
    return {
        "alphas": scales.tolist(),
        "mean_max_softmax": np.mean(per_alpha, axis=1).tolist(),
        "mean_density_confidence": density_max,
        "mean_density_confidence_predicted": density_predicted,
        "softmax_non_decreasing": non_decreasing,
        "statement": "Lemma 3.1: for alpha >= 1, max softmax(alpha z) >= max softmax(z), whatever the data",
    }


__all__ = [
    "DEFAULT_COV_SCALE",
    "DensityConfidence",
    "density_confidence",
    "density_log_posterior",
    "fit_density_confidence",
    "max_softmax",
    "posterior_features",
    "softmax_scaling_demo",
]
