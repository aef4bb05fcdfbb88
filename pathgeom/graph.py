r"""Shared-weight networks :math:`\mathcal{N}(G, \pi, p)` as immutable graphs.

A network is a DAG :math:`G = (V, E)` with ordered input nodes (sources) and output nodes
(sinks), and a map :math:`\pi : E \to \{0, \dots, m-1\}` from edges to parameters; edge
:math:`e` carries the weight :math:`w_e = p_{\pi(e)}`.  Weight sharing is many edges on one
parameter, :math:`E_i = \{e : \pi(e) = i\}`.  The function computed (paper, Table 1) is

.. math::

    h_v = x_v \ (v \in V_{in}), \qquad
    h_v = \mathrm{relu}\Big(\sum_{u \to v} w_{u \to v} h_u\Big) \ (v \text{ internal}), \qquad
    h_v = \sum_{u \to v} w_{u \to v} h_u \ (v \in V_{out}).

Beyond the paper, an edge may carry a **fixed weight** (:func:`fixed`: a constant that is
not a parameter, such as a residual connection's 1 or average pooling's :math:`1/n`) and
an internal node may be a ReLU (the default), an identity (``"linear"``) or a max-pooling
neuron (``"max"``, :math:`h_v = \max_{u \to v} h_u`, its incoming edges all ``fixed(1.0)``).

Every construction path (edge lists, integer arrays, networkx graphs) goes through one
validator, :func:`_build`, which raises :class:`~pathgeom.GraphError` naming the culprit.
The validated graph is compiled once into flat CSR arrays in topological order
(:mod:`pathgeom._compiled`) that the numba kernels read.
"""

import math
import numbers

import networkx as nx
import numpy as np

from . import engine
from ._compiled import KIND_LINEAR, KIND_MAX, KIND_RELU, CompiledGraph, compile_arrays
from ._errors import GraphError, PathOverflowError
from ._validation import as_batch, as_params, first_nonfinite_row

__all__ = ["SharedGraph", "Fixed", "fixed", "NODE_KINDS", "KIND_CODES"]

#: The kinds an internal node may have, and their codes in ``from_arrays(kind=...)``.
KIND_CODES = {"linear": KIND_LINEAR, "relu": KIND_RELU, "max": KIND_MAX}
NODE_KINDS = tuple(KIND_CODES)
_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}


class Fixed:
    """A fixed edge weight: a finite constant that is not a parameter (see :func:`fixed`)."""

    __slots__ = ("value",)

    def __init__(self, value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"a fixed weight must be a real number, got "
                            f"{type(value).__name__} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"a fixed weight must be finite, got {value!r}")
        object.__setattr__(self, "value", value)

    def __setattr__(self, name, value):
        raise AttributeError("Fixed is immutable")

    def __eq__(self, other):
        return isinstance(other, Fixed) and other.value == self.value

    def __hash__(self):
        return hash(("Fixed", self.value))

    def __repr__(self):
        return f"fixed({self.value!r})"

    def __reduce__(self):
        return (Fixed, (self.value,))


def fixed(w):
    r"""A fixed edge weight :math:`w`: use it in place of a parameter index in an edge.

    A fixed edge ``(u, v, fixed(w))`` multiplies every path through it by :math:`w` (by
    :math:`w^2` in :math:`\gamma^2`), like a weight, but it is no parameter: it has no
    gradient and no :math:`\kappa`, training never changes it, and a node-wise rescaling
    must keep it (so :math:`\beta_u = \beta_v` when :math:`w \ne 0`).

    Parameters
    ----------
    w : real number
        Finite.

    Raises
    ------
    TypeError
        ``w`` is not a real number (a bool, a string, ...).
    ValueError
        ``w`` is inf or nan.

    Examples
    --------
    A residual connection around one ReLU unit, :math:`y = p_1 \mathrm{relu}(p_0 x) + x`:

    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges(
    ...     [("x", "h", 0), ("h", "y", 1), ("x", "y", pathgeom.fixed(1.0))], ["x"], ["y"])
    >>> g.forward([2.0, 3.0], [1.0])
    array([7.])
    >>> pathgeom.gamma2(g, [2.0, 3.0])   # two paths: (2 * 3)**2 + 1**2
    37.0
    """
    return Fixed(w)

_INT32_MAX = np.iinfo(np.int32).max
#: Nodes that touch no edge and parameters on no edge beyond these counts are refused:
#: memory follows what the graph uses (every per-node / per-parameter array is sized by
#: n_nodes / n_params), so a stray huge id must not allocate gigabytes.
MAX_UNUSED = 1 << 22
#: A cycle error lists at most this many of the cycle's nodes.
CYCLE_SHOWN = 12


# --------------------------------------------------------------------------- the validator


def _name(labels, i):
    """The label of node id ``i`` for messages."""
    return repr(int(i)) if labels is None else repr(labels[int(i)])


def _edge_name(labels, src, dst, par, e, weight=None):
    what = (f"fixed({float(weight[e])!r})" if weight is not None and par[e] < 0
            else f"param {int(par[e])}")
    return f"edge #{int(e)} ({_name(labels, src[e])} -> {_name(labels, dst[e])}, {what})"


def _check_weights(weight, par, n_edges, labels, src, dst):
    """The fixed weights of ``from_arrays(weight=...)`` as float64, checked where used."""
    if weight is None:
        return None
    if isinstance(weight, (str, bytes)):
        raise TypeError(f"weight must be an array of real numbers, got the string {weight!r}")
    try:
        w = np.asarray(weight)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"weight must be a 1-D array of real numbers: {exc}") from None
    if w.ndim != 1 or w.shape[0] != n_edges:
        raise GraphError(f"weight must have one entry per edge ({n_edges}), got shape "
                         f"{w.shape}")
    if w.dtype == bool or not (np.issubdtype(w.dtype, np.integer)
                               or np.issubdtype(w.dtype, np.floating)):
        raise TypeError(f"weight must hold real numbers, got dtype {w.dtype}")
    with np.errstate(over="ignore"):
        w = np.ascontiguousarray(w, dtype=np.float64)
    bad = np.flatnonzero((par < 0) & ~np.isfinite(w))
    if bad.size:
        e = int(bad[0])
        raise GraphError(f"edge #{e} ({_name(labels, src[e])} -> {_name(labels, dst[e])}) "
                         f"has fixed weight {float(w[e])!r}; a fixed weight must be finite")
    return w


