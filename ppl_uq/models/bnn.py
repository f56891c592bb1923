"""The Bayesian MLP family: a fully connected classifier with a pluggable weight prior per layer.

``bnn_mlp`` maps flattened inputs x (N, D) through hidden layers of the given widths to ``num_classes``
logits. Layer l has the latent sites ``w{l}`` (fan_in, fan_out) and ``b{l}`` (fan_out,), so the same
names and shapes reach every backend and the guides, MC dropout and pruning that rely on them. Priors
are plain-dict specs from ``ppl_uq.models.priors`` (``iid_gaussian``, ``scale_mixture``,
``matrix_normal``), so a ``functools.partial`` of ``bnn_mlp`` with a prior keeps a storable identity.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Mapping, Sequence

from .handles import PPLHandle
from .priors import check_prior, iid_gaussian, prior_distribution


def relu(xp: Any, h: Any) -> Any:
    """``max(h, 0)`` elementwise, as ``h * (h > 0)`` (``torch.maximum`` takes no Python scalar)."""
    return h * (h > 0)


def tanh(xp: Any, h: Any) -> Any:
    """``tanh(h)`` elementwise."""
    return xp.tanh(h)


def sigmoid(xp: Any, h: Any) -> Any:
    """``1 / (1 + exp(-h))`` elementwise, as ``(1 + tanh(h / 2)) / 2`` (``jax.numpy`` has no sigmoid, and the
    identity has finite gradients where ``exp(-h)`` overflows)."""
    return 0.5 * xp.tanh(0.5 * h) + 0.5


def elu(xp: Any, h: Any) -> Any:
    """``h`` for ``h > 0``, else ``exp(h) - 1``, as ``relu(h) + expm1(min(h, 0))`` with ``min(h, 0) = h - relu(h)``
    (a ``where`` would put the overflowing ``expm1`` of large ``h`` into the gradient)."""
    positive = relu(xp, h)
    return positive + xp.expm1(h - positive)


#: Hidden-layer activations by name: ``activation(xp, h) -> array`` of h's shape, where ``xp`` is
#: ``jax.numpy`` or ``torch`` (``ppl.xp``); each uses only calls both namespaces share.
ACTIVATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "relu": relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "elu": elu,
}


def _check_widths(widths: Any) -> list[int]:
    """The hidden widths as a list of ints >= 1 (possibly empty); ``ValueError`` naming ``widths`` otherwise."""
    if isinstance(widths, (tuple, list)):
        sizes = [None if isinstance(width, bool) else _index(width) for width in widths]
        if all(size is not None and size >= 1 for size in sizes):
            return sizes
    raise ValueError(f"widths must be a tuple of integers >= 1 (hidden layer sizes; () for none), got {widths!r}")


def _index(value: Any) -> int | None:
    """``value`` as an int if it is an integer (Python or NumPy), else None."""
    try:
        return operator.index(value)
    except TypeError:
        return None


def layer_priors(prior: Any, num_layers: int, name: str) -> list[dict[str, Any]]:
    """One validated prior spec per layer from ``prior``: a single spec (every layer) or a list / tuple of
    ``num_layers`` specs (layer by layer). ``ValueError`` naming ``name`` otherwise."""
    if isinstance(prior, Mapping):
        return [check_prior(prior, name)] * num_layers
    if isinstance(prior, (tuple, list)):
        if len(prior) != num_layers:
            raise ValueError(
                f"{name} has {len(prior)} specs but the network has {num_layers} layers (len(widths) + 1); "
                "give one spec for all layers or one per layer"
            )
        return [check_prior(spec, f"{name}[{layer}]") for layer, spec in enumerate(prior)]
    raise ValueError(f"{name} must be a prior spec (e.g. iid_gaussian(1.0)) or a list of one per layer, got {prior!r}")


def bnn_mlp(
    ppl: PPLHandle,
    x: Any,
    y: Any = None,
    *,
    widths: Sequence[int] = (100, 100),
    num_classes: int = 10,
    activation: str = "relu",
    prior: Any = None,
    bias_prior: Any = None,
) -> Any:
    """Bayesian MLP classifier ``D -> widths... -> num_classes`` with a weight prior per layer.

    Args:
        ppl: the engine handle.
        x: inputs (N, D); images must be flattened to rows.
        y: labels (N,) in [0, num_classes), or None to predict.
        widths: hidden layer sizes, integers >= 1; ``()`` gives multinomial logistic regression.
        num_classes: C >= 2.
        activation: hidden activation, a key of ``ACTIVATIONS`` (``relu``, ``tanh``, ``sigmoid``, ``elu``).
        prior: the weight prior: one spec from ``ppl_uq.models.priors`` for every layer, or a list of
            ``len(widths) + 1`` specs, one per layer; default ``iid_gaussian(1.0)``.
        bias_prior: the bias prior, in the same forms; default each layer's weight prior.

    Latent sites ``w0, b0, w1, b1, ...``: layer l's weights ``w{l}`` (fan_in, fan_out) and bias ``b{l}``
    (fan_out,), with ``h_{l+1} = act(h_l @ w{l} + b{l})`` (no activation after the last layer). Records the
    deterministic site ``logits`` (N, C), observes ``y ~ Categorical(logits)`` in the plate ``data`` of
    size N, and returns the logits (N, C).
    """
    shape = tuple(x.shape)
    if len(shape) != 2:
        raise ValueError(f"x must be 2-D, shaped (N, D) (flatten images to rows), got shape {shape}")
    hidden = _check_widths(widths)
    classes = None if isinstance(num_classes, bool) else _index(num_classes)
    if classes is None or classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    act = ACTIVATIONS[activation]
    sizes = [shape[1], *hidden, classes]
    num_layers = len(sizes) - 1
    weight_priors = layer_priors(iid_gaussian(1.0) if prior is None else prior, num_layers, "prior")
    bias_priors = weight_priors if bias_prior is None else layer_priors(bias_prior, num_layers, "bias_prior")

    h = x
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = ppl.sample(f"w{layer}", prior_distribution(ppl, weight_priors[layer], (fan_in, fan_out)))
        b = ppl.sample(f"b{layer}", prior_distribution(ppl, bias_priors[layer], (fan_out,)))
        h = h @ w + b
        if layer < num_layers - 1:
            h = act(ppl.xp, h)
    ppl.deterministic("logits", h)
    with ppl.plate("data", shape[0]):
        ppl.sample("y", ppl.dist.Categorical(logits=h), obs=y)
    return h
