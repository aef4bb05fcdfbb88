"""Shared helpers for the benchmarks: timing, machine figures, graph builders, baselines."""

import time

import numpy as np
import scipy.sparse as sp

import pathgeom


def best_time(fn, repeat=5, min_time=0.2):
    """Best wall time of ``fn()`` over ``repeat`` runs (after one warm-up call, so that
    numba compilation is never timed); repeats more while the total stays under min_time."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start < min_time and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def copy_bandwidth(nbytes=512 << 20):
    """Bytes per second that numpy copies between two large arrays (best of 5)."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    return nbytes / best_time(lambda: np.copyto(b, a), repeat=5)


def rnn_graph(T, H, n_in=1, n_out=1):
    """The unrolled RNN's graph, and its edge arrays in the form ``from_arrays`` takes (what
    the construction benchmarks time)."""
    g = pathgeom.rnn(n_in, H, n_out, T).graph
    src, dst, par = g.edges()
    a = dict(src=src, dst=dst, param=par, inputs=g.compiled.inputs,
             outputs=g.compiled.outputs, n_nodes=g.n_nodes, n_params=g.n_params)
    return g, a


def layered_dag_arrays(rng, width, layers, fan_in, n_params, reach=3):
    """Random layered DAG: every node of layer l >= 1 draws ``fan_in`` sources from the
    ``reach`` layers below it, each edge on a random parameter (random sharing)."""
    n_nodes = width * (layers + 1)
    dst = np.repeat(np.arange(width, n_nodes), fan_in)
    layer = dst // width
    lo = np.maximum(layer - reach, 0) * width
    src = lo + (rng.random(dst.size) * (layer * width - lo)).astype(np.int64)
    par = rng.integers(0, n_params, dst.size)
    return dict(src=src, dst=dst, param=par, inputs=np.arange(width),
                outputs=np.arange(layers * width, n_nodes), n_nodes=n_nodes, n_params=n_params)


class LevelSparseBaseline:
    """The numpy/scipy way: level-synchronous sparse products over depth levels.

    Nodes are in depth order, so each level is a contiguous block of rows of the
    (dst x src) matrix A and of its transpose.  Built once per graph, like pathgeom's CSR.
    """

    def __init__(self, g):
        src, dst, par = g.edges()
        n = g.n_nodes
        self.n, self.src, self.dst, self.par = n, src, dst, par
        self.inputs = np.array([g.index(x) for x in g.inputs])
        self.outputs = np.array([g.index(x) for x in g.outputs])
        # (data, indices, indptr) construction keeps parallel edges as separate entries
        order_in = np.lexsort((src, dst))
        self.A = sp.csr_matrix((np.ones(src.size), src[order_in],
                                np.r_[0, np.cumsum(np.bincount(dst, minlength=n))]), shape=(n, n))
        self.par_in = par[order_in]
        order_out = np.lexsort((dst, src))
        self.AT = sp.csr_matrix((np.ones(src.size), dst[order_out],
                                 np.r_[0, np.cumsum(np.bincount(src, minlength=n))]),
                                shape=(n, n))
        self.par_out = par[order_out]
        bounds = np.r_[0, np.flatnonzero(np.diff(g.depth)) + 1, n]
        self.levels = list(zip(bounds[:-1], bounds[1:]))
        self.A_rows = [self.A[a:b] for a, b in self.levels]
        self.AT_rows = [self.AT[a:b] for a, b in self.levels]

    def gamma2_kappa1(self, p):
        q = p * p
        h = np.zeros(self.n)
        h[self.inputs] = 1.0
        qin = q[self.par_in]
        for (a, b), M in zip(self.levels, self.A_rows):
            if a == 0:
                continue
            M.data = qin[self.A.indptr[a]:self.A.indptr[b]]
            h[a:b] = M @ h
        h[self.inputs] = 1.0
        delta = np.zeros(self.n)
        delta[self.outputs] = 1.0
        qout = q[self.par_out]
        for (a, b), M in zip(reversed(self.levels), reversed(self.AT_rows)):
            M.data = qout[self.AT.indptr[a]:self.AT.indptr[b]]
            upd = M @ delta
            nz = np.diff(M.indptr) > 0
            delta[a:b][nz] = upd[nz]
        kappa1 = np.bincount(self.par, weights=h[self.src] * delta[self.dst],
                             minlength=q.size)
        return h[self.outputs].sum(), kappa1, h, delta


def train_step_fn(net, p, X, Y, opt):
    """One training step as ``pathgeom.train`` takes it (dense engine, MSE): forward with
    states, loss, backward, ``opt.step`` with the minibatch loss (not recomputed at p)."""
    from pathgeom.training import _BatchLoss, mse_loss

    def step():
        Y_pred, states = net.forward_with_states(p, X)
        loss, dY = mse_loss(Y_pred, Y)
        grad = net.backward(p, X, dY, states=states)
        return opt.step(p, grad, net, loss=_BatchLoss(net.forward, mse_loss, X, Y, p, loss))
    return step
