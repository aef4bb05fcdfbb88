"""A training run inside a sweep worker against the same run in this process.

The run is the adding problem's Path-SGD run of the paper's grid (T = 100, H = 100, batch 16,
kappa1, backtracking); each worker does it three times and the best of the last two is
timed (the first loads the compiled kernels).  Rows: this process (the baseline); a
worker of ``pathgeom sweep --scheduler local``, started without ``MALLOC_TRIM_THRESHOLD_``;
a worker of a ``LocalCluster`` on Dask's defaults, whose nanny sets
``MALLOC_TRIM_THRESHOLD_=65536`` (it pins glibc's mmap threshold at 128 KiB, so every
large temporary array of a step is mapped and unmapped afresh).
``python benchmarks/bench_sweep.py [--quick]``
"""

import os
import sys

from pathgeom import experiments


def _restore(saved):
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _timed_run(config):
    experiments.run_config(config)                  # warm-up: loads the compiled kernels
    return min(experiments.run_config(config)["seconds"] for _ in range(2))


#: What a nanny writes into the environment of the process that starts it.
NANNY_ENVIRON = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED")


def run(quick=False):
    try:
        import dask
        from distributed import Client, LocalCluster

        from pathgeom._dask import MALLOC_TRIM_KEY
    except ImportError:
        print("  dask.distributed not installed (pip install -e '.[dask]'): skipped")
        return
    steps, T = (200, 20) if quick else (2000, 100)
    config = experiments.make_config(task="adding", T=T, steps=steps, batch=16,
                                     eval_every=steps, log_every=100, optimizer="path-sgd",
                                     lr=1e-2, threads=1)
    base = _timed_run(config)
    rows = [("this process", base)]
    # the nannies write their environment variables into this process's environment (which
    # later workers and subprocesses would inherit): restored after each cluster
    saved = {k: os.environ.get(k) for k in NANNY_ENVIRON}
    try:
        with experiments._local_cluster(1) as cluster, Client(cluster) as client:
            rows.append(("pathgeom sweep --scheduler local worker",
                         client.submit(_timed_run, config, pure=False).result()))
        _restore(saved)
        # Dask's default, pinned whatever the Dask configuration of this machine says
        with dask.config.set({MALLOC_TRIM_KEY: 65536}), \
                LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                             dashboard_address=None) as cluster, Client(cluster) as client:
            rows.append(("LocalCluster worker, Dask's defaults",
                         client.submit(_timed_run, config, pure=False).result()))
    finally:
        _restore(saved)
    print(f"Path-SGD run on the adding problem, T={T} H=100 batch 16, {steps} steps, one thread")
    for name, t in rows:
        print(f"  {name:42} {t:7.2f} s  {t / steps * 1e3:6.2f} ms a step  "
              f"{t / base:5.2f}x this process")


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
