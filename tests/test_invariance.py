"""Rescaling group, rescale, Theorem 1-2 facts, and the Lemma 1 / invariance verifiers."""

import json
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import pathgeom
from pathgeom import invariance, reference, verify
from pathgeom.invariance import (rescale, rescaling_group, verify_invariance,
                                 verify_lemma1)
from pathgeom.optim import path_sgd_step, sgd_step

from helpers import assert_close
from strategies import graph_and_params, graphs


# --------------------------------------------------------------------------- independent counts


def fraction_rank(rows, n_cols):
    """Rank of a small matrix by Gauss-Jordan elimination over the rationals."""
    M = [[Fraction(x) for x in row] for row in rows]
    rank = 0
    for c in range(n_cols):
        piv = next((r for r in range(rank, len(M)) if M[r][c] != 0), None)
        if piv is None:
            continue
        M[rank], M[piv] = M[piv], M[rank]
        for r in range(len(M)):
            if r != rank and M[r][c] != 0:
                f = M[r][c] / M[rank][c]
                M[r] = [a - f * b for a, b in zip(M[r], M[rank])]
        rank += 1
    return rank


def independent_group_dim(g):
    """Dimension of {(b, c) : b_v - b_u - c_i = 0 on every edge, b = 0 on inputs/outputs}.

    Unknowns: b on internal nodes and c on the parameters that have edges.  Projecting to
    b is injective (c_i is b_v - b_u on any edge of E_i), so this is the group's dimension.
    """
    src, dst, par = g.edges()
    fixed = set(g.compiled.inputs.tolist()) | set(g.compiled.outputs.tolist())
    internal = [v for v in range(g.n_nodes) if v not in fixed]
    used = sorted(set(par.tolist()))
    col = {("b", v): k for k, v in enumerate(internal)}
    col.update({("c", i): len(internal) + k for k, i in enumerate(used)})
    n = len(col)
    rows = []
    for u, v, i in zip(src.tolist(), dst.tolist(), par.tolist()):
        row = [0] * n
        if v not in fixed:
            row[col[("b", v)]] += 1
        if u not in fixed:
            row[col[("b", u)]] -= 1
        row[col[("c", i)]] -= 1
        rows.append(row)
    return n - fraction_rank(rows, n)


def is_feasible_exactly(g, b):
    """Integer log-rescaling b: 0 on inputs/outputs and equal log-ratios per parameter."""
    fixed = np.concatenate([g.compiled.inputs, g.compiled.outputs])
    if np.any(b[fixed] != 0):
        return False
    src, dst, par = g.edges()
    ratio = {}
    for u, v, i in zip(src.tolist(), dst.tolist(), par.tolist()):
        if ratio.setdefault(i, b[v] - b[u]) != b[v] - b[u]:
            return False
    return True


def rnn_graph(n_in, H, n_out, T):
    return pathgeom.rnn(n_in, H, n_out, T).graph


def deep_rnn_graph(n_in, widths, n_out, T, outputs_all=False):
    """Layers of ReLU RNNs (Table 1), no time-0 nodes; outputs last or at every step."""
    edges, k = [], 0
    below = [("x", i) for i in range(n_in)]
    params = {}

    def param(name):
        nonlocal k
        if name not in params:
            params[name] = k
            k += 1
        return params[name]

    for layer, H in enumerate(widths):
        for t in range(T):
            for j in range(H):
                for i, (kind, idx) in enumerate(below):
                    edges.append(((kind, t, idx), (f"h{layer}", t, j),
                                  param(("in", layer, j, i))))
                if t:
                    for m in range(H):
                        edges.append(((f"h{layer}", t - 1, m), (f"h{layer}", t, j),
                                      param(("rec", layer, j, m))))
        below = [(f"h{layer}", j) for j in range(H)]
    times = range(T) if outputs_all else [T - 1]
    outputs = []
    for t in times:
        for o in range(n_out):
            outputs.append(("y", t, o))
            for m in range(widths[-1]):
                edges.append(((f"h{len(widths) - 1}", t, m), ("y", t, o), param(("out", o, m))))
    inputs = [("x", t, i) for t in range(T) for i in range(n_in)]
    return pathgeom.SharedGraph.from_edges(edges, inputs, outputs)


