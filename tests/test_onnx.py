"""ONNX import and export: models written with onnx.helper and exported by PyTorch.

Every model is checked three ways, independently of the graph engine:

* forward: against onnx's float64 reference evaluator (``ReferenceEvaluator``), and
  against onnxruntime in float32 where it has the kernels;
* gamma^2: the same model with every float initializer squared, on an all-ones input, is
  the squared network, so the sum of its outputs is gamma^2;
* kappa: central second differences of that squared-model gamma^2 in each parameter
  (kappa_i = 1/2 d^2 gamma^2 / dp_i^2).
"""

import copy
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_rnn import RNN_14

import pathgeom
from pathgeom import GraphError, cli, onnx_io
from pathgeom.constructors.cnn import Conv1d, Conv2d, Dense

from helpers import assert_close

DATA = pathlib.Path(__file__).resolve().parent / "data" / "onnx"


# --------------------------------------------------------------------------- helpers


class RNN(RNN_14):
    """The reference RNN operator with the Relu activation (the reference lacks it)."""

    op_domain = ""

    def choose_act(self, name, alpha, beta):
        if name in ("Relu", "relu"):
            return lambda x: np.maximum(x, 0.0)
        return super().choose_act(name, alpha, beta)


def reference(model, feeds):
    return ReferenceEvaluator(model, new_ops=[RNN]).run(None, feeds)


def make(nodes, inputs, outputs, inits, dtype=np.float64, opset=17, ints=None):
    """A model: ``inputs``/``outputs`` map names to shapes (``"N"`` the batch axis)."""
    t = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    tensors = [numpy_helper.from_array(np.asarray(v, dtype=dtype), k) for k, v in inits.items()]
    tensors += [numpy_helper.from_array(np.asarray(v, dtype=np.int64), k)
                for k, v in (ints or {}).items()]
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info(k, t, s) for k, s in inputs.items()],
        [helper.make_tensor_value_info(k, t, s) for k, s in outputs.items()], tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def as_float32(model):
    """The same model in float32 (initializers, Constants, input and output types)."""
    m = copy.deepcopy(model)
    for k, init in enumerate(m.graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float64:
            m.graph.initializer[k].CopyFrom(numpy_helper.from_array(arr.astype(np.float32),
                                                                    init.name))
    for node in m.graph.node:
        for a in node.attribute:
            if a.name == "value" and a.t.data_type == TensorProto.DOUBLE:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(
                    np.float32)))
    for v in list(m.graph.input) + list(m.graph.output):
        if v.type.tensor_type.elem_type == TensorProto.DOUBLE:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
    return m


def squared(model, p_override=None):
    """``model`` with every float initializer squared (optionally replaced first)."""
    m = copy.deepcopy(model)
    for k, init in enumerate(m.graph.initializer):
        arr = numpy_helper.to_array(init)
        if np.issubdtype(arr.dtype, np.floating):
            if p_override is not None and init.name in p_override:
                arr = p_override[init.name]
            arr = np.asarray(arr, dtype=np.float64)
            m.graph.initializer[k].CopyFrom(numpy_helper.from_array(arr * arr, init.name))
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in m.graph.node:   # float Constants (zeros) follow the model to float64
        for a in node.attribute:
            if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(
                    np.float64)))
    return m


def ones_feeds(model, imp):
    """All-ones inputs of batch size 1 in the model's ONNX layout."""
    feeds = {}
    for name, shape, axis in zip(imp.input_names, imp.input_shapes, imp.batch_axes):
        feeds[name] = np.ones(shape[:axis] + (1,) + shape[axis:])
    return feeds


def gamma2_onnx(model, imp, values=None):
    """gamma^2 as the summed output of the squared model on all-ones inputs."""
    outs = reference(squared(model, values), ones_feeds(model, imp))
    return float(sum(o.sum() for o in outs))


def kappa_fd(model, imp, indices):
    """kappa at the chosen parameters by central second differences of gamma2_onnx."""
    base = {name: np.asarray(a, dtype=np.float64) for name, a in imp.unpack(imp.p).items()}
    g0 = gamma2_onnx(model, imp, base)
    out = []
    for i in indices:
        name, where = imp.param_names[i]
        h = 1e-3 * max(1.0, abs(imp.p[i]))
        vals = []
        for sign in (1.0, -1.0):
            moved = {k: v.copy() for k, v in base.items()}
            moved[name][where] += sign * h
            vals.append(gamma2_onnx(model, imp, moved))
        out.append((vals[0] - 2.0 * g0 + vals[1]) / (2.0 * h * h))
    return np.array(out)


def check_model(model, X, n_kappa=12, rng=None, ort=True):
    """Forward, gamma^2 and kappa of ``from_onnx(model)`` against the ONNX model itself."""
    rng = np.random.default_rng(0) if rng is None else rng
    imp = pathgeom.from_onnx(model)
    feeds = {imp.input_names[0]: X}
    want = reference(model, feeds)[0]
    got = imp.graph.forward(imp.p, imp.graph_inputs(X))
    B = X.shape[imp.batch_axes[0]]
    want_rows = want.reshape(B, -1)
    assert_close(got, want_rows, rtol=1e-10, scale=np.abs(want_rows).max())
    if ort:
        sess = onnxruntime.InferenceSession(as_float32(model).SerializeToString(),
                                            providers=["CPUExecutionProvider"])
        y32 = sess.run(None, {imp.input_names[0]: X.astype(np.float32)})[0]
        assert_close(y32.reshape(B, -1), want_rows, rtol=1e-4, scale=np.abs(want_rows).max())
    assert_close(imp.gamma2(), gamma2_onnx(model, imp), rtol=1e-12)
    k = imp.kappa()
    idx = rng.choice(imp.n_params, size=min(n_kappa, imp.n_params), replace=False)
    assert_close(k[idx], kappa_fd(model, imp, idx), rtol=1e-5, scale=1e-8 * np.abs(k).max())
    return imp


# --------------------------------------------------------------------------- models


def tied_mlp(rng, bias=True):
    """Gemm(W) - Relu - Gemm(W) - Relu - Gemm(V): W (and its bias c) used twice."""
    inits = {"W": rng.normal(size=(3, 3)), "V": rng.normal(size=(2, 3))}
    if bias:
        inits.update(c=rng.normal(size=3), d=rng.normal(size=2))
    b, d = (["c"], ["d"]) if bias else ([], [])
    nodes = [helper.make_node("Gemm", ["x", "W"] + b, ["z1"], transB=1, name="g1"),
             helper.make_node("Relu", ["z1"], ["h1"]),
             helper.make_node("Gemm", ["h1", "W"] + b, ["z2"], transB=1, name="g2"),
             helper.make_node("Relu", ["z2"], ["h2"]),
             helper.make_node("Gemm", ["h2", "V"] + d, ["y"], transB=1, name="out")]
    return make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]}, inits)


