"""Dask helpers of :func:`pathgeom.experiments.sweep` (imported only with the ``[dask]``
extra, when a sweep runs on a Dask cluster)."""

import signal
import threading

from distributed import WorkerPlugin

__all__ = ["IgnoreStopSignals"]


class IgnoreStopSignals(WorkerPlugin):
    """Worker processes of a ``LocalCluster`` ignore SIGINT and SIGTERM.

    They share the sweep's process group, so a Ctrl-C in the terminal (or a SIGTERM sent
    to the group) reaches them too; left to the defaults they would die mid-run, losing
    the updates since the last checkpoint.  The sweep process takes the signal instead and
    tells the runs to stop through a Dask ``Event``: each one checkpoints and ends as
    interrupted.  (The nanny still stops its worker at the end, by message and, failing
    that, SIGKILL.)
    """

    name = "pathgeom-ignore-stop-signals"

    def setup(self, worker):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
