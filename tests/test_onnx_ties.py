"""Tied copies and transposes of ONNX initializers: when they are tied, and the mapping form.

``from_onnx(..., tie_transposes=True)`` ties an initializer to an earlier one it equals
(as a copy or a transpose) only when the match is no coincidence: not for arrays made of
a few values (identity matrices, one-hot or sign patterns) and not for a symmetric matrix,
which matches both ways.  Those are reported, and a mapping ``{name: (source, how)}`` ties
them as the user says.  Each tie is checked against the same model written with one
initializer used twice (the tie the exporter lost), forwards against onnx's reference
evaluator.
"""

import pathlib
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import pathgeom
from pathgeom.interop.onnx.reading import distinctive

from helpers import assert_close

DATA = pathlib.Path(__file__).resolve().parent / "data" / "onnx"
RNG = np.random.default_rng


def make(nodes, inits, n_in=3, n_out=3, ints=None):
    tensors = [numpy_helper.from_array(np.asarray(v, dtype=np.float64), k)
               for k, v in inits.items()]
    tensors += [numpy_helper.from_array(np.asarray(v, dtype=np.int64), k)
                for k, v in (ints or {}).items()]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", n_out])], tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def two_layers(first, second, inits, trans2=1):
    """x -> Gemm(first, transB=1) -> Relu -> Gemm(second, transB=trans2) -> y."""
    nodes = [helper.make_node("Gemm", ["x", first], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", second], ["y"], transB=trans2)]
    return make(nodes, inits)


def quiet_import(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return pathgeom.from_onnx(model, **kw)


def import_with_warnings(model, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = pathgeom.from_onnx(model, **kw)
    return net, [str(w.message) for w in caught]


def same_as(net, model, ref_model, X):
    """``net`` (a tied import of ``model``) is the network of ``ref_model`` (one
    initializer used twice): same forward as the file, same parameters and kappa."""
    ref = quiet_import(ref_model)
    want = ReferenceEvaluator(model).run(None, {"x": X})[0]
    assert_close(net.forward(X), want, rtol=1e-12, scale=np.abs(want).max())
    assert_close(net.p, ref.p, rtol=0)
    assert_close(net.kappa(), ref.kappa(), rtol=1e-12)
    assert_close(net.kappa(), pathgeom.kappa1(net.graph, net.p) +
                 pathgeom.kappa2(net.graph, net.p), rtol=1e-12)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("a", [np.zeros((3, 3)), np.eye(3), np.eye(3)[[2, 0, 1]],
                               np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0]),
                               np.array([0.0, 0.0, 2.5, 0.0]), np.array([1.5, -0.5]),
                               np.array([[1.0, 2.0], [2.0, 1.0]])])
def test_arrays_of_few_values_are_not_distinctive(a):
    assert not distinctive(a)


def test_weights_are_distinctive_also_when_pruned():
    rng = RNG(0)
    W = rng.normal(size=(5, 4))
    assert distinctive(W)
    W[rng.random(W.shape) < 0.7] = 0.0          # most entries pruned to zero
    assert (W == 0).sum() > 10 and distinctive(W)


def test_identity_matrices_are_not_tied_automatically():
    # two layers that start as identities are equal by construction, not tied
    model = two_layers("A", "B", {"A": np.eye(3), "B": np.eye(3)})
    net, msgs = import_with_warnings(model, tie_transposes=True)
    assert net.ties == {} and net.n_params == 18
    assert len(msgs) == 1
    for w in ("'B' is a copy of initializer 'A'", "2 distinct values", "coincidence",
              "not tied automatically", "tie_transposes={'B': ('A', 'copy')}"):
        assert w in msgs[0], msgs[0]
    # without tie_transposes the same doubt is reported
    net, msgs = import_with_warnings(model)
    assert net.n_params == 18 and "coincidence" in msgs[0]


def test_a_symmetric_matrix_is_ambiguous():
    rng = RNG(1)
    S = rng.normal(size=(3, 3))
    S = S + S.T
    model = two_layers("S", "S2", {"S": S, "S2": S.copy()})
    net, msgs = import_with_warnings(model, tie_transposes=True)
    assert net.ties == {} and net.n_params == 18
    assert len(msgs) == 1
    for w in ("'S2' is both a copy and the transpose of initializer 'S'", "symmetric",
              "tie_transposes={'S2': ('S', 'copy')}", "{'S2': ('S', 'transpose')}"):
        assert w in msgs[0], msgs[0]
    # a diagonal matrix with distinct entries is symmetric too
    D = np.diag([1.5, -0.25, 2.0])
    net, msgs = import_with_warnings(two_layers("D", "D2", {"D": D, "D2": D.copy()}),
                                     tie_transposes=True)
    assert net.ties == {} and "both a copy and the transpose" in msgs[0]


def test_the_user_decides_a_symmetric_tie():
    rng = RNG(2)
    S = rng.normal(size=(3, 3))
    S = S + S.T
    X = rng.normal(size=(4, 3))
    model = two_layers("S", "S2", {"S": S, "S2": S.copy()})
    as_copy = quiet_import(model, tie_transposes={"S2": ("S", "copy")})
    as_transpose = quiet_import(model, tie_transposes={"S2": ("S", "transpose")})
    assert as_copy.ties == {"S2": ("S", "copy")}
    assert as_transpose.ties == {"S2": ("S", "transpose")}
    # the copy: S used twice the same way; the transpose: the second layer reads S^T
    same_as(as_copy, model, two_layers("S", "S", {"S": S}), X)
    same_as(as_transpose, model, two_layers("S", "S", {"S": S}, trans2=0), X)
    # the two ties share different entries: their kappa differ
    assert np.abs(as_copy.kappa() - as_transpose.kappa()).max() > 1e-3


def test_a_mapping_ties_coincident_identities_when_told():
    model = two_layers("A", "B", {"A": np.eye(3), "B": np.eye(3)})
    net = quiet_import(model, tie_transposes={"B": ("A", "copy")})
    assert net.ties == {"B": ("A", "copy")} and net.n_params == 9
    same_as(net, model, two_layers("A", "A", {"A": np.eye(3)}), RNG(3).normal(size=(4, 3)))


def test_a_mapping_extends_and_overrides_the_automatic_ties():
    rng = RNG(4)
    W = rng.normal(size=(3, 3))
    model = two_layers("W", "Wt", {"W": W, "Wt": W.T.copy()})
    # True and an empty mapping tie the same
    assert quiet_import(model, tie_transposes=True).ties == {"Wt": ("W", "transpose")}
    assert quiet_import(model, tie_transposes={}).ties == {"Wt": ("W", "transpose")}
    # None keeps an initializer untied, without a warning (the user has decided)
    net = quiet_import(model, tie_transposes={"Wt": None})
    assert net.ties == {} and net.n_params == 18
    # a chain: C tied by hand to Wt, itself tied automatically to W
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", "Wt"], ["z2"], transB=0),
             helper.make_node("Relu", ["z2"], ["h2"]),
             helper.make_node("Gemm", ["h2", "C"], ["y"], transB=0)]
    chain = make(nodes, {"W": W, "Wt": W.T.copy(), "C": W.T.copy()})
    net = quiet_import(chain, tie_transposes={"C": ("Wt", "copy")})
    assert net.ties == {"Wt": ("W", "transpose"), "C": ("Wt", "copy")}
    ref_nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
                 helper.make_node("Relu", ["z"], ["h"]),
                 helper.make_node("Gemm", ["h", "W"], ["z2"], transB=1),
                 helper.make_node("Relu", ["z2"], ["h2"]),
                 helper.make_node("Gemm", ["h2", "W"], ["y"], transB=1)]
    same_as(net, chain, make(ref_nodes, {"W": W}), rng.normal(size=(4, 3)))


