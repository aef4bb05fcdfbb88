"""SharedGraph construction, the validator's errors, networkx round trips."""

import pickle

import networkx as nx
import numpy as np
import pytest
from hypothesis import find, given

import pathgeom
from pathgeom import GraphError

from helpers import assert_close
from strategies import edge_lists, graphs


class TestConstruction:
    def test_counts_and_order(self):
        g = pathgeom.SharedGraph.from_edges(
            [("h", "y", 1), ("x", "h", 0), ("x", "h", 0), ("x", "y", 2)], ["x"], ["y"],
            n_params=5)
        assert (g.n_nodes, g.n_edges, g.n_params, g.n_inputs, g.n_outputs) == (3, 4, 5, 1, 1)
        assert g.nodes == ("x", "h", "y")
        np.testing.assert_array_equal(g.depth, [0, 1, 2])
        np.testing.assert_array_equal(g.param_edge_counts(), [2, 1, 1, 0, 0])

    def test_isolated_inputs_and_outputs_are_nodes(self):
        g = pathgeom.SharedGraph.from_edges([("x", "y", 0)], ["x", "lonely_in"],
                                            ["y", "lonely_out"])
        assert set(g.nodes) == {"x", "y", "lonely_in", "lonely_out"}
        np.testing.assert_array_equal(g.forward([2.0], [1.0, 5.0]), [2.0, 0.0])

    def test_empty_graph(self):
        g = pathgeom.SharedGraph.from_edges([], ["x"], ["y"])
        assert g.n_params == 0 and g.n_edges == 0
        assert pathgeom.gamma2(g, []) == 0.0
        np.testing.assert_array_equal(g.forward([], [[1.0]]), [[0.0]])

    @given(graphs())
    def test_nodes_are_topologically_ordered(self, g):
        src, dst, _ = g.edges()
        assert np.all(src < dst)
        assert np.all(g.depth[src] < g.depth[dst])
        assert all(g.index(x) == k for k, x in enumerate(g.nodes))

    @given(edge_lists())
    def test_from_arrays_equals_from_edges(self, spec):
        edges, inputs, outputs, n_params = spec
        g = pathgeom.SharedGraph.from_edges(edges, inputs, outputs, n_params=n_params)
        ids = {x: k for k, x in enumerate(g.nodes)}
        src = np.array([ids[u] for u, _, _ in edges], dtype=np.int64)
        dst = np.array([ids[v] for _, v, _ in edges], dtype=np.int64)
        par = np.array([i for _, _, i in edges], dtype=np.int64)
        h = pathgeom.SharedGraph.from_arrays(src, dst, par, [ids[x] for x in inputs],
                                             [ids[x] for x in outputs], n_nodes=g.n_nodes,
                                             n_params=n_params)
        assert h.nodes == tuple(range(g.n_nodes))
        assert (h.edges()[0] == g.edges()[0]).all() and (h.edges()[2] == g.edges()[2]).all()

    @given(graphs())
    def test_networkx_round_trip_is_exact(self, g):
        G = g.to_networkx()
        assert isinstance(G, nx.MultiDiGraph)
        assert G.number_of_edges() == g.n_edges
        back = pathgeom.SharedGraph.from_networkx(G)
        assert back == g
        assert back.nodes == g.nodes and back.inputs == g.inputs and back.outputs == g.outputs
        # and the other way: a MultiDiGraph keeps its multiset of (u, v, param)
        edges = sorted((repr(u), repr(v), d["param"]) for u, v, d in G.edges(data=True))
        again = sorted((repr(u), repr(v), d["param"])
                       for u, v, d in back.to_networkx().edges(data=True))
        assert edges == again

    def test_from_plain_digraph_with_explicit_io(self):
        G = nx.DiGraph()
        G.add_edge(1, 2, w=0)
        G.add_edge(2, 3, w=1)
        g = pathgeom.SharedGraph.from_networkx(G, inputs=[1], outputs=[3], param="w")
        assert g.n_params == 2 and g.nodes == (1, 2, 3)

    @given(graphs())
    def test_pickle_round_trip(self, g):
        back = pickle.loads(pickle.dumps(g))
        assert back == g and back.nodes == g.nodes
        assert not back._c.src.flags.writeable

    def test_immutable(self):
        g = pathgeom.SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"])
        with pytest.raises(AttributeError):
            g.n_params = 3
        with pytest.raises(ValueError):
            g.depth[0] = 5
        with pytest.raises(TypeError, match="from_edges"):
            pathgeom.SharedGraph()

    def test_strategy_reaches_interacting_parameters(self):
        # the random graphs must include cases where kappa2 is not certified zero
        g = find(graphs(), lambda g: pathgeom.kappa2_support(g).size > 0)
        assert pathgeom.kappa2_support(g).size > 0