def mlp_graph(widths, bias=True):
    """Dense layers widths[0] -> ... -> widths[-1], each weight its own parameter."""
    edges, k = [], 0
    layers = [[(0, j) for j in range(widths[0])]]
    for d, w in enumerate(widths[1:], start=1):
        layers.append([(d, j) for j in range(w)])
        for v in layers[d]:
            for u in layers[d - 1]:
                edges.append((u, v, k))
                k += 1
            if bias and d < len(widths) - 1:
                edges.append(("bias", v, k))
                k += 1
    inputs = layers[0] + (["bias"] if bias else [])
    return pathgeom.SharedGraph.from_edges(edges, inputs, layers[-1])


def conv1d_graph(length, channels, kernel, stride=1, padding=0, n_out=2, bias=True):
    """1-D convolutions with shared kernels (and per-channel shared biases), dense readout."""
    edges, k = [], 0
    layer = [("in", 0, x) for x in range(length)]
    size, c_prev = length, 1
    for d, C in enumerate(channels, start=1):
        out_size = (size + 2 * padding - kernel) // stride + 1
        kern = {}
        for c in range(C):
            for c0 in range(c_prev):
                for t in range(kernel):
                    kern[c, c0, t] = k
                    k += 1
            bias_param = k
            k += 1
            for x in range(out_size):
                v = (f"conv{d}", c, x)
                for c0 in range(c_prev):
                    for t in range(kernel):
                        pos = x * stride + t - padding
                        if 0 <= pos < size:
                            src = ("in", 0, pos) if d == 1 else (f"conv{d - 1}", c0, pos)
                            edges.append((src, v, kern[c, c0, t]))
                if bias:
                    edges.append(("bias", v, bias_param))
        size, c_prev = out_size, C
    last = len(channels)
    outputs = [("y", o) for o in range(n_out)]
    for o in range(n_out):
        for c in range(c_prev):
            for x in range(size):
                edges.append(((f"conv{last}", c, x), ("y", o), k))
                k += 1
    inputs = [("in", 0, x) for x in range(length)] + (["bias"] if bias else [])
    return pathgeom.SharedGraph.from_edges(edges, inputs, outputs)


# --------------------------------------------------------------------------- the group


class TestGroupDimension:
    @given(graphs())
    def test_matches_independent_rank(self, g):
        assert rescaling_group(g).dim == independent_group_dim(g)

    @given(graphs(max_nodes=9, max_edges=18, max_used_params=2))
    def test_matches_independent_rank_heavy_sharing(self, g):
        assert rescaling_group(g).dim == independent_group_dim(g)

    @given(graphs(max_nodes=9, max_edges=18, max_used_params=3))
    def test_rational_elimination_alone_agrees(self, g):
        slow = invariance._group_basis(g, merge=False).toarray()
        assert len(slow) == rescaling_group(g).dim == independent_group_dim(g)
        assert all(is_feasible_exactly(g, np.array(b)) for b in slow)

    @given(graphs())
    def test_basis_is_a_feasible_independent_integer_basis(self, g):
        G = rescaling_group(g)
        assert G.basis.shape == (G.dim, g.n_nodes)
        assert np.array_equal(G.basis, np.round(G.basis))
        for b in G.basis:
            assert is_feasible_exactly(g, b)
        assert fraction_rank(G.basis.astype(int).tolist(), g.n_nodes) == G.dim

    def test_rows_left_to_the_rational_elimination(self):
        # parameter 0 on x -> a and b -> c: b_c - b_b = b_a, three terms, no union
        g = pathgeom.SharedGraph.from_edges(
            [("x", "a", 0), ("x", "b", 1), ("b", "c", 0), ("a", "y", 2), ("c", "y", 3)],
            ["x"], ["y"])
        G = rescaling_group(g)
        assert G.dim == 2 == independent_group_dim(g)
        assert all(is_feasible_exactly(g, b) for b in G.basis)

    def test_unequal_coefficients_give_non_unit_basis(self):
        # parameter 0 on x -> a and a -> b: b_a = b_b - b_a, so b_b = 2 b_a
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 0), ("b", "y", 1)],
                                            ["x"], ["y"])
        G = rescaling_group(g)
        assert g.nodes == ("x", "a", "b", "y")
        np.testing.assert_array_equal(G.basis, [[0, 1, 2, 0]])

    def test_opposite_signs(self):
        # parameter 0 on x -> a and b -> y: b_a = -b_b
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 0)],
                                            ["x"], ["y"])
        np.testing.assert_array_equal(rescaling_group(g).basis, [[0, 1, -1, 0]])

    def test_shared_chain_is_rigid(self):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 0), ("b", "y", 0)],
                                            ["x"], ["y"])
        assert rescaling_group(g).dim == 0

    def test_isolated_internal_node_is_a_free_dimension(self):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x", "z"],
                                            ["y", "w"])
        assert rescaling_group(g).dim == 0
        g2 = pathgeom.SharedGraph.from_arrays([0, 1], [1, 2], [0, 1], [0], [2], n_nodes=4)
        G = rescaling_group(g2)
        assert G.dim == 2        # node 1 and the isolated node 3
        beta = G.sample(np.random.default_rng(0))
        assert_close(pathgeom.gamma2(g2, rescale(g2, [1.5, 2.0], beta)), 9.0)

    def test_cached_and_read_only(self):
        g = rnn_graph(1, 2, 1, 3)
        G = rescaling_group(g)
        assert rescaling_group(g) is G
        with pytest.raises(ValueError):
            G.basis[0, 0] = 5.0

    def test_rejects_non_graphs(self):
        with pytest.raises(TypeError, match="SharedGraph"):
            rescaling_group("x -> y")


