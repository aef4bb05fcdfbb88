r"""Shared-weight networks :math:`\mathcal{N}(G, \pi, p)` as immutable graphs.

A network is a DAG :math:`G = (V, E)` with ordered input nodes (sources) and output nodes
(sinks), and a map :math:`\pi : E \to \{0, \dots, m-1\}` from edges to parameters; edge
:math:`e` carries the weight :math:`w_e = p_{\pi(e)}`.  Weight sharing is many edges on one
parameter, :math:`E_i = \{e : \pi(e) = i\}`.  The function computed (paper, Table 1) is

.. math::

    h_v = x_v \ (v \in V_{in}), \qquad
    h_v = \mathrm{relu}\Big(\sum_{u \to v} w_{u \to v} h_u\Big) \ (v \text{ internal}), \qquad
    h_v = \sum_{u \to v} w_{u \to v} h_u \ (v \in V_{out}).

Every construction path (edge lists, integer arrays, networkx graphs) goes through one
validator, :func:`_build`, which raises :class:`~pathgeom.GraphError` naming the culprit.
The validated graph is compiled once into flat CSR arrays in topological order
(:mod:`pathgeom._compiled`) that the numba kernels read.
"""

import numbers

import networkx as nx
import numpy as np

from . import engine
from ._compiled import CompiledGraph, compile_arrays
from ._errors import GraphError, PathOverflowError
from ._validation import as_batch, as_params, first_nonfinite_row

__all__ = ["SharedGraph"]

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


def _edge_name(labels, src, dst, par, e):
    return (f"edge #{int(e)} ({_name(labels, src[e])} -> {_name(labels, dst[e])}, "
            f"param {int(par[e])})")


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


