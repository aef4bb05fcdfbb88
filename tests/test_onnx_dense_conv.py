"""The dense convolution passes of an ONNX import, route by route.

One sample of a two-dimensional convolution goes through compiled im2col/col2im kernels;
the power network's passes skip products where the structure allows it:

* an input constant per channel (the all-ones input of the first layer): no im2col, the
  window masks contracted axis by axis;
* an input constant on a box (later layers, away from the zero padding): products over
  the border band's columns only, plus one column for every interior output;
* an upstream gradient constant per channel (after a global average pool): no products
  with the positions; constant on a box of outputs (the layers before): products over
  the band's columns plus one.

Each route is checked against the edge-list engine on the same import (and the forward
pass against onnx's float64 reference evaluator), on hypothesis-drawn geometries, and a
spy asserts that the route was actually taken.  The kernels are checked against loops
written from their definition.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import pathgeom
from pathgeom import _conv_kernels as K
from pathgeom.interop.onnx import twin

from helpers import assert_close


# --------------------------------------------------------------------------- kernels


def _naive_cols(X, k, s, d, p, O):
    C, S1, S2 = X.shape
    cols = np.zeros((C * k[0] * k[1], O[0] * O[1]))
    for c in range(C):
        for k1 in range(k[0]):
            for k2 in range(k[1]):
                row = (c * k[0] + k1) * k[1] + k2
                for o1 in range(O[0]):
                    for o2 in range(O[1]):
                        i1 = o1 * s[0] + k1 * d[0] - p[0]
                        i2 = o2 * s[1] + k2 * d[1] - p[1]
                        if 0 <= i1 < S1 and 0 <= i2 < S2:
                            cols[row, o1 * O[1] + o2] = X[c, i1, i2]
    return cols


@st.composite
def geometries(draw):
    C = draw(st.integers(1, 3))
    S = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    hi = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    O = tuple((S[a] + p[a] + hi[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a in range(2))
    if min(O) < 1:
        O = (1, 1) if S[0] + p[0] + hi[0] >= d[0] * (k[0] - 1) + 1 else O
    from hypothesis import assume
    assume(min(O) >= 1)
    return C, S, k, s, d, p, O


@settings(deadline=None, max_examples=60)
@given(geometries(), st.integers(0, 2**31 - 1))
def test_im2col_kernels_match_their_definition(geo, seed):
    C, S, k, s, d, p, O = geo
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(C,) + S)
    want = _naive_cols(X, k, s, d, p, O)
    cols = np.full(want.shape, np.nan)           # every entry must be written
    K.im2col2d(X, *k, *s, *d, *p, O[1], cols)
    assert_close(cols, want, rtol=0, scale=0)
    # the runs kernel on an arbitrary subset of outputs, row by row
    keep = rng.random(O) < 0.5
    seg = []
    for o1 in range(O[0]):
        o2 = np.flatnonzero(keep[o1])
        if o2.size:
            seg.append((o1, int(o2[0]), int(o2[-1]) + 1))
    seg = np.array(seg, dtype=np.int64).reshape(-1, 3)
    picked = [o1 * O[1] + o2 for o1, a, b in seg for o2 in range(a, b)]
    part = np.full((want.shape[0], len(picked)), np.nan)
    K.im2col2d_segments(X, *k, *s, *d, *p, seg, part)
    assert_close(part, want[:, picked], rtol=0, scale=0)
    # col2im is the transpose: <cols(X), Dc> = <X, col2im(Dc)>
    Dc = rng.normal(size=want.shape)
    dX = np.zeros_like(X)
    K.col2im2d(Dc, *k, *s, *d, *p, O[1], dX)
    want_dX = np.zeros_like(X)
    for c in range(C):            # each input entry: the sum over the columns that read it
        for i1 in range(S[0]):
            for i2 in range(S[1]):
                E = np.zeros_like(X)
                E[c, i1, i2] = 1.0
                want_dX[c, i1, i2] = (_naive_cols(E, k, s, d, p, O) * Dc).sum()
    assert_close(dX, want_dX, scale=np.abs(Dc).sum())


@pytest.mark.parametrize("C, S, k, d, p", [
    (2, (3, 3), (3, 3), (3, 3), (4, 4)),        # one output; offset 0 reads padding only
    (4, (2, 2), (4, 4), (13, 13), (38, 38)),
    (1, (2, 5), (3, 4), (3, 3), (5, 5)),
])
def test_im2col_writes_inside_its_output_when_an_offset_reads_only_padding(C, S, k, d, p):
    # a kernel offset whose every output falls in the leading padding: the zeros of its
    # row must not run on past the row (past the end of the buffer for the last ones)
    O = tuple((S[a] + p[a] - d[a] * (k[a] - 1) - 1) + 1 for a in range(2))
    X = np.arange(1.0, C * S[0] * S[1] + 1).reshape((C,) + S)
    want = _naive_cols(X, k, (1, 1), d, p, O)
    size = want.size
    buf = np.full(size + 64, np.nan)
    K.im2col2d(X, *k, 1, 1, *d, *p, O[1], buf[:size].reshape(want.shape))
    assert_close(buf[:size].reshape(want.shape), want, rtol=0, scale=0)
    assert np.isnan(buf[size:]).all(), "im2col2d wrote past the end of its output"


@settings(deadline=None, max_examples=40)
@given(geometries(), st.integers(0, 2**31 - 1))
def test_sum_pool_kernels_match_their_definition(geo, seed):
    C, S, k, s, d, p, O = geo
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(C,) + S)
    cols = _naive_cols(X, k, s, d, p, O).reshape(C, k[0] * k[1], O[0] * O[1])
    Y = np.full((C,) + O, np.nan)
    K.sum_pool2d(X, *k, *s, *d, *p, Y)
    assert_close(Y.reshape(C, -1), cols.sum(axis=1), scale=np.abs(X).sum())
    dY = rng.normal(size=(C,) + O)
    dX = np.zeros_like(X)
    K.sum_pool2d_t(dY, *k, *s, *d, *p, dX)
    # the adjoint: <pool(X), dY> = <X, pool^T(dY)>
    assert_close(float((dX * X).sum()), float((Y * dY).sum()),
                 scale=float(np.abs(X).sum() * np.abs(dY).sum()))


# --------------------------------------------------------------------------- models


def _model(rng, size, channels, layers, head):
    """``layers``: (c_out, k, stride, pad, dilation, group, pool) per convolution, each
    followed by a ReLU (and a 3x3/2 MaxPool or AveragePool when ``pool``); ``k`` an int
    or a pair, ``pad`` an int or ONNX's (begin_1, begin_2, end_1, end_2); ``head``:
    "gap" (GlobalAveragePool, Flatten, Gemm) or "flat" (Flatten, Gemm)."""
    nodes, inits = [], []
    x, c_in, S = "x", channels, (size, size)
    for n, (c_out, k, stride, pad, dil, group, pool) in enumerate(layers):
        k = (k, k) if isinstance(k, int) else tuple(k)
        pad = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
        W = rng.normal(size=(c_out, c_in // group) + k) * 0.6
        b = rng.normal(size=c_out) * 0.3
        inits += [numpy_helper.from_array(W, f"c{n}.weight"),
                  numpy_helper.from_array(b, f"c{n}.bias")]
        nodes.append(helper.make_node("Conv", [x, f"c{n}.weight", f"c{n}.bias"], [f"z{n}"],
                                      kernel_shape=list(k), strides=[stride] * 2,
                                      pads=list(pad), dilations=[dil] * 2, group=group))
        nodes.append(helper.make_node("Relu", [f"z{n}"], [f"h{n}"]))
        x, c_in = f"h{n}", c_out
        S = tuple(_out_size(S[a], k[a], stride, pad[a], pad[a + 2], dil) for a in range(2))
        if pool:
            op = "MaxPool" if pool == "max" else "AveragePool"
            nodes.append(helper.make_node(op, [x], [f"p{n}"], kernel_shape=[3, 3],
                                          strides=[2, 2], pads=[1] * 4))
            x, S = f"p{n}", tuple(_out_size(s_, 3, 2, 1, 1, 1) for s_ in S)
    if head == "gap":
        nodes.append(helper.make_node("GlobalAveragePool", [x], ["g"]))
        x, width = "g", c_in
    else:
        width = c_in * S[0] * S[1]
    nodes.append(helper.make_node("Flatten", [x], ["f"], axis=1))
    inits += [numpy_helper.from_array(rng.normal(size=(2, width)) * 0.5, "fc.weight"),
              numpy_helper.from_array(rng.normal(size=2) * 0.3, "fc.bias")]
    nodes.append(helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], transB=1))
    graph = helper.make_graph(
        nodes, "convs",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@st.composite
def conv_models(draw):
    size = draw(st.integers(6, 14))
    channels = draw(st.integers(1, 3))
    layers, S, c_in = [], (size, size), channels
    for _ in range(draw(st.integers(1, 3))):
        k = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 3])))
        stride = draw(st.sampled_from([1, 1, 2]))
        # asymmetric pads, up to beyond the kernel (offsets that read only padding)
        pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
        dil = draw(st.sampled_from([1, 1, 2]))
        group = draw(st.sampled_from([1, 2])) if c_in % 2 == 0 else 1
        c_out = group * draw(st.integers(1, 3))
        S_new = tuple(_out_size(S[a], k[a], stride, pad[a], pad[a + 2], dil) for a in range(2))
        if min(S_new) < 2:
            break
        pool = draw(st.sampled_from([None, None, "max", "avg"])) if min(S_new) >= 3 else None
        layers.append((c_out, k, stride, pad, dil, group, pool))
        S = tuple(_out_size(s_, 3, 2, 1, 1, 1) for s_ in S_new) if pool else S_new
        c_in = c_out
    if not layers:
        layers = [(2, 1, 1, 0, 1, 1, None)]
    return size, channels, layers, draw(st.sampled_from(["gap", "flat"]))


def _out_size(S, k, stride, lo, hi, dil):
    return (S + lo + hi - dil * (k - 1) - 1) // stride + 1


def _check_against_graph(imp):
    pq = imp.path_quantities()
    ref = pathgeom.path_quantities(imp.graph, imp.p)
    assert_close(pq.gamma2, ref.gamma2)
    assert_close(pq.kappa1, ref.kappa1, scale=1e-12 * np.abs(ref.kappa1).max())
    assert_close(pq.kappa, ref.kappa, scale=1e-12 * np.abs(ref.kappa).max())
    for q in (1.0, 3.0):
        assert_close(imp.path_norm(q=q), pathgeom.path_norm(imp.graph, imp.p, q=q))


@settings(deadline=None, max_examples=40)
@given(conv_models(), st.integers(0, 2**31 - 1))
def test_dense_convolutions_equal_the_edge_list_engine(spec, seed):
    size, channels, layers, head = spec
    rng = np.random.default_rng(seed)
    model = _model(rng, size, channels, layers, head)
    imp = pathgeom.from_onnx(model)
    _check_against_graph(imp)
    ev = ReferenceEvaluator(model)
    X1 = rng.normal(size=(1, channels, size, size))
    Xc = np.broadcast_to(rng.normal(size=(1, channels, 1, 1)), X1.shape).copy()
    Xb = Xc.copy()
    Xb[..., 0, :] += rng.normal(size=size)        # constant on a box, not on the border
    X3 = rng.normal(size=(3, channels, size, size))
    for X in (X1, Xc, Xb, X3):
        want = ev.run(None, {"x": X})[0]
        assert_close(imp.forward(X), want, scale=np.abs(want).max())
        assert_close(imp.forward(X), imp.graph.forward(imp.p, imp.graph_inputs(X)),
                     scale=np.abs(want).max())


class _Spy:
    """Counts the routes the convolutions take."""

    def __init__(self, monkeypatch):
        self.const = self.band = self.dconst = self.gband = 0
        cc, bf, cr, gb = (twin.ConvOp._const_columns, twin.ConvOp._band_forward,
                          twin._constant_rows, twin.ConvOp._gradient_band)

        def const_columns(op, X, state):
            out = cc(op, X, state)
            self.const += out is not None
            return out

        def band_forward(op, X0, state):
            out = bf(op, X0, state)
            self.band += bool(out)
            return out

        def constant_rows(Dy, first):
            out = cr(Dy, first)
            self.dconst += out
            return out

        def gradient_band(op, Dy, state):
            out = gb(op, Dy, state)
            self.gband += out is not None
            return out

        monkeypatch.setattr(twin.ConvOp, "_gradient_band", gradient_band)
        monkeypatch.setattr(twin.ConvOp, "_const_columns", const_columns)
        monkeypatch.setattr(twin.ConvOp, "_band_forward", band_forward)
        monkeypatch.setattr(twin, "_constant_rows", constant_rows)


def test_each_route_is_taken_and_exact(monkeypatch):
    # stem on the all-ones input (constant per channel), two padded 3x3 convolutions on
    # inputs constant away from the border (band), a global average pool (constant
    # gradient into the last convolution), a strided one in between
    model = _model(np.random.default_rng(7), 40, 3,
                   [(4, 5, 2, 2, 1, 1, None), (6, 3, 1, 1, 1, 1, "avg"),
                    (6, 3, 1, 1, 2, 1, None), (8, 3, 1, 1, 1, 2, None)], "gap")
    imp = pathgeom.from_onnx(model)
    spy = _Spy(monkeypatch)
    pq = imp.path_quantities()
    assert spy.const == 1 and spy.band >= 2 and spy.dconst == 1
    ref = pathgeom.path_quantities(imp.graph, imp.p)
    assert_close(pq.gamma2, ref.gamma2)
    assert_close(pq.kappa1, ref.kappa1, scale=1e-12 * ref.kappa1.max())
    # and the real network through the same routes, on one sample constant on a box
    X = np.ones((1, 3, 40, 40))
    X[0, :, 0, :] = 3.0
    spy.const = spy.band = 0
    want = ReferenceEvaluator(model).run(None, {"x": X})[0]
    assert_close(imp.forward(X), want, scale=np.abs(want).max())
    assert spy.band >= 1


def test_own_parameters_are_read_only_and_new_ones_are_seen():
    model = _model(np.random.default_rng(3), 10, 2, [(3, 3, 1, 1, 1, 1, None)], "gap")
    imp = pathgeom.from_onnx(model)
    with pytest.raises(ValueError, match="read-only"):
        imp.p[0] = 1.0
    with pytest.raises(ValueError):
        imp.p.flags.writeable = True                # not even by asking numpy
    first = imp.gamma2()
    assert imp.gamma2() == first                    # the kept squares
    p = imp.p * 1.5
    imp.p = p
    assert not imp.p.flags.writeable
    p[:] = 0.0                                      # the network kept its own copy
    ref = pathgeom.path_quantities(imp.graph, imp.p)
    assert_close(imp.gamma2(), ref.gamma2)
    assert imp.gamma2() != first
    assert_close(imp.path_norm(q=2) ** 2, ref.gamma2)
    # an explicit p is used as given, and does not disturb the kept squares
    assert_close(imp.gamma2(np.asarray(imp.p) * 2.0),
                 pathgeom.gamma2(imp.graph, np.asarray(imp.p) * 2.0))
    assert_close(imp.gamma2(), ref.gamma2)


@pytest.mark.parametrize("size", [8, 24])
def test_band_routes_with_tied_weights(monkeypatch, size):
    # one residual block applied three times: its convolutions share parameters, so the
    # band's weight gradients are added (not written) into kappa1 (at 24x24 on the
    # forward's band route, at 8x8 on the gradient's)
    from onnx_models import tied_resnet
    model = tied_resnet(np.random.default_rng(5), size=size, width=3, repeats=3)
    imp = pathgeom.from_onnx(model)
    spy = _Spy(monkeypatch)
    pq = imp.path_quantities()
    assert (spy.band if size == 24 else spy.gband) >= 2
    ref = pathgeom.path_quantities(imp.graph, imp.p)
    assert_close(pq.gamma2, ref.gamma2)
    assert_close(pq.kappa1, ref.kappa1, scale=1e-12 * ref.kappa1.max())
    assert_close(pq.kappa, ref.kappa, scale=1e-12 * ref.kappa.max())


def test_gradient_band_route(monkeypatch):
    # small late maps: the forward inputs have almost no constant interior, but the
    # gradient coming back from the global average pool is constant on a box
    model = _model(np.random.default_rng(11), 16, 2,
                   [(3, 3, 2, 1, 1, 1, None), (4, 3, 2, 1, 1, 1, None),
                    (5, 3, 1, 1, 1, 1, None), (6, 3, 1, 1, 1, 1, None)], "gap")
    imp = pathgeom.from_onnx(model)
    spy = _Spy(monkeypatch)
    pq = imp.path_quantities()
    assert spy.gband >= 1 and spy.dconst == 1
    ref = pathgeom.path_quantities(imp.graph, imp.p)
    assert_close(pq.gamma2, ref.gamma2)
    assert_close(pq.kappa1, ref.kappa1, scale=1e-12 * ref.kappa1.max())


def test_infinite_values_in_a_constant_map_stay_infinite():
    # an intermediate map constant per channel but infinite (a huge first layer on a
    # constant input): the window-mask contraction would multiply inf by the masks'
    # zeros (NaN); the result is that of the other routes and of the reference
    W1 = np.full((1, 1, 1, 1), 1e200)
    W2 = np.abs(np.random.default_rng(2).normal(size=(2, 1, 3, 3))) + 0.1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["h"], kernel_shape=[1, 1]),
         helper.make_node("Conv", ["h", "w2"], ["z"], kernel_shape=[3, 3], pads=[1] * 4),
         helper.make_node("Flatten", ["z"], ["y"])], "inf",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 50])],
        [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(W2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    X = np.full((1, 1, 5, 5), 1e200)
    with np.errstate(over="ignore"):
        want = ReferenceEvaluator(model).run(None, {"x": X})[0]
        got = pathgeom.from_onnx(model).forward(X)
    assert np.isposinf(want).all()
    assert np.isposinf(got).all()


def test_non_finite_inputs_are_refused():
    model = _model(np.random.default_rng(0), 6, 1, [(2, 3, 1, 1, 1, 1, None)], "gap")
    X = np.ones((2, 1, 6, 6))
    X[1, 0, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"input 'x'\[1, 0, 2, 3\] = nan is not finite"):
        pathgeom.from_onnx(model).forward(X)


def _chain(weights, size=4):
    """Conv 1x1 layers of the given scalar weights (one channel), then Flatten."""
    nodes, inits, x = [], [], "x"
    for n, w in enumerate(weights):
        inits.append(numpy_helper.from_array(np.full((1, 1, 1, 1), float(w)), f"w{n}"))
        nodes.append(helper.make_node("Conv", [x, f"w{n}"], [f"h{n}"], kernel_shape=[1, 1]))
        x = f"h{n}"
    nodes.append(helper.make_node("Flatten", [x], ["y"]))
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 1, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", size * size])], inits)
    return pathgeom.from_onnx(helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("weights, want_gamma2", [
    ((1e-160, 1e-150), "below"),                # squares below the range: gamma2 1.6e-619
    ((1e-100, 1e-100, 1e100), 16 * 1e-200),     # an intermediate product below it
    ((0.0, 1e160, 1e160), 0.0),                 # squares beyond it, on zero-weight paths
])
def test_out_of_range_factors_get_the_edge_list_engines_answer(weights, want_gamma2):
    # the dense float64 passes would give 0 (or inf, nan) here; the import hands the
    # question to the edge-list engine, which reruns on scaled values
    net = _chain(weights)
    if want_gamma2 == "below":
        # not representable: whatever the edge-list engine answers (its scaled rerun
        # gives 0 and kappa1 = (1.6e-299, 1.6e-319), the last one subnormal)
        ref = pathgeom.path_quantities(net.graph, net.p)
        pq = net.path_quantities()
        assert pq.gamma2 == ref.gamma2 and net.gamma2() == ref.gamma2
        assert_close(pq.kappa1, ref.kappa1, rtol=0, scale=0)
        assert ref.kappa1[1] > 0                          # the dense pass alone gives 0
        return
    assert_close(net.gamma2(), want_gamma2)
    assert_close(net.gamma2(), pathgeom.gamma2(net.graph, net.p))
    assert_close(net.path_norm(q=2), np.sqrt(want_gamma2))
    assert_close(net.path_norm(q=1), pathgeom.path_norm(net.graph, net.p, q=1))
    if want_gamma2 == 0.0:
        # d gamma2 / d w0^2 = w1^2 w2^2 = 1e640 per path: kappa1 itself overflows
        with pytest.raises(pathgeom.PathOverflowError, match="kappa1"):
            pathgeom.path_quantities(net.graph, net.p)
        with pytest.raises(pathgeom.PathOverflowError, match="kappa1"):
            net.path_quantities()
        return
    ref = pathgeom.path_quantities(net.graph, net.p)
    pq = net.path_quantities()
    assert_close(pq.gamma2, ref.gamma2)
    assert_close(pq.kappa1, ref.kappa1)


def test_out_of_range_on_a_model_too_large_for_the_edge_list(monkeypatch):
    net = _chain((1e-100, 1e-100, 1e100))
    monkeypatch.setattr(twin, "MAX_GRAPH_EDGES", 1)
    with pytest.raises(pathgeom.PathUnderflowError, match="too large for the edge-list"):
        net.path_quantities()
    with pytest.raises(pathgeom.PathUnderflowError, match="below the float64 range"):
        net.gamma2()
    big = _chain((1e200, 1e200))
    with pytest.raises(pathgeom.PathOverflowError, match="overflows float64"):
        big.path_norm(q=2)
    # in range: the dense passes answer, no edge list needed
    assert_close(_chain((2.0, 3.0)).gamma2(), 16 * 36.0)
