"""Process set-up in one place: the CLI, the experiment scripts, the benchmarks, the tests and every dask
worker call ``configure_process`` (the workers through the ``WorkerSetup`` plugin).

It sets, before JAX creates its CPU backend:
- two host devices (``--xla_force_host_platform_device_count=2``), so two MCMC chains run in parallel and
  every process compiles the same programs (so any executor gives the same numbers);
- JAX's persistent compilation cache, bounded in size (least recently used entries are evicted);

The library itself (models, inference, harness) never changes these settings.

The worker processes of a local dask cluster also start with ``WORKER_ENVIRONMENT``: JAX's option to pass
closed-over arrays to compiled programs as arguments instead of embedding them as constants (its
announced future default, read once when JAX is imported, so only a process that is started with it
set gets it; ``export JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS=True`` does the same for an in-process run). A
``Posterior``'s prediction functions close over its draws. Embedded, every posterior compiles its own
programs, and a 100-draw FC-100-100-10 program takes 33 MB of the persistent cache, so eight fill it and
evict everything reusable. Hoisted, the programs depend only on shapes: scoring two BBB nets on 12
transfer sets and 6 pruned copies each took 8.7 s instead of 22.6 s, with a 140 KB cache instead of
205 MB, and the same accuracies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Host devices every process gets (parallel chains; the same compiled programs everywhere).
HOST_DEVICES = 2
#: Environment of every worker process the runner starts (see the module docstring).
WORKER_ENVIRONMENT = {"JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS": "True"}
#: Bound on the persistent compilation cache (bytes); JAX evicts the least recently used entries beyond it.
CACHE_MAX_BYTES = 256 * 2**20


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ppl-uq/xla-cache`` or ``~/.cache/ppl-uq/xla-cache``: remove it to clear the cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ppl-uq" / "xla-cache"


def set_host_devices(count: int = HOST_DEVICES) -> None:
    """Ask XLA for ``count`` CPU devices (effective only before JAX's backend starts; an explicit
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` is kept)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def constants_hoisted() -> bool:
    """Whether this process's JAX passes closed-over arrays to compiled programs as arguments (the effect
    of ``WORKER_ENVIRONMENT``, which JAX reads at import): lowers a small closure and looks for the argument."""
    import jax
    import jax.numpy as jnp

    closed_over = jnp.arange(64.0, dtype=jnp.float32)
    text = jax.jit(lambda v: v + closed_over).lower(jnp.zeros(64, jnp.float32)).as_text()
    return "%arg1" in text


def enable_compilation_cache(path: str | os.PathLike[str] | None = None, max_bytes: int = CACHE_MAX_BYTES) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (default ``default_cache_dir()``), bounded
    to ``max_bytes``; return the folder.

    A redraw compiles the same XLA programs as the first fit; with the cache it loads them (a NUTS redraw
    went from 7 s to 0.7 s), and a rerun of an experiment skips compilation.
    """
    import jax

    folder = Path(path) if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Every program, however quick to compile: a fit's guide set-up and initialisation are hundreds of
    # eager ops of ~0.1 s each, and its validation and sampling programs are new closures per fit. With
    # all of them kept, a 12-epoch BBB fit in a fresh process took 9.6 s on a warm cache, against 18.6 s
    # when only compilations over 0.2 s were kept (27.8 s cold).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    return folder


def configure_process(*, host_devices: int = HOST_DEVICES, cache_dir: str | os.PathLike[str] | None = None,
                      compilation_cache: bool = True) -> dict[str, Any]:
    """Set up this process for ppl-uq work (see the module docstring); returns what was set.

    PyTorch's thread count is not set here: the ``pyro-nuts`` backend sets it around each fit (its
    ``num_threads`` option), so a process that never runs Pyro never imports torch.
    """
    set_host_devices(host_devices)
    settings: dict[str, Any] = {"xla_flags": os.environ["XLA_FLAGS"]}
    if compilation_cache:
        settings["compilation_cache"] = str(enable_compilation_cache(cache_dir))
    return settings
