"""Path-SGD (eq. 8) and SGD: values, curvature choices, kappa = 0, validation."""

import numpy as np
import pytest
from hypothesis import given

import pathgeom
from pathgeom.optim import SGD, PathSGD, path_sgd_step, sgd_step

from helpers import assert_close
from strategies import graph_and_params

# x -> a -> y with weights p0, p1: gamma^2 = p0^2 p1^2, kappa = (p1^2, p0^2), kappa2 = 0.
CHAIN = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
# x -> a -> y sharing p: gamma^2 = p^4, kappa = 6 p^2, kappa1 = 2 p^2, kappa2 = 4 p^2.
SHARED = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])


class TestValues:
    def test_chain(self):
        new = path_sgd_step(CHAIN, [0.5, 2.0], [1.0, -3.0], lr=0.1)
        assert_close(new, [0.5 - 0.1 * 1.0 / 4.0, 2.0 + 0.1 * 3.0 / 0.25])

    @pytest.mark.parametrize("curvature, k", [("kappa", 6.0), ("kappa1", 2.0)])
    def test_shared_chain_curvatures(self, curvature, k):
        p = 1.5
        new = path_sgd_step(SHARED, [p], [1.0], lr=0.2, curvature=curvature)
        assert_close(new, [p - 0.2 / (k * p * p)])

    def test_callable_curvature(self):
        seen = []

        def half_kappa2(g, p):
            seen.append((g, p.copy()))
            return pathgeom.kappa1(g, p) + 0.5 * pathgeom.kappa2(g, p)

        new = path_sgd_step(SHARED, [1.0], [1.0], lr=1.0, curvature=half_kappa2)
        assert_close(new, [1.0 - 1.0 / 4.0])          # 2 + 0.5 * 4
        assert seen[0][0] is SHARED and seen[0][1].tolist() == [1.0]

    def test_eps(self):
        new = path_sgd_step(CHAIN, [0.5, 2.0], [1.0, 1.0], lr=0.1, eps=1.0)
        assert_close(new, [0.5 - 0.1 / 5.0, 2.0 - 0.1 / 1.25])

    @given(graph_and_params())
    def test_matches_the_definition(self, gp):
        g, p = gp
        grad = np.linspace(-1.0, 1.0, g.n_params)
        k = pathgeom.kappa(g, p)
        new = path_sgd_step(g, p, grad, lr=0.3)
        on = k > 0
        assert_close(new[on], p[on] - 0.3 * grad[on] / k[on], 1e-13,
                     scale=np.abs(p[on]) + np.abs(0.3 * grad[on] / k[on]))
        np.testing.assert_array_equal(new[~on], p[~on])

    def test_sgd(self):
        np.testing.assert_array_equal(sgd_step([0.5, 2.0], [1.0, -1.0], 0.5), [0.0, 2.5])


class TestZeroCurvature:
    """Parameters on no path carrying weight have kappa = 0 and are left unchanged."""

    def test_unused_dead_and_blocked_parameters(self):
        # p2 is on no edge; p3 sits on a branch that reaches no output; p0 is blocked by p1 = 0
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1), ("a", "dead", 3)],
                                            ["x"], ["y"], n_params=4)
        p = np.array([0.7, 0.0, 1.0, 2.0])
        assert np.all(pathgeom.kappa(g, p)[[0, 2, 3]] == 0)
        for eps in (0.0, 1e-3):
            new = path_sgd_step(g, p, np.ones(4), lr=0.1, eps=eps)
            np.testing.assert_array_equal(new[[0, 2, 3]], p[[0, 2, 3]])
            assert_close(new[1], -0.1 / (0.7 ** 2 + eps))


