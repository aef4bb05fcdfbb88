"""Fixed-weight edges and identity / max neurons: the engine against the exact reference.

Graphs come from ``strategies.general_graphs``: random DAGs with sharing, parallel edges,
dead nodes and unused parameters, where some edges carry a fixed weight (0 included) and
internal nodes are ReLU, identity or max neurons.
"""

import math
import pickle
from fractions import Fraction

import networkx as nx
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import pathgeom
from pathgeom import GraphError, SharedGraph, fixed, reference
from pathgeom.edgelist import format_edge_list, parse_edge_list

from helpers import as_floats, assert_close
from strategies import general_graphs, params


@st.composite
def general_case(draw, batch=3):
    g = draw(general_graphs())
    p = draw(params(g.n_params))
    X = draw(st.lists(params(g.n_inputs, lo=-3.0, hi=3.0), min_size=batch, max_size=batch))
    return g, p, np.array(X).reshape(batch, g.n_inputs)


def _max_margin(g, p, x):
    """The smallest relative gap between a max node's largest and second-largest distinct
    incoming value, exactly (inf without max nodes): near ties make float64 and exact
    arithmetic select different edges."""
    w = reference._extended(g, [Fraction(v) for v in p])
    value, _, _ = reference._activations(g, w, [Fraction(v) for v in x])
    edges = reference._edge_list(g)
    margin = math.inf
    for v, kind in enumerate(g.kinds):
        if kind != "max":
            continue
        vals = sorted({w[i] * value[u] for u, vv, i in edges if vv == v}, reverse=True)
        if len(vals) >= 2 and vals[0] != 0:
            margin = min(margin, float(abs(vals[0] - vals[1]) / abs(vals[0])))
    return margin


class TestPassesAgainstReference:
    @given(general_case())
    def test_forward(self, case):
        g, p, X = case
        Y = g.forward(p, X)
        for b in range(X.shape[0]):
            assert_close(Y[b], as_floats(reference.forward(g, p, X[b])), rtol=1e-12,
                         scale=1e-12)

    @given(general_case(), st.data())
    def test_backward(self, case, data):
        g, p, X = case
        assume(all(_max_margin(g, p, x) > 1e-9 for x in X))
        dY = np.array(data.draw(st.lists(params(g.n_outputs), min_size=X.shape[0],
                                         max_size=X.shape[0]))).reshape(X.shape[0], -1)
        grad = g.backward(p, X, dY)
        want = sum(np.array(as_floats(reference.backward(g, p, X[b], dY[b])))
                   for b in range(X.shape[0]))
        assert_close(grad, np.asarray(want, dtype=float).reshape(-1), rtol=1e-10, scale=1e-10)

    @given(general_case())
    def test_path_quantities(self, case):
        g, p, _ = case
        r = pathgeom.path_quantities(g, p)
        assert_close(r.gamma2, float(reference.gamma2(g, p)), rtol=1e-12)
        assert_close(r.kappa1, as_floats(reference.kappa1(g, p)), rtol=1e-12)
        assert_close(r.kappa2, as_floats(reference.kappa2(g, p)), rtol=1e-12)
        assert_close(r.kappa, as_floats(reference.kappa(g, p)), rtol=1e-12)
        assert_close(r.kappa, as_floats(reference.kappa_dag(g, p)), rtol=1e-12)
        assert r.kappa1.shape == (g.n_params,)

    @given(general_case(), st.sampled_from([1, 2, 3, 1.5, 4]))
    def test_path_norm(self, case, q):
        g, p, _ = case
        want = float(reference.path_norm_power(g, p, q)) ** (1.0 / q)
        assert_close(pathgeom.path_norm(g, p, q=q), want, rtol=1e-12)


