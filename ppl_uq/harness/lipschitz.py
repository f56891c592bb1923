"""Upper bounds on the Lipschitz constant of a dense network's logits (Szegedy et al., seed 001, section 4.3).

For h_{l+1} = act(h_l W_l + b_l) and logits = h_L W_L + b_L, each layer is Lipschitz (in the Euclidean norm)
with constant at most ||W_l||_2 (its largest singular value) times the activation's own constant (1 for
ReLU, tanh and ELU; 1/4 for the logistic sigmoid). The product over layers bounds the whole map:
||f(x) - f(x')|| <= L ||x - x'||. The paper reports the per-layer factors and argues that a large product
leaves room for adversarial examples; a small one does not rule them out by itself (the bound is loose).

For a posterior the bounds are per draw: a Laplace or SVI draw's weights have their own singular values.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

#: Lipschitz constant of each hidden activation of ``models.bnn_mlp`` / ``mlp_classifier``.
ACTIVATION_LIPSCHITZ = {"relu": 1.0, "tanh": 1.0, "elu": 1.0, "sigmoid": 0.25, "identity": 1.0}

_WEIGHT_SITE = re.compile(r"^w(\d+)$")


def dense_weight_sites(draws: dict[str, Any]) -> list[str]:
    """Names of the dense weight sites ``w0, w1, ...`` in ``draws``, in layer order. Raises ValueError when
    there are none or the numbering has a gap."""
    numbered = sorted((int(m.group(1)), name) for name in draws if (m := _WEIGHT_SITE.match(name)))
    if not numbered:
        raise ValueError(f"no dense weight sites named w0, w1, ... among the draws' sites {sorted(draws)}")
    if [i for i, _ in numbered] != list(range(len(numbered))):
        raise ValueError(f"dense weight sites must be numbered w0 .. w{len(numbered) - 1} without gaps, got {[n for _, n in numbered]}")
    return [name for _, name in numbered]


def spectral_norms(weights: Any) -> np.ndarray:
    """Largest singular value of each matrix: ``weights`` (m, n) or (S, m, n). Returns shape () or (S,),
    float64. Raises ValueError on other ranks or non-finite entries."""
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim not in (2, 3):
        raise ValueError(f"weights must be (m, n) or (S, m, n), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("weights hold NaN or inf values")
    return np.linalg.svd(array, compute_uv=False)[..., 0]


def lipschitz_bounds(model: Any, *, activation: str = "relu", sites: list[str] | None = None) -> dict[str, Any]:
    """Per-layer and whole-network upper bounds on the logits' Lipschitz constant, per posterior draw.

    Args:
        model: a ``Posterior`` (its ``flat_draws()``) or a dict of draws, each weight site (S, m, n) or (m, n).
        activation: the hidden activation, a key of ``ACTIVATION_LIPSCHITZ``.
        sites: the weight sites in layer order; default ``w0, w1, ...`` (``dense_weight_sites``).
    Returns:
        ``{"layers": {site: (S,) spectral norms}, "activation_factor": float, "product": (S,)}``, where
        ``product`` = prod_l ||W_l||_2 * activation_factor ** (L - 1) (no activation after the last layer).
        A dict of (m, n) matrices gives S = 1.
    """
    if activation not in ACTIVATION_LIPSCHITZ:
        raise ValueError(f"activation must be one of {sorted(ACTIVATION_LIPSCHITZ)}, got {activation!r}")
    draws = model.flat_draws() if hasattr(model, "flat_draws") else model
    if not isinstance(draws, dict):
        raise TypeError(f"model must be a Posterior or a dict of draws, got {type(model).__name__}")
    names = dense_weight_sites(draws) if sites is None else list(sites)
    missing = [name for name in names if name not in draws]
    if missing:
        raise ValueError(f"sites {missing} are not among the draws' sites {sorted(draws)}")
    layers = {}
    for name in names:
        norms = spectral_norms(draws[name])
        layers[name] = np.atleast_1d(norms)
    sizes = {norms.shape[0] for norms in layers.values()}
    if len(sizes) != 1:
        raise ValueError(f"the weight sites have different numbers of draws: { {n: v.shape[0] for n, v in layers.items()} }")
    factor = ACTIVATION_LIPSCHITZ[activation]
    product = np.prod(np.stack(list(layers.values())), axis=0) * factor ** (len(names) - 1)
    return {"layers": layers, "activation_factor": factor, "product": product}