def matmul_mlp(rng):
    """tf2onnx style: MatMul by a transposed weight, Add of a bias, a Reshape, Identity."""
    inits = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=(1, 4)),
             "V": rng.normal(size=(4, 2))}
    nodes = [helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "Wt"], ["z"]),
             helper.make_node("Add", ["b", "z"], ["zb"]),
             helper.make_node("Relu", ["zb"], ["h"]),
             helper.make_node("Identity", ["h"], ["h2"]),
             helper.make_node("Reshape", ["h2", "shape"], ["h3"]),
             helper.make_node("MatMul", ["h3", "V"], ["y"])]
    return make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]}, inits, ints={"shape": [-1, 4]})


def conv_net(rng, dims=2, bias=True, tied=False):
    """Conv (strides, asymmetric pads) - Relu - Conv - Relu - Flatten - Gemm."""
    if dims == 1:
        shape, k1, k2 = [2, 9], [3], [2]
        attrs1 = dict(strides=[2], pads=[1, 2])
        attrs2 = dict(pads=[0, 1], dilations=[2])
    else:
        shape, k1, k2 = [2, 7, 6], [3, 2], [2, 2]
        attrs1 = dict(strides=[2, 1], pads=[1, 0, 2, 1])
        attrs2 = dict(strides=[1, 2], pads=[1, 1, 0, 0])
    inits = {"K1": rng.normal(size=[2, 2] + k1)}
    k2name = "K1" if tied else "K2"
    if not tied:
        inits["K2"] = rng.normal(size=[2, 2] + k2)
    else:
        attrs2 = dict(attrs1)
    if bias:
        inits.update(b1=rng.normal(size=2), b2=rng.normal(size=2))
    nodes = [helper.make_node("Conv", ["x", "K1"] + (["b1"] if bias else []), ["z1"],
                              name="conv1", **attrs1),
             helper.make_node("Relu", ["z1"], ["h1"]),
             helper.make_node("Conv", ["h1", k2name] + (["b2"] if bias else []), ["z2"],
                              name="conv2", **attrs2),
             helper.make_node("Relu", ["z2"], ["h2"]),
             helper.make_node("Flatten", ["h2"], ["f"], axis=1)]
    model = make(nodes, {"x": ["N"] + shape}, {"y": ["N", 2]}, inits)
    # size of the flattened layer, from a reference run of the model cut there
    f = reference(make(nodes, {"x": ["N"] + shape}, {"f": ["N", "F"]}, inits),
                  {"x": np.ones([1] + shape)})[0]
    inits["V"] = rng.normal(size=(2, f.shape[1]))
    inits["c"] = rng.normal(size=2)
    nodes.append(helper.make_node("Gemm", ["f", "V", "c"], ["y"], transB=1, name="out"))
    return make(nodes, {"x": ["N"] + shape}, {"y": ["N", 2]}, inits)


def rnn_op(rng, T=5, n_in=2, H=3, bias=True, layout=0, use_yh=False):
    """The ReLU RNN operator, then a Gemm on the last state (from Y or from Y_h)."""
    inits = {"W": 0.6 * rng.normal(size=(1, H, n_in)), "R": 0.5 * rng.normal(size=(1, H, H)),
             "V": rng.normal(size=(1, H))}
    ins = ["x", "W", "R"]
    if bias:
        inits["B"] = rng.normal(size=(1, 2 * H))
        ins.append("B")
    nodes = [helper.make_node("RNN", ins, ["Y", "Y_h"], hidden_size=H, activations=["Relu"],
                              layout=layout, name="rnn")]
    if use_yh:
        nodes.append(helper.make_node("Squeeze", ["Y_h", "ax_dir"], ["hT"]))
    elif layout == 0:   # Y: (T, 1, N, H)
        nodes += [helper.make_node("Squeeze", ["Y", "ax_dir"], ["Ys"]),
                  helper.make_node("Gather", ["Ys", "last"], ["hT"], axis=0)]
    else:               # Y: (N, T, 1, H)
        nodes += [helper.make_node("Squeeze", ["Y", "ax_dir"], ["Ys"]),
                  helper.make_node("Gather", ["Ys", "last"], ["hT"], axis=1)]
    nodes.append(helper.make_node("Gemm", ["hT", "V"], ["y"], transB=1, name="out"))
    ax = [0] if use_yh and layout == 0 else [1] if layout == 0 else [2]
    if use_yh and layout == 1:
        ax = [1]
    x_shape = [T, "N", n_in] if layout == 0 else ["N", T, n_in]
    return make(nodes, {"x": x_shape}, {"y": ["N", 1]}, inits,
                ints={"ax_dir": ax, "last": np.array(-1)})


# --------------------------------------------------------------------------- the checks


