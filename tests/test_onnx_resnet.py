"""ResNet-shaped ONNX models: pooling, residual sums, folded BatchNorms, tied blocks.

Every model is written with onnx.helper (tests/onnx_models.py) and checked against onnx's
float64 reference evaluator, independently of pathgeom's engines:

* forward: the model itself;
* path norms and gamma^2: the power twin (max-pooling as an all-ones depthwise Conv,
  weights to the power q, averages weighted (1/n)^q) summed on the all-ones input;
* kappa1 and kappa: differences of the twin's gamma^2 in one parameter;

and the dense passes against the edge-list engine (``imp.graph``) on the same models.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_rnn import RNN_14

import pathgeom
from pathgeom import GraphError

from helpers import assert_close
from onnx_models import Builder, power_twin, resnet, tied_resnet

RNG = np.random.default_rng


def reference(model, X):
    return ReferenceEvaluator(model).run(None, {"x": X})[0]


def twin_sum(model, q, shape, values=None):
    """sum over paths of prod |w|^q, from the twin on the reference evaluator."""
    ones = np.ones((1,) + tuple(shape))
    return float(reference(power_twin(model, q, values), ones).sum())


def make(nodes, x_shape, y_shape, inits, opset=17, ints=None):
    tensors = [numpy_helper.from_array(np.asarray(v, dtype=np.float64), k)
               for k, v in inits.items()]
    tensors += [numpy_helper.from_array(np.asarray(v, dtype=np.int64), k)
                for k, v in (ints or {}).items()]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N"] + x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N"] + y_shape)], tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


MODELS = {
    "resnet": lambda: resnet(RNG(0)),
    "resnet_bn_stem": lambda: resnet(RNG(1), stem_bn=True),
    "resnet_7x7_stride2": lambda: resnet(RNG(2), size=18, stem_k=7, stem_stride=2,
                                         widths=(3, 5), blocks=(2, 1)),
    "tied": lambda: tied_resnet(RNG(3)),
}


def x_shape(imp):
    return imp.input_shapes[0]


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    model = MODELS[request.param]()
    return request.param, model, pathgeom.from_onnx(model)


class TestAgainstTheReferenceEvaluator:
    def test_forward(self, case):
        _, model, imp = case
        X = RNG(5).normal(size=(3,) + x_shape(imp))
        want = reference(model, X).reshape(3, -1)
        assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())

    @pytest.mark.parametrize("q", [1, 2, 4, 1.5])
    def test_path_norms(self, case, q):
        _, model, imp = case
        want = twin_sum(model, q, x_shape(imp))
        assert_close(imp.path_norm(q=q) ** q, want, rtol=1e-11)
        if q == 2:
            assert_close(imp.gamma2(), want, rtol=1e-12)
            assert_close(imp.path_quantities().gamma2, want, rtol=1e-12)

    def test_kappa1_by_differences(self, case):
        """g(q) is a polynomial in q_i: kappa1_i = dg/dq_i by a central difference in q."""
        name, model, imp = case
        pq = imp.path_quantities()
        base = imp.unpack(imp.p)
        rng = RNG(7)
        picks = rng.choice(imp.n_params, size=6, replace=False)
        for i in picks:
            block, where = imp.param_names[i]
            q_i = imp.p[i] ** 2
            h = 1e-3 * q_i
            if h == 0:
                continue
            vals = []
            for sign in (1.0, -1.0):
                moved = {k: v.copy() for k, v in base.items()}
                moved[block][where] = np.sqrt(q_i + sign * h)
                vals.append(twin_sum(model, 2, x_shape(imp), moved))
            fd = (vals[0] - vals[1]) / (2 * h)
            assert_close(pq.kappa1[i], fd, rtol=1e-6, scale=1e-9 * np.abs(pq.kappa1).max())

    def test_kappa_by_second_differences(self, case):
        """kappa_i = 1/2 d^2 gamma^2 / dp_i^2 (kappa2 is non-zero only for tied models)."""
        name, model, imp = case
        k = imp.kappa()
        base = imp.unpack(imp.p)
        picks = RNG(8).choice(imp.n_params, size=4, replace=False)
        if name == "tied":
            picks = [imp.param_names.index(("block.conv1.weight", (0, 1, 1, 1))),
                     imp.param_names.index(("block.conv2.bias", (2,)))] + list(picks[:2])
        for i in picks:
            block, where = imp.param_names[i]
            h = 1e-3 * max(1.0, abs(imp.p[i]))
            vals = []
            for step in (1.0, 0.0, -1.0):
                moved = {kk: v.copy() for kk, v in base.items()}
                moved[block][where] += step * h
                vals.append(twin_sum(model, 2, x_shape(imp), moved))
            fd = (vals[0] - 2 * vals[1] + vals[2]) / (2 * h * h)
            assert_close(k[i], fd, rtol=2e-5, scale=1e-7 * np.abs(k).max())
        if name == "tied":
            assert np.abs(imp.path_quantities().kappa2).max() > 0
        else:
            assert not imp.path_quantities().kappa2.any()


class TestAgainstTheGraph:
    """The dense passes against the edge-list engine on the same network."""

    def test_forward_and_quantities(self, case):
        _, model, imp = case
        X = RNG(6).normal(size=(2,) + x_shape(imp))
        g = imp.graph
        assert_close(imp.forward(X), g.forward(imp.p, imp.graph_inputs(X)), rtol=1e-11,
                     scale=1e-12)
        want = pathgeom.path_quantities(g, imp.p)
        got = imp.path_quantities()
        assert_close(got.gamma2, want.gamma2, rtol=1e-12)
        scale = 1e-13 * np.abs(want.kappa).max()
        assert_close(got.kappa1, want.kappa1, rtol=1e-11, scale=scale)
        assert_close(got.kappa2, want.kappa2, rtol=1e-11, scale=scale)
        assert_close(got.kappa, want.kappa, rtol=1e-11, scale=scale)

    def test_no_isolated_nodes(self, case):
        _, _, imp = case
        src, dst, _ = imp.graph.edges()
        touched = np.zeros(imp.graph.n_nodes, dtype=bool)
        touched[src] = touched[dst] = True
        assert touched.all()

    def test_node_kinds(self, case):
        name, model, imp = case
        kinds = imp.graph.kinds
        n_max = sum(n.op_type == "MaxPool" for n in model.graph.node)
        assert (kinds.count("max") > 0) == (n_max > 0)
        assert "relu" in kinds and "linear" in kinds


def test_rescaling_group_dimension_by_hand():
    """One beta per channel of each residual stream and of each block's inner conv."""
    widths, blocks = (3, 5), (2, 1)
    imp = pathgeom.from_onnx(resnet(RNG(0), size=12, widths=widths, blocks=blocks))
    dim = pathgeom.rescaling_group(imp.graph).dim
    assert dim == sum(c + n * c for c, n in zip(widths, blocks))