class TestTheorem1:
    """RNNs: one free scale per hidden unit, the same over all times."""

    @pytest.mark.parametrize("n_in, H, n_out, T",
                             [(1, 1, 1, 1), (1, 2, 1, 3), (2, 3, 2, 5), (3, 5, 1, 8),
                              (1, 4, 3, 12)])
    def test_dimension_and_basis(self, n_in, H, n_out, T):
        g = rnn_graph(n_in, H, n_out, T)
        G = rescaling_group(g)
        assert G.dim == H
        units = np.zeros((H, g.n_nodes), dtype=int)
        for t in range(T):
            for j in range(H):
                units[j, T * n_in + t * H + j] = 1
        stacked = np.vstack([G.basis.astype(int), units]).tolist()
        assert fraction_rank(stacked, g.n_nodes) == H   # same span as the unit indicators

    @pytest.mark.parametrize("widths, outputs_all", [((2,), False), ((2, 3), False),
                                                     ((3, 1, 2), True), ((2, 2), True)])
    def test_deep_rnns(self, widths, outputs_all):
        g = deep_rnn_graph(2, widths, 2, 4, outputs_all=outputs_all)
        assert rescaling_group(g).dim == sum(widths)
        assert rescaling_group(g).dim == independent_group_dim(g)

    def test_rescale_is_the_theorem_1_formula(self):
        n_in, H, n_out, T = 2, 3, 2, 4
        g = rnn_graph(n_in, H, n_out, T)
        rng = np.random.default_rng(1)
        p = rng.normal(size=g.n_params)
        alpha = np.exp(rng.normal(size=H))
        beta = np.ones(g.n_nodes)
        for t in range(T):
            for j in range(H):
                beta[g.index(T * n_in + t * H + j)] = alpha[j]   # labels are the ids
        W_in = p[:H * n_in].reshape(H, n_in)
        W_rec = p[H * n_in:H * n_in + H * H].reshape(H, H)
        W_out = p[H * n_in + H * H:].reshape(n_out, H)
        expected = np.concatenate([(alpha[:, None] * W_in).ravel(),
                                   (alpha[:, None] / alpha[None, :] * W_rec).ravel(),
                                   (W_out / alpha[None, :]).ravel()])
        assert rescaling_group(g).contains(beta)
        assert_close(rescale(g, p, beta), expected, 1e-15)

    def test_large_rnn_is_fast(self):
        g = rnn_graph(1, 16, 1, 50)
        t0 = time.perf_counter()
        G = invariance.RescalingGroup(g, invariance._group_basis(g))  # uncached
        assert time.perf_counter() - t0 < 10.0
        assert G.dim == 16


