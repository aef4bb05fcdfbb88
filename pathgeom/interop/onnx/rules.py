"""One rule per ONNX operator type: ``RULES[op_type](imp, node, inputs, attrs) -> outputs``.

A rule reads its inputs' values (``_Units``: activations as node ids; ``_Params``:
parameter indices of an initializer; numpy arrays: constants), allocates the nodes of its
output, appends the operations (:mod:`.twin`) that connect them and returns the output
values.  Adding an operator is adding one function here with the :func:`rule` decorator.
Refused operators need no rule: their advice is in ``_base._ADVICE``.
"""

import math

import numpy as np

from ._base import _LINEAR, _MAX, _RELU, _describe, _Params, _Units
from . import twin

RULES = {}


def rule(*op_types):
    """Register the decorated function as the rule of ``op_types``."""
    def register(fn):
        for op in op_types:
            RULES[op] = fn
        return fn
    return register


def _str(value):
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------- relabelling


def _relabel(imp, node, v, fn):
    """Apply an index-array function to a value (units keep track of the batch axis)."""
    if isinstance(v, _Units):
        ids, batch = fn(v.ids, v.batch)
        return _Units(ids, batch)
    if isinstance(v, _Params):
        return _Params(fn(v.idx, None)[0])
    return fn(np.asarray(v), None)[0]


def _ndim(v):
    return (v.ids if isinstance(v, _Units) else v.idx if isinstance(v, _Params)
            else np.asarray(v)).ndim


@rule("Identity")
def _identity(imp, node, inputs, attrs):
    return [imp.v(node, inputs, 0)]


@rule("Dropout")
def _dropout(imp, node, inputs, attrs):
    training = imp.v(node, inputs, 2)
    if training is not None and np.asarray(training).any():
        imp.fail(node, "Dropout in training mode; export the model in eval mode")
    return [imp.v(node, inputs, 0)]


#: ``Cast`` targets read as the identity on activations and weights (pathgeom computes in
#: float64 whatever the model's float type; a cast to any other type changes the numbers).
_FLOAT_CASTS = ("FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16")


@rule("Cast")
def _cast(imp, node, inputs, attrs):
    v = imp.v(node, inputs, 0)
    to = attrs["to"]
    name = imp.onnx.TensorProto.DataType.Name(to)
    if isinstance(v, (_Units, _Params)) and name in _FLOAT_CASTS:
        return [v]
    if isinstance(v, _Units):
        imp.fail(node, f"it casts the activation {imp.where(inputs[0])} to {name}, which "
                       f"rounds or truncates every value (not a linear map); remove the cast "
                       f"or cast to a float type (float32, float64, float16, bfloat16)")
    if isinstance(v, _Params):
        # a float initializer used as a constant (a shape, an index): its values, cast
        v = np.where(v.idx >= 0, imp.p[np.maximum(v.idx, 0)], 0.0) if v.idx.size else \
            np.zeros(v.idx.shape)
    dtype = imp.onnx.helper.tensor_dtype_to_np_dtype(to)
    return [np.asarray(v).astype(dtype)]


