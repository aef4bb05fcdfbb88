"""The PyTorch-exported fixtures of issue 23 agree with the ONNX files they come with.

tests/data/onnx/make_resnet_fixtures.py wrote each ``NAME.onnx`` with PyTorch and, beside
it, ``NAME.npz`` with PyTorch's float64 outputs and path quantities.  These tests check
those references against the files alone, with onnx's float64 reference evaluator (no
PyTorch, no pathgeom), so that a test of the importer that trusts them trusts the file:

* ``Y`` is what the file computes;
* gamma^2 and the path norms are the sum of the outputs of the file's *squared twin*
  (every weight and bias to the power q, MaxPool replaced by an all-ones depthwise Conv,
  the average pools' 1/n raised to the power q, a BatchNormalization after a Conv replaced
  by the folded bias) on the all-ones input;
* kappa1 and kappa are its first derivative in q = w^2 and half its second derivative in w
  (central differences), and the tied references are the untied ones summed over copies.
"""

import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_rnn import RNN_14

from helpers import assert_close

DATA = pathlib.Path(__file__).resolve().parent / "data" / "onnx"

NAMES = ["resnet_ts", "resnet_dynamo", "autoencoder_ts", "autoencoder_dynamo", "rnn_ts",
         "rnn_dynamo", "tied_residual_ts", "tied_residual_dynamo"]
TIED = [n for n in NAMES if not n.startswith("resnet")]


class RNN(RNN_14):
    """The reference RNN operator with the Relu activation (the reference lacks it; the
    class name is the operator it replaces)."""

    op_domain = ""

    def choose_act(self, name, alpha, beta):
        if name in ("Relu", "relu"):
            return lambda x: np.maximum(x, 0.0)
        return super().choose_act(name, alpha, beta)


def load(name):
    return onnx.load(str(DATA / f"{name}.onnx")), np.load(DATA / f"{name}.npz")


def blocks(d, values, names="names", shapes="shapes"):
    """A flat per-parameter vector of the npz as ``{name: array}``."""
    out, k = {}, 0
    for n, s in zip(d[names], d[shapes]):
        shape = tuple(int(x) for x in str(s).strip("()").split(",") if x.strip())
        size = int(np.prod(shape))
        out[str(n)] = values[k:k + size].reshape(shape)
        k += size
    assert k == values.size
    return out


def parameters(model, d):
    """The npz's parameters from the file: initializers, or folded Conv + BatchNormalization."""
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64)
             for i in model.graph.initializer}
    out = {}
    for name, src in zip(d["names"], d["sources"]):
        name, src = str(name), str(src)
        if src == "initializer":
            out[name] = inits[name]
            continue
        conv_w, scale, beta, mean, var = src.split(":", 1)[1].split(",")
        bn = next(n for n in model.graph.node
                  if n.op_type == "BatchNormalization" and n.input[1] == scale)
        eps = next(a.f for a in bn.attribute if a.name == "epsilon")
        a = inits[scale] / np.sqrt(inits[var] + eps)
        out[name] = (inits[conv_w] * a.reshape(-1, 1, 1, 1) if name == f"{conv_w}|{scale}"
                     else inits[beta] - a * inits[mean])
    return out


def twin_outputs(model, params, q):
    """The sum of each output of the squared twin on the all-ones input (float64)."""
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (lambda g: list(g.value_info) + list(g.input))(
                  shape_inference.infer_shapes(model).graph)}
    powered = {n: np.abs(v) ** q for n, v in params.items()}
    by_conv = {n.split("|")[0]: n for n in params if "|" in n}   # folded conv weights
    inits = []
    for i in model.graph.initializer:
        a = numpy_helper.to_array(i)
        if i.data_type == TensorProto.FLOAT:
            a = powered.get(i.name, powered.get(by_conv.get(i.name), np.abs(a) ** q))
        inits.append(numpy_helper.from_array(np.asarray(a), i.name))
    nodes = []
    for n in model.graph.node:
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        x, y = n.input[0] if n.input else None, list(n.output)
        if n.op_type == "MaxPool":
            c, k = shapes[x][1], at["kernel_shape"]
            inits.append(numpy_helper.from_array(np.ones((c, 1, *k)), y[0] + "_ones"))
            nodes.append(helper.make_node("Conv", [x, y[0] + "_ones"], y, group=c, kernel_shape=k,
                                          strides=at.get("strides", [1] * len(k)),
                                          pads=at.get("pads", [0] * 2 * len(k))))
        elif n.op_type in ("GlobalAveragePool", "ReduceMean"):
            inits.append(numpy_helper.from_array(
                np.array(float(np.prod(shapes[x][2:])) ** (1 - q)), y[0] + "_f"))
            nodes.append(helper.make_node(n.op_type, list(n.input), [y[0] + "_mean"], **at))
            nodes.append(helper.make_node("Mul", [y[0] + "_mean", y[0] + "_f"], y))
        elif n.op_type == "BatchNormalization":     # the folded bias; the weight is in the conv
            b = powered[f"{n.input[2]}|{n.input[1]}"].reshape(-1, 1, 1)
            inits.append(numpy_helper.from_array(b, y[0] + "_b"))
            nodes.append(helper.make_node("Add", [x, y[0] + "_b"], y))
        else:
            nodes.append(n)
    g = model.graph
    graph = helper.make_graph(
        nodes, "twin",
        [helper.make_tensor_value_info(i.name, TensorProto.DOUBLE, shapes[i.name])
         for i in g.input],
        [helper.make_tensor_value_info(o.name, TensorProto.DOUBLE, None) for o in g.output],
        inits)
    twin = helper.make_model(graph, opset_imports=model.opset_import)
    feeds = {i.name: np.ones(shapes[i.name]) for i in g.input}
    return np.array([o.sum() for o in ReferenceEvaluator(twin, new_ops=[RNN]).run(None, feeds)])


