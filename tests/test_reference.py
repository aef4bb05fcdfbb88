"""The reference against itself, exactly: Lemma 1 and the printed constants, in Fractions."""

from fractions import Fraction

import pytest
from hypothesis import given

import pathgeom
from pathgeom import reference

from strategies import graph_and_params


@given(gp=graph_and_params())
def test_lemma1_holds_exactly(gp):
    g, p = gp
    k, k1, k2 = reference.kappa(g, p), reference.kappa1(g, p), reference.kappa2(g, p)
    assert k == [a + b for a, b in zip(k1, k2)]


@given(gp=graph_and_params())
def test_printed_forms_are_half_and_quarter_of_the_exact_term(gp):
    g, p = gp
    exact = reference.kappa2(g, p)
    assert [2 * x for x in reference.kappa2_printed_eq10(g, p)] == exact
    assert [4 * x for x in reference.kappa2_printed_eq11(g, p)] == exact


def _lagrange_derivative(xs, ys, x0):
    """Derivative at x0 (not a node) of the polynomial through (xs, ys), exactly."""
    total = Fraction(0)
    for k, (xk, yk) in enumerate(zip(xs, ys)):
        basis = Fraction(1)
        for j, xj in enumerate(xs):
            if j != k:
                basis *= (x0 - xj) / (xk - xj)
        total += yk * basis * sum(1 / (x0 - xj) for j, xj in enumerate(xs) if j != k)
    return total


@given(gp=graph_and_params())
def test_kappa1_is_the_derivative_of_g_in_q(gp):
    """kappa1_i = dg/dq_i, with g(q) interpolated exactly from gamma^2 at other p_i."""
    g, p = gp
    k1 = reference.kappa1(g, p)
    counts = g.param_edge_counts()
    for i in range(g.n_params):
        nodes = [Fraction(10 + k) for k in range(int(counts[i]) + 1)]  # p_i values
        values = [reference.gamma2(g, [x if j == i else p[j] for j in range(g.n_params)])
                  for x in nodes]
        q0 = Fraction(p[i]) ** 2
        assert k1[i] == _lagrange_derivative([x * x for x in nodes], values, q0)


def test_paths_of_a_diamond():
    g = pathgeom.SharedGraph.from_edges(
        [("x", "a", 0), ("x", "b", 1), ("a", "y", 2), ("b", "y", 2)], ["x"], ["y"])
    assert len(reference.paths(g)) == 2
    assert reference.gamma2(g, [1, 2, 3]) == 1 * 9 + 4 * 9


def test_reference_refuses_huge_path_counts():
    # a ladder of 2-node layers has 2**layers paths
    edges, prev = [], ["x"]
    for layer in range(12):
        cur = [f"a{layer}", f"b{layer}"]
        edges += [(u, v, 0) for u in prev for v in cur]
        prev = cur
    edges += [(u, "y", 0) for u in prev]
    g = pathgeom.SharedGraph.from_edges(edges, ["x"], ["y"])
    with pytest.raises(ValueError, match="more than 100 paths"):
        reference.gamma2(g, [1.0], max_paths=100)
