"""Dask helpers of :func:`pathgeom.experiments.sweep` (imported only with the ``[dask]``
extra, when a sweep runs on a Dask cluster)."""

import signal
import threading

import dask
from distributed import WorkerPlugin

__all__ = ["IgnoreStopSignals", "training_worker_config", "MALLOC_TRIM_KEY",
           "TRAINING_WORKER_SETTINGS"]

#: The Dask setting through which a nanny sets glibc's ``MALLOC_TRIM_THRESHOLD_`` in the
#: worker processes it spawns (Dask's default: 65536 bytes).
MALLOC_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


#: Worker settings of a training sweep (Dask configuration keys and values).
TRAINING_WORKER_SETTINGS = {MALLOC_TRIM_KEY: None}


def training_worker_config():
    """Dask configuration for starting the workers of a training sweep (a context manager:
    use it around the ``LocalCluster`` that spawns them): :data:`TRAINING_WORKER_SETTINGS`.

    Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536`` by default.
    Setting that variable also fixes glibc's mmap threshold at its 128 KiB floor, so each
    array of a training step larger than that (the hidden states of a batch: 16 x 100 x
    100 float64 is 1.3 MB at T = 100) is mapped and unmapped afresh, page faults included.
    Under this configuration the nanny leaves the variable alone (a value set in the
    environment by the user is still inherited); it decides when it is created, so a
    worker it restarts later goes without the variable too.  ``python
    benchmarks/bench_sweep.py`` measures the difference: on Dask's defaults a Path-SGD run
    at T = 100 took 1.45-1.61 times as long in a worker as in a plain process, without the
    variable 0.93-1.23 times (four runs, 2 cores).
    """
    return dask.config.set(TRAINING_WORKER_SETTINGS)


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
