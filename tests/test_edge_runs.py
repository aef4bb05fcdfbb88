"""Runs of edges: the squared-network sweeps over runs (contiguous sources and parameters)
against the exact reference and against the CSR sweeps of the same graph."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pathgeom
from pathgeom import _compiled, reference

from helpers import as_floats, assert_close
from strategies import general_graphs, graphs, params


@pytest.fixture
def force_runs():
    """Every graph built under this fixture gets runs, however short."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_compiled, "RUN_MIN", 0)
        yield


def _without_runs(g):
    c = g.compiled
    empty = c._replace(run_ptr=np.zeros(1, np.int64), run_src=c.run_src[:0],
                       run_par=c.run_par[:0], run_len=c.run_len[:0])
    return pathgeom.SharedGraph._make(empty, g._order, g._labels)


def _decode(c):
    """(head, src, param) of every edge the runs hold, in run order."""
    heads, srcs, pars = [], [], []
    for v in range(c.run_ptr.size - 1):
        for r in range(c.run_ptr[v], c.run_ptr[v + 1]):
            n = int(c.run_len[r])
            heads += [v] * n
            srcs += list(range(c.run_src[r], c.run_src[r] + n))
            pars += list(range(c.run_par[r], c.run_par[r] + n))
    return np.array(heads, dtype=np.int64), np.array(srcs, dtype=np.int64), \
        np.array(pars, dtype=np.int64)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_run_sweeps_equal_reference(force_runs, data):
    g = data.draw(st.one_of(graphs(max_nodes=8, max_edges=16), general_graphs()))
    p = np.array(data.draw(params(g.n_params)))
    c = g.compiled
    assert (c.run_ptr.size > 1) == (g.n_edges > 0)
    head, src, par = _decode(c)          # every edge once, as the incoming CSR has it
    want_head = np.repeat(np.arange(g.n_nodes), np.diff(c.indptr))
    assert np.array_equal(head, want_head) and np.array_equal(src, c.src)
    assert np.array_equal(par, c.par)
    assert np.all(c.run_len >= 1)
    r = pathgeom.path_quantities(g, p)
    assert_close(r.gamma2, float(reference.gamma2(g, p)), 1e-12, scale=1e-300)
    assert_close(r.kappa1, as_floats(reference.kappa1(g, p)), 1e-12, scale=1e-300)
    assert_close(r.kappa, as_floats(reference.kappa(g, p)), 1e-12, scale=1e-300)
    assert pathgeom.gamma2(g, p) == r.gamma2           # h bit for bit in both sweeps
    csr = _without_runs(g)
    for got, want in zip(pathgeom.squared_values(g, p), pathgeom.squared_values(csr, p)):
        assert_close(got, want, 1e-12, scale=1e-300)


@pytest.mark.parametrize("make", [lambda: pathgeom.rnn(2, 12, 3, 9, bias=True),
                                  lambda: pathgeom.cnn((2, 8, 7), [pathgeom.Conv2d(3, 5)], 2),
                                  lambda: pathgeom.mlp([5, 4, 3])],
                         ids=["rnn", "cnn", "mlp"])
def test_structured_graphs_use_runs(make):
    """Unrolled RNNs, convolutions and dense layers come in runs (at least RUN_MIN edges
    per run), and the sweeps over them equal the CSR sweeps and the dense twins."""
    net = make()
    g = net.graph
    c = g.compiled
    assert c.run_ptr.size == g.n_nodes + 1
    assert g.n_edges >= _compiled.RUN_MIN * c.run_src.size
    p = net.init(np.random.default_rng(1))
    r = pathgeom.path_quantities(g, p)
    csr = pathgeom.path_quantities(_without_runs(g), p)
    assert_close(r.gamma2, csr.gamma2, 1e-13)
    assert_close(r.kappa1, csr.kappa1, 1e-13, scale=1e-300)
    assert_close(r.kappa, csr.kappa, 1e-13, scale=1e-300)


def test_random_parameters_keep_the_csr():
    """A graph whose consecutive edges do not share runs keeps the CSR sweeps."""
    rng = np.random.default_rng(0)
    src = rng.integers(0, 50, 400)
    dst = 50 + rng.integers(0, 50, 400)
    g = pathgeom.SharedGraph.from_arrays(src, dst, rng.permutation(400), np.arange(50),
                                         np.arange(50, 100))
    assert g.compiled.run_ptr.size == 1
