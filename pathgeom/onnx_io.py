r"""Bring your own network: ONNX import (:func:`from_onnx`) and export (:func:`to_onnx`).

:func:`from_onnx` reads an ONNX model (a file or an ``onnx.ModelProto``) and builds the
shared-weight graph :math:`\mathcal{N}(G, \pi, p)` of the same function:

* every element of a floating-point **initializer** is one parameter, and an initializer
  used by several nodes is one block of parameters: weight tying is kept exactly;
  integer initializers and ``Constant`` nodes (shapes, axes, indices) are constants;
* a linear operator (Gemm, MatMul, Conv, the RNN operator) creates one node per output
  element, with one edge per (input element, weight) pair; ``Relu`` turns those nodes
  into the graph's ReLU units; the model's outputs are the graph's (linear) outputs;
* a bias (Gemm's ``C``, Conv's ``B``, an ``Add`` of an initializer to a linear output,
  the RNN operator's ``B``) is a set of edges from one **bias input node** fed with 1, the
  last graph input, as in ``pathgeom.rnn(bias=True)``;
* Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Identity, Gather, Slice, Concat (and
  Dropout at inference) only relabel units: they create no node and no edge.

What cannot be a path network is refused with a :class:`~pathgeom.GraphError` that names
the node, its operator and what to do: other activations, gates, pooling, BatchNorm that
is not folded, and **fixed weights** (Gemm's ``alpha``/``beta`` other than 1, an ``Add``
of two activations such as a residual connection, non-zero float constants).  Fixed
weights are refused rather than represented, because every edge of a
:class:`~pathgeom.SharedGraph` carries a parameter: a constant stored as a parameter would
be trained by Path-SGD and rescaled by :func:`~pathgeom.rescaling_group` as if it were
free.  Constants that are exactly zero are dropped (their edges carry no path).
docs/concepts/own-model.md explains these choices.

The ``onnx`` package is imported inside the functions only: ``import pathgeom`` never
needs it (install it with ``pip install 'pathgeom[onnx]'``).
"""

import math

import numpy as np

from . import geometry
from ._errors import GraphError
from ._validation import _as_float_array, as_params
from .graph import SharedGraph

__all__ = ["OnnxNetwork", "from_onnx", "to_onnx"]

_INSTALL = ("pathgeom's ONNX import and export need the optional onnx package, which is not "
            "installed; install the extra:\n    pip install 'pathgeom[onnx]'")

#: Lowest opset accepted: Squeeze/Unsqueeze take their axes as an input from opset 13 on.
MIN_OPSET = 13
#: Opset written by :func:`to_onnx`.
EXPORT_OPSET = 17

# node kinds during the import
_INPUT, _LINEAR, _RELU, _BIAS = 0, 1, 2, 3

_GENERIC_ADVICE = ("pathgeom computes the path geometry of ReLU networks (linear maps with "
                   "shared weights, biases and ReLU); rebuild this part of the model with "
                   "those, or cut the model before this node")
_ADVICE = {
    "BatchNormalization": "fold it into the weights and bias of the preceding Conv or Gemm "
                          "(in PyTorch: model.eval(), then torch.nn.utils.fusion."
                          "fuse_conv_bn_eval / fuse_linear_bn_eval) and export again",
    "Softmax": "export the logits: drop the final Softmax and apply it outside the network "
               "(pathgeom's outputs are linear)",
    "LogSoftmax": "export the logits: drop the final LogSoftmax and apply it outside the "
                  "network (pathgeom's outputs are linear)",
    "MaxPool": "max pooling picks paths by value and is not a path network; use a strided "
               "Conv instead",
    "GlobalMaxPool": "max pooling picks paths by value and is not a path network",
    "AveragePool": "average pooling is a linear map with fixed weights 1/k, and pathgeom "
                   "refuses fixed weights; use a strided Conv (learned weights) instead",
    "GlobalAveragePool": "average pooling is a linear map with fixed weights, which pathgeom "
                         "refuses; use a Conv or a Gemm instead",
    "LSTM": "gated units are not ReLU networks; use the RNN operator with "
            "activations=['Relu'] (torch.nn.RNN(nonlinearity='relu'))",
    "GRU": "gated units are not ReLU networks; use the RNN operator with "
           "activations=['Relu'] (torch.nn.RNN(nonlinearity='relu'))",
    "Mul": "a product with a constant is a fixed weight and a product of two tensors is not a "
           "path network; fold constant scales into the weights before export",
    "Div": "a division is a fixed weight or not a path network; fold constant scales into "
           "the weights before export",
    "Sub": "a subtraction needs fixed weights (+1 and -1), which pathgeom refuses",
    "Sum": "a sum of activations needs fixed weights 1, which pathgeom refuses",
    "Pad": "explicit padding: use the pads attribute of the Conv instead",
}
for _op in ("Tanh", "Sigmoid", "LeakyRelu", "Elu", "Selu", "Gelu", "HardSigmoid", "Softplus",
            "PRelu", "Clip", "Abs", "Exp", "Log", "HardSwish", "Mish", "Celu", "ThresholdedRelu"):
    _ADVICE[_op] = ("only ReLU keeps a network a path network (positively homogeneous, "
                    "so gamma^2 and the rescaling symmetry are those of the paper); replace "
                    "this activation by Relu")


def _onnx():
    """The onnx module, or an ImportError saying how to install it."""
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return onnx


# --------------------------------------------------------------------------- values


class _Units:
    """Activations: node ids in the tensor's full shape, the batch axis kept with size 1."""

    __slots__ = ("ids", "batch")

    def __init__(self, ids, batch):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.batch = int(batch)


class _Params:
    """Weights: parameter indices in the tensor's shape; -1 marks a constant zero."""

    __slots__ = ("idx",)

    def __init__(self, idx):
        self.idx = np.asarray(idx, dtype=np.int64)


def _describe(v):
    if isinstance(v, _Units):
        return "an activation tensor"
    if isinstance(v, _Params):
        return "a weight tensor (initializer)"
    return "a constant"


# --------------------------------------------------------------------------- the result


