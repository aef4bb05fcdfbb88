"""Regressions: an in-place change (Relu, a bias Add, a residual sum) must not reach a
tensor that another name still reads (Identity, Dropout, Reshape, Slice: aliases)."""

import numpy as np
import pytest

import pathgeom

from helpers import assert_close

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _model(nodes, inits, outputs, n_in=3):
    info = lambda name: helper.make_tensor_value_info(name, TensorProto.DOUBLE, None)
    graph = helper.make_graph(nodes, "m",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE,
                                                             ["N", n_in])],
                              [info(o) for o in outputs],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check(model, rng):
    """forward (dense and graph) against onnx's evaluator; gamma2 dense against graph."""
    net = pathgeom.from_onnx(model)
    X = rng.standard_normal((4, 3))
    want = np.concatenate([np.asarray(y).reshape(4, -1)
                           for y in ReferenceEvaluator(model).run(None, {"x": X})], axis=1)
    assert_close(net.forward(X), want, rtol=1e-12, scale=1e-12)
    assert_close(net.graph.forward(net.p, net.graph_inputs(X)), want, rtol=1e-12, scale=1e-12)
    assert_close(net.gamma2(), pathgeom.gamma2(net.graph, net.p), rtol=1e-12)
    for q in (1, 3):
        assert_close(net.path_norm(q=q), pathgeom.path_norm(net.graph, net.p, q), rtol=1e-12)


@pytest.fixture
def inits():
    rng = np.random.default_rng(3)
    return {"W": rng.standard_normal((3, 6)), "b": rng.standard_normal(6)}


@pytest.mark.parametrize("alias", ["Identity", "Dropout"])
def test_relu_of_an_alias_leaves_the_original(inits, alias):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]),
             helper.make_node(alias, ["y"], ["f"]),
             helper.make_node("Relu", ["f"], ["r"])]
    _check(_model(nodes, inits, ["y", "r"]), np.random.default_rng(0))


def test_bias_on_an_alias_leaves_the_original(inits):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]),
             helper.make_node("Identity", ["y"], ["f"]),
             helper.make_node("Add", ["f", "b"], ["r"])]
    _check(_model(nodes, inits, ["y", "r"]), np.random.default_rng(1))


def test_sum_of_overlapping_slices(inits):
    const = lambda name, v: helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.int64)))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]),
             const("s0", [0]), const("e0", [4]), const("s1", [2]), const("e1", [6]),
             const("ax", [1]),
             helper.make_node("Slice", ["y", "s0", "e0", "ax"], ["a"]),
             helper.make_node("Slice", ["y", "s1", "e1", "ax"], ["c"]),
             helper.make_node("Add", ["a", "c"], ["o"])]
    _check(_model(nodes, inits, ["o"]), np.random.default_rng(2))


def test_sum_with_an_alias_of_itself(inits):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]),
             helper.make_node("Identity", ["y"], ["f"]),
             helper.make_node("Add", ["y", "f"], ["o"])]
    _check(_model(nodes, inits, ["o"]), np.random.default_rng(4))
