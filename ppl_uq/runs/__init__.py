"""Layer 4: runs of many cells. Cells with identity-derived keys and fingerprints (``cells``), the run
directory committed cell by cell (``store``), the runner with in-process and dask.distributed executors
(``runner``), process set-up shared by every entry point and worker (``setup``), and the transfer cell
experiments end with (``transfer``)."""

from .cells import Cell, canonical_json, cell_key, check_cells, fingerprint_of, name_key
from .execute import CellOutput, execute_cell
from .runner import CellsFailedError, RunResult, fingerprints, run_cells
from .setup import configure_process, default_cache_dir, enable_compilation_cache
from .store import RunLockedError, RunStore, StoredCell, read_json
from .transfer import transfer_output

__all__ = [
    "Cell",
    "CellOutput",
    "CellsFailedError",
    "RunLockedError",
    "RunResult",
    "RunStore",
    "StoredCell",
    "canonical_json",
    "cell_key",
    "check_cells",
    "configure_process",
    "default_cache_dir",
    "enable_compilation_cache",
    "execute_cell",
    "fingerprint_of",
    "fingerprints",
    "name_key",
    "read_json",
    "run_cells",
    "transfer_output",
]
