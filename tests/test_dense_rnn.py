"""The RNN constructor's dense passes (``engine.rnn_dense_*`` over
``pathgeom._dense_kernels``) against the numpy passes they replaced, kept here as the
slow, obvious reference: every depth, both output modes, biases, narrow and wide inputs,
outputs and lower layers (the kernels' inline and BLAS paths), B = 1, T = 1, read-only and
strided arrays, the overflow errors."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pathgeom
from pathgeom import PathOverflowError, engine
from pathgeom._dense_kernels import SMALL

from helpers import assert_close


# ---------------------------------------------------------------------------- reference


def reference_states(net, p, X):
    """The numpy forward pass: hidden states, list over layers of (T, B, H_l)."""
    W_in, W_rec, _, b, _ = net._blocks(p)
    below = np.moveaxis(X, 1, 0)
    states = []
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow tests
        for l in range(net.n_layers):
            h = below @ W_in[l].T + b[l]
            np.maximum(h[0], 0.0, out=h[0])
            for t in range(1, net.T):
                h[t] = np.maximum(h[t - 1] @ W_rec[l].T + h[t], 0.0)
            states.append(h)
            below = h
    return states


def reference_forward(net, p, X):
    _, _, W_out, _, b_out = net._blocks(p)
    top = reference_states(net, p, X)[-1]
    if net.outputs == "last":
        return top[-1] @ W_out.T + b_out
    return np.moveaxis(top @ W_out.T + b_out, 0, 1)


def reference_backward(net, p, X, dY):
    """The numpy backpropagation through time: dL/dp for the output gradient dY."""
    W_in, W_rec, W_out, _, _ = net._blocks(p)
    states = reference_states(net, p, X)
    grad = np.zeros(net.n_params)
    gW_in, gW_rec, gW_out, gb, gb_out = net._blocks(grad)
    top = states[-1]
    if net.outputs == "last":
        dh = np.zeros_like(top)
        dh[-1] = dY @ W_out
        gW_out += dY.T @ top[-1]
        gb_out += dY.sum(axis=0)
    else:
        dYt = np.moveaxis(dY, 1, 0)
        dh = dYt @ W_out
        gW_out += dYt.reshape(-1, net.n_out).T @ top.reshape(-1, top.shape[-1])
        gb_out += dYt.sum(axis=(0, 1))
    for l in range(net.n_layers - 1, -1, -1):
        h = states[l]
        below = np.moveaxis(X, 1, 0) if l == 0 else states[l - 1]
        dz = np.empty_like(h)
        carry = np.zeros_like(h[0])
        for t in range(net.T - 1, -1, -1):
            dz[t] = (dh[t] + carry) * (h[t] > 0)
            carry = dz[t] @ W_rec[l]
        for t in range(net.T):
            gW_in[l] += dz[t].T @ below[t]
            gb[l] += dz[t].sum(axis=0)
            if t:
                gW_rec[l] += dz[t].T @ h[t - 1]
        dh = dz @ W_in[l]
    return grad


# ---------------------------------------------------------------------------- cases

# widths on both sides of SMALL: inline (1, 2, any narrow) and BLAS paths
WIDTHS = [1, 2, 3, SMALL + 1, SMALL + 4]


@st.composite
def cases(draw):
    n_layers = draw(st.integers(1, 3))
    config = dict(n_in=draw(st.sampled_from(WIDTHS)),
                  hidden=draw(st.lists(st.sampled_from(WIDTHS), min_size=n_layers,
                                       max_size=n_layers)),
                  n_out=draw(st.sampled_from(WIDTHS)), T=draw(st.integers(1, 6)),
                  outputs=draw(st.sampled_from(["last", "all"])), bias=draw(st.booleans()))
    B = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    net = pathgeom.rnn(**config)
    rng = np.random.default_rng(seed)
    p = net.init(rng, "uniform", scale=0.8)
    if net.bias:
        p[net.layout.slice("b_out")] = rng.uniform(-0.5, 0.5, net.n_out)
        for l in range(net.n_layers):
            p[net.layout.slice("b", l)] = rng.uniform(-0.5, 0.5, net.hidden[l])
    X = rng.normal(size=(B, net.T, net.n_in))
    dY = rng.normal(size=reference_forward(net, p, X).shape)
    return net, p, X, dY


def _abs_scale(net, p, X, dY=None):
    """The same passes on |p|, |X|, |dY|: sums of the absolute terms, the yardstick for
    entries whose terms cancel."""
    if dY is None:
        return [np.abs(h) for h in reference_states(net, np.abs(p), np.abs(X))]
    return reference_backward(net, np.abs(p), np.abs(X), np.abs(dY))


@settings(max_examples=80, deadline=None)
@given(case=cases())
def test_dense_passes_equal_the_numpy_reference(case):
    net, p, X, dY = case
    Y, states = net.forward_with_states(p, X)
    for h, ref, scale in zip(states, reference_states(net, p, X), _abs_scale(net, p, X)):
        assert h.shape == ref.shape and h.flags.c_contiguous
        assert_close(h, ref, 1e-12, scale=scale)
    Y_scale = np.abs(reference_forward(net, np.abs(p), np.abs(X)))
    assert_close(Y, reference_forward(net, p, X), 1e-12, scale=Y_scale)
    assert_close(net.forward(p, X), Y, 0)
    want = reference_backward(net, p, X, dY)
    scale = _abs_scale(net, p, X, dY)
    assert_close(net.backward(p, X, dY), want, 1e-12, scale=scale)
    assert_close(net.backward(p, X, dY, states=states), want, 1e-12, scale=scale)


@pytest.mark.parametrize("config", [
    dict(n_in=2, hidden=5, n_out=1, T=1),
    dict(n_in=2, hidden=[3, 11], n_out=1, T=1, outputs="all", bias=True),
    dict(n_in=1, hidden=[10, 2], n_out=12, T=4, outputs="all", bias=True),
    dict(n_in=11, hidden=[2, 9, 1], n_out=2, T=5, bias=True),
])
@pytest.mark.parametrize("B", [1, 3])
def test_edge_shapes_equal_the_numpy_reference(config, B):
    """B = 1 and T = 1 (no recurrent step, no W_rec gradient), deep and wide mixtures."""
    net = pathgeom.rnn(**config)
    rng = np.random.default_rng(B)
    p = net.init(rng, "uniform", scale=0.9)
    X = rng.normal(size=(B, net.T, net.n_in))
    dY = rng.normal(size=net.forward(p, X).shape)
    assert_close(net.forward(p, X), reference_forward(net, p, X), 1e-12,
                 scale=np.abs(reference_forward(net, np.abs(p), np.abs(X))))
    assert_close(net.backward(p, X, dY), reference_backward(net, p, X, dY), 1e-12,
                 scale=_abs_scale(net, p, X, dY))
    if net.T == 1:
        assert np.all(net.backward(p, X, dY)[net.layout.slice("W_rec", 0)] == 0.0)


@pytest.mark.parametrize("n_in", [2, SMALL + 3])
def test_read_only_and_strided_arrays(n_in):
    """Read-only p, X, dY (views of other arrays) and X with strides: the same results
    as contiguous writable copies."""
    net = pathgeom.rnn(n_in, [4, 10], 2, T=6, outputs="all", bias=True)
    rng = np.random.default_rng(7)
    p = net.init(rng, "uniform", scale=0.7)
    big = rng.normal(size=(3, 2 * net.T, n_in + 1))
    X = big[:, ::2, 1:]  # strided on every axis
    dY = rng.normal(size=(3, net.T, 2))
    Y0, g0 = net.forward(p, np.ascontiguousarray(X)), net.backward(p, X.copy(), dY)
    for a in (p, big, dY):
        a.setflags(write=False)
    Xf = np.asfortranarray(X)
    Xf.setflags(write=False)
    for x in (X, Xf):
        np.testing.assert_array_equal(net.forward(p, x), Y0)
        np.testing.assert_array_equal(net.backward(p, x, dY), g0)
        Y, states = net.forward_with_states(p, x)
        np.testing.assert_array_equal(net.backward(p, x, dY, states=states), g0)
    assert_close(g0, reference_backward(net, p, X, dY), 1e-12,
                 scale=_abs_scale(net, p, X, dY))


def test_states_are_new_arrays_every_call():
    net = pathgeom.rnn(2, 6, 1, T=5)
    rng = np.random.default_rng(0)
    p = net.init(rng, "uniform", scale=0.8)
    X1, X2 = rng.normal(size=(2, 3, 5, 2))
    _, s1 = net.forward_with_states(p, X1)
    kept = [h.copy() for h in s1]
    _, s2 = net.forward_with_states(p, X2)
    assert all(a is not b and not np.shares_memory(a, b) for a, b in zip(s1, s2))
    for h, k in zip(s1, kept):
        np.testing.assert_array_equal(h, k)


def test_the_engine_loops_equal_the_reference_on_one_layer():
    """The engine functions on their own, a layer with a wide input and a wide gradient
    from above (the BLAS paths) and with narrow ones (the inline paths)."""
    rng = np.random.default_rng(5)
    T, B, H = 7, 4, 6
    for K in (2, SMALL + 2):
        x = rng.normal(size=(T, B, K))
        WinT, Wrec, b = rng.normal(size=(K, H)), rng.normal(size=(H, H)) / 2, rng.normal(size=H)
        h = np.empty((T, B, H))
        engine.rnn_dense_forward(x, WinT, Wrec.T, b, h)
        ref = x @ WinT + b
        ref[0] = np.maximum(ref[0], 0)
        for t in range(1, T):
            ref[t] = np.maximum(ref[t - 1] @ Wrec.T + ref[t], 0)
        assert_close(h, ref, 1e-12, scale=1e-12)
        for TG in (1, T):
            G, M = rng.normal(size=(TG, B, K)), rng.normal(size=(K, H))
            dz = np.empty_like(h)
            assert engine.rnn_dense_bptt(G, M, h, Wrec, dz)
            dh = np.zeros_like(h)
            dh[T - TG:] = G @ M
            want, carry = np.empty_like(h), np.zeros((B, H))
            for t in range(T - 1, -1, -1):
                want[t] = (dh[t] + carry) * (h[t] > 0)
                carry = want[t] @ Wrec
            assert_close(dz, want, 1e-12, scale=1e-12)
            d_rec, d_in, d_b = engine.rnn_dense_grads(dz, h, x, True)
            assert_close(d_rec, np.einsum("tbj,tbk->jk", dz[1:], h[:-1]), 1e-12, scale=1e-12)
            assert_close(d_in, np.einsum("tbj,tbk->jk", dz, x), 1e-12, scale=1e-12)
            assert_close(d_b, dz.sum(axis=(0, 1)), 1e-12, scale=1e-12)
            assert engine.rnn_dense_grads(dz, h, x, False)[2] is None
            for bad in (np.inf, -np.inf, np.nan):  # a non-finite state anywhere is seen
                hb = h.copy()
                hb[rng.integers(T), rng.integers(B), rng.integers(H)] = bad
                assert not engine.rnn_dense_bptt(G, M, hb, Wrec, dz)


class TestOverflow:
    """Non-finite states and gradients raise PathOverflowError with the messages of the
    numpy passes."""

    def test_forward_overflow(self):
        net = pathgeom.rnn(1, 1, 1, T=3)
        p = net.pack(W_in=np.array([[1e300]]), W_rec=np.array([[1e10]]),
                     W_out=np.array([[1.0]]))
        with pytest.raises(PathOverflowError, match=r"forward pass overflowed float64; scale"):
            net.forward(p, np.ones((2, 3, 1)))
        with pytest.raises(PathOverflowError, match=r"forward pass overflowed float64 in "
                                                     r"layer 0"):
            net.backward(p, np.ones((2, 3, 1)), np.ones((2, 1)))

    @pytest.mark.parametrize("first", [0, 1])
    def test_the_first_layer_that_overflows_is_named(self, first):
        # an input at the first step only; the overflowing layer's first state is inf,
        # then 0 (W_rec < 0 turns it into -inf before the relu), so the outputs stay
        # finite and only the backward pass sees the overflow
        net = pathgeom.rnn(1, [1, 1], 1, T=4)
        W_in = [np.array([[1e300 if first == 0 else 1.0]]),
                np.array([[1.0 if first == 0 else 1e300]])]
        W_rec = [np.array([[-1.0 if first == 0 else 0.0]]), np.array([[-1.0]])]
        p = net.pack(W_in=W_in, W_rec=W_rec, W_out=np.array([[1.0]]))
        X = np.zeros((2, 4, 1))
        X[:, 0] = 1e10
        assert np.isfinite(net.forward(p, X)).all()
        bad = [l for l, h in enumerate(reference_states(net, p, X)) if not np.isfinite(h).all()]
        assert bad and bad[0] == first
        with pytest.raises(PathOverflowError, match=f"overflowed float64 in layer {first}"):
            net.backward(p, X, np.ones((2, 1)))
        with pytest.raises(PathOverflowError, match=f"overflowed float64 in layer {first}"):
            net.backward(p, X, np.ones((2, 1)), states=net.forward_with_states(p, X)[1])

    def test_gradient_overflow(self):
        net = pathgeom.rnn(2, 3, 1, T=4, outputs="all")
        p = net.init(np.random.default_rng(0), "uniform", scale=0.5)
        X = np.abs(np.random.default_rng(1).normal(size=(2, 4, 2))) * 1e6
        with pytest.raises(PathOverflowError, match=r"the gradient of parameter \d+ "
                                                     r"overflowed float64"):
            net.backward(p, X, np.full((2, 4, 1), 1e308))


def test_states_are_checked():
    net = pathgeom.rnn(2, [3, 4], 1, T=5)
    rng = np.random.default_rng(0)
    p = net.init(rng, "uniform", scale=0.8)
    X, dY = rng.normal(size=(2, 5, 2)), rng.normal(size=(2, 1))
    _, states = net.forward_with_states(p, X)
    g = net.backward(p, X, dY, states=states)
    with pytest.raises(ValueError, match=r"states have shapes \[\(5, 2, 3\)\]; expected"):
        net.backward(p, X, dY, states=states[:1])
    with pytest.raises(ValueError, match="states have shapes"):
        net.backward(p, X[:1], dY[:1], states=states)
    strided = [np.asfortranarray(h) for h in states]  # any layout is taken (as a copy)
    np.testing.assert_array_equal(net.backward(p, X, dY, states=tuple(strided)), g)
