"""Helper for the tests of the paper scripts in ``experiments/``: import one as a module."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(filename: str):
    """The script ``experiments/FILENAME`` imported as a module named after it (registered in sys.modules:
    dataclasses look their module up while the script runs). Returns the module."""
    spec = importlib.util.spec_from_file_location(Path(filename).stem, REPO / "experiments" / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
