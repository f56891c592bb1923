"""``pyro-nuts``: the same model declaration run by Pyro's NUTS (PyTorch engine).

The model is bound to the Pyro handle; its array hyper-parameters and the data become torch tensors.
Chains run one after another in this process (Pyro's multi-chain mode forks processes), each seeded from
the JAX key. Draws come back as NumPy arrays with the same site names, so the JAX harness scores them.
Pyro is an optional extra: ``pip install 'ppl-uq[pyro]'``.
"""

from __future__ import annotations

import functools
import random
from typing import Any, Callable

import jax
import numpy as np

from ..models.handles import pyro_handle
from ..posterior import Posterior
from ._common import latent_site_names, stopwatch
from ._options import check_int, check_unit_interval

#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from Markov chains.
KIND = "mcmc"

DEFAULTS: dict[str, Any] = {
    "num_warmup": 500,
    "num_samples": 500,
    "num_chains": 1,
    "target_accept_prob": 0.8,
    "max_tree_depth": 10,
    "jit_compile": True,
    "num_threads": 1,
}


def check_options(options: dict[str, Any]) -> None:
    """Validate Pyro NUTS options."""
    check_int(options, "num_warmup", minimum=0)
    check_int(options, "num_samples", "num_chains", "max_tree_depth", "num_threads")
    check_unit_interval(options, "target_accept_prob")
    if not isinstance(options["jit_compile"], bool):
        raise ValueError(f"option 'jit_compile' must be True or False, got {options['jit_compile']!r}")


def torch_model(model: Callable[..., Any]) -> Callable[..., Any]:
    """Bind ``model`` to the Pyro handle, turning array hyper-parameters of a ``functools.partial``
    into float32 torch tensors."""
    import torch

    handle = pyro_handle()
    if isinstance(model, functools.partial):
        keywords = {
            key: torch.tensor(np.array(value, dtype=np.float32)) if isinstance(value, np.ndarray | jax.Array) else value
            for key, value in model.keywords.items()
        }
        return functools.partial(model.func, handle, *model.args, **keywords)
    return handle.bind(model)


def torch_data(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    """Data as torch tensors: x float32, y int64 for class labels or float32 for regression."""
    import torch

    y_tensor = torch.tensor(y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32))
    return torch.tensor(x.astype(np.float32)), y_tensor


def _run_chain(
    pmodel: Callable[..., Any], data: tuple[Any, Any], seed: int, options: dict[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """One Pyro NUTS chain: returns (samples (draw, ...), diverging (draw,), step size)."""
    import pyro
    from pyro.infer import MCMC, NUTS

    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    kernel = NUTS(
        pmodel,
        target_accept_prob=options["target_accept_prob"],
        max_tree_depth=options["max_tree_depth"],
        jit_compile=options["jit_compile"],
        ignore_jit_warnings=True,
    )
    mcmc = MCMC(kernel, num_samples=options["num_samples"], warmup_steps=options["num_warmup"], disable_progbar=True)
    mcmc.run(*data)
    samples = {name: value.detach().cpu().numpy() for name, value in mcmc.get_samples().items()}
    diverging = np.zeros(options["num_samples"], dtype=bool)
    divergent_draws = mcmc.diagnostics().get("divergences", {}).get("chain 0", [])
    diverging[np.asarray(divergent_draws, dtype=np.int64)] = True
    return samples, diverging, float(kernel.step_size)


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Run Pyro NUTS chain by chain; return a Posterior with draws (chain, draw, ...).

    ``progress`` is accepted for the common contract; the chains print nothing themselves (``ppl_uq.fit``
    reports the start and the end).
    """
    import torch

    pmodel = torch_model(model)
    data = torch_data(x, y)
    seeds = [int(s) for s in jax.random.randint(rng_key, (options["num_chains"],), 0, 2**31 - 1)]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(options["num_threads"])
    cost: dict[str, float] = {}
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:  # pyro.set_rng_seed reseeds the global RNGs of Python, NumPy and torch: put all three back after
        with torch.random.fork_rng(devices=[]), stopwatch(cost, "fit_seconds"):
            chains = [_run_chain(pmodel, data, seed, options) for seed in seeds]
    finally:
        torch.set_num_threads(previous_threads)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    names = latent_site_names(model, x, y)
    draws = {name: np.stack([chain[0][name] for chain in chains]) for name in names}
    diverging = np.stack([chain[1] for chain in chains])
    step_size = np.stack([np.full(options["num_samples"], chain[2]) for chain in chains])
    return Posterior(
        method="pyro-nuts",
        kind=KIND,
        model=model,
        draws=draws,
        options=options,
        sample_stats={"diverging": diverging, "step_size": step_size},
        cost=cost,
        observed=(x, y),
    )