class TestObjects:
    def test_path_sgd_object(self):
        opt = PathSGD(CHAIN, lr=0.1, curvature="kappa1", rule="raw", eps=0.5)
        p, grad = np.array([0.5, 2.0]), np.array([1.0, 1.0])
        np.testing.assert_array_equal(opt.step(p, grad),
                                      path_sgd_step(CHAIN, p, grad, 0.1, "kappa1", 0.5))
        assert repr(opt) == "PathSGD(lr=0.1, curvature='kappa1', rule='raw', eps=0.5)"

    def test_sgd_object(self):
        opt = SGD(lr=0.25)
        np.testing.assert_array_equal(opt.step([1.0, 2.0], [4.0, -4.0]), [0.0, 3.0])
        assert repr(opt) == "SGD(lr=0.25)"

    def test_read_only_not_mutated(self):
        p = np.array([0.5, 2.0])
        grad = np.array([1.0, 1.0])
        p.flags.writeable = False
        grad.flags.writeable = False
        for opt in (PathSGD(CHAIN, 0.1, rule="raw"), SGD(0.1)):
            new = opt.step(p, grad)
            assert new.flags.writeable and not np.shares_memory(new, p)
        np.testing.assert_array_equal(p, [0.5, 2.0])


class TestValidation:
    @pytest.mark.parametrize("kwargs, match", [
        (dict(p=[0.5]), r"p has shape \(1,\) but the graph has 2 parameters"),
        (dict(grad=[1.0, 1.0, 1.0]), r"grad has shape \(3,\)"),
        (dict(grad=[1.0, np.nan]), r"grad\[1\] = nan is not finite"),
        (dict(p=[np.inf, 1.0]), r"p\[0\] = inf is not finite"),
        (dict(lr=0.0), r"lr must be a finite number > 0"),
        (dict(lr=-1.0), r"lr must be"),
        (dict(lr=np.nan), r"lr must be"),
        (dict(lr="0.1"), r"lr must be"),
        (dict(eps=-1e-3), r"eps must be a finite number >= 0"),
        (dict(curvature="kappa2"), r"curvature must be one of \('kappa1', 'kappa'\)"),
        (dict(curvature=lambda g, p: np.ones(3)), r"shape \(3,\).*shape \(2,\)"),
        (dict(curvature=lambda g, p: -np.ones(2)), r"returned -1.0 for parameter 0"),
        (dict(curvature=lambda g, p: np.array([1.0, np.nan])), r"finite and >= 0"),
    ])
    def test_path_sgd_errors(self, kwargs, match):
        args = dict(p=[0.5, 2.0], grad=[1.0, 1.0], lr=0.1)
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            path_sgd_step(CHAIN, **args)

    def test_object_validates_at_construction(self):
        with pytest.raises(ValueError, match="lr"):
            PathSGD(CHAIN, lr=0)
        with pytest.raises(ValueError, match="curvature"):
            PathSGD(CHAIN, lr=0.1, curvature="exact")
        with pytest.raises(TypeError, match="SharedGraph"):
            PathSGD("graph", lr=0.1)
        with pytest.raises(ValueError, match="lr"):
            SGD(lr=-0.1)

    def test_sgd_shapes(self):
        with pytest.raises(ValueError, match="1-D"):
            sgd_step([[1.0]], [[1.0]], 0.1)
        with pytest.raises(ValueError, match=r"grad has shape \(1,\)"):
            sgd_step([1.0, 2.0], [1.0], 0.1)


def test_sgd_bound_form_and_keyword_graph():
    """SGD(g, lr) mirrors PathSGD(g, lr) (issue 4: one interface for comparisons)."""
    import pathgeom
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
    for opt in (pathgeom.SGD(g, 0.1), pathgeom.SGD(g, lr=0.1), pathgeom.SGD(0.1)):
        np.testing.assert_allclose(opt.step([0.5, 2.0], [1.0, 1.0]), [0.4, 1.9])
    bound = pathgeom.PathSGD(g=g, lr=0.1, curvature="kappa1", rule="raw")
    np.testing.assert_allclose(bound.step([0.5, 2.0], [1.0, 1.0]), [0.475, 1.6])


def test_negative_clip_is_rejected():
    from pathgeom.optim import clip_grad_norm
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(np.array([3.0, 4.0]), -1.0)
