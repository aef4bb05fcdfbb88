"""Dense path quantities of cnn() / mlp() networks, without the edge list.

``net.path_quantities``, ``gamma2``, ``kappa*``, ``path_norm`` (and the module functions
handed a network) run two dense passes of the power network; ``net.graph`` is built only
when asked for.  Checked against the generic engine on the graph, the exact reference,
Euler's identity on a network whose graph would be far too large to build, and the
engine's own handling of overflow and underflow (where the dense passes hand over).
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pathgeom
from pathgeom import reference
from pathgeom.constructors.cnn import Conv1d, Conv2d, Dense, cnn
from pathgeom.constructors.mlp import mlp

from helpers import as_floats, assert_close
from strategies import cnn_architectures

QS = (1, 2, 3.5)


def random_params(net, seed, zeros):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=net.n_params)
    if zeros:   # exact zeros: paths that contribute nothing, units with h = 0 or delta = 0
        p[rng.random(net.n_params) < 0.3] = 0.0
    return p


def assert_same_quantities(dense, graph):
    assert type(dense) is type(graph) is pathgeom.PathQuantities
    assert_close(dense.gamma2, graph.gamma2, 1e-12)
    for name in ("kappa1", "kappa2", "kappa"):
        a, b = getattr(dense, name), getattr(graph, name)
        if b is None:
            assert a is None, name
            continue
        assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == b.shape
        assert_close(a, b, 1e-12, err_msg=name)


# --------------------------------------------------------------------------- the lazy graph


class TestLazyGraph:
    def test_nothing_but_graph_builds_the_graph(self):
        net = cnn((2, 6, 5), [Conv2d(3, (3, 2), stride=(2, 1), padding=(1, 0)), Dense(3)], 2,
                  bias=True)
        assert net._graph is None                       # not built by the constructor
        p = net.init(np.random.default_rng(0), "he")
        X = np.random.default_rng(1).normal(size=(4, 2, 6, 5))
        net.forward(p, X)
        net.backward(p, X, np.ones((4, 2)))
        net.unpack(p)
        net.pack(**net.unpack(p))
        net.layer_nodes(1)
        net.graph_inputs(X)
        net.path_quantities(p)
        net.path_quantities(p, with_kappa2=False)
        net.gamma2(p), net.kappa1(p), net.kappa2(p), net.kappa(p)
        for q in QS:
            net.path_norm(p, q)
            pathgeom.path_norm(net, p, q)
        pathgeom.path_quantities(net, p)
        pathgeom.gamma2(net, p), pathgeom.kappa1(net, p), pathgeom.kappa2(net, p)
        pathgeom.kappa(net, p)
        assert net._graph is None
        g = net.graph
        assert net._graph is g and net.graph is g       # built once, then kept
        assert g.n_nodes == net.n_nodes and g.n_params == net.n_params
        assert g.n_edges <= net.n_edges_bound

    def test_mlp_too(self):
        net = mlp([3, 4, 2], bias=True)
        p = net.init(np.random.default_rng(0), "he")
        r = net.path_quantities(p)
        assert net._graph is None
        assert_same_quantities(r, pathgeom.path_quantities(net.graph, p))
        assert net.n_edges_bound == net.graph.n_edges == 3 * 4 + 4 * 2 + 4 + 2

    def test_no_padding_bound_is_exact(self):
        net = cnn((3, 10, 9), [Conv2d(4, (3, 2), stride=2), Conv2d(5, 2), Dense(6)], 2,
                  bias=True)
        assert net.n_edges_bound == net.graph.n_edges
        assert net.n_nodes == net.graph.n_nodes

    def test_too_large_graph_is_refused_only_when_asked_for(self):
        # more than 2**31 - 1 edges: constructing works; building the graph is refused
        net = cnn((16, 1024, 1024), [Conv2d(16, 3, padding=1), Conv2d(1, 8, stride=8)], 1)
        assert net.n_edges_bound > 2 ** 31
        with pytest.raises(pathgeom.GraphError, match="limited to 2"):
            net.graph
        assert net._graph is None


# --------------------------------------------------------------------------- against the engine


class TestAgainstTheGraphEngine:
    @given(arch=cnn_architectures(max_size=7), seed=st.integers(0, 2 ** 32 - 1),
           zeros=st.booleans())
    def test_path_quantities(self, arch, seed, zeros):
        net = cnn(*arch)
        p = random_params(net, seed, zeros)
        for with_kappa2 in (True, False):
            dense = net.path_quantities(p, with_kappa2=with_kappa2)
            assert net._graph is None
            graph = pathgeom.path_quantities(net.graph, p, with_kappa2=with_kappa2)
            net._graph = None
            assert_same_quantities(dense, graph)
        r = net.path_quantities(p)
        assert np.all(r.kappa2 == 0) and np.array_equal(r.kappa, r.kappa1)
        assert r.kappa is not r.kappa1                  # separate arrays, as the engine's
        assert_close(net.gamma2(p), r.gamma2, 1e-15)
        assert_close(net.kappa1(p), r.kappa1, 0.0)
        assert_close(pathgeom.kappa(net, p), r.kappa, 0.0)
        assert net._graph is None

    @given(arch=cnn_architectures(max_size=7), seed=st.integers(0, 2 ** 32 - 1),
           zeros=st.booleans())
    def test_path_norms(self, arch, seed, zeros):
        net = cnn(*arch)
        p = random_params(net, seed, zeros)
        norms = {q: net.path_norm(p, q) for q in QS}
        assert {q: pathgeom.path_norm(net, p, q) for q in QS} == norms
        assert net._graph is None
        for q in QS:
            assert_close(norms[q], pathgeom.path_norm(net.graph, p, q), 1e-12, err_msg=f"q={q}")

    @given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4),
           bias=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
    def test_mlp(self, sizes, bias, seed):
        net = mlp(sizes, bias=bias)
        p = random_params(net, seed, zeros=False)
        dense = net.path_quantities(p)
        norms = [net.path_norm(p, q) for q in QS]
        assert net._graph is None
        assert_same_quantities(dense, pathgeom.path_quantities(net.graph, p))
        assert_close(norms, [pathgeom.path_norm(net.graph, p, q) for q in QS], 1e-12)


# --------------------------------------------------------------------------- exact reference

TINY = [((1, 4), [Conv1d(2, 2)], 1),
        ((1, 5), [Conv1d(2, 2, stride=2, padding=1), Dense(2)], 2),
        ((1, 3, 3), [Conv2d(2, 2, padding=(1, 0))], 1),
        ((2, 2, 3), [Conv2d(1, (1, 2), stride=(1, 2)), Dense(2)], 1),
        ((1, 1), [Conv1d(1, 3, stride=3, padding=2)], 1)]   # two kernel entries read padding only


class TestAgainstTheReference:
    @pytest.mark.parametrize("bias", [False, True])
    @pytest.mark.parametrize("arch", TINY, ids=range(len(TINY)))
    def test_quantities_and_norms(self, arch, bias):
        net = cnn(*arch, bias=bias)
        # dyadic parameters (exact in float64), some zero
        rng = np.random.default_rng(11)
        p = rng.integers(-12, 13, net.n_params) / 8.0
        r = net.path_quantities(p)
        norms = {q: net.path_norm(p, q) for q in QS}
        assert net._graph is None
        g = net.graph
        assert len(reference.paths(g)) < 2000
        assert_close(r.gamma2, float(reference.gamma2(g, p)), 1e-12)
        assert_close(r.kappa1, as_floats(reference.kappa1(g, p)), 1e-12)
        assert all(k == 0 for k in reference.kappa2(g, p)) and np.all(r.kappa2 == 0)
        assert_close(r.kappa, as_floats(reference.kappa(g, p)), 1e-12)
        power = reference.path_norm_power(g, p, 1)
        assert isinstance(power, Fraction)
        assert_close(norms[1], float(power), 1e-12)
        assert_close(norms[2], math.sqrt(reference.path_norm_power(g, p, 2)), 1e-12)
        assert_close(norms[3.5], reference.path_norm_power(g, p, 3.5) ** (1 / 3.5), 1e-12)

    def test_padding_only_kernel_entries_have_zero_kappa1(self):
        net = cnn((1, 1), [Conv1d(1, 3, stride=3, padding=2)], 1)
        r = net.path_quantities([1.0, 1.0, 2.0, 3.0])
        assert r.gamma2 == 36.0
        assert np.array_equal(r.kappa1, [0.0, 0.0, 9.0, 4.0])


# --------------------------------------------------------------------------- a large network


class TestLargeNetwork:
    def test_half_a_billion_edges_without_the_graph(self):
        # 3 x 224 x 224, two 3x3 convolutions of 32 channels at full resolution: about
        # 5.7e8 edges (some 50 GiB to build); the dense passes need the activations only
        layers = [Conv2d(32, 3, padding=1), Conv2d(32, 3, padding=1), Conv2d(8, 3, stride=2),
                  Dense(10)]
        net = cnn((3, 224, 224), layers, n_out=10)
        assert net.n_edges_bound > 10 ** 8
        p = net.init(np.random.default_rng(0), "he")
        r = net.path_quantities(p)
        assert net._graph is None
        assert math.isfinite(r.gamma2) and r.gamma2 > 0
        assert np.all(r.kappa1 >= 0) and np.all(r.kappa2 == 0)
        # Euler's identity, per layer: g(q) is linear in each layer's squared weights and,
        # without bias, every path crosses every layer once, so the sum over one layer's
        # block of q_i kappa1_i is gamma2 itself
        q = p * p
        L = net.layout
        blocks = [L.slice("W", k) for k in range(len(layers))] + [L.slice("W_out")]
        for s in blocks:
            assert_close(float(np.dot(q[s], r.kappa1[s])), r.gamma2, 1e-10)
        # and the path norms: q = 2 is sqrt(gamma2); q = 1 is bounded by the L2 norm
        # times sqrt(#paths) and at least it (Cauchy-Schwarz, with #paths = the q = 1 norm
        # of the all-ones weights)
        assert_close(net.path_norm(p, 2), math.sqrt(r.gamma2), 1e-15)
        n_paths = net.path_norm(np.ones(net.n_params), 1)
        l1 = net.path_norm(p, 1)
        assert r.gamma2 ** 0.5 <= l1 * (1 + 1e-12)
        assert l1 <= math.sqrt(n_paths * r.gamma2) * (1 + 1e-12)
        assert net._graph is None


# --------------------------------------------------------------------------- the float64 range


class TestRange:
    """Where the float64 passes cannot be trusted, the generic engine on the graph decides
    (its careful and scaled sweeps); on a graph too large to build, a typed error."""

    net = cnn((1, 3), [Conv1d(1, 2), Dense(1)], 1)    # W[0]: 2, W[1]: 2, W_out: 1

    def params(self, w0, w1, w_out):
        return self.net.pack(W=[np.full((1, 1, 2), w0), np.full((1, 2), w1)],
                             W_out=np.full((1, 1), w_out))

    def agree(self, p):
        net = cnn((1, 3), [Conv1d(1, 2), Dense(1)], 1)
        r = net.path_quantities(p)
        norms = [net.path_norm(p, q) for q in QS]
        g = net.graph
        assert_same_quantities(r, pathgeom.path_quantities(g, p))
        assert_close(norms, [pathgeom.path_norm(g, p, q) for q in QS], 1e-12)
        return r

    # four paths (two kernel entries at two positions), each with product w0 * w1 * w_out

    def test_squares_below_the_range(self):
        # each path is 1e-170 * 1e80 * 1e90 = 1: gamma2 is 4 although q = 1e-340 is not
        # normal (kappa1 of the small weight, 2e340, overflows)
        net = cnn((1, 3), [Conv1d(1, 2), Dense(1)], 1)
        p = self.params(1e-170, 1e80, 1e90)
        assert_close(net.gamma2(p), 4.0, 1e-12)
        assert_close(net.gamma2(p), pathgeom.gamma2(net.graph, p), 1e-12)
        net._graph = None
        norms = [net.path_norm(p, q) for q in QS]
        assert_close(norms, [pathgeom.path_norm(net.graph, p, q) for q in QS], 1e-12)
        assert_close(norms, [4.0, 2.0, 4.0 ** (1 / 3.5)], 1e-12)
        with pytest.raises(pathgeom.PathOverflowError, match="kappa1"):
            net.path_quantities(p)
        # a normal kappa1 next to a gamma2 and kappa1 entries that underflow to 0
        r = self.agree(self.params(1e-170, 1e-10, 1e-10))
        assert r.gamma2 == 0.0 and np.array_equal(r.kappa1 > 0, [True, True, False, False, False])

    def test_squares_beyond_the_range(self):
        r = self.agree(self.params(1e200, 1e-100, 1e-100))
        assert_close(r.gamma2, 4.0, 1e-12)

    def test_huge_weight_on_paths_with_a_zero(self):
        # every path carries the zero: gamma2 and the norms are 0; kappa1 of the zero
        # weight is the sum of the other squares over its paths, 4e400: an overflow
        net = cnn((1, 3), [Conv1d(1, 2), Dense(1)], 1)
        p = self.params(1e200, 0.0, 1.0)
        assert net.gamma2(p) == 0.0 == pathgeom.gamma2(net.graph, p)
        assert [net.path_norm(p, q) for q in QS] == [0.0] * 3
        with pytest.raises(pathgeom.PathOverflowError, match="kappa1"):
            pathgeom.path_quantities(net.graph, p)
        with pytest.raises(pathgeom.PathOverflowError, match="kappa1"):
            net.path_quantities(p)

    def test_real_overflow_is_an_error(self):
        net = cnn((1, 3), [Conv1d(1, 2), Dense(1)], 1)
        with pytest.raises(pathgeom.PathOverflowError):
            net.path_quantities(np.full(net.n_params, 1e120))
        with pytest.raises(pathgeom.PathOverflowError):
            net.gamma2(np.full(net.n_params, 1e120))
        with pytest.raises(pathgeom.PathOverflowError):
            net.path_norm(np.full(net.n_params, 1e250), 1)

    def test_real_underflow_is_zero_like_the_engine(self):
        r = self.agree(self.params(1e-110, 1e-110, 1e-110))
        assert r.gamma2 == 0.0

    def test_too_large_graph_gives_a_typed_error(self):
        net = cnn((16, 1024, 1024), [Conv2d(16, 3, padding=1), Conv2d(1, 8, stride=8)], 1)
        p = np.full(net.n_params, 0.1)
        p[0] = 1e200
        with pytest.raises(pathgeom.PathOverflowError, match="edge list"):
            net.path_quantities(p)
        p[0] = 1e-170
        with pytest.raises(pathgeom.PathUnderflowError, match="edge list"):
            net.gamma2(p)
        with pytest.raises(pathgeom.PathUnderflowError, match="edge list"):
            pathgeom.path_norm(net, p, 3.5)
        assert net._graph is None


class TestErrors:
    def test_memory_is_checked_before_the_passes(self):
        # 2**34 input positions, halved ten times: a small p, terabytes of node values
        net = cnn((1, 2 ** 17, 2 ** 17), [Conv2d(1, 2, stride=2)] * 10, 1)
        assert net.n_params == 10 * 4 + 128 * 128
        p = np.full(net.n_params, 0.5)
        from pathgeom._memory import MemoryLimitError
        for call in (net.path_quantities, net.gamma2, lambda p: net.path_norm(p, 1)):
            with pytest.raises(MemoryLimitError, match="dense passes of this CNN"):
                call(p)

    def test_path_norm_needs_p_and_a_valid_q(self):
        net = cnn((1, 3), [Conv1d(1, 2)], 1)
        with pytest.raises(TypeError, match="needs p"):
            pathgeom.path_norm(net, q=2)
        with pytest.raises(ValueError, match="q must be"):
            net.path_norm(np.ones(net.n_params), 0.5)
        with pytest.raises(ValueError, match="p has"):
            net.path_quantities(np.ones(3))
        with pytest.raises(TypeError, match="with_kappa2"):
            net.path_quantities(np.ones(net.n_params), with_kappa2="yes")
