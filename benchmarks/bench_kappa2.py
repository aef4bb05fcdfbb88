"""Exact kappa2 (all interacting parameters) on the unrolled one-layer RNN graph.

Target (issue 2): T = 100, H = 64 (0.4 M edges, 4,096 recurrent parameters) no slower
than JAX's jit-compiled one-hot Hessian-vector products on the same network, using both
cores.  Baselines measured in the same run: the same tangent algorithm written with
numpy/scipy (level-synchronous sparse x dense products), and JAX when it is installed
(the optional [bench] extra).
"""

import numba
import numpy as np
import scipy.sparse as sp

import pathgeom
from pathgeom import geometry

from _common import LevelSparseBaseline, best_time, rnn_graph
from bench_rnn import jax_kappa


def numpy_kappa2(base, g, p, block=256):
    """Forward tangents for ``block`` parameters at a time, level by level, with scipy."""
    q = p * p
    _, _, h, delta = base.gamma2_kappa1(p)
    support = pathgeom.kappa2_support(g)
    src, dst, par = base.src, base.dst, base.par
    k2 = np.zeros(g.n_params)
    qin = q[base.par_in]
    for lo in range(0, support.size, block):
        members = support[lo:lo + block]
        slot = np.full(g.n_params, -1)
        slot[members] = np.arange(members.size)
        on = slot[par] >= 0
        cols = slot[par[on]]
        seeds = sp.csr_matrix((h[src[on]], (dst[on], cols)), shape=(g.n_nodes, members.size))
        t = np.zeros((g.n_nodes, members.size))
        for (a, b), M in zip(base.levels, base.A_rows):
            if a == 0:
                continue
            M.data = qin[base.A.indptr[a]:base.A.indptr[b]]
            t[a:b] = M @ t + seeds[a:b].toarray()
        acc = np.bincount(cols, weights=t[src[on], cols] * delta[dst[on]],
                          minlength=members.size)
        k2[members] = 4 * q[members] * acc
    return k2


def run(quick=False):
    T, H = (20, 16) if quick else (100, 64)
    g, _ = rnn_graph(T, H)
    rng = np.random.default_rng(0)
    p = rng.uniform(-np.sqrt(2.7 / H), np.sqrt(2.7 / H), g.n_params)
    n_support = pathgeom.kappa2_support(g).size
    print(f"RNN T={T} H={H}: {g.n_edges:,} edges, {n_support:,} parameters with kappa2 to "
          f"compute (block of {geometry.TANGENT_BLOCK} per sweep)")
    full = pathgeom.path_quantities(g, p)
    threads = numba.get_num_threads()
    rows = []
    for nt in sorted({1, threads}):
        numba.set_num_threads(nt)
        rows.append((f"pathgeom exact kappa, {nt} thread(s)",
                     best_time(lambda: pathgeom.path_quantities(g, p), repeat=3)))
    numba.set_num_threads(threads)
    base = LevelSparseBaseline(g)
    k2 = numpy_kappa2(base, g, p)
    assert np.allclose(k2, full.kappa2, rtol=1e-9, atol=1e-14 * full.kappa2.max())
    rows.append(("numpy/scipy tangents (same algorithm)",
                 best_time(lambda: numpy_kappa2(base, g, p), repeat=1, min_time=0)))
    net = pathgeom.rnn(1, H, 1, T)  # the same network, for the dense autodiff function
    jx = jax_kappa(T, H, net, p)
    if jx is None:
        print("  JAX not installed: skipping the one-hot HVP comparison "
              "(pip install -e '.[bench]')")
    else:
        assert np.allclose(jx[1], full.kappa, rtol=1e-8, atol=1e-14 * full.kappa.max())
        rows.append(("JAX jit one-hot HVPs (all parameters)", jx[0]))
    best = rows[len({1, threads}) - 1][1]
    for name, t in rows:
        print(f"  {name:42} {t * 1e3:>10.1f} ms  {t / best:>7.1f}x")


if __name__ == "__main__":
    import sys
    run(quick="--quick" in sys.argv)