class TestOtherArchitectures:
    @pytest.mark.parametrize("widths", [(2, 3, 1), (3, 4, 2, 2), (1, 1, 1, 1, 1)])
    @pytest.mark.parametrize("bias", [True, False])
    def test_mlp_one_scale_per_hidden_unit(self, widths, bias):
        assert rescaling_group(mlp_graph(widths, bias)).dim == sum(widths[1:-1])

    @pytest.mark.parametrize("length, channels, kernel, stride, padding",
                             [(6, (2,), 3, 1, 0), (8, (2, 3), 3, 1, 0), (9, (3, 2), 3, 2, 0),
                              (5, (2, 2), 3, 1, 1)])
    @pytest.mark.parametrize("bias", [True, False])
    def test_cnn_one_scale_per_channel(self, length, channels, kernel, stride, padding, bias):
        g = conv1d_graph(length, channels, kernel, stride, padding, bias=bias)
        G = rescaling_group(g)
        assert G.dim == sum(channels)
        assert G.dim == independent_group_dim(g)


# --------------------------------------------------------------------------- samples, rescale


class TestSamplesAndTheorem2:
    @given(gp=graph_and_params(zeros=False), seed=st.integers(0, 2 ** 32 - 1))
    def test_samples_leave_f_gamma2_and_path_products_unchanged(self, gp, seed):
        g, p = gp
        rng = np.random.default_rng(seed)
        G = rescaling_group(g)
        beta = G.sample(rng)
        assert G.contains(beta)
        fixed = np.concatenate([g.compiled.inputs, g.compiled.outputs])
        assert np.all(beta[fixed] == 1.0) and np.all(beta > 0)
        pt = rescale(g, p, beta)
        X = rng.normal(size=(5, g.n_inputs))
        f0 = g.forward(p, X)
        assert_close(g.forward(pt, X), f0, 1e-12, scale=np.max(np.abs(f0), initial=0) + 1e-300)
        assert_close(pathgeom.gamma2(g, pt), pathgeom.gamma2(g, p), 1e-12)
        src, dst, par = g.edges()
        for path in reference.paths(g):
            ks = list(path)
            assert_close(np.prod(pt[par[ks]]), np.prod(p[par[ks]]), 1e-12)

    @given(gp=graph_and_params(zeros=False), seed=st.integers(0, 2 ** 32 - 1))
    def test_gradient_and_kappa_laws(self, gp, seed):
        g, p = gp
        rng = np.random.default_rng(seed)
        beta = rescaling_group(g).sample(rng)
        pt = rescale(g, p, beta)
        r = invariance._param_ratios(g, beta)
        X = rng.normal(size=(4, g.n_inputs))
        dY = rng.normal(size=(4, g.n_outputs))
        grad0, grad1 = g.backward(p, X, dY), g.backward(pt, X, dY)
        assert_close(grad1 * r, grad0, 1e-10, scale=np.max(np.abs(grad0), initial=0) + 1e-300)
        q0, q1 = pathgeom.path_quantities(g, p), pathgeom.path_quantities(g, pt)
        assert_close(q1.kappa * r ** 2, q0.kappa, 1e-12)
        assert_close(q1.kappa1 * r ** 2, q0.kappa1, 1e-12)
        assert_close(q1.kappa2 * r ** 2, q0.kappa2, 1e-12)

    @pytest.mark.parametrize("curvature", [
        "kappa", "kappa1",
        pytest.param(lambda g, p: pathgeom.kappa1(g, p) + 0.5 * pathgeom.kappa2(g, p),
                     id="kappa1+0.5kappa2"),
        pytest.param(lambda g, p: pathgeom.kappa1(g, p) + 3.0 * pathgeom.kappa2(g, p),
                     id="kappa1+3kappa2")])
    @given(gp=graph_and_params(zeros=False), seed=st.integers(0, 2 ** 32 - 1))
    def test_path_sgd_commutes(self, curvature, gp, seed):
        g, p = gp
        rng = np.random.default_rng(seed)
        beta = rescaling_group(g).sample(rng)
        pt = rescale(g, p, beta)
        r = invariance._param_ratios(g, beta)
        grad = rng.normal(size=g.n_params)          # transforms as grad / r
        after = path_sgd_step(g, pt, grad / r, 0.1, curvature) - pt
        before = rescale(g, path_sgd_step(g, p, grad, 0.1, curvature), beta) - pt
        assert_close(after, before, 1e-11)

    @given(gp=graph_and_params(zeros=False), seed=st.integers(0, 2 ** 32 - 1))
    def test_sgd_commutes_only_with_the_identity(self, gp, seed):
        g, p = gp
        rng = np.random.default_rng(seed)
        beta = rescaling_group(g).sample(rng)
        pt = rescale(g, p, beta)
        r = invariance._param_ratios(g, beta)
        grad = np.ones(g.n_params)
        after = sgd_step(pt, grad / r, 0.1) - pt
        before = rescale(g, sgd_step(p, grad, 0.1), beta) - pt
        moved = np.abs(np.log(r)) > 1e-9
        if moved.any():   # the update differs by the factor r**2 on every moved parameter
            assert_close(after[moved] * r[moved] ** 2, before[moved], 1e-12)
            assert not np.allclose(after[moved], before[moved], rtol=1e-6, atol=0)
        else:
            assert_close(after, before, 1e-12)

    def test_sgd_does_not_commute_on_a_non_trivial_group(self):
        g = rnn_graph(1, 3, 1, 4)
        assert rescaling_group(g).dim == 3
        rng = np.random.default_rng(5)
        p = rng.uniform(-1, 1, g.n_params)
        report = verify_invariance(g, p, rng)
        assert report.grad_norm > 0
        assert report.steps["sgd"] > 1e-2
        assert report.steps["path-sgd (kappa)"] < 1e-13
        assert report.steps["path-sgd (kappa1)"] < 1e-13


