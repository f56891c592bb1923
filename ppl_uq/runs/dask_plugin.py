"""The dask.distributed worker plugin that sets a worker process up (``setup.configure_process``)."""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

from .setup import configure_process


class WorkerSetup(WorkerPlugin):
    """Runs ``configure_process(**settings)`` on each worker when it starts (and again on a restarted one)."""

    name = "ppl-uq-setup"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(self, worker: Any) -> None:
        """Called by dask on each worker before it runs tasks."""
        configure_process(**self.settings)
