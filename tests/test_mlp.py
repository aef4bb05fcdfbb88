"""mlp(): the graph against the dense passes and a per-edge loop, the layout, gamma^2 in
closed form, path quantities against the exact reference (kappa2 == 0 by the certificate)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import pathgeom
from pathgeom import reference
from pathgeom.constructors.cnn import Dense, cnn
from pathgeom.constructors.mlp import MLP, mlp

from helpers import as_floats, assert_close

sizes_st = st.lists(st.integers(1, 5), min_size=2, max_size=5)


def problem(sizes, bias, seed, batch=3):
    net = mlp(sizes, bias=bias)
    rng = np.random.default_rng(seed)
    return (net, rng.normal(size=net.n_params), rng.normal(size=(batch, sizes[0])),
            rng.normal(size=(batch, sizes[-1])))


def dense_twin(blocks, X):
    """The textbook MLP, written out: relu on hidden layers, linear output."""
    Ws, bs = blocks["W"], blocks.get("b", [0.0] * len(blocks["W"]))
    h = X
    for W, b in zip(Ws[:-1], bs[:-1]):
        h = np.maximum(h @ W.T + b, 0.0)
    return h @ Ws[-1].T + bs[-1]


class TestGraph:
    @given(sizes=sizes_st, bias=st.booleans())
    def test_edges_are_the_documented_ones(self, sizes, bias):
        net = mlp(sizes, bias=bias)
        n_w = sum(a * b for a, b in zip(sizes, sizes[1:]))
        expected, w_off, b_off = [], 0, n_w
        base_in, base_out = 0, sizes[0] + bias
        for a, b in zip(sizes, sizes[1:]):
            for j in range(b):
                for i in range(a):
                    expected.append((base_in + i, base_out + j, w_off + j * a + i))
                if bias:
                    expected.append((sizes[0], base_out + j, b_off + j))
            w_off, b_off = w_off + a * b, b_off + b
            base_in, base_out = base_out, base_out + b
        src, dst, par = net.graph.edges()
        assert net.graph.nodes == tuple(range(net.graph.n_nodes))
        assert sorted(zip(src.tolist(), dst.tolist(), par.tolist())) == sorted(expected)
        assert net.graph.inputs == tuple(range(sizes[0] + bias))   # bias node last
        assert net.graph.outputs == tuple(range(base_in, base_in + sizes[-1]))
        assert np.all(net.graph.param_edge_counts() == 1)        # no sharing at all

    @given(sizes=sizes_st, bias=st.booleans())
    def test_parameter_count(self, sizes, bias):
        net = mlp(sizes, bias=bias)
        n = sum(a * b for a, b in zip(sizes, sizes[1:])) + bias * sum(sizes[1:])
        assert net.n_params == net.graph.n_params == net.graph.n_edges == n

    @pytest.mark.parametrize("bias", [False, True])
    def test_same_graph_as_a_cnn_of_dense_layers(self, bias):
        a = mlp([4, 3, 5, 2], bias=bias)
        b = cnn((4,), [Dense(3), Dense(5)], 2, bias=bias)
        assert a.graph == b.graph
        p = np.arange(a.n_params, dtype=float)
        assert all(np.array_equal(x, y) for x, y in zip(a.unpack(p)["W"][:2], b.unpack(p)["W"]))
        assert np.array_equal(a.unpack(p)["W"][2], b.unpack(p)["W_out"])

    def test_wide_input_with_bias(self):
        net = mlp([784, 300, 10], bias=True)   # each unit: 784 sorted sources plus the bias
        assert net.graph.n_edges == 784 * 300 + 300 * 10 + 310


class TestDensePasses:
    @given(sizes=sizes_st, bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def test_forward_equals_graph_and_textbook(self, sizes, bias, seed):
        net, p, X, _ = problem(sizes, bias, seed)
        Y = net.forward(p, X)
        scale = net.forward(np.abs(p), np.abs(X))
        assert_close(net.graph.forward(p, net.graph_inputs(X)), Y, 1e-12, scale=scale)
        assert_close(dense_twin(net.unpack(p), X), Y, 1e-12, scale=scale)

    @given(sizes=sizes_st, bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def test_backward_equals_graph(self, sizes, bias, seed):
        net, p, X, dY = problem(sizes, bias, seed)
        grad = net.backward(p, X, dY)
        scale = net.backward(np.abs(p), np.abs(X), np.abs(dY))
        assert_close(net.graph.backward(p, net.graph_inputs(X), dY), grad, 1e-12, scale=scale)

    @pytest.mark.parametrize("bias", [False, True])
    def test_backward_matches_finite_differences(self, bias):
        # piecewise linear in each single weight (no sharing): central differences are exact
        net, p, X, dY = problem([3, 4, 4, 2], bias, 11)
        grad = net.backward(p, X, dY)
        h = 1e-6
        fd = np.array([np.sum(dY * (net.forward(p + h * e, X) - net.forward(p - h * e, X)))
                       / (2 * h) for e in np.eye(p.size)])
        assert_close(fd, grad, 1e-7, scale=net.backward(np.abs(p), np.abs(X), np.abs(dY)))

    def test_relu_derivative_at_zero_is_zero_in_both(self):
        net = mlp([1, 1, 1])
        p = net.pack(W=[[[1.0]], [[2.0]]])
        assert np.array_equal(net.backward(p, [[0.0]], [[1.0]]), [0.0, 0.0])
        assert np.array_equal(net.graph.backward(p, [[0.0]], [[1.0]]), [0.0, 0.0])

    def test_single_sample(self):
        net, p, X, dY = problem([3, 2, 2], True, 0, batch=1)
        assert_close(net.forward(p, X[0]), net.forward(p, X)[0], 0.0)
        assert_close(net.backward(p, X[0], dY[0]), net.backward(p, X, dY), 0.0)
        with pytest.raises(ValueError, match=r"X has shape \(2, 2\); expected \(B, 3\)"):
            net.forward(p, np.zeros((2, 2)))


class TestLayout:
    def test_shapes_and_order(self):
        net = mlp([3, 4, 2], bias=True)
        assert net.layout.names == ["W", "b"]
        blocks = net.unpack(np.arange(net.n_params, dtype=float))
        assert [w.shape for w in blocks["W"]] == [(4, 3), (2, 4)]
        assert [b.shape for b in blocks["b"]] == [(4,), (2,)]
        assert blocks["W"][0][1, 2] == 1 * 3 + 2                  # row-major, W first
        assert blocks["b"][0][0] == 12 + 8                        # then the biases

    @given(sizes=sizes_st, bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def test_round_trip(self, sizes, bias, seed):
        net, p, _, _ = problem(sizes, bias, seed)
        blocks = net.unpack(p)
        assert np.array_equal(net.pack(**blocks), p)

    def test_pack_errors(self):
        net = mlp([3, 4, 2], bias=True)
        W = [np.zeros((4, 3)), np.zeros((2, 4))]
        with pytest.raises(ValueError, match=r"W\[1\] has shape \(4, 2\), expected \(2, 4\)"):
            net.pack(W=[W[0], W[1].T], b=[np.zeros(4), np.zeros(2)])
        with pytest.raises(ValueError, match=r"missing parameter block 'b'"):
            net.pack(W=W)
        with pytest.raises(ValueError, match=r"unknown parameter block\(s\) \['b'\]"):
            mlp([3, 4, 2]).pack(W=W, b=[np.zeros(4), np.zeros(2)])


class TestPathQuantities:
    @given(sizes=sizes_st, bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def test_gamma2_closed_form(self, sizes, bias, seed):
        # squared network: h^0 = 1, h^(l+1) = (W o W) h^l + b o b (the bias input is 1)
        net, p, _, _ = problem(sizes, bias, seed)
        blocks = net.unpack(p)
        h = np.ones(sizes[0])
        for k, W in enumerate(blocks["W"]):
            h = (W * W) @ h + (blocks["b"][k] ** 2 if bias else 0.0)
        assert_close(net.gamma2(p), h.sum(), 1e-12)
        assert pathgeom.kappa2_support(net.graph).size == 0
        r = net.path_quantities(p)
        assert np.all(r.kappa2 == 0) and np.array_equal(r.kappa, r.kappa1)

    @pytest.mark.parametrize("sizes, bias", [([2, 3, 2], False), ([2, 3, 2], True),
                                             ([1, 2, 2, 1], True)])
    def test_against_the_exact_reference(self, sizes, bias):
        net = mlp(sizes, bias=bias)
        p = np.random.default_rng(2).uniform(-2, 2, net.n_params)
        r = net.path_quantities(p)
        assert_close(r.gamma2, float(reference.gamma2(net.graph, p)), 1e-12)
        assert_close(r.kappa1, as_floats(reference.kappa1(net.graph, p)), 1e-12)
        assert_close(r.kappa, as_floats(reference.kappa(net.graph, p)), 1e-12)
        assert np.all(as_floats(reference.kappa2(net.graph, p)) == 0)


class TestInitAndValidation:
    def test_init(self):
        net = mlp([50, 200, 100], bias=True)
        p = net.init(np.random.default_rng(0))
        blocks = net.unpack(p)
        assert np.abs(p).max() <= 0.01 and all(np.all(b == 0) for b in blocks["b"])
        he = net.unpack(net.init(np.random.default_rng(0), "he"))
        assert_close(he["W"][0].std(), np.sqrt(2 / 50), 0.05)    # ReLU layer
        assert_close(he["W"][1].std(), np.sqrt(1 / 200), 0.05)   # linear output

    @pytest.mark.parametrize("sizes, match", [
        ([3], r"at least an input and an output width"),
        ([3, 0, 2], r"sizes\[1\] must be an integer >= 1, got 0"),
        ([3, 2.5], r"sizes\[1\] must be an integer >= 1, got 2.5"),
        ([True, 2], r"sizes\[0\] must be an integer >= 1, got True"),
        (7, r"sizes must be a list"),
    ])
    def test_bad_sizes(self, sizes, match):
        with pytest.raises(ValueError, match=match):
            mlp(sizes)

    def test_repr_and_type(self):
        net = mlp(np.array([3, 2]), bias=True)
        assert isinstance(net, MLP) and net.sizes == (3, 2)
        assert repr(net) == "MLP(sizes=[3, 2], bias=True)"