class TestSemantics:
    def test_max_neuron_passes_every_path(self):
        """The path norm (and gamma^2, kappa) of a network with max neurons equals that of
        the same network with identity neurons in their place; forward does not."""
        edges = [("x1", "m", fixed(1.0)), ("x2", "m", fixed(1.0)), ("m", "h", 0),
                 ("h", "y", 1), ("x1", "h", 2)]
        gm = SharedGraph.from_edges(edges, ["x1", "x2"], ["y"], node_kinds={"m": "max"})
        gl = SharedGraph.from_edges(edges, ["x1", "x2"], ["y"], node_kinds={"m": "linear"})
        p = np.array([1.5, -2.0, 0.5])
        for q in (1, 2, 4):
            assert pathgeom.path_norm(gm, p, q) == pathgeom.path_norm(gl, p, q)
        assert_close(pathgeom.kappa(gm, p), pathgeom.kappa(gl, p), rtol=0)
        # h = relu(1.5 max(x1, x2) + 0.5 x1), y = -2 h
        assert gm.forward(p, [1.0, 3.0])[0] == -2.0 * (1.5 * 3.0 + 0.5)
        assert gl.forward(p, [1.0, 3.0])[0] == -2.0 * (1.5 * 4.0 + 0.5)

    def test_max_gradient_goes_to_first_maximum(self):
        """A tie sends the gradient to the first source in node order, as PyTorch does."""
        g = SharedGraph.from_edges([("a", "m", fixed(1.0)), ("b", "m", fixed(1.0)),
                                    ("x", "a", 0), ("x", "b", 1), ("m", "y", 2)],
                                   ["x"], ["y"], node_kinds={"m": "max"})
        assert g.nodes.index("a") < g.nodes.index("b")
        grad = g.backward([1.0, 1.0, 1.0], [2.0], [1.0])
        assert grad.tolist() == [2.0, 0.0, 2.0]
        grad = g.backward([1.0, 3.0, 1.0], [2.0], [1.0])
        assert grad.tolist() == [0.0, 2.0, 6.0]

    def test_fixed_edge_has_no_parameter(self):
        g = SharedGraph.from_edges([("x", "y", 0), ("x", "y", fixed(3.0))], ["x"], ["y"])
        assert g.n_params == 1 and g.n_fixed_edges == 1
        assert g.backward([2.0], [5.0], [1.0]).tolist() == [5.0]
        assert g.edges()[2].tolist() == [-1, 0] or g.edges()[2].tolist() == [0, -1]
        r = pathgeom.path_quantities(g, [2.0])
        assert (r.gamma2, r.kappa1.tolist(), r.kappa.tolist()) == (13.0, [1.0], [1.0])

    def test_lemma1_by_finite_differences(self):
        """kappa = 1/2 d^2 gamma^2 / dp_i^2 with fixed edges and tied weights on a path."""
        g = SharedGraph.from_edges([("x", "a", 0), ("a", "b", 0), ("b", "y", 1),
                                    ("x", "b", fixed(-0.5)), ("a", "y", fixed(2.0))],
                                   ["x"], ["y"], node_kinds={"a": "linear"})
        p = np.array([0.7, -1.3])
        k = pathgeom.kappa(g, p)
        for i in range(2):
            e = np.zeros(2)
            e[i] = 1e-3
            fd = (pathgeom.gamma2(g, p + e) - 2 * pathgeom.gamma2(g, p)
                  + pathgeom.gamma2(g, p - e)) / (2 * 1e-6)
            assert_close(k[i], fd, rtol=1e-5)
        assert pathgeom.kappa2(g, p)[0] > 0


