"""What a model is, read from one abstract run on the real data: its latent, deterministic and observed
sites, whether it is a classifier and how many classes it has, and whether ``(x, y)`` fit it.

``model_signature`` traces the model under ``jax.eval_shape`` on the full ``(x, y)``: no number is
computed and the data are never sliced, so models whose shapes do not follow the rows of ``x`` (a plate
of fixed size over schools or counties, group-level data passed as ``x``) are read as they are.
``prepare_data`` turns what it finds into the checks ``fit`` makes before any backend runs.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from ..data.validate import check_dataset, check_labels
from ..models.handles import abstract_trace

#: The site a classifier records its class logits in: (N, C), or (N,) for a binary classifier whose
#: likelihood is ``Bernoulli(logits=...)`` (read as the two classes [0, logit]).
LOGITS_SITE = "logits"


class ModelSignature(NamedTuple):
    """The structure of a model on given data (shapes only).

    ``latent`` site name -> (shape, is_discrete) of each unobserved sample site, in model order;
    ``deterministic`` the names of its deterministic sites other than ``logits``; ``observed`` the name
    of the site observing ``y``; ``likelihood`` the class name of that site's distribution (e.g.
    ``"Normal"``; the base of an expanded or independent one); ``support`` its support (a NumPyro
    constraint); ``logits_shape`` the shape of the ``logits`` site, or None without one;
    ``num_classes`` C for a classifier (2 when the logits are (N,)), None otherwise.
    """

    latent: dict[str, tuple[tuple[int, ...], bool]]
    deterministic: tuple[str, ...]
    observed: str
    likelihood: str
    support: Any
    logits_shape: tuple[int, ...] | None
    num_classes: int | None


def _base_distribution(fn: Any) -> Any:
    """The distribution under NumPyro's expand / independent / mask wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def model_signature(model: Callable[..., Any], x: Any, y: Any) -> ModelSignature:
    """Trace ``model`` abstractly on ``(x, y)`` and return its ``ModelSignature``.

    Raises ``ValueError`` when the model cannot run on data of these shapes (naming x's shape), observes
    no site with ``y``, has a likelihood whose shape is not y's, or records ``logits`` of a shape that is
    neither (N, C) nor (N,) for N = len(y).
    """
    x_shape = None if x is None else tuple(np.shape(x))
    try:
        model_trace, shapes, y_sites = abstract_trace(model, x, y)
    except Exception as exc:  # the model's own error, re-raised with what the user can change
        raise ValueError(
            f"the model cannot run on x of shape {x_shape} and y of shape {tuple(np.shape(y))} "
            f"({type(exc).__name__}: {exc}); check x's rank and feature count against the model"
        ) from exc
    num_points = int(np.shape(y)[0])

    latent = {
        name: (tuple(shapes[name].shape), bool(_base_distribution(site["fn"]).support.is_discrete))
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    if not latent:
        raise ValueError("the model has no latent sample sites (every sample site is observed): there is nothing to infer")
    deterministic = tuple(
        name for name, site in model_trace.items() if site["type"] == "deterministic" and name != LOGITS_SITE
    )
    observed = [name for name, site in model_trace.items() if site["type"] == "sample" and site["is_observed"]]
    by_y = y_sites or (observed if len(observed) == 1 else [])
    if not by_y:
        raise ValueError(
            "the model observes no sample site with y: pass y as the likelihood's obs= "
            f"(observed sites found: {observed or 'none'})"
        )
    site = model_trace[by_y[0]]
    full_shape = tuple(site["fn"].shape())
    if full_shape != tuple(np.shape(y)):
        raise ValueError(
            f"the likelihood at site {by_y[0]!r} has shape {full_shape} but y has shape {tuple(np.shape(y))}: "
            f"x of shape {x_shape} does not fit the model (its first axis must index the data points)"
        )

    logits_shape = None
    num_classes = None
    if LOGITS_SITE in shapes:
        logits_shape = tuple(shapes[LOGITS_SITE].shape)
        if len(logits_shape) not in (1, 2) or logits_shape[0] != num_points:
            raise ValueError(
                f"the 'logits' site has shape {logits_shape}; a classifier records (N, C) or, for a Bernoulli "
                f"likelihood, (N,), with N = {num_points} data points (x has shape {x_shape}: its first axis "
                "must index the data points)"
            )
        num_classes = 2 if len(logits_shape) == 1 else logits_shape[1]
    base = _base_distribution(site["fn"])
    return ModelSignature(latent, deterministic, by_y[0], type(base).__name__, base.support, logits_shape, num_classes)


def _check_support(y: np.ndarray, signature: ModelSignature) -> None:
    """Raise ``ValueError`` when ``y`` holds values outside the likelihood's support (when the support's
    bounds are plain numbers; a support that depends on the parameters is left to the model)."""
    try:
        inside = np.asarray(signature.support(jnp.asarray(y)))
    except Exception:  # noqa: BLE001 - a support whose bounds are traced parameters cannot be checked here
        return
    if inside.shape == y.shape and not np.all(inside):
        bad = np.unique(y[~inside])[:5]
        raise ValueError(
            f"y holds values outside the support of the likelihood {signature.likelihood} at site "
            f"{signature.observed!r} ({signature.support}): e.g. {bad.tolist()}"
        )


def prepare_data(model: Callable[..., Any], data: Any) -> tuple[np.ndarray, np.ndarray, ModelSignature]:
    """Validate ``data`` for ``model`` and return ``(x, y, signature)``.

    ``data`` is a pair ``(x, y)``; ``x`` may be None for a model without inputs, which then receives
    x of shape (N, 0). y must lie in the likelihood's support and have the likelihood's shape. y's
    dtype follows the likelihood: int32 class indices in [0, C) for a classifier with (N, C) logits,
    float32 0/1 for a Bernoulli (or any binary (N,) logits) classifier, int32 for other discrete
    likelihoods (counts), float32 for continuous ones.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and data[0] is None:
        y_only = np.asarray(data[1])
        data = (np.zeros((y_only.shape[0] if y_only.ndim else 0, 0), np.float32), data[1])
    x, y = check_dataset(data)
    discrete_y = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)
    probe_y = y.astype(np.int32) if discrete_y else y.astype(np.float32)
    signature = model_signature(model, x, probe_y)
    if signature.num_classes is not None and len(signature.logits_shape or ()) == 2:
        return x, check_labels(y, signature.num_classes), signature
    if signature.support.is_discrete:
        if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
            raise ValueError(f"y holds non-integer values; the likelihood {signature.likelihood} at site "
                             f"{signature.observed!r} is discrete")
        binary = signature.num_classes == 2 or signature.likelihood.startswith("Bernoulli")
        y = y.astype(np.float32) if binary else y.astype(np.int32)
        _check_support(y, signature)
        return x, y, signature
    y = y.astype(np.float32) if not np.issubdtype(y.dtype, np.floating) else y
    _check_support(y, signature)
    return x, y, signature
