"""Shared benchmark helpers: ESS summaries and writing the JSON result."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np


def bulk_ess(draws: dict[str, np.ndarray]) -> np.ndarray:
    """Bulk ESS of every scalar coordinate of ``draws`` (site -> (chain, draw, ...)), flattened."""
    from ppl_uq.posterior import import_arviz

    az = import_arviz()
    dataset = az.ess(az.from_dict(posterior=draws), method="bulk")
    return np.concatenate([np.ravel(np.asarray(v)) for v in dataset.data_vars.values()])


def ess_per_second(draws: dict[str, np.ndarray], seconds: float) -> dict[str, float]:
    """Min and median bulk ESS, and the same per second of ``seconds``."""
    ess = bulk_ess(draws)
    return {
        "seconds": seconds,
        "ess_bulk_min": float(ess.min()),
        "ess_bulk_median": float(np.median(ess)),
        "min_ess_per_s": float(ess.min() / seconds),
        "median_ess_per_s": float(np.median(ess) / seconds),
    }


def write_result(path: str | Path, payload: dict[str, Any]) -> None:
    """Print ``payload`` and write it as JSON (atomically) with the machine described."""
    from ppl_uq.report import atomic_write_json

    payload = {**payload, "machine": {"python": sys.version.split()[0], "platform": platform.platform()}}
    atomic_write_json(path, payload)
    print(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")