def _check_kinds(kind, n_nodes, labels):
    """Node kinds (codes or names, one per node id) as a uint8 code array."""
    if kind is None:
        return None
    if isinstance(kind, (str, bytes)):
        raise TypeError(f"kind must give one kind per node, got the string {kind!r}")
    seq = list(kind) if not isinstance(kind, np.ndarray) else kind.tolist()
    if len(seq) != n_nodes:
        raise GraphError(f"kind must have one entry per node ({n_nodes}), got {len(seq)}")
    codes = np.empty(n_nodes, dtype=np.uint8)
    valid = set(KIND_CODES.values())
    for k, x in enumerate(seq):
        if isinstance(x, str):
            if x not in KIND_CODES:
                raise GraphError(f"node {_name(labels, k)} has unknown kind {x!r}; the kinds "
                                 f"are {', '.join(map(repr, NODE_KINDS))}")
            codes[k] = KIND_CODES[x]
        elif isinstance(x, numbers.Integral) and not isinstance(x, bool) and x in valid:
            codes[k] = x
        else:
            raise GraphError(f"node {_name(labels, k)} has unknown kind {x!r}; give a name "
                             f"({', '.join(map(repr, NODE_KINDS))}) or its code in "
                             f"pathgeom.KIND_CODES ({KIND_CODES})")
    return codes


