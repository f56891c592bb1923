"""The posterior-predictive distribution and the metrics read from it (accuracy, avg. confidence, NLL), and
the harness's one input type, the ``Predictor``.

Everything takes a model: a ``Posterior``, a pure callable ``x (N, D) -> log p(c | x, theta_s)`` of shape
(S, N, C) such as ``Posterior.log_prob_fn()``, or a ``Predictor``; nothing here knows which backend made
the draws. The output is normalised with a log-softmax over classes (a no-op on log-probabilities), so a
logits function such as ``Posterior.logits`` works too.

``as_predictor`` wraps a model as a ``Predictor``, which owns the jit-compiled programs built on it (the
reductions here, the attacks' steps): each is built once per (program, static settings) on that
predictor, and dies with it. A Posterior keeps its Predictor (``as_predictor`` stores it on the
instance), so scoring the same Posterior again compiles nothing new, and dropping the Posterior frees
its compiled programs and the device arrays they hold. A plain callable gets a fresh Predictor on every
call: pass the Predictor itself to reuse its programs. Nothing is cached at module level.
The predictive mean ``p_hat(c | x) = (1/S) sum_s p(c | x, theta_s)`` is kept in log space
(``logsumexp_s - log S``), so probabilities far below float32's smallest normal number stay exact.

Decision rule (stated in every result): the predicted class is the argmax of the posterior-predictive
mean over all S draws (S_eval = S).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..data.validate import as_finite_array, check_labels

LogProbFn = Callable[[jax.Array], jax.Array]

DECISION_RULE = "argmax of the posterior-predictive mean over all S draws (S_eval = S)"


def predictive_log_mean(log_probs: jax.Array) -> jax.Array:
    """log of the posterior-predictive mean, ``logsumexp_s log_probs[s] - log S``.

    Args:
        log_probs: (S, ...) per-draw log-probabilities, typically (S, N, C).
    Returns:
        array of shape ``log_probs.shape[1:]``, e.g. (N, C).
    """
    log_probs = jnp.asarray(log_probs)
    return jax.nn.logsumexp(log_probs, axis=0) - math.log(log_probs.shape[0])


def jensen_log_mean(log_probs: jax.Array) -> jax.Array:
    """The Jensen lower bound on ``predictive_log_mean``: ``mean_s log_probs[s]``, shape ``log_probs.shape[1:]``."""
    return jnp.mean(jnp.asarray(log_probs), axis=0)


def output_shape(log_prob_fn: LogProbFn, x: np.ndarray) -> tuple[int, int]:
    """Return ``(S, C)`` of ``log_prob_fn`` by tracing it on one point (nothing is computed).

    Raises ``ValueError`` when the callable does not return a 3-D (S, N, C) array.
    """
    shape = jax.eval_shape(log_prob_fn, jax.ShapeDtypeStruct((1,) + x.shape[1:], jnp.float32)).shape
    if len(shape) != 3 or shape[1] != 1:
        raise ValueError(
            f"log_prob_fn must map x (N, ...) to log-probabilities (S, N, C); for N=1 it returned shape {shape}"
        )
    return int(shape[0]), int(shape[2])


def check_points(x: Any, name: str = "x") -> np.ndarray:
    """Return ``x`` as a finite float32 array (N, ...) with N >= 1, or raise naming ``name``."""
    array = as_finite_array(x, name, min_ndim=2)
    return array.astype(np.float32)


def check_point_labels(y: Any, num_points: int, num_classes: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as int32 labels (N,) in [0, C), or raise naming ``name``."""
    labels = as_finite_array(y, name)
    if labels.shape != (num_points,):
        raise ValueError(f"{name} must have shape ({num_points},) to match x, got {labels.shape}")
    try:
        return check_labels(labels, num_classes)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def check_batch_size(batch_size: Any) -> int:
    """Return ``batch_size`` as a positive int, or raise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def batches(num_points: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num_points)`` in chunks of at most ``batch_size``."""
    return [(start, min(start + batch_size, num_points)) for start in range(0, num_points, batch_size)]


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """Pad ``array`` to ``size`` rows by repeating its first row (keeps one compiled shape per call)."""
    missing = size - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[:1], missing, axis=0)], axis=0)


