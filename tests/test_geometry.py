"""gamma2, kappa1, kappa2, kappa against the exact reference and finite differences."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import pathgeom
from pathgeom import geometry, reference

from helpers import as_floats, assert_close
from strategies import graph_and_params, graphs, params


def chain(length, shared=True):
    """in -> v1 -> ... -> out, every edge on parameter 0 (or each on its own)."""
    nodes = ["in"] + [f"v{k}" for k in range(1, length)] + ["out"]
    edges = [(a, b, 0 if shared else k) for k, (a, b) in enumerate(zip(nodes, nodes[1:]))]
    return pathgeom.SharedGraph.from_edges(edges, ["in"], ["out"])


class TestChainWitness:
    """The smallest witness of the printed constants: in -> a -> out on one shared p, gamma^2 = p^4."""

    @pytest.mark.parametrize("p", [0.5, 1.0, -3.0, 7.25])
    def test_exact_and_printed_constants(self, p):
        g = chain(2)
        r = pathgeom.path_quantities(g, [p])
        q = p * p
        assert r.gamma2 == q * q
        assert_close(r.kappa, [6 * q])
        assert_close(r.kappa1, [2 * q])
        assert_close(r.kappa2, [4 * q])
        assert float(reference.kappa2_printed_eq10(g, [p])[0]) == 2 * q
        assert float(reference.kappa2_printed_eq11(g, [p])[0]) == q

    @pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
    def test_shared_chain_of_any_length(self, n):
        # gamma^2 = q^n: kappa = n(2n-1) q^(n-1), kappa1 = n q^(n-1), kappa2 = 2n(n-1) q^(n-1)
        p = 1.1
        q = p * p
        r = pathgeom.path_quantities(chain(n), [p])
        assert_close(r.gamma2, q ** n)
        assert_close(r.kappa, [n * (2 * n - 1) * q ** (n - 1)])
        assert_close(r.kappa1, [n * q ** (n - 1)])
        assert_close(r.kappa2, [2 * n * (n - 1) * q ** (n - 1)])


@pytest.mark.parametrize("block", [1, 3, 64])
@given(gp=graph_and_params())
def test_engine_matches_reference(gp, block):
    g, p = gp
    with pytest.MonkeyPatch.context() as mp:  # blocks of 1 and 3 exercise the block cutting
        mp.setattr(geometry, "TANGENT_BLOCK", block)
        r = pathgeom.path_quantities(g, p)
    assert_close(r.gamma2, float(reference.gamma2(g, p)), 1e-12)
    assert_close(r.kappa1, as_floats(reference.kappa1(g, p)), 1e-12)
    assert_close(r.kappa2, as_floats(reference.kappa2(g, p)), 1e-12)
    assert_close(r.kappa, as_floats(reference.kappa(g, p)), 1e-12)


def test_memory_cap_narrows_the_blocks():
    g = pathgeom.SharedGraph.from_edges(
        [("x", "a", 0), ("a", "b", 1), ("b", "c", 1), ("a", "c", 0), ("c", "y", 0)],
        ["x"], ["y"])
    p = np.array([0.9, 1.2])
    wide = pathgeom.kappa2(g, p)
    np.testing.assert_array_equal(pathgeom.kappa2_support(g), [0, 1])
    assert geometry._support_and_blocks(g)[1].shape == (1, geometry.TANGENT_BLOCK)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(geometry, "TANGENT_MEMORY", 8 * 4 * 2)  # heads span 4 nodes, 2 lanes
        assert geometry._support_and_blocks(g)[1].shape == (1, 2)
        mp.setattr(geometry, "TANGENT_MEMORY", 1)
        assert geometry._support_and_blocks(g)[1].shape == (2, 1)
        np.testing.assert_array_equal(pathgeom.kappa2(g, p), wide)
    assert_close(wide, as_floats(reference.kappa2(g, p)))


@given(gp=graph_and_params())
def test_single_functions_agree_with_path_quantities(gp):
    g, p = gp
    r = pathgeom.path_quantities(g, p)
    assert pathgeom.gamma2(g, p) == r.gamma2
    np.testing.assert_array_equal(pathgeom.kappa1(g, p), r.kappa1)
    np.testing.assert_array_equal(pathgeom.kappa2(g, p), r.kappa2)
    np.testing.assert_array_equal(pathgeom.kappa(g, p), r.kappa)
    cheap = pathgeom.path_quantities(g, p, with_kappa2=False)
    assert cheap.kappa2 is None and cheap.kappa is None
    np.testing.assert_array_equal(cheap.kappa1, r.kappa1)


@given(gp=graph_and_params())
def test_squared_network_values_are_path_sums(gp):
    g, p = gp
    h, delta = pathgeom.squared_values(g, p)
    q = p * p
    # g = sum of outputs of h; kappa1_i = sum over E_i of h_u delta_v (Theorem 3)
    src, dst, par = g.edges()
    k1 = np.zeros(g.n_params)
    np.add.at(k1, par, h[src] * delta[dst])
    assert_close(k1, pathgeom.kappa1(g, p), 1e-12)
    # delta_u = sum_{u->v} q delta_v except at outputs (seed 1); sinks that are not outputs: 0;
    # both h and delta are 0 where they multiply nothing (no path to an output / from an input)
    back = np.zeros(g.n_nodes)
    np.add.at(back, src, q[par] * delta[dst])
    out = np.zeros(g.n_nodes, bool)
    out[[g.index(o) for o in g.outputs]] = True
    reached, live = g.compiled.reached, g.compiled.live
    assert_close(delta[~out & reached], back[~out & reached], 1e-12)
    assert np.all(delta[out & reached] == 1.0)
    assert np.all(delta[~reached] == 0.0) and np.all(h[~live] == 0.0)


@given(gp=graph_and_params())
def test_depth_certificate_is_sound(gp):
    g, p = gp
    support = set(pathgeom.kappa2_support(g).tolist())
    exact = reference.kappa2(g, p)
    k2 = pathgeom.kappa2(g, p)
    for i in range(g.n_params):
        if i not in support:
            assert exact[i] == 0 and k2[i] == 0.0


@given(gp=graph_and_params(zeros=False), data=st.data())
def test_kappa_is_half_the_second_derivative(gp, data):
    """kappa against a central second difference of the engine's gamma^2."""
    g, _ = gp
    p = data.draw(params(g.n_params, 0.5, 1.5, zeros=False))
    k = pathgeom.kappa(g, p)
    g0 = pathgeom.gamma2(g, p)
    for i in range(g.n_params):
        step = 1e-3
        e = np.zeros(g.n_params)
        e[i] = step
        fd = (pathgeom.gamma2(g, p + e) - 2 * g0 + pathgeom.gamma2(g, p - e)) / (2 * step ** 2)
        # truncation ~ step^2 * (fourth derivative) and rounding ~ eps * gamma^2 / step^2
        assert_close(fd, k[i], 1e-4, scale=g0 + 1e-300)