class OnnxNetwork:
    r"""An ONNX model as a shared-weight graph, made by :func:`from_onnx`.

    Attributes
    ----------
    graph : SharedGraph
        The network :math:`\mathcal{N}(G, \pi, p)`.  Inputs: the model inputs' elements per
        example (C order, batch axis removed), then the bias node (fed with 1) when the
        model has biases.  Outputs: the model outputs' elements per example, C order.
    p : ndarray, shape (n_params,)
        float64 parameters, the values of the floating-point initializers.
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
    >>> net.unpack(net.kappa())["W"]              # tied: W[j, j] is on two edges of a path
    array([[10.25,  2.5 ],
           [10.  , 10.25]])
    """

    def __init__(self, graph, p, input_names, input_shapes, batch_axes,
                 output_names, output_shapes, has_bias, blocks, labels):
        self.graph = graph
        self.p = p
        self._param_names = None
        self.input_names = input_names
        self.input_shapes = input_shapes
        self.batch_axes = batch_axes
        self.output_names = output_names
        self.output_shapes = output_shapes
        self.has_bias = has_bias
        self._blocks = blocks          # initializer name -> (first index, shape)
        self._labels = labels          # callable: node id -> label

    def __repr__(self):
        return (f"OnnxNetwork(inputs={self.input_names}, outputs={self.output_names}, "
                f"graph={self.graph!r})")

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
        return self.graph.n_params

    def node_label(self, node):
        """A readable name of ``node`` (an entry of ``graph.nodes``, ``graph.inputs``, ...).

        The ONNX tensor that made the node and the element's index in one example (batch
        axis removed), e.g. ``'x[0, 3]'``; an RNN operator's units are ``'Y[t, j]'`` (its
        first output's name, time step, unit); the bias node is ``'1'``.
        """
        return self._labels(int(node))

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
            a = np.moveaxis(a, axis, 0)
            if B is not None and a.shape[0] != B:
                raise ValueError(f"input {name!r} has batch size {a.shape[0]}, not {B}")
            B = a.shape[0]
            rows.append(a.reshape(B, math.prod(shape)))   # (B may be 0)
        if self.has_bias:
            rows.append(np.ones((B, 1)))
        return np.concatenate(rows, axis=1)

    def forward(self, X, p=None):
        """``graph.forward(p, graph_inputs(X))``: the model's outputs as rows (B, n_outputs).

        ``p`` defaults to :attr:`p` (the initializers).
        """
        return self.graph.forward(self.p if p is None else p, self.graph_inputs(X))

    def path_quantities(self, p=None, with_kappa2=True):
        """:func:`pathgeom.path_quantities` of the graph at ``p`` (default :attr:`p`)."""
        return geometry.path_quantities(self.graph, self.p if p is None else p, with_kappa2)

    def gamma2(self, p=None):
        r""":math:`\gamma^2` at ``p`` (default :attr:`p`)."""
        return geometry.gamma2(self.graph, self.p if p is None else p)

    def kappa(self, p=None):
        r"""The exact :math:`\kappa = \kappa^{(1)} + \kappa^{(2)}` at ``p`` (default :attr:`p`)."""
        return geometry.kappa(self.graph, self.p if p is None else p)

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


# --------------------------------------------------------------------------- the importer