class Predictor:
    """The model the harness scores, as pure functions of the input, with the compiled programs built on it.

    Attributes (read-only):
        log_prob_fn: ``x (N, ...) -> (S, N, C)`` per-draw log-probabilities (or logits).
        draw_log_prob_fn: ``(indices (k,), x) -> (k, N, C)``, the same for chosen draws only (EOT).
        num_draws: S, the draws the decision averages over (S_eval).
        num_classes: C.

    ``compiled(build, **static)`` returns ``build(predictor, **static)``, built once per (build, static
    settings) and kept in a dict on this instance (``jax.jit`` itself compiles once per input shape).
    Builders close over ``log_prob_fn`` / ``draw_log_prob_fn``, never over the predictor, so a dropped
    predictor is freed by reference counting, with every program and device array it holds.
    """

    __slots__ = ("_log_prob_fn", "_draw_log_prob_fn", "_num_draws", "_num_classes", "_compiled", "_shapes",
                 "__weakref__")

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        draw_log_prob_fn: Callable[[jax.Array, jax.Array], jax.Array],
        num_draws: int,
        num_classes: int,
    ) -> None:
        self._log_prob_fn = log_prob_fn
        self._draw_log_prob_fn = draw_log_prob_fn
        self._num_draws = int(num_draws)
        self._num_classes = int(num_classes)
        self._compiled: dict[Any, Any] = {}
        self._shapes: dict[tuple[int, ...], tuple[int, int]] = {}

    @property
    def log_prob_fn(self) -> LogProbFn:
        """``x (N, ...) -> (S, N, C)`` per-draw log-probabilities (or logits)."""
        return self._log_prob_fn

    @property
    def draw_log_prob_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """``(indices (k,), x) -> (k, N, C)`` for the chosen draws."""
        return self._draw_log_prob_fn

    @property
    def num_draws(self) -> int:
        """S, the number of draws the decision averages over."""
        return self._num_draws

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return self._num_classes

    def __repr__(self) -> str:
        return f"Predictor(num_draws={self._num_draws}, num_classes={self._num_classes}, compiled={len(self._compiled)})"

    @classmethod
    def from_callable(cls, log_prob_fn: LogProbFn, x: np.ndarray) -> "Predictor":
        """A new Predictor for a plain callable ``x -> (S, N, C)``; ``x`` (N, ...) is traced for (S, C)."""
        num_draws, num_classes = output_shape(log_prob_fn, x)
        predictor = cls(log_prob_fn, _all_draws_then_index(log_prob_fn), num_draws, num_classes)
        predictor._shapes[tuple(x.shape[1:])] = (num_draws, num_classes)
        return predictor

    def check_input(self, x: np.ndarray) -> None:
        """Raise unless ``log_prob_fn`` maps inputs shaped like ``x`` (N, ...) to (S, N, C) with this
        predictor's S and C (traced once per input shape, nothing computed)."""
        key = tuple(x.shape[1:])
        if key not in self._shapes:
            shape = output_shape(self._log_prob_fn, x)
            if shape != (self._num_draws, self._num_classes):
                raise ValueError(f"log_prob_fn maps inputs of shape {key} to (S, C) = {shape}, but this "
                                 f"predictor has (S, C) = ({self._num_draws}, {self._num_classes})")
            self._shapes[key] = shape

    def compiled(self, build: Callable[..., Any], **static: Any) -> Any:
        """``build(self, **static)``, built on the first call with these settings and reused after.

        ``build`` should be a module-level function and ``static`` hashable values (the settings a
        program is specialised on); with an unhashable setting the program is built afresh and not kept.
        Returns whatever ``build`` returns (a jitted function, or a tuple of them).
        """
        key = (build, tuple(sorted(static.items())))
        try:
            found = self._compiled.get(key)
        except TypeError:  # an unhashable setting: build, do not keep
            return build(self, **static)
        if found is None:
            found = self._compiled[key] = build(self, **static)
        return found

    @property
    def num_compiled(self) -> int:
        """How many programs this predictor holds (one per (builder, static settings))."""
        return len(self._compiled)

    def clear_compiled(self) -> None:
        """Drop every compiled program this predictor holds (they are rebuilt on demand)."""
        self._compiled.clear()

    def reduction(self, reduce: Callable[[jax.Array], Any]) -> Callable[[jax.Array], Any]:
        """The jitted ``x (n, ...) -> reduce(log_prob_fn(x))``, built once per ``reduce`` on this predictor.

        Pass a module-level ``reduce``: a new function object (a lambda made per call) is a new program.
        """
        return self.compiled(_build_reduction, reduce=reduce)

    def predictive(self) -> Callable[[jax.Array], jax.Array]:
        """The jitted ``x (n, ...) -> log p_hat (n, C)`` (log-softmax, then the log of the mean over draws)."""
        return self.reduction(normalised_predictive_log_mean)


