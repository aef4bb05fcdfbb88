"""The engine seam: every compiled computation pathgeom runs, as functions of a compiled
record (:attr:`SharedGraph.compiled`, :class:`pathgeom._compiled.CompiledGraph`) and flat
float64 arrays, writing into arrays the caller allocates.

Nothing above this module calls a kernel: :mod:`pathgeom.graph` (the real network's
passes), :mod:`pathgeom.geometry` (the squared network's passes and the exact
:math:`\\kappa^{(2)}` tangents), :mod:`pathgeom._compiled` (building the record) and the
RNN constructor's dense sweeps all come through here.  Today every function runs the
numba CPU kernels of :mod:`pathgeom._kernels`; a second backend (numba's CUDA target, say)
provides the same functions over device copies of the record -- see
``docs/architecture.md``, "Adding a backend".

The functions do not validate: the public wrappers have done so once.
"""

from . import _kernels

__all__ = ["build_csr", "longest_path_depth", "reaches_output", "reached_from", "forward",
           "backward", "sq_forward", "sq_backward", "sink_depth", "param_extents",
           "tangent_blocks", "tangent_one", "rnn_sq_sweep", "rnn_block_sums"]


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


# ---------------------------------------------------------------------------- real network


def forward(c, p, H):
    """Node values of the real network: ``H`` (n_nodes, B) holds the inputs on entry and
    every node's value on return (Table 1: ReLU inside, linear outputs)."""
    _kernels.forward(c.indptr, c.src, c.par, c.relu, p, H)


def backward(c, p, H, G, grad):
    """Reverse pass: ``G`` (n_nodes, B) holds dL/d(output) on the outputs on entry; the
    parameter gradient is added into ``grad``."""
    _kernels.backward(c.optr, c.dst, c.opar, c.relu, p, H, G, grad)


# ---------------------------------------------------------------------------- squared network


def sq_forward(c, q, h, careful=False, streamed=False):
    """Squared-network node values into ``h`` (inputs preset to 1): the path sums
    :math:`h_v = \\sum_{\\zeta: V_{in} \\leadsto v} \\prod q`.  ``careful``: a term with a zero
    factor is exactly 0 (the rerun after a non-finite value); ``streamed``: the weights are
    first gathered into edge order (graphs with many parameters)."""
    if careful:
        _kernels.sq_forward_careful(c.indptr, c.src, c.par, q, h)
    elif streamed:
        w = _kernels_gather(q, c.par)
        _kernels.sq_forward_w(c.indptr, c.src, w, h)
    else:
        _kernels.sq_forward(c.indptr, c.src, c.par, q, h)


def sq_backward(c, q, h, delta, k1, careful=False, streamed=False):
    """Sensitivities :math:`\\delta = \\partial g / \\partial h` into ``delta`` (outputs
    preset to 1) and :math:`\\kappa^{(1)} = \\partial g / \\partial q` added into ``k1``."""
    if careful:
        _kernels.sq_backward_careful(c.optr, c.dst, c.opar, q, h, delta, k1)
    elif streamed:
        w = _kernels_gather(q, c.opar)
        _kernels.sq_backward_w(c.optr, c.dst, c.opar, w, h, delta, k1)
    else:
        _kernels.sq_backward(c.optr, c.dst, c.opar, q, h, delta, k1)


def _kernels_gather(q, par):
    import numpy as np
    w = np.empty(par.shape[0])
    _kernels.sq_gather(q, par, w)
    return w


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