class _Importer:
    def __init__(self, onnx, model):
        self.onnx = onnx
        self.model = model
        g = model.graph
        self.kind = np.zeros(1024, dtype=np.int8)
        self.n = 0
        self.origins = []            # (first id, tensor name, per-node shape)
        self.edges = []              # (src, dst, par) flat int64 arrays
        self.rep = {}                # merged node -> node it was merged into
        self.bias = None
        self.values = {}
        self.producer = {}
        self.uses = {}
        for node in g.node:
            for name in node.input:
                if name:
                    self.uses[name] = self.uses.get(name, 0) + 1
        for out in g.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        self._read_initializers(g)

    # ------------------------------------------------------------------ bookkeeping

    def _alloc(self, shape, kind, name, batch=None):
        """``prod(shape)`` new nodes as ids of that shape; ``batch`` names the size-1 batch
        axis, left out of the labels."""
        count = math.prod(shape)
        while self.n + count > self.kind.size:
            self.kind = np.concatenate([self.kind, np.zeros_like(self.kind)])
        start = self.n
        self.kind[start:start + count] = kind
        self.n += count
        label_shape = tuple(s for k, s in enumerate(shape) if k != batch)
        self.origins.append((start, name, label_shape))
        return np.arange(start, start + count, dtype=np.int64).reshape(shape)

    def _bias_node(self):
        if self.bias is None:
            self.bias = int(self._alloc((1,), _BIAS, "1")[0])
        return self.bias

    def _add_edges(self, src, dst, par):
        src, dst, par = np.broadcast_arrays(src, dst, par)
        keep = par.ravel() >= 0
        self.edges.append((src.ravel()[keep], dst.ravel()[keep], par.ravel()[keep]))

    def _read_initializers(self, g):
        numpy_helper = self.onnx.numpy_helper
        self.blocks, self.p_parts = {}, []
        offset = 0
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            if np.issubdtype(arr.dtype, np.floating):
                self.values[init.name] = _Params(
                    np.arange(offset, offset + arr.size, dtype=np.int64).reshape(arr.shape))
                self.blocks[init.name] = (offset, tuple(arr.shape))
                self.p_parts.append(np.asarray(arr, dtype=np.float64).ravel())
                offset += arr.size
            else:
                self.values[init.name] = arr
        self.n_params = offset

    # ------------------------------------------------------------------ errors

    def _fail(self, node, message):
        name = node.name or f"producing {node.output[0]!r}"
        raise GraphError(f"ONNX node {name!r} ({node.op_type}): {message}")

    def _where(self, name):
        who = self.producer.get(name)
        return f"{name!r}" + (f" (from node {who})" if who else "")

    # ------------------------------------------------------------------ inputs and outputs

    def _rnn_x_layout(self, name):
        """1 when the model input feeds an RNN operator's X in layout 0 directly, else 0."""
        for node in self.model.graph.node:
            if node.op_type in ("RNN", "LSTM", "GRU") and node.input and node.input[0] == name:
                layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
                return 1 if layout == 0 else 0
        return 0

    def read_inputs(self):
        g = self.model.graph
        self.input_names, self.input_shapes, self.batch_axes, self.input_ids = [], [], [], []
        for inp in g.input:
            if inp.name in self.values:  # an initializer also listed as an input
                continue
            t = inp.type.tensor_type
            if not t.HasField("shape"):
                raise GraphError(f"ONNX input {inp.name!r} has no shape; export the model "
                                 f"with a fixed input shape (the batch axis may be dynamic)")
            dims = list(t.shape.dim)
            axis = self._rnn_x_layout(inp.name)
            if len(dims) <= axis:
                raise GraphError(f"ONNX input {inp.name!r} has {len(dims)} axes; expected a "
                                 f"batch axis {axis}")
            shape = []
            for k, d in enumerate(dims):
                if k == axis:
                    continue
                if not d.HasField("dim_value") or d.dim_value < 1:
                    raise GraphError(f"ONNX input {inp.name!r}: axis {k} has no fixed size "
                                     f"({d.dim_param or '?'}); only the batch axis "
                                     f"(axis {axis}) may be dynamic")
                shape.append(int(d.dim_value))
            ids = self._alloc(tuple(shape), _INPUT, inp.name)
            self.values[inp.name] = _Units(np.expand_dims(ids, axis), axis)
            self.input_names.append(inp.name)
            self.input_shapes.append(tuple(shape))
            self.batch_axes.append(axis)
            self.input_ids.append(ids.ravel())
        if not self.input_names:
            raise GraphError("the ONNX model has no input (every input is an initializer)")

    def read_outputs(self):
        outs, self.output_names, self.output_shapes = [], [], []
        for out in self.model.graph.output:
            v = self.values.get(out.name)
            if not isinstance(v, _Units):
                raise GraphError(f"ONNX output {out.name!r} is {_describe(v)}, not computed "
                                 f"from the inputs; pathgeom needs outputs that depend on "
                                 f"the inputs")
            ids = np.moveaxis(v.ids, v.batch, 0)[0]
            kinds = self.kind[ids.ravel()]
            if (kinds == _RELU).any():
                raise GraphError(
                    f"ONNX output {out.name!r} passes through a Relu (or is an RNN "
                    f"operator's state); pathgeom's outputs are linear, like a network's "
                    f"logits: export the linear layer's output and apply any final "
                    f"activation outside the network")
            if (kinds == _INPUT).any():
                raise GraphError(f"ONNX output {out.name!r} is a model input passed "
                                 f"through unchanged; an output must be computed by a "
                                 f"linear operator (Gemm, MatMul, Conv)")
            self._consume_linear(None, out.name, v)
            outs.append(ids.ravel())
            self.output_names.append(out.name)
            self.output_shapes.append(tuple(ids.shape))
        if not outs:
            raise GraphError("the ONNX model has no output")
        flat = np.concatenate(outs)
        if np.unique(flat).size != flat.size:
            raise GraphError("an element of the model's outputs appears twice (the same "
                             "unit in two outputs, or repeated by Gather/Concat); every "
                             "output must be a distinct unit")
        self.output_ids = flat

    # ------------------------------------------------------------------ value access

    def _units(self, node, v, what):
        if not isinstance(v, _Units):
            self._fail(node, f"{what} is {_describe(v)}; this operator is supported only "
                             f"when {what} is an activation tensor computed from the inputs")
        return v

    def _params(self, node, name, what, v=None):
        """Parameter indices of input ``name``; zero constants become -1 (no edge)."""
        v = self.values.get(name) if v is None else v
        if isinstance(v, _Params):
            return v.idx
        if isinstance(v, _Units):
            self._fail(node, f"{what} {self._where(name)} is an activation, not a weight: "
                             f"a product or sum of two activations is not a path network "
                             f"edge (a residual Add would need fixed weights 1, which "
                             f"pathgeom refuses); only initializers can be weights")
        arr = np.asarray(v)
        if np.issubdtype(arr.dtype, np.floating) and not arr.any():
            return np.full(arr.shape, -1, dtype=np.int64)
        self._fail(node, f"{what} {name!r} is a constant, not a floating-point initializer: "
                         f"a fixed non-zero weight is not a parameter, and pathgeom refuses "
                         f"fixed weights (Path-SGD would train them, the rescaling group "
                         f"would treat them as free); store it as an initializer to make "
                         f"it a trainable, shared parameter")

    def _const(self, node, name, what):
        v = self.values.get(name)
        if isinstance(v, (_Units, _Params)):
            self._fail(node, f"{what} {self._where(name)} must be a constant (an integer "
                             f"initializer or Constant), got {_describe(v)}")
        return np.asarray(v)

    def _check_sources(self, node, name, v):
        kinds = self.kind[v.ids.ravel()]
        if (kinds == _LINEAR).any():
            self._fail(node, f"its input {self._where(name)} is the linear output of "
                             f"another linear operator with no Relu in between; the edge "
                             f"weights of two linear maps in a row are products of "
                             f"parameters, which a shared-weight graph cannot hold: insert "
                             f"a Relu, or multiply the two weight matrices into one before "
                             f"export")

    def _consume_linear(self, node, name, v):
        """A linear (pre-activation) tensor may be used once: by Relu, a bias Add, or an output."""
        if (self.kind[v.ids.ravel()] == _LINEAR).any() and self.uses.get(name, 0) > 1:
            where = ("" if node is None else f"node {node.name or node.op_type}: ")
            raise GraphError(f"{where}the linear output {self._where(name)} is used "
                             f"{self.uses[name]} times before its Relu; in a path network "
                             f"a pre-activation feeds exactly one Relu, bias Add or model "
                             f"output (using it twice would need fixed-weight edges)")
        if np.unique(v.ids).size != v.ids.size and (self.kind[v.ids.ravel()] == _LINEAR).any():
            raise GraphError(f"the linear output {self._where(name)} repeats units (Gather or "
                             f"Concat of the same elements) before its Relu or bias")

    # ------------------------------------------------------------------ the walk

    def run(self):
        g = self.model.graph
        opsets = {o.domain: o.version for o in self.model.opset_import}
        version = opsets.get("", opsets.get("ai.onnx"))
        if version is None or version < MIN_OPSET:
            raise GraphError(f"the model uses opset {version}; pathgeom reads opset "
                             f"{MIN_OPSET} and later (Squeeze/Unsqueeze with axes as an "
                             f"input): convert it with onnx.version_converter."
                             f"convert_version(model, {MIN_OPSET})")
        self.read_inputs()
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                self._fail(node, f"operator of domain {node.domain!r}; pathgeom reads the "
                                 f"standard ONNX operators only")
            handler = getattr(self, f"_op_{node.op_type}", None)
            if handler is None:
                advice = _ADVICE.get(node.op_type, _GENERIC_ADVICE)
                self._fail(node, f"operator {node.op_type} is not supported: {advice}")
            attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
            inputs = list(node.input)
            outs = handler(node, inputs, attrs)
            label = repr(node.name or node.op_type)
            for name, v in zip(node.output, outs):
                if name:
                    self.values[name] = v
                    self.producer[name] = label
            extra = [n for n in node.output[len(outs):] if n and self.uses.get(n)]
            if extra:
                self._fail(node, f"output {extra[0]!r} is not supported")
        self.read_outputs()
        return self.build()

    def _v(self, node, inputs, k):
        if k >= len(inputs) or not inputs[k]:
            return None
        name = inputs[k]
        if name not in self.values:
            self._fail(node, f"input {name!r} is not defined before this node (the graph is "
                             f"not topologically sorted, or the input is missing)")
        return self.values[name]

    # ------------------------------------------------------------------ relabelling

    def _relabel(self, node, v, fn):
        """Apply an index-array function to a value (units keep track of the batch axis)."""
        if isinstance(v, _Units):
            ids, batch = fn(v.ids, v.batch)
            return _Units(ids, batch)
        if isinstance(v, _Params):
            return _Params(fn(v.idx, None)[0])
        return fn(np.asarray(v), None)[0]

    def _op_Identity(self, node, inputs, attrs):
        return [self._v(node, inputs, 0)]

    def _op_Dropout(self, node, inputs, attrs):
        training = self._v(node, inputs, 2)
        if training is not None and np.asarray(training).any():
            self._fail(node, "Dropout in training mode; export the model in eval mode")
        return [self._v(node, inputs, 0)]

    def _op_Constant(self, node, inputs, attrs):
        if "value" in attrs:
            return [self.onnx.numpy_helper.to_array(attrs["value"])]
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                           ("value_int", np.int64), ("value_ints", np.int64)):
            if key in attrs:
                return [np.asarray(attrs[key], dtype=dtype)]
        self._fail(node, f"unsupported Constant attribute {sorted(attrs)}")

    def _op_ConstantOfShape(self, node, inputs, attrs):
        shape = self._const(node, inputs[0], "shape").astype(np.int64).ravel()
        value = (self.onnx.numpy_helper.to_array(attrs["value"]) if "value" in attrs
                 else np.zeros(1, dtype=np.float32))
        return [np.full(shape, value.ravel()[0], dtype=value.dtype)]

    def _op_Shape(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)
        if isinstance(v, _Units):
            shape = np.array(v.ids.shape, dtype=np.int64)
            shape[v.batch] = 0   # "copy the batch size" in a following Reshape
        else:
            shape = np.array(np.shape(v.idx if isinstance(v, _Params) else v), dtype=np.int64)
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return [shape[start:end]]

    def _op_Transpose(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)

        def fn(a, batch):
            perm = attrs.get("perm", list(range(a.ndim))[::-1])
            return a.transpose(perm), None if batch is None else list(perm).index(batch)
        return [self._relabel(node, v, fn)]

    def _axes(self, node, inputs, attrs, ndim):
        if len(inputs) > 1 and inputs[1]:
            axes = self._const(node, inputs[1], "axes").ravel().tolist()
        else:
            axes = attrs.get("axes")
        if axes is None:
            return None
        return sorted(int(a) % ndim for a in axes)

    def _op_Squeeze(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)
        ndim = (v.ids if isinstance(v, _Units) else v.idx if isinstance(v, _Params)
                else np.asarray(v)).ndim
        axes = self._axes(node, inputs, attrs, ndim)

        def fn(a, batch):
            ax = axes
            if ax is None:
                ax = [k for k, s in enumerate(a.shape) if s == 1 and k != batch]
            if batch is not None and batch in ax:
                self._fail(node, "it removes the batch axis; pathgeom keeps one example per "
                                 "row")
            if any(a.shape[k] != 1 for k in ax):
                self._fail(node, f"axes {ax} of a tensor of shape {a.shape} are not all 1")
            new_batch = None if batch is None else batch - sum(k < batch for k in ax)
            return np.squeeze(a, axis=tuple(ax)), new_batch
        return [self._relabel(node, v, fn)]

    def _op_Unsqueeze(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)
        ndim = (v.ids if isinstance(v, _Units) else v.idx if isinstance(v, _Params)
                else np.asarray(v)).ndim
        n_new = len(self._axes(node, inputs, attrs, 1000) or [])
        axes = self._axes(node, inputs, attrs, ndim + n_new)

        def fn(a, batch):
            out = a
            for k in axes:
                out = np.expand_dims(out, k)
            if batch is None:
                return out, None
            kept = [k for k in range(out.ndim) if k not in axes]
            return out, kept[batch]
        return [self._relabel(node, v, fn)]

    @staticmethod
    def _target_shape(node, fail, in_shape, shape, allowzero):
        shape = [int(s) for s in shape]
        out = []
        for k, s in enumerate(shape):
            if s == 0 and not allowzero:
                if k >= len(in_shape):
                    fail(node, f"shape {shape}: 0 at axis {k} copies an axis the input lacks")
                s = in_shape[k]
            out.append(s)
        if out.count(-1) > 1:
            fail(node, f"shape {shape} has more than one -1")
        if -1 in out:
            known = math.prod(s for s in out if s != -1)
            total = math.prod(in_shape)
            if known == 0 or total % known:
                fail(node, f"cannot reshape {tuple(in_shape)} to {shape}")
            out[out.index(-1)] = total // known
        if math.prod(out) != math.prod(in_shape):
            fail(node, f"cannot reshape {tuple(in_shape)} to {shape}")
        return out

    def _op_Reshape(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)
        shape = self._const(node, inputs[1], "shape").ravel().tolist()
        allowzero = attrs.get("allowzero", 0)

        def fn(a, batch):
            if batch is None:
                return a.reshape(self._target_shape(node, self._fail, a.shape, shape,
                                                     allowzero)), None
            if batch != 0:
                self._fail(node, f"reshaping a tensor whose batch axis is {batch}; transpose "
                                 f"the batch axis to the front first")
            if not shape or (shape[0] not in (0, -1) and shape[0] < 1):
                self._fail(node, f"shape {shape} does not keep the batch axis first")
            rest = self._target_shape(node, self._fail, a.shape[1:], shape[1:], allowzero)
            return a.reshape([1] + rest), 0
        return [self._relabel(node, v, fn)]

    def _op_Flatten(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)

        def fn(a, batch):
            axis = attrs.get("axis", 1) % max(a.ndim, 1) if a.ndim else 0
            if batch is not None and (batch != 0 or axis != 1):
                self._fail(node, f"Flatten(axis={attrs.get('axis', 1)}) of a tensor with "
                                 f"batch axis {batch} mixes examples; use axis=1 with the "
                                 f"batch axis first")
            return a.reshape(math.prod(a.shape[:axis]), -1), batch
        return [self._relabel(node, v, fn)]

    def _op_Gather(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)
        idx = self._const(node, inputs[1], "indices").astype(np.int64)

        def fn(a, batch):
            axis = attrs.get("axis", 0) % a.ndim
            if batch is not None and axis == batch:
                self._fail(node, "it selects along the batch axis")
            i = np.where(idx < 0, idx + a.shape[axis], idx)
            out = np.take(a, i, axis=axis)
            if batch is None:
                return out, None
            return out, batch if batch < axis else batch + i.ndim - 1
        return [self._relabel(node, v, fn)]

    def _op_Slice(self, node, inputs, attrs):
        v = self._v(node, inputs, 0)
        starts = self._const(node, inputs[1], "starts").ravel().tolist()
        ends = self._const(node, inputs[2], "ends").ravel().tolist()
        axes = (self._const(node, inputs[3], "axes").ravel().tolist()
                if len(inputs) > 3 and inputs[3] else list(range(len(starts))))
        steps = (self._const(node, inputs[4], "steps").ravel().tolist()
                 if len(inputs) > 4 and inputs[4] else [1] * len(starts))

        def fn(a, batch):
            where = [slice(None)] * a.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                ax = int(ax) % a.ndim
                if batch is not None and ax == batch:
                    self._fail(node, "it slices the batch axis")
                where[ax] = slice(int(s), int(e), int(st))
            return a[tuple(where)], batch
        return [self._relabel(node, v, fn)]

    def _op_Concat(self, node, inputs, attrs):
        vals = [self._v(node, inputs, k) for k in range(len(inputs))]
        axis = attrs["axis"]
        units = [v for v in vals if isinstance(v, _Units)]
        if units:
            if len(units) != len(vals):
                self._fail(node, "it joins activations with weights or constants")
            batch = units[0].batch
            if any(u.batch != batch for u in units):
                self._fail(node, "its inputs have their batch axes in different places")
            ax = axis % units[0].ids.ndim
            if ax == batch:
                self._fail(node, "it concatenates along the batch axis")
            return [_Units(np.concatenate([u.ids for u in units], axis=ax), batch)]
        if any(isinstance(v, _Params) for v in vals):
            idx = [self._params(node, name, "input", v) for name, v in zip(inputs, vals)]
            return [_Params(np.concatenate(idx, axis=axis))]
        return [np.concatenate([np.asarray(v) for v in vals], axis=axis)]

    # ------------------------------------------------------------------ nonlinearity

    def _op_Relu(self, node, inputs, attrs):
        v = self._units(node, self._v(node, inputs, 0), "the input")
        kinds = self.kind[v.ids.ravel()]
        if (kinds == _INPUT).any():
            self._fail(node, "Relu of a model input: a ReLU unit needs an incoming edge, and "
                             "an identity edge would be a fixed weight; apply it to the data "
                             "before the model")
        self._consume_linear(node, inputs[0], v)
        ids = np.unique(v.ids)
        self.kind[ids[self.kind[ids] == _LINEAR]] = _RELU
        return [v]

    # ------------------------------------------------------------------ linear operators

    def _op_MatMul(self, node, inputs, attrs):
        A = self._v(node, inputs, 0)
        if not isinstance(A, _Units):
            self._fail(node, f"its first input is {_describe(A)}; pathgeom supports "
                             f"activations @ weights (MatMul(x, W) with W an initializer)")
        self._check_sources(node, inputs[0], A)
        W = self._params(node, inputs[1], "the second input")
        if W.ndim != 2:
            self._fail(node, f"the weight has shape {W.shape}; MatMul needs a matrix (K, M)")
        if A.ids.ndim < 2 or A.batch == A.ids.ndim - 1:
            self._fail(node, "the contracted (last) axis of the activations is the batch axis")
        K, M = W.shape
        if A.ids.shape[-1] != K:
            self._fail(node, f"shapes {A.ids.shape} (batch axis {A.batch} per example) and "
                             f"{W.shape} do not match")
        out = self._alloc(A.ids.shape[:-1] + (M,), _LINEAR, node.output[0], A.batch)
        self._add_edges(A.ids[..., None, :], out[..., :, None], W.T)
        return [_Units(out, A.batch)]

    def _op_Gemm(self, node, inputs, attrs):
        A = self._v(node, inputs, 0)
        if not isinstance(A, _Units):
            self._fail(node, f"its input A is {_describe(A)}; pathgeom supports Gemm(x, W, b) "
                             f"with activations x and initializers W, b")
        for key in ("alpha", "beta"):
            value = attrs.get(key, 1.0)
            if value != 1.0 and (key == "alpha" or (len(inputs) > 2 and inputs[2])):
                self._fail(node, f"{key}={value:g}: an edge weight {key} * w is not one "
                                 f"parameter. pathgeom does not fold it: folding (w <- "
                                 f"{key} * w) keeps gamma^2 but multiplies kappa by "
                                 f"{key}**2 in the initializer's coordinates and unties "
                                 f"weights used elsewhere; fold it into the initializer "
                                 f"yourself before export if that parametrization is the "
                                 f"one you mean")
        self._check_sources(node, inputs[0], A)
        a = A.ids.T if attrs.get("transA", 0) else A.ids
        batch = (1 - A.batch) if attrs.get("transA", 0) else A.batch
        if a.ndim != 2 or batch != 0:
            self._fail(node, f"A must be a matrix (batch, features), got shape {A.ids.shape} "
                             f"with the batch axis at {A.batch}")
        W = self._params(node, inputs[1], "B")
        if W.ndim != 2:
            self._fail(node, f"B has shape {W.shape}; Gemm needs a matrix")
        W = W.T if attrs.get("transB", 0) else W     # (K, M)
        K, M = W.shape
        if a.shape[1] != K:
            self._fail(node, f"A has {a.shape[1]} features per example but B has {K} rows")
        out = self._alloc((1, M), _LINEAR, node.output[0], 0)
        if len(inputs) > 2 and inputs[2]:
            C = self._params(node, inputs[2], "C")
            self._bias(node, out, C, 0)
        self._add_edges(a[0][None, :], out[0][:, None], W.T)
        return [_Units(out, 0)]

    def _bias(self, node, ids, C, batch):
        """Bias edges from the bias node to ``ids`` (full shape) on the broadcast ``C``."""
        try:
            shape = np.broadcast_shapes(C.shape, ids.shape)
        except ValueError:
            shape = None
        if shape != ids.shape:
            self._fail(node, f"the bias of shape {C.shape} does not broadcast to the output "
                             f"of shape {ids.shape} (batch axis {batch} of size 1): a bias "
                             f"must be the same for every example")
        self._add_edges(self._bias_node(), ids, np.broadcast_to(C, ids.shape))

    def _op_Conv(self, node, inputs, attrs):
        X = self._units(node, self._v(node, inputs, 0), "the input X")
        self._check_sources(node, inputs[0], X)
        if X.batch != 0 or X.ids.ndim < 3:
            self._fail(node, f"X must be (batch, channels, *spatial), got shape "
                             f"{X.ids.shape} with the batch axis at {X.batch}")
        W = self._params(node, inputs[1], "the weight W")
        nsp = X.ids.ndim - 2
        C = X.ids.shape[1]
        G = attrs.get("group", 1)
        M = W.shape[0]
        if W.ndim != nsp + 2 or W.shape[1] * G != C or M % G:
            self._fail(node, f"the weight of shape {W.shape} does not fit the input of shape "
                             f"{X.ids.shape} with group={G}")
        S = X.ids.shape[2:]
        K = W.shape[2:]
        strides = attrs.get("strides", [1] * nsp)
        dil = attrs.get("dilations", [1] * nsp)
        pads = attrs.get("pads", [0] * (2 * nsp))
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * (2 * nsp)
            for a in range(nsp):
                out = -(-S[a] // strides[a])
                total = max(0, (out - 1) * strides[a] + dil[a] * (K[a] - 1) + 1 - S[a])
                small, big = total // 2, total - total // 2
                pads[a], pads[a + nsp] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto == "VALID":
            pads = [0] * (2 * nsp)
        o = j = i = np.zeros(1, dtype=np.int64)
        out_shape = []
        for a in range(nsp):
            n_out = (S[a] + pads[a] + pads[a + nsp] - dil[a] * (K[a] - 1) - 1) // strides[a] + 1
            if n_out < 1:
                self._fail(node, f"the kernel does not fit the padded input along spatial "
                                 f"axis {a}")
            out_shape.append(n_out)
            oa, ja = np.meshgrid(np.arange(n_out), np.arange(K[a]), indexing="ij")
            ia = oa * strides[a] + ja * dil[a] - pads[a]
            ok = (ia >= 0) & (ia < S[a])
            o = (o[:, None] * n_out + oa[ok]).ravel()
            j = (j[:, None] * K[a] + ja[ok]).ravel()
            i = (i[:, None] * S[a] + ia[ok]).ravel()
        out = self._alloc((1, M) + tuple(out_shape), _LINEAR, node.output[0], 0)
        if len(inputs) > 2 and inputs[2]:
            B = self._params(node, inputs[2], "the bias B")
            if B.shape != (M,):
                self._fail(node, f"the bias has shape {B.shape}, expected ({M},)")
            self._bias(node, out, B.reshape((1, M) + (1,) * nsp), 0)
        Xf = X.ids.reshape(C, -1)
        Of = out.reshape(M, -1)
        Wf = W.reshape(M, C // G, -1)
        co = np.arange(M)[:, None, None]
        cl = np.arange(C // G)[None, :, None]
        ci = (co // (M // G)) * (C // G) + cl
        self._add_edges(Xf[ci, i[None, None, :]], Of[co, o[None, None, :]],
                        Wf[co, cl, j[None, None, :]])
        return [_Units(out, 0)]

    def _op_Add(self, node, inputs, attrs):
        a, b = self._v(node, inputs, 0), self._v(node, inputs, 1)
        if not isinstance(a, _Units):
            a, b, inputs = b, a, inputs[::-1]
        if not isinstance(a, _Units):
            self._fail(node, "an Add of two weights or constants; fold it before export")
        if (self.kind[a.ids.ravel()] != _LINEAR).any():
            other = "another activation" if isinstance(b, _Units) else "a bias"
            self._fail(node, f"an Add of {other} to {self._where(inputs[0])}, which is not "
                             f"the linear output of a Gemm/MatMul/Conv: the sum needs an "
                             f"edge of fixed weight 1 from each activation (a residual "
                             f"connection), and pathgeom refuses fixed weights; add biases "
                             f"to the linear output before its Relu")
        self._consume_linear(node, inputs[0], a)
        if isinstance(b, _Units):
            if (self.kind[b.ids.ravel()] != _LINEAR).any():
                self._fail(node, f"an Add of {self._where(inputs[1])}, an activation that is "
                                 f"not a linear output (a residual connection): it needs "
                                 f"fixed weights 1, which pathgeom refuses")
            self._consume_linear(node, inputs[1], b)
            if b.ids.shape != a.ids.shape or b.batch != a.batch:
                self._fail(node, f"an Add of linear outputs of shapes {a.ids.shape} and "
                                 f"{b.ids.shape}; they must have the same shape")
            if np.intersect1d(a.ids, b.ids).size:
                self._fail(node, "an Add of a linear output to itself (a fixed weight 2)")
            for u, w in zip(b.ids.ravel().tolist(), a.ids.ravel().tolist()):
                self.rep[u] = w    # z_a + z_b: one node with the incoming edges of both
            return [a]
        C = self._params(node, inputs[1], "the bias", b)
        full = C.reshape((1,) * (a.ids.ndim - C.ndim) + C.shape) if C.ndim <= a.ids.ndim else C
        if full.ndim == a.ids.ndim and full.shape[a.batch] != 1:
            self._fail(node, f"the bias of shape {C.shape} varies along the batch axis")
        self._bias(node, a.ids, full, a.batch)
        return [a]

    def _op_RNN(self, node, inputs, attrs):
        acts = [s.decode() if isinstance(s, bytes) else s
                for s in attrs.get("activations", [b"Tanh"])]
        if [s.lower() for s in acts] != ["relu"]:
            self._fail(node, f"activations={acts}: only the ReLU RNN is a path network; "
                             f"export it with activations=['Relu'] (torch.nn.RNN("
                             f"nonlinearity='relu'))")
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction != "forward":
            self._fail(node, f"direction={direction!r}: only the forward direction is "
                             f"supported (a bidirectional RNN has two outputs per step; "
                             f"import each direction as its own model)")
        for key in ("clip", "activation_alpha", "activation_beta"):
            if key in attrs:
                self._fail(node, f"the attribute {key} is not supported")
        if len(inputs) > 4 and inputs[4]:
            self._fail(node, "sequence_lens (sequences of different lengths) is not "
                             "supported: every sequence has the full length")
        if len(inputs) > 5 and inputs[5]:
            h0 = self._v(node, inputs, 5)
            zero = (not isinstance(h0, (_Units, _Params))
                    and not np.asarray(h0).any())
            if not zero:
                self._fail(node, f"initial_h {self._where(inputs[5])}: pathgeom's RNN starts "
                                 f"from h_0 = 0 with no time-0 nodes (as pathgeom.rnn); "
                                 f"remove the initial state (a zero constant is accepted)")
        layout = attrs.get("layout", 0)
        X = self._units(node, self._v(node, inputs, 0), "X")
        self._check_sources(node, inputs[0], X)
        want = 1 if layout == 0 else 0
        if X.ids.ndim != 3 or X.batch != want:
            self._fail(node, f"X must be {'[seq, batch, input]' if layout == 0 else '[batch, seq, input]'}"
                             f" (layout={layout}), got shape {X.ids.shape} with the batch "
                             f"axis at {X.batch}")
        x = np.moveaxis(X.ids, X.batch, 0)[0]            # (T, n_in)
        T, n_in = x.shape
        W = self._params(node, inputs[1], "W")
        R = self._params(node, inputs[2], "R")
        H = W.shape[1] if W.ndim == 3 else -1
        if W.shape != (1, H, n_in) or R.shape != (1, H, H) or \
                attrs.get("hidden_size", H) != H:
            self._fail(node, f"W {W.shape} and R {R.shape} do not fit X {X.ids.shape} "
                             f"and hidden_size {attrs.get('hidden_size')}")
        h = self._alloc((T, H), _RELU, node.output[0] if node.output else "h")
        if len(inputs) > 3 and inputs[3]:
            B = self._params(node, inputs[3], "B")
            if B.shape != (1, 2 * H):
                self._fail(node, f"B has shape {B.shape}, expected (1, {2 * H})")
            self._add_edges(self._bias_node(), h, B[0, :H][None, :])
            self._add_edges(self._bias_node(), h, B[0, H:][None, :])
        self._add_edges(x[:, None, :], h[:, :, None], W[0][None])
        self._add_edges(h[:-1, None, :], h[1:, :, None], R[0][None])
        if layout == 0:
            Y, Yh = _Units(h[:, None, None, :], 2), _Units(h[-1][None, None, :], 1)
        else:
            Y, Yh = _Units(h[None, :, None, :], 0), _Units(h[-1][None, None, :], 0)
        return [Y, Yh]

    # ------------------------------------------------------------------ the graph

    def build(self):
        n = self.n
        src, dst, par = (np.concatenate([e[c] for e in self.edges]) if self.edges
                         else np.zeros(0, dtype=np.int64) for c in range(3))
        rep = np.arange(n, dtype=np.int64)
        if self.rep:
            keys = np.fromiter(self.rep.keys(), dtype=np.int64)
            rep[keys] = np.fromiter(self.rep.values(), dtype=np.int64)
            while True:
                nxt = rep[rep]
                if np.array_equal(nxt, rep):
                    break
                rep = nxt
        keep = rep == np.arange(n)
        new_id = np.cumsum(keep) - 1
        relabel = new_id[rep]
        inputs = np.concatenate(self.input_ids)
        if self.bias is not None:
            inputs = np.append(inputs, self.bias)
        graph = SharedGraph.from_arrays(relabel[src], relabel[dst], par, relabel[inputs],
                                        relabel[self.output_ids], n_nodes=int(keep.sum()),
                                        n_params=self.n_params)
        p = (np.concatenate(self.p_parts) if self.p_parts else np.zeros(0))
        starts = np.array([s for s, _, _ in self.origins], dtype=np.int64)
        old_of_new = np.flatnonzero(keep)
        origins = self.origins

        def label(node_id):
            old = int(old_of_new[node_id])
            k = int(np.searchsorted(starts, old, side="right") - 1)
            start, name, shape = origins[k]
            if name == "1":
                return "1"
            where = np.unravel_index(old - start, shape) if shape else ()
            return f"{name}[{', '.join(str(int(w)) for w in where)}]"

        return OnnxNetwork(graph, p, self.input_names, self.input_shapes,
                           self.batch_axes, self.output_names, self.output_shapes,
                           self.bias is not None, self.blocks, label)


def from_onnx(model):
    r"""The shared-weight graph of an ONNX model, with its parameters.

    Parameters
    ----------
    model : str, path-like or onnx.ModelProto
        An ``.onnx`` file or a loaded model, opset 13 or later.

    Returns
    -------
    OnnxNetwork
        ``.graph`` (a :class:`~pathgeom.SharedGraph`), ``.p`` (float64 values of the
        floating-point initializers, each element one parameter, an initializer used by
        several nodes one block: tied weights), ``.param_names`` (``(initializer,
        index)`` per parameter) and ``.graph_inputs(X)``, so that
        ``graph.forward(p, graph_inputs(X))`` equals the model's output reshaped to
        ``(B, -1)``.

    Raises
    ------
    GraphError
        An operator outside pathgeom's class of ReLU networks, a fixed weight (Gemm
        alpha/beta != 1, a residual Add, a non-zero float constant), two linear maps with
        no Relu in between, a Relu on the output; the message names the node, its
        operator and what to do.
    ImportError
        When the optional ``onnx`` package is missing (``pip install 'pathgeom[onnx]'``).

    Notes
    -----
    Supported: Gemm (transA/transB; alpha = beta = 1), MatMul (activations times a weight
    matrix), Add of a bias (or of two linear outputs: one unit with both sets of edges),
    Relu, Conv (any number of spatial axes; strides, pads, auto_pad, dilations, group),
    the RNN operator with ``activations=["Relu"]`` (forward, with or without its bias ``B``
    (whose two halves ``Wb`` and ``Rb`` are separate parameters), no ``initial_h``;
    unrolled with no time-0 nodes like :func:`pathgeom.rnn`), and Flatten, Reshape,
    Squeeze, Unsqueeze, Transpose, Identity, Gather, Slice, Concat, Dropout (inference),
    Shape and Constant where they only relabel units or compute shapes.

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> from pathgeom.constructors.mlp import mlp
    >>> net = mlp([3, 4, 2], bias=True)
    >>> p = net.init(np.random.default_rng(0), "he")
    >>> onx = pathgeom.from_onnx(pathgeom.to_onnx(net, p))
    >>> onx.graph.n_params == net.n_params, bool(np.array_equal(onx.p, p))
    (True, True)
    >>> X = np.random.default_rng(1).normal(size=(5, 3))
    >>> np.allclose(onx.graph.forward(onx.p, onx.graph_inputs(X)), net.forward(p, X))
    True
    >>> bool(np.isclose(onx.gamma2(), net.gamma2(p)))
    True
    """
    onnx = _onnx()
    if not isinstance(model, onnx.ModelProto):
        if hasattr(model, "read"):
            model = onnx.load(model)
        else:
            from ._files import parse_onnx_file
            model = parse_onnx_file(model)   # checked: GraphError naming the file
    from ._files import check_onnx_model
    check_onnx_model(model)
    return _Importer(onnx, model).run()


# --------------------------------------------------------------------------- the exporter


def to_onnx(model, p, path=None, dtype="float64"):
    r"""Write a network built by :func:`pathgeom.rnn`, :func:`pathgeom.cnn` or :func:`pathgeom.mlp` as ONNX.

    Dense layers become Gemm (``transB=1``, the weight in pathgeom's ``(out, in)``
    layout), convolutions Conv, hidden layers are followed by Relu, and the RNN becomes the
    ONNX RNN operator (``activations=["Relu"]``, one per layer).  Initializers are
    float64, named after pathgeom's parameter blocks (``W.0``, ``W_out``, ``b.0``, ...) and
    written in the order of ``p``, so ``from_onnx(to_onnx(net, p))`` has the same graph up
    to node order, and its ``.p`` is ``p``.  (An RNN's bias is the RNN operator's ``B =
    [Wb, Rb]``: ``Wb`` is ``b``, ``Rb`` a zero ``Constant``, which carries no edge.)

    Input ``x``: ``(N, *input_shape)`` for a CNN or MLP, ``(T, N, n_in)`` for an RNN
    (the RNN operator's layout).  Output ``y``: ``(N, n_out)``, or ``(N, T, n_out)`` for
    an RNN with ``outputs="all"``.

    Parameters
    ----------
    model : RNN, CNN or MLP
        From :func:`pathgeom.rnn`, :func:`pathgeom.cnn` or :func:`pathgeom.mlp`.
    p : array_like, shape (model.n_params,)
    path : str or path-like, optional
        Where to save the ``.onnx`` file.
    dtype : {"float64", "float32"}
        The element type of the initializers, input and output.  float64 keeps ``p``
        exactly; float32 is what most runtimes have kernels for (onnxruntime has no
        float64 Conv or RNN).

    Returns
    -------
    onnx.ModelProto

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> net = pathgeom.rnn(n_in=2, hidden=3, n_out=1, T=5, bias=True)
    >>> p = net.init(np.random.default_rng(0), "uniform", scale=0.5)
    >>> m = pathgeom.to_onnx(net, p)
    >>> [n.op_type for n in m.graph.node]
    ['Unsqueeze', 'Constant', 'Concat', 'RNN', 'Squeeze', 'Gemm']
    >>> X = np.random.default_rng(1).normal(size=(4, 5, 2))      # (B, T, n_in)
    >>> X_onnx = X.transpose(1, 0, 2)                              # (T, B, n_in)
    >>> back = pathgeom.from_onnx(m)
    >>> np.allclose(back.forward(X_onnx), net.forward(p, X)), bool(np.array_equal(back.p, p))
    (True, True)

    In float32, for onnxruntime:

    >>> import onnxruntime
    >>> m32 = pathgeom.to_onnx(net, p, dtype="float32")
    >>> sess = onnxruntime.InferenceSession(m32.SerializeToString(),
    ...                                     providers=["CPUExecutionProvider"])
    >>> y = sess.run(None, {"x": X_onnx.astype(np.float32)})[0]
    >>> np.allclose(y, net.forward(p, X), rtol=1e-4, atol=1e-6)
    True
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    from .constructors import RNN
    from .constructors._feedforward import FeedForward

    if not isinstance(model, (RNN, FeedForward)):
        raise TypeError(f"to_onnx takes a network from pathgeom.rnn, pathgeom.cnn or "
                        f"pathgeom.mlp, got {type(model).__name__}; for any other graph "
                        f"there is no dense ONNX form")
    p = as_params(p, model.n_params)
    if dtype not in ("float64", "float32", np.float64, np.float32):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    npt = np.dtype(dtype).type
    blocks = model.unpack(p)
    inits, nodes = [], []
    f64 = TensorProto.DOUBLE if npt is np.float64 else TensorProto.FLOAT

    def init(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=npt), name))
        return name

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    if isinstance(model, RNN):
        T, n_in = model.T, model.n_in
        x_info = helper.make_tensor_value_info("x", f64, [T, "N", n_in])
        names = {}
        for entry in model.layout._entries:
            name, l, _, _ = entry
            if name in ("W_in", "W_rec"):
                names[(name, l)] = init(f"{name}.{l}", blocks[name][l][None])
            elif name == "W_out":
                names[(name, l)] = init("W_out", blocks["W_out"])
            elif name == "b":
                names[(name, l)] = init(f"b.{l}", blocks["b"][l])
            else:
                names[(name, l)] = init("b_out", blocks["b_out"])
        const("axes0", [0])
        const("axes1", [1])
        below = "x"
        for l, H in enumerate(model.hidden):
            ins = [below, names[("W_in", l)], names[("W_rec", l)]]
            if model.bias:   # B = [Wb, Rb]: the bias b, and a zero constant (no edges)
                nodes.append(helper.make_node("Unsqueeze", [names[("b", l)], "axes0"],
                                              [f"Wb.{l}"]))
                nodes.append(helper.make_node("Constant", [], [f"Rb.{l}"],
                                              value=numpy_helper.from_array(np.zeros((1, H), npt))))
                nodes.append(helper.make_node("Concat", [f"Wb.{l}", f"Rb.{l}"], [f"B.{l}"],
                                              axis=1))
                ins.append(f"B.{l}")
            nodes.append(helper.make_node("RNN", ins, [f"Y.{l}", f"Y_h.{l}"],
                                          name=f"rnn.{l}", hidden_size=H,
                                          activations=["Relu"]))
            last = l == model.n_layers - 1
            if not last or model.outputs == "all":
                nodes.append(helper.make_node("Squeeze", [f"Y.{l}", "axes1"], [f"h.{l}"]))
                below = f"h.{l}"
        if model.outputs == "last":
            nodes.append(helper.make_node("Squeeze", [f"Y_h.{model.n_layers - 1}", "axes0"],
                                          ["h_T"]))
            gemm = ["h_T", "W_out"] + (["b_out"] if model.bias else [])
            nodes.append(helper.make_node("Gemm", gemm, ["y"], name="out", transB=1))
            y_shape = ["N", model.n_out]
        else:
            nodes.append(helper.make_node("Transpose", ["W_out"], ["W_out_T"], perm=[1, 0]))
            nodes.append(helper.make_node("MatMul", [below, "W_out_T"],
                                          ["z" if model.bias else "y_tn"]))
            if model.bias:
                nodes.append(helper.make_node("Add", ["z", "b_out"], ["y_tn"]))
            nodes.append(helper.make_node("Transpose", ["y_tn"], ["y"], perm=[1, 0, 2]))
            y_shape = ["N", T, model.n_out]
    else:
        x_info = helper.make_tensor_value_info("x", f64, ["N", *model.input_shape])
        weight_names = [(n, i) for (n, i, _, _) in model.layout._entries
                        if n in ("W", "W_out")]
        bias_names = [(n, i) for (n, i, _, _) in model.layout._entries
                      if n in ("b", "b_out")]
        for (n, i) in weight_names + bias_names:
            value = blocks[n] if i is None else blocks[n][i]
            init(n if i is None else f"{n}.{i}", value)
        below = "x"
        for k, stage in enumerate(model._stages):
            wname = weight_names[k][0] + ("" if weight_names[k][1] is None
                                          else f".{weight_names[k][1]}")
            bname = None
            if model.bias:
                bname = bias_names[k][0] + ("" if bias_names[k][1] is None
                                            else f".{bias_names[k][1]}")
            out = "y" if k == len(model._stages) - 1 else f"z.{k}"
            ins = [below, wname] + ([bname] if bname else [])
            if stage.conv:
                nodes.append(helper.make_node(
                    "Conv", ins, [out], name=f"conv.{k}", kernel_shape=list(stage.kernel),
                    strides=list(stage.stride), pads=list(stage.padding) * 2))
            else:
                if len(stage.in_shape) != 1:
                    nodes.append(helper.make_node("Flatten", [below], [f"flat.{k}"], axis=1))
                    ins[0] = f"flat.{k}"
                nodes.append(helper.make_node("Gemm", ins, [out], name=f"dense.{k}",
                                              transB=1))
            if stage.relu:
                nodes.append(helper.make_node("Relu", [out], [f"h.{k}"]))
                below = f"h.{k}"
        y_shape = ["N", model.n_out]
    graph = helper.make_graph(nodes, f"pathgeom.{type(model).__name__.lower()}", [x_info],
                              [helper.make_tensor_value_info("y", f64, y_shape)], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                          producer_name="pathgeom")
    onnx.checker.check_model(m)
    if path is not None:
        onnx.save(m, str(path))
    return m