#: The attribute ``as_predictor`` stores a Posterior's Predictor in (on the Posterior instance).
_PREDICTOR_ATTRIBUTE = "_predictor"


def _all_draws_then_index(log_prob_fn: LogProbFn) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Chosen draws of a plain callable: all S are evaluated, then indexed (correct, not cheaper)."""
    return lambda indices, x: log_prob_fn(x)[indices]


def _build_reduction(predictor: Predictor, *, reduce: Callable[[jax.Array], Any]) -> Callable[[jax.Array], Any]:
    log_prob_fn = predictor.log_prob_fn
    return jax.jit(lambda xb: reduce(log_prob_fn(xb)))


def _is_posterior(model: Any) -> bool:
    return hasattr(model, "log_prob_fn") and hasattr(model, "draw_log_prob_fn")


def _posterior_predictor(posterior: Any, x: np.ndarray) -> Predictor:
    """The Predictor stored on ``posterior``, made and stored on first use (one per Posterior)."""
    predictor = getattr(posterior, _PREDICTOR_ATTRIBUTE, None)
    if isinstance(predictor, Predictor):
        predictor.check_input(x)
        return predictor
    # Logits where the posterior has them: everything here normalises, so the per-call log-softmax of
    # log_prob_fn() would be wasted work.
    if hasattr(posterior, "logits_fn") and hasattr(posterior, "draw_logits_fn"):
        log_prob_fn, draw_log_prob_fn = posterior.logits_fn(), posterior.draw_logits_fn()
    else:
        log_prob_fn, draw_log_prob_fn = posterior.log_prob_fn(), posterior.draw_log_prob_fn()
    num_draws, num_classes = output_shape(log_prob_fn, x)
    predictor = Predictor(log_prob_fn, draw_log_prob_fn, num_draws, num_classes)
    predictor._shapes[tuple(x.shape[1:])] = (num_draws, num_classes)
    try:
        setattr(posterior, _PREDICTOR_ATTRIBUTE, predictor)
    except AttributeError:  # an object that takes no new attributes: its predictor is not kept
        pass
    return predictor


def as_predictor(model: Any, x: np.ndarray, *, min_classes: int = 2) -> Predictor:
    """The ``Predictor`` of a model: a ``Predictor`` itself, a ``Posterior`` (the same Predictor on every
    call, stored on the Posterior), or a callable ``x -> (S, N, C)`` (a new Predictor each call).

    ``x`` is a finite float32 batch (N, ...), used only to trace the output shape (once per input shape).
    Raises ``TypeError`` for anything else, ``ValueError`` when the model does not map x to (S, N, C) or
    returns fewer than ``min_classes`` classes (attacks need 2; the predictive metrics pass 1).
    """
    if isinstance(model, Predictor):
        model.check_input(x)
        predictor = model
    elif _is_posterior(model):
        predictor = _posterior_predictor(model, x)
    elif callable(model):
        predictor = Predictor.from_callable(model, x)
    else:
        raise TypeError(
            f"model must be a Posterior or a callable x -> (S, N, C) log-probabilities (or a Predictor), got "
            f"{type(model).__name__}"
        )
    if predictor.num_classes < min_classes:
        raise ValueError(f"the model returns {predictor.num_classes} class(es); an attack needs at least {min_classes}")
    return predictor


def compiled_reduction(log_prob_fn: Any, reduce: Callable[[jax.Array], Any]) -> Callable[[jax.Array], Any]:
    """``jax.jit(x -> reduce(log_prob_fn(x)))``: a ``Predictor``'s own (built once on it), or for a plain
    callable a new program (nothing is cached for callables; wrap one in a Predictor to reuse it)."""
    if isinstance(log_prob_fn, Predictor):
        return log_prob_fn.reduction(reduce)
    return jax.jit(lambda xb: reduce(log_prob_fn(xb)))


def normalised_predictive_log_mean(scores: jax.Array) -> jax.Array:
    """``predictive_log_mean`` of ``log_softmax(scores)``: (S, n, C) log-probabilities or logits -> (n, C)."""
    return predictive_log_mean(jax.nn.log_softmax(scores, axis=-1))


def compiled_predictive(log_prob_fn: Any) -> Callable[[jax.Array], jax.Array]:
    """The jitted ``x (n, ...) -> log p_hat (n, C)``; see ``compiled_reduction`` for when it is reused."""
    return compiled_reduction(log_prob_fn, normalised_predictive_log_mean)


def predictive_log_probs(log_prob_fn: Any, x: Any, *, batch_size: int = 1000) -> np.ndarray:
    """log p_hat(c | x) for every point, computed ``batch_size`` points at a time.

    ``log_prob_fn`` is a ``Posterior``, a ``Predictor`` or a callable ``x -> (S, N, C)``. Memory holds
    (S, batch_size, C) per-draw log-probabilities at once. Returns a float32 array (N, C).
    """
    x = check_points(x)
    batch_size = check_batch_size(batch_size)
    predictor = as_predictor(log_prob_fn, x, min_classes=1)
    size = min(batch_size, x.shape[0])
    compute = predictor.predictive()
    out = np.empty((x.shape[0], predictor.num_classes), np.float32)
    for start, stop in batches(x.shape[0], size):
        out[start:stop] = np.asarray(compute(pad_rows(x[start:stop], size)))[: stop - start]
    return out


def _draw_correct(log_probs: jax.Array, y: jax.Array, sizes: tuple[int, ...]) -> tuple[jax.Array, ...]:
    """For each group size k: (S // k, n) 0/1, whether the mean probability of each of the S // k disjoint
    consecutive groups of k draws puts its maximum on ``y``."""
    probs = jax.nn.softmax(log_probs, axis=-1)
    out = []
    for k in sizes:
        groups = probs.shape[0] // k
        mean = probs[: groups * k].reshape(groups, k, *probs.shape[1:]).mean(axis=1)
        out.append((jnp.argmax(mean, axis=-1) == y).astype(jnp.float32))
    return tuple(out)


def ensemble_size_accuracy(model: Any, x: Any, y: Any, sizes: Sequence[int], *,
                           batch_size: int = 1000) -> dict[int, float]:
    """Accuracy of ensembles of k draws, for each k in ``sizes`` (Zhang & Chen's Table 3; k = 1 is their
    "one weight sample, averaged over runs").

    The S draws are cut into S // k disjoint consecutive groups of k (draws past the last full group are
    left out); each group predicts the argmax of its mean probability; the result is the accuracy averaged
    over the groups and the points. ``model`` is a ``Posterior``, ``Predictor`` or callable ``x -> (S, N, C)``
    log-probabilities or logits; ``y`` (N,) labels. Returns ``{k: accuracy}`` in ``sizes`` order;
    ``ValueError`` for a k outside [1, S].
    """
    x = check_points(x)
    batch_size = check_batch_size(batch_size)
    predictor = as_predictor(model, x)
    labels = check_point_labels(y, x.shape[0], predictor.num_classes)
    sizes = tuple(int(k) for k in sizes)
    bad = [k for k in sizes if not 1 <= k <= predictor.num_draws]
    if not sizes or bad:
        raise ValueError(f"sizes must be a non-empty list of group sizes in [1, S = {predictor.num_draws}], got {list(sizes)}")
    compute = predictor.compiled(_build_draw_correct, sizes=sizes)
    size = min(batch_size, x.shape[0])
    totals = np.zeros(len(sizes))
    for start, stop in batches(x.shape[0], size):
        correct = compute(pad_rows(x[start:stop], size), pad_rows(labels[start:stop], size))
        totals += [float(np.asarray(c)[:, : stop - start].mean(axis=0).sum()) for c in correct]
    return {k: float(total / x.shape[0]) for k, total in zip(sizes, totals, strict=True)}


def _build_draw_correct(predictor: Predictor, *, sizes: tuple[int, ...]) -> Callable[[jax.Array, jax.Array], Any]:
    log_prob_fn = predictor.log_prob_fn
    return jax.jit(lambda x, y: _draw_correct(log_prob_fn(x), y, sizes))


def _point_metrics(log_mean: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per point: (correct 0/1, confidence of the predicted class, -log p_hat(y | x)); each (N,)."""
    predicted = jnp.argmax(log_mean, axis=-1)
    correct = (predicted == y).astype(jnp.float32)
    confidence = jnp.exp(jnp.max(log_mean, axis=-1))
    nll = -jnp.take_along_axis(log_mean, y[:, None], axis=-1)[:, 0]
    return correct, confidence, nll


