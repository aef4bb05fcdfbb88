"""The performance kernels of issue 13 against the reference and the existing slow paths:
the RNN's fused squared-network time loops and blocked exact kappa2, and kappa2 spread
over a Dask cluster."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pathgeom
from pathgeom import reference
from pathgeom.constructors.rnn import RNN

from helpers import as_floats, assert_close
from strategies import graphs, params


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 9), hidden=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       n_in=st.integers(1, 3), n_out=st.integers(1, 2), outputs=st.sampled_from(["last", "all"]),
       bias=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_structured_rnn_equals_generic_engine(T, hidden, n_in, n_out, outputs, bias, seed):
    """The fused time loops (rnn_sq_sweep) and the blocked kappa2 (rnn_block_sums) give
    the generic engine's gamma2, kappa1, kappa2 on random RNNs, any depth."""
    net = pathgeom.rnn(n_in, hidden, n_out, T, outputs=outputs, bias=bias)
    p = net.init(np.random.default_rng(seed), "uniform", scale=0.9)
    ours = net.path_quantities(p)
    generic = pathgeom.path_quantities(net.graph, p)
    assert_close(ours.gamma2, generic.gamma2, 1e-12)
    assert_close(ours.kappa1, generic.kappa1, 1e-12, scale=1e-300)
    assert_close(ours.kappa2, generic.kappa2, 1e-11, scale=1e-300)
    assert_close(net.gamma2(p), generic.gamma2, 1e-12)


def test_structured_rnn_equals_reference():
    net = pathgeom.rnn(1, 2, 1, 4)
    p = net.init(np.random.default_rng(3), "uniform", scale=0.8)
    r = net.path_quantities(p)
    assert_close(r.gamma2, float(reference.gamma2(net.graph, p)), 1e-12)
    assert_close(r.kappa1, as_floats(reference.kappa1(net.graph, p)), 1e-12)
    assert_close(r.kappa2, as_floats(reference.kappa2(net.graph, p)), 1e-12, scale=1e-300)


@settings(max_examples=60, deadline=None)
@given(T=st.integers(3, 60), H=st.integers(1, 9), b=st.integers(1, 70),
       seed=st.integers(0, 2 ** 32 - 1), spread=st.sampled_from([0.0, 3.0, 30.0]))
def test_blocked_kappa2_equals_stepwise_recursion(T, H, b, seed, spread):
    """Every block length, any T (last block partial), weights over many decades."""
    rng = np.random.default_rng(seed)
    R = 10.0 ** rng.uniform(-spread, 0, (H, H)) * rng.random((H, H)) / H
    h = 10.0 ** rng.uniform(-spread, spread, (T, H))
    d = 10.0 ** rng.uniform(-spread, spread, (T, H))
    want = RNN._kappa2_rec(R, h, d, "stepwise")
    got = RNN._kappa2_blocked(R, h, d, min(b, T - 2))
    assert_close(got, want, 1e-12, scale=1e-300)
    assert_close(RNN._kappa2_rec(R, h, d, "recursive"), want, 1e-12, scale=1e-300)


def test_stepwise_method_is_accepted_and_others_refused():
    net = pathgeom.rnn(1, 3, 1, 6)
    p = net.init(np.random.default_rng(0), "uniform", scale=0.5)
    assert_close(net.path_quantities(p, method="stepwise").kappa, net.path_quantities(p).kappa)
    with pytest.raises(ValueError, match="method must be"):
        net.path_quantities(p, method="blocks")


# --------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_kappa2_on_dask_equals_reference(client, data):
    g = data.draw(graphs(max_nodes=8, max_edges=16))
    p = np.array(data.draw(params(g.n_params)))
    r = pathgeom.path_quantities(g, p, client=client)
    assert_close(r.kappa2, as_floats(reference.kappa2(g, p)), 1e-12, scale=1e-300)
    assert_close(pathgeom.kappa2(g, p, client=client), r.kappa2, 0.0)


def test_kappa2_on_dask_equals_local_on_rnn_graph(client):
    net = pathgeom.rnn(1, 9, 1, 20)  # 81 recurrent parameters: two blocks of 64
    p = net.init(np.random.default_rng(1), "uniform", scale=0.6)
    local = pathgeom.path_quantities(net.graph, p)
    for _ in range(2):  # the second call reuses the graph broadcast to the workers
        remote = pathgeom.path_quantities(net.graph, p, client=client)
        assert_close(remote.kappa2, local.kappa2, 0.0)
        assert remote.gamma2 == local.gamma2
    assert any(k[0] == "dask_graph" for k in net.graph._cache)


def test_kappa2_on_dask_worker_processes():
    distributed = pytest.importorskip("distributed")
    net = pathgeom.rnn(1, 5, 1, 8)
    p = net.init(np.random.default_rng(2), "uniform", scale=0.6)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        remote = pathgeom.path_quantities(net.graph, p, client=c)
    assert_close(remote.kappa2, pathgeom.path_quantities(net.graph, p).kappa2, 0.0)


def test_core_does_not_import_dask():
    import subprocess
    import sys
    code = ("import sys, pathgeom, numpy as np; g = pathgeom.rnn(1, 2, 1, 3).graph; "
            "pathgeom.path_quantities(g, np.ones(g.n_params)); "
            "print(any(m == 'dask' or m.startswith(('dask.', 'distributed')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


# --------------------------------------------------------------------------- streamed sweeps


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_streamed_sweeps_equal_reference(data):
    """sq_gather + sq_forward_w / sq_backward_w (used from STREAM_PARAMS parameters on)
    against the reference, with the threshold lowered so that every graph takes them."""
    from pathgeom import geometry
    g = data.draw(graphs(max_nodes=8, max_edges=16))
    p = np.array(data.draw(params(g.n_params)))
    saved = geometry.STREAM_PARAMS
    geometry.STREAM_PARAMS = 0
    try:
        r = pathgeom.path_quantities(g, p, with_kappa2=False)
    finally:
        geometry.STREAM_PARAMS = saved
    assert_close(r.gamma2, float(reference.gamma2(g, p)), 1e-12, scale=1e-300)
    assert_close(r.kappa1, as_floats(reference.kappa1(g, p)), 1e-12, scale=1e-300)


def test_streamed_sweeps_equal_gathering_sweeps_on_a_large_graph():
    from pathgeom import geometry
    rng = np.random.default_rng(0)
    n, m = 3000, geometry.STREAM_PARAMS + 5
    dst = np.repeat(np.arange(100, n), 20)
    src = (rng.random(dst.size) * np.minimum(dst, n - 50)).astype(np.int64)
    par = rng.integers(0, m, dst.size)
    g = pathgeom.SharedGraph.from_arrays(src, dst, par, np.arange(100), np.arange(n - 50, n),
                                         n_nodes=n, n_params=m)
    p = rng.uniform(-0.3, 0.3, m)
    streamed = pathgeom.path_quantities(g, p, with_kappa2=False)
    saved = geometry.STREAM_PARAMS
    geometry.STREAM_PARAMS = 1 << 62
    try:
        gathered = pathgeom.path_quantities(g, p, with_kappa2=False)
    finally:
        geometry.STREAM_PARAMS = saved
    assert streamed.gamma2 == gathered.gamma2
    assert_close(streamed.kappa1, gathered.kappa1, 1e-13, scale=1e-300)