def _check_index_array(a, what):
    """``a`` as int64 node ids / parameter indices, refusing what does not fit (GraphError).

    Values are checked against the int32 range *before* any conversion, so uint64 ids,
    floats like 1e300 and Python ints >= 2**63 are reported, not wrapped or overflowed.
    """
    if isinstance(a, (str, bytes)):
        raise GraphError(f"{what} must be a 1-D array of integers, got the string {a!r}")
    try:
        a = np.asarray(a)
    except (ValueError, TypeError, OverflowError) as exc:
        raise GraphError(f"{what} must be a 1-D array of integers: {exc}") from None
    if a.ndim != 1:
        raise GraphError(f"{what} must be 1-D, got shape {a.shape}")
    if not a.size:
        return np.zeros(0, dtype=np.int64)
    if a.dtype == object:    # e.g. Python ints beyond int64
        if not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in a):
            k = next(k for k, x in enumerate(a)
                     if not isinstance(x, numbers.Integral) or isinstance(x, bool))
            raise GraphError(f"{what} must hold integers, got {type(a[k]).__name__} "
                             f"{a[k]!r} at entry {k}")
        big = [k for k, x in enumerate(a) if not -_INT32_MAX <= x <= _INT32_MAX]
        raise GraphError(f"{what}[{big[0]}] = {a[big[0]]} is beyond 2**31 - 1, the largest "
                         f"node id or parameter index a graph may use; renumber densely")
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer)
                               or np.issubdtype(a.dtype, np.floating)) or a.dtype.kind in "mM":
        raise GraphError(f"{what} must hold integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        bad = np.flatnonzero(~finite | (a != np.round(np.where(finite, a, 0))))
        where = f" (entry {int(bad[0])} is {a[bad[0]].item()!r})" if len(bad) else ""
        raise GraphError(f"{what} must hold integers, got dtype {a.dtype}{where}; "
                         f"convert with .astype(np.int64) if the values are whole numbers")
    if a.dtype.itemsize >= 8 or a.dtype.kind == "u":
        big = np.flatnonzero(a > _INT32_MAX) if a.dtype.kind == "u" else np.flatnonzero(
            (a > _INT32_MAX) | (a < -_INT32_MAX))
        if big.size:
            k = int(big[0])
            raise GraphError(f"{what}[{k}] = {a[k].item()} is beyond 2**31 - 1, the largest "
                             f"node id or parameter index a graph may use; renumber densely")
    return a.astype(np.int64, copy=False)


def _find_cycle(labels, src, dst, depth):
    """Nodes on one cycle among the nodes Kahn's algorithm could not order."""
    stuck = depth < 0
    keep = stuck[src] & stuck[dst]
    sub = nx.DiGraph()
    sub.add_edges_from(zip(src[keep].tolist(), dst[keep].tolist()))
    cycle = nx.find_cycle(sub)
    return [u for u, _ in cycle]


def _build(src, dst, par, inputs, outputs, n_nodes, n_params, labels, weight=None,
           kind=None):
    """Validate integer edge arrays and compile them: the one way into a SharedGraph.

    ``src``, ``dst``, ``par`` are int64 arrays over edges, node ids in ``[0, n_nodes)``;
    ``par[e] == -1`` marks a fixed edge of weight ``weight[e]`` (``weight`` None: no
    fixed edges); ``kind`` is None (every internal node a ReLU) or one kind per node id;
    ``labels`` is None (labels are the ids) or a sequence mapping id -> label.
    Returns the fields of a :class:`SharedGraph`.
    """
    n_edges = src.shape[0]
    if not (dst.shape[0] == n_edges == par.shape[0]):
        raise GraphError(f"src, dst and param must have one entry per edge; got lengths "
                         f"{src.shape[0]}, {dst.shape[0]}, {par.shape[0]}")
    if n_edges:
        low = -1 if weight is not None else 0
        bad = np.flatnonzero(par < low)
        if bad.size:
            e = bad[0]
            hint = ("; -1 marks a fixed edge" if weight is not None else
                    " (to give an edge a fixed weight, set its param to -1 and pass weight=)")
            raise GraphError(f"{_edge_name(labels, src, dst, par, e)}: parameter index "
                             f"{int(par[e])} is out of range: indices must be >= 0{hint}")
    weight = _check_weights(weight, par, n_edges, labels, src, dst)
    kind = _check_kinds(kind, n_nodes, labels)
    used_max = int(par.max()) if n_edges else -1
    if n_params is None:
        n_params = used_max + 1
    elif not isinstance(n_params, numbers.Integral) or isinstance(n_params, bool) or n_params < 0:
        raise GraphError(f"n_params must be a non-negative integer, got {n_params!r}")
    n_params = int(n_params)
    if n_nodes > _INT32_MAX or n_params > _INT32_MAX:
        raise GraphError(f"graphs are limited to 2**31 - 1 nodes and parameters (got "
                         f"n_nodes = {n_nodes}, n_params = {n_params})")
    # memory follows what the graph uses: bound the unused parameters and isolated nodes
    if n_params > 2 * n_edges + MAX_UNUSED:
        n_used = int(np.unique(par[par >= 0]).size) if n_edges else 0
        culprit = (f"the largest parameter index is {used_max}" if n_params == used_max + 1
                   else f"n_params = {n_params} was declared")
        raise GraphError(f"{culprit}, but the {n_edges} edge(s) use only {n_used} distinct "
                         f"parameter(s): more than {MAX_UNUSED} parameters on no edge would "
                         f"only allocate memory; number the parameters densely from 0")
    mentioned = n_edges * 2 + inputs.shape[0] + outputs.shape[0]
    if n_nodes > mentioned + MAX_UNUSED:
        raise GraphError(f"n_nodes = {n_nodes} but the edges, inputs and outputs mention at "
                         f"most {mentioned} node ids: more than {MAX_UNUSED} isolated nodes "
                         f"would only allocate memory; number the nodes densely from 0")
    if n_edges:
        bad = np.flatnonzero(par >= n_params)
        if bad.size:
            e = bad[0]
            raise GraphError(f"{_edge_name(labels, src, dst, par, e)}: parameter index "
                             f"{int(par[e])} is out of range [0, {n_params}); "
                             f"indices must be >= 0 and n_params must exceed the largest")
        for arr, what in ((src, "source"), (dst, "destination")):
            bad = np.flatnonzero((arr < 0) | (arr >= n_nodes))
            if bad.size:
                raise GraphError(f"edge #{int(bad[0])} has unknown {what} node "
                                 f"{int(arr[bad[0]])}: node ids must be in [0, {n_nodes}); "
                                 f"pass n_nodes to declare more nodes")
    for arr, what in ((inputs, "inputs"), (outputs, "outputs")):
        bad = np.flatnonzero((arr < 0) | (arr >= n_nodes))
        if bad.size:
            raise GraphError(f"{what}[{int(bad[0])}] = {int(arr[bad[0]])} is not a node: "
                             f"node ids must be in [0, {n_nodes})")
        uniq, counts = np.unique(arr, return_counts=True)
        if np.any(counts > 1):
            raise GraphError(f"node {_name(labels, uniq[counts > 1][0])} appears more than "
                             f"once in {what}; list each {what[:-1]} node once")
    is_in = np.zeros(n_nodes, dtype=bool)
    is_in[inputs] = True
    is_out = np.zeros(n_nodes, dtype=bool)
    is_out[outputs] = True
    both = np.flatnonzero(is_in & is_out)
    if both.size:
        raise GraphError(f"node {_name(labels, both[0])} is both an input and an output; "
                         f"a node must be one or the other (add an edge to a new output node)")
    if n_edges:
        bad = np.flatnonzero(is_in[dst])
        if bad.size:
            raise GraphError(f"{_edge_name(labels, src, dst, par, bad[0], weight)} goes into input "
                             f"node {_name(labels, dst[bad[0]])}: inputs must be sources")
        bad = np.flatnonzero(is_out[src])
        if bad.size:
            raise GraphError(f"{_edge_name(labels, src, dst, par, bad[0], weight)} leaves output "
                             f"node {_name(labels, src[bad[0]])}: outputs must be sinks")
    depth = engine.longest_path_depth(n_nodes, src, dst)
    if n_nodes and depth.min() < 0:
        cycle = _find_cycle(labels, src, dst, depth)
        if len(cycle) <= CYCLE_SHOWN:
            names = " -> ".join(_name(labels, v) for v in cycle + cycle[:1])
        else:
            half = CYCLE_SHOWN // 2
            names = (" -> ".join(_name(labels, v) for v in cycle[:half]) + " -> ... -> "
                     + " -> ".join(_name(labels, v) for v in cycle[-half:] + cycle[:1])
                     + f" ({len(cycle)} nodes in the cycle, {len(cycle) - 2 * half} not "
                       f"shown)")
        raise GraphError(f"the graph has a cycle: {names}; a network must be a DAG "
                         f"(unroll recurrences over time)")
    is_fixed = par < 0
    if kind is not None:
        kind[inputs] = KIND_LINEAR
        kind[outputs] = KIND_LINEAR
        if n_edges:   # a max neuron takes the max of its inputs: edges of weight 1 only
            bad = np.flatnonzero((kind[dst] == KIND_MAX)
                                 & (~is_fixed | (np.where(is_fixed, weight if weight is not
                                                          None else 0.0, 0.0) != 1.0)))
            if bad.size:
                e = int(bad[0])
                raise GraphError(f"{_edge_name(labels, src, dst, par, e, weight)} goes into "
                                 f"max node {_name(labels, dst[e])}, but the edges into a "
                                 f"max node must all be fixed(1.0) (a max-pooling neuron "
                                 f"takes the max of its inputs); put the weight on an edge "
                                 f"before it, or make the node 'linear' or 'relu'")
    fixed_values = np.zeros(0)
    if is_fixed.any():
        fixed_values, which = np.unique(weight[is_fixed], return_inverse=True)
        if n_params + fixed_values.size > _INT32_MAX:
            raise GraphError(f"{n_params} parameters and {fixed_values.size} distinct fixed "
                             f"weights exceed 2**31 - 1")
        par = par.copy()
        par[is_fixed] = n_params + which.reshape(-1)
    order = np.argsort(depth, kind="stable")  # topological: depth increases along edges
    pos = np.empty(n_nodes, dtype=np.int64)
    pos[order] = np.arange(n_nodes)
    compiled = compile_arrays(n_nodes, src, dst, par, pos, pos[inputs], pos[outputs],
                              depth[order], n_params,
                              kind=None if kind is None else kind[order],
                              fixed=fixed_values)
    return compiled, order


# --------------------------------------------------------------------------- the graph


class SharedGraph:
    r"""An immutable shared-weight network :math:`\mathcal{N}(G, \pi, p)`.

    Build one with :meth:`from_edges`, :meth:`from_arrays` or :meth:`from_networkx`; all
    three validate the same way and raise :class:`~pathgeom.GraphError` on bad input.
    Nodes are stored in a topological order (sorted by longest-path depth from the
    sources, ties in the order the nodes were given); :attr:`nodes` lists the labels in
    that order, and every per-node array pathgeom returns uses it.

    Examples
    --------
    The chain ``in -> a -> out`` whose two edges share one parameter:

    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("in", "a", 0), ("a", "out", 0)],
    ...                                     inputs=["in"], outputs=["out"])
    >>> g
    SharedGraph(n_nodes=3, n_edges=2, n_params=1, n_inputs=1, n_outputs=1)
    >>> g.forward([2.0], [3.0])     # relu(2 * 3) * 2
    array([12.])
    >>> g.backward([2.0], [3.0], [1.0])   # d(p**2 x)/dp = 2 p x
    array([12.])
    """

    __slots__ = ("_c", "_order", "_labels", "_index", "_nodes", "_cache")

    def __init__(self, *args, **kwargs):
        raise TypeError("build a SharedGraph with SharedGraph.from_edges, "
                        "SharedGraph.from_arrays or SharedGraph.from_networkx")

    @classmethod
    def _make(cls, compiled, order, labels):
        self = object.__new__(cls)
        object.__setattr__(self, "_c", compiled)
        object.__setattr__(self, "_order", order)      # position -> original id
        object.__setattr__(self, "_labels", labels)    # None, or id -> label
        object.__setattr__(self, "_index", None)
        object.__setattr__(self, "_nodes", None)
        object.__setattr__(self, "_cache", {})
        return self

    def __setattr__(self, name, value):
        raise AttributeError("SharedGraph is immutable")

    def __reduce__(self):
        return (_unpickle, (tuple(self._c), self._order, self._labels))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_edges(cls, edges, inputs, outputs, n_params=None, node_kinds=None):
        r"""Build from an iterable of ``(u, v, param_index)`` triples.

        Parameters
        ----------
        edges : iterable of (hashable, hashable, int or Fixed)
            One triple per edge :math:`u \to v` with :math:`\pi(u \to v) =` ``param_index``,
            or ``(u, v, pathgeom.fixed(w))`` for an edge of fixed weight :math:`w`.
            Repeated triples are parallel edges, each counted separately.
        inputs, outputs : sequence of hashable
            The input and output nodes, in the order of the input vector ``x`` and the
            output vector ``y``.  They may touch no edge.
        n_params : int, optional
            Length of the parameter vector ``p``; defaults to one more than the largest
            index used.  Parameters on no edge are allowed (their gradients and κ are 0).
        node_kinds : mapping of node label to str, optional
            The activation of internal nodes: ``"relu"`` (the default), ``"linear"`` (an
            identity neuron) or ``"max"`` (a max-pooling neuron, :math:`h_v = \max_{u \to v}
            h_u`, whose incoming edges must all be ``fixed(1.0)``).  Outputs are linear and
            inputs have no activation: they may only be given ``"linear"``.

        Returns
        -------
        SharedGraph

        Raises
        ------
        GraphError
            On a cycle (the message lists its nodes), an edge into an input or out of an
            output, a node that is both, repeated inputs or outputs, a parameter index
            that is not an integer, is negative or is >= ``n_params``, an unknown node kind
            or a kind for an unknown node, or an edge into a max node that is not
            ``fixed(1.0)``.
        TypeError, ValueError
            A fixed weight that is not a finite real number (from :func:`fixed`).

        Examples
        --------
        >>> import pathgeom
        >>> g = pathgeom.SharedGraph.from_edges(
        ...     [("x", "h", 0), ("x", "h", 0), ("h", "y", 1)], inputs=["x"], outputs=["y"])
        >>> g.n_edges, g.n_params, g.nodes
        (3, 2, ('x', 'h', 'y'))
        """
        inputs = _label_list(inputs, "inputs")
        outputs = _label_list(outputs, "outputs")
        index = {}
        labels = []

        def node_id(label, where):
            try:
                i = index.get(label)
            except TypeError:
                raise GraphError(f"node label {label!r} in {where} is not hashable") from None
            if i is None:
                i = index[label] = len(labels)
                labels.append(label)
            return i

        for x in inputs:
            node_id(x, "inputs")
        src, dst, par, weight = [], [], [], []
        for k, edge in enumerate(edges):
            try:
                u, v, i = edge
            except (TypeError, ValueError):
                raise GraphError(f"edge #{k} is {edge!r}; each edge must be a triple "
                                 f"(u, v, param_index) or (u, v, pathgeom.fixed(w))") from None
            if isinstance(i, Fixed):
                src.append(node_id(u, f"edge #{k}"))
                dst.append(node_id(v, f"edge #{k}"))
                par.append(-1)
                weight.append(i.value)
                continue
            if not isinstance(i, numbers.Integral) or isinstance(i, bool):
                raise GraphError(f"edge #{k} ({u!r} -> {v!r}) has parameter index {i!r} "
                                 f"of type {type(i).__name__}; indices must be integers "
                                 f"(or pathgeom.fixed(w) for a fixed weight)")
            if not -_INT32_MAX < i < _INT32_MAX:   # (negative ones are refused later)
                raise GraphError(f"edge #{k} ({u!r} -> {v!r}) has parameter index {i}, "
                                 f"beyond 2**31 - 2, the largest a graph may use; number "
                                 f"the parameters densely from 0")
            if i < 0:
                raise GraphError(f"edge #{k} ({u!r} -> {v!r}, param {i}): parameter index "
                                 f"{i} is out of range: indices must be >= 0 (use "
                                 f"pathgeom.fixed(w) for a fixed weight)")
            src.append(node_id(u, f"edge #{k}"))
            dst.append(node_id(v, f"edge #{k}"))
            par.append(int(i))
            weight.append(0.0)
        for y in outputs:
            node_id(y, "outputs")
        kind = _kinds_from_mapping(node_kinds, index, labels, inputs, outputs)
        ids = lambda seq: np.array([index[x] for x in seq], dtype=np.int64)
        par = np.array(par, dtype=np.int64)
        compiled, order = _build(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64),
                                 par, ids(inputs), ids(outputs), len(labels), n_params, labels,
                                 weight=np.array(weight) if (par < 0).any() else None,
                                 kind=kind)
        return cls._make(compiled, order, labels)

    @classmethod
    def from_arrays(cls, src, dst, param, inputs, outputs, n_nodes=None, n_params=None,
                    weight=None, kind=None):
        r"""Build from integer arrays, node ids ``0..n_nodes-1``: vectorised, for large graphs.

        Parameters
        ----------
        src, dst, param : array_like of int, shape (n_edges,)
            Edge :math:`k` is ``src[k] -> dst[k]`` on parameter ``param[k]``.
        inputs, outputs : array_like of int
            Input and output node ids, in the order of ``x`` and ``y``.
        n_nodes : int, optional
            Number of nodes; defaults to one more than the largest id mentioned.  Ids that
            touch no edge are isolated nodes.
        n_params : int, optional
            As in :meth:`from_edges`.
        weight : array_like of float, shape (n_edges,), optional
            Fixed weights: edge ``k`` with ``param[k] == -1`` is a fixed edge of weight
            ``weight[k]`` (finite); other entries are not read.
        kind : array_like, shape (n_nodes,), optional
            The kind of each node id: a name of :data:`NODE_KINDS` or its code in
            :data:`KIND_CODES` (``{"linear": 0, "relu": 1, "max": 2}``).  Entries at inputs
            and outputs are not read (inputs carry ``x``, outputs are linear).  Default:
            every internal node a ReLU.

        Returns
        -------
        SharedGraph
            Its labels are the integer ids.

        Examples
        --------
        >>> import numpy as np, pathgeom
        >>> g = pathgeom.SharedGraph.from_arrays(src=[0, 1], dst=[1, 2], param=[0, 0],
        ...                                      inputs=[0], outputs=[2])
        >>> pathgeom.gamma2(g, np.array([3.0]))  # one path, weights 3 and 3: 3**2 * 3**2
        81.0
        """
        src = _check_index_array(src, "src")
        dst = _check_index_array(dst, "dst")
        par = _check_index_array(param, "param")
        inputs = _check_index_array(inputs, "inputs")
        outputs = _check_index_array(outputs, "outputs")
        if n_nodes is None:
            n_nodes = 1 + max([int(a.max()) for a in (src, dst, inputs, outputs) if a.size],
                              default=-1)
        elif not isinstance(n_nodes, numbers.Integral) or isinstance(n_nodes, bool) or n_nodes < 0:
            raise GraphError(f"n_nodes must be a non-negative integer, got {n_nodes!r}")
        if n_params is not None and (not isinstance(n_params, numbers.Integral)
                                     or isinstance(n_params, bool) or n_params < 0):
            raise GraphError(f"n_params must be a non-negative integer, got {n_params!r}")
        compiled, order = _build(src, dst, par, inputs, outputs, int(n_nodes), n_params, None,
                                 weight=weight, kind=kind)
        return cls._make(compiled, order, None)

    @classmethod
    def from_networkx(cls, G, inputs=None, outputs=None, param="param"):
        r"""Build from a networkx ``DiGraph`` or ``MultiDiGraph``.

        Each edge must carry its parameter index, or a :func:`fixed` weight, in the
        attribute named ``param``; a node's ``"kind"`` attribute, when present, is its kind
        (see :meth:`from_edges`).  Every node of ``G`` becomes a node (isolated ones
        included).  ``inputs`` / ``outputs``
        default to ``G.graph["inputs"]`` / ``G.graph["outputs"]`` and ``n_params`` is taken
        from ``G.graph["n_params"]`` when present, which is what :meth:`to_networkx`
        writes, so the round trip is exact.

        Examples
        --------
        >>> import networkx as nx, pathgeom
        >>> G = nx.MultiDiGraph()
        >>> G.add_edge("x", "y", param=0)
        0
        >>> g = pathgeom.SharedGraph.from_networkx(G, inputs=["x"], outputs=["y"])
        >>> pathgeom.SharedGraph.from_networkx(g.to_networkx()) == g
        True
        """
        if not isinstance(G, nx.DiGraph):
            raise GraphError(f"expected a networkx DiGraph or MultiDiGraph, got "
                             f"{type(G).__name__}; undirected graphs have no edge direction")
        for key, given in (("inputs", inputs), ("outputs", outputs)):
            if given is None and key not in G.graph:
                raise GraphError(f"pass {key}=... (or set G.graph[{key!r}])")
        inputs = _label_list(G.graph["inputs"] if inputs is None else inputs, "inputs")
        outputs = _label_list(G.graph["outputs"] if outputs is None else outputs, "outputs")
        labels = list(G.nodes)
        index = {x: k for k, x in enumerate(labels)}
        for seq, what in ((inputs, "inputs"), (outputs, "outputs")):
            for x in seq:
                if x not in index:
                    raise GraphError(f"{what} names node {x!r}, which is not in the graph")
        src, dst, par, weight = [], [], [], []
        for k, (u, v, data) in enumerate(G.edges(data=True)):
            i = data.get(param)
            if i is None:
                raise GraphError(f"edge {u!r} -> {v!r} has no {param!r} attribute; set the "
                                 f"parameter index of every edge")
            if isinstance(i, Fixed):
                src.append(index[u])
                dst.append(index[v])
                par.append(-1)
                weight.append(i.value)
                continue
            if not isinstance(i, numbers.Integral) or isinstance(i, bool):
                raise GraphError(f"edge {u!r} -> {v!r} has {param}={i!r}; parameter indices "
                                 f"must be integers")
            if i >= _INT32_MAX:
                raise GraphError(f"edge {u!r} -> {v!r} has {param}={i}, beyond 2**31 - 2, "
                                 f"the largest a graph may use; number the parameters densely")
            if i < 0:
                raise GraphError(f"edge {u!r} -> {v!r} has {param}={i}: parameter indices "
                                 f"must be >= 0 (use pathgeom.fixed(w) for a fixed weight)")
            src.append(index[u])
            dst.append(index[v])
            par.append(int(i))
            weight.append(0.0)
        kinds = {x: d["kind"] for x, d in G.nodes(data=True)
                 if d.get("kind") is not None and x not in set(inputs) | set(outputs)}
        kind = _kinds_from_mapping(kinds, index, labels, inputs, outputs)
        ids = lambda seq: np.array([index[x] for x in seq], dtype=np.int64)
        par = np.array(par, dtype=np.int64)
        compiled, order = _build(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64),
                                 par, ids(inputs), ids(outputs), len(labels),
                                 G.graph.get("n_params"), labels,
                                 weight=np.array(weight) if (par < 0).any() else None,
                                 kind=kind)
        return cls._make(compiled, order, labels)

    def to_networkx(self):
        """A ``networkx.MultiDiGraph`` with the parameter index (or the :class:`Fixed`
        weight) in each edge's ``"param"`` and each node's kind in its ``"kind"``.

        Nodes are added in :attr:`nodes` order; ``G.graph`` holds ``inputs``, ``outputs``
        and ``n_params``, so ``SharedGraph.from_networkx(g.to_networkx()) == g``.
        """
        G = nx.MultiDiGraph(inputs=list(self.inputs), outputs=list(self.outputs),
                            n_params=self.n_params)
        nodes = self.nodes
        G.add_nodes_from((x, {"kind": k}) for x, k in zip(nodes, self.kinds))
        src, dst, par = self.edges()
        fw = self.fixed_weights()
        G.add_edges_from((nodes[u], nodes[v], {"param": i if i >= 0 else Fixed(w)})
                         for u, v, i, w in zip(src.tolist(), dst.tolist(), par.tolist(),
                                               fw.tolist()))
        return G

    # ------------------------------------------------------------------ description

    @property
    def n_nodes(self):
        """Number of nodes."""
        return int(self._c.kind.shape[0])

    @property
    def n_edges(self):
        """Number of edges (parallel edges counted separately)."""
        return int(self._c.src.shape[0])

    @property
    def n_params(self):
        """Length m of the parameter vector p (fixed weights are not parameters)."""
        return self._c.n_params

    @property
    def n_fixed_edges(self):
        """Number of edges of fixed weight (:func:`fixed`)."""
        return int(np.count_nonzero(self._c.par >= self._c.n_params))

    @property
    def kinds(self):
        """Each node's kind, in :attr:`nodes` order: ``"input"``, ``"output"``, or for an
        internal node ``"relu"``, ``"linear"`` or ``"max"``."""
        out = self._cache.get("kinds")
        if out is None:
            c = self._c
            names = [_KIND_NAMES[k] for k in c.kind.tolist()]
            for v in c.inputs.tolist():
                names[v] = "input"
            for v in c.outputs.tolist():
                names[v] = "output"
            out = self._cache["kinds"] = tuple(names)
        return out

    @property
    def n_inputs(self):
        """Number of input nodes (width of X)."""
        return int(self._c.inputs.shape[0])

    @property
    def n_outputs(self):
        """Number of output nodes (width of the forward result)."""
        return int(self._c.outputs.shape[0])

    @property
    def nodes(self):
        """Node labels in the engine's topological order, as a tuple."""
        if self._nodes is None:
            if self._labels is None:
                nodes = tuple(self._order.tolist())
            else:
                nodes = tuple(self._labels[i] for i in self._order.tolist())
            object.__setattr__(self, "_nodes", nodes)
        return self._nodes

    @property
    def inputs(self):
        """Input node labels, in input-vector order."""
        nodes = self.nodes
        return tuple(nodes[i] for i in self._c.inputs.tolist())

    @property
    def outputs(self):
        """Output node labels, in output-vector order."""
        nodes = self.nodes
        return tuple(nodes[i] for i in self._c.outputs.tolist())

    @property
    def compiled(self):
        """The compiled record (:class:`pathgeom._compiled.CompiledGraph`): the graph's flat
        arrays in topological order -- incoming CSR (``indptr``, ``src``, ``par``), outgoing
        CSR (``optr``, ``dst``, ``opar``), ``kind`` (each node's activation code),
        ``inputs``, ``outputs`` (positions), ``depth``, ``live``, ``reached``, the blocked
        edge groups of the squared-network sweeps (``blk_ptr``, ``blk_node``,
        ``blk_param``, ``blk_src``, ``blk_key``; empty unless the graph has many parameters
        spread at random over wide depth levels), the distinct fixed weights ``fixed``
        (pseudo-parameters ``n_params + j`` in ``par``), and the runs of edges
        (``run_ptr``, ``run_src``, ``run_par``, ``run_len``; empty unless the incoming
        edges come in runs of consecutive sources and parameters) -- every array
        read-only.  What the engine and the exact reference read; positions are
        those of :attr:`nodes`."""
        return self._c

    @property
    def depth(self):
        """Longest-path depth of each node from the sources (read-only int64, :attr:`nodes` order)."""
        return self._c.depth

    def index(self, label):
        """Position of node ``label`` in :attr:`nodes` (and in every per-node array)."""
        if self._index is None:
            object.__setattr__(self, "_index", {x: k for k, x in enumerate(self.nodes)})
        try:
            return self._index[label]
        except KeyError:
            raise KeyError(f"{label!r} is not a node of this graph") from None

    def edges(self):
        """The edges as three int64 arrays ``(src, dst, param)`` of node *positions*.

        Sorted by (dst, src, param); ``src < dst`` always holds.  ``param`` is -1 on edges
        of fixed weight (their weights: :meth:`fixed_weights`).
        """
        src, dst, par = self._edges_ext()
        par = par.copy()
        par[par >= self.n_params] = -1
        return src, dst, par

    def _edges_ext(self):
        """:meth:`edges` with ``param`` indexing the extended weight vector (the real
        parameters, then the distinct fixed weights, ``compiled.fixed``)."""
        c = self._c
        dst = np.repeat(np.arange(self.n_nodes, dtype=np.int64), np.diff(c.indptr))
        return c.src.astype(np.int64), dst, c.par.astype(np.int64)

    def fixed_weights(self):
        """Per edge (in :meth:`edges` order), its fixed weight, or nan on parameter edges."""
        c = self._c
        ext = np.concatenate([np.full(self.n_params, np.nan), c.fixed])
        return ext[c.par]

    def edge_weights(self, p):
        """Per edge (in :meth:`edges` order), its weight: ``p[param]`` or its fixed weight.

        Examples
        --------
        >>> import pathgeom
        >>> g = pathgeom.SharedGraph.from_edges(
        ...     [("x", "y", 0), ("x", "y", pathgeom.fixed(-0.5))], ["x"], ["y"])
        >>> g.edge_weights([3.0])
        array([ 3. , -0.5])
        """
        p = as_params(p, self.n_params)
        return engine.extended(self._c, p)[self._c.par]

    def param_edge_counts(self):
        r""":math:`|E_i|`, the number of edges on each parameter (int64, length ``n_params``)."""
        return np.bincount(self._c.par, minlength=self._c.n_ext)[:self.n_params].astype(
            np.int64)

    def __repr__(self):
        return (f"SharedGraph(n_nodes={self.n_nodes}, n_edges={self.n_edges}, "
                f"n_params={self.n_params}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs})")

    def __eq__(self, other):
        if not isinstance(other, SharedGraph):
            return NotImplemented
        a, b = self._c, other._c
        return (self.n_params == other.n_params and self.nodes == other.nodes
                and all(np.array_equal(x, y) for x, y in
                        ((a.indptr, b.indptr), (a.src, b.src), (a.par, b.par),
                         (a.inputs, b.inputs), (a.outputs, b.outputs), (a.kind, b.kind),
                         (a.fixed, b.fixed))))

    def __hash__(self):
        return hash((self.n_nodes, self.n_edges, self.n_params, self.n_inputs, self.n_outputs))

    # ------------------------------------------------------------------ passes

    def _forward_all(self, p, X):
        """All node values ``H`` (n_nodes, B) for validated ``p`` and 2-D ``X``."""
        c = self._c
        H = np.zeros((self.n_nodes, X.shape[0]))
        H[c.inputs] = X.T
        sel = engine.forward(c, p, H)
        return H, sel

    def _raise_overflow(self, H, what):
        v = first_nonfinite_row(H)
        raise PathOverflowError(
            f"{what} overflowed float64: node {self.nodes[v]!r} (position {v}) is the first "
            f"whose value is not finite; scale the weights down (see PathOverflowError)")

    def forward(self, p, X):
        r"""Network outputs :math:`f_p(x)` (paper Table 1): ReLU inside, linear outputs.

        Internal nodes of kind ``"linear"`` pass their sum :math:`\sum_{u \to v} w h_u`
        unchanged and ``"max"`` nodes take :math:`\max_{u \to v} h_u` (see :attr:`kinds`).

        Parameters
        ----------
        p : array_like, shape (n_params,)
            Finite parameter vector.
        X : array_like, shape (B, n_inputs) or (n_inputs,)
            Inputs, columns in :attr:`inputs` order.

        Returns
        -------
        ndarray, shape (B, n_outputs) or (n_outputs,)
            Columns in :attr:`outputs` order; 1-D when ``X`` is 1-D.

        Raises
        ------
        ValueError
            Wrong shape or non-finite ``p`` or ``X``.
        PathOverflowError
            A node value exceeds the float64 range.
        """
        p = as_params(p, self.n_params)
        X, squeeze = as_batch(X, self.n_inputs, "X", "n_inputs")
        H, _ = self._forward_all(p, X)
        Y = H[self._c.outputs].T.copy()
        if not np.isfinite(Y).all():
            self._raise_overflow(H, "the forward pass")
        return Y[0] if squeeze else Y

    def backward(self, p, X, dY):
        r"""Vector-Jacobian product :math:`\sum_b dY_b^\top \partial f_p(x_b)/\partial p`.

        With :math:`z_v` the pre-activation of node :math:`v` and :math:`L` any loss with
        :math:`\partial L/\partial y =` ``dY``,

        .. math::

            \frac{\partial L}{\partial p_i}
              = \sum_b \sum_{(u \to v) \in E_i} \frac{\partial L}{\partial z_v} h_u ,

        so edges sharing a parameter add up.  ReLU's derivative at 0 is taken as 0.  A
        max node passes its gradient to one incoming edge: the first maximal one, sources
        taken in :attr:`nodes` order (PyTorch's max pooling picks the first maximum in the
        window's scan order, so number a pooled map's nodes in that order).  Fixed edges
        have no gradient.

        Parameters
        ----------
        p : array_like, shape (n_params,)
        X : array_like, shape (B, n_inputs) or (n_inputs,)
        dY : array_like, shape (B, n_outputs) or (n_outputs,)
            Gradient of the loss with respect to the outputs, same leading shape as ``X``.

        Returns
        -------
        ndarray, shape (n_params,)
            Summed over the batch.
        """
        p = as_params(p, self.n_params)
        X, squeeze = as_batch(X, self.n_inputs, "X", "n_inputs")
        dY, squeeze_y = as_batch(dY, self.n_outputs, "dY", "n_outputs")
        if dY.shape[0] != X.shape[0] or squeeze != squeeze_y:
            raise ValueError(f"dY has shape {dY.shape if not squeeze_y else dY.shape[1:]} but "
                             f"X has {X.shape[0] if not squeeze else 'no'} batch rows; dY must "
                             f"be (B, n_outputs) for X of shape (B, n_inputs)")
        c = self._c
        H, sel = self._forward_all(p, X)
        H[~c.live] = 0.0  # nodes that reach no output get no gradient; keeps inf*0 out
        if not np.isfinite(H).all():
            self._raise_overflow(H, "the forward pass")
        G = np.zeros_like(H)
        G[c.outputs] = dY.T
        grad = np.zeros(self.n_params)
        engine.backward(c, p, H, G, grad, sel)
        if not np.isfinite(grad).all():
            bad = int(np.flatnonzero(~np.isfinite(grad))[0])
            raise PathOverflowError(f"the gradient of parameter {bad} overflowed float64; "
                                    f"scale the weights or dY down")
        return grad