@pytest.mark.parametrize("mapping, words", [
    ({"nope": ("W", "copy")}, ["no floating-point initializer named 'nope'", "'W'"]),
    ({"Wt": ("nope", "copy")}, ["no floating-point initializer named 'nope'"]),
    ({"Wt": ("W", "mirror")}, ["tie_transposes['Wt']", "'copy' or 'transpose'", "'mirror'"]),
    ({"Wt": "W"}, ["tie_transposes['Wt'] = 'W'", "expected a pair"]),
    ({"Wt": ("Wt", "copy")}, ["cannot be tied to itself"]),
    ({"Wt": ("W", "copy")}, ["tie_transposes['Wt']", "not those of 'W'",
                             "largest difference"]),
    ({"b": ("W", "transpose")}, ["tie_transposes['b']", "elements"]),
    ({"W": ("b", "transpose")}, ["'b' has shape (3,)", "only a matrix has a transpose"]),
    ({"shape": ("W", "copy")}, ["'shape' is not a parameter block"]),
    ({"Wt": ("W", "transpose"), "W": ("Wt", "transpose")}, ["form a cycle"]),
])
def test_bad_mapping_entries_are_named(mapping, words):
    rng = RNG(5)
    W = rng.normal(size=(3, 3))
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", "Wt"], ["y0"], transB=1),
             helper.make_node("Reshape", ["y0", "shape"], ["y"])]
    model = make(nodes, {"W": W, "Wt": W.T.copy(), "b": rng.normal(size=3)},
                 ints={"shape": [-1, 3]})
    with pytest.raises(ValueError) as info:
        pathgeom.from_onnx(model, tie_transposes=mapping)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_tie_transposes_of_another_type():
    model = two_layers("A", "B", {"A": np.eye(3), "B": np.eye(3)})
    with pytest.raises(TypeError, match="a mapping"):
        pathgeom.from_onnx(model, tie_transposes=[("B", "A")])


# --------------------------------------------------------------------------- PyTorch's files


def test_the_dynamo_autoencoder_is_tied_as_before():
    """torch's dynamo exporter writes the tied autoencoder's W and W.t() as W and t: tied
    (automatically or by the mapping), kappa is PyTorch's tied kappa (float64 autograd)."""
    d = np.load(DATA / "autoencoder_dynamo.npz")
    path = DATA / "autoencoder_dynamo.onnx"
    with pytest.warns(UserWarning, match="'t' is the transpose of initializer 'W'"):
        loose = pathgeom.from_onnx(path)
    auto = quiet_import(path, tie_transposes=True)
    told = quiet_import(path, tie_transposes={"t": ("W", "transpose")})
    assert loose.n_params == 31
    for net in (auto, told):
        assert net.ties == {"t": ("W", "transpose")}
        assert list(net.unpack(net.p)) == [str(n) for n in d["names_tied"]]
        assert_close(net.kappa(), d["kappa_tied"], rtol=1e-12)
        assert_close(net.path_quantities().kappa1, d["kappa1_tied"], rtol=1e-12)