def test_maxpool_nodes_and_pooled_order():
    """A MaxPool makes max units in row-major order of the pooled map, edges of weight 1."""
    b = Builder(RNG(0))
    h = b.relu(b.conv("x", 1, 2, 3, 1, 1, name="c"))
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.node("Flatten", [h], axis=1)
    b.weight("V", (1, 2 * 2 * 2), 8)
    b.nodes.append(helper.make_node("Gemm", [h, "V"], ["y"], transB=1))
    model = b.model((1, 4, 4), "y", 1)
    imp = pathgeom.from_onnx(model)
    g = imp.graph
    maxes = [n for n, k in zip(g.nodes, g.kinds) if k == "max"]
    labels = [imp.node_label(n) for n in maxes]
    assert labels == sorted(labels, key=lambda s: [int(t) for t in s[s.index("[") + 1:-1]
                                                  .split(",")])
    assert len(maxes) == 8
    src, dst, par = g.edges()
    into_max = np.isin(dst, np.asarray([g.nodes.index(n) for n in maxes]))
    assert (par[into_max] == -1).all()
    assert np.all(g.fixed_weights()[into_max] == 1.0)
    X = RNG(1).normal(size=(4, 1, 4, 4))
    assert_close(imp.forward(X), reference(model, X), rtol=1e-12)