def _build(src, dst, par, inputs, outputs, n_nodes, n_params, labels):
    """Validate integer edge arrays and compile them: the one way into a SharedGraph.

    ``src``, ``dst``, ``par`` are int64 arrays over edges, node ids in ``[0, n_nodes)``;
    ``labels`` is None (labels are the ids) or a sequence mapping id -> label.
    Returns the fields of a :class:`SharedGraph`.
    """
    n_edges = src.shape[0]
    if not (dst.shape[0] == n_edges == par.shape[0]):
        raise GraphError(f"src, dst and param must have one entry per edge; got lengths "
                         f"{src.shape[0]}, {dst.shape[0]}, {par.shape[0]}")
    if n_edges:
        bad = np.flatnonzero(par < 0)
        if bad.size:
            e = bad[0]
            raise GraphError(f"{_edge_name(labels, src, dst, par, e)}: parameter index "
                             f"{int(par[e])} is out of range: indices must be >= 0")
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
        n_used = int(np.unique(par).size) if n_edges else 0
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
            raise GraphError(f"{_edge_name(labels, src, dst, par, bad[0])} goes into input "
                             f"node {_name(labels, dst[bad[0]])}: inputs must be sources")
        bad = np.flatnonzero(is_out[src])
        if bad.size:
            raise GraphError(f"{_edge_name(labels, src, dst, par, bad[0])} leaves output "
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
    order = np.argsort(depth, kind="stable")  # topological: depth increases along edges
    pos = np.empty(n_nodes, dtype=np.int64)
    pos[order] = np.arange(n_nodes)
    compiled = compile_arrays(n_nodes, src, dst, par, pos, pos[inputs], pos[outputs],
                              depth[order], n_params)
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
    def from_edges(cls, edges, inputs, outputs, n_params=None):
        r"""Build from an iterable of ``(u, v, param_index)`` triples.

        Parameters
        ----------
        edges : iterable of (hashable, hashable, int)
            One triple per edge :math:`u \to v` with :math:`\pi(u \to v) =` ``param_index``.
            Repeated triples are parallel edges, each counted separately.
        inputs, outputs : sequence of hashable
            The input and output nodes, in the order of the input vector ``x`` and the
            output vector ``y``.  They may touch no edge.
        n_params : int, optional
            Length of the parameter vector ``p``; defaults to one more than the largest
            index used.  Parameters on no edge are allowed (their gradients and κ are 0).

        Returns
        -------
        SharedGraph

        Raises
        ------
        GraphError
            On a cycle (the message lists its nodes), an edge into an input or out of an
            output, a node that is both, repeated inputs or outputs, a parameter index
            that is not an integer, is negative or is >= ``n_params``.

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
        src, dst, par = [], [], []
        for k, edge in enumerate(edges):
            try:
                u, v, i = edge
            except (TypeError, ValueError):
                raise GraphError(f"edge #{k} is {edge!r}; each edge must be a triple "
                                 f"(u, v, param_index)") from None
            if not isinstance(i, numbers.Integral) or isinstance(i, bool):
                raise GraphError(f"edge #{k} ({u!r} -> {v!r}) has parameter index {i!r} "
                                 f"of type {type(i).__name__}; indices must be integers")
            if not -_INT32_MAX < i < _INT32_MAX:   # (negative ones are refused later)
                raise GraphError(f"edge #{k} ({u!r} -> {v!r}) has parameter index {i}, "
                                 f"beyond 2**31 - 2, the largest a graph may use; number "
                                 f"the parameters densely from 0")
            src.append(node_id(u, f"edge #{k}"))
            dst.append(node_id(v, f"edge #{k}"))
            par.append(int(i))
        for y in outputs:
            node_id(y, "outputs")
        ids = lambda seq: np.array([index[x] for x in seq], dtype=np.int64)
        compiled, order = _build(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64),
                                 np.array(par, dtype=np.int64), ids(inputs), ids(outputs),
                                 len(labels), n_params, labels)
        return cls._make(compiled, order, labels)

    @classmethod
    def from_arrays(cls, src, dst, param, inputs, outputs, n_nodes=None, n_params=None):
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
        compiled, order = _build(src, dst, par, inputs, outputs, int(n_nodes), n_params, None)
        return cls._make(compiled, order, None)

    @classmethod
    def from_networkx(cls, G, inputs=None, outputs=None, param="param"):
        r"""Build from a networkx ``DiGraph`` or ``MultiDiGraph``.

        Each edge must carry its parameter index in the attribute named ``param``.  Every
        node of ``G`` becomes a node (isolated ones included).  ``inputs`` / ``outputs``
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
        src, dst, par = [], [], []
        for k, (u, v, data) in enumerate(G.edges(data=True)):
            i = data.get(param)
            if i is None:
                raise GraphError(f"edge {u!r} -> {v!r} has no {param!r} attribute; set the "
                                 f"parameter index of every edge")
            if not isinstance(i, numbers.Integral) or isinstance(i, bool):
                raise GraphError(f"edge {u!r} -> {v!r} has {param}={i!r}; parameter indices "
                                 f"must be integers")
            if i >= _INT32_MAX:
                raise GraphError(f"edge {u!r} -> {v!r} has {param}={i}, beyond 2**31 - 2, "
                                 f"the largest a graph may use; number the parameters densely")
            src.append(index[u])
            dst.append(index[v])
            par.append(int(i))
        ids = lambda seq: np.array([index[x] for x in seq], dtype=np.int64)
        compiled, order = _build(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64),
                                 np.array(par, dtype=np.int64), ids(inputs), ids(outputs),
                                 len(labels), G.graph.get("n_params"), labels)
        return cls._make(compiled, order, labels)

    def to_networkx(self):
        """A ``networkx.MultiDiGraph`` with the parameter index in each edge's ``"param"``.

        Nodes are added in :attr:`nodes` order; ``G.graph`` holds ``inputs``, ``outputs``
        and ``n_params``, so ``SharedGraph.from_networkx(g.to_networkx()) == g``.
        """
        G = nx.MultiDiGraph(inputs=list(self.inputs), outputs=list(self.outputs),
                            n_params=self.n_params)
        nodes = self.nodes
        G.add_nodes_from(nodes)
        src, dst, par = self.edges()
        G.add_edges_from((nodes[u], nodes[v], {"param": i})
                         for u, v, i in zip(src.tolist(), dst.tolist(), par.tolist()))
        return G

    # ------------------------------------------------------------------ description

    @property
    def n_nodes(self):
        """Number of nodes."""
        return int(self._c.relu.shape[0])

    @property
    def n_edges(self):
        """Number of edges (parallel edges counted separately)."""
        return int(self._c.src.shape[0])

    @property
    def n_params(self):
        """Length m of the parameter vector p."""
        return self._c.n_params

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
        CSR (``optr``, ``dst``, ``opar``), ``relu``, ``inputs``, ``outputs`` (positions),
        ``depth``, ``live``, ``reached``, and the blocked edge groups of the squared-network
        sweeps (``blk_ptr``, ``blk_node``, ``blk_param``, ``blk_src``, ``blk_key``; empty
        unless the graph has many parameters spread at random over wide depth levels) --
        every array read-only.  What the engine and the exact reference read; positions are
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

        Sorted by (dst, src, param); ``src < dst`` always holds.
        """
        c = self._c
        dst = np.repeat(np.arange(self.n_nodes, dtype=np.int64), np.diff(c.indptr))
        return c.src.astype(np.int64), dst, c.par.astype(np.int64)

    def param_edge_counts(self):
        r""":math:`|E_i|`, the number of edges on each parameter (int64, length ``n_params``)."""
        return np.bincount(self._c.par, minlength=self.n_params).astype(np.int64)

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
                         (a.inputs, b.inputs), (a.outputs, b.outputs))))

    def __hash__(self):
        return hash((self.n_nodes, self.n_edges, self.n_params, self.n_inputs, self.n_outputs))

    # ------------------------------------------------------------------ passes

    def _forward_all(self, p, X):
        """All node values ``H`` (n_nodes, B) for validated ``p`` and 2-D ``X``."""
        c = self._c
        H = np.zeros((self.n_nodes, X.shape[0]))
        H[c.inputs] = X.T
        engine.forward(c, p, H)
        return H

    def _raise_overflow(self, H, what):
        v = first_nonfinite_row(H)
        raise PathOverflowError(
            f"{what} overflowed float64: node {self.nodes[v]!r} (position {v}) is the first "
            f"whose value is not finite; scale the weights down (see PathOverflowError)")

    def forward(self, p, X):
        r"""Network outputs :math:`f_p(x)` (paper Table 1): ReLU inside, linear outputs.

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
        H = self._forward_all(p, X)
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

        so edges sharing a parameter add up.  ReLU's derivative at 0 is taken as 0.

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
        H = self._forward_all(p, X)
        H[~c.live] = 0.0  # nodes that reach no output get no gradient; keeps inf*0 out
        if not np.isfinite(H).all():
            self._raise_overflow(H, "the forward pass")
        G = np.zeros_like(H)
        G[c.outputs] = dY.T
        grad = np.zeros(self.n_params)
        engine.backward(c, p, H, G, grad)
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


def _label_list(seq, what):
    if isinstance(seq, (str, bytes)):
        raise GraphError(f"{what} must be a sequence of node labels, got the string {seq!r}; "
                         f"wrap a single label in a list")
    try:
        return list(seq)
    except TypeError:
        raise GraphError(f"{what} must be a sequence of node labels, got {seq!r}") from None
