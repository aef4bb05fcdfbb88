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

__all__ = ["build_csr", "longest_path_depth", "reaches_output", "reached_from",
           "param_scatter", "block_groups", "build_blocks", "forward", "backward", "sq_forward", "sq_delta",
           "sq_forward_kappa1", "sq_backward_careful", "sink_depth", "param_extents",
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


def forward(c, p, H):
    """Node values of the real network: ``H`` (n_nodes, B) holds the inputs on entry and
    every node's value on return (Table 1: ReLU inside, linear outputs)."""
    _kernels.forward(c.indptr, c.src, c.par, c.relu, p, H)


def backward(c, p, H, G, grad):
    """Reverse pass: ``G`` (n_nodes, B) holds dL/d(output) on the outputs on entry; the
    parameter gradient is added into ``grad``."""
    _kernels.backward(c.optr, c.dst, c.opar, c.relu, p, H, G, grad)


# ---------------------------------------------------------------------------- squared network


def _blocks(c):
    """The compiled record's blocked groups, or None when the CSR sweeps are used."""
    if c.blk_ptr.shape[0] > 1:
        return c.blk_ptr, c.blk_node, c.blk_param, c.blk_src, c.blk_key
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
    else:
        _kernels.sq_forward(c.indptr, c.src, c.par, q, h)


def sq_delta(c, q, delta):
    """Sensitivities :math:`\\delta = \\partial g / \\partial h` into ``delta`` (outputs
    preset to 1).  With blocked groups, nodes that no input reaches are left 0."""
    blocks = _blocks(c)
    if blocks is not None:
        _kernels.sq_delta_blocked(*blocks, q, delta)
    else:
        _kernels.sq_delta(c.optr, c.dst, c.opar, q, delta)


def sq_forward_kappa1(c, q, h, delta, k1):
    """:func:`sq_forward` (the same ``h`` bit for bit) and
    :math:`\\kappa^{(1)}_i = \\sum_{(u \\to v) \\in E_i} h_u \\delta_v` added into ``k1``, from
    the final ``delta``.  Terms on edges into nodes with ``delta == 0`` are skipped."""
    blocks = _blocks(c)
    if blocks is not None:
        _kernels.sq_forward_kappa1_blocked(*blocks, q, h, delta, k1)
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