class TestRescale:
    g = pathgeom.SharedGraph.from_edges(
        [("x", "a", 0), ("x", "b", 0), ("a", "y", 1), ("b", "y", 2)], ["x"], ["y"],
        n_params=4)

    def test_values_and_unused_parameters(self):
        out = rescale(self.g, [1.0, 3.0, 5.0, 7.0], [1.0, 2.0, 2.0, 1.0])
        np.testing.assert_array_equal(out, [2.0, 1.5, 2.5, 7.0])

    def test_read_only_inputs_not_mutated(self):
        p = np.array([1.0, 3.0, 5.0, 7.0])
        beta = np.array([1.0, 2.0, 2.0, 1.0])
        p.flags.writeable = False
        beta.flags.writeable = False
        out = rescale(self.g, p, beta)
        assert out is not p and out.flags.writeable
        np.testing.assert_array_equal(p, [1.0, 3.0, 5.0, 7.0])

    def test_infeasible_names_parameter_and_edges(self):
        with pytest.raises(ValueError, match=r"parameter 0 has edges 'x' -> 'b' .* and 'x' -> "
                                             r"'a' .*Definition 2"):
            rescale(self.g, [1.0, 3.0, 5.0, 7.0], [1.0, 2.0, 4.0, 1.0])

    @pytest.mark.parametrize("beta, match", [
        ([1.0, 2.0, 2.0], r"shape \(3,\).*\(4,\)"),
        ([1.0, 0.0, 2.0, 1.0], r"beta\[1\] \(node 'a'\) = 0.0"),
        ([1.0, -2.0, -2.0, 1.0], r"finite beta > 0"),
        ([1.0, np.nan, 2.0, 1.0], r"finite beta > 0"),
        ([1.0, np.inf, 2.0, 1.0], r"finite beta > 0"),
        ([2.0, 2.0, 2.0, 1.0], r"input node 'x'"),
        ([1.0, 2.0, 2.0, 0.5], r"output node 'y'"),
        (["a", "b", "c", "d"], r"numeric"),
    ])
    def test_bad_beta(self, beta, match):
        with pytest.raises(ValueError, match=match):
            rescale(self.g, [1.0, 3.0, 5.0, 7.0], beta)

    def test_bad_p(self):
        with pytest.raises(ValueError, match="4 parameters"):
            rescale(self.g, [1.0, 3.0], [1.0, 2.0, 2.0, 1.0])

    def test_tolerance(self):
        G = rescaling_group(self.g)
        assert G.contains([1.0, 2.0, 2.0 * (1 + 1e-12), 1.0])
        assert not G.contains([1.0, 2.0, 2.0 * (1 + 1e-6), 1.0])
        assert not G.contains([1.0, 2.0, 2.0 * (1 + 1e-6), 1.0], rtol=1e-9)
        assert G.contains([1.0, 2.0, 2.0 * (1 + 1e-6), 1.0], rtol=1e-5)
        assert not G.contains([1.0, 2.0, 2.0])
        assert not G.contains([1.0, -2.0, -2.0, 1.0])

    def test_sample_arguments(self):
        G = rescaling_group(self.g)
        with pytest.raises(TypeError, match="Generator"):
            G.sample(0)
        with pytest.raises(ValueError, match="scale"):
            G.sample(np.random.default_rng(0), scale=-1.0)
        np.testing.assert_array_equal(G.sample(np.random.default_rng(0), scale=0.0),
                                      np.ones(4))
        rigid = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
        np.testing.assert_array_equal(rescaling_group(rigid).sample(np.random.default_rng(0)),
                                      np.ones(3))

    def test_repr(self):
        assert repr(rescaling_group(self.g)) == "RescalingGroup(dim=1, n_nodes=4)"