def _build_chunk_sums(predictor: Predictor) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """A jitted ``(x (n, ...), y (n,), valid (n,)) -> (3,)``: sums over valid points of correct,
    confidence and NLL."""
    log_prob_fn = predictor.log_prob_fn

    def chunk_sums(xb: jax.Array, yb: jax.Array, valid: jax.Array) -> jax.Array:
        correct, confidence, nll = _point_metrics(normalised_predictive_log_mean(log_prob_fn(xb)), yb)
        return jnp.stack([jnp.sum(v * valid) for v in (correct, confidence, nll)])

    return jax.jit(chunk_sums)


def evaluate_predictive(
    log_prob_fn: Any, x: Any, y: Any, *, batch_size: int = 1000
) -> dict[str, Any]:
    """Accuracy, average confidence and NLL of the posterior predictive on ``(x, y)``.

    Points are processed ``batch_size`` at a time, so memory holds (S, batch_size, C) log-probabilities,
    never (S, N, C): 100,000 points x 1,000 draws fits. Sums are accumulated in float64.

    Args:
        log_prob_fn: a ``Posterior``, a ``Predictor`` or a callable ``x (n, ...) -> (S, n, C)`` per-draw
            log-probabilities (``Posterior.log_prob_fn()``).
        x: inputs (N, ...), finite.
        y: labels (N,), integers in [0, C).
        batch_size: points per chunk.
    Returns:
        dict with ``accuracy`` (fraction whose decision equals y), ``avg_confidence`` (mean over points
        of p_hat(predicted class | x)), ``nll`` (mean of -log p_hat(y | x)), ``num_points`` (N),
        ``num_draws`` (S_eval = S) and ``decision_rule`` (a sentence).
    """
    x = check_points(x)
    batch_size = check_batch_size(batch_size)
    predictor = as_predictor(log_prob_fn, x, min_classes=1)
    labels = check_point_labels(y, x.shape[0], predictor.num_classes)
    size = min(batch_size, x.shape[0])
    chunk_sums = predictor.compiled(_build_chunk_sums)

    totals = np.zeros(3, np.float64)
    for start, stop in batches(x.shape[0], size):
        valid = (np.arange(size) < stop - start).astype(np.float32)
        sums = chunk_sums(pad_rows(x[start:stop], size), pad_rows(labels[start:stop], size), valid)
        totals += np.asarray(sums, np.float64)
    if not np.all(np.isfinite(totals)):
        raise FloatingPointError("log_prob_fn returned NaN or inf log-probabilities on these inputs")
    accuracy, avg_confidence, nll = totals / x.shape[0]
    return {
        "accuracy": float(accuracy),
        "avg_confidence": float(avg_confidence),
        "nll": float(nll),
        "num_points": int(x.shape[0]),
        "num_draws": predictor.num_draws,
        "decision_rule": DECISION_RULE,
    }
