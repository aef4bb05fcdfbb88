"""The engine seam: every compiled computation pathgeom runs, as functions of a compiled
record (:attr:`SharedGraph.compiled`, :class:`pathgeom._compiled.CompiledGraph`) and flat
float64 arrays, writing into arrays the caller allocates.

Nothing above this module calls a kernel: :mod:`pathgeom.graph` (the real network's
passes), :mod:`pathgeom.geometry` (the squared network's passes and the exact
:math:`\\kappa^{(2)}` tangents), :mod:`pathgeom._compiled` (building the record) and the
RNN constructor's dense sweeps and its batched real-network passes all come through here.
Today every function runs the numba CPU kernels of :mod:`pathgeom._kernels` and
:mod:`pathgeom._dense_kernels`; a second backend (numba's CUDA target, say)
provides the same functions over device copies of the record -- see
``docs/architecture.md``, "Adding a backend".

The functions do not validate: the public wrappers have done so once.
"""

import numpy as np

from . import _dense_kernels, _kernels

__all__ = ["extended", "extended_sq", "build_csr", "build_runs", "longest_path_depth", "reaches_output", "reached_from",
           "param_scatter", "block_groups", "build_blocks", "forward", "backward", "sq_forward", "sq_delta",
           "sq_forward_kappa1", "sq_backward_careful", "sink_depth", "param_extents",
           "tangent_blocks", "tangent_one", "rnn_sq_sweep", "rnn_block_sums",
           "rnn_dense_forward", "rnn_dense_bptt", "rnn_dense_grads"]


# ---------------------------------------------------------------------------- building


def build_csr(n, src, dst, par, pos, n_params):
    """Incoming and outgoing CSR (int64 pointers, int32 indices) in topological order."""
    return _kernels.build_csr(n, src, dst, par, pos, n_params)


def longest_path_depth(n, src, dst):
    """Longest-path depth of each node from the sources, or a cycle marker (see
    :func:`pathgeom._kernels.longest_path_depth`)."""
    return _kernels.longest_path_depth(n, src, dst)


def reaches_output(optr, dst, is_output):
    """Whether some path leads from each node to an output."""
    return _kernels.reaches_output(optr, dst, is_output)


def reached_from(indptr, src, is_input):
    """Whether some path leads from an input to each node."""
    return _kernels.reached_from(indptr, src, is_input)


def param_scatter(indptr, par, span):
    """Fraction of consecutive incoming edges whose parameters lie more than ``span`` apart."""
    return _kernels.param_scatter(indptr, par, span)


def block_groups(indptr, depth, n_params, shift, width):
    """Upper bound on the number of blocked groups (see :func:`build_blocks`)."""
    return _kernels.block_groups(indptr, depth, n_params, shift, width)


def build_blocks(indptr, src, par, depth, live, reached, n_params, shift, width):
    """The blocked edge groups of the squared-network sweeps (see
    :func:`pathgeom._kernels.build_blocks`)."""
    return _kernels.build_blocks(indptr, src, par, depth, live, reached, n_params, shift,
                                 width)


# ---------------------------------------------------------------------------- real network


def extended(c, w):
    """The weight vector the kernels read: ``w`` (length ``c.n_params``) followed by the
    graph's fixed weights (see :mod:`pathgeom._compiled`); ``w`` itself when there are
    none."""
    if not c.fixed.shape[0]:
        return w
    return np.concatenate([w, c.fixed])


def extended_sq(c, q, power=2.0):
    """:func:`extended` for the squared network: ``q`` followed by ``|fixed| ** power``."""
    if not c.fixed.shape[0]:
        return q
    with np.errstate(over="ignore"):
        return np.concatenate([q, np.abs(c.fixed) ** power])


def _selection(c, H):
    """Per node and batch column, the source a max node selects (rows of other nodes are
    unused); an empty (0, B) array when the graph has no max node."""
    if c.kind.shape[0] and c.kind.max() >= 2:
        return np.full(H.shape, -1, dtype=np.int64)
    return np.zeros((0, H.shape[1]), dtype=np.int64)


def forward(c, p, H):
    """Node values of the real network: ``H`` (n_nodes, B) holds the inputs on entry and
    every node's value on return (ReLU, identity or max per node, linear outputs).
    Returns the max nodes' selections, to hand to :func:`backward`."""
    sel = _selection(c, H)
    _kernels.forward(c.indptr, c.src, c.par, c.kind, extended(c, p), H, sel)
    return sel


def backward(c, p, H, G, grad, sel):
    """Reverse pass: ``G`` (n_nodes, B) holds dL/d(output) on the outputs on entry; the
    parameter gradient is added into ``grad`` (length ``c.n_params``); ``sel`` is what
    :func:`forward` returned for ``H``."""
    _kernels.backward(c.optr, c.dst, c.opar, c.kind, extended(c, p), H, G, grad, sel)


# ---------------------------------------------------------------------------- squared network