class TestValidator:
    def test_cycle_names_its_nodes(self):
        with pytest.raises(GraphError, match=r"cycle: .*'b' -> .*'c'") as exc:
            pathgeom.SharedGraph.from_edges(
                [("x", "a", 0), ("a", "b", 0), ("b", "c", 0), ("c", "a", 0), ("c", "y", 0)],
                ["x"], ["y"])
        assert "'x'" not in str(exc.value).split("cycle:")[1]

    def test_self_loop_is_a_cycle(self):
        with pytest.raises(GraphError, match="cycle: 'a' -> 'a'"):
            pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "a", 0)], ["x"], [])

    def test_cycle_in_from_arrays(self):
        with pytest.raises(GraphError, match="cycle"):
            pathgeom.SharedGraph.from_arrays([1, 2], [2, 1], [0, 0], [0], [3])

    def test_edge_into_input(self):
        with pytest.raises(GraphError, match=r"'a' -> 'x'.*goes into input node 'x'"):
            pathgeom.SharedGraph.from_edges([("a", "x", 0)], ["x"], [])

    def test_edge_out_of_output(self):
        with pytest.raises(GraphError, match="leaves output node 'y'"):
            pathgeom.SharedGraph.from_edges([("x", "y", 0), ("y", "z", 0)], ["x"], ["y"])

    def test_input_and_output_at_once(self):
        with pytest.raises(GraphError, match="'x' is both an input and an output"):
            pathgeom.SharedGraph.from_edges([], ["x"], ["x"])

    @pytest.mark.parametrize("where", ["inputs", "outputs"])
    def test_duplicates(self, where):
        io = {"inputs": ["x"], "outputs": ["y"]}
        io[where] = io[where] * 2
        with pytest.raises(GraphError, match=f"more than once in {where}"):
            pathgeom.SharedGraph.from_edges([("x", "y", 0)], **io)

    def test_negative_parameter_index(self):
        with pytest.raises(GraphError, match=r"'x' -> 'y', param -1.*out of range"):
            pathgeom.SharedGraph.from_edges([("x", "y", -1)], ["x"], ["y"])

    def test_parameter_index_beyond_n_params(self):
        with pytest.raises(GraphError, match=r"index 3 is out of range \[0, 2\)"):
            pathgeom.SharedGraph.from_edges([("x", "y", 3)], ["x"], ["y"], n_params=2)

    @pytest.mark.parametrize("bad", [1.5, 2.0, "0", None, True])
    def test_non_integer_parameter_index(self, bad):
        with pytest.raises(GraphError, match="must be integers"):
            pathgeom.SharedGraph.from_edges([("x", "y", bad)], ["x"], ["y"])

    def test_non_integer_arrays(self):
        with pytest.raises(GraphError, match=r"param must hold integers.*astype"):
            pathgeom.SharedGraph.from_arrays([0], [1], [0.0], [0], [1])
        with pytest.raises(GraphError, match=r"entry 0 is 0.5"):
            pathgeom.SharedGraph.from_arrays([0], [1], [0.5], [0], [1])

    def test_unknown_node_ids(self):
        with pytest.raises(GraphError, match="unknown destination node 7"):
            pathgeom.SharedGraph.from_arrays([0], [7], [0], [0], [1], n_nodes=3)
        with pytest.raises(GraphError, match=r"outputs\[0\] = 9 is not a node"):
            pathgeom.SharedGraph.from_arrays([0], [1], [0], [0], [9], n_nodes=3)

    def test_unknown_io_in_networkx(self):
        G = nx.MultiDiGraph()
        G.add_edge("x", "y", param=0)
        with pytest.raises(GraphError, match="outputs names node 'z'"):
            pathgeom.SharedGraph.from_networkx(G, ["x"], ["z"])

    def test_networkx_edge_without_param(self):
        G = nx.MultiDiGraph()
        G.add_edge("x", "y")
        with pytest.raises(GraphError, match="no 'param' attribute"):
            pathgeom.SharedGraph.from_networkx(G, ["x"], ["y"])

    def test_networkx_needs_io(self):
        with pytest.raises(GraphError, match="pass inputs"):
            pathgeom.SharedGraph.from_networkx(nx.DiGraph())

    def test_malformed_edge(self):
        with pytest.raises(GraphError, match=r"edge #1 is \('a', 'b'\); each edge must be a triple"):
            pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b")], ["x"], ["b"])

    def test_string_as_inputs(self):
        with pytest.raises(GraphError, match="wrap a single label in a list"):
            pathgeom.SharedGraph.from_edges([("x", "y", 0)], "x", ["y"])

    def test_errors_are_value_errors(self):
        assert issubclass(GraphError, ValueError)


