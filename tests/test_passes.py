"""forward / backward against the exact reference and finite differences; input checks."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import pathgeom
from pathgeom import PathOverflowError, reference

from helpers import as_floats, assert_close
from strategies import graph_and_params, graphs, params


def _abs_scale(g, p, X):
    """Sum of |terms| per output: the yardstick for cancellation in f_p(x)."""
    return g.forward(np.abs(p), np.abs(X))


@given(gp=graph_and_params(), data=st.data())
def test_forward_matches_reference(gp, data):
    g, p = gp
    B = data.draw(st.integers(1, 3))
    X = np.stack([data.draw(params(g.n_inputs, -3, 3)) for _ in range(B)]).reshape(B, g.n_inputs)
    Y = g.forward(p, X)
    assert Y.shape == (B, g.n_outputs)
    exact = np.array([as_floats(reference.forward(g, p, x)) for x in X]).reshape(Y.shape)
    assert_close(Y, exact, 1e-12, scale=1e-12 * _abs_scale(g, p, X) + 1e-300)


@given(gp=graph_and_params(), data=st.data())
def test_backward_matches_reference(gp, data):
    g, p = gp
    B = data.draw(st.integers(1, 3))
    X = np.stack([data.draw(params(g.n_inputs, -3, 3)) for _ in range(B)]).reshape(B, g.n_inputs)
    dY = np.stack([data.draw(params(g.n_outputs, -2, 2)) for _ in range(B)]).reshape(
        B, g.n_outputs)
    grad = g.backward(p, X, dY)
    assert grad.shape == (g.n_params,)
    exact = sum(as_floats(reference.backward(g, p, x, dy)) for x, dy in zip(X, dY))
    scale = g.backward(np.abs(p), np.abs(X), np.abs(dY))  # the sum of |terms|
    assert_close(grad, exact, 1e-12, scale=1e-12 * scale + 1e-300)


@given(gp=graph_and_params(zeros=False), data=st.data())
def test_backward_matches_finite_differences(gp, data):
    g, p = gp
    x = data.draw(params(g.n_inputs, 0.5, 2.0, zeros=False))
    dy = data.draw(params(g.n_outputs, -1, 1, zeros=False))
    grad = g.backward(p, x, dy)
    loss = lambda p: float(dy @ g.forward(p, x))
    step = 1e-6
    for i in range(g.n_params):
        e = np.zeros(g.n_params)
        e[i] = step
        # a ReLU kink within the step invalidates the difference: compare one-sided slopes
        plus = (loss(p + e) - loss(p)) / step
        minus = (loss(p) - loss(p - e)) / step
        if abs(plus - minus) > 1e-4 * (1 + abs(plus)):
            continue
        assert_close(0.5 * (plus + minus), grad[i], 1e-5, scale=1.0)


def test_weight_sharing_gradients_add_up():
    # y = w * relu(w * x): dy/dw = 2 w x for w, x > 0
    g = pathgeom.SharedGraph.from_edges([("x", "h", 0), ("h", "y", 0)], ["x"], ["y"])
    assert_close(g.backward([1.5], [2.0], [1.0]), [2 * 1.5 * 2.0])
    # parallel edges: y = (w + w) x
    g = pathgeom.SharedGraph.from_edges([("x", "y", 0), ("x", "y", 0)], ["x"], ["y"])
    assert_close(g.forward([3.0], [2.0]), [12.0])
    assert_close(g.backward([3.0], [2.0], [1.0]), [4.0])


def test_relu_inside_linear_outputs():
    g = pathgeom.SharedGraph.from_edges([("x", "h", 0), ("h", "y", 1), ("x", "y", 1)],
                                        ["x"], ["y"])
    # x = -1: h = relu(-2) = 0, y = 1 * 0 + 1 * (-1) = -1 (linear output keeps the sign)
    assert_close(g.forward([2.0, 1.0], [[-1.0], [1.0]]), [[-1.0], [3.0]])


def test_one_d_input_gives_one_d_output():
    g = pathgeom.SharedGraph.from_edges([("a", "y", 0), ("b", "y", 1), ("a", "z", 0)],
                                        ["a", "b"], ["y", "z"])
    assert g.forward([1.0, 2.0], [1.0, 1.0]).shape == (2,)
    assert g.forward([1.0, 2.0], [[1.0, 1.0]]).shape == (1, 2)
    assert g.backward([1.0, 2.0], [1.0, 1.0], [1.0, 0.0]).shape == (2,)


class TestBadNumericInput:
    g = pathgeom.SharedGraph.from_edges([("a", "y", 0), ("b", "y", 1)], ["a", "b"], ["y"])

    @pytest.mark.parametrize("fn", [pathgeom.gamma2, pathgeom.kappa1, pathgeom.kappa2,
                                    pathgeom.kappa, pathgeom.path_quantities,
                                    pathgeom.squared_values])
    @pytest.mark.parametrize("p, match", [([1.0], r"shape \(1,\).*length n_params = 2"),
                                          ([[1.0, 2.0]], "shape"),
                                          ([1.0, np.nan], r"p\[1\] = nan is not finite"),
                                          ([np.inf, 1.0], r"p\[0\] = inf"),
                                          (["a", "b"], "real numeric")])
    def test_bad_p(self, fn, p, match):
        with pytest.raises(ValueError, match=match):
            fn(self.g, p)

    def test_bad_p_in_passes(self):
        with pytest.raises(ValueError, match="n_params = 2"):
            self.g.forward([1.0], [1.0, 1.0])
        with pytest.raises(ValueError, match="not finite"):
            self.g.backward([1.0, np.nan], [1.0, 1.0], [1.0])

    def test_bad_X(self):
        with pytest.raises(ValueError, match=r"X has shape \(3,\); expected \(n_inputs,\) or "
                                             r"\(B, n_inputs\) with n_inputs = 2"):
            self.g.forward([1.0, 1.0], [1.0, 1.0, 1.0])
        with pytest.raises(ValueError, match=r"X has shape \(4, 1\)"):
            self.g.forward([1.0, 1.0], np.ones((4, 1)))
        with pytest.raises(ValueError, match=r"X\[1, 0\] = nan"):
            self.g.forward([1.0, 1.0], [[1.0, 1.0], [np.nan, 1.0]])
        with pytest.raises(ValueError, match="X has shape"):
            self.g.forward([1.0, 1.0], np.ones((2, 2, 2)))

    def test_bad_dY(self):
        with pytest.raises(ValueError, match="n_outputs = 1"):
            self.g.backward([1.0, 1.0], [[1.0, 1.0]], [[1.0, 2.0]])
        with pytest.raises(ValueError, match="batch rows"):
            self.g.backward([1.0, 1.0], np.ones((3, 2)), np.ones((2, 1)))

    def test_not_a_graph(self):
        with pytest.raises(TypeError, match="SharedGraph"):
            pathgeom.gamma2("graph", [1.0])


@given(gp=graph_and_params())
def test_inputs_not_mutated_and_read_only_accepted(gp):
    g, p = gp
    X = np.ones((2, g.n_inputs))
    dY = np.ones((2, g.n_outputs))
    for a in (p, X, dY):
        a.flags.writeable = False
    before = [a.copy() for a in (p, X, dY)]
    g.forward(p, X)
    g.backward(p, X, dY)
    pathgeom.path_quantities(g, p)
    for a, b in zip((p, X, dY), before):
        np.testing.assert_array_equal(a, b)


class TestOverflow:
    def long_chain(self, n):
        nodes = ["x"] + [f"v{k}" for k in range(n)] + ["y"]
        return pathgeom.SharedGraph.from_edges(
            [(a, b, 0) for a, b in zip(nodes, nodes[1:])], ["x"], ["y"])

    @pytest.mark.parametrize("fn", [pathgeom.gamma2, pathgeom.kappa1, pathgeom.kappa,
                                    pathgeom.path_quantities])
    def test_gamma2_overflow_is_an_error_naming_the_node(self, fn):
        g = self.long_chain(200)  # gamma^2 = 10**(2 * 201) overflows near node v152
        with pytest.raises(PathOverflowError, match=r"overflow.*node 'v15\d'"):
            fn(g, [10.0])

    def test_kappa_overflow_while_gamma2_fits(self):
        # x -a-> h1 -b-> h2 -c-> y: gamma^2 = (a b c)^2 = 1e100 fits, but
        # kappa1_b = h_h1 * delta_h2 = a^2 c^2 = 1e400 does not
        g = pathgeom.SharedGraph.from_edges([("x", "h1", 0), ("h1", "h2", 1), ("h2", "y", 2)],
                                            ["x"], ["y"])
        p = [1e100, 1e-150, 1e100]
        assert pathgeom.gamma2(g, p) == pytest.approx(1e100)
        with pytest.raises(PathOverflowError, match=r"kappa1\[1\] overflowed"):
            pathgeom.kappa1(g, p)

    def test_squared_parameter_overflow(self):
        g = pathgeom.SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"])
        with pytest.raises(PathOverflowError, match=r"p\[0\]\*\*2 overflows"):
            pathgeom.gamma2(g, [1e200])

    def test_forward_overflow(self):
        g = self.long_chain(400)
        with pytest.raises(PathOverflowError, match="forward pass overflowed"):
            g.forward([10.0], [1.0])
        with pytest.raises(PathOverflowError, match="overflowed"):
            g.backward([10.0], [1.0], [1.0])

    def test_dead_end_overflow_is_harmless(self):
        # a long chain hanging off the input that reaches no output does not matter
        nodes = ["x"] + [f"d{k}" for k in range(400)]
        edges = [(a, b, 0) for a, b in zip(nodes, nodes[1:])] + [("x", "y", 1)]
        g = pathgeom.SharedGraph.from_edges(edges, ["x"], ["y"])
        r = pathgeom.path_quantities(g, [10.0, 2.0])
        assert r.gamma2 == 4.0
        np.testing.assert_array_equal(r.kappa, [0.0, 1.0])
        np.testing.assert_array_equal(g.forward([10.0, 2.0], [1.0]), [2.0])
        np.testing.assert_array_equal(g.backward([10.0, 2.0], [1.0], [1.0]), [0.0, 1.0])


class TestOverflowRegressions:
    """Cases an independent review found returning inf/nan or a wrong finite value."""

    def test_sum_over_outputs_overflows(self):
        g = pathgeom.SharedGraph.from_edges([("x1", "y1", 0), ("x2", "y2", 0)],
                                            ["x1", "x2"], ["y1", "y2"])
        for fn in (pathgeom.gamma2, pathgeom.path_quantities):
            with pytest.raises(PathOverflowError, match="sum over the outputs"):
                fn(g, [1.2e154])

    def test_forward_does_not_turn_inf_minus_inf_into_zero(self):
        # c = relu(2a - a) with a = 1e400: the true output overflows
        g = pathgeom.SharedGraph.from_edges(
            [("x", "a", 0), ("a", "c", 1), ("a", "c", 2), ("c", "y", 1)], ["x"], ["y"])
        with pytest.raises(PathOverflowError, match="forward pass overflowed"):
            g.forward([1e200, 2.0, -1.0], [1e200])

    def test_overflow_on_nodes_no_input_reaches_is_harmless(self):
        # d0 -> ... -> d399 -> y on weight 10 carries no input; x -> y on weight 2
        nodes = [f"d{k}" for k in range(400)] + ["y"]
        edges = [(a, b, 0) for a, b in zip(nodes, nodes[1:])] + [("x", "y", 1)]
        g = pathgeom.SharedGraph.from_edges(edges, ["x"], ["y"])
        r = pathgeom.path_quantities(g, [10.0, 2.0])
        assert r.gamma2 == 4.0
        np.testing.assert_array_equal(r.kappa, [0.0, 1.0])
        h, delta = pathgeom.squared_values(g, [10.0, 2.0])
        assert np.isfinite(delta).all() and np.isfinite(h).all()
