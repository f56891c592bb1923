"""Atomic writes for reports: re-exported from ``ppl_uq.files`` (the one implementation), plus figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..files import NON_FINITE_STRINGS, atomic_write, atomic_write_json, atomic_write_text, current_umask, read_json

__all__ = ["NON_FINITE_STRINGS", "atomic_savefig", "atomic_write", "atomic_write_json", "atomic_write_text",
           "current_umask", "read_json"]


def atomic_savefig(path: str | os.PathLike[str], figure: Any, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the target's suffix); return the path."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format=fmt, **kwargs))