# --------------------------------------------------------------------------- operators


def _pool_model(op, **attrs):
    rng = RNG(0)
    nodes = [helper.make_node("Conv", ["x", "K"], ["z"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node(op, ["h"], ["m"], name="pool", **attrs),
             helper.make_node("Flatten", ["m"], ["f"]),
             helper.make_node("Gemm", ["f", "V"], ["y"], transB=1)]
    probe = make(nodes[:4], [2, 5, 6], ["F"], {"K": rng.normal(size=(3, 2, 3, 3))})
    probe.graph.output[0].name = "f"
    F = ReferenceEvaluator(probe).run(None, {"x": np.ones((1, 2, 5, 6))})[0].shape[1]
    return make(nodes, [2, 5, 6], [2], {"K": rng.normal(size=(3, 2, 3, 3)),
                                        "V": rng.normal(size=(2, F))})


POOLS = {
    "max_padded": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "max_dilated": ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 1], pads=[0, 1, 1, 0])),
    "avg_exclude_pad": ("AveragePool", dict(kernel_shape=[3, 2], strides=[1, 2],
                                            pads=[1, 1, 1, 0])),
    "avg_include_pad": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2],
                                            pads=[1, 1, 1, 1], count_include_pad=1)),
    "avg_same_upper": ("AveragePool", dict(kernel_shape=[2, 3], auto_pad="SAME_UPPER")),
    "global_avg": ("GlobalAveragePool", {}),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pooling(name):
    op, attrs = POOLS[name]
    model = _pool_model(op, **attrs)
    imp = pathgeom.from_onnx(model)
    X = RNG(2).normal(size=(3, 2, 5, 6))
    want = reference(model, X)
    assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())
    for q in (1, 2, 3):
        assert_close(imp.path_norm(q=q) ** q, twin_sum(model, q, (2, 5, 6)), rtol=1e-12)
    got, want = imp.path_quantities(), pathgeom.path_quantities(imp.graph, imp.p)
    assert_close(got.kappa1, want.kappa1, rtol=1e-12)      # the pooling's backward pass
    assert_close(imp.forward(X), imp.graph.forward(imp.p, imp.graph_inputs(X)), rtol=1e-12)


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_mean_over_spatial_axes(keepdims, opset):
    rng = RNG(0)
    mean = (helper.make_node("ReduceMean", ["h", "axes"], ["m"], keepdims=keepdims)
            if opset >= 18 else
            helper.make_node("ReduceMean", ["h"], ["m"], axes=[2, 3], keepdims=keepdims))
    nodes = [helper.make_node("Conv", ["x", "K"], ["z"]),
             helper.make_node("Relu", ["z"], ["h"]), mean,
             helper.make_node("Flatten", ["m"], ["f"]),
             helper.make_node("Gemm", ["f", "V"], ["y"], transB=1)]
    model = make(nodes, [2, 4, 5], [2], {"K": rng.normal(size=(3, 2, 2, 2)),
                                         "V": rng.normal(size=(2, 3))}, opset=opset,
                 ints={"axes": [2, 3]} if opset >= 18 else None)
    imp = pathgeom.from_onnx(model)
    X = rng.normal(size=(2, 2, 4, 5))
    assert_close(imp.forward(X), reference(model, X), rtol=1e-12)
    assert_close(imp.gamma2(), twin_sum(model, 2, (2, 4, 5)), rtol=1e-12)