def output_sets(name):
    """(npz key suffix, weights of the outputs): the RNN's references come for both
    outputs and for ``y`` alone."""
    return [("", [1.0, 1.0]), ("_y", [1.0, 0.0])] if name.startswith("rnn") else [("", [1.0])]


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_the_files(name):
    model, d = load(name)
    ev = ReferenceEvaluator(model, new_ops=[RNN])
    axis = 1 if name.startswith("rnn") else 0
    X = d["X"]
    outs = [ev.run(None, {model.graph.input[0].name: np.take(X, [b], axis=axis)})
            for b in range(X.shape[axis])]
    for k, key in enumerate(["Y", "Y_h"] if name.startswith("rnn") else ["Y"]):
        got = np.concatenate([o[k] for o in outs], axis=axis)
        assert_close(got, d[key].reshape(got.shape), rtol=1e-5, scale=np.abs(d[key]).max())


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_the_files(name):
    model, d = load(name)
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    params = parameters(model, d)
    assert sum(v.size for v in params.values()) == d["kappa1"].size
    for n, src in zip(d["names"], d["sources"]):
        if str(src) == "initializer":
            assert inits[str(n)] == params[str(n)].shape
        else:
            assert all(part in inits for part in str(src).split(":", 1)[1].split(","))
    assert ("folded" in "".join(map(str, d["sources"]))) == (name == "tied_residual_dynamo")


@pytest.mark.parametrize("name", NAMES)
def test_gamma2_and_path_norms(name):
    model, d = load(name)
    params = parameters(model, d)
    for suffix, w in output_sets(name):
        for q in (1, 2, 4):
            got = float(twin_outputs(model, params, q) @ w) ** (1 / q)
            assert_close(got, d[f"pathnorm_q{q}{suffix}"], rtol=1e-12)
        assert_close(float(twin_outputs(model, params, 2) @ w), d["gamma2" + suffix], rtol=1e-12)
        assert_close(d[f"pathnorm_q2{suffix}"] ** 2, d["gamma2" + suffix], rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_kappa1_by_differences(name):
    model, d = load(name)
    params = parameters(model, d)
    rng = np.random.default_rng(1)
    names = list(params)
    for suffix, w in output_sets(name):
        k1 = blocks(d, d["kappa1" + suffix])
        scale = max(np.abs(v).max() for v in k1.values())
        for _ in range(4):
            n = names[rng.integers(len(names))]
            idx = tuple(rng.integers(s) for s in params[n].shape)
            h = 1e-4 * (params[n][idx] ** 2 + np.mean(params[n] ** 2))

            def g(dq):
                p = {m: v.copy() for m, v in params.items()}
                p[n][idx] = np.sqrt(p[n][idx] ** 2 + dq)
                return float(twin_outputs(model, p, 2) @ w)
            assert_close((g(h) - g(-h)) / (2 * h), k1[n][idx], rtol=1e-6, scale=scale,
                         err_msg=f"{n}{idx}")


@pytest.mark.parametrize("name", TIED)
def test_kappa_by_second_differences(name):
    model, d = load(name)
    params = parameters(model, d)
    rng = np.random.default_rng(2)
    names = list(params)
    k = blocks(d, d["kappa"])
    scale = max(np.abs(v).max() for v in k.values())
    for _ in range(4):
        n = names[rng.integers(len(names))]
        idx = tuple(rng.integers(s) for s in params[n].shape)
        h = 1e-3 * max(abs(params[n][idx]), np.abs(params[n]).mean())

        def g(dp):
            p = {m: v.copy() for m, v in params.items()}
            p[n][idx] += dp
            return float(twin_outputs(model, p, 2).sum())
        assert_close(0.5 * (g(h) - 2 * g(0) + g(-h)) / h ** 2, k[n][idx], rtol=1e-5,
                     scale=scale, err_msg=f"{n}{idx}")


def test_tied_references_sum_the_copies():
    # the dynamo autoencoder's t is W.t(): tied kappa1 of W is kappa1(W) + kappa1(t).T, and
    # its tied kappa adds the cross terms of the tie (every path crosses W twice)
    _, d = load("autoencoder_dynamo")
    k1, k = blocks(d, d["kappa1"]), blocks(d, d["kappa"])
    k1t = blocks(d, d["kappa1_tied"], "names_tied", "shapes_tied")
    kt = blocks(d, d["kappa_tied"], "names_tied", "shapes_tied")
    assert_close(k1t["W"], k1["W"] + k1["t"].T)
    assert (kt["W"] > k["W"] + k["t"].T).all()
    # TorchScript's autoencoder is tied in the file: its kappa is the dynamo file's tied one
    _, ts = load("autoencoder_ts")
    assert_close(blocks(ts, ts["kappa"])["W"], kt["W"], rtol=1e-12)
    # the dynamo RNN's first-step hidden bias is a copy of b_hh
    _, d = load("rnn_dynamo")
    k1 = blocks(d, d["kappa1"])
    k1t = blocks(d, d["kappa1_tied"], "names_tied", "shapes_tied")
    assert_close(k1t["bias_hh_l0"], k1["bias_hh_l0"] + k1["linear_1"].reshape(3))
