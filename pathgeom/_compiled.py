r"""The compiled graph: a frozen record of flat arrays in topological order.

Built once per :class:`~pathgeom.SharedGraph` by :func:`compile_arrays` from integer edge
arrays whose node ids are already topological positions.  Every array is C-contiguous and
read-only.  Per edge it stores 16 bytes: ``src``/``par`` (incoming CSR, grouped by
destination) and ``dst``/``opar`` (outgoing CSR, grouped by source), all int32.

Fixed-weight edges (:func:`pathgeom.fixed`) are edges on *pseudo-parameters*: the distinct
fixed values, in increasing order, are ``fixed``, and an edge of weight ``fixed[j]`` has
``par = n_params + j``.  The kernels read the *extended* weight vector
``np.concatenate([p, fixed])`` (:func:`pathgeom.engine.extended`) and know nothing else of
fixed weights; outputs per parameter (gradients, :math:`\kappa`) are sliced back to the
``n_params`` real parameters by the wrappers.  ``kind`` holds each node's activation:
``KIND_LINEAR`` (inputs, outputs and identity neurons), ``KIND_RELU`` or ``KIND_MAX``.

Graphs with many parameters spread over the edges at random (at least ``BLOCK_PARAMS``
parameters, most consecutive incoming edges of a node more than ``BLOCK_SPAN`` parameters
apart, and depth levels wide enough that a group holds ``BLOCK_REUSE / n_params`` edges
on average) also get the blocked edge groups that the squared-network sweeps use instead
of the CSRs (``blk_*``; see ``pathgeom._kernels.build_blocks``): 8 more bytes per edge,
about 1.5 times the CSRs.  Other graphs hold them empty.

Graphs whose nodes' incoming edges come in *runs* -- sources and parameters both counting
up by one, as in an unrolled RNN, a convolution or a dense layer -- and at least
``RUN_MIN`` edges per run on average also get the runs (``run_*``: 12 bytes per run and 8
per node); the squared-network sweeps then read the runs instead of the CSRs, as
contiguous dot products (see ``pathgeom._kernels.build_runs``).
"""

from typing import NamedTuple

import numpy as np

from . import engine


def _empty(dtype, n=0):
    a = np.zeros(n, dtype=dtype)
    a.flags.writeable = False
    return a


class CompiledGraph(NamedTuple):
    indptr: np.ndarray   # (n+1,) int64: incoming edges of v are indptr[v]:indptr[v+1]
    src: np.ndarray      # (E,) int32 source of each incoming edge, sorted by (dst, src, par)
    par: np.ndarray      # (E,) int32 parameter of each incoming edge
    optr: np.ndarray     # (n+1,) int64: outgoing edges of u are optr[u]:optr[u+1]
    dst: np.ndarray      # (E,) int32 destination of each outgoing edge, sorted by (src, dst, par)
    opar: np.ndarray     # (E,) int32 parameter of each outgoing edge
    kind: np.ndarray     # (n,) uint8: KIND_LINEAR (inputs, outputs, identity), KIND_RELU, KIND_MAX
    inputs: np.ndarray   # (n_inputs,) int64 positions, in input-vector order
    outputs: np.ndarray  # (n_outputs,) int64 positions, in output-vector order
    depth: np.ndarray    # (n,) int64 longest-path depth from the sources
    live: np.ndarray     # (n,) bool: some path leads from the node to an output
    reached: np.ndarray  # (n,) bool: some path leads from an input to the node
    n_params: int        # real parameters; pseudo-parameters n_params + j carry fixed[j]
    # blocked edge groups for the squared network's sweeps (empty: the CSRs are used; the
    # defaults let records pickled before they existed load)
    blk_ptr: np.ndarray = _empty(np.int64, 1)  # (G+1,): group g is blk_ptr[g]:blk_ptr[g+1]
    blk_node: np.ndarray = _empty(np.int64)    # (G,) first node of group g's segment (one depth)
    blk_param: np.ndarray = _empty(np.int64)   # (G,) first parameter of group g's block
    blk_src: np.ndarray = _empty(np.int32)     # (E',) source of each edge
    blk_key: np.ndarray = _empty(np.uint32)    # (E',) (head - blk_node) << 16 | (param - blk_param)
    fixed: np.ndarray = _empty(np.float64)     # (F,) distinct fixed weights, increasing
    # runs of incoming edges (src and par both +1 along a run; empty: not used), see
    # pathgeom._kernels.build_runs
    run_ptr: np.ndarray = _empty(np.int64, 1)  # (n+1,) or (1,): node v's runs
    run_src: np.ndarray = _empty(np.int32)     # (R,) first source of each run
    run_par: np.ndarray = _empty(np.int32)     # (R,) first parameter of each run
    run_len: np.ndarray = _empty(np.int32)     # (R,) number of edges in each run

    @property
    def n_ext(self):
        """Length of the extended weight vector: real parameters, then the fixed values."""
        return self.n_params + self.fixed.shape[0]


#: Node kinds (the values of ``CompiledGraph.kind``).
KIND_LINEAR, KIND_RELU, KIND_MAX = 0, 1, 2


