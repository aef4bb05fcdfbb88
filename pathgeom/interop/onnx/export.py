"""Export: :func:`to_onnx` writes a network of :func:`pathgeom.rnn`, :func:`pathgeom.cnn` or
:func:`pathgeom.mlp` as an ONNX model."""

import numpy as np

from ..._validation import as_params
from ._base import EXPORT_OPSET, _onnx

__all__ = ["to_onnx"]


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
    from ...constructors import RNN
    from ...constructors._feedforward import FeedForward

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
