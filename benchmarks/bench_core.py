"""gamma^2 + kappa1 throughput (one backward and one forward pass of the squared network).

Target (issue 2): >= 250 million edges per second on one core for 10^6 - 10^7 edges.
The bound printed is the machine's copy bandwidth over 16 bytes per edge (8 bytes of
index per edge per pass, two passes), measured in the same run.  The RNN graphs come in
runs of edges (consecutive sources and parameters), which the sweeps read instead of the
CSRs; each RNN row is followed by the same graph over its CSRs.
"""

import time

import numba
import numpy as np

import pathgeom

from _common import (LevelSparseBaseline, best_time, copy_bandwidth, layered_dag_arrays,
                     rnn_graph)


def without_runs(g):
    """The same graph swept over its CSRs (the runs of edges emptied)."""
    c = g.compiled
    c = c._replace(run_ptr=np.zeros(1, np.int64), run_src=c.run_src[:0],
                   run_par=c.run_par[:0], run_len=c.run_len[:0])
    return pathgeom.SharedGraph._make(c, g._order, g._labels)


def graphs(rng, sizes):
    for T, H in sizes["rnn"]:
        g, _ = rnn_graph(T, H)
        yield f"RNN T={T} H={H}", g
        if g.compiled.run_ptr.size > 1:
            yield f"  the same over the CSRs (no runs)", without_runs(g)
    for width, layers, fan_in, m in sizes["dag"]:
        a = layered_dag_arrays(rng, width, layers, fan_in, n_params=m)
        g = pathgeom.SharedGraph.from_arrays(a["src"], a["dst"], a["param"], a["inputs"],
                                             a["outputs"], a["n_nodes"], a["n_params"])
        yield f"random DAG {layers}x{width}x{fan_in}, m={m:.0e}", g


def run(quick=False):
    rng = np.random.default_rng(0)
    sizes = {"rnn": [(25, 64), (100, 100), (1000, 100)],
             "dag": [(10_000, 10, 10, 1000), (10_000, 10, 100, 1000), (10_000, 10, 10, 100_000),
                     (10_000, 10, 100, 1_000_000)]}
    if quick:
        sizes = {"rnn": [(25, 64)], "dag": [(1000, 5, 10, 1000)]}
    bw = copy_bandwidth()
    bound = bw / 16
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    print(f"copy bandwidth {bw / 1e9:.1f} GB/s -> bound {bound / 1e6:.0f} M edges/s "
          f"(16 B of index per edge for the two passes); one thread")
    print(f"{'graph':34} {'edges':>11} {'pathgeom':>10} {'M edges/s':>10} {'of bound':>9} "
          f"{'numpy/scipy':>12} {'speed-up':>9}")
    try:
        for name, g in graphs(rng, sizes):
            # E[p^2] * fan-in ~ 0.9 keeps path sums in range however deep the graph is
            fan_in = g.n_edges / np.count_nonzero(np.diff(g.compiled.indptr))
            s = np.sqrt(3 * 0.9 / fan_in)
            p = rng.uniform(-s, s, g.n_params)
            t = best_time(lambda: pathgeom.path_quantities(g, p, with_kappa2=False))
            base = LevelSparseBaseline(g)
            ref = base.gamma2_kappa1(p)
            ours = pathgeom.path_quantities(g, p, with_kappa2=False)
            assert np.isclose(ref[0], ours.gamma2, rtol=1e-9)
            assert np.allclose(ref[1], ours.kappa1, rtol=1e-9, atol=1e-12 * ours.kappa1.max())
            tb = best_time(lambda: base.gamma2_kappa1(p), repeat=2)
            rate = g.n_edges / t
            print(f"{name:34} {g.n_edges:>11,} {t * 1e3:>8.2f}ms {rate / 1e6:>10.0f} "
                  f"{rate / bound:>9.0%} {tb * 1e3:>10.1f}ms {tb / t:>8.1f}x")
    finally:
        numba.set_num_threads(threads)


def construction(quick=False):
    """from_arrays on the largest graph: validation, topological sort, both CSRs."""
    T, H = (100, 64) if quick else (1000, 100)
    _, a = rnn_graph(5, 4)  # warm up the construction kernels
    _, a = rnn_graph(T, H)
    t0 = time.perf_counter()
    g = pathgeom.SharedGraph.from_arrays(a["src"], a["dst"], a["param"], a["inputs"],
                                         a["outputs"], a["n_nodes"], a["n_params"])
    dt = time.perf_counter() - t0
    c = g.compiled
    per_edge = sum(getattr(c, f).nbytes for f in ("src", "par", "dst", "opar", "blk_src",
                                                  "blk_key")) / g.n_edges
    print(f"SharedGraph.from_arrays, RNN T={T} H={H}: {g.n_edges:,} edges in {dt:.2f} s "
          f"({g.n_edges / dt / 1e6:.1f} M edges/s); {per_edge:.0f} bytes per edge stored")


if __name__ == "__main__":
    import sys
    run(quick="--quick" in sys.argv)
    construction(quick="--quick" in sys.argv)
