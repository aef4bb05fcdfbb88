"""hypothesis strategies for random shared-weight graphs.

The graphs deliberately include parallel edges, nodes unreachable from the inputs, nodes
that reach no output, direct input -> output edges, unused parameters, several outputs,
isolated inputs/outputs and labels whose order is not a topological order.
"""

import numpy as np
from hypothesis import strategies as st

import pathgeom
from pathgeom.constructors.cnn import Conv1d, Conv2d, Dense


@st.composite
def edge_lists(draw, max_nodes=8, max_edges=14, max_used_params=4):
    """``(edges, inputs, outputs, n_params)`` for :meth:`SharedGraph.from_edges`."""
    n = draw(st.integers(2, max_nodes))
    hidden_order = list(range(n))            # edges go forward in this order
    roles = draw(st.lists(st.sampled_from("iohh"), min_size=n, max_size=n))
    roles[0] = "i"
    if "o" not in roles:
        roles[-1] = "o"
    inputs = [v for v in hidden_order if roles[v] == "i"]
    outputs = [v for v in hidden_order if roles[v] == "o"]
    candidates = [(a, b) for a in range(n) for b in range(a + 1, n)
                  if roles[b] != "i" and roles[a] != "o"]
    m_used = draw(st.integers(1, max_used_params))
    edges = []
    if candidates:
        pairs = draw(st.lists(st.sampled_from(candidates), max_size=max_edges))
        for a, b in pairs:                   # repeats are parallel edges
            edges.append((a, b, draw(st.integers(0, m_used - 1))))
    n_params = (max((i for _, _, i in edges), default=-1) + 1
                + draw(st.integers(0, 2)))   # unused parameters at the end
    # labels whose natural order is unrelated to the topological order
    perm = draw(st.permutations(range(n)))
    kind = draw(st.sampled_from(["int", "str", "tuple"]))
    label = {"int": lambda v: int(perm[v]), "str": lambda v: f"n{perm[v]}",
             "tuple": lambda v: ("node", perm[v])}[kind]
    edges = [(label(a), label(b), i) for a, b, i in draw(st.permutations(edges))]
    inputs = [label(v) for v in draw(st.permutations(inputs))]
    outputs = [label(v) for v in draw(st.permutations(outputs))]
    return edges, inputs, outputs, n_params


@st.composite
def graphs(draw, **kwargs):
    edges, inputs, outputs, n_params = draw(edge_lists(**kwargs))
    return pathgeom.SharedGraph.from_edges(edges, inputs, outputs, n_params=n_params)


def params(n, lo=-2.0, hi=2.0, zeros=True):
    """Vectors of length ``n``: moderate magnitudes, sometimes exact zeros.

    Magnitudes below 1e-3 become 0, so that no product of a few entries underflows
    (underflow to 0 in an intermediate is float64's behaviour, not the engine's)."""
    values = st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(
        lambda x: 0.0 if abs(x) < 1e-3 else x)
    if zeros:
        values = st.one_of(values, st.just(0.0))
    return st.lists(values, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=float))


@st.composite
def graph_and_params(draw, zeros=True, **kwargs):
    g = draw(graphs(**kwargs))
    return g, draw(params(g.n_params, zeros=zeros))


#: Fixed weights the general strategies draw (0 included: a fixed edge that carries no path).
FIXED_VALUES = (1.0, 1.0, -1.0, 0.5, -0.25, 2.0, 0.0)


@st.composite
def general_edge_lists(draw, max_nodes=8, max_edges=14, max_used_params=4):
    """``(edges, inputs, outputs, n_params, node_kinds)``: :func:`edge_lists` where some
    edges carry a :func:`pathgeom.fixed` weight and internal nodes are ReLU, identity or
    max neurons (every edge into a max node made ``fixed(1.0)``)."""
    edges, inputs, outputs, n_params = draw(edge_lists(max_nodes, max_edges, max_used_params))
    io = set(inputs) | set(outputs)
    nodes = sorted({x for u, v, _ in edges for x in (u, v)} - io, key=repr)
    kinds = {x: draw(st.sampled_from(["relu", "relu", "linear", "max"])) for x in nodes}
    out = []
    for u, v, i in edges:
        if kinds.get(v) == "max":
            out.append((u, v, pathgeom.fixed(1.0)))
        elif draw(st.integers(0, 3)) == 0:
            out.append((u, v, pathgeom.fixed(draw(st.sampled_from(FIXED_VALUES)))))
        else:
            out.append((u, v, i))
    return out, inputs, outputs, n_params, kinds


@st.composite
def general_graphs(draw, **kwargs):
    edges, inputs, outputs, n_params, kinds = draw(general_edge_lists(**kwargs))
    return pathgeom.SharedGraph.from_edges(edges, inputs, outputs, n_params=n_params,
                                           node_kinds=kinds)


def conv_out(n, k, s, pad):
    """Output length of a convolution along one axis."""
    return (n + 2 * pad - k) // s + 1


@st.composite
def cnn_architectures(draw, max_conv=2, max_dense=1, max_size=6):
    """Arguments of :func:`pathgeom.cnn`: ``(input_shape, layers, n_out, bias)``, 1-D or
    2-D, strides (also larger than the kernel: positions that feed nothing), padding, then
    dense layers."""
    nd = draw(st.sampled_from([1, 2]))
    shape = (draw(st.integers(1, 2)),) + tuple(draw(st.integers(1, max_size)) for _ in range(nd))
    layers, cur = [], shape[1:]
    n_conv = draw(st.sampled_from([0] + list(range(1, max_conv + 1)) * 2))  # mostly some
    for _ in range(n_conv):
        kernel = tuple(draw(st.integers(1, min(3, n))) for n in cur)   # fits without padding
        stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        padding = tuple(draw(st.integers(0, k - 1)) for k in kernel)
        out = tuple(conv_out(n, k, s, p) for n, k, s, p in zip(cur, kernel, stride, padding))
        c = draw(st.integers(1, 3))
        layers.append(Conv1d(c, kernel[0], stride[0], padding[0]) if nd == 1
                      else Conv2d(c, kernel, stride, padding))
        cur = out
    layers += [Dense(draw(st.integers(1, 3))) for _ in range(draw(st.integers(0, max_dense)))]
    if not layers:
        layers.append(Dense(2))
    return shape, layers, draw(st.integers(1, 3)), draw(st.booleans())