class TestHandWritten:
    def test_tied_mlp(self):
        rng = np.random.default_rng(1)
        imp = check_model(tied_mlp(rng), rng.normal(size=(6, 3)), n_kappa=20)
        counts = imp.graph.param_edge_counts()
        names = [n for n, _ in imp.param_names]
        assert imp.n_params == 9 + 6 + 3 + 2
        assert all(counts[i] == 2 for i, n in enumerate(names) if n in ("W", "c"))
        assert imp.has_bias and imp.graph.n_inputs == 4
        k2 = pathgeom.kappa2(imp.graph, imp.p)
        assert np.abs(k2[[i for i, n in enumerate(names) if n == "W"]]).max() > 0

    def test_tied_mlp_without_bias(self):
        rng = np.random.default_rng(2)
        imp = check_model(tied_mlp(rng, bias=False), rng.normal(size=(4, 3)))
        assert not imp.has_bias and imp.graph.n_inputs == 3

    def test_matmul_add_transpose_reshape(self):
        rng = np.random.default_rng(3)
        imp = check_model(matmul_mlp(rng), rng.normal(size=(5, 3)))
        assert imp.param_names[:2] == [("W", (0, 0)), ("W", (0, 1))]
        # the transposed use keeps W's own indices: W[j, k] is the edge x_k -> h_j
        W = imp.unpack(imp.p)["W"]
        assert_close(W, numpy_helper.to_array(matmul_mlp(np.random.default_rng(3))
                                              .graph.initializer[0]))

    @pytest.mark.parametrize("dims", [1, 2])
    @pytest.mark.parametrize("bias", [True, False])
    def test_conv(self, dims, bias):
        rng = np.random.default_rng(10 * dims + bias)
        model = conv_net(rng, dims=dims, bias=bias)
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
        check_model(model, rng.normal(size=[4] + shape), n_kappa=10)

    def test_tied_conv_kernel(self):
        rng = np.random.default_rng(5)
        model = conv_net(rng, dims=2, tied=True)
        imp = check_model(model, rng.normal(size=(3, 2, 7, 6)), n_kappa=10)
        assert "K2" not in imp.unpack(imp.p)
        assert np.abs(pathgeom.kappa2(imp.graph, imp.p)[:imp.unpack(imp.p)["K1"].size]).max() > 0

    @pytest.mark.parametrize("layout, use_yh", [(0, False), (0, True), (1, False), (1, True)])
    def test_relu_rnn_operator(self, layout, use_yh):
        rng = np.random.default_rng(7 + layout + 2 * use_yh)
        model = rnn_op(rng, layout=layout, use_yh=use_yh)
        X = rng.normal(size=(5, 4, 2) if layout == 0 else (4, 5, 2))
        imp = check_model(model, X, n_kappa=15, ort=layout == 0)
        assert imp.batch_axes == [1 if layout == 0 else 0]

    def test_rnn_operator_is_pathgeom_rnn(self):
        """The RNN operator without bias is pathgeom.rnn, parameter for parameter."""
        rng = np.random.default_rng(8)
        model = rnn_op(rng, T=6, n_in=2, H=3, bias=False, use_yh=True)
        imp = pathgeom.from_onnx(model)
        net = pathgeom.rnn(2, 3, 1, T=6)
        a = imp.unpack(imp.p)
        p = net.pack(W_in=a["W"][0], W_rec=a["R"][0], W_out=a["V"])
        assert imp.graph.n_edges == net.graph.n_edges and imp.graph.n_nodes == net.graph.n_nodes
        order = np.argsort([{"W": 0, "R": 1, "V": 2}[n] for n, _ in imp.param_names],
                           kind="stable")
        assert_close(imp.gamma2(), net.gamma2(p))
        assert_close(imp.kappa()[order], net.kappa(p), rtol=1e-11)
        X = rng.normal(size=(3, 6, 2))
        assert_close(imp.forward(X.transpose(1, 0, 2)), net.forward(p, X), rtol=1e-11)

    def test_rnn_operator_bias_halves_are_two_parameters(self):
        rng = np.random.default_rng(9)
        imp = pathgeom.from_onnx(rnn_op(rng, T=4, H=3))
        B = [i for i, (n, _) in enumerate(imp.param_names) if n == "B"]
        assert len(B) == 6 and (imp.graph.param_edge_counts()[B] == 4).all()

    def test_add_of_two_linear_outputs_is_one_unit(self):
        """A hand-written RNN cell, Gemm(x_t, W, b) + Gemm(h, U): pathgeom.rnn(bias=True)."""
        rng = np.random.default_rng(11)
        inits = {"W": rng.normal(size=(3, 2)), "U": 0.5 * rng.normal(size=(3, 3)),
                 "b": rng.normal(size=3), "V": rng.normal(size=(1, 3)), "c": rng.normal(size=1)}
        nodes = [helper.make_node("Gather", ["x", "t0"], ["x0"], axis=1),
                 helper.make_node("Gather", ["x", "t1"], ["x1"], axis=1),
                 helper.make_node("Gemm", ["x0", "W", "b"], ["z0"], transB=1),
                 helper.make_node("Relu", ["z0"], ["h0"]),
                 helper.make_node("Gemm", ["x1", "W", "b"], ["a1"], transB=1),
                 helper.make_node("Gemm", ["h0", "U"], ["r1"], transB=1),
                 helper.make_node("Add", ["a1", "r1"], ["z1"]),
                 helper.make_node("Relu", ["z1"], ["h1"]),
                 helper.make_node("Gemm", ["h1", "V", "c"], ["y"], transB=1)]
        model = make(nodes, {"x": ["N", 2, 2]}, {"y": ["N", 1]}, inits,
                     ints={"t0": np.array(0), "t1": np.array(1)})
        X = rng.normal(size=(4, 2, 2))
        imp = check_model(model, X, n_kappa=20)
        net = pathgeom.rnn(2, 3, 1, T=2, bias=True)
        a = imp.unpack(imp.p)
        p = net.pack(W_in=a["W"], W_rec=a["U"], W_out=a["V"], b=a["b"], b_out=a["c"])
        assert imp.graph.n_nodes == net.graph.n_nodes and imp.graph.n_edges == net.graph.n_edges
        assert_close(imp.gamma2(), net.gamma2(p))
        assert_close(imp.forward(X), net.forward(p, X), rtol=1e-12)
        assert_close(np.sort(imp.kappa()), np.sort(net.kappa(p)), rtol=1e-12)

    def test_zero_constant_bias_carries_no_edge(self):
        rng = np.random.default_rng(12)
        zero = numpy_helper.from_array(np.zeros(2))
        nodes = [helper.make_node("Constant", [], ["zero"], value=zero),
                 helper.make_node("Gemm", ["x", "W", "zero"], ["y"], transB=1)]
        imp = pathgeom.from_onnx(make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]},
                                      {"W": rng.normal(size=(2, 3))}))
        assert imp.graph.n_edges == 6 and imp.n_params == 6

    def test_graph_inputs_layout(self):
        rng = np.random.default_rng(13)
        imp = pathgeom.from_onnx(rnn_op(rng, T=3, n_in=2, H=2))
        X = np.arange(3 * 4 * 2, dtype=float).reshape(3, 4, 2)     # (T, B, n_in)
        rows = imp.graph_inputs(X)
        assert rows.shape == (4, 3 * 2 + 1)
        assert_close(rows[1], [2, 3, 10, 11, 18, 19, 1])            # time-major, then 1
        with pytest.raises(ValueError, match="expected"):
            imp.graph_inputs(np.zeros((4, 3, 2)))
        assert imp.node_label(imp.graph.inputs[-1]) == "1"
        assert imp.node_label(imp.graph.inputs[3]) == "x[1, 1]"
        assert {imp.node_label(k) for k in imp.graph.nodes} >= {"Y[0, 0]", "Y[2, 1]"}

    def test_labels_and_pack(self):
        rng = np.random.default_rng(14)
        imp = pathgeom.from_onnx(tied_mlp(rng))
        assert_close(imp.pack(imp.unpack(imp.p)), imp.p)
        labels = {imp.node_label(k) for k in imp.graph.nodes}
        assert {"x[2]", "z1[0]", "z2[2]", "y[1]", "1"} <= labels


