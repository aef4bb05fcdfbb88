"""The walk over an ONNX graph: node ids, values, the program of operations, the graph.

The per-operator rules live in :mod:`.rules` (one function per operator type, in the table
``RULES``); this module holds what they share: allocating node ids, the state of each node
(open for more incoming edges, or closed), reading values, and building the result.

Node states.  A node made by a linear operator (Conv, Gemm, MatMul, pooling) is *open*:
a bias, a residual sum or a Relu may still be applied to it in place.  It is *closed* once
another operation reads it (its value is then final), and an in-place change is allowed
only on open nodes whose tensor has exactly one use in the model.  Otherwise the rule makes
new nodes with fixed-weight edges.  Closed nodes never receive new edges, which gives the
depth certificate used by :meth:`OnnxNetwork.path_quantities`: the edges an operation makes
all leave nodes whose ancestors are final, into nodes made after them, so no path carries
two edges of one operation.
"""

import math

import numpy as np

from ..._errors import GraphError
from ...graph import SharedGraph
from ._base import (_ADVICE, _BIAS, _GENERIC_ADVICE, _INPUT, _LINEAR, _MAX, MIN_OPSET,
                    _describe, _Params, _Units)
from . import twin

class _Importer:
    def __init__(self, onnx, model, param_values, blocks, param_of_init, batch_axis=None):
        self.onnx = onnx
        self.batch_axis = batch_axis
        self.all_static = True
        self.batch_axes = []
        self.model = model
        g = model.graph
        self.kind = np.zeros(1024, dtype=np.int8)
        self.closed = np.zeros(1024, dtype=bool)
        self.n = 0
        self.origins = []            # (first id, tensor name, per-node shape)
        self.ops = []                # the program (twin operations)
        self.rep = {}                # merged node -> node it was merged into
        self.bias = None
        self.values = dict(param_of_init)
        self.producer = {}
        self.uses = {}
        self.p = param_values
        self.blocks = blocks
        self.n_params = int(param_values.size)
        for node in g.node:
            for name in node.input:
                if name:
                    self.uses[name] = self.uses.get(name, 0) + 1
        for out in g.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        self.remaining = dict(self.uses)   # reads still to come, per tensor name
        self._spans = {}                   # tensor name -> (min, max) node id
        numpy_helper = onnx.numpy_helper
        for init in g.initializer:
            if init.name not in self.values:
                self.values[init.name] = numpy_helper.to_array(init)

    # ------------------------------------------------------------------ bookkeeping

    def alloc(self, shape, kind, name, batch=None):
        """``prod(shape)`` new (open) nodes as ids of that shape; ``batch`` names the size-1
        batch axis, left out of the labels."""
        count = math.prod(shape)
        while self.n + count > self.kind.size:
            self.kind = np.concatenate([self.kind, np.zeros_like(self.kind)])
            self.closed = np.concatenate([self.closed, np.zeros_like(self.closed)])
        start = self.n
        self.kind[start:start + count] = kind
        self.n += count
        label_shape = tuple(s for k, s in enumerate(shape) if k != batch)
        self.origins.append((start, name, label_shape))
        return np.arange(start, start + count, dtype=np.int64).reshape(shape)

    def bias_node(self):
        if self.bias is None:
            self.bias = int(self.alloc((1,), _BIAS, "1")[0])
            self.closed[self.bias] = True
        return self.bias

    def emit(self, op):
        self.ops.append(op)
        return op

    def close(self, ids):
        self.closed[np.asarray(ids).ravel()] = True

    def is_open(self, name, v):
        """Whether ``v`` (the tensor ``name``) may be changed in place: all its nodes linear
        and open, each once, the tensor used once in the model, and no other tensor that is
        still to be read shares its nodes (an Identity, Reshape, Slice, ... of it: an alias;
        judged by id ranges, so a doubtful case counts as shared)."""
        ids = v.ids.ravel()
        if not (self.uses.get(name, 0) == 1 and bool(np.all(self.kind[ids] == _LINEAR))
                and not self.closed[ids].any() and twin.distinct(ids)):
            return False
        if not ids.size:
            return True
        lo, hi = int(ids.min()), int(ids.max())
        for other, left in self.remaining.items():
            if left <= 0 or other == name:
                continue
            u = self.values.get(other)
            if isinstance(u, _Units) and u.ids.size:
                span = self._spans.get(other)
                if span is None:
                    span = self._spans[other] = (int(u.ids.min()), int(u.ids.max()))
                if span[0] <= hi and lo <= span[1]:
                    return False
        return True

    def all_inputs(self, ids):
        k = self.kind[np.asarray(ids).ravel()]
        return bool(np.all((k == _INPUT) | (k == _BIAS)))

    def new_nodes_from(self, v, name, weight=1.0, kind=_LINEAR):
        """New nodes ``y = weight * v`` (fixed edges), same shape and batch axis as ``v``."""
        y = self.alloc(v.ids.shape, kind, name, v.batch)
        self.close(v.ids)
        self.emit(twin.AddOp(v.per_example(), np.moveaxis(y, v.batch, 0)[0], weight))
        return _Units(y, v.batch)

    # ------------------------------------------------------------------ errors

    def fail(self, node, message):
        name = node.name or f"producing {node.output[0]!r}"
        if "batch axis" in message and self.batch_axis is None and self.all_static:
            message += (f" (the batch axis of the model input was taken to be "
                        f"{self.batch_axes[0]}, every axis having a fixed size; if the "
                        f"batch is another axis, pass batch_axis= to from_onnx)")
        raise GraphError(f"ONNX node {name!r} ({node.op_type}): {message}")

    def where(self, name):
        who = self.producer.get(name)
        return f"{name!r}" + (f" (from node {who})" if who else "")

    def declared_batch(self):
        """The batch size the model was exported for: the fixed size of every input's batch
        axis when they all have one and agree, else None (a dynamic batch)."""
        sizes = set(self.declared_batches)
        return sizes.pop() if len(sizes) == 1 and None not in sizes else None

    # ------------------------------------------------------------------ value access

    def v(self, node, inputs, k):
        if k >= len(inputs) or not inputs[k]:
            return None
        name = inputs[k]
        if name not in self.values:
            self.fail(node, f"input {name!r} is not defined before this node (the graph is "
                            f"not topologically sorted, or the input is missing)")
        return self.values[name]

    def units(self, node, v, what):
        if not isinstance(v, _Units):
            self.fail(node, f"{what} is {_describe(v)}; this operator is supported only "
                            f"when {what} is an activation tensor computed from the inputs")
        return v

    def params(self, node, name, what, v=None):
        """Parameter indices of input ``name``; zero constants become -1 (no edge)."""
        v = self.values.get(name) if v is None else v
        if isinstance(v, _Params):
            return v.idx
        if isinstance(v, _Units):
            self.fail(node, f"{what} {self.where(name)} is an activation, not a weight: "
                            f"a product of two activations is not a path network edge; "
                            f"only initializers can be weights")
        arr = np.asarray(v)
        if np.issubdtype(arr.dtype, np.floating) and not arr.any():
            return np.full(arr.shape, -1, dtype=np.int64)
        self.fail(node, f"{what} {name!r} is a constant, not a floating-point initializer: "
                        f"a fixed non-zero weight of a linear map is not a parameter; store "
                        f"it as an initializer to make it a trainable, shared parameter")

    def const(self, node, name, what):
        v = self.values.get(name)
        if isinstance(v, (_Units, _Params)):
            self.fail(node, f"{what} {self.where(name)} must be a constant (an integer "
                            f"initializer or Constant), got {_describe(v)}")
        return np.asarray(v)

    def source(self, node, name, v):
        """``v`` is read by a linear operator: its nodes are final from now on."""
        self.close(v.ids)
        return v

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
        self.declared_batches = []     # the batch axis's fixed size per input, or None
        for inp in g.input:
            if inp.name in self.values:  # an initializer also listed as an input
                continue
            t = inp.type.tensor_type
            if not t.HasField("shape"):
                raise GraphError(f"ONNX input {inp.name!r} has no shape; export the model "
                                 f"with a fixed input shape (the batch axis may be dynamic)")
            dims = list(t.shape.dim)
            k_in = len(self.input_names)
            if self.batch_axis is not None:
                axis = self.batch_axis[k_in] if isinstance(self.batch_axis, (list, tuple)) \
                    else self.batch_axis
                if not isinstance(axis, (int, np.integer)) or not 0 <= axis < len(dims):
                    raise ValueError(f"batch_axis {axis!r} for input {inp.name!r} with "
                                     f"{len(dims)} axes; give an axis 0..{len(dims) - 1}")
                axis = int(axis)
            else:
                dynamic = [k for k, d in enumerate(dims) if not d.HasField("dim_value")
                           or d.dim_value < 1]
                self.all_static = self.all_static and not dynamic
                axis = dynamic[0] if len(dynamic) == 1 else self._rnn_x_layout(inp.name)
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
                                     f"(axis {axis}) may be dynamic (pass batch_axis= to "
                                     f"from_onnx if the batch is another axis)")
                shape.append(int(d.dim_value))
            d = dims[axis]
            self.declared_batches.append(int(d.dim_value) if d.HasField("dim_value") and
                                         d.dim_value >= 1 else None)
            ids = self.alloc(tuple(shape), _INPUT, inp.name)
            self.closed[ids.ravel()] = True
            self.values[inp.name] = _Units(np.expand_dims(ids, axis), axis)
            self.input_names.append(inp.name)
            self.input_shapes.append(tuple(shape))
            self.batch_axes.append(axis)
            self.input_ids.append(ids.ravel())
        if not self.input_names:
            raise GraphError("the ONNX model has no input (every input is an initializer)")

    def read_outputs(self):
        outs, self.output_names, self.output_shapes = [], [], []
        seen = set()
        for out in self.model.graph.output:
            v = self.values.get(out.name)
            if not isinstance(v, _Units):
                raise GraphError(f"ONNX output {out.name!r} is {_describe(v)}, not computed "
                                 f"from the inputs; pathgeom needs outputs that depend on "
                                 f"the inputs")
            ids = v.per_example()
            if not self.is_open(out.name, v) or seen.intersection(ids.ravel().tolist()):
                # outputs are linear sinks: read anything else through fixed edges of 1
                v = self.new_nodes_from(v, out.name)
                ids = v.per_example()
            seen.update(ids.ravel().tolist())
            outs.append(ids.ravel())
            self.output_names.append(out.name)
            self.output_shapes.append(tuple(ids.shape))
        if not outs:
            raise GraphError("the ONNX model has no output")
        self.output_ids = np.concatenate(outs)

    # ------------------------------------------------------------------ the walk

    def run(self, rules):
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
                self.fail(node, f"operator of domain {node.domain!r}; pathgeom reads the "
                                f"standard ONNX operators only")
            rule = rules.get(node.op_type)
            if rule is None:
                advice = _ADVICE.get(node.op_type, _GENERIC_ADVICE)
                self.fail(node, f"operator {node.op_type} is not supported: {advice}")
            attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
            outs = rule(self, node, list(node.input), attrs)
            label = repr(node.name or node.op_type)
            for name, v in zip(node.output, outs):
                if name:
                    self.values[name] = v
                    self.producer[name] = label
            extra = [n for n in node.output[len(outs):] if n and self.uses.get(n)]
            if extra:
                self.fail(node, f"output {extra[0]!r} is not supported")
            for name in node.input:
                if name:
                    self.remaining[name] = self.remaining.get(name, 0) - 1
        self.read_outputs()
        return self.finish()

    # ------------------------------------------------------------------ the result

    def finish(self):
        n = self.n
        rep = np.arange(n, dtype=np.int64)
        if self.rep:
            keys = np.fromiter(self.rep.keys(), dtype=np.int64)
            rep[keys] = np.fromiter(self.rep.values(), dtype=np.int64)
            while True:
                nxt = rep[rep]
                if np.array_equal(nxt, rep):
                    break
                rep = nxt
        inputs = np.concatenate(self.input_ids)
        if self.bias is not None:
            inputs = np.append(inputs, self.bias)
        return Program(ops=self.ops, n_nodes=n, kind=self.kind[:n].copy(), rep=rep,
                       input_ids=inputs, output_ids=self.output_ids,
                       n_params=self.n_params, origins=self.origins)


