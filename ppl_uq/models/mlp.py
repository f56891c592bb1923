"""A small Bayesian MLP classifier with an iid Gaussian weight prior.

It exists to prove that every backend is model-agnostic (nonlinear in its parameters, several latent
sites); the full neural family (scale-mixture and matrix-normal priors) comes later.
"""

from __future__ import annotations

from typing import Any, Sequence

from .handles import PPLHandle


def mlp_classifier(
    ppl: PPLHandle,
    x: Any,
    y: Any = None,
    *,
    hidden: Sequence[int] = (8,),
    num_classes: int = 2,
    prior_scale: float = 1.0,
) -> Any:
    """``tanh`` MLP ``D -> hidden... -> num_classes`` with ``W, b ~ N(0, prior_scale^2)`` iid.

    Latent sites ``w0, b0, w1, b1, ...`` (layer l has ``w{l}`` of shape (fan_in, fan_out));
    records ``logits`` (N, num_classes) and observes ``y ~ Categorical(logits)``.
    """
    widths = [x.shape[-1], *hidden, num_classes]
    h = x
    for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        normal = ppl.dist.Normal(0.0, prior_scale)
        w = ppl.sample(f"w{layer}", normal.expand([fan_in, fan_out]).to_event(2))
        b = ppl.sample(f"b{layer}", normal.expand([fan_out]).to_event(1))
        h = h @ w + b
        if layer < len(widths) - 2:
            h = ppl.xp.tanh(h)
    ppl.deterministic("logits", h)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Categorical(logits=h), obs=y)
    return h