# --------------------------------------------------------------------------- round trips


def pathgeom_models():
    return [
        ("mlp", pathgeom.mlp([3, 4, 2], bias=True), (5, 3)),
        ("mlp-deep", pathgeom.mlp([2, 3, 3, 2]), (5, 2)),
        ("cnn1d", pathgeom.cnn((2, 7), [Conv1d(3, 3, stride=2, padding=1), Dense(4)], 2,
                               bias=True), (4, 2, 7)),
        ("cnn2d", pathgeom.cnn((1, 6, 5), [Conv2d(2, (3, 2), stride=(2, 1), padding=(1, 1)),
                                           Conv2d(2, 2)], 3), (4, 1, 6, 5)),
        ("rnn", pathgeom.rnn(2, 3, 2, T=5, bias=True), (4, 5, 2)),
        ("rnn-all", pathgeom.rnn(2, [3, 2], 2, T=4, outputs="all", bias=True), (4, 4, 2)),
        ("rnn-deep", pathgeom.rnn(1, [3, 2], 1, T=4), (4, 4, 1)),
    ]


@pytest.mark.parametrize("name, net, shape", pathgeom_models(), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_round_trip(name, net, shape, tmp_path):
    rng = np.random.default_rng(20)
    is_rnn = isinstance(net, pathgeom.RNN)
    p = rng.uniform(-0.7, 0.7, net.n_params)     # biases too
    path = tmp_path / f"{name}.onnx"
    model = pathgeom.to_onnx(net, p, path)
    imp = pathgeom.from_onnx(path)
    X = rng.normal(size=shape)
    Xo = X.transpose(1, 0, 2) if is_rnn else X
    want = net.forward(p, X).reshape(len(X), -1)
    assert_close(reference(model, {"x": Xo})[0].reshape(len(X), -1), want, rtol=1e-10,
                 scale=np.abs(want).max())
    assert_close(imp.forward(Xo), want, rtol=1e-10, scale=np.abs(want).max())
    assert imp.n_params == net.n_params and np.array_equal(imp.p, p)
    assert imp.graph.n_edges == net.graph.n_edges and imp.graph.n_nodes == net.graph.n_nodes
    assert_close(imp.gamma2(), net.gamma2(p), rtol=1e-12)
    k = net.kappa(p)
    assert_close(imp.kappa(), k, rtol=1e-11, scale=1e-12 * np.abs(k).max())
    assert (pathgeom.rescaling_group(imp.graph).dim
            == pathgeom.rescaling_group(net.graph).dim)
    sess = onnxruntime.InferenceSession(pathgeom.to_onnx(net, p, dtype="float32")
                                        .SerializeToString(),
                                        providers=["CPUExecutionProvider"])
    y32 = sess.run(None, {"x": Xo.astype(np.float32)})[0]
    assert_close(y32.reshape(len(X), -1), want, rtol=1e-4, scale=np.abs(want).max())


def test_to_onnx_refuses_other_networks():
    g = pathgeom.SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"])
    with pytest.raises(TypeError, match="pathgeom.rnn, pathgeom.cnn or pathgeom.mlp"):
        pathgeom.to_onnx(g, [1.0])
    with pytest.raises(ValueError, match="dtype"):
        pathgeom.to_onnx(pathgeom.mlp([1, 1]), [1.0], dtype="float16")


# --------------------------------------------------------------------------- PyTorch fixtures


def torch_fixture(name):
    model = onnx.load(str(DATA / f"{name}.onnx"))
    data = np.load(DATA / f"{name}.npz")
    return model, data["X"].astype(np.float64), data["Y"].astype(np.float64)


class TestPyTorchExports:
    """Fixtures made by tests/data/onnx/make_fixtures.py (torch 2.13.0, opset 17, float32)."""

    def check(self, name):
        model, X, Y = torch_fixture(name)
        imp = pathgeom.from_onnx(model)
        got = imp.forward(X)
        assert_close(got, Y.reshape(len(got), -1), rtol=1e-5, scale=np.abs(Y).max())
        ones = ones_feeds(model, imp)
        assert_close(imp.gamma2(), float(reference(squared(model), ones)[0].sum()), rtol=1e-12)
        idx = np.random.default_rng(0).choice(imp.n_params, 10, replace=False)
        k = imp.kappa()
        assert_close(k[idx], kappa_fd(model, imp, idx), rtol=1e-5,
                     scale=1e-8 * np.abs(k).max())
        return imp

    def test_relu_rnn(self):
        imp = self.check("torch_rnn")
        assert imp.batch_axes == [1] and imp.input_shapes == [(6, 2)]
        assert pathgeom.rescaling_group(imp.graph).dim == 4       # Theorem 1: H = 4
        names = {n for n, _ in imp.param_names}
        assert len(names) == 5     # W_ih, W_hh, B = [b_ih, b_hh], out.weight, out.bias

    def test_tied_mlp(self):
        imp = self.check("torch_tied_mlp")
        counts = imp.graph.param_edge_counts()
        tied = [i for i, (n, _) in enumerate(imp.param_names) if n.startswith("hidden.")]
        assert len(tied) == 12 and (counts[tied] == 2).all()
        assert np.abs(pathgeom.kappa2(imp.graph, imp.p)[tied]).max() > 0

    def test_cnn(self):
        imp = self.check("torch_cnn")
        assert imp.input_shapes == [(1, 8, 8)]
        assert pathgeom.rescaling_group(imp.graph).dim == 2 + 3   # one per channel

    def test_onnxruntime_agrees(self):
        for name in ("torch_rnn", "torch_tied_mlp", "torch_cnn"):
            model, X, Y = torch_fixture(name)
            sess = onnxruntime.InferenceSession(model.SerializeToString(),
                                                providers=["CPUExecutionProvider"])
            y = sess.run(None, {"x": X.astype(np.float32)})[0]
            assert_close(y, Y, rtol=1e-5, scale=np.abs(Y).max())


# --------------------------------------------------------------------------- refusals


def one_op(op, inputs=("x",), attrs=None, inits=None, x_shape=("N", 4), extra=(), ints=None,
           opset=17):
    """x -> Gemm(W) -> [op] -> Gemm(V) -> y, with ``op`` named "the_node"."""
    rng = np.random.default_rng(0)
    inits = dict(W=rng.normal(size=(4, 4)), V=rng.normal(size=(2, 4)), **(inits or {}))
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1, name="first"),
             helper.make_node(op, ["z", *inputs[1:]], ["h"], name="the_node", **(attrs or {})),
             *extra,
             helper.make_node("Gemm", ["h", "V"], ["y"], transB=1, name="last")]
    return make(nodes, {"x": list(x_shape)}, {"y": ["N", 2]}, inits, ints=ints, opset=opset)


