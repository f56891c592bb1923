"""An autoencoder with a softmax classifier on its code (Szegedy et al.'s AE400-10, seed 001), declared as
one probabilistic program.

The paper trains the autoencoder without labels and then a softmax on its code. Declared jointly, the
reconstruction is a second observed site: pixels ~ Normal(decoder(code), reconstruction_sd), so
``reconstruction_sd`` sets how much the code must explain the image against how much it must separate
the classes (the paper's two-stage training is the limit of a small ``reconstruction_sd``, where the
reconstruction term dominates).
"""

from __future__ import annotations

from typing import Any

from .bnn import ACTIVATIONS, _index
from .handles import PPLHandle
from .priors import iid_gaussian, prior_distribution


def autoencoder_classifier(
    ppl: PPLHandle,
    x: Any,
    y: Any = None,
    *,
    code: int = 400,
    num_classes: int = 10,
    activation: str = "sigmoid",
    reconstruction_sd: float = 0.1,
    prior: Any = None,
) -> Any:
    """Autoencoder ``D -> code -> D`` with a softmax ``code -> num_classes`` on the code.

    Args:
        ppl: the engine handle.
        x: inputs (N, D) in [0, 1] (flattened images).
        y: labels (N,) in [0, num_classes), or None to predict.
        code: the code's width (400 in the paper), an integer >= 1.
        num_classes: C >= 2.
        activation: the code's activation and the decoder's output squashing, a key of ``ACTIVATIONS``.
        reconstruction_sd: sd of the Gaussian reconstruction likelihood, > 0.
        prior: one weight prior spec (``ppl_uq.models.priors``) for every layer; default ``iid_gaussian(1.0)``.

    Latent sites: the encoder ``w0`` (D, code), ``b0`` (code,), the classifier ``w1`` (code, C), ``b1`` (C,)
    (so the path to the logits is a dense net ``w0, w1``, as ``harness.lipschitz`` and ``harness.units``
    read it) and the decoder ``decoder_w`` (code, D), ``decoder_b`` (D,). Records ``logits`` (N, C);
    observes ``reconstruction ~ Normal(act(code @ decoder_w + decoder_b), reconstruction_sd)`` with the
    pixels and ``y ~ Categorical(logits)``, both in the plate ``data``. Returns the logits (N, C).
    """
    shape = tuple(x.shape)
    if len(shape) != 2:
        raise ValueError(f"x must be 2-D, shaped (N, D) (flatten images to rows), got shape {shape}")
    width = None if isinstance(code, bool) else _index(code)
    if width is None or width < 1:
        raise ValueError(f"code must be an integer >= 1, got {code!r}")
    classes = None if isinstance(num_classes, bool) else _index(num_classes)
    if classes is None or classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if isinstance(reconstruction_sd, bool) or not isinstance(reconstruction_sd, (int, float)) or not reconstruction_sd > 0:
        raise ValueError(f"reconstruction_sd must be a number > 0, got {reconstruction_sd!r}")
    act = ACTIVATIONS[activation]
    spec = iid_gaussian(1.0) if prior is None else prior
    dim = shape[1]

    w0 = ppl.sample("w0", prior_distribution(ppl, spec, (dim, width)))
    b0 = ppl.sample("b0", prior_distribution(ppl, spec, (width,)))
    w1 = ppl.sample("w1", prior_distribution(ppl, spec, (width, classes)))
    b1 = ppl.sample("b1", prior_distribution(ppl, spec, (classes,)))
    decoder_w = ppl.sample("decoder_w", prior_distribution(ppl, spec, (width, dim)))
    decoder_b = ppl.sample("decoder_b", prior_distribution(ppl, spec, (dim,)))
    hidden = act(ppl.xp, x @ w0 + b0)
    logits = hidden @ w1 + b1
    ppl.deterministic("logits", logits)
    reconstruction = act(ppl.xp, hidden @ decoder_w + decoder_b)
    with ppl.plate("data", shape[0]):
        ppl.sample("reconstruction", ppl.dist.Normal(reconstruction, reconstruction_sd).to_event(1), obs=x)
        ppl.sample("y", ppl.dist.Categorical(logits=logits), obs=y)
    return logits
