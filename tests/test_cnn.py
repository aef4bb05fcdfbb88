"""cnn(): graph semantics against a per-edge loop, dense passes against the graph, the
convolution convention against naive loops (and JAX when installed), layouts, path quantities
against the exact reference, and the depth certificate (kappa2 == 0 without computing it)."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import pathgeom
from pathgeom import reference
from pathgeom.constructors.cnn import CNN, Conv1d, Conv2d, Dense, cnn

from helpers import as_floats, assert_close
from strategies import cnn_architectures as architectures, conv_out


# --------------------------------------------------------------------------- slow, obvious twins


def spec(layer):
    """(kernel, stride, padding) tuples of a conv layer, read from its public fields."""
    as_t = (lambda v: (v,)) if isinstance(layer, Conv1d) else tuple
    return as_t(layer.kernel_size), as_t(layer.stride), as_t(layer.padding)


def naive_shapes(input_shape, layers, n_out):
    shapes = [tuple(input_shape)]
    for layer in layers:
        if isinstance(layer, Dense):
            shapes.append((layer.units,))
        else:
            kernel, stride, padding = spec(layer)
            shapes.append((layer.out_channels,) + tuple(
                conv_out(n, k, s, pad) for n, k, s, pad in zip(shapes[-1][1:], kernel, stride,
                                                                padding)))
    return shapes + [(n_out,)]


def naive_edges(input_shape, layers, n_out, bias):
    """The documented graph, edge by edge: ids, parameter offsets and all."""
    shapes = naive_shapes(input_shape, layers, n_out)
    n_x = math.prod(input_shape)
    bases = [0, n_x + bias]
    for s in shapes[1:-1]:
        bases.append(bases[-1] + math.prod(s))
    w_shapes = []
    for k, layer in enumerate(list(layers) + [Dense(n_out)]):
        if isinstance(layer, Dense):
            w_shapes.append((shapes[k + 1][0], math.prod(shapes[k])))
        else:
            w_shapes.append((layer.out_channels, shapes[k][0]) + spec(layer)[0])
    b_sizes = [shapes[k + 1][0] for k in range(len(w_shapes))] if bias else []
    offsets = np.cumsum([0] + [math.prod(s) for s in w_shapes] + b_sizes)
    w_off, b_off = offsets[:len(w_shapes)], offsets[len(w_shapes):]
    edges = []
    for k, layer in enumerate(list(layers) + [Dense(n_out)]):
        s_in, s_out = shapes[k], shapes[k + 1]
        if isinstance(layer, Dense):
            n_in = math.prod(s_in)
            for j in range(s_out[0]):
                for i in range(n_in):
                    edges.append((bases[k] + i, bases[k + 1] + j, w_off[k] + j * n_in + i))
        else:
            kernel, stride, padding = spec(layer)
            for co, ci in itertools.product(range(s_out[0]), range(s_in[0])):
                for o in itertools.product(*map(range, s_out[1:])):
                    for jj in itertools.product(*map(range, kernel)):
                        i = tuple(a * s + j - pad
                                  for a, s, j, pad in zip(o, stride, jj, padding))
                        if all(0 <= a < n for a, n in zip(i, s_in[1:])):
                            edges.append((
                                bases[k] + np.ravel_multi_index((ci,) + i, s_in),
                                bases[k + 1] + np.ravel_multi_index((co,) + o, s_out),
                                w_off[k] + np.ravel_multi_index((co, ci) + jj, w_shapes[k])))
        if bias:
            per = math.prod(s_out[1:])
            for u in range(math.prod(s_out)):
                edges.append((n_x, bases[k + 1] + u, b_off[k] + u // per))
    return sorted((int(a), int(b), int(c)) for a, b, c in edges)


def naive_correlate(A, W, stride, padding):
    """Cross-correlation by explicit loops over (batch, out channel, output position)."""
    B, C = A.shape[:2]
    kernel = W.shape[2:]
    Ap = np.pad(A, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    out = tuple(conv_out(n, k, s, p) for n, k, s, p in zip(A.shape[2:], kernel, stride, padding))
    Z = np.zeros((B, W.shape[0]) + out)
    for b, co in itertools.product(range(B), range(W.shape[0])):
        for o in itertools.product(*map(range, out)):
            window = (b, slice(None)) + tuple(slice(oo * s, oo * s + k)
                                              for oo, s, k in zip(o, stride, kernel))
            Z[(b, co) + o] = np.sum(Ap[window] * W[co])
    return Z


# --------------------------------------------------------------------------- architectures


def problem(arch, seed, batch=3):
    """A network, normal parameters, inputs and output gradients (no ReLU kinks in practice)."""
    net = cnn(*arch)
    rng = np.random.default_rng(seed)
    p = rng.normal(size=net.n_params)
    X = rng.normal(size=(batch,) + net.input_shape)
    dY = rng.normal(size=(batch, net.n_out))
    return net, p, X, dY


def flat_with_bias(net, X):
    flat = X.reshape(X.shape[0], -1)
    return np.hstack([flat, np.ones((X.shape[0], 1))]) if net.bias else flat


FIXED = {
    "1d-stride-pad": ((2, 7), [Conv1d(3, 3, stride=2, padding=1), Conv1d(2, 2), Dense(4)], 3),
    "2d-pairs": ((2, 6, 5), [Conv2d(3, (3, 2), stride=(2, 1), padding=(1, 0)),
                             Conv2d(2, 2, padding=1), Dense(3)], 2),
    "2d-stride-gt-kernel": ((1, 7, 7), [Conv2d(2, 2, stride=3)], 2),
    "dense-only-on-image": ((3, 4, 4), [Dense(5), Dense(3)], 2),
    "1d-conv-straight-to-output": ((1, 9), [Conv1d(2, 2, stride=3)], 1),
}


# --------------------------------------------------------------------------- graph semantics


class TestGraph:
    @pytest.mark.parametrize("bias", [False, True])
    @pytest.mark.parametrize("name", sorted(FIXED))
    def test_edges_are_the_documented_ones(self, name, bias):
        shape, layers, n_out = FIXED[name]
        net = cnn(shape, layers, n_out, bias=bias)
        src, dst, par = net.graph.edges()
        nodes = np.array(net.graph.nodes)          # positions -> ids
        got = sorted(zip(nodes[src].tolist(), nodes[dst].tolist(), par.tolist()))
        assert got == naive_edges(shape, layers, n_out, bias)

    @given(arch=architectures())
    def test_edges_are_the_documented_ones_hypothesis(self, arch):
        net = cnn(*arch)
        src, dst, par = net.graph.edges()
        got = sorted(zip(src.tolist(), dst.tolist(), par.tolist()))  # ids are positions
        assert net.graph.nodes == tuple(range(net.graph.n_nodes))
        assert got == naive_edges(*arch)

    @given(arch=architectures())
    def test_inputs_outputs_and_layer_nodes(self, arch):
        shape, layers, n_out, bias = arch
        net = cnn(*arch)
        n_x = math.prod(shape)
        assert net.graph.inputs == tuple(range(n_x + bias))
        assert net.bias_node == (n_x if bias else None)
        assert net.shapes == naive_shapes(shape, layers, n_out)
        ids = np.concatenate([net.layer_nodes(k).ravel() for k in range(len(net.shapes))])
        expected = np.delete(np.arange(net.graph.n_nodes), n_x) if bias else \
            np.arange(net.graph.n_nodes)
        assert np.array_equal(ids, expected)
        assert net.graph.outputs == tuple(net.layer_nodes(-1).tolist())
        for k, s in enumerate(net.shapes):
            assert net.layer_nodes(k).shape == s
            assert np.all(net.graph.depth[net.layer_nodes(k)] == k)   # strictly layered

    def test_layer_nodes_rejects_bad_layer(self):
        net = cnn((1, 4), [Conv1d(1, 2)], 1)
        with pytest.raises(IndexError, match=r"\[0, 3\)"):
            net.layer_nodes(3)

    def test_edge_and_parameter_counts_follow_the_formulas(self):
        # padding 0: every window lies inside, so a conv has C_out * C_in * k * positions edges
        net = cnn((3, 10, 9), [Conv2d(4, (3, 2), stride=2), Conv2d(5, 2), Dense(6)], 2, bias=True)
        (h1, w1), (h2, w2) = (4, 4), (3, 3)
        assert net.shapes == [(3, 10, 9), (4, h1, w1), (5, h2, w2), (6,), (2,)]
        weights = 4 * 3 * 3 * 2 + 5 * 4 * 2 * 2 + 6 * (5 * h2 * w2) + 2 * 6
        biases = 4 + 5 + 6 + 2
        assert net.n_params == net.graph.n_params == weights + biases
        edges = (4 * 3 * 6 * h1 * w1 + 5 * 4 * 4 * h2 * w2 + 6 * 5 * h2 * w2 + 2 * 6
                 + (4 * h1 * w1 + 5 * h2 * w2 + 6 + 2))          # bias edges: every unit
        assert net.graph.n_edges == edges
        counts = net.graph.param_edge_counts()
        layout = net.layout
        assert np.all(counts[layout.slice("W", 0)] == h1 * w1)   # one kernel entry, every position
        assert np.all(counts[layout.slice("b", 1)] == h2 * w2)   # one bias per channel
        assert np.all(counts[layout.slice("W_out")] == 1)

    def test_large_image_builds_quickly_and_has_the_expected_size(self):
        net = cnn((3, 32, 32), [Conv2d(16, 3), Conv2d(16, 3), Dense(32)], 10)
        g = net.graph
        assert g.n_edges == 16 * 3 * 9 * 30 * 30 + 16 * 16 * 9 * 28 * 28 + 32 * 16 * 28 * 28 + 320
        assert g.n_params == 16 * 3 * 9 + 16 * 16 * 9 + 32 * 16 * 28 * 28 + 320
        assert pathgeom.kappa2_support(g).size == 0


# --------------------------------------------------------------------------- dense passes


class TestDensePasses:
    @given(arch=architectures(), seed=st.integers(0, 2**32 - 1))
    def test_graph_forward_equals_dense_forward(self, arch, seed):
        net, p, X, _ = problem(arch, seed)
        Y = net.forward(p, X)
        assert Y.shape == (X.shape[0], net.n_out)
        scale = net.forward(np.abs(p), np.abs(X))   # sum of |path terms| bounds the rounding
        assert_close(net.graph.forward(p, flat_with_bias(net, X)), Y, 1e-12, scale=scale)
        assert np.array_equal(net.graph_inputs(X), flat_with_bias(net, X))

    @given(arch=architectures(), seed=st.integers(0, 2**32 - 1))
    def test_graph_backward_equals_dense_backward(self, arch, seed):
        net, p, X, dY = problem(arch, seed)
        grad = net.backward(p, X, dY)
        scale = net.backward(np.abs(p), np.abs(X), np.abs(dY))
        assert_close(net.graph.backward(p, flat_with_bias(net, X), dY), grad, 1e-12, scale=scale)

    @pytest.mark.parametrize("bias", [False, True])
    @pytest.mark.parametrize("name", sorted(FIXED))
    def test_backward_matches_finite_differences(self, name, bias):
        # Along one coordinate a CNN is piecewise *linear* (no path holds a parameter twice:
        # the depth certificate), so central differences are exact away from ReLU kinks.
        shape, layers, n_out = FIXED[name]
        net, p, X, dY = problem((shape, layers, n_out, bias), 7)
        grad = net.backward(p, X, dY)
        h = 1e-6
        fd = np.empty_like(p)
        for i in range(p.size):
            e = np.zeros_like(p)
            e[i] = h
            fd[i] = np.sum(dY * (net.forward(p + e, X) - net.forward(p - e, X))) / (2 * h)
        scale = net.backward(np.abs(p), np.abs(X), np.abs(dY))
        assert_close(fd, grad, 1e-7, scale=scale)

    @pytest.mark.parametrize("nd", [1, 2])
    @given(data=st.data())
    def test_one_conv_layer_is_relu_of_cross_correlation(self, nd, data):
        C, co = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
        spatial = tuple(data.draw(st.integers(3, 7)) for _ in range(nd))
        kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
        stride = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
        padding = tuple(data.draw(st.integers(0, k - 1)) for k in kernel)
        layer = (Conv1d(co, kernel[0], stride[0], padding[0]) if nd == 1
                 else Conv2d(co, kernel, stride, padding))
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        n_hidden = co * math.prod(conv_out(n, k, s, p) for n, k, s, p
                                  in zip(spatial, kernel, stride, padding))
        net = cnn((C,) + spatial, [layer], n_hidden, bias=True)
        W = rng.normal(size=(co, C) + kernel)
        b = rng.normal(size=co)
        p = net.pack(W=[W], W_out=np.eye(n_hidden), b=[b], b_out=np.zeros(n_hidden))
        X = rng.normal(size=(2, C) + spatial)
        Z = naive_correlate(X, W, stride, padding) + b.reshape((-1,) + (1,) * nd)
        assert_close(net.forward(p, X), np.maximum(Z, 0).reshape(2, -1), 1e-12,
                     scale=naive_correlate(np.abs(X), np.abs(W), stride, padding).reshape(2, -1))

    @pytest.mark.parametrize("nd", [1, 2])
    def test_convention_matches_jax(self, nd):
        jax = pytest.importorskip("jax")
        rng = np.random.default_rng(3)
        spatial, kernel, stride, padding = ((9,), (3,), (2,), (1,)) if nd == 1 else \
            ((7, 6), (3, 2), (2, 1), (1, 1))
        layer = (Conv1d(4, kernel[0], stride[0], padding[0]) if nd == 1
                 else Conv2d(4, kernel, stride, padding))
        net = cnn((2,) + spatial, [layer], 3)
        W = rng.normal(size=(4, 2) + kernel).astype(np.float32)
        X = rng.normal(size=(5, 2) + spatial).astype(np.float32)
        Z = np.asarray(jax.lax.conv_general_dilated(X, W, stride, [(p, p) for p in padding]),
                       dtype=np.float64)
        hidden = net.shapes[1]
        assert Z.shape[1:] == hidden
        W_out = rng.normal(size=(3, math.prod(hidden)))
        p = net.pack(W=[W], W_out=W_out)
        expected = np.maximum(Z, 0).reshape(5, -1) @ W_out.T
        scale = np.abs(naive_correlate(np.abs(X), np.abs(W), stride, padding)).reshape(5, -1) \
            @ np.abs(W_out.T)
        assert_close(net.forward(p, X.astype(np.float64)), expected, 1e-5, scale=scale)

    def test_single_sample_and_read_only_inputs(self):
        net, p, X, dY = problem(FIXED["2d-pairs"] + (True,), 1, batch=1)
        for a in (p, X, dY):
            a.flags.writeable = False
        kept = [a.copy() for a in (p, X, dY)]
        y = net.forward(p, X[0])
        assert y.shape == (net.n_out,)
        assert_close(y, net.forward(p, X)[0], 0.0)
        assert_close(net.backward(p, X[0], dY[0]), net.backward(p, X, dY), 0.0)
        for a, b in zip((p, X, dY), kept):
            assert np.array_equal(a, b)

    def test_shape_errors_name_the_culprit(self):
        net = cnn((2, 5), [Conv1d(2, 2)], 3)
        p = np.zeros(net.n_params)
        with pytest.raises(ValueError, match=r"X has shape \(4, 5\).*\(B, 2, 5\)"):
            net.forward(p, np.zeros((4, 5)))
        with pytest.raises(ValueError, match=r"p has shape"):
            net.forward(np.zeros(3), np.zeros((1, 2, 5)))
        with pytest.raises(ValueError, match=r"dY has shape \(2, 2\); expected \(2, 3\)"):
            net.backward(p, np.zeros((2, 2, 5)), np.zeros((2, 2)))
        with pytest.raises(ValueError, match=r"X\[1, 0, 0\] is not finite"):
            net.forward(p, np.array([np.zeros((2, 5)), np.full((2, 5), np.inf)]))

    def test_overflow_is_an_error_not_inf(self):
        net = cnn((1, 4), [Conv1d(2, 2), Dense(2)], 1)
        with pytest.raises(pathgeom.PathOverflowError, match="overflowed"):
            net.forward(np.full(net.n_params, 1e120), np.ones((1, 1, 4)))
        with pytest.raises(pathgeom.PathOverflowError):
            net.graph.forward(np.full(net.n_params, 1e120), np.ones((1, 4)))


# --------------------------------------------------------------------------- layout


class TestLayout:
    def test_blocks_names_and_shapes(self):
        net = cnn((3, 8, 8), [Conv2d(4, 3, padding=1), Conv2d(2, (1, 3)), Dense(5)], 2, bias=True)
        assert net.layout.names == ["W", "W_out", "b", "b_out"]
        shapes = [a.shape for a in net.unpack(np.zeros(net.n_params))["W"]]
        assert shapes == [(4, 3, 3, 3), (2, 4, 1, 3), (5, 2 * 8 * 6)]
        assert net.layout.shape("W_out") == (2, 5)
        assert [net.layout.shape("b", k) for k in range(3)] == [(4,), (2,), (5,)]
        # p is W[0], W[1], W[2], W_out, b[0], b[1], b[2], b_out, consecutive
        starts = [net.layout.slice("W", k).start for k in range(3)] + \
            [net.layout.slice("W_out").start] + [net.layout.slice("b", k).start for k in range(3)]
        assert starts == sorted(starts) and starts[0] == 0

    @given(arch=architectures(), seed=st.integers(0, 2**32 - 1))
    def test_round_trip(self, arch, seed):
        net, p, _, _ = problem(arch, seed)
        blocks = net.unpack(p)
        assert sorted(blocks) == sorted(["W", "W_out"] + (["b", "b_out"] if arch[3] else []))
        assert len(blocks["W"]) == len(arch[1])
        assert np.array_equal(net.pack(**blocks), p)
        again = net.unpack(net.pack(**blocks))
        for name in blocks:
            a, b = blocks[name], again[name]
            pairs = zip(a, b) if isinstance(a, list) else [(a, b)]
            assert all(np.array_equal(x, y) for x, y in pairs)

    def test_unpack_returns_copies(self):
        net = cnn((1, 4), [Conv1d(1, 2)], 1)
        p = np.arange(net.n_params, dtype=float)
        net.unpack(p)["W"][0][...] = -1.0
        assert np.array_equal(p, np.arange(net.n_params))

    def test_pack_rejects_bad_blocks(self):
        net = cnn((2, 5), [Conv1d(3, 2), Dense(4)], 1, bias=True)
        good = net.unpack(np.zeros(net.n_params))
        with pytest.raises(ValueError, match=r"W\[0\] has shape \(3, 2, 3\), expected \(3, 2, 2\)"):
            net.pack(**{**good, "W": [np.zeros((3, 2, 3)), good["W"][1]]})
        with pytest.raises(ValueError, match=r"missing parameter block 'b_out'"):
            net.pack(W=good["W"], W_out=good["W_out"], b=good["b"])
        with pytest.raises(ValueError, match=r"W must be a list of 2 arrays, got 1"):
            net.pack(**{**good, "W": good["W"][:1]})
        with pytest.raises(ValueError, match=r"unknown parameter block\(s\) \['V'\]"):
            net.pack(**good, V=1.0)
        nobias = cnn((2, 5), [Conv1d(3, 2), Dense(4)], 1)
        with pytest.raises(ValueError, match=r"unknown parameter block\(s\) \['b', 'b_out'\]"):
            nobias.pack(**good)

    def test_bias_is_one_parameter_per_channel(self):
        net = cnn((1, 5), [Conv1d(2, 2)], 1, bias=True)
        W = [np.zeros((2, 1, 2))]
        p = net.pack(W=W, W_out=np.ones((1, 8)), b=[np.array([1.5, -1.0])], b_out=[0.25])
        # 4 positions of channel 0 carry relu(1.5), channel 1 is dead: 4 * 1.5 + 0.25
        assert_close(net.forward(p, np.zeros((1, 1, 5))), [[6.25]])
        assert_close(net.graph.forward(p, np.r_[np.zeros(5), 1.0]), [6.25])


class TestInit:
    def test_uniform_default_is_the_papers_range(self):
        net = cnn((2, 6), [Conv1d(3, 2), Dense(4)], 2, bias=True)
        p = net.init(np.random.default_rng(0))
        blocks = net.unpack(p)
        weights = np.concatenate([w.ravel() for w in blocks["W"]] + [blocks["W_out"].ravel()])
        assert np.all(np.abs(weights) <= 0.01) and np.abs(weights).max() > 0.005
        assert np.all(p[net.layout.slice("b", 0)] == 0) and np.all(blocks["b_out"] == 0)
        assert np.array_equal(p, net.init(np.random.default_rng(0)))
        assert np.all(np.abs(net.init(np.random.default_rng(1), scale=0.5)) <= 0.5)

    def test_he_uses_the_fan_in(self):
        net = cnn((4, 12, 12), [Conv2d(64, 3), Dense(100)], 50)
        blocks = net.unpack(net.init(np.random.default_rng(0), "he"))
        fan_in = [4 * 9, 64 * 10 * 10, 100]
        gains = [2.0, 2.0, 1.0]        # ReLU layers, then the linear output
        for w, f, g in zip(blocks["W"] + [blocks["W_out"]], fan_in, gains):
            assert_close(w.std(), np.sqrt(g / f), 0.1)
            assert abs(w.mean()) < 0.1 * np.sqrt(g / f)
        scaled = net.unpack(net.init(np.random.default_rng(0), "he", scale=3.0))
        assert_close(scaled["W_out"], 3.0 * blocks["W_out"], 1e-15)

    def test_init_errors(self):
        net = cnn((1, 4), [Conv1d(1, 2)], 1)
        with pytest.raises(TypeError, match="numpy.random.Generator"):
            net.init(0)
        with pytest.raises(ValueError, match="unknown init scheme 'xavier'"):
            net.init(np.random.default_rng(0), "xavier")
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            net.init(np.random.default_rng(0), scale=0.0)


# --------------------------------------------------------------------------- path quantities

SMALL = [((1, 4), [Conv1d(2, 2)], 1),
         ((1, 5), [Conv1d(2, 2, stride=2, padding=1), Dense(2)], 2),
         ((1, 3, 3), [Conv2d(2, 2, padding=(1, 0))], 1),
         ((2, 2, 3), [Conv2d(1, (1, 2)), Dense(2)], 1)]


class TestPathQuantities:
    @pytest.mark.parametrize("bias", [False, True])
    @pytest.mark.parametrize("arch", SMALL, ids=range(len(SMALL)))
    def test_against_the_exact_reference(self, arch, bias):
        net = cnn(*arch, bias=bias)
        p = np.random.default_rng(5).uniform(-1.5, 1.5, net.n_params)
        assert len(reference.paths(net.graph)) < 2000
        r = net.path_quantities(p)
        assert_close(r.gamma2, float(reference.gamma2(net.graph, p)), 1e-12)
        assert_close(r.kappa1, as_floats(reference.kappa1(net.graph, p)), 1e-12)
        assert_close(r.kappa, as_floats(reference.kappa(net.graph, p)), 1e-12)
        assert np.all(as_floats(reference.kappa2(net.graph, p)) == 0)
        assert np.all(r.kappa2 == 0)
        assert_close(net.gamma2(p), r.gamma2, 0.0)
        assert_close(net.kappa(p), net.kappa1(p), 0.0)

    @given(arch=architectures(), seed=st.integers(0, 2**32 - 1))
    def test_depth_certificate_proves_kappa2_zero(self, arch, seed):
        net, p, _, _ = problem(arch, seed)
        assert pathgeom.kappa2_support(net.graph).size == 0
        assert np.all(pathgeom.kappa2(net.graph, p) == 0)

    @given(arch=architectures(), seed=st.integers(0, 2**32 - 1))
    def test_squared_network_identities(self, arch, seed):
        # gamma^2 = sum of the squared network's outputs on all-ones input (eqs. 2-3), and
        # kappa1 = dg/dq is its gradient (Theorem 3); q > 0 keeps every unit active.
        net, p, _, _ = problem(arch, seed)
        q = p * p + 1e-3
        ones = np.ones((1,) + net.input_shape)
        assert_close(net.gamma2(np.sqrt(q)), net.forward(q, ones).sum(), 1e-12)
        assert_close(net.kappa1(np.sqrt(q)), net.backward(q, ones, np.ones((1, net.n_out))),
                     1e-12)


# --------------------------------------------------------------------------- validation


class TestValidation:
    @pytest.mark.parametrize("args, match", [
        (((1, 8), [Dense(3), Conv1d(2, 2)], 1), r"layers\[1\].*follows a Dense layer"),
        (((1, 8, 8), [Conv1d(2, 2)], 1), r"layers\[0\].*needs an input of shape \(C, L\), got "
                                         r"\(1, 8, 8\) \(input_shape\)"),
        (((1, 8), [Conv2d(2, 2)], 1), r"needs an input of shape \(C, H, W\), got \(1, 8\)"),
        (((1, 8, 8), [Conv2d(2, 2), Conv1d(2, 2)], 1), r"layers\[1\].*from the layer before"),
        (((1, 4), [Conv1d(2, 3), Conv1d(2, 3)], 1), r"layers\[1\].*has no output position.*"
                                                     r"does not fit"),
        (((1, 2), [Conv1d(2, 3)], 1), r"no output position"),
        (((1, 4), [], 1), r"layers is empty"),
        (((1, 4), [Conv1d(2, 2)], 0), r"n_out must be an integer >= 1, got 0"),
        (((0, 4), [Conv1d(2, 2)], 1), r"input_shape .* must be an integer >= 1, got 0"),
        (((), [Dense(2)], 1), r"input_shape is empty"),
    ])
    def test_bad_architectures(self, args, match):
        with pytest.raises(ValueError, match=match):
            cnn(*args)

    def test_not_a_layer(self):
        with pytest.raises(TypeError, match=r"layers\[0\] \(3\) is not a layer"):
            cnn((1, 4), [3], 1)

    @pytest.mark.parametrize("make, match", [
        (lambda: Conv1d(0, 2), r"Conv1d out_channels must be an integer >= 1, got 0"),
        (lambda: Conv1d(2, 2, stride=0), r"stride must be an integer >= 1"),
        (lambda: Conv1d(2, 2, padding=-1), r"padding must be an integer >= 0"),
        (lambda: Conv1d(2, 2, padding=2), r"padding 2 must be smaller than kernel_size 2"),
        (lambda: Conv2d(2, (3, 1), padding=(1, 1)), r"padding \(1, 1\) must be smaller"),
        (lambda: Conv2d(2, (3, 3, 3)), r"kernel_size must be an int or a pair of ints"),
        (lambda: Conv1d(2, True), r"kernel_size must be an int, got True"),
        (lambda: Conv2d(2, 2.0), r"kernel_size must be an int or a pair"),
        (lambda: Dense(0), r"Dense units must be an integer >= 1, got 0"),
    ])
    def test_bad_layer_specs(self, make, match):
        with pytest.raises(ValueError, match=match):
            make()

    def test_layer_specs_normalise(self):
        assert Conv2d(3, 2) == Conv2d(3, (2, 2), (1, 1), (0, 0))
        assert Conv1d(3, (2,), np.int64(2)) == Conv1d(3, 2, 2)
        assert isinstance(cnn((1, 4), [Conv1d(1, 2)], 1), CNN)
        assert repr(cnn((1, 4), [Dense(2)], 1)) == \
            "CNN(input_shape=(1, 4), layers=[Dense(units=2)], n_out=1, bias=False)"