REFUSED_ACTIVATIONS = ["Tanh", "Sigmoid", "LeakyRelu", "Elu", "Softplus", "Gelu"]


class TestRefusals:
    def refuse(self, model, *words):
        with pytest.raises(GraphError) as info:
            pathgeom.from_onnx(model)
        msg = str(info.value)
        for w in words:
            assert w in msg, msg
        return msg

    @pytest.mark.parametrize("op", sorted(onnx_io._ADVICE) + ["Einsum"])
    def test_every_refused_operator_names_node_op_and_advice(self, op):
        advice = onnx_io._ADVICE.get(op, onnx_io._GENERIC_ADVICE)
        self.refuse(one_op(op), "ONNX node 'the_node'", f"({op})",
                    f"operator {op} is not supported", advice)

    @pytest.mark.parametrize("op", REFUSED_ACTIVATIONS)
    def test_other_activations(self, op):
        self.refuse(one_op(op), "'the_node'", f"({op})", "replace this activation by Relu")

    def test_softmax(self):
        self.refuse(one_op("Softmax", attrs=dict(axis=1)), "'the_node' (Softmax)",
                    "export the logits")

    def supported(self, model, X, gamma2=True):
        """Once refused, now read (issue 23): forward (and gamma^2) against the model."""
        imp = pathgeom.from_onnx(model)
        want = reference(model, {"x": X})[0].reshape(X.shape[0], -1)
        assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())
        if gamma2:
            assert_close(imp.gamma2(), gamma2_onnx(model, imp), rtol=1e-12)
        return imp

    def test_batchnorm_after_gemm_is_folded(self):
        bn = {k: np.full(4, 1.5) for k in ("s", "bb", "m", "v")}
        imp = self.supported(one_op("BatchNormalization", inputs=("z", "s", "bb", "m", "v"),
                                    inits=bn), np.ones((2, 4)), gamma2=False)
        assert imp.folded == [("s", "W*s", "s.shift")]

    def test_maxpool(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Conv", ["x", "K"], ["z"], name="c"),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("MaxPool", ["h"], ["m"], kernel_shape=[2], name="pool"),
                 helper.make_node("Flatten", ["m"], ["f"]),
                 helper.make_node("Gemm", ["f", "V"], ["y"], transB=1)]
        model = make(nodes, {"x": ["N", 1, 6]}, {"y": ["N", 1]},
                     {"K": rng.normal(size=(1, 1, 3)), "V": rng.normal(size=(1, 3))})
        self.supported(model, rng.normal(size=(3, 1, 6)), gamma2=False)

    def test_average_pool_needs_channels(self):
        self.refuse(one_op("AveragePool", attrs=dict(kernel_shape=[2]), x_shape=("N", 4)),
                    "(AveragePool)", "(batch, channels, *spatial)")

    def test_lstm(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["Y"], hidden_size=2, name="lstm")]
        model = make(nodes, {"x": [3, "N", 1]}, {"Y": [3, 1, "N", 2]},
                     {"W": rng.normal(size=(1, 8, 1)), "R": rng.normal(size=(1, 8, 2))})
        self.refuse(model, "'lstm' (LSTM)", "activations=['Relu']")

    def test_mul_by_constant(self):
        self.refuse(one_op("Mul", inputs=("z", "s"), inits={"s": np.array(2.0)}),
                    "(Mul)", "fold constant scales")

    def test_gemm_beta_without_c_is_harmless(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1, beta=0.5)]
        imp = pathgeom.from_onnx(make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]},
                                      {"W": rng.normal(size=(2, 3))}))
        assert imp.n_params == 6

    def test_residual_add(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("Gemm", ["h", "W"], ["z2"], transB=1),
                 helper.make_node("Relu", ["z2"], ["h2"]),
                 helper.make_node("Add", ["h2", "h"], ["r"], name="residual"),
                 helper.make_node("Gemm", ["r", "V"], ["y"], transB=1)]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]},
                     {"W": rng.normal(size=(3, 3)), "V": rng.normal(size=(2, 3))})
        self.supported(model, rng.normal(size=(3, 3)))

    def test_residual_add_to_linear_output(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("Gemm", ["h", "W"], ["z2"], transB=1),
                 helper.make_node("Add", ["z2", "h"], ["r"], name="residual"),
                 helper.make_node("Gemm", ["r", "V"], ["y"], transB=1)]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]},
                     {"W": rng.normal(size=(3, 3)), "V": rng.normal(size=(2, 3))})
        self.supported(model, rng.normal(size=(3, 3)))

    def test_bias_after_relu(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("Add", ["h", "b"], ["hb"], name="late_bias"),
                 helper.make_node("Gemm", ["hb", "V"], ["y"], transB=1)]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]},
                     {"W": rng.normal(size=(3, 3)), "V": rng.normal(size=(2, 3)),
                      "b": rng.normal(size=3)})
        self.supported(model, rng.normal(size=(3, 3)))

    def test_two_linear_maps_without_relu(self):
        imp = self.supported(one_op("Identity"), np.random.default_rng(1).normal(size=(3, 4)))
        assert imp.n_params == 24

    def test_relu_on_the_output(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                 helper.make_node("Relu", ["z"], ["y"])]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 3]}, {"W": rng.normal(size=(3, 3))})
        self.supported(model, rng.normal(size=(3, 3)))

    def test_linear_output_used_twice(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                 helper.make_node("Relu", ["z"], ["h"], name="r"),
                 helper.make_node("Gemm", ["h", "V"], ["y1"], transB=1)]
        model = make(nodes, {"x": ["N", 3]}, {"y1": ["N", 2], "z": ["N", 3]},
                     {"W": rng.normal(size=(3, 3)), "V": rng.normal(size=(2, 3))})
        imp = pathgeom.from_onnx(model)
        X = rng.normal(size=(3, 3))
        want = reference(model, {"x": X})
        assert_close(imp.forward(X), np.concatenate([w.reshape(3, -1) for w in want], axis=1),
                     rtol=1e-12)

    def test_nonzero_float_constant_weight(self):
        nodes = [helper.make_node("Constant", [], ["W"],
                                  value=numpy_helper.from_array(np.ones((2, 3)))),
                 helper.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="g")]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]}, {})
        self.refuse(model, "'g' (Gemm)", "not a floating-point initializer",
                    "store it as an initializer")

    def test_product_of_activations(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("MatMul", ["h", "h"], ["y"], name="mm")]
        model = make(nodes, {"x": [1, 3, 3]}, {"y": [1, 3, 3]}, {"W": rng.normal(size=(3, 3))})
        self.refuse(model, "'mm' (MatMul)", "is an activation, not a weight")

    def test_rnn_tanh(self):
        model = rnn_op(np.random.default_rng(0))
        model.graph.node[0].attribute[1].CopyFrom(helper.make_attribute("activations",
                                                                        ["Tanh"]))
        self.refuse(model, "'rnn' (RNN)", "activations=['Tanh']", "nonlinearity='relu'")

    def test_rnn_bidirectional(self):
        model = rnn_op(np.random.default_rng(0))
        model.graph.node[0].attribute.append(helper.make_attribute("direction",
                                                                   "bidirectional"))
        self.refuse(model, "'rnn' (RNN)", "forward direction")

    def test_rnn_initial_state(self):
        model = rnn_op(np.random.default_rng(0), bias=True)
        node = model.graph.node[0]
        node.input.extend(["", "h0"])
        model.graph.initializer.append(numpy_helper.from_array(np.ones((1, 1, 3)), "h0"))
        self.refuse(model, "'rnn' (RNN)", "initial_h", "no time-0 nodes")

    def test_rnn_sequence_lens(self):
        model = rnn_op(np.random.default_rng(0), bias=True)
        model.graph.node[0].input.extend(["lens"])
        model.graph.initializer.append(numpy_helper.from_array(np.array([5], np.int32),
                                                               "lens"))
        self.refuse(model, "'rnn' (RNN)", "sequence_lens")

    def test_old_opset(self):
        self.refuse(one_op("Relu", opset=12), "opset 12", "convert_version")

    def test_custom_domain(self):
        model = one_op("Relu")
        model.graph.node[1].domain = "com.example"
        self.refuse(model, "'the_node' (Relu)", "domain 'com.example'")

    def test_dynamic_feature_axis(self):
        self.refuse(one_op("Relu", x_shape=("N", "F")), "axis 1 has no fixed size (F)")

    def test_flatten_into_the_batch(self):
        model = one_op("Relu", extra=[helper.make_node("Flatten", ["h"], ["hf"], axis=0,
                                                       name="flat0")])
        model.graph.node[-1].input[0] = "hf"
        self.refuse(model, "'flat0' (Flatten)", "mixes examples")

    def test_grouped_conv_is_supported_and_squeeze_of_batch_refused(self):
        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Conv", ["x", "K"], ["z"], group=2),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("Flatten", ["h"], ["f"]),
                 helper.make_node("Gemm", ["f", "V"], ["y"], transB=1)]
        model = make(nodes, {"x": ["N", 4, 5]}, {"y": ["N", 1]},
                     {"K": rng.normal(size=(2, 2, 2)), "V": rng.normal(size=(1, 8))})
        check_model(model, rng.normal(size=(3, 4, 5)), n_kappa=8)
        nodes = [helper.make_node("Squeeze", ["x", "ax"], ["s"], name="sq"),
                 helper.make_node("Gemm", ["s", "V"], ["y"], transB=1)]
        model = make(nodes, {"x": [1, 4]}, {"y": [1]}, {"V": rng.normal(size=(1, 4))},
                     ints={"ax": [0]})
        self.refuse(model, "'sq' (Squeeze)", "removes the batch axis")