#: Blocked groups from this many parameters on (512 KiB of q: a core's L2 cache) ...
BLOCK_PARAMS = 1 << 16
#: ... when more than BLOCK_SCATTER of the consecutive incoming edges of a node have
#: parameters more than BLOCK_SPAN apart (the CSR sweeps would read q at random).
BLOCK_SPAN = 8
BLOCK_SCATTER = 0.5
#: ... and when a (level, block) group holds at least BLOCK_REUSE / n_params edges on
#: average: on narrow levels the groups are too short to reuse the block's cache lines
#: (measured break-even: about 3,000 edges per group at 1e5 parameters, under 500 at 1e6).
BLOCK_REUSE = 1 << 28
#: The squared-network sweeps use runs of edges (see the module docstring) when the
#: edges are at least RUN_MIN times as many as the runs, and there are no blocked groups.
RUN_MIN = 4

#: Parameters per block (2**BLOCK_SHIFT; q and kappa1 blocks of 128 KiB) and nodes per
#: segment (the key holds both offsets in 16 bits).
BLOCK_SHIFT = 14
BLOCK_WIDTH = 1 << 16


def _frozen(a, dtype):
    a = np.ascontiguousarray(a, dtype=dtype)
    a.flags.writeable = False
    return a


def _wants_blocks(indptr, par, depth, n_params):
    """Whether the blocked groups pay (see the module docstring and the constants)."""
    if n_params < BLOCK_PARAMS or par.shape[0] == 0:
        return False
    if engine.param_scatter(indptr, par, BLOCK_SPAN) <= BLOCK_SCATTER:
        return False
    groups = engine.block_groups(indptr, depth, n_params, BLOCK_SHIFT, BLOCK_WIDTH)
    return par.shape[0] * n_params >= BLOCK_REUSE * max(groups, 1)


def compile_arrays(n, src, dst, par, pos, inputs, outputs, depth, n_params, kind=None,
                   fixed=None):
    """Build the record from edge arrays over node ids and the map ``pos`` id -> position.

    ``pos`` must be a topological order (``pos[src] < pos[dst]`` on every edge);
    ``inputs``, ``outputs`` and ``depth`` are already in positions.  ``par`` indexes the
    extended weight vector (``n_params`` real parameters, then ``fixed``); ``kind`` (per
    node *position*, default ReLU) is overridden to linear on inputs and outputs.
    """
    fixed = np.zeros(0) if fixed is None else np.asarray(fixed, dtype=np.float64)
    n_ext = n_params + fixed.shape[0]
    indptr, in_src, in_par, optr, out_dst, out_par = engine.build_csr(
        n, src, dst, par, pos, n_ext)
    kinds = np.full(n, KIND_RELU, dtype=np.uint8) if kind is None else np.array(kind, np.uint8)
    kinds[inputs] = KIND_LINEAR
    kinds[outputs] = KIND_LINEAR
    is_output = np.zeros(n, dtype=np.bool_)
    is_output[outputs] = True
    live = engine.reaches_output(optr, out_dst, is_output)
    is_input = np.zeros(n, dtype=np.bool_)
    is_input[inputs] = True
    reached = engine.reached_from(indptr, in_src, is_input)
    if _wants_blocks(indptr, in_par, depth, n_ext):
        blocks = engine.build_blocks(indptr, in_src, in_par, depth, live, reached, n_ext,
                                     BLOCK_SHIFT, BLOCK_WIDTH)
    else:
        blocks = (np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                  np.zeros(0, np.int32), np.zeros(0, np.uint32))
    runs = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
            np.zeros(0, np.int32))
    if blocks[1].shape[0] == 0 and in_src.shape[0]:
        built = engine.build_runs(indptr, in_src, in_par)
        if in_src.shape[0] >= RUN_MIN * built[1].shape[0]:
            runs = built
    return CompiledGraph(
        indptr=_frozen(indptr, np.int64),
        src=_frozen(in_src, np.int32),
        par=_frozen(in_par, np.int32),
        optr=_frozen(optr, np.int64),
        dst=_frozen(out_dst, np.int32),
        opar=_frozen(out_par, np.int32),
        kind=_frozen(kinds, np.uint8),
        inputs=_frozen(inputs, np.int64),
        outputs=_frozen(outputs, np.int64),
        depth=_frozen(depth, np.int64),
        live=_frozen(live, np.bool_),
        reached=_frozen(reached, np.bool_),
        n_params=int(n_params),
        blk_ptr=_frozen(blocks[0], np.int64),
        blk_node=_frozen(blocks[1], np.int64),
        blk_param=_frozen(blocks[2], np.int64),
        blk_src=_frozen(blocks[3], np.int32),
        blk_key=_frozen(blocks[4], np.uint32),
        fixed=_frozen(fixed, np.float64),
        run_ptr=_frozen(runs[0], np.int64),
        run_src=_frozen(runs[1], np.int32),
        run_par=_frozen(runs[2], np.int32),
        run_len=_frozen(runs[3], np.int32),
    )