# --------------------------------------------------------------------------- verifiers


class TestVerifyLemma1:
    @given(graph_and_params())
    def test_exact_route(self, gp):
        g, p = gp
        r = verify_lemma1(g, p)
        assert r.exact and r.n_paths == len(reference.paths(g))
        assert r.max_rel_error <= 1e-12
        assert_close(r.kappa_def, [float(x) for x in reference.kappa(g, p)], 0)
        assert_close(r.eq10, r.kappa2 / 2, 1e-12)
        assert_close(r.eq11, r.kappa2 / 4, 1e-12)
        np.testing.assert_array_equal(r.kappa_def_err, 0.0)

    def test_exact_dynamic_programme_on_a_long_rnn(self):
        g = rnn_graph(1, 3, 1, 10)
        p = np.random.default_rng(0).uniform(-1, 1, g.n_params)
        r = verify_lemma1(g, p)
        assert r.exact and r.n_paths == reference.path_count(g) > 2000
        assert "dynamic programming" in r.method and "derived" in r.printed_source
        assert r.max_rel_error < 1e-12
        np.testing.assert_array_equal(r.kappa_def_err, 0.0)

    def test_numerical_route_on_a_long_rnn(self, monkeypatch):
        monkeypatch.setattr(verify, "LEMMA1_EXACT_BUDGET", 0)
        g = rnn_graph(1, 3, 1, 10)
        p = np.random.default_rng(0).uniform(-1, 1, g.n_params)
        r = verify_lemma1(g, p)
        assert not r.exact and r.n_paths is None
        assert "beyond the budget" in r.method and "derived" in r.printed_source
        total = r.kappa1 + r.kappa2
        assert np.all(np.abs(total - r.kappa_def) <= r.kappa_def_err)  # the estimate holds
        assert r.max_rel_error < 1e-7
        assert np.count_nonzero(r.kappa2) == 9                          # W_rec

    def test_numerical_agrees_with_exact_on_a_small_graph(self):
        g = pathgeom.SharedGraph.from_edges(
            [("x", "a", 0), ("a", "b", 1), ("b", "c", 0), ("b", "c", 0), ("c", "y", 2),
             ("x", "d", 0), ("d", "y", 1)], ["x"], ["y"], n_params=4)
        p = np.array([0.8, -1.5, 2.0, 0.3])
        exact = verify_lemma1(g, p)
        numeric = verify_lemma1(g, p, max_paths=0)
        assert exact.exact and not numeric.exact
        assert np.all(np.abs(numeric.kappa_def - exact.kappa_def) <= numeric.kappa_def_err)
        assert numeric.kappa_def[3] == 0.0 and numeric.kappa_def_err[3] == 0.0  # unused
        assert numeric.max_rel_error < 1e-8

    def test_eq11_budget(self, monkeypatch):
        monkeypatch.setattr(verify, "EQ11_BUDGET", 0)
        g = rnn_graph(1, 2, 1, 3)
        p = np.random.default_rng(0).uniform(-1, 1, g.n_params)
        r = verify_lemma1(g, p)
        assert r.exact and "eq.(11) derived" in r.printed_source
        assert_close(r.eq11, r.kappa2 / 4, 0)

    def test_text_and_dict(self):
        g = rnn_graph(1, 2, 1, 3)
        r = verify_lemma1(g, np.random.default_rng(0).uniform(-1, 1, g.n_params))
        text = str(r)
        assert "kappa (def)" in text and "eq.(11)" in text
        assert "printed eq.(10) / exact kappa2 = 0.5, eq.(11) / exact = 0.25" in text
        d = r.to_dict()
        assert set(d) >= {"kappa_def", "kappa1", "kappa2", "eq10", "eq11", "max_rel_error"}
        back = json.loads(json.dumps(invariance._jsonable(d), allow_nan=False))
        assert back["kappa1"] == pytest.approx(list(r.kappa1))

    def test_table_truncates_keeping_kappa2_rows(self):
        g = rnn_graph(1, 3, 1, 3)
        r = verify_lemma1(g, np.random.default_rng(0).uniform(-1, 1, g.n_params))
        table = r.table(max_rows=5)
        assert len(table.splitlines()) == 1 + 5 + 1 and "10 more parameters" in table
        shown = [int(line.split()[0]) for line in table.splitlines()[1:6]]
        assert shown == sorted(shown)
        nonzero = np.flatnonzero(r.kappa2)          # the diagonal of W_rec when T = 3
        assert 0 < nonzero.size < 5 and set(nonzero.tolist()) <= set(shown)

    def test_arguments(self):
        g = rnn_graph(1, 2, 1, 3)
        with pytest.raises(ValueError, match="max_paths"):
            verify_lemma1(g, np.zeros(g.n_params), max_paths=-1)
        with pytest.raises(ValueError, match="parameters"):
            verify_lemma1(g, np.zeros(3))