# --------------------------------------------------------------------------- Cast


class TestCast:
    """A Cast of activations to a float type is the identity; to anything else it rounds or
    truncates each value, which no path network computes: refused."""

    @pytest.mark.parametrize("to", [TensorProto.INT64, TensorProto.INT32, TensorProto.INT8,
                                    TensorProto.UINT8, TensorProto.BOOL])
    def test_cast_of_activations_to_a_non_float_type_is_refused(self, to):
        name = TensorProto.DataType.Name(to)
        model = one_op("Cast", attrs=dict(to=to))
        with pytest.raises(GraphError) as info:
            pathgeom.from_onnx(model)
        msg = str(info.value)
        for w in ("ONNX node 'the_node' (Cast)", f"to {name}", "remove the cast",
                  "cast to a float type"):
            assert w in msg, msg

    def test_the_refused_cast_would_change_the_numbers(self):
        # what the refusal protects against: the model truncates, the identity would not
        model = one_op("Cast", attrs=dict(to=TensorProto.INT64),
                       extra=[helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.DOUBLE)])
        model.graph.node[-1].input[0] = "hf"
        X = np.random.default_rng(3).normal(size=(4, 4))
        truncated = reference(model, {"x": X})[0]
        plain = reference(one_op("Identity"), {"x": X})[0]
        assert np.abs(truncated - plain).max() > 0.1
        with pytest.raises(GraphError, match="INT64"):
            pathgeom.from_onnx(model)

    @pytest.mark.parametrize("to", [TensorProto.DOUBLE, TensorProto.FLOAT,
                                    TensorProto.FLOAT16, TensorProto.BFLOAT16])
    def test_cast_to_a_float_type_is_the_identity(self, to):
        rng = np.random.default_rng(4)
        model = one_op("Cast", attrs=dict(to=to))
        imp = pathgeom.from_onnx(model)
        ident = pathgeom.from_onnx(one_op("Identity"))
        X = rng.normal(size=(3, 4))
        assert_close(imp.forward(X), ident.forward(X), rtol=0)
        if to == TensorProto.DOUBLE:
            want = reference(model, {"x": X})[0]
            assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())

    def test_cast_of_constants_and_of_a_float_initializer_used_as_a_shape(self):
        rng = np.random.default_rng(5)
        # Reshape(h, Cast(shape_f, INT64)) with a float initializer holding the shape, and
        # a float constant cast to int on the way
        model = one_op("Relu", extra=[
            helper.make_node("Cast", ["shape_f"], ["shape"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["h", "shape"], ["hr"])],
            inits={"shape_f": np.array([-1.0, 4.0])})
        model.graph.node[-1].input[0] = "hr"
        imp = pathgeom.from_onnx(model)
        X = rng.normal(size=(3, 4))
        want = reference(model, {"x": X})[0]
        assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())
        assert imp.n_params == 16 + 8 + 2          # shape_f stays an (unused) parameter
        assert not imp.kappa()[-2:].any()


# --------------------------------------------------------------------------- Reshape and the batch


def reshaped(shape, x_batch="N", out=None):
    """x (batch, 4) -> Gemm(W) -> Relu -> Reshape(shape) -> y, the Reshape named "rs"."""
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Reshape", ["h", "shape"], ["y"], name="rs")]
    return make(nodes, {"x": [x_batch, 4]}, {"y": out or ["N", 4]},
                {"W": rng.normal(size=(4, 4))}, ints={"shape": shape})