def test_reduce_mean_over_the_batch_is_refused():
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
             helper.make_node("ReduceMean", ["z"], ["y"], axes=[0], name="rm")]
    model = make(nodes, [3], [2], {"W": np.ones((2, 3))})
    with pytest.raises(GraphError, match=r"'rm' \(ReduceMean\).*batch axis"):
        pathgeom.from_onnx(model)


def test_ceil_mode_that_adds_a_window_is_refused():
    model = _pool_model("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    with pytest.raises(GraphError, match=r"'pool' \(MaxPool\).*ceil_mode"):
        pathgeom.from_onnx(model)


def _bn_inits(rng, c, name="bn"):
    return {f"{name}.weight": rng.uniform(0.5, 1.5, c), f"{name}.bias": rng.normal(size=c),
            f"{name}.running_mean": rng.normal(size=c),
            f"{name}.running_var": rng.uniform(0.5, 2.0, c)}


@pytest.mark.parametrize("conv_bias", [True, False])
def test_batchnorm_after_conv_is_folded(conv_bias):
    rng = RNG(0)
    inits = {"conv.weight": rng.normal(size=(3, 2, 3, 3)), **_bn_inits(rng, 3),
             "V": rng.normal(size=(2, 3 * 4 * 4))}
    if conv_bias:
        inits["conv.bias"] = rng.normal(size=3)
    nodes = [helper.make_node("Conv", ["x", "conv.weight"] + (["conv.bias"] if conv_bias
                                                              else []), ["z"], name="conv"),
             helper.make_node("BatchNormalization", ["z", "bn.weight", "bn.bias",
                                                     "bn.running_mean", "bn.running_var"],
                              ["b"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["b"], ["h"]),
             helper.make_node("Flatten", ["h"], ["f"]),
             helper.make_node("Gemm", ["f", "V"], ["y"], transB=1)]
    model = make(nodes, [2, 6, 6], [2], inits)
    imp = pathgeom.from_onnx(model)
    bias_name = "conv.bias*bn" if conv_bias else "bn.shift"
    assert imp.folded == [("bn", "conv.weight*bn", bias_name)]
    blocks = imp.unpack(imp.p)
    assert set(blocks) == {"conv.weight*bn", bias_name, "V"}
    a = inits["bn.weight"] / np.sqrt(inits["bn.running_var"] + np.float32(1e-3))
    assert_close(blocks["conv.weight*bn"], inits["conv.weight"] * a[:, None, None, None])
    shift = inits["bn.bias"] - a * inits["bn.running_mean"]
    assert_close(blocks[bias_name], a * inits["conv.bias"] + shift if conv_bias else shift)
    X = rng.normal(size=(3, 2, 6, 6))
    want = reference(model, X)
    assert_close(imp.forward(X), want, rtol=1e-10, scale=np.abs(want).max())


def test_batchnorm_after_gemm_is_folded_and_elsewhere_is_fixed():
    rng = RNG(1)
    inits = {"W": rng.normal(size=(4, 3)), "c": rng.normal(size=4), **_bn_inits(rng, 4),
             **_bn_inits(rng, 4, "bn2"), "V": rng.normal(size=(2, 4))}
    nodes = [helper.make_node("Gemm", ["x", "W", "c"], ["z"], transB=1),
             helper.make_node("BatchNormalization", ["z", "bn.weight", "bn.bias",
                                                     "bn.running_mean", "bn.running_var"],
                              ["b"]),
             helper.make_node("Relu", ["b"], ["h"]),
             helper.make_node("BatchNormalization", ["h", "bn2.weight", "bn2.bias",
                                                     "bn2.running_mean", "bn2.running_var"],
                              ["h2"], name="late"),
             helper.make_node("Gemm", ["h2", "V"], ["y"], transB=1)]
    model = make(nodes, [3], [2], inits)
    imp = pathgeom.from_onnx(model)
    assert [f[0] for f in imp.folded] == ["bn"]
    assert set(imp.unpack(imp.p)) == {"W*bn", "c*bn", "V"}    # bn2's values are constants
    X = rng.normal(size=(5, 3))
    want = reference(model, X)
    assert_close(imp.forward(X), want, rtol=1e-10, scale=np.abs(want).max())
    # path norms are those of the folded network (folding merges the bias paths), with the
    # late BatchNorm's fixed weights |a|^q and shifts |b|^q
    a = inits["bn.weight"] / np.sqrt(inits["bn.running_var"] + 1e-5)
    folded = {"W": inits["W"] * a[:, None],
              "c": a * inits["c"] + inits["bn.bias"] - a * inits["bn.running_mean"]}
    by_hand = make([nodes[0]] + nodes[2:], [3], [2], {**inits, **folded})
    by_hand.graph.node[0].output[0] = "b"
    for q in (1, 2):
        assert_close(imp.path_norm(q=q) ** q, twin_sum(by_hand, q, (3,)), rtol=1e-12)


def test_residual_sum_of_two_relu_outputs_and_late_bias():
    rng = RNG(2)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", "U"], ["z2"], transB=1),
             helper.make_node("Relu", ["z2"], ["h2"]),
             helper.make_node("Add", ["h2", "h"], ["r"], name="residual"),
             helper.make_node("Add", ["r", "b"], ["rb"]),
             helper.make_node("Relu", ["h"], ["hh"]),          # h read a third time
             helper.make_node("Add", ["rb", "hh"], ["s"]),
             helper.make_node("Gemm", ["s", "V"], ["y"], transB=1)]
    model = make(nodes, [3], [2], {"W": rng.normal(size=(3, 3)), "U": rng.normal(size=(3, 3)),
                                   "b": rng.normal(size=3), "V": rng.normal(size=(2, 3))})
    imp = pathgeom.from_onnx(model)
    X = rng.normal(size=(4, 3))
    assert_close(imp.forward(X), reference(model, X), rtol=1e-12)
    assert_close(imp.gamma2(), twin_sum(model, 2, (3,)), rtol=1e-12)


# --------------------------------------------------------------------------- tied transposes


def test_tied_transposes_warn_and_tie():
    rng = RNG(3)
    W = rng.normal(size=(2, 4))
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", "Wt"], ["y"], transB=1)]
    split = make(nodes, [4], [4], {"W": W, "Wt": W.T.copy()})
    tied_nodes = [nodes[0], nodes[1], helper.make_node("MatMul", ["h", "W"], ["y"])]
    tied = make(tied_nodes, [4], [4], {"W": W})
    with pytest.warns(UserWarning, match=r"'Wt' is the transpose of initializer 'W'.*"
                                         r"tie_transposes=True"):
        loose = pathgeom.from_onnx(split)
    assert loose.n_params == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imp = pathgeom.from_onnx(split, tie_transposes=True)
        ref = pathgeom.from_onnx(tied)
    assert imp.n_params == 8 and imp.ties == {"Wt": ("W", "transpose")}
    assert list(imp.unpack(imp.p)) == ["W"]
    X = rng.normal(size=(3, 4))
    assert_close(imp.forward(X), reference(split, X), rtol=1e-12)
    k, k_ref = imp.path_quantities(), ref.path_quantities()
    assert_close(k.kappa, k_ref.kappa, rtol=1e-12)
    assert np.abs(k.kappa2).max() > 0 and not loose.path_quantities().kappa2.any()
    # exact copies too
    copy = make([nodes[0], nodes[1], helper.make_node("Gemm", ["h", "W2"], ["y"])], [4], [4],
                {"W": W, "W2": W.copy()})
    with pytest.warns(UserWarning, match="'W2' is a copy of initializer 'W'"):
        pathgeom.from_onnx(copy)
    imp = pathgeom.from_onnx(copy, tie_transposes=True)
    assert imp.ties == {"W2": ("W", "copy")}
    assert_close(imp.kappa(), ref.kappa(), rtol=1e-12)
    same = make([helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("Gemm", ["h", "W2"], ["y"], transB=1)], [4], [2],
                {"W": rng.normal(size=(4, 4)), "W2": np.zeros((2, 4))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pathgeom.from_onnx(same)                 # zeros are no copy of anything


# --------------------------------------------------------------------------- RNN zero state


def test_rnn_with_an_expanded_zero_initial_state():
    """nn.RNN exported without dynamic_axes: h0 = Expand(zeros, Shape-derived) (or
    ConstantOfShape): a zero initial state, accepted."""
    rng = RNG(4)
    H, T = 3, 4
    inits = {"W": rng.normal(size=(1, H, 2)) * 0.6, "R": rng.normal(size=(1, H, H)) * 0.5,
             "B": rng.normal(size=(1, 2 * H)), "V": rng.normal(size=(1, H))}
    nodes = [helper.make_node("Shape", ["x"], ["xs"]),
             helper.make_node("Gather", ["xs", "one_a"], ["n"], axis=0),
             helper.make_node("Concat", ["one_a", "n", "h_a"], ["h0shape"], axis=0),
             helper.make_node("ConstantOfShape", ["h0shape"], ["h0"],
                              value=numpy_helper.from_array(np.zeros(1))),
             helper.make_node("Expand", ["zero", "h0shape"], ["h0e"]),
             helper.make_node("RNN", ["x", "W", "R", "B", "", "h0"], ["Y", "Y_h"],
                              hidden_size=H, activations=["Relu"], name="rnn"),
             helper.make_node("Squeeze", ["Y_h", "ax0"], ["hT"]),
             helper.make_node("Gemm", ["hT", "V"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [T, "N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 1])],
        [numpy_helper.from_array(np.asarray(v, np.float64), k) for k, v in inits.items()]
        + [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in
           {"one": 1, "one_a": [1], "h_a": [H], "ax0": [0]}.items()]
        + [numpy_helper.from_array(np.zeros((1, 1, H)), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    imp = pathgeom.from_onnx(model)
    assert not imp.dense
    assert imp.graph.n_params == 6 + 9 + 6 + 3         # W, R, B = [Wb, Rb], V
    X = rng.normal(size=(T, 2, 2))
    want = ReferenceEvaluator(model, new_ops=[RNN]).run(None, {"x": X})[0]
    assert_close(imp.forward(X), want, rtol=1e-12, scale=np.abs(want).max())


class RNN(RNN_14):
    """The reference RNN operator with the Relu activation (the reference lacks it)."""

    op_domain = ""

    def choose_act(self, name, alpha, beta):
        if name in ("Relu", "relu"):
            return lambda x: np.maximum(x, 0.0)
        return super().choose_act(name, alpha, beta)


# --------------------------------------------------------------------------- more readers


def _unrolled_rnn(rng, T=4, n_in=2, H=3):
    """What torch's dynamo exporter writes for nn.RNN(nonlinearity="relu") on a
    (seq, batch, features) input without dynamic axes: the input projection for all steps,
    Slice/Squeeze per step, the zero initial state constant-folded into a copy of b_hh
    shaped (1, 1, H), per-step MatMul + Add + Relu, a Concat of the states."""
    W_ih, W_hh = rng.normal(size=(H, n_in)) * 0.6, rng.normal(size=(H, H)) * 0.5
    b_ih, b_hh = rng.normal(size=H), rng.normal(size=H)
    inits = {"b_ih": b_ih, "b_hh": b_hh, "W_ih_t": W_ih.T.copy(), "h0_proj": b_hh[None, None],
             "W_hh_t": W_hh.T.copy()}
    ints = {"ax0": [0]}
    nodes = [helper.make_node("MatMul", ["x", "W_ih_t"], ["xw"]),
             helper.make_node("Add", ["xw", "b_ih"], ["lin"])]
    h = None
    for t in range(T):
        ints[f"s{t}"], ints[f"e{t}"] = [t], [t + 1]
        nodes += [helper.make_node("Slice", ["lin", f"s{t}", f"e{t}", "ax0"], [f"sl{t}"]),
                  helper.make_node("Squeeze", [f"sl{t}", "ax0"], [f"x{t}"])]
        if h is None:
            nodes.append(helper.make_node("Add", ["h0_proj", f"x{t}"], [f"a{t}"]))
        else:
            nodes += [helper.make_node("MatMul", [h, "W_hh_t"], [f"r{t}"]),
                      helper.make_node("Add", [f"r{t}", "b_hh"], [f"rb{t}"]),
                      helper.make_node("Add", [f"rb{t}", f"x{t}"], [f"a{t}"])]
        nodes.append(helper.make_node("Relu", [f"a{t}"], [f"h{t}"]))
        h = f"h{t}"
    nodes.append(helper.make_node("Concat", [f"h{t}" for t in range(T)], ["y"], axis=0,
                                  name="cat"))
    tensors = [numpy_helper.from_array(np.asarray(v, np.float64), k) for k, v in inits.items()]
    tensors += [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in ints.items()]
    graph = helper.make_graph(
        nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [T, 1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [T, 1, H])], tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_rnn_unrolled_by_the_dynamo_exporter():
    rng = RNG(9)
    T, H = 4, 3
    model = _unrolled_rnn(rng, T=T, H=H)
    with pytest.raises(GraphError, match="pass batch_axis= to from_onnx"):
        pathgeom.from_onnx(model, tie_transposes=True)    # batch axis 1, all axes fixed
    with pytest.warns(UserWarning, match="'h0_proj' is a reshaped copy of initializer"):
        loose = pathgeom.from_onnx(model, batch_axis=1)
    imp = pathgeom.from_onnx(model, batch_axis=1, tie_transposes=True)
    assert imp.ties == {"h0_proj": ("b_hh", "copy")}
    assert imp.n_params == loose.n_params - H == 2 * H + H * 2 + H * H
    X = rng.normal(size=(T, 1, 2))                    # the exported batch size is 1
    assert_close(imp.forward(X), reference(model, X).reshape(1, -1), rtol=1e-12)
    # W_hh is used by T - 1 operations: kappa2 from the edge list, non-zero on it only
    pq = imp.path_quantities()
    kappa2 = imp.unpack(pq.kappa2)
    assert kappa2["W_hh_t"].any() and not kappa2["W_ih_t"].any()
    assert_close(pq.kappa, pathgeom.kappa(imp.graph, imp.p), rtol=1e-12)


def test_relu_of_a_model_input():
    rng = RNG(10)
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("Gemm", ["h", "W"], ["y"], transB=1)]
    model = make(nodes, [3], [2], {"W": rng.normal(size=(2, 3))})
    imp = pathgeom.from_onnx(model)
    X = rng.normal(size=(4, 3))
    assert_close(imp.forward(X), reference(model, X), rtol=1e-14)
    assert imp.graph.kinds.count("relu") == 3


def test_path_norm_of_an_import_through_pathgeom():
    imp = pathgeom.from_onnx(resnet(RNG(11), size=8, widths=(2, 3)))
    for q in (1, 2, 3.5):
        want = pathgeom.path_norm(imp.graph, imp.p, q)
        assert_close(pathgeom.path_norm(imp, q=q), want, rtol=1e-12)
        assert_close(imp.path_norm(q=q), want, rtol=1e-12)
    with pytest.raises(ValueError, match="q must be"):
        imp.path_norm(q=0.5)


def test_dense_results_are_read_only_and_share_kappa():
    imp = pathgeom.from_onnx(resnet(RNG(12), size=8, widths=(2, 3)))
    pq = imp.path_quantities()
    assert pq.kappa is pq.kappa1 and not pq.kappa2.any()
    with pytest.raises(ValueError):
        pq.kappa1[0] = 1.0
    again = imp.path_quantities()                      # scratch arrays reused: same values
    assert_close(again.kappa1, pq.kappa1, rtol=0)
    assert again.kappa1 is not pq.kappa1


@pytest.mark.parametrize("stem_bn", [False, True])
def test_rescaling_group_with_a_folded_stem(stem_bn):
    imp = pathgeom.from_onnx(resnet(RNG(13), size=8, widths=(2, 3), blocks=(1, 2),
                                    stem_bn=stem_bn))
    assert pathgeom.rescaling_group(imp.graph).dim == 2 + 2 + 3 + 2 * 3


def test_reading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        pathgeom.from_onnx(tmp_path / "missing.onnx")
    with pytest.raises(IsADirectoryError, match="directory"):
        pathgeom.from_onnx(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        pathgeom.from_onnx(tmp_path / "empty.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00not a model" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        pathgeom.from_onnx(tmp_path / "junk.onnx")
    with pytest.raises(TypeError, match="path, a binary file object"):
        pathgeom.from_onnx(3.5)
    with pytest.raises(TypeError, match="tie_transposes"):
        pathgeom.from_onnx(resnet(RNG(0), size=4, widths=(1, 1)), tie_transposes="yes")
    with pytest.raises(ValueError, match="batch_axis"):
        pathgeom.from_onnx(resnet(RNG(0), size=4, widths=(1, 1)), batch_axis=7)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(4, 9),
       widths=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       stem=st.sampled_from([(3, 1), (5, 2), (1, 1)]), stem_bn=st.booleans(),
       n_blocks=st.integers(1, 2))
def test_dense_passes_equal_the_graph_engine(seed, size, widths, stem, stem_bn, n_blocks):
    """Random ResNet-shaped models: the dense passes against the edge-list engine, and the
    rescaling group's dimension against the count by hand."""
    rng = RNG(seed)
    model = resnet(rng, size=size, widths=tuple(widths), blocks=(n_blocks,) * len(widths),
                   stem_k=stem[0], stem_stride=stem[1], stem_bn=stem_bn, in_ch=2, n_out=2,
                   scale=0.8)
    imp = pathgeom.from_onnx(model)
    g = imp.graph
    X = rng.normal(size=(2, 2, size, size))
    want_y = reference(model, X)
    assert_close(imp.forward(X), want_y, rtol=1e-11, scale=np.abs(want_y).max())
    want = pathgeom.path_quantities(g, imp.p)
    got = imp.path_quantities()
    assert_close(got.gamma2, want.gamma2, rtol=1e-12)
    assert_close(got.kappa, want.kappa, rtol=1e-11, scale=1e-13 * np.abs(want.kappa).max())
    for q in (1, 3):
        assert_close(imp.path_norm(q=q), pathgeom.path_norm(g, imp.p, q), rtol=1e-12)
    assert pathgeom.rescaling_group(g).dim == sum(c * (1 + n_blocks) for c in widths)


def test_edge_bound_and_the_graph_size_guard(monkeypatch):
    from pathgeom.interop.onnx import twin
    for make_model in MODELS.values():
        imp = pathgeom.from_onnx(make_model())
        assert imp.n_edges_bound >= imp.graph.n_edges
    imp = pathgeom.from_onnx(resnet(RNG(0), size=8, widths=(2, 3)))
    monkeypatch.setattr(twin, "MAX_GRAPH_EDGES", 100)
    with pytest.raises(MemoryError, match="dense passes"):
        imp.graph
    assert imp.path_quantities().gamma2 > 0          # no edge list needed


def test_overflow_is_an_error_not_inf():
    imp = pathgeom.from_onnx(resnet(RNG(14), size=8, widths=(2, 3)))
    p = imp.p.copy()
    p[0] = 1e200                                     # its square overflows float64
    with pytest.raises(pathgeom.PathOverflowError, match="scale the weights down"):
        imp.path_quantities(p)
    with pytest.raises(pathgeom.PathOverflowError):
        imp.path_norm(p, q=2)
    assert np.isfinite(imp.path_norm(p, q=1))        # 1e200 itself is finite