def test_kappa2_support_of_feedforward_graph_is_empty():
    # two layers, every edge its own parameter, plus one parameter shared within a layer
    edges = [("x0", "a", 0), ("x1", "a", 0), ("x0", "b", 1), ("a", "y", 2), ("b", "y", 3)]
    g = pathgeom.SharedGraph.from_edges(edges, ["x0", "x1"], ["y"])
    assert pathgeom.kappa2_support(g).size == 0
    np.testing.assert_array_equal(pathgeom.kappa2(g, [1.0, 2.0, 3.0, 4.0]), np.zeros(4))


def test_unrolled_rnn_support_is_the_recurrent_matrix():
    # x_t -> h_t (param 0), h_{t-1} -> h_t (param 1), h_T -> y (param 2), T = 4
    T = 4
    edges = [(f"x{t}", f"h{t}", 0) for t in range(T)]
    edges += [(f"h{t - 1}", f"h{t}", 1) for t in range(1, T)]
    edges += [(f"h{T - 1}", "y", 2)]
    g = pathgeom.SharedGraph.from_edges(edges, [f"x{t}" for t in range(T)], ["y"])
    np.testing.assert_array_equal(pathgeom.kappa2_support(g), [1])
    p = np.array([0.7, 1.3, -0.4])
    assert_close(pathgeom.kappa(g, p), as_floats(reference.kappa(g, p)))


def test_many_parameters_span_several_blocks():
    """A random multi-layer recurrent-style graph with more interacting params than a block."""
    rng = np.random.default_rng(0)
    H, T = 12, 6  # 144 recurrent parameters > TANGENT_BLOCK
    src, dst, par = [], [], []
    node = lambda t, j: T + t * H + j
    for t in range(T):
        for j in range(H):
            src.append(t); dst.append(node(t, j)); par.append(j)
            if t:
                for k in range(H):
                    src.append(node(t - 1, k)); dst.append(node(t, j)); par.append(H + j * H + k)
    out = T + T * H
    for k in range(H):
        src.append(node(T - 1, k)); dst.append(out); par.append(H + H * H + k)
    g = pathgeom.SharedGraph.from_arrays(src, dst, par, inputs=range(T), outputs=[out])
    p = rng.uniform(-0.5, 0.5, g.n_params)
    k = pathgeom.kappa(g, p)
    g0 = pathgeom.gamma2(g, p)
    for i in rng.choice(np.arange(H, H + H * H), size=8, replace=False):
        step = 1e-3
        e = np.zeros(g.n_params)
        e[i] = step
        fd = (pathgeom.gamma2(g, p + e) - 2 * g0 + pathgeom.gamma2(g, p - e)) / (2 * step ** 2)
        assert_close(fd, k[i], 1e-5, scale=1e-3 * k.max())
    assert np.count_nonzero(pathgeom.kappa2(g, p)[H:H + H * H]) == H * H


def test_threads_do_not_change_kappa2():
    """Several tangent blocks (one layer, H = 12: 144 interacting parameters > 64) give the
    same result on one thread as on all of them: each block owns its scratch and row."""
    import numba
    net = pathgeom.rnn(1, 12, 1, T=6)
    g = net.graph
    p = net.init(np.random.default_rng(0), "uniform", scale=0.4)
    assert geometry._support_and_blocks(g)[1].shape[0] >= 3
    before = pathgeom.kappa2(g, p)
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(pathgeom.kappa2(g, p), before)
    finally:
        numba.set_num_threads(n)
    assert_close(before, net.kappa2(p), 1e-12)