class TestVerifyInvariance:
    def test_report(self):
        g = rnn_graph(2, 3, 2, 4)
        rng = np.random.default_rng(3)
        p = rng.uniform(-1, 1, g.n_params)
        r = verify_invariance(g, p, rng, scale=0.7)
        assert r.dim == 3 and r.max_log_ratio > 0.1
        assert rescaling_group(g).contains(r.beta)
        for value in (r.f_change, r.gamma2_change, r.grad_law, r.kappa_law,
                      r.steps["path-sgd (kappa)"], r.steps["path-sgd (kappa1)"]):
            assert value < 1e-13
        assert r.steps["sgd"] > 1e-2
        text = str(r)
        assert "path-sgd (kappa1)" in text and "sgd" in text
        d = json.loads(json.dumps(invariance._jsonable(r.to_dict()), allow_nan=False))
        assert d["dim"] == 3 and len(d["beta"]) == g.n_nodes

    def test_trivial_group(self):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
        r = verify_invariance(g, [1.5], np.random.default_rng(0))
        assert r.dim == 0 and r.steps == {"path-sgd (kappa)": 0.0, "path-sgd (kappa1)": 0.0,
                                          "sgd": 0.0}
        assert "trivial" in str(r)

    def test_dead_network_is_flagged(self):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 2)],
                                            ["x"], ["y"])
        r = verify_invariance(g, [1.0, -1.0, 1.0], np.random.default_rng(0))
        assert r.grad_norm == 0 and "no active path" in str(r)


class TestConstructors:
    """The constructors' graphs: groups as the theory predicts, and the RNN's own Theorem 1
    rescaling is the graph's node-wise rescaling."""

    @pytest.mark.parametrize("hidden, outputs, bias", [(3, "last", False), ([3, 2], "all", True),
                                                       ([2, 2, 3], "last", False)])
    def test_rnn_rescale_equals_graph_rescale(self, hidden, outputs, bias):
        net = pathgeom.rnn(2, hidden, 2, T=4, outputs=outputs, bias=bias)
        rng = np.random.default_rng(0)
        p = rng.normal(size=net.n_params)
        alpha = [rng.uniform(0.3, 3.0, H) for H in net.hidden]
        beta = net.beta(alpha)
        group = rescaling_group(net.graph)
        assert group.dim == sum(net.hidden)
        assert group.contains(beta)
        assert_close(rescale(net.graph, p, beta), net.rescale_units(p, alpha), 1e-14)

    @pytest.mark.parametrize("sizes, bias", [([3, 4, 2, 1], False), ([2, 5, 3], True)])
    def test_mlp_group(self, sizes, bias):
        assert rescaling_group(pathgeom.mlp(sizes, bias=bias).graph).dim == sum(sizes[1:-1])

    @pytest.mark.parametrize("bias", [False, True])
    def test_cnn_group(self, bias):
        net = pathgeom.cnn((2, 9), [pathgeom.Conv1d(3, 3), pathgeom.Conv1d(2, 2, stride=2),
                                    pathgeom.Dense(4)], 2, bias=bias)
        assert rescaling_group(net.graph).dim == 3 + 2 + 4
