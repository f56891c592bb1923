"""Paper reproductions runnable from the installed package (``ppl-uq spheres ...``); the scripts in the
repository's top-level ``experiments/`` folder call these."""

from __future__ import annotations

import os
from pathlib import Path


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Turn on JAX's persistent compilation cache for this process and return its folder.

    A redraw (a second chain, a second bootstrap ensemble) compiles the same XLA programs as the first
    fit; with the cache it loads them instead (measured: a NUTS redraw went from 7 s to 0.7 s), and a
    rerun of an experiment skips compilation. Default folder: ``$XDG_CACHE_HOME/ppl-uq/jax`` (or
    ``~/.cache/ppl-uq/jax``). Experiments call this; the library itself never changes JAX's settings.
    """
    import jax

    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "ppl-uq", "jax")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