class TestRescaling:
    def _net(self):
        # one residual stream s1 -> s2 around a block with inner units h1, h2, a max pool
        edges = [("x", "s1", 0), ("b", "s1", 1),
                 ("s1", "h1", 2), ("s1", "h2", 3), ("b", "h1", 4), ("b", "h2", 5),
                 ("h1", "s2", 6), ("h2", "s2", 7), ("s1", "s2", fixed(1.0)),
                 ("s2", "m", fixed(1.0)), ("s1", "m", fixed(1.0)), ("m", "y", 8),
                 ("b", "y", fixed(0.0))]
        return SharedGraph.from_edges(edges, ["x", "b"], ["y"],
                                      node_kinds={"s2": "linear", "m": "max"})

    def test_group_dimension_by_hand(self):
        """s1, s2 and m are tied by fixed edges of weight 1 (one beta); h1, h2 free: 3."""
        g = self._net()
        G = pathgeom.rescaling_group(g)
        assert G.dim == 3
        B = G.basis
        idx = [g.index(v) for v in ("s1", "s2", "m")]
        assert np.all(B[:, idx] == B[:, idx[:1]])

    @given(st.integers(0, 2**32 - 1))
    def test_rescaling_keeps_function_and_fixed_weights(self, seed):
        g = self._net()
        rng = np.random.default_rng(seed)
        p = rng.uniform(-1, 1, g.n_params)
        beta = pathgeom.rescaling_group(g).sample(rng, scale=1.0)
        p2 = pathgeom.rescale(g, p, beta)
        X = rng.uniform(-1, 1, (4, 2))
        # each rescaled weight carries a rounding of beta_v / beta_u: products of a few of
        # them agree to a few hundred ulps, not to the last bit
        assert_close(g.forward(p2, X), g.forward(p, X), rtol=1e-10, scale=1e-12)
        assert_close(pathgeom.gamma2(g, p2), pathgeom.gamma2(g, p), rtol=1e-10)
        for q in (1, 4):
            assert_close(pathgeom.path_norm(g, p2, q), pathgeom.path_norm(g, p, q), rtol=1e-10)
        fw = g.fixed_weights()
        w2 = g.edge_weights(p2)
        fixed_edges = ~np.isnan(fw)
        assert np.array_equal(w2[fixed_edges], fw[fixed_edges])

    def test_unfeasible_beta_names_the_fixed_edge(self):
        g = self._net()
        beta = np.ones(g.n_nodes)
        beta[g.index("s2")] = 2.0
        with pytest.raises(ValueError, match="fixed edge 's1' -> 's2'"):
            pathgeom.rescale(g, np.ones(g.n_params), beta)


class TestRegressions:
    def test_backward_with_fixed_edges_and_cancelling_batch(self):
        """The exact second pass of the backward kernel (a gradient that cancels) must
        skip the fixed weights' pseudo-parameters (it once wrote past its arrays)."""
        F = 50
        edges = ([("x", "y", 0)] + [("x", f"a{j}", fixed(1.0 + j)) for j in range(F)]
                 + [(f"a{j}", "y", 0) for j in range(F)])
        g = SharedGraph.from_edges(edges, ["x"], ["y"])
        for _ in range(5):
            assert g.backward([1.0], [[1.0], [1.0]], [[1.0], [-1.0]]).tolist() == [0.0]
        want = float(reference.backward(g, [1.0], [1.0], [1.0])[0])
        assert g.backward([1.0], [[1.0], [1.0]], [[1.0], [1.0]]).tolist() == [2 * want]

    @pytest.mark.parametrize("q", [1, 3, 2.5, 4])
    def test_path_norm_through_underflow(self, q):
        """A |w|**q below float64 on a path whose product is representable."""
        g = SharedGraph.from_edges([("x", "h", 0), ("h", "y", 1)], ["x"], ["y"])
        assert_close(pathgeom.path_norm(g, [1e-110, 1e110], q=q), 1.0, rtol=1e-13)
        g = SharedGraph.from_edges([("x", "h", fixed(1e-110)), ("h", "y", 0)], ["x"], ["y"])
        assert_close(pathgeom.path_norm(g, [1e110], q=q), 1.0, rtol=1e-13)
        tied = SharedGraph.from_edges([("x", "h", 0), ("h", "y", 0)], ["x"], ["y"])
        assert_close(pathgeom.path_norm(tied, [1e-60], q=q), 1e-120, rtol=1e-12)


class TestRoundTrips:
    @given(general_graphs(), st.data())
    def test_networkx_edge_list_and_pickle(self, g, data):
        assert SharedGraph.from_networkx(g.to_networkx()) == g
        assert pickle.loads(pickle.dumps(g)) == g
        name = {x: f"n{k}" for k, x in enumerate(g.nodes)}
        h = SharedGraph.from_networkx(nx.relabel_nodes(g.to_networkx(), name),
                                      inputs=[name[x] for x in g.inputs],
                                      outputs=[name[x] for x in g.outputs])
        try:
            text = format_edge_list(h)
        except ValueError:     # isolated nodes: the format cannot hold them
            return
        back = parse_edge_list(text)
        assert format_edge_list(back) == format_edge_list(parse_edge_list(format_edge_list(back)))
        assert dict(zip(back.nodes, back.kinds)) == dict(zip(h.nodes, h.kinds))
        p = data.draw(params(g.n_params))
        assert pathgeom.gamma2(back, p) == pathgeom.gamma2(h, p)
        X = np.linspace(-1, 1, 2 * g.n_inputs).reshape(2, g.n_inputs)
        assert_close(back.forward(p, X), h.forward(p, X), rtol=1e-14, scale=1e-14)

    def test_from_arrays(self):
        g = SharedGraph.from_arrays(src=[0, 1, 0, 2], dst=[1, 3, 2, 3], param=[0, 1, -1, -1],
                                    inputs=[0], outputs=[3], weight=[0, 0, 1.0, 0.5],
                                    kind=["relu", "relu", "linear", "relu"])
        assert g.kinds == ("input", "relu", "linear", "output")
        assert g.forward([2.0, 3.0], [-1.0]).tolist() == [-0.5]   # relu(-2) * 3 + 0.5 * -1
        assert g == SharedGraph.from_edges(
            [(0, 1, 0), (1, 3, 1), (0, 2, fixed(1.0)), (2, 3, fixed(0.5))], [0], [3],
            node_kinds={2: "linear"})