def _blocks(c):
    """The compiled record's blocked groups, or None when the CSR sweeps are used."""
    if c.blk_ptr.shape[0] > 1:
        return c.blk_ptr, c.blk_node, c.blk_param, c.blk_src, c.blk_key
    return None


def build_runs(indptr, src, par):
    """Runs of incoming edges (see :func:`pathgeom._kernels.build_runs`)."""
    return _kernels.build_runs(indptr, src, par)


def _runs(c):
    """The compiled record's runs of edges, or None when the sweeps read the CSRs."""
    if c.run_ptr.shape[0] > 1:
        return c.run_ptr, c.run_src, c.run_par, c.run_len
    return None


def sq_forward(c, q, h, careful=False):
    """Squared-network node values into ``h`` (inputs preset to 1): the path sums
    :math:`h_v = \\sum_{\\zeta: V_{in} \\leadsto v} \\prod q`.  ``careful``: a term with a zero
    factor is exactly 0 (the rerun after a non-finite value).  Graphs with blocked groups
    are swept over them (the values of nodes that reach no output are then left 0)."""
    blocks = None if careful else _blocks(c)
    if careful:
        _kernels.sq_forward_careful(c.indptr, c.src, c.par, q, h)
    elif blocks is not None:
        _kernels.sq_forward_blocked(*blocks, q, h)
    elif _runs(c) is not None:
        _kernels.sq_forward_runs(*_runs(c), q, h)
    else:
        _kernels.sq_forward(c.indptr, c.src, c.par, q, h)


def sq_delta(c, q, delta):
    """Sensitivities :math:`\\delta = \\partial g / \\partial h` into ``delta`` (outputs
    preset to 1).  With blocked groups, nodes that no input reaches are left 0."""
    blocks = _blocks(c)
    if blocks is not None:
        _kernels.sq_delta_blocked(*blocks, q, delta)
    elif _runs(c) is not None:
        _kernels.sq_delta_runs(*_runs(c), q, delta)
    else:
        _kernels.sq_delta(c.optr, c.dst, c.opar, q, delta)


def sq_forward_kappa1(c, q, h, delta, k1):
    """:func:`sq_forward` (the same ``h`` bit for bit) and
    :math:`\\kappa^{(1)}_i = \\sum_{(u \\to v) \\in E_i} h_u \\delta_v` added into ``k1``, from
    the final ``delta``.  Terms on edges into nodes with ``delta == 0`` are skipped."""
    blocks = _blocks(c)
    if blocks is not None:
        _kernels.sq_forward_kappa1_blocked(*blocks, q, h, delta, k1)
    elif _runs(c) is not None:
        _kernels.sq_forward_kappa1_runs(*_runs(c), q, h, delta, k1)
    else:
        _kernels.sq_forward_kappa1(c.indptr, c.src, c.par, q, h, delta, k1)


def sq_backward_careful(c, q, h, delta, k1):
    """``delta`` and ``kappa1`` (added into ``k1``) with 0 * (anything) = 0, in one
    backward pass (the rerun after a non-finite value)."""
    _kernels.sq_backward_careful(c.optr, c.dst, c.opar, q, h, delta, k1)


# ---------------------------------------------------------------------------- kappa2


def sink_depth(c):
    """Longest-path distance from each node to a sink."""
    return _kernels.sink_depth(c.optr, c.dst)


def param_extents(c, sdepth, n_params):
    """Per parameter: edge count, depth and sink-depth extents of its sources and heads,
    first and last head position (a (7, n_params) array; see the kernel)."""
    return _kernels.param_extents(c.indptr, c.src, c.par, c.depth, sdepth, n_params)


def tangent_blocks(indptr, src, par, q, h, delta, blocks, ranges, out):
    """Forward tangents of the squared network for blocks of parameters: row ``b`` of
    ``out`` gets :math:`\\tfrac12 \\partial^2 g / \\partial q_i^2` for the parameters in
    ``blocks[b]``.  Takes the incoming CSR arrays rather than the record, so that a worker
    of a cluster can hold just those."""
    _kernels.tangent_blocks(indptr, src, par, q, h, delta, blocks, ranges, out)


def tangent_one(c, q, h, delta, i, start, stop):
    """One parameter's tangent with zero factors exactly 0 (the careful rerun)."""
    return _kernels.tangent_careful(c.indptr, c.src, c.par, q, h, delta, i, start, stop)


# ---------------------------------------------------------------------------- dense RNN sweeps


def rnn_sq_sweep(R, drive, seed, h, d, fwd, bwd):
    """The RNN's squared-network time loop (see :func:`pathgeom._kernels.rnn_sq_sweep`)."""
    _kernels.rnn_sq_sweep(R, drive, seed, h, d, fwd, bwd)


def rnn_block_sums(Pow, h, delta, b, n, P, Loc):
    """Block sums of the blocked structured :math:`\\kappa^{(2)}` recursion."""
    _kernels.rnn_block_sums(Pow, h, delta, b, n, P, Loc)


