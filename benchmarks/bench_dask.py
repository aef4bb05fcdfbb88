"""Exact kappa2 spread over a Dask cluster: time against the number of workers.

A layered random DAG whose kappa2 takes tens of seconds on one core (width 10^4, 10
layers, fan-in 10: 1 M edges, 2 * 10^4 randomly shared parameters).  Each worker is one
process with one thread; the compiled graph is broadcast once per client (its transfer
is in the timed call).  ``python benchmarks/bench_dask.py [workers...]``
"""

import sys
import time

import numpy as np

import pathgeom

from _common import layered_dag_arrays


def run(quick=False, workers=(1, 2)):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("  dask.distributed not installed (pip install -e '.[dask]'): skipped")
        return
    rng = np.random.default_rng(0)
    width, layers, fan_in, m = (2000, 6, 5, 2000) if quick else (10_000, 10, 10, 20_000)
    a = layered_dag_arrays(rng, width, layers, fan_in, n_params=m)
    g = pathgeom.SharedGraph.from_arrays(a["src"], a["dst"], a["param"], a["inputs"],
                                         a["outputs"], a["n_nodes"], a["n_params"])
    s = np.sqrt(3 * 0.9 / fan_in)
    p = rng.uniform(-s, s, g.n_params)
    support = pathgeom.kappa2_support(g).size
    print(f"random DAG {layers}x{width}, fan-in {fan_in}: {g.n_edges:,} edges, {m:,} "
          f"parameters, {support:,} with kappa2 to compute")
    ref = None
    base = None
    for n in workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            small = pathgeom.rnn(1, 9, 1, 10)  # loads the compiled kernels on the workers
            pathgeom.path_quantities(small.graph, np.ones(small.n_params), client=client)
            t0 = time.perf_counter()
            r = pathgeom.path_quantities(g, p, client=client)  # graph broadcast included
            t = time.perf_counter() - t0
        if ref is None:
            ref, base = r.kappa2, t
        assert np.array_equal(ref, r.kappa2)
        print(f"  {n} worker(s): {t:7.2f} s  speed-up {base / t:.2f}x")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    run(quick="--quick" in sys.argv, workers=tuple(int(a) for a in args) or (1, 2))