class TestBadInput:
    @pytest.mark.parametrize("w, exc", [(math.inf, ValueError), (math.nan, ValueError),
                                        ("1.0", TypeError), (True, TypeError),
                                        (None, TypeError), (1j, TypeError)])
    def test_fixed_refuses(self, w, exc):
        with pytest.raises(exc):
            fixed(w)

    def test_unknown_kind(self):
        with pytest.raises(GraphError, match="node 'h' has unknown kind 'tanh'"):
            SharedGraph.from_edges([("x", "h", 0), ("h", "y", 1)], ["x"], ["y"],
                                   node_kinds={"h": "tanh"})
        with pytest.raises(GraphError, match="not in the graph"):
            SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"], node_kinds={"z": "max"})
        with pytest.raises(GraphError, match="is an output"):
            SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"], node_kinds={"y": "relu"})

    @pytest.mark.parametrize("edge", [("x", "m", 0), ("x", "m", fixed(2.0))])
    def test_max_node_needs_fixed_ones(self, edge):
        with pytest.raises(GraphError, match="max node 'm'.*fixed\\(1.0\\)"):
            SharedGraph.from_edges([edge, ("m", "y", 1)], ["x"], ["y"],
                                   node_kinds={"m": "max"})

    def test_from_arrays_checks(self):
        with pytest.raises(GraphError, match="pass weight="):
            SharedGraph.from_arrays([0], [1], [-1], [0], [1])
        with pytest.raises(GraphError, match="one entry per edge"):
            SharedGraph.from_arrays([0], [1], [-1], [0], [1], weight=[1.0, 2.0])
        with pytest.raises(GraphError, match="fixed weight inf"):
            SharedGraph.from_arrays([0], [1], [-1], [0], [1], weight=[np.inf])
        with pytest.raises(GraphError, match="unknown kind 7"):
            SharedGraph.from_arrays([0, 1], [1, 2], [0, 0], [0], [2], kind=[0, 7, 0])

    def test_path_norm_arguments(self):
        g = SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"])
        for q in (0.5, math.inf, math.nan):
            with pytest.raises(ValueError, match="q must be"):
                pathgeom.path_norm(g, [1.0], q=q)
        with pytest.raises(TypeError, match="q must be"):
            pathgeom.path_norm(g, [1.0], q="2")
        with pytest.raises(TypeError, match="needs p"):
            pathgeom.path_norm(g)
        with pytest.raises(pathgeom.PathOverflowError, match="L\\^4 path norm"):
            chain = SharedGraph.from_edges([("x", "h", 0), ("h", "y", 0)], ["x"], ["y"])
            pathgeom.path_norm(chain, [1e200], q=4)      # 1e400: beyond float64
        assert pathgeom.path_norm(g, [1e100], q=4) == 1e100   # 1e400 only on the way

    def test_edge_list_bad_fixed(self):
        with pytest.raises(pathgeom.EdgeListError, match="net.txt:3: 'fixed=abc'"):
            parse_edge_list("inputs x\noutputs y\nx y fixed=abc", source="net.txt")
        with pytest.raises(pathgeom.EdgeListError, match="net.txt:3: expected 'kind KIND"):
            parse_edge_list("inputs x\noutputs y\nkind tanh h\nx h 0\nh y 0",
                            source="net.txt")
