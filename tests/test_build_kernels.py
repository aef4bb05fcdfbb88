"""The graph-building kernels against plain networkx/Python references: longest-path depth
from the sources, longest distance to a sink, reachability from the inputs and to the
outputs, and the per-parameter extents behind the kappa2 depth certificate."""

import networkx as nx
import numpy as np
from hypothesis import given

from pathgeom import _kernels

from strategies import graphs


def _digraph(g):
    src, dst, par = g.edges()
    D = nx.MultiDiGraph()
    D.add_nodes_from(range(g.n_nodes))
    D.add_edges_from(zip(src.tolist(), dst.tolist()))
    return D, src, dst, par


def _longest_from_sources(D):
    depth = {}
    for v in nx.topological_sort(D):
        depth[v] = max((depth[u] + 1 for u in D.predecessors(v)), default=0)
    return np.array([depth[v] for v in range(D.number_of_nodes())])


@given(graphs())
def test_depth_is_the_longest_path_from_a_source(g):
    D, src, dst, _ = _digraph(g)
    np.testing.assert_array_equal(g.compiled.depth, _longest_from_sources(D))
    # the property the kappa2 certificate relies on: depth strictly increases on every edge
    assert (g.compiled.depth[dst] > g.compiled.depth[src]).all()


@given(graphs())
def test_sink_depth_is_the_longest_path_to_a_sink(g):
    D, src, dst, _ = _digraph(g)
    c = g.compiled
    expected = _longest_from_sources(D.reverse(copy=True))
    np.testing.assert_array_equal(_kernels.sink_depth(c.optr, c.dst), expected)


@given(graphs())
def test_reachability(g):
    D, _, _, _ = _digraph(g)
    c = g.compiled
    outputs, inputs = set(c.outputs.tolist()), set(c.inputs.tolist())
    for v in range(g.n_nodes):
        assert bool(c.live[v]) == bool(({v} | nx.descendants(D, v)) & outputs)
        assert bool(c.reached[v]) == bool(({v} | nx.ancestors(D, v)) & inputs)


@given(graphs())
def test_param_extents(g):
    D, src, dst, par = _digraph(g)
    c = g.compiled
    sdepth = _kernels.sink_depth(c.optr, c.dst)
    out = _kernels.param_extents(c.indptr, c.src, c.par, c.depth, sdepth, g.n_params)
    big = np.iinfo(np.int64).max
    for i in range(g.n_params):
        e = np.flatnonzero(par == i)
        u, v = src[e], dst[e]
        expected = [e.size,
                    c.depth[u].max() if e.size else -1, c.depth[v].min() if e.size else big,
                    sdepth[v].max() if e.size else -1, sdepth[u].min() if e.size else big,
                    v.min() if e.size else big, v.max() if e.size else -1]
        assert out[:, i].tolist() == [int(x) for x in expected]