# ---------------------------------------------------------------------------- dense RNN passes
#
# One layer of the batched passes of pathgeom.rnn.  The time loops are here: per step one
# product by numpy's BLAS (into a reused scratch) and one element-wise kernel of
# pathgeom._dense_kernels.  Every array is float64 and C-contiguous unless said otherwise;
# the kernels write into arrays allocated here or by the caller.


def rnn_dense_forward(x, WinT, WrecT, b, h):
    """One RNN layer's states into ``h`` (T, B, H):
    ``h[t] = relu(h[t-1] WrecT + (x[t] WinT + b))`` with ``x`` (T, B, K) from below (any
    strides: a narrow one is read in place); ``WinT`` (K, H), ``WrecT`` (H, H) and ``b``
    (H,) C-contiguous."""
    T, B, H = h.shape
    K = x.shape[2]
    wide = K > _dense_kernels.SMALL
    if wide:  # the input drive of every step as one product
        np.matmul(np.reshape(x, (T * B, K)), WinT, out=h.reshape(T * B, H))
    z = np.zeros((B, H))
    step = _dense_kernels.rnn_forward_step
    for t in range(T):
        if t:
            np.dot(h[t - 1], WrecT, out=z)  # (np.dot: less call overhead than matmul)
        step(x, WinT, b, z, h, t, wide)


def rnn_dense_bptt(G, M, h, Wrec, dz):
    """One RNN layer's backpropagation through time into ``dz`` (T, B, H), the gradient
    of the loss with respect to the pre-activations:
    ``dz[t] = (G[t] M + dz[t+1] Wrec) * (h[t] > 0)``, with the gradient from above
    ``G`` (T steps, or 1: the last step only; B, K) times ``M`` (K, H).  Returns whether
    every state in ``h`` is finite (checked on the way)."""
    T, B, H = h.shape
    TG, _, K = G.shape
    wide = K > _dense_kernels.SMALL
    if wide:  # the gradient from above at every step as one product
        G = np.matmul(G.reshape(TG * B, K), M).reshape(TG, B, H)
    carry = np.zeros((B, H))
    bad = False
    step = _dense_kernels.rnn_bptt_step
    for t in range(T - 1, -1, -1):
        bad |= step(G, M, h, dz, carry, t, wide)
        if t:
            np.dot(dz[t], Wrec, out=carry)
    return not bad


def rnn_dense_grads(dz, h, x, want_b):
    """One RNN layer's weight gradients from ``dz`` (T, B, H), its states ``h`` and its
    input ``x`` (T, B, K): ``(dW_rec, dW_in, db)`` = ``sum_t dz[t]^T h[t-1]``,
    ``sum_t dz[t]^T x[t]``, ``sum_t dz[t]`` over the batch too (``db`` None unless
    ``want_b``); the products over every (time, row) pair as single BLAS calls.  ``x``
    may have any strides."""
    T, B, H = h.shape
    K = x.shape[2]
    dz2 = dz.reshape(T * B, H)
    gWrec = dz2[B:].T @ h.reshape(T * B, H)[:-B]
    narrow = K <= _dense_kernels.SMALL
    gWinT = np.empty((K if narrow else 0, H))
    gb = np.empty(H if want_b else 0)
    if narrow or want_b:
        _dense_kernels.rnn_sums(dz, x, narrow, want_b, gWinT, gb)
    gWin = gWinT.T if narrow else dz2.T @ np.reshape(x, (T * B, K))
    return gWrec, gWin, (gb if want_b else None)


# ---------------------------------------------------------------------------- scaled squared network


def sq_forward_scaled(c, qm, qx, hm, hx):
    """The squared network's node values on scaled values (value = ``m * 2**x``,
    mantissas 0 or in [0.5, 1), int64 exponents; ``hm/hx`` arrive with the inputs preset
    to 1): no intermediate under- or overflows.  The rerun after a value was lost to
    underflow; zero factors give exact zeros."""
    _kernels.sq_forward_scaled(c.indptr, c.src, c.par, qm, qx, hm, hx)


def sq_backward_scaled(c, qm, qx, hm, hx, dm, dx, km, kx):
    """``delta`` (outputs preset to 1) and ``kappa1`` (``km/kx`` zero on entry, one entry
    per weight of ``qm``) on scaled values (see :func:`sq_forward_scaled`)."""
    _kernels.sq_backward_scaled(c.optr, c.dst, c.opar, qm, qx, hm, hx, dm, dx, km, kx)


def tangent_one_scaled(c, qm, qx, hm, hx, dm, dx, i, start, stop):
    """One parameter's tangent sum on scaled values: ``(m, x)``."""
    return _kernels.tangent_scaled(c.indptr, c.src, c.par, qm, qx, hm, hx, dm, dx, i,
                                   start, stop)