class TestReshapeBatch:
    """pathgeom describes one example; a Reshape must keep each example in its own row."""

    def rows_of_reference(self, model, X):
        """The model applied to each example alone (batch 1), stacked."""
        return np.concatenate([reference(model, {"x": x[None]})[0].reshape(1, -1)
                               for x in X])

    @pytest.mark.parametrize("shape", [[0, -1], [-1, 4], [0, 4], [-1, 2, 2], [0, 2, 2]])
    def test_batch_kept(self, shape):
        model = reshaped(shape)
        X = np.random.default_rng(7).normal(size=(3, 4))
        want = reference(model, {"x": X})[0].reshape(3, -1)
        imp = pathgeom.from_onnx(model)
        assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())

    def test_fixed_batch_one_with_a_dynamic_batch_is_refused(self):
        model = reshaped([1, -1])
        X = np.random.default_rng(8).normal(size=(3, 4))
        # the model itself puts the 3 examples into one row: not a per-example network
        assert reference(model, {"x": X})[0].shape == (1, 12)
        with pytest.raises(GraphError) as info:
            pathgeom.from_onnx(model)
        msg = str(info.value)
        for w in ("ONNX node 'rs' (Reshape)", "fixes the first (batch) axis at 1",
                  "dynamic", "moves elements between examples", "x.flatten(1)",
                  "Flatten(axis=1)"):
            assert w in msg, msg

    def test_fixed_batch_three_with_a_dynamic_batch_is_refused(self):
        with pytest.raises(GraphError, match=r"fixes the first \(batch\) axis at 3"):
            pathgeom.from_onnx(reshaped([3, 4]))

    @pytest.mark.parametrize("d", [1, 2])
    def test_fixed_batch_equal_to_the_models_own(self, d):
        # exported without dynamic axes at batch d: the Reshape keeps the d examples apart
        model = reshaped([d, -1], x_batch=d, out=[d, 4])
        X = np.random.default_rng(9).normal(size=(d, 4))
        imp = pathgeom.from_onnx(model)
        want = reference(model, {"x": X})[0]
        assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())
        # any number of rows: the network of one example, row by row
        X5 = np.random.default_rng(10).normal(size=(5, 4))
        one = reshaped([1, -1], x_batch=1, out=[1, 4])
        want = self.rows_of_reference(one, X5)
        assert_close(imp.forward(X5), want, rtol=1e-12, scale=np.abs(want).max())

    def test_fixed_batch_other_than_the_models_own_is_refused(self):
        model = reshaped([1, 8], x_batch=2, out=[1, 8])
        assert reference(model, {"x": np.ones((2, 4))})[0].shape == (1, 8)
        with pytest.raises(GraphError, match="exported for batch size 2"):
            pathgeom.from_onnx(model)

    def test_minus_one_first_that_splits_examples_is_refused(self):
        with pytest.raises(GraphError) as info:
            pathgeom.from_onnx(reshaped([-1, 2], out=["M", 2]))
        assert "'rs' (Reshape)" in str(info.value)
        assert "moves elements between examples" in str(info.value)


# --------------------------------------------------------------------------- Gemm alpha, beta


def scaled_mlp(rng, alpha=0.5, beta=2.0, alpha2=0.25, trans=(1, 0), shared=False):
    """x -> Gemm(W, b; alpha, beta) -> Relu -> Gemm(V or W, c; alpha2) -> y."""
    W = rng.normal(size=(3, 3))
    inits = {"W": W, "b": rng.normal(size=3), "c": rng.normal(size=3)}
    second = "W" if shared else "V"
    if not shared:
        inits["V"] = rng.normal(size=(3, 3))
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=trans[0], alpha=alpha,
                              beta=beta, name="g1"),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", second, "c"], ["y"], transB=trans[1],
                              alpha=alpha2, name="g2")]
    return make(nodes, {"x": ["N", 3]}, {"y": ["N", 3]}, inits)


def folded_by_hand(model):
    """The same model with each Gemm's alpha and beta multiplied into its B and C (each
    initializer read with one factor) and removed."""
    m = copy.deepcopy(model)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    factor = {}
    for node in m.graph.node:
        if node.op_type != "Gemm":
            continue
        at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        factor[node.input[1]] = at.get("alpha", 1.0)
        if len(node.input) > 2:
            factor[node.input[2]] = at.get("beta", 1.0)
        keep = [a for a in node.attribute if a.name not in ("alpha", "beta")]
        del node.attribute[:]
        node.attribute.extend(keep)
    del m.graph.initializer[:]
    for name, a in inits.items():
        m.graph.initializer.append(numpy_helper.from_array(factor.get(name, 1.0) * a, name))
    return m


