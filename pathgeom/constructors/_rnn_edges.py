"""Vectorised edge arrays for unrolled RNNs (used by the RNN constructor, demo, benchmarks).

:func:`rnn_arrays` unrolls a ReLU RNN of paper Table 1 with no time-0 nodes:
``h^0_t = x_t``, ``h^l_t = relu(W_in[l] h^(l-1)_t + W_rec[l] h^l_(t-1) [+ b[l]])``,
``y_t = W_out h^top_t [+ b_out]``.

Parameter order (each block row-major): ``W_in[0], W_rec[0], W_in[1], W_rec[1], ...,
W_out``, then with ``bias=True`` ``b[0], b[1], ..., b_out``.

Node ids (t = 0..T-1): inputs ``x_t[k] = t*n_in + k`` and, with ``bias=True``, the bias
node ``T*n_in`` (the last input); layer ``l`` unit ``j`` at time ``t`` is
``hidden_base[l] + t*H_l + j``; outputs are ``y_t[o] = out_base + t*n_out + o`` with
``outputs="all"`` and ``out_base + o`` (the last step only) with ``outputs="last"``.
"""

import numpy as np

__all__ = ["rnn_arrays", "rnn_param_blocks"]


def rnn_param_blocks(n_in, hidden, n_out, bias=False):
    """``[(name, layer or None, shape), ...]`` in parameter order (see the module docstring)."""
    hidden = [hidden] if np.isscalar(hidden) else list(hidden)
    widths = [n_in] + hidden
    blocks = []
    for l, H in enumerate(hidden):
        blocks.append(("W_in", l, (H, widths[l])))
        blocks.append(("W_rec", l, (H, H)))
    blocks.append(("W_out", None, (n_out, hidden[-1])))
    if bias:
        blocks += [("b", l, (H,)) for l, H in enumerate(hidden)]
        blocks.append(("b_out", None, (n_out,)))
    return blocks


class _EdgeWriter:
    """Preallocated int64 edge arrays filled block by block from broadcast index grids."""

    def __init__(self, n_edges):
        self.src = np.empty(n_edges, dtype=np.int64)
        self.dst = np.empty(n_edges, dtype=np.int64)
        self.par = np.empty(n_edges, dtype=np.int64)
        self.at = 0

    def add(self, shape, src, dst, par):
        """Write ``prod(shape)`` edges; ``src, dst, par`` broadcast to ``shape``."""
        n = int(np.prod(shape))
        for out, value in ((self.src, src), (self.dst, dst), (self.par, par)):
            out[self.at:self.at + n].reshape(shape)[...] = value
        self.at += n


def _axes(*sizes):
    """Open index grids (like np.ogrid) as int64."""
    return [np.arange(s, dtype=np.int64).reshape([-1 if k == i else 1 for k in range(len(sizes))])
            for i, s in enumerate(sizes)]


def rnn_arrays(n_in, hidden, n_out, T, outputs="last", bias=False):
    """Edge arrays and bookkeeping of the unrolled RNN.

    Returns a dict with ``src, dst, param`` (int64 edge arrays), ``inputs, outputs``,
    ``n_nodes, n_params``, ``offsets`` (name, layer) -> first index in ``p``,
    ``hidden_base`` (first node id of each layer), ``out_base``, and ``rec``, the slice of
    the first layer's ``W_rec`` in ``p``.
    """
    hidden = [hidden] if np.isscalar(hidden) else list(hidden)
    widths = [n_in] + hidden
    offsets = {}
    offset = 0
    for name, l, shape in rnn_param_blocks(n_in, hidden, n_out, bias):
        offsets[(name, l)] = offset
        offset += int(np.prod(shape))
    n_params = offset
    bias_node = T * n_in
    base = T * n_in + (1 if bias else 0)
    hidden_base = []
    for H in hidden:
        hidden_base.append(base)
        base += T * H
    out_base = base
    out_times = np.arange(T) if outputs == "all" else np.array([T - 1])
    n_nodes = out_base + out_times.size * n_out

    def node(l, t, j):
        """Node id of unit j of layer l (l = -1: the inputs) at time t."""
        if l < 0:
            return t * n_in + j
        return hidden_base[l] + t * hidden[l] + j

    n_times = out_times.size
    n_edges = (sum(T * H * (w + (1 if bias else 0)) + (T - 1) * H * H
                   for H, w in zip(hidden, widths))
               + n_times * n_out * (hidden[-1] + (1 if bias else 0)))
    out = _EdgeWriter(n_edges)
    for l, H in enumerate(hidden):
        t, j, k = _axes(T, H, widths[l])
        out.add((T, H, widths[l]), node(l - 1, t, k), node(l, t, j),
                offsets[("W_in", l)] + j * widths[l] + k)
        t, j, k = _axes(T - 1, H, H)
        out.add((T - 1, H, H), node(l, t, k), node(l, t + 1, j),
                offsets[("W_rec", l)] + j * H + k)
        if bias:
            t, j = _axes(T, H)
            out.add((T, H), bias_node, node(l, t, j), offsets[("b", l)] + j)
    top = len(hidden) - 1
    s, o, k = _axes(n_times, n_out, hidden[-1])
    out.add((n_times, n_out, hidden[-1]), node(top, out_times[s], k), out_base + s * n_out + o,
            offsets[("W_out", None)] + o * hidden[-1] + k)
    if bias:
        s, o = _axes(n_times, n_out)
        out.add((n_times, n_out), bias_node, out_base + s * n_out + o,
                offsets[("b_out", None)] + o)
    assert out.at == n_edges
    src, dst, par = out.src, out.dst, out.par
    inputs = np.arange(T * n_in + (1 if bias else 0))
    rec0 = offsets[("W_rec", 0)]
    return dict(src=src, dst=dst, param=par, inputs=inputs,
                outputs=out_base + np.arange(out_times.size * n_out), n_nodes=n_nodes,
                n_params=n_params, offsets=offsets, hidden_base=hidden_base,
                out_base=out_base, rec=slice(rec0, rec0 + hidden[0] ** 2))
