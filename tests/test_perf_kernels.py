"""The performance kernels of issue 13 against the reference and the existing slow paths:
the RNN's fused squared-network time loops and blocked exact kappa2, and kappa2 spread
over a Dask cluster."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

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


# --------------------------------------------------------------------------- blocked sweeps


@pytest.fixture(params=[(14, 1 << 16), (0, 1), (1, 2), (2, 3)],
                ids=["default", "shift0-width1", "shift1-width2", "shift2-width3"])
def force_blocks(request):
    """Every graph built under this fixture gets the blocked edge groups (small blocks
    and segments exercise the group cutting)."""
    from pathgeom import _compiled
    shift, width = request.param
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_compiled, "BLOCK_PARAMS", 0)
        mp.setattr(_compiled, "BLOCK_SCATTER", -1.0)
        mp.setattr(_compiled, "BLOCK_REUSE", 0)
        mp.setattr(_compiled, "BLOCK_SHIFT", shift)
        mp.setattr(_compiled, "BLOCK_WIDTH", width)
        yield shift, width


def _unblocked(g):
    """The same graph with the CSR sweeps (blocked arrays emptied)."""
    c = g.compiled
    empty = c._replace(blk_ptr=np.zeros(1, np.int64), blk_node=c.blk_node[:0],
                       blk_param=c.blk_param[:0], blk_src=c.blk_src[:0],
                       blk_key=c.blk_key[:0])
    return pathgeom.SharedGraph._make(empty, g._order, g._labels)


def _decode_blocks(c):
    """(head, src, param) of every blocked edge, and the group of each."""
    ptr = c.blk_ptr
    group = np.repeat(np.arange(ptr.size - 1), np.diff(ptr))
    key = c.blk_key.astype(np.int64)
    head = c.blk_node[group] + (key >> 16)
    par = c.blk_param[group] + (key & 0xFFFF)
    return head, c.blk_src.astype(np.int64), par, group


@settings(max_examples=60, deadline=None,  # the fixture only patches constants
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_blocked_sweeps_equal_reference(force_blocks, data):
    """The blocked sweeps (sq_delta_blocked, sq_forward_kappa1_blocked,
    sq_forward_blocked) against the reference on random graphs (parallel edges, dead
    nodes, unused parameters), and against the CSR sweeps of the same graph."""
    g = data.draw(graphs(max_nodes=8, max_edges=16))
    p = np.array(data.draw(params(g.n_params)))
    c = g.compiled
    kept = c.live[np.repeat(np.arange(g.n_nodes), np.diff(c.indptr))] & c.reached[c.src]
    assert (c.blk_ptr.size > 1) == bool(kept.any())
    r = pathgeom.path_quantities(g, p)
    assert_close(r.gamma2, float(reference.gamma2(g, p)), 1e-12, scale=1e-300)
    assert_close(r.kappa1, as_floats(reference.kappa1(g, p)), 1e-12, scale=1e-300)
    assert_close(r.kappa2, as_floats(reference.kappa2(g, p)), 1e-12, scale=1e-300)
    assert_close(r.kappa, as_floats(reference.kappa(g, p)), 1e-12, scale=1e-300)
    assert pathgeom.gamma2(g, p) == r.gamma2           # h bit for bit in both sweeps
    np.testing.assert_array_equal(pathgeom.kappa1(g, p), r.kappa1)
    csr = _unblocked(g)
    for got, want in zip(pathgeom.squared_values(g, p), pathgeom.squared_values(csr, p)):
        assert_close(got, want, 1e-12, scale=1e-300)
    assert_close(r.kappa1, pathgeom.kappa1(csr, p), 1e-12, scale=1e-300)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_build_blocks_layout(force_blocks, data):
    """Every edge from a reached node into a live node once, grouped by (segment of one
    depth and at most BLOCK_WIDTH nodes, block of 2**BLOCK_SHIFT parameters), sorted by
    parameter within a group; the keys decode to the edge."""
    shift, width = force_blocks
    g = data.draw(graphs(max_nodes=10, max_edges=20, max_used_params=6))
    c = g.compiled
    heads = np.repeat(np.arange(g.n_nodes), np.diff(c.indptr))
    kept = c.live[heads] & c.reached[c.src]
    want = sorted(zip(heads[kept].tolist(), c.src[kept].tolist(), c.par[kept].tolist()))
    head, src, par, group = _decode_blocks(c)
    assert sorted(zip(head.tolist(), src.tolist(), par.tolist())) == want
    assert c.blk_src.dtype == np.int32 and c.blk_key.dtype == np.uint32
    for k in range(c.blk_ptr.size - 1):
        sl = slice(c.blk_ptr[k], c.blk_ptr[k + 1])
        assert sl.stop > sl.start
        assert np.all(np.diff(par[sl]) >= 0)
        assert np.all(par[sl] >> shift == c.blk_param[k] >> shift)
        assert c.blk_param[k] % (1 << shift) == 0
        seg = np.arange(c.blk_node[k], head[sl].max() + 1)
        assert np.all(c.depth[seg] == c.depth[c.blk_node[k]]) and seg.size <= width
        assert np.all(c.depth[src[sl]] < c.depth[c.blk_node[k]])
    # groups in sweep order: segments by first node, then blocks
    order = list(zip(c.blk_node.tolist(), c.blk_param.tolist()))
    assert order == sorted(order) and len(set(order)) == len(order)


@pytest.mark.parametrize("width, fan_in", [(30, 20), (2000, 12)])
def test_build_blocks_sorts_long_segments(width, fan_in, monkeypatch):
    """Segments of hundreds and of tens of thousands of edges (the radix sort with 8- and
    11-bit digits): exactly the order (segment, parameter, CSR position)."""
    from pathgeom import _compiled
    monkeypatch.setattr(_compiled, "BLOCK_REUSE", 0)   # narrow levels too
    rng = np.random.default_rng(width)
    m = 3 * _compiled.BLOCK_PARAMS + 7
    layers = 4
    dst = np.repeat(np.arange(width, width * (layers + 1)), fan_in)
    src = (rng.random(dst.size) * (dst // width) * width).astype(np.int64)
    par = rng.integers(0, m, dst.size)
    g = pathgeom.SharedGraph.from_arrays(src, dst, par, np.arange(width),
                                         np.arange(layers * width, (layers + 1) * width),
                                         n_params=m)
    c = g.compiled
    assert c.blk_ptr.size > 1
    heads = np.repeat(np.arange(g.n_nodes), np.diff(c.indptr))
    kept = np.flatnonzero(c.live[heads] & c.reached[c.src])
    order = kept[np.lexsort((kept, c.par[kept], c.depth[heads[kept]]))]
    head, bsrc, bpar, _ = _decode_blocks(c)
    np.testing.assert_array_equal(head, heads[order])
    np.testing.assert_array_equal(bsrc, c.src[order])
    np.testing.assert_array_equal(bpar, c.par[order])
    p = rng.uniform(-0.5, 0.5, m)
    r = pathgeom.path_quantities(g, p, with_kappa2=False)
    csr = pathgeom.path_quantities(_unblocked(g), p, with_kappa2=False)
    assert_close(r.gamma2, csr.gamma2, 1e-13)
    assert_close(r.kappa1, csr.kappa1, 1e-13, scale=1e-300)


def test_blocked_overflow_cases_match_the_csr_sweeps(force_blocks):
    """The overflow regressions (tests/test_passes.py) on blocked graphs: same results,
    same errors, dead branches harmless."""
    from pathgeom import PathOverflowError
    nodes = ["x"] + [f"v{k}" for k in range(200)] + ["y"]
    chain = pathgeom.SharedGraph.from_edges([(a, b, 0) for a, b in zip(nodes, nodes[1:])],
                                            ["x"], ["y"])
    for fn in (pathgeom.gamma2, pathgeom.kappa1, pathgeom.kappa, pathgeom.path_quantities):
        with pytest.raises(PathOverflowError, match=r"overflow.*node 'v15\d'"):
            fn(chain, [10.0])
    g = pathgeom.SharedGraph.from_edges([("x", "h1", 0), ("h1", "h2", 1), ("h2", "y", 2)],
                                        ["x"], ["y"])
    assert pathgeom.gamma2(g, [1e100, 1e-150, 1e100]) == pytest.approx(1e100)
    with pytest.raises(PathOverflowError, match=r"kappa1\[1\] overflowed"):
        pathgeom.kappa1(g, [1e100, 1e-150, 1e100])
    for dead in (["x"] + [f"d{k}" for k in range(400)],          # reaches no output
                 [f"d{k}" for k in range(400)] + ["y"]):         # no input reaches it
        edges = [(a, b, 0) for a, b in zip(dead, dead[1:])] + [("x", "y", 1)]
        g = pathgeom.SharedGraph.from_edges(edges, ["x"], ["y"])
        r = pathgeom.path_quantities(g, [10.0, 2.0])
        assert r.gamma2 == 4.0
        np.testing.assert_array_equal(r.kappa, [0.0, 1.0])
        h, delta = pathgeom.squared_values(g, [10.0, 2.0])
        assert np.isfinite(delta).all() and np.isfinite(h).all()
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 2),
                                         ("x", "y", 3)], ["x"], ["y"])
    r = pathgeom.path_quantities(g, np.array([0.0, 1e200, 0.0, 2.0]))
    assert r.gamma2 == 4.0
    np.testing.assert_array_equal(r.kappa, [0.0, 0.0, 0.0, 1.0])
    with pytest.raises(PathOverflowError):
        pathgeom.path_quantities(g, np.array([1.0, 1e200, 1.0, 2.0]))


def _layered_graph(rng, n_params, width, layers, fan_in=10):
    """Layers of ``width`` nodes, each drawing ``fan_in`` sources from the layer below, on
    parameters drawn at random."""
    dst = np.repeat(np.arange(width, width * (layers + 1)), fan_in)
    src = dst - width + rng.integers(0, width, dst.size) - dst % width
    par = rng.integers(0, n_params, dst.size)
    return pathgeom.SharedGraph.from_arrays(src, dst, par, np.arange(width),
                                            np.arange(layers * width, (layers + 1) * width),
                                            n_params=n_params)


def test_blocked_groups_where_parameters_are_many_and_scattered():
    """Built for many parameters spread at random over wide levels (and then equal to the
    CSR sweeps); not for the unrolled RNN, few parameters, many parameters read in order,
    or narrow levels."""
    import pickle
    from pathgeom import _compiled
    rng = np.random.default_rng(0)
    m = _compiled.BLOCK_PARAMS + 5
    g = _layered_graph(rng, m, 20_000, 3)
    assert g.compiled.blk_ptr.size > 1
    assert g.compiled.blk_src.size == np.count_nonzero(
        g.compiled.live[np.repeat(np.arange(g.n_nodes), np.diff(g.compiled.indptr))]
        & g.compiled.reached[g.compiled.src])
    p = rng.uniform(-0.3, 0.3, m)
    blocked = pathgeom.path_quantities(g, p, with_kappa2=False)
    csr = pathgeom.path_quantities(_unblocked(g), p, with_kappa2=False)
    assert_close(blocked.gamma2, csr.gamma2, 1e-13)
    assert_close(blocked.kappa1, csr.kappa1, 1e-13, scale=1e-300)
    assert pathgeom.gamma2(g, p) == blocked.gamma2
    back = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(back.compiled.blk_key, g.compiled.blk_key)
    np.testing.assert_array_equal(pathgeom.kappa1(back, p), blocked.kappa1)
    assert _layered_graph(rng, _compiled.BLOCK_PARAMS - 1, 20_000, 3).compiled.blk_ptr.size == 1
    assert _layered_graph(rng, m, 100, 600).compiled.blk_ptr.size == 1    # 1,000 edges a level
    assert pathgeom.rnn(1, 16, 1, 10).graph.compiled.blk_ptr.size == 1
    # a dense layer whose parameters follow the incoming edges: the CSR sweeps read q in order
    k = 400
    src = np.tile(np.arange(k), k)
    dst = np.repeat(np.arange(k, 2 * k), k)
    dense = pathgeom.SharedGraph.from_arrays(src, dst, np.arange(k * k), np.arange(k),
                                             np.arange(k, 2 * k))
    assert dense.n_params >= _compiled.BLOCK_PARAMS and dense.compiled.blk_ptr.size == 1


def test_record_pickled_before_the_blocked_arrays_loads():
    """A compiled record of the 13 fields it had before the blocked groups unpickles with
    empty groups (the CSR sweeps)."""
    from pathgeom.graph import _unpickle
    g = pathgeom.rnn(1, 3, 1, 4).graph
    old = _unpickle(tuple(g.compiled)[:13], g._order, g._labels)
    assert old.compiled.blk_ptr.tolist() == [0] and old.compiled.blk_key.size == 0
    p = np.random.default_rng(0).uniform(-0.5, 0.5, g.n_params)
    want = pathgeom.path_quantities(g, p)
    got = pathgeom.path_quantities(old, p)
    assert got.gamma2 == want.gamma2
    np.testing.assert_array_equal(got.kappa, want.kappa)