class TestGemmScalars:
    """Y = alpha A B' + beta C: the parameters are alpha B and beta C (the edge weights)."""

    def check(self, model, X):
        imp = pathgeom.from_onnx(model)
        want = reference(model, {"x": X})[0]
        assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())
        # the path quantities: dense passes against the edge-list engine
        pq, edges = imp.path_quantities(), pathgeom.path_quantities(imp.graph, imp.p)
        assert_close(pq.gamma2, edges.gamma2, rtol=1e-12)
        assert_close(pq.kappa, edges.kappa, rtol=1e-12, scale=np.abs(edges.kappa).max())
        for q in (1, 3):
            assert_close(imp.path_norm(q=q), pathgeom.path_norm(imp.graph, imp.p, q),
                         rtol=1e-12)
        # and the network of the model whose initializers hold alpha B, beta C
        ref = pathgeom.from_onnx(folded_by_hand(model))
        assert_close(imp.p, ref.p, rtol=0)
        assert_close(pq.kappa, ref.path_quantities().kappa, rtol=1e-12)
        assert_close(pq.gamma2, gamma2_onnx(folded_by_hand(model), ref), rtol=1e-12)
        return imp

    @pytest.mark.parametrize("trans", [(1, 0), (0, 1)])
    def test_alpha_and_beta_are_folded(self, trans):
        rng = np.random.default_rng(11)
        model = scaled_mlp(rng, trans=trans)
        imp = self.check(model, rng.normal(size=(5, 3)))
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        blocks = imp.unpack(imp.p)
        assert list(blocks) == ["W*0.5", "b*2.0", "c", "V*0.25"]
        assert imp.scaled == [("W", 0.5, "W*0.5"), ("b", 2.0, "b*2.0"),
                              ("V", 0.25, "V*0.25")]
        assert_close(blocks["W*0.5"], 0.5 * inits["W"], rtol=0)
        assert_close(blocks["b*2.0"], 2.0 * inits["b"], rtol=0)
        assert_close(blocks["c"], inits["c"], rtol=0)

    def test_a_shared_weight_with_one_alpha_stays_tied(self):
        rng = np.random.default_rng(12)
        model = scaled_mlp(rng, alpha=0.5, alpha2=0.5, trans=(1, 1), shared=True)
        imp = self.check(model, rng.normal(size=(4, 3)))
        assert list(imp.unpack(imp.p))[0] == "W*0.5" and imp.n_params == 9 + 3 + 3
        counts = imp.graph.param_edge_counts()
        assert (counts[:9] == 2).all()              # every W entry: one edge per layer
        assert np.abs(imp.path_quantities().kappa2).max() > 0

    def test_a_shared_weight_with_two_alphas_is_refused(self):
        rng = np.random.default_rng(13)
        model = scaled_mlp(rng, alpha=0.5, alpha2=2.0, trans=(1, 1), shared=True)
        with pytest.raises(GraphError) as info:
            pathgeom.from_onnx(model)
        msg = str(info.value)
        for w in ("initializer 'W'", "node 'g1' (Gemm, alpha=0.5)",
                  "node 'g2' (Gemm, alpha=2)", "lose its tie", "the same alpha"):
            assert w in msg, msg

    def test_a_weight_also_read_by_a_matmul_is_refused(self):
        rng = np.random.default_rng(14)
        nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], alpha=3.0, name="g"),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("MatMul", ["h", "W"], ["y"], name="mm")]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 3]}, {"W": rng.normal(size=(3, 3))})
        with pytest.raises(GraphError, match=r"node 'g' \(Gemm, alpha=3\), node 'mm' "
                                             r"\(MatMul\)"):
            pathgeom.from_onnx(model)

    def test_alpha_on_a_transposed_weight_is_refused(self):
        rng = np.random.default_rng(15)
        nodes = [helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]),
                 helper.make_node("Gemm", ["x", "Wt"], ["y"], alpha=0.5, name="g")]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]}, {"W": rng.normal(size=(2, 3))})
        with pytest.raises(GraphError) as info:
            pathgeom.from_onnx(model)
        for w in ("'g' (Gemm)", "alpha=0.5 scales B 'Wt'", "not an initializer read "
                  "directly", "transB=1"):
            assert w in str(info.value), str(info.value)

    def test_alpha_then_a_folded_batchnorm(self):
        rng = np.random.default_rng(16)
        bn = {"bn.weight": rng.uniform(0.5, 2, 4), "bn.bias": rng.normal(size=4),
              "bn.mean": rng.normal(size=4), "bn.var": rng.uniform(0.5, 2, 4)}
        nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1, alpha=0.5,
                                  beta=-1.5),
                 helper.make_node("BatchNormalization", ["z", "bn.weight", "bn.bias",
                                                         "bn.mean", "bn.var"], ["n"]),
                 helper.make_node("Relu", ["n"], ["h"]),
                 helper.make_node("Gemm", ["h", "V"], ["y"], transB=1)]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]},
                     dict(W=rng.normal(size=(4, 3)), b=rng.normal(size=4),
                          V=rng.normal(size=(2, 4)), **bn))
        imp = pathgeom.from_onnx(model)
        X = rng.normal(size=(5, 3))
        want = reference(model, {"x": X})[0]
        assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())
        assert imp.folded == [("bn", "W*0.5*bn", "b*-1.5*bn")]
        assert list(imp.unpack(imp.p)) == ["W*0.5*bn", "b*-1.5*bn", "V"]

    def test_initializers_also_listed_as_inputs(self):
        # older exporters list every initializer among the graph inputs too
        rng = np.random.default_rng(18)
        model = scaled_mlp(rng)
        for t in model.graph.initializer:
            model.graph.input.append(helper.make_tensor_value_info(
                t.name, TensorProto.DOUBLE, list(numpy_helper.to_array(t).shape)))
        imp = self.check(model, rng.normal(size=(3, 3)))
        assert imp.input_names == ["x"]

    def test_beta_on_a_zero_constant(self):
        rng = np.random.default_rng(17)
        nodes = [helper.make_node("Constant", [], ["zero"],
                                  value=numpy_helper.from_array(np.zeros(2))),
                 helper.make_node("Gemm", ["x", "W", "zero"], ["y"], transB=1, beta=3.0)]
        model = make(nodes, {"x": ["N", 3]}, {"y": ["N", 2]}, {"W": rng.normal(size=(2, 3))})
        imp = pathgeom.from_onnx(model)
        assert imp.n_params == 6 and imp.scaled == []


# --------------------------------------------------------------------------- CLI and packaging


def run_cli(*argv):
    import io
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


class TestCLI:
    def test_group_on_onnx(self):
        status, out, err = run_cli("group", "--graph", str(DATA / "torch_rnn.onnx"))
        assert status == 0 and err == ""
        assert "ONNX model" in out and "dimension 4" in out

    def test_lemma1_and_invariance_on_onnx(self):
        status, out, _ = run_cli("lemma1", "--graph", str(DATA / "torch_tied_mlp.onnx"))
        assert status == 0
        err_line = next(l for l in out.splitlines() if l.startswith("largest relative error"))
        assert float(err_line.rsplit(" ", 1)[1]) < 1e-10
        status, out, _ = run_cli("invariance", "--graph", str(DATA / "torch_cnn.onnx"))
        assert status == 0 and "rescaling group dimension: 5" in out

    def test_draw_on_onnx(self, tmp_path):
        pytest.importorskip("matplotlib")
        path = tmp_path / "g.png"
        status, out, _ = run_cli("draw", "--graph", str(DATA / "torch_tied_mlp.onnx"),
                                 "--out", str(path))
        assert status == 0 and path.stat().st_size > 0

    def test_refused_model_is_a_clean_error(self, tmp_path):
        path = tmp_path / "tanh.onnx"
        onnx.save(one_op("Tanh"), str(path))
        status, _, err = run_cli("group", "--graph", str(path))
        assert status == 2 and "(Tanh)" in err


def test_core_does_not_import_onnx():
    code = ("import sys, pathgeom, pathgeom.cli\n"
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_onnx_says_how_to_install(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import pathgeom\n"
            "try:\n"
            "    pathgeom.from_onnx('model.onnx')\n"
            "except ImportError as e:\n"
            "    assert \"pip install 'pathgeom[onnx]'\" in str(e), e\n"
            "else:\n"
            "    raise SystemExit('no ImportError')\n"
            "from pathgeom import cli\n"
            "status = cli.main(['group', '--graph', 'model.onnx'])\n"
            "assert status == 1, status\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