def test_from_arrays_does_not_mutate_and_accepts_read_only():
    src = np.array([0, 1, 0], dtype=np.int32)
    dst = np.array([1, 2, 2], dtype=np.int32)
    par = np.array([0, 1, 0], dtype=np.int64)
    for a in (src, dst, par):
        a.flags.writeable = False
    copies = [a.copy() for a in (src, dst, par)]
    g = pathgeom.SharedGraph.from_arrays(src, dst, par, np.array([0]), np.array([2]))
    for a, b in zip((src, dst, par), copies):
        np.testing.assert_array_equal(a, b)
    assert g.n_edges == 3


def test_regression_nearly_sorted_fan_in_builds_fast_and_right():
    """A node whose in-edges are sorted but for the smallest last made numba's quicksort
    quadratic in the CSR build; the build must stay O(k log k) and the CSR sorted."""
    k = 50_000
    src = np.r_[np.arange(1, k), 0]
    g = pathgeom.SharedGraph.from_arrays(src, np.full(k, k), np.zeros(k, dtype=np.int64),
                                         np.arange(k), [k])
    s, _, _ = g.edges()
    assert np.all(np.diff(s) > 0) and s.size == k


def test_dense_block_ties_blocks_by_parameter_index():
    """Two layers on one 2x2 block: the graph equals the same network written edge by edge,
    and its path quantities match the exact reference."""
    e1, k = pathgeom.dense_block(["x0", "x1"], ["a0", "a1"])
    e2, k2 = pathgeom.dense_block(["a0", "a1"], ["b0", "b1"], first_param=0)
    e3, k3 = pathgeom.dense_block(["b0", "b1"], ["y"], first_param=k)
    assert (k, k2, k3) == (4, 4, 6)
    g = pathgeom.SharedGraph.from_edges(e1 + e2 + e3, ["x0", "x1"], ["y"])
    assert np.bincount(g.edges()[2]).tolist() == [2, 2, 2, 2, 1, 1]   # W used twice
    p = np.array([0.5, -1.0, 2.0, 0.25, 1.5, -0.5])
    from pathgeom import reference
    assert_close(pathgeom.kappa(g, p), [float(x) for x in reference.kappa(g, p)], 1e-12)
    with pytest.raises(ValueError, match="first_param"):
        pathgeom.dense_block(["a"], ["b"], first_param=-1)