class Program:
    """What an import made: the operations, node kinds, inputs and outputs (walk ids)."""

    def __init__(self, ops, n_nodes, kind, rep, input_ids, output_ids, n_params, origins):
        self.ops = ops
        self.n_nodes = n_nodes
        self.kind = kind
        self.rep = rep
        self.input_ids = input_ids
        self.output_ids = output_ids
        self.n_params = n_params
        self.origins = origins
        self.dense = all(op.dense for op in ops)
        self._repeated = None
        repeated = self.repeated_params()
        for op in ops:
            op.exclusive = True
            for arr in op.params:
                ix = twin._Index(arr)
                if ix.sl is None and not ix.unique:
                    op.exclusive = False
                elif repeated[ix.sl if ix.sl is not None else ix.flat].any():
                    op.exclusive = False

    def repeated_params(self):
        """Parameters that may sit twice on one path: those of looping operations, and
        those that more than one operation uses (the depth certificate fails for them)."""
        if self._repeated is None:
            sets, loops = [], []
            for op in self.ops:
                for arr in op.params:
                    ix = twin._Index(arr)
                    used = (np.arange(ix.sl.start, ix.sl.stop) if ix.sl is not None
                            else twin.sorted_unique(ix.flat))
                    used = used[used >= 0]
                    sets.append(used)
                    if op.loops:
                        loops.append(used)
            n = self.n_params
            count = (np.bincount(np.concatenate(sets), minlength=n) if sets
                     else np.zeros(n, dtype=np.int64))
            rep = count > 1
            for used in loops:
                rep[used] = True
            self._repeated = rep
        return self._repeated

    def graph(self):
        """The :class:`~pathgeom.SharedGraph` of the program (merged nodes relabelled)."""
        parts = [e for op in self.ops for e in op.edges()]
        if parts:
            src = np.concatenate([e[0] for e in parts])
            dst = np.concatenate([e[1] for e in parts])
            par = np.concatenate([e[2] for e in parts])
            weight = np.concatenate([np.zeros(e[0].size) if e[3] is None else e[3]
                                     for e in parts])
        else:
            src = dst = par = np.zeros(0, dtype=np.int64)
            weight = np.zeros(0)
        n, rep = self.n_nodes, self.rep
        # nodes touched by no edge and no input/output (e.g. ids of an unused tensor) go
        keep = rep == np.arange(n)
        used = np.zeros(n, dtype=bool)
        used[rep[src]] = used[rep[dst]] = True
        used[rep[self.input_ids]] = used[rep[self.output_ids]] = True
        keep &= used
        new_id = np.cumsum(keep) - 1
        relabel = new_id[rep]
        kinds = self.kind[keep]
        kind_codes = np.where(kinds == _MAX, 2, np.where(kinds == _LINEAR, 0, 1))
        graph = SharedGraph.from_arrays(relabel[src], relabel[dst], par,
                                        relabel[self.input_ids], relabel[self.output_ids],
                                        n_nodes=int(keep.sum()), n_params=self.n_params,
                                        weight=weight, kind=kind_codes.astype(np.int64))
        return graph, np.flatnonzero(keep)

    def label_function(self, old_of_new):
        starts = np.array([s for s, _, _ in self.origins], dtype=np.int64)
        origins = self.origins

        def label(node_id):
            old = int(old_of_new[node_id])
            k = int(np.searchsorted(starts, old, side="right") - 1)
            start, name, shape = origins[k]
            if name == "1":
                return "1"
            where = np.unravel_index(old - start, shape) if shape else ()
            return f"{name}[{', '.join(str(int(w)) for w in where)}]"
        return label
