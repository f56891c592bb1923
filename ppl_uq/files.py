"""Files written atomically, and JSON that keeps NaN: the one place every layer writes results through
(the Posterior's NetCDF, a run's cells, the reports). A result file is either complete or absent, never half-written.

Files get the mode an ordinary ``open(path, "w")`` would give them (``0o666`` less the process umask),
not the ``0o600`` of the temporary file they are written to.

JSON: strict JSON has no NaN or infinity, so ``atomic_write_json`` writes non-finite floats as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (a missing value stays ``null``, so "not computed" and "not
applicable" remain distinguishable); ``read_json`` turns exactly those three strings back into floats.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

#: How ``atomic_write_json`` spells non-finite floats, and how ``read_json`` reads them back.
NON_FINITE_STRINGS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def current_umask() -> int:
    """Return the process umask. Reads the ``Umask:`` line of ``/proc/self/status`` (Linux), which leaves
    the umask untouched; elsewhere sets and restores it with ``os.umask`` (process-global, briefly 0)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, give it the mode ``0o666 & ~umask``
    and rename it over ``path``; return the target path. On any error the temporary file is removed and
    ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8) atomically; return the path."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _non_finite_string(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _jsonable(value: Any) -> Any:
    """``value`` with arrays as lists, keys as strings and non-finite floats as ``NON_FINITE_STRINGS``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return _non_finite_string(value)
    return value


def json_text(payload: Any) -> str:
    """Indented strict JSON of ``payload``: arrays as lists, non-finite floats as ``NON_FINITE_STRINGS``."""
    return json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented, strict JSON atomically; return the path. Arrays become lists and
    non-finite floats the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (read back by ``read_json``)."""
    return atomic_write_text(path, json_text(payload))


def _restore_non_finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _restore_non_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_non_finite(v) for v in value]
    if isinstance(value, str) and value in NON_FINITE_STRINGS:
        return NON_FINITE_STRINGS[value]
    return value


def read_json(path: str | os.PathLike[str]) -> Any:
    """Return the JSON at ``path`` as ``atomic_write_json`` meant it: every string value that is exactly
    ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (in dicts and lists at any depth; keys are left alone)
    becomes the float it stands for. A genuine string of that spelling is read as the float too."""
    return _restore_non_finite(json.loads(Path(path).read_text(encoding="utf-8")))