def _unpickle(fields, order, labels):
    arrays = [_frozen_copy(a) if isinstance(a, np.ndarray) else a for a in fields]
    return SharedGraph._make(CompiledGraph(*arrays), order, labels)


def _frozen_copy(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _kinds_from_mapping(node_kinds, index, labels, inputs, outputs):
    """``node_kinds`` ({label: kind name}) as a code per node id, or None when empty."""
    if node_kinds is None:
        return None
    if not hasattr(node_kinds, "items"):
        raise GraphError(f"node_kinds must map node labels to kinds, got "
                         f"{type(node_kinds).__name__}; e.g. {{'h': 'linear'}}")
    if not node_kinds:
        return None
    codes = np.full(len(labels), KIND_RELU, dtype=np.uint8)
    ins, outs = set(inputs), set(outputs)
    for label, k in node_kinds.items():
        try:
            i = index.get(label)
        except TypeError:
            raise GraphError(f"node_kinds names {label!r}, which is not hashable") from None
        if i is None:
            raise GraphError(f"node_kinds names node {label!r}, which is not in the graph")
        if not isinstance(k, str) or k not in KIND_CODES:
            raise GraphError(f"node {label!r} has unknown kind {k!r}; the kinds are "
                             f"{', '.join(map(repr, NODE_KINDS))}")
        if (label in ins or label in outs) and k != "linear":
            what = "an input" if label in ins else "an output (outputs are linear)"
            raise GraphError(f"node {label!r} is {what} and cannot be {k!r}; only internal "
                             f"nodes have a kind")
        codes[i] = KIND_CODES[k]
    return codes


def _label_list(seq, what):
    if isinstance(seq, (str, bytes)):
        raise GraphError(f"{what} must be a sequence of node labels, got the string {seq!r}; "
                         f"wrap a single label in a list")
    try:
        return list(seq)
    except TypeError:
        raise GraphError(f"{what} must be a sequence of node labels, got {seq!r}") from None
