"""Exact cancellation in the real network's kernels (relu'(0) = 0 where sums cancel).

Graphs are built so that a node's incoming products cancel exactly; the kernels must give
exactly 0 there (not a rounding residue such as 2e-16 from a fused multiply-add), so the
ReLU is inactive and the gradient matches the exact Fraction reference.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import pathgeom
from pathgeom import reference

from helpers import as_floats, assert_close

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False).filter(
    lambda v: v == 0 or abs(v) > 1e-3)


def _check_against_reference(g, p, x, dy):
    y = g.forward(p, x)
    assert_close(y, as_floats(reference.forward(g, p, x)), 1e-12)
    grad = g.backward(p, x, dy)
    assert_close(grad, as_floats(reference.backward(g, p, x, dy)), 1e-12)
    return y, grad


@settings(deadline=None, max_examples=60)
@given(a=finite, b=finite, x=finite, y=finite, order=st.permutations(range(4)))
def test_four_terms_that_cancel_in_any_order(a, b, x, y, order):
    # h = relu(a x + b y - a x - b y) = 0 whatever the summation order; out = h + x
    terms = [("x", "h", 0), ("y", "h", 1), ("x", "h", 2), ("y", "h", 3)]
    edges = [terms[k] for k in order] + [("h", "o", 4), ("x", "o", 5)]
    g = pathgeom.SharedGraph.from_edges(edges, ["x", "y"], ["o"])
    p = np.array([a, b, -a, -b, 1.0, 1.0])
    out, grad = _check_against_reference(g, p, np.array([x, y]), np.array([1.0]))
    assert out[0] == x            # exactly: the hidden node contributes an exact 0
    np.testing.assert_array_equal(grad[:5], 0.0)   # relu'(0) = 0: no gradient through h


@settings(deadline=None, max_examples=60)
@given(a=finite, x=finite, k=st.integers(1, 4))
def test_parallel_edges_with_opposite_weights(a, x, k):
    # k edges with a and k with -a from one node: the classic FMA residue a*x - fl(a*x)
    edges = [("x", "h", 0)] * k + [("x", "h", 1)] * k + [("h", "o", 2)]
    g = pathgeom.SharedGraph.from_edges(edges, ["x"], ["o"])
    p = np.array([a, -a, 1.0])
    out, grad = _check_against_reference(g, p, np.array([x]), np.array([1.0]))
    assert out[0] == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_products_that_need_more_than_float_precision():
    # 0.1 * 3 rounds; 0.3 * 1 does not: their exact difference is not 0, and the exact
    # reference says relu is active with a tiny positive value
    g = pathgeom.SharedGraph.from_edges([("x", "h", 0), ("y", "h", 1), ("h", "o", 2)],
                                        ["x", "y"], ["o"])
    p = np.array([0.1, -1.0, 1.0])
    X = np.array([3.0, 0.30000000000000004])
    _check_against_reference(g, p, X, np.array([1.0]))


@settings(deadline=None, max_examples=40)
@given(a=finite, x=finite, d=finite)
def test_gradient_sums_that_cancel(a, x, d):
    # parameter 0 on two edges whose gradient contributions are +c and -c
    edges = [("x", "h1", 0), ("x", "h2", 1), ("h1", "o", 2), ("h2", "o", 3)]
    g = pathgeom.SharedGraph.from_edges(edges, ["x"], ["o"])
    p = np.array([a, a, 1.0, -1.0])
    _check_against_reference(g, p, np.array([abs(x)]), np.array([d]))
    edges = [("x", "h", 0), ("h", "o1", 1), ("h", "o2", 1)]
    g = pathgeom.SharedGraph.from_edges(edges, ["x"], ["o1", "o2"])
    out, grad = _check_against_reference(g, np.array([a, 1.0]), np.array([abs(x)]),
                                         np.array([d, -d]))
    np.testing.assert_array_equal(grad, 0.0)


def test_batched_lanes_are_independent():
    g = pathgeom.SharedGraph.from_edges([("x", "h", 0), ("x", "h", 1), ("h", "o", 2)],
                                        ["x"], ["o"])
    p = np.array([0.1, -0.1, 1.0])
    X = np.array([[3.0], [7.0], [-1e-5], [1e300]])
    np.testing.assert_array_equal(g.forward(p, X), 0.0)