@rule("Constant")
def _constant(imp, node, inputs, attrs):
    if "value" in attrs:
        return [imp.onnx.numpy_helper.to_array(attrs["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=dtype)]
    imp.fail(node, f"unsupported Constant attribute {sorted(attrs)}")


@rule("ConstantOfShape")
def _constant_of_shape(imp, node, inputs, attrs):
    shape = imp.const(node, inputs[0], "shape").astype(np.int64).ravel()
    value = (imp.onnx.numpy_helper.to_array(attrs["value"]) if "value" in attrs
             else np.zeros(1, dtype=np.float32))
    return [np.full(shape, value.ravel()[0], dtype=value.dtype)]


@rule("Expand")
def _expand(imp, node, inputs, attrs):
    v = imp.v(node, inputs, 0)
    shape = imp.const(node, inputs[1], "shape").astype(np.int64).ravel().tolist()
    if isinstance(v, (_Units, _Params)):
        imp.fail(node, f"Expand of {_describe(v)} repeats units or weights; only constants "
                       f"(such as an RNN's zero initial state) may be expanded")
    a = np.asarray(v)
    return [np.broadcast_to(a, np.broadcast_shapes(a.shape, tuple(shape))).copy()]


@rule("Shape")
def _shape(imp, node, inputs, attrs):
    v = imp.v(node, inputs, 0)
    if isinstance(v, _Units):
        shape = np.array(v.ids.shape, dtype=np.int64)
        shape[v.batch] = 0   # "copy the batch size" in a following Reshape
    else:
        shape = np.array(np.shape(v.idx if isinstance(v, _Params) else v), dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [shape[start:end]]


@rule("Transpose")
def _transpose(imp, node, inputs, attrs):
    def fn(a, batch):
        perm = attrs.get("perm", list(range(a.ndim))[::-1])
        return a.transpose(perm), None if batch is None else list(perm).index(batch)
    return [_relabel(imp, node, imp.v(node, inputs, 0), fn)]


def _axes(imp, node, inputs, attrs, ndim):
    if len(inputs) > 1 and inputs[1]:
        axes = imp.const(node, inputs[1], "axes").ravel().tolist()
    else:
        axes = attrs.get("axes")
    if axes is None:
        return None
    return sorted(int(a) % ndim for a in axes)


@rule("Squeeze")
def _squeeze(imp, node, inputs, attrs):
    v = imp.v(node, inputs, 0)
    axes = _axes(imp, node, inputs, attrs, _ndim(v))

    def fn(a, batch):
        ax = axes
        if ax is None:
            ax = [k for k, s in enumerate(a.shape) if s == 1 and k != batch]
        if batch is not None and batch in ax:
            imp.fail(node, "it removes the batch axis; pathgeom keeps one example per row")
        if any(a.shape[k] != 1 for k in ax):
            imp.fail(node, f"axes {ax} of a tensor of shape {a.shape} are not all 1")
        new_batch = None if batch is None else batch - sum(k < batch for k in ax)
        return np.squeeze(a, axis=tuple(ax)), new_batch
    return [_relabel(imp, node, v, fn)]


@rule("Unsqueeze")
def _unsqueeze(imp, node, inputs, attrs):
    v = imp.v(node, inputs, 0)
    n_new = len(_axes(imp, node, inputs, attrs, 1000) or [])
    axes = _axes(imp, node, inputs, attrs, _ndim(v) + n_new)

    def fn(a, batch):
        out = a
        for k in axes:
            out = np.expand_dims(out, k)
        if batch is None:
            return out, None
        kept = [k for k in range(out.ndim) if k not in axes]
        return out, kept[batch]
    return [_relabel(imp, node, v, fn)]


def _target_shape(imp, node, in_shape, shape, allowzero):
    shape = [int(s) for s in shape]
    out = []
    for k, s in enumerate(shape):
        if s == 0 and not allowzero:
            if k >= len(in_shape):
                imp.fail(node, f"shape {shape}: 0 at axis {k} copies an axis the input lacks")
            s = in_shape[k]
        out.append(s)
    if out.count(-1) > 1:
        imp.fail(node, f"shape {shape} has more than one -1")
    if -1 in out:
        known = math.prod(s for s in out if s != -1)
        total = math.prod(in_shape)
        if known == 0 or total % known:
            imp.fail(node, f"cannot reshape {tuple(in_shape)} to {shape}")
        out[out.index(-1)] = total // known
    if math.prod(out) != math.prod(in_shape):
        imp.fail(node, f"cannot reshape {tuple(in_shape)} to {shape}")
    return out


@rule("Reshape")
def _reshape(imp, node, inputs, attrs):
    shape = imp.const(node, inputs[1], "shape").ravel().tolist()
    allowzero = attrs.get("allowzero", 0)

    def fn(a, batch):
        if batch is None:
            return a.reshape(_target_shape(imp, node, a.shape, shape, allowzero)), None
        if batch != 0:
            imp.fail(node, f"reshaping a tensor whose batch axis is {batch}; transpose the "
                           f"batch axis to the front first")
        if not shape or shape[0] < -1:
            imp.fail(node, f"shape {shape} does not keep the batch axis first")
        first = int(shape[0])
        if first >= 1:
            declared = imp.declared_batch()
            if first != declared:
                _fixed_batch(imp, node, shape, first, declared)
        rest = shape[1:]
        if first == -1 and -1 not in rest and 0 not in rest and \
                math.prod(rest) != math.prod(a.shape[1:]):
            imp.fail(node, f"shape {shape} moves elements between examples: an example "
                           f"has {math.prod(a.shape[1:])} elements here, a row of the "
                           f"result {math.prod(rest)}; keep the batch axis (0 or -1 first, "
                           f"then the shape of one example)")
        rest = _target_shape(imp, node, a.shape[1:], rest, allowzero)
        return a.reshape([1] + rest), 0
    return [_relabel(imp, node, imp.v(node, inputs, 0), fn)]


def _fixed_batch(imp, node, shape, first, declared):
    """Refuse a Reshape whose first (batch) axis is a fixed size other than the batch size
    the model was exported for."""
    if declared is None:
        what = (f"the model's batch axis is dynamic, so at any batch size other than "
                f"{first} this Reshape moves elements between examples"
                + (" (a batch of 3 becomes one row made of the 3 examples)"
                   if first == 1 else ""))
    else:
        what = (f"the model was exported for batch size {declared}, at which this Reshape "
                f"moves elements between examples")
    imp.fail(node, f"shape {shape} fixes the first (batch) axis at {first}, but {what}; "
                   f"pathgeom describes one example and applies it to every row. Export the "
                   f"model with the batch axis kept: -1 or 0 as its size (torch: "
                   f"x.reshape(x.shape[0], -1) or x.flatten(1)), or Flatten(axis=1), and a "
                   f"dynamic batch axis (dynamic_axes / dynamic_shapes)")


@rule("Flatten")
def _flatten(imp, node, inputs, attrs):
    def fn(a, batch):
        axis = attrs.get("axis", 1) % max(a.ndim, 1) if a.ndim else 0
        if batch is not None and (batch != 0 or axis != 1):
            imp.fail(node, f"Flatten(axis={attrs.get('axis', 1)}) of a tensor with batch "
                           f"axis {batch} mixes examples; use axis=1 with the batch axis "
                           f"first")
        return a.reshape(math.prod(a.shape[:axis]), -1), batch
    return [_relabel(imp, node, imp.v(node, inputs, 0), fn)]


@rule("Gather")
def _gather(imp, node, inputs, attrs):
    idx = imp.const(node, inputs[1], "indices").astype(np.int64)

    def fn(a, batch):
        axis = attrs.get("axis", 0) % a.ndim
        if batch is not None and axis == batch:
            imp.fail(node, "it selects along the batch axis")
        i = np.where(idx < 0, idx + a.shape[axis], idx)
        out = np.take(a, i, axis=axis)
        if batch is None:
            return out, None
        return out, batch if batch < axis else batch + i.ndim - 1
    return [_relabel(imp, node, imp.v(node, inputs, 0), fn)]


@rule("Slice")
def _slice(imp, node, inputs, attrs):
    starts = imp.const(node, inputs[1], "starts").ravel().tolist()
    ends = imp.const(node, inputs[2], "ends").ravel().tolist()
    axes = (imp.const(node, inputs[3], "axes").ravel().tolist()
            if len(inputs) > 3 and inputs[3] else list(range(len(starts))))
    steps = (imp.const(node, inputs[4], "steps").ravel().tolist()
             if len(inputs) > 4 and inputs[4] else [1] * len(starts))

    def fn(a, batch):
        where = [slice(None)] * a.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            ax = int(ax) % a.ndim
            if batch is not None and ax == batch:
                imp.fail(node, "it slices the batch axis")
            where[ax] = slice(int(s), int(e), int(st))
        return a[tuple(where)], batch
    return [_relabel(imp, node, imp.v(node, inputs, 0), fn)]


@rule("Split")
def _split(imp, node, inputs, attrs):
    v = imp.v(node, inputs, 0)
    ndim = _ndim(v)
    axis = attrs.get("axis", 0) % ndim
    n_out = len(node.output)
    if len(inputs) > 1 and inputs[1]:
        sizes = imp.const(node, inputs[1], "split").ravel().tolist()
    elif "split" in attrs:
        sizes = list(attrs["split"])
    else:
        size = (v.ids if isinstance(v, _Units) else v.idx if isinstance(v, _Params)
                else np.asarray(v)).shape[axis]
        chunk = -(-size // n_out)
        sizes = [min(chunk, size - k * chunk) for k in range(n_out)]
    cuts = np.cumsum(sizes)[:-1]
    outs = []
    for k in range(len(sizes)):
        def fn(a, batch, k=k):
            if batch is not None and axis == batch:
                imp.fail(node, "it splits the batch axis")
            return np.split(a, cuts, axis=axis)[k], batch
        outs.append(_relabel(imp, node, v, fn))
    return outs


@rule("Concat")
def _concat(imp, node, inputs, attrs):
    vals = [imp.v(node, inputs, k) for k in range(len(inputs))]
    axis = attrs["axis"]
    units = [v for v in vals if isinstance(v, _Units)]
    if units:
        if len(units) != len(vals):
            imp.fail(node, "it joins activations with weights or constants")
        batch = units[0].batch
        if any(u.batch != batch for u in units):
            imp.fail(node, "its inputs have their batch axes in different places")
        ax = axis % units[0].ids.ndim
        if ax == batch:
            imp.fail(node, "it concatenates along the batch axis")
        return [_Units(np.concatenate([u.ids for u in units], axis=ax), batch)]
    if any(isinstance(v, _Params) for v in vals):
        idx = [imp.params(node, name, "input", v) for name, v in zip(inputs, vals)]
        return [_Params(np.concatenate(idx, axis=axis))]
    return [np.concatenate([np.asarray(v) for v in vals], axis=axis)]


# --------------------------------------------------------------------------- activations


@rule("Relu")
def _relu(imp, node, inputs, attrs):
    v = imp.units(node, imp.v(node, inputs, 0), "the input")
    if imp.is_open(inputs[0], v):
        imp.kind[v.ids.ravel()] = _RELU
        imp.close(v.ids)
        imp.emit(twin.ReluOp(v.per_example()))
        return [v]
    # used elsewhere too, or not a linear output: ReLU units fed by fixed edges of 1
    out = imp.new_nodes_from(v, node.output[0], 1.0, kind=_RELU)
    imp.close(out.ids)
    imp.emit(twin.ReluOp(out.per_example()))
    return [out]


# --------------------------------------------------------------------------- linear maps


@rule("MatMul")
def _matmul(imp, node, inputs, attrs):
    A = imp.v(node, inputs, 0)
    W_v = imp.v(node, inputs, 1)
    if not isinstance(A, _Units) and not isinstance(W_v, _Units) and \
            not isinstance(A, _Params) and not np.asarray(A).any():
        # a zero constant times weights (an RNN's zero initial state): zero, no edges
        W = imp.params(node, inputs[1], "the second input")
        A = np.asarray(A)
        return [np.zeros(A.shape[:-1] + W.shape[1:], dtype=np.float64)]
    if not isinstance(A, _Units):
        imp.fail(node, f"its first input is {_describe(A)}; pathgeom supports "
                       f"activations @ weights (MatMul(x, W) with W an initializer)")
    W = imp.params(node, inputs[1], "the second input")
    if W.ndim != 2:
        imp.fail(node, f"the weight has shape {W.shape}; MatMul needs a matrix (K, M)")
    if A.ids.ndim < 2 or A.batch == A.ids.ndim - 1:
        imp.fail(node, "the contracted (last) axis of the activations is the batch axis")
    K, M = W.shape
    if A.ids.shape[-1] != K:
        imp.fail(node, f"shapes {A.ids.shape} (batch axis {A.batch} per example) and "
                       f"{W.shape} do not match")
    imp.source(node, inputs[0], A)
    out = imp.alloc(A.ids.shape[:-1] + (M,), _LINEAR, node.output[0], A.batch)
    y = _Units(out, A.batch)
    imp.emit(twin.MatMulOp(A.per_example(), y.per_example(), W,
                           imp.all_inputs(A.ids)))
    return [y]


@rule("Gemm")
def _gemm(imp, node, inputs, attrs):
    A = imp.v(node, inputs, 0)
    if not isinstance(A, _Units):
        imp.fail(node, f"its input A is {_describe(A)}; pathgeom supports Gemm(x, W, b) "
                       f"with activations x and initializers W, b")
    a = A.ids.T if attrs.get("transA", 0) else A.ids
    batch = (1 - A.batch) if attrs.get("transA", 0) else A.batch
    if a.ndim != 2 or batch != 0:
        imp.fail(node, f"A must be a matrix (batch, features), got shape {A.ids.shape} "
                       f"with the batch axis at {A.batch}")
    W = imp.params(node, inputs[1], "B")
    _unfolded_scalar(imp, node, attrs, "alpha", inputs[1], W)
    if W.ndim != 2:
        imp.fail(node, f"B has shape {W.shape}; Gemm needs a matrix")
    W = W.T if attrs.get("transB", 0) else W     # (K, M)
    K, M = W.shape
    if a.shape[1] != K:
        imp.fail(node, f"A has {a.shape[1]} features per example but B has {K} rows")
    imp.source(node, inputs[0], A)
    out = imp.alloc((1, M), _LINEAR, node.output[0], 0)
    imp.emit(twin.MatMulOp(a[0], out[0], W, imp.all_inputs(a)))
    if len(inputs) > 2 and inputs[2]:
        C = imp.params(node, inputs[2], "C")
        _unfolded_scalar(imp, node, attrs, "beta", inputs[2], C)
        _bias(imp, node, out, C, 0)
    return [_Units(out, 0)]


def _unfolded_scalar(imp, node, attrs, key, name, idx):
    """``alpha``/``beta`` still != 1 here (:func:`.reading.fold_gemm_scalars` folds them into
    initializers read directly): refused unless what it scales is a constant zero."""
    value = float(attrs.get(key, 1.0))
    if value != 1.0 and bool(np.any(idx >= 0)):
        what = "B" if key == "alpha" else "C"
        imp.fail(node, f"{key}={value:g} scales {what} {imp.where(name)}, which is not an "
                       f"initializer read directly by the Gemm: pathgeom folds {key} into "
                       f"{what}'s initializer (the parameters become {key} * {what}); let "
                       f"the Gemm read the initializer itself (transB=1 instead of a "
                       f"Transpose node), or fold {key} into the weights before export")


def _bias(imp, node, ids, C, batch, fixed=False):
    """Bias edges from the bias node to ``ids`` (full shape) on the broadcast ``C``."""
    try:
        shape = np.broadcast_shapes(C.shape, ids.shape)
    except ValueError:
        shape = None
    if shape != ids.shape:
        imp.fail(node, f"the bias of shape {C.shape} does not broadcast to the output of "
                       f"shape {ids.shape} (batch axis {batch} of size 1): a bias must be "
                       f"the same for every example")
    full = C.reshape((1,) * (ids.ndim - C.ndim) + C.shape)
    per = np.moveaxis(full, batch, 0)[0]
    y = np.moveaxis(ids, batch, 0)[0]
    if fixed:
        if np.any(per != 0):
            imp.emit(twin.BiasOp(imp.bias_node(), y, values=per))
    elif np.any(per >= 0):
        imp.emit(twin.BiasOp(imp.bias_node(), y, C=per))


def _pads(imp, node, attrs, S, K, strides, dil):
    nsp = len(S)
    pads = list(attrs.get("pads", [0] * (2 * nsp)))
    auto = _str(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nsp)
        for a in range(nsp):
            out = -(-S[a] // strides[a])
            total = max(0, (out - 1) * strides[a] + dil[a] * (K[a] - 1) + 1 - S[a])
            small, big = total // 2, total - total // 2
            pads[a], pads[a + nsp] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * nsp)
    for a in range(nsp):
        n_out = (S[a] + pads[a] + pads[a + nsp] - dil[a] * (K[a] - 1) - 1) // strides[a] + 1
        if n_out < 1:
            imp.fail(node, f"the kernel does not fit the padded input along spatial axis {a}")
    return pads


def _spatial(imp, node, X, what="X"):
    if X.batch != 0 or X.ids.ndim < 3:
        imp.fail(node, f"{what} must be (batch, channels, *spatial), got shape "
                       f"{X.ids.shape} with the batch axis at {X.batch}")


@rule("Conv")
def _conv(imp, node, inputs, attrs):
    X = imp.units(node, imp.v(node, inputs, 0), "the input X")
    _spatial(imp, node, X)
    W = imp.params(node, inputs[1], "the weight W")
    nsp = X.ids.ndim - 2
    C = X.ids.shape[1]
    G = attrs.get("group", 1)
    M = W.shape[0]
    if W.ndim != nsp + 2 or W.shape[1] * G != C or M % G:
        imp.fail(node, f"the weight of shape {W.shape} does not fit the input of shape "
                       f"{X.ids.shape} with group={G}")
    S, K = X.ids.shape[2:], W.shape[2:]
    strides = list(attrs.get("strides", [1] * nsp))
    dil = list(attrs.get("dilations", [1] * nsp))
    pads = _pads(imp, node, attrs, S, K, strides, dil)
    imp.source(node, inputs[0], X)
    x = X.per_example()
    out_shape, _ = twin._window_geometry(S, K, strides, pads, dil)
    out = imp.alloc((1, M) + out_shape, _LINEAR, node.output[0], 0)
    imp.emit(twin.ConvOp(x, out[0], W, strides, pads, dil, G, imp.all_inputs(x)))
    if len(inputs) > 2 and inputs[2]:
        B = imp.params(node, inputs[2], "the bias B")
        if B.shape != (M,):
            imp.fail(node, f"the bias has shape {B.shape}, expected ({M},)")
        _bias(imp, node, out, B.reshape((1, M) + (1,) * nsp), 0)
    return [_Units(out, 0)]


@rule("Add")
def _add(imp, node, inputs, attrs):
    a, b = imp.v(node, inputs, 0), imp.v(node, inputs, 1)
    if not isinstance(a, _Units):
        a, b, inputs = b, a, inputs[::-1]
    if not isinstance(a, _Units):
        imp.fail(node, "an Add of two weights or constants; fold it before export")
    if isinstance(b, _Units):
        return [_add_units(imp, node, inputs, a, b)]
    fixed = not isinstance(b, _Params)
    if fixed:
        C = np.asarray(b, dtype=np.float64)
        if not C.any():
            return [a]                           # adding zero
    else:
        C = b.idx
    if C.ndim > a.ids.ndim:
        extra = C.ndim - a.ids.ndim
        if any(d != 1 for d in C.shape[:extra]):
            imp.fail(node, f"the bias of shape {C.shape} has more axes than the activations "
                           f"{a.ids.shape} and they are not of size 1")
        a = _lift(a, extra)
    full = C.reshape((1,) * (a.ids.ndim - C.ndim) + C.shape)
    if full.shape[a.batch] != 1:
        imp.fail(node, f"the bias of shape {C.shape} varies along the batch axis")
    if not imp.is_open(inputs[0], a):
        a = imp.new_nodes_from(a, node.output[0])      # x + b on new linear units
    _bias(imp, node, a.ids, full, a.batch, fixed=fixed)
    return [a]


def _lift(v, extra):
    """``v`` with ``extra`` leading axes of size 1 (numpy broadcasting's view of it)."""
    return _Units(v.ids.reshape((1,) * extra + v.ids.shape), v.batch + extra)


def _add_units(imp, node, inputs, a, b):
    """A sum of two activations: merged nodes, fixed edges of 1 into an open one, or new
    linear units with fixed edges of 1 from both (a residual connection)."""
    if a.ids.ndim != b.ids.ndim:      # broadcasting pads the shorter shape with 1s in front
        if a.ids.ndim < b.ids.ndim:
            a = _lift(a, b.ids.ndim - a.ids.ndim)
        else:
            b = _lift(b, a.ids.ndim - b.ids.ndim)
    if b.ids.shape != a.ids.shape or b.batch != a.batch:
        imp.fail(node, f"an Add of activations of shapes {a.ids.shape} and {b.ids.shape} "
                       f"(batch axes {a.batch}, {b.batch}); they must have the same shape")
    if inputs[0] == inputs[1] or np.array_equal(a.ids, b.ids):   # x + x, x + Identity(x)
        return imp.new_nodes_from(a, node.output[0], 2.0)
    shared = not twin.distinct(np.concatenate([a.ids.ravel(), b.ids.ravel()]))
    if shared:          # overlapping slices of one tensor: new units, edges from both
        y = imp.new_nodes_from(a, node.output[0])
        imp.close(b.ids)
        imp.emit(twin.AddOp(b.per_example(), y.per_example(), 1.0))
        return y
    open_a, open_b = imp.is_open(inputs[0], a), imp.is_open(inputs[1], b)
    if open_a and open_b:
        # z_a + z_b: one node with the incoming edges of both
        for u, w in zip(b.ids.ravel().tolist(), a.ids.ravel().tolist()):
            imp.rep[u] = w
        imp.close(b.ids)
        imp.emit(twin.AddOp(b.per_example(), a.per_example(), 1.0, merge=True))
        return a
    if open_b and not open_a:
        a, b = b, a
        open_a = True
    if open_a:
        imp.close(b.ids)
        imp.emit(twin.AddOp(b.per_example(), a.per_example(), 1.0))
        return a
    y = imp.new_nodes_from(a, node.output[0])
    imp.close(b.ids)
    imp.emit(twin.AddOp(b.per_example(), y.per_example(), 1.0))
    return y


# --------------------------------------------------------------------------- pooling


def _pool(imp, node, inputs, attrs, kind):
    X = imp.units(node, imp.v(node, inputs, 0), "the input X")
    _spatial(imp, node, X)
    nsp = X.ids.ndim - 2
    K = list(attrs["kernel_shape"])
    S = X.ids.shape[2:]
    strides = list(attrs.get("strides", [1] * nsp))
    dil = list(attrs.get("dilations", [1] * nsp))
    pads = _pads(imp, node, attrs, S, K, strides, dil)
    if attrs.get("ceil_mode", 0):
        for a in range(nsp):
            span = S[a] + pads[a] + pads[a + nsp] - dil[a] * (K[a] - 1) - 1
            if span % strides[a]:
                imp.fail(node, "ceil_mode=1 adds windows that start in the padding; export "
                               "with ceil_mode=False (the default), or pad so that the "
                               "windows fit exactly")
    imp.source(node, inputs[0], X)
    x = X.per_example()
    out_shape, _ = twin._window_geometry(S, K, strides, pads, dil)
    out = imp.alloc((1, x.shape[0]) + out_shape, _MAX if kind == "max" else _LINEAR,
                    node.output[0], 0)
    if kind == "max":
        imp.close(out)
    imp.emit(twin.PoolOp(x, out[0], kind, K, strides, pads, dil,
                         bool(attrs.get("count_include_pad", 0))))
    return [_Units(out, 0)]


@rule("MaxPool")
def _maxpool(imp, node, inputs, attrs):
    if attrs.get("storage_order", 0):
        imp.fail(node, "storage_order=1 (column-major indices) is not supported")
    return _pool(imp, node, inputs, attrs, "max")


@rule("AveragePool")
def _avgpool(imp, node, inputs, attrs):
    return _pool(imp, node, inputs, attrs, "avg")


def _mean(imp, node, X, axes, keepdims):
    """Linear units, each the mean of ``X`` over ``axes`` (axes of the full tensor)."""
    if X.batch in axes:
        imp.fail(node, "it averages over the batch axis; pathgeom keeps one example per row")
    imp.source(node, node.input[0], X)
    shape = tuple(1 if k in axes else s for k, s in enumerate(X.ids.shape))
    out = imp.alloc(shape, _LINEAR, node.output[0], X.batch)
    y = _Units(out, X.batch)
    per_axes = [a - (a > X.batch) for a in axes]
    imp.emit(twin.MeanOp(X.per_example(), y.per_example(), per_axes))
    if keepdims:
        return y
    kept = [k for k in range(out.ndim) if k not in axes]
    return _Units(out.reshape([out.shape[k] for k in kept]), kept.index(X.batch))


@rule("GlobalAveragePool")
def _global_avgpool(imp, node, inputs, attrs):
    X = imp.units(node, imp.v(node, inputs, 0), "the input X")
    _spatial(imp, node, X)
    return [_mean(imp, node, X, list(range(2, X.ids.ndim)), True)]


@rule("ReduceMean")
def _reduce_mean(imp, node, inputs, attrs):
    X = imp.units(node, imp.v(node, inputs, 0), "the input")
    axes = _axes(imp, node, inputs, attrs, X.ids.ndim)
    if axes is None:
        if attrs.get("noop_with_empty_axes", 0):
            return [X]
        axes = list(range(X.ids.ndim))
    return [_mean(imp, node, X, axes, attrs.get("keepdims", 1))]


@rule("BatchNormalization")
def _batchnorm(imp, node, inputs, attrs):
    """Not folded into a preceding Conv/Gemm: new linear units ``a x + b`` per channel,
    fixed edges of weight ``a`` and fixed bias edges ``b``."""
    if attrs.get("training_mode", 0):
        imp.fail(node, "training_mode=1; export the model in evaluation mode (model.eval())")
    X = imp.units(node, imp.v(node, inputs, 0), "the input X")
    if X.batch != 0 or X.ids.ndim < 2:
        imp.fail(node, f"X must be (batch, channels, ...), got shape {X.ids.shape}")
    stats = []
    for k, what in zip(range(1, 5), ("scale", "B", "mean", "var")):
        v = imp.v(node, inputs, k)
        if isinstance(v, (_Units, _Params)):
            imp.fail(node, f"its {what} {imp.where(inputs[k])} is {_describe(v)}; the "
                           f"statistics of a BatchNormalization must be constants")
        stats.append(np.asarray(v, dtype=np.float64))
    scale, shift, mean, var = stats
    a = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
    b = shift - a * mean
    C = X.ids.shape[1]
    tail = (1,) * (X.ids.ndim - 2)
    y = imp.new_nodes_from(X, node.output[0], a.reshape((C,) + tail))
    _bias(imp, node, y.ids, b.reshape((1, C) + tail), 0, fixed=True)
    return [y]


# --------------------------------------------------------------------------- RNN


@rule("RNN")
def _rnn(imp, node, inputs, attrs):
    acts = [_str(s) for s in attrs.get("activations", [b"Tanh"])]
    if [s.lower() for s in acts] != ["relu"]:
        imp.fail(node, f"activations={acts}: only the ReLU RNN is a path network; export "
                       f"it with activations=['Relu'] (torch.nn.RNN(nonlinearity='relu'))")
    direction = _str(attrs.get("direction", b"forward"))
    if direction != "forward":
        imp.fail(node, f"direction={direction!r}: only the forward direction is supported "
                       f"(a bidirectional RNN has two outputs per step; import each "
                       f"direction as its own model)")
    for key in ("clip", "activation_alpha", "activation_beta"):
        if key in attrs:
            imp.fail(node, f"the attribute {key} is not supported")
    if len(inputs) > 4 and inputs[4]:
        imp.fail(node, "sequence_lens (sequences of different lengths) is not supported: "
                       "every sequence has the full length")
    if len(inputs) > 5 and inputs[5]:
        h0 = imp.v(node, inputs, 5)
        zero = not isinstance(h0, (_Units, _Params)) and not np.asarray(h0).any()
        if not zero:
            imp.fail(node, f"initial_h {imp.where(inputs[5])}: pathgeom's RNN starts from "
                           f"h_0 = 0 with no time-0 nodes (as pathgeom.rnn); remove the "
                           f"initial state (a zero constant, also one made by Expand or "
                           f"ConstantOfShape, is accepted)")
    layout = attrs.get("layout", 0)
    X = imp.units(node, imp.v(node, inputs, 0), "X")
    want = 1 if layout == 0 else 0
    if X.ids.ndim != 3 or X.batch != want:
        imp.fail(node, f"X must be {'[seq, batch, input]' if layout == 0 else '[batch, seq, input]'}"
                       f" (layout={layout}), got shape {X.ids.shape} with the batch axis at "
                       f"{X.batch}")
    imp.source(node, inputs[0], X)
    x = np.moveaxis(X.ids, X.batch, 0)[0]            # (T, n_in)
    T, n_in = x.shape
    W = imp.params(node, inputs[1], "W")
    R = imp.params(node, inputs[2], "R")
    H = W.shape[1] if W.ndim == 3 else -1
    if W.shape != (1, H, n_in) or R.shape != (1, H, H) or attrs.get("hidden_size", H) != H:
        imp.fail(node, f"W {W.shape} and R {R.shape} do not fit X {X.ids.shape} and "
                       f"hidden_size {attrs.get('hidden_size')}")
    h = imp.alloc((T, H), _RELU, node.output[0] if node.output else "h")
    imp.close(h)
    edges, params = [], [W, R]
    if len(inputs) > 3 and inputs[3]:
        B = imp.params(node, inputs[3], "B")
        if B.shape != (1, 2 * H):
            imp.fail(node, f"B has shape {B.shape}, expected (1, {2 * H})")
        edges.append((imp.bias_node(), h, B[0, :H][None, :]))
        edges.append((imp.bias_node(), h, B[0, H:][None, :]))
        params.append(B)
    edges.append((x[:, None, :], h[:, :, None], W[0][None]))
    edges.append((h[:-1, None, :], h[1:, :, None], R[0][None]))
    imp.emit(twin.RNNOp(edges, params))
    if layout == 0:
        return [_Units(h[:, None, None, :], 2), _Units(h[-1][None, None, :], 1)]
    return [_Units(h[None, :, None, :], 0), _Units(h[-1][None, None, :], 0)]
