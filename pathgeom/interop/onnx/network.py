r"""The result of an import: :class:`OnnxNetwork`, with dense passes and a lazy graph."""

import contextlib
import math
import threading

import numpy as np

from ... import geometry
from ..._errors import PathOverflowError, PathUnderflowError
from ..._validation import _as_float_array, as_params
from . import twin


class OnnxNetwork:
    r"""An ONNX model as a shared-weight graph, made by :func:`from_onnx`.

    The import records the model as a program of layer operations on the node ids of the
    graph :math:`\mathcal{N}(G, \pi, p)` it describes.  :meth:`forward`,
    :meth:`path_quantities`, :meth:`gamma2`, :meth:`kappa` and :meth:`path_norm` run as
    dense passes of that program (convolutions as im2col products on numpy's BLAS, in
    float64) when the model is feed-forward; :attr:`graph`, the explicit edge list, is built
    only when it is first asked for (a ResNet-18 at 224x224 has about :math:`2 \cdot 10^9`
    edges).  Models with an RNN operator use the graph for everything.

    Attributes
    ----------
    graph : SharedGraph
        The network :math:`\mathcal{N}(G, \pi, p)` (built on first access).  Inputs: the
        model inputs' elements per example (C order, batch axis removed), then the bias
        node (fed with 1) when the model has biases or fixed shifts.  Outputs: the model
        outputs' elements per example, C order.  Node kinds: ``"relu"`` (after a Relu),
        ``"max"`` (MaxPool), ``"linear"`` (pooling averages, residual sums and any linear
        output read by more than one operation).
    p : ndarray, shape (n_params,)
        float64 parameters: the values of the floating-point initializers (after folding
        BatchNorms, see :attr:`folded`).
    param_names : list of (str, tuple)
        ``param_names[i] = (initializer_name, index_tuple)``: which initializer element
        parameter ``i`` is, e.g. ``("W", (1, 0))``.
    input_names, output_names : list of str
        The model's inputs and outputs.
    input_shapes, output_shapes : list of tuple
        Their per-example shapes (batch axis removed).
    batch_axes : list of int
        The batch axis of each model input (1 when an RNN operator reads the input in its
        ``[seq, batch, features]`` layout, else 0).
    has_bias : bool
        Whether the graph has the bias node (the last input).
    folded : list of (str, str, str)
        ``(batchnorm, weight_block, bias_block)`` for each BatchNormalization folded into
        the Conv/Gemm before it: the parameter blocks ``"<W>*<bn>"`` (:math:`a W`, with
        :math:`a = \gamma / \sqrt{\sigma^2 + \epsilon}` per output channel) and
        ``"<B>*<bn>"`` (:math:`a b + \beta - a \mu`) or ``"<bn>.shift"`` (:math:`\beta -
        a\mu`, when the layer had no bias).
    scaled : list of (str, float, str)
        ``(initializer, factor, block)`` for each initializer read by Gemms with ``alpha``
        (or, as ``C``, ``beta``) other than 1: the parameter block ``"<B>*<alpha>"`` (e.g.
        ``"W*0.5"``) holds :math:`\alpha B`, the edge weights of those Gemms.  In the
        initializer's own coordinates :math:`\kappa_B = \alpha^2 \kappa`.
    ties : dict
        ``{initializer: (tied_to, "copy" | "transpose")}`` when imported with
        ``tie_transposes=True`` or a mapping (the ties applied).

    Examples
    --------
    A two-layer model whose hidden layer is used twice, on one weight matrix ``W``:

    >>> import numpy as np, pathgeom
    >>> from onnx import helper, TensorProto, numpy_helper
    >>> W = numpy_helper.from_array(np.array([[1.0, -2.0], [0.5, 1.0]]), "W")
    >>> nodes = [helper.make_node("Gemm", ["x", "W"], ["z1"], transB=1),
    ...          helper.make_node("Relu", ["z1"], ["h1"]),
    ...          helper.make_node("Gemm", ["h1", "W"], ["y"], transB=1)]
    >>> model = helper.make_model(helper.make_graph(
    ...     nodes, "tied", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2])],
    ...     [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])], [W]),
    ...     opset_imports=[helper.make_opsetid("", 17)])
    >>> net = pathgeom.from_onnx(model)
    >>> net.graph
    SharedGraph(n_nodes=6, n_edges=8, n_params=4, n_inputs=2, n_outputs=2)
    >>> net.param_names[1], net.p
    (('W', (0, 1)), array([ 1. , -2. ,  0.5,  1. ]))
    >>> net.forward([[1.0, 1.0]])                 # W relu(W x)
    array([[-3. ,  1.5]])
    >>> net.gamma2()                              # sum over the 8 paths of w^2 w'^2
    12.5
    >>> net.path_norm(q=1)                        # sum over the paths of |w w'|
    9.0
    >>> net.unpack(net.kappa())["W"]              # tied: W[j, j] is on two edges of a path
    array([[10.25,  2.5 ],
           [10.  , 10.25]])
    """

    def __init__(self, program, p, input_names, input_shapes, batch_axes, output_names,
                 output_shapes, has_bias, blocks, folded=(), ties=None, scaled=()):
        self._program = program
        self.p = p
        self._param_names = None
        self._graph = None
        self._labels = None
        self.input_names = input_names
        self.input_shapes = input_shapes
        self.batch_axes = batch_axes
        self.output_names = output_names
        self.output_shapes = output_shapes
        self.has_bias = has_bias
        self._blocks = blocks          # initializer name -> (first index, shape)
        self.folded = list(folded)
        self.ties = dict(ties or {})
        self.scaled = list(scaled)
        self._work = {}                # scratch arrays of the dense passes, kept
        self._work_lock = threading.Lock()

    @property
    def p(self):
        """The model's own parameters (its initializers, folded where said), read-only.

        Assign a new vector to change them (``net.p = new``); the dense passes keep the
        powers :math:`|p|^q` of the last vector they saw, so in-place changes are refused.
        """
        return self._own_p

    @p.setter
    def p(self, value):
        arr = np.array(as_params(value, self.n_params), dtype=np.float64, copy=True)
        arr.flags.writeable = False
        # a view of the read-only copy: numpy refuses to make it writeable again (the
        # owner of the data could), so the kept powers cannot go stale
        self._own_p = arr.view()

    def __repr__(self):
        return (f"OnnxNetwork(inputs={self.input_names}, outputs={self.output_names}, "
                f"n_params={self.n_params}, dense={self.dense})")

    # ------------------------------------------------------------------ the graph

    @property
    def graph(self):
        """The :class:`~pathgeom.SharedGraph` (built on first access, then kept)."""
        if self._graph is None:
            n = self.n_edges_bound
            if n > twin.MAX_GRAPH_EDGES:
                raise MemoryError(
                    f"the edge list of this model would have up to {n:,} edges (about "
                    f"{n * 100 / 2**30:.0f} GiB while built), more than "
                    f"pathgeom.interop.onnx.twin.MAX_GRAPH_EDGES = "
                    f"{twin.MAX_GRAPH_EDGES:,}; forward, path_quantities, gamma2, kappa and "
                    f"path_norm need no edge list (dense passes). For the graph itself (the "
                    f"rescaling group, lemma1, draw) export the model at a smaller input "
                    f"size, or raise MAX_GRAPH_EDGES if the memory is there")
            graph, old_of_new = self._program.graph()
            self._labels = self._program.label_function(old_of_new)
            self._graph = graph
        return self._graph

    @property
    def n_edges_bound(self):
        """An upper bound on :attr:`graph`'s number of edges, known without building it."""
        return int(sum(op.n_edges() for op in self._program.ops))

    def _edge_bound(self):
        bound = self.__dict__.get("_edge_bound_value")
        if bound is None:
            bound = self._edge_bound_value = self.n_edges_bound
        return bound

    @property
    def dense(self):
        """Whether the dense passes apply (every operation has one: no RNN operator)."""
        return self._program.dense

    @property
    def param_names(self):
        """``(initializer_name, index_tuple)`` of each parameter (a list, built on first use)."""
        if self._param_names is None:
            names = []
            for name, (_, shape) in self._blocks.items():
                names.extend((name, tuple(int(i) for i in idx)) for idx in np.ndindex(*shape))
            self._param_names = names
        return self._param_names

    @property
    def n_params(self):
        """Length of :attr:`p`."""
        return int(self._program.n_params)

    def node_label(self, node):
        """A readable name of ``node`` (an entry of ``graph.nodes``, ``graph.inputs``, ...).

        The ONNX tensor that made the node and the element's index in one example (batch
        axis removed), e.g. ``'x[0, 3]'``; an RNN operator's units are ``'Y[t, j]'`` (its
        first output's name, time step, unit); the bias node is ``'1'``.
        """
        self.graph    # noqa: B018  (builds the labels)
        return self._labels(int(node))

    # ------------------------------------------------------------------ inputs

    def graph_inputs(self, X):
        """An ONNX-shaped batch as the graph's input rows.

        Parameters
        ----------
        X : array_like, or a sequence of them (one per model input)
            The model's input tensor with its batch axis (axis 1 for an RNN operator's
            ``[seq, batch, features]`` input, see :attr:`batch_axes`, else axis 0).

        Returns
        -------
        ndarray, shape (B, graph.n_inputs)
            Each example's elements in C order, batch axis removed, then 1 for the bias
            node when :attr:`has_bias`.
        """
        arrays = [X] if len(self.input_names) == 1 else list(X)
        if len(arrays) != len(self.input_names):
            raise ValueError(f"the model has {len(self.input_names)} inputs "
                             f"{self.input_names}; pass one array for each")
        rows, B = [], None
        for name, shape, axis, a in zip(self.input_names, self.input_shapes, self.batch_axes,
                                        arrays):
            a = _as_float_array(a, name)
            full = shape[:axis] + (-1,) + shape[axis:]
            if a.ndim != len(full) or a.shape[:axis] + a.shape[axis + 1:] != shape:
                raise ValueError(f"input {name!r} has shape {a.shape}; expected "
                                 f"{tuple('B' if s < 0 else s for s in full)} (batch axis "
                                 f"{axis})")
            if not np.isfinite(a).all():
                bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
                raise ValueError(f"input {name!r}{list(bad)} = {a[bad]} is not finite; "
                                 f"inputs must be finite")
            a = np.moveaxis(a, axis, 0)
            if B is not None and a.shape[0] != B:
                raise ValueError(f"input {name!r} has batch size {a.shape[0]}, not {B}")
            B = a.shape[0]
            rows.append(a.reshape(B, math.prod(shape)))   # (B may be 0)
        if self.has_bias:
            rows.append(np.ones((B, 1)))
        return np.concatenate(rows, axis=1)

    def _p(self, p):
        return self.p if p is None else as_params(p, self.n_params)

    # ------------------------------------------------------------------ dense passes

    def forward(self, X, p=None):
        """The model's outputs as rows ``(B, n_outputs)`` (each output flattened, C order).

        ``p`` defaults to :attr:`p`.  A dense pass when :attr:`dense`, else
        ``graph.forward(p, graph_inputs(X))`` (the same values).
        """
        p = self._p(p)
        rows = self.graph_inputs(X)
        if not self.dense:
            return self.graph.forward(p, rows)
        prog = self._program
        if rows.shape[0] == 0:   # an empty batch: no outputs
            return np.zeros((0, len(prog.output_ids)))
        st = twin.dense_forward(prog.ops, prog.n_nodes, prog.input_ids, rows,
                                np.append(p, 0.0), None)
        return st.H[:, prog.output_ids]

    @contextlib.contextmanager
    def _workspace(self):
        """The kept scratch arrays, or a fresh dict while another thread holds them."""
        if self._work_lock.acquire(blocking=False):
            try:
                yield self._work
            finally:
                self._work_lock.release()
        else:
            yield {}

    def _power_forward(self, p, q, work):
        """The power network's forward pass: ``(state, total)``.  Raises :class:`_Range`
        when float64 cannot be trusted for it: a non-zero weight whose ``|w|^q`` is
        below the normal range, or a total beyond it."""
        prog = self._program
        w = work.get("w")
        # the powers of the model's own (read-only) parameters are kept from the last pass
        kept = work.get("w_of")
        own = p is self._own_p and kept is not None and kept[0] is p and kept[1] == q
        if w is None or w.size != p.size + 1:
            w = work["w"] = np.empty(p.size + 1)
            own = False
        if not own:
            work["w_of"] = None
            with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                if q == 2.0:
                    np.square(p, out=w[:-1])
                else:
                    np.power(np.abs(p), q, out=w[:-1])
            w[-1] = 0.0          # (an infinite |w|^q shows up in the total, checked below)
            work["w_low"] = _least_positive(w[:-1])
            work["w_lost"] = bool(work["w_low"] < _TINY and
                                  ((w[:-1] < _TINY) & (p != 0)).any())
            if p is self._own_p:
                work["w_of"] = (p, q)     # the array itself: no id reused by another
        if work["w_lost"]:
            raise _Range(PathUnderflowError, f"a non-zero weight's |w|^{q:g} is below the "
                                             f"float64 range")
        rows = np.ones((1, prog.input_ids.size))
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            st = twin.dense_forward(prog.ops, prog.n_nodes, prog.input_ids, rows, w, q, work)
            total = float(st.H[0, prog.output_ids].sum())
        if not math.isfinite(total):
            raise _Range(PathOverflowError,
                         f"the sum over paths of prod |w|^{q:g} overflows float64 (the power "
                         f"network's outputs exceed the float64 range)")
        return st, total

    def _products_underflow(self, work, H, delta=None):
        """Whether a product of the passes may have fallen below the normal float64 range:
        every product is of a positive power ``|w|^q`` and a positive node value (or
        ``delta``), or of a node value and a ``delta`` (kappa1); when the least positive
        factors' products stay in range, none did."""
        w_low = work["w_low"]
        h_low = _least_positive(H)
        if not (h_low >= _TINY and w_low * h_low >= _TINY):
            return True
        if delta is None:
            return False
        d_low = _least_positive(delta)
        return not (d_low >= _TINY and w_low * d_low >= _TINY and h_low * d_low >= _TINY)

    def _careful(self, exc, compute_on_graph, q):
        """The answer when the dense float64 passes cannot be trusted (``exc``, a
        :class:`_Range`): the edge-list engine's, which reruns on scaled values, when the
        model's edge list can be built; else the typed error."""
        if self.n_edges_bound <= twin.MAX_GRAPH_EDGES:
            return compute_on_graph(self.graph)
        raise exc.error(
            f"{exc.message}, and the model is too large for the edge-list engine (up to "
            f"{self.n_edges_bound:,} edges), which would rerun on scaled values; scale the "
            f"weights by a factor c (each path's product scales by c**(q * its length)) "
            f"or export the model at a smaller input size") from None

    def path_norm(self, p=None, q=2):
        r"""The :math:`L^q` path norm :math:`(\sum_{\text{paths}} \prod_e |w_e|^q)^{1/q}`.

        Fixed weights (residual sums, average pooling, unfolded BatchNorms) enter the
        products like parameters; a max-pooling unit passes every path (the power network
        sums its window).  ``p`` defaults to :attr:`p`; ``q`` is a real number >= 1.
        """
        q = float(q)
        if not q >= 1 or not math.isfinite(q):
            raise ValueError(f"q must be a real number >= 1, got {q!r}")
        p = self._p(p)
        if not self.dense:
            return float(geometry.path_norm(self.graph, p, q))
        try:
            with self._workspace() as work:
                st, total = self._power_forward(p, q, work)
                if self._products_underflow(work, st.H):
                    raise _Range(PathUnderflowError, f"a product of the power network "
                                 f"(|w|^{q:g}) may have fallen below the float64 range")
        except _Range as exc:
            return self._careful(exc, lambda g: float(geometry.path_norm(g, p, q)), q)
        return total ** (1.0 / q)

    def path_quantities(self, p=None, with_kappa2=True):
        r""":math:`\gamma^2`, :math:`\kappa^{(1)}`, :math:`\kappa^{(2)}` and :math:`\kappa` at
        ``p`` (default :attr:`p`), as :class:`pathgeom.PathQuantities`.

        Dense (when :attr:`dense`): one forward pass of the squared network on the all-ones
        input gives :math:`\gamma^2`, one backward pass :math:`\delta` and
        :math:`\kappa^{(1)}_i = \sum_{(u\to v) \in E_i} h_u \delta_v` (a weight-gradient
        product per layer).  :math:`\kappa^{(2)}_i = 0` by the depth certificate for every
        parameter used by one operation only; for parameters used by several operations
        (weights tied across layers) it is computed exactly on :attr:`graph`.  Equal to
        ``pathgeom.path_quantities(self.graph, p)``.

        The dense result's arrays are read-only; when :math:`\kappa^{(2)} = 0` everywhere,
        ``kappa`` is the ``kappa1`` array itself and ``kappa2`` a broadcast zero (a
        ResNet-18 has 11.7 million parameters: no copies).  Copy them to modify them.
        The scratch arrays of the passes (about 200 MB for a ResNet-18 at 224x224) are
        kept between calls.
        """
        p = self._p(p)
        if not self.dense:
            return geometry.path_quantities(self.graph, p, with_kappa2)
        prog = self._program
        try:
            with self._workspace() as work:
                st, gamma2 = self._power_forward(p, 2.0, work)
                with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                    delta, kappa1 = twin.dense_backward(prog.ops, st, prog.output_ids,
                                                        prog.n_params)
                    # every entry of the squared network is >= 0, so each kappa1_i, a sum
                    # of at most n_edges products h_u delta_v, is at most n_edges max(h)
                    # max(delta): when that is finite, no entry needs checking (NaN fails
                    # the comparison)
                    bound = float(self._edge_bound()) * float(st.H.max()) * \
                        float(delta.max())
                if not bound < _FINITE_BOUND and not _all_finite(kappa1):
                    raise _Range(PathOverflowError, "kappa1 overflows float64")
                if self._products_underflow(work, st.H, delta):
                    raise _Range(PathUnderflowError, "a product of the squared network may "
                                 "have fallen below the float64 range")
        except _Range as exc:
            return self._careful(
                exc, lambda g: geometry.path_quantities(g, p, with_kappa2), 2.0)
        kappa1.flags.writeable = False
        if not with_kappa2:
            return geometry.PathQuantities(gamma2, kappa1, None, None)
        if prog.repeated_params().any():
            kappa2 = geometry.path_quantities(self.graph, p, True).kappa2
            kappa = kappa1 + kappa2
        else:
            # the depth certificate: kappa2 = 0 and kappa is kappa1 (one read-only array;
            # no copy of a vector as long as the network's parameters)
            kappa2 = np.broadcast_to(0.0, kappa1.shape)
            kappa = kappa1
        return geometry.PathQuantities(gamma2, kappa1, kappa2, kappa)

    def gamma2(self, p=None):
        r""":math:`\gamma^2` at ``p`` (default :attr:`p`): the squared :math:`L^2` path norm."""
        p = self._p(p)
        if not self.dense:
            return geometry.gamma2(self.graph, p)
        try:
            with self._workspace() as work:
                st, total = self._power_forward(p, 2.0, work)
                if self._products_underflow(work, st.H):
                    raise _Range(PathUnderflowError, "a product of the squared network may "
                                 "have fallen below the float64 range")
        except _Range as exc:
            return self._careful(exc, lambda g: float(geometry.gamma2(g, p)), 2.0)
        return total

    def kappa(self, p=None):
        r"""The exact :math:`\kappa = \kappa^{(1)} + \kappa^{(2)}` at ``p`` (default :attr:`p`)."""
        return self.path_quantities(p).kappa

    # ------------------------------------------------------------------ parameters

    def unpack(self, values):
        """A per-parameter vector (``p``, ``kappa``, a gradient) as ``{initializer: array}``.

        Each array has its initializer's shape.
        """
        values = as_params(values, self.n_params, "values")
        return {name: values[start:start + math.prod(shape)].reshape(shape).copy()
                for name, (start, shape) in self._blocks.items()}

    def pack(self, arrays):
        """The inverse of :meth:`unpack`: ``{initializer: array}`` (all of them) as one vector."""
        p = np.empty(self.n_params)
        missing = set(self._blocks) - set(arrays)
        if missing:
            raise ValueError(f"missing initializer(s) {sorted(missing)}")
        for name, (start, shape) in self._blocks.items():
            a = np.asarray(arrays[name], dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
            p[start:start + a.size] = a.ravel()
        return p


#: Below this, a sum bound of kappa1 proves every entry finite (float64 max is 1.8e308).
_FINITE_BOUND = 1e300
_TINY = np.finfo(np.float64).tiny


class _Range(Exception):
    """The dense float64 passes cannot be trusted: ``error`` (the typed error to raise if
    no exact rerun is possible) and ``message``."""

    def __init__(self, error, message):
        super().__init__(message)
        self.error = error
        self.message = message


def _least_positive(a):
    """The least positive entry of ``a`` (>= 0 entries; inf when there is none): one
    reduction when ``a`` has no zero, two otherwise."""
    low = a.min(initial=np.inf)
    if low > 0 or np.isnan(low):
        return float(low)
    return float(a.min(where=a > 0, initial=np.inf))


def _all_finite(a):
    """All entries finite (one pass: a sum of finite numbers that is finite proves it)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(np.sum(a))):
            return True
    return bool(np.all(np.isfinite(a)))
