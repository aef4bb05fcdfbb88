r"""Feed-forward networks of ReLU layers as shared-weight graphs: the machinery shared by
:func:`pathgeom.cnn` and :func:`pathgeom.mlp`.

A :class:`FeedForward` network is a list of stages (a convolution or a dense layer, ReLU
after each, then a linear output layer).  This module builds the graph's edge arrays
(one parameter per kernel entry, shared by every position; only when ``.graph`` is first
accessed) and computes the same function densely (cross-correlation by strided slabs, its
backward pass), so that the dense twin and the graph agree to rounding (tested).  The path
quantities and path norms run densely too, on the power network (every weight replaced
by :math:`|w|^q`, the all-ones input, no ReLU): see :meth:`FeedForward.path_quantities`.
"""

import math
import numbers
import threading
from typing import NamedTuple

import numpy as np

from .. import _threads, geometry
from .._errors import GraphError, PathOverflowError, PathUnderflowError
from .._validation import _as_float_array, as_params, check_bool, check_int, check_rng
from ..graph import SharedGraph
from ._base import Layout, Network, check_graph_size

__all__ = ["FeedForward", "UNIFORM_SCALE", "INIT_SCHEMES"]

#: Default half-width of the ``"uniform"`` initialisation (paper, section 5).
UNIFORM_SCALE = 0.01
INIT_SCHEMES = ("uniform", "he")
_TINY = np.finfo(np.float64).tiny
#: Serialises the lazy graph builds (a module lock: networks stay picklable).
_BUILD_LOCK = threading.Lock()


def _int_at_least(value, what, minimum):
    return check_int(value, what, minimum)


# --------------------------------------------------------------------------- edges and dense passes


class _Stage(NamedTuple):
    """One layer of weights: ``conv`` (kernel/stride/padding per spatial axis) or dense."""

    conv: bool
    in_shape: tuple
    out_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    relu: bool

    @property
    def weight_shape(self):
        if self.conv:
            return (self.out_shape[0], self.in_shape[0]) + self.kernel
        return (self.out_shape[0], math.prod(self.in_shape))


def _conv_axis(n_in, n_out, k, s, pad):
    """Valid ``(o, j, i)`` along one axis: output ``o`` sees input ``i = o s + j - pad``."""
    o, j = np.meshgrid(np.arange(n_out), np.arange(k), indexing="ij")
    i = o * s + j - pad
    ok = (i >= 0) & (i < n_in)
    return o[ok], j[ok], i[ok]


def _conv_edges(stage, in_base, out_base, w_off):
    """``(src, dst, param)`` of one convolution: vectorised index arithmetic, no edge loop."""
    c_in, *s_in = stage.in_shape
    c_out, *s_out = stage.out_shape
    o = j = i = np.zeros(1, dtype=np.int64)          # flat indices over the axes so far
    for n_in, n_out, k, s, pad in zip(s_in, s_out, stage.kernel, stage.stride, stage.padding):
        oa, ja, ia = _conv_axis(n_in, n_out, k, s, pad)
        o = (o[:, None] * n_out + oa).ravel()
        j = (j[:, None] * k + ja).ravel()
        i = (i[:, None] * n_in + ia).ravel()
    co = np.arange(c_out, dtype=np.int64)[:, None, None]
    ci = np.arange(c_in, dtype=np.int64)[None, :, None]
    shape = (c_out, c_in, o.size)
    src = np.broadcast_to(in_base + ci * math.prod(s_in) + i, shape)
    dst = np.broadcast_to(out_base + co * math.prod(s_out) + o, shape)
    par = np.broadcast_to(w_off + (co * c_in + ci) * math.prod(stage.kernel) + j, shape)
    return src.ravel(), dst.ravel(), par.ravel()


def _dense_edges(stage, in_base, out_base, w_off):
    n_in, n_out = math.prod(stage.in_shape), stage.out_shape[0]
    j = np.arange(n_out, dtype=np.int64)[:, None]
    i = np.arange(n_in, dtype=np.int64)[None, :]
    shape = (n_out, n_in)
    return (np.broadcast_to(in_base + i, shape).ravel(),
            np.broadcast_to(out_base + j, shape).ravel(),
            np.broadcast_to(w_off + j * n_in + i, shape).ravel())


def _pad(A, stage):
    """``A`` (B, C, *S) with ``padding`` zeros on both ends of every spatial axis."""
    return np.pad(A, [(0, 0), (0, 0)] + [(p, p) for p in stage.padding])


def _slabs(A, stage, out_shape):
    """For each kernel offset ``k``: ``A_pad[:, :, k + stride * o]`` over all ``o``, as (B, C, P).

    Looping over the kernel offsets (a handful) makes every product a plain matrix product
    over channels, with positions ``P = prod(out_shape)`` as the long axis.
    """
    Ap = _pad(A, stage)
    B, C = A.shape[:2]
    for offset in np.ndindex(*stage.kernel):
        where = tuple(slice(k, k + s * (n - 1) + 1, s)
                      for k, s, n in zip(offset, stage.stride, out_shape))
        yield offset, where, Ap[(slice(None), slice(None)) + where].reshape(B, C, -1)


def _correlate(A, W, stage):
    r"""Cross-correlation :math:`Z[b, c', o] = \sum_{c, k} W[c', c, k] A_{pad}[b, c, o s + k]`.

    Shape ``(B, C_out, *S_out)``.
    """
    out_shape = stage.out_shape[1:]
    Z = np.zeros((A.shape[0], W.shape[0], math.prod(out_shape)))
    for offset, _, slab in _slabs(A, stage, out_shape):
        Z += W[(slice(None), slice(None)) + offset] @ slab       # (C_out, C) @ (B, C, P)
    return Z.reshape((A.shape[0], W.shape[0]) + out_shape)


def _correlate_backward(A, W, stage, dZ, need_dA):
    """Gradients of :func:`_correlate` with respect to ``W`` and (optionally) ``A``."""
    B, C_out = dZ.shape[:2]
    out_shape = dZ.shape[2:]
    dZ = dZ.reshape(B, C_out, -1)
    dZ_rows = dZ.transpose(1, 0, 2).reshape(C_out, -1)           # (C_out, B * P)
    dW = np.empty(W.shape)
    padded = A.shape[:2] + tuple(n + 2 * p for n, p in zip(A.shape[2:], stage.padding))
    dAp = np.zeros(padded) if need_dA else None
    for offset, where, slab in _slabs(A, stage, out_shape):
        entry = (slice(None), slice(None)) + offset
        dW[entry] = dZ_rows @ slab.transpose(1, 0, 2).reshape(A.shape[1], -1).T
        if need_dA:                                              # (C, C_out) @ (B, C_out, P)
            dAp[(slice(None), slice(None)) + where] += (W[entry].T @ dZ).reshape(
                A.shape[:2] + out_shape)
    if not need_dA:
        return dW, None
    crop = tuple(slice(p, p + n) for p, n in zip(stage.padding, A.shape[2:]))
    return dW, dAp[(slice(None), slice(None)) + crop]


def _affine(A, W, b, stage):
    """One stage's pre-activation: correlation or matrix product, plus the bias."""
    if stage.conv:
        Z = _correlate(A, W, stage)
        if b is not None:
            Z = Z + b.reshape((-1,) + (1,) * len(stage.kernel))
        return Z
    Z = A.reshape(A.shape[0], -1) @ W.T
    return Z if b is None else Z + b


def _finite_sum(x):
    """Every entry of ``x`` (>= 0 or nan) finite: one sum, the elementwise test only when
    the sum is not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(np.sum(x))):
            return True
    return bool(np.isfinite(x).all())


class _NeedsGraph(Exception):
    """The dense float64 passes cannot decide: the generic engine on the graph must
    (``error``: the typed error to raise when the graph cannot be built)."""

    def __init__(self, error, reason):
        super().__init__(reason)
        self.error = error
        self.reason = reason


class FeedForward(Network):
    r"""A layered ReLU network of convolutions and dense layers (base of :class:`CNN` and MLP).

    Holds the stages, the parameter layout, the graph (built on first access to
    :attr:`graph`) and the dense numpy passes, path quantities included.
    ``weight_names`` / ``bias_names`` give each stage's block as ``(name, index)``
    (``index`` None for a single array).  Parameter order in ``p``: every weight block
    in stage order, then (with ``bias``) every bias block in stage order.
    """

    def __init__(self, input_shape, stages, bias, weight_names, bias_names):
        self.input_shape = tuple(input_shape)
        self.bias = check_bool(bias, "bias")
        self._stages = tuple(stages)
        entries = [(n, i, s.weight_shape) for (n, i), s in zip(weight_names, stages)]
        if self.bias:
            entries += [(n, i, (s.out_shape[0],)) for (n, i), s in zip(bias_names, stages)]
        self.layout = Layout(entries)
        self._weights = [self.layout.slice(n, i) for n, i in weight_names]
        self._biases = ([self.layout.slice(n, i) for n, i in bias_names] if self.bias
                        else [None] * len(stages))
        self._graph = None          # built by the ``graph`` property on first access
        self._structure = None      # cached non-zero structure (see _nonzero_structure)

    # ------------------------------------------------------------------ the graph

    @property
    def graph(self):
        """The :class:`~pathgeom.SharedGraph`, built from the shapes on first access and
        kept (later accesses return the same object).

        Nothing else needs it: the layout, :meth:`forward`, :meth:`backward`,
        :meth:`init`, :meth:`layer_nodes`, :meth:`path_quantities` and :meth:`path_norm`
        work from the shapes alone.  Building it checks its size first (at most 2**31 - 1
        edges and nodes, and memory for about 96 bytes per edge) and raises
        :class:`~pathgeom.GraphError` when it does not fit.
        """
        g = self._graph
        if g is None:
            with _BUILD_LOCK:    # one build, even when several threads ask at once
                g = self._graph
                if g is None:
                    check_graph_size(self.n_nodes, self.n_edges_bound,
                                     f"the graph of this {type(self).__name__}")
                    g = self._graph = self._build_graph()
        return g

    @property
    def n_nodes(self):
        """Number of graph nodes (inputs, the bias node, hidden units, outputs), known
        without building the graph."""
        return math.prod(self.input_shape) + self.bias + sum(
            math.prod(s.out_shape) for s in self._stages)

    @property
    def n_edges_bound(self):
        """An upper bound on the graph's number of edges, known without building it (exact
        without padding; padding drops the edges from padded positions)."""
        return sum(math.prod(s.out_shape) * (math.prod(s.weight_shape[1:]) + self.bias)
                   for s in self._stages)

    @property
    def shapes(self):
        """Shapes of the node layers: input, each hidden layer, output ``(n_out,)``."""
        return [self.input_shape] + [s.out_shape for s in self._stages]

    @property
    def n_out(self):
        """Number of outputs."""
        return self._stages[-1].out_shape[0]

    def _bases(self):
        n_x = math.prod(self.input_shape)
        bases = [0, n_x + self.bias]
        for s in self._stages[:-1]:
            bases.append(bases[-1] + math.prod(s.out_shape))
        return bases

    @property
    def bias_node(self):
        """Id of the bias node (the last input, carrying 1), or None without bias."""
        return math.prod(self.input_shape) if self.bias else None

    def layer_nodes(self, layer):
        """Node ids of layer ``layer`` (0 = input, ..., ``len(shapes) - 1`` = output), in its shape.

        Ids are also positions in ``graph.nodes`` (the construction order is topological).
        """
        shapes = self.shapes
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) \
                or not -len(shapes) <= layer < len(shapes):
            raise IndexError(f"layer must be an integer in [0, {len(shapes)}), got {layer!r}")
        layer = int(layer) % len(shapes)
        base = self._bases()[layer]
        return base + np.arange(math.prod(shapes[layer]), dtype=np.int64).reshape(shapes[layer])

    def _build_graph(self):
        bases = self._bases()
        parts = []
        for k, stage in enumerate(self._stages):
            # bias edges first: each node's incoming edges then arrive sorted by source
            # (or with only the bias out of place in front), which keeps the CSR build's
            # per-node sort fast (the build sorts each node's edges with a stable mergesort)
            if self.bias:
                n_units = math.prod(stage.out_shape)
                per_channel = n_units // stage.out_shape[0]
                parts.append((np.full(n_units, self.bias_node, dtype=np.int64),
                              bases[k + 1] + np.arange(n_units, dtype=np.int64),
                              self._biases[k].start + np.repeat(
                                  np.arange(stage.out_shape[0], dtype=np.int64), per_channel)))
            edges = _conv_edges if stage.conv else _dense_edges
            parts.append(edges(stage, bases[k], bases[k + 1], self._weights[k].start))
        src, dst, par = (np.concatenate([part[c] for part in parts]) for c in range(3))
        n_inputs = math.prod(self.input_shape) + self.bias
        return SharedGraph.from_arrays(src, dst, par, inputs=np.arange(n_inputs),
                                       outputs=bases[-1] + np.arange(self.n_out),
                                       n_nodes=bases[-1] + self.n_out,
                                       n_params=self.layout.n_params)

    # ------------------------------------------------------------------ dense passes

    def _inputs(self, X):
        """``X`` as float64 ``(B, *input_shape)``; also whether it was a single sample."""
        arr = _as_float_array(X, "X")
        shape = self.input_shape
        squeeze = arr.shape == shape
        if squeeze:
            arr = arr[None]
        elif arr.shape[1:] != shape or arr.ndim != len(shape) + 1:
            raise ValueError(f"X has shape {arr.shape}; expected (B, {', '.join(map(str, shape))})"
                             f" or the single sample shape {shape}")
        if not np.isfinite(arr).all():
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0][int(squeeze):])
            raise ValueError(f"X{list(where)} is not finite; inputs must be finite")
        return arr, squeeze

    def _blocks(self, p, k):
        stage = self._stages[k]
        W = p[self._weights[k]].reshape(stage.weight_shape)
        b = None if self._biases[k] is None else p[self._biases[k]]
        return W, b

    def _forward_all(self, p, A):
        """Pre-activations ``Z`` and activations ``A`` of every stage (``A[0]`` is the input)."""
        Zs, As = [], [A]
        with np.errstate(over="ignore", invalid="ignore"):
            for k, stage in enumerate(self._stages):
                W, b = self._blocks(p, k)
                Z = _affine(A, W, b, stage)
                A = np.maximum(Z, 0.0) if stage.relu else Z
                Zs.append(Z)
                As.append(A)
        if not np.isfinite(A).all():
            bad = next(k for k, a in enumerate(As) if not np.isfinite(a).all())
            raise PathOverflowError(f"the dense forward pass overflowed float64 in layer {bad} "
                                    f"(shape {self.shapes[bad]}); scale the weights down")
        return Zs, As

    def forward(self, p, X):
        r"""The network function, computed densely with numpy (paper, Table 1).

        Equal to ``graph.forward(p, X.reshape(B, -1))`` (with a column of ones appended
        when ``bias=True``) up to rounding.

        Parameters
        ----------
        p : array_like, shape (n_params,)
        X : array_like, shape (B, \*input_shape) or input_shape

        Returns
        -------
        ndarray, shape (B, n_out) or (n_out,)
        """
        p = as_params(p, self.n_params)
        X, squeeze = self._inputs(X)
        if X.shape[0] == 0:   # an empty batch: no outputs (like graph.forward)
            return np.zeros((0, self.n_out))
        with _threads.for_size(self._work(X.shape[0])):
            Y = self._forward_all(p, X)[1][-1]
        return Y[0] if squeeze else Y

    def _work(self, B):
        """Multiply-adds of the largest single product of a pass over a batch of ``B`` (for
        the thread choice of :func:`pathgeom._threads.for_size`)."""
        return max(B * math.prod(s.out_shape) * s.weight_shape[1] for s in self._stages)

    def graph_inputs(self, X):
        """``X`` as the graph's input matrix: flattened in C order, then 1 for the bias node.

        Examples
        --------
        >>> from pathgeom.constructors.mlp import mlp
        >>> mlp([2, 1], bias=True).graph_inputs([[3.0, 4.0]])
        array([[3., 4., 1.]])
        """
        X, squeeze = self._inputs(X)
        flat = X.reshape(X.shape[0], -1)
        if self.bias:
            flat = np.hstack([flat, np.ones((X.shape[0], 1))])
        return flat[0] if squeeze else flat

    def backward(self, p, X, dY):
        r"""Dense gradient :math:`\sum_b dY_b^\top \partial f_p(x_b) / \partial p` (numpy backprop).

        ReLU's derivative at 0 is taken as 0, as in :meth:`pathgeom.SharedGraph.backward`,
        which this equals up to rounding.  A kernel entry gets the sum over all positions it
        is used at, the shared-weight rule
        :math:`\partial L/\partial p_i = \sum_{(u \to v) \in E_i} \partial L/\partial z_v\, h_u`.

        Parameters
        ----------
        p : array_like, shape (n_params,)
        X : array_like, shape (B, \*input_shape) or input_shape
        dY : array_like, shape (B, n_out) or (n_out,)
            Gradient of the loss with respect to the outputs.

        Returns
        -------
        ndarray, shape (n_params,)
            Summed over the batch, in the layout of ``p``.
        """
        p = as_params(p, self.n_params)
        X, squeeze = self._inputs(X)
        dY = _as_float_array(dY, "dY")
        expected = (self.n_out,) if squeeze else (X.shape[0], self.n_out)
        if dY.shape != expected:
            raise ValueError(f"dY has shape {dY.shape}; expected {expected} for X of shape "
                             f"{X.shape[1:] if squeeze else X.shape}")
        if not np.isfinite(dY).all():
            where = [int(i) for i in np.argwhere(~np.isfinite(dY))[0]]
            raise ValueError(f"dY{where} = {dY[tuple(where)]} is not finite; the output "
                             f"gradient must be finite")
        if X.shape[0] == 0:   # an empty batch: the summed gradient is 0
            return np.zeros(self.n_params)
        dA = dY.reshape(X.shape[0], self.n_out)
        with _threads.for_size(self._work(X.shape[0])):
            return self._backward(p, X, dA)

    def _backward(self, p, X, dA):
        Zs, As = self._forward_all(p, X)
        grad = np.zeros(self.n_params)
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(len(self._stages) - 1, -1, -1):
                stage = self._stages[k]
                W, _ = self._blocks(p, k)
                dZ = dA * (Zs[k] > 0.0) if stage.relu else dA
                A = As[k]
                if stage.conv:
                    dW, dA = _correlate_backward(A, W, stage, dZ, need_dA=k > 0)
                    db = dZ.sum(axis=(0, *range(2, dZ.ndim)))
                else:
                    flat = A.reshape(A.shape[0], -1)
                    dW = dZ.T @ flat
                    db = dZ.sum(axis=0)
                    dA = (dZ @ W).reshape(A.shape) if k > 0 else None
                grad[self._weights[k]] = dW.ravel()
                if self._biases[k] is not None:
                    grad[self._biases[k]] = db
        if not np.isfinite(grad).all():
            bad = int(np.flatnonzero(~np.isfinite(grad))[0])
            raise PathOverflowError(f"the gradient of parameter {bad} overflowed float64; "
                                    f"scale the weights or dY down")
        return grad

    # ------------------------------------------------------------------ path quantities

    def _power_forward(self, w):
        r"""Node values of the power network: every weight replaced by ``w >= 0`` (a vector
        in the layout of ``p``), no ReLU, the all-ones input (and 1 at the bias node).

        Returns ``hs``: ``hs[0]`` the input (ones, shape ``(1, *input_shape)``), ``hs[k]``
        layer ``k``'s values :math:`h_v = \sum_{u \to v} w_{\pi(u \to v)} h_u` in its shape
        (batch axis of 1).  Non-finite values are left for the caller to judge.
        """
        A = np.ones((1,) + self.input_shape)
        hs = [A]
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            for k, stage in enumerate(self._stages):
                W, b = self._blocks(w, k)
                A = _affine(A, W, b, stage)
                hs.append(A)
        return hs

    def _power_backward(self, w, hs, saturate=False):
        r"""Sensitivities :math:`\delta_v = \partial g / \partial h_v` of the power network's
        summed outputs :math:`g` (the transposed maps, seeded with 1 at every output) and
        :math:`\partial g / \partial w_i = \sum_{(u \to v) \in E_i} h_u \delta_v`.

        Returns ``deltas`` (``deltas[0]`` None: the inputs' sensitivities multiply nothing
        in any path quantity) and the gradient in the layout of ``p``.  With ``saturate``,
        every ``delta`` is clipped at 1 (the non-zero structure pass).
        """
        grad = np.zeros(self.n_params)
        n = len(self._stages)
        deltas = [None] * (n + 1)
        d = deltas[n] = np.ones((1, self.n_out))
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            for k in range(n - 1, -1, -1):
                stage = self._stages[k]
                W, _ = self._blocks(w, k)
                A = hs[k]
                if stage.conv:
                    dW, dA = _correlate_backward(A, W, stage, d, need_dA=k > 0)
                    db = d.sum(axis=(0, *range(2, d.ndim)))
                else:
                    dW = d.T @ A.reshape(1, -1)
                    db = d.sum(axis=0)
                    dA = (d @ W).reshape(A.shape) if k > 0 else None
                grad[self._weights[k]] = dW.ravel()
                if self._biases[k] is not None:
                    grad[self._biases[k]] = db
                if k > 0:
                    if saturate:
                        np.minimum(dA, 1.0, out=dA)
                    deltas[k] = d = dA
        return deltas, grad

    def _nonzero_structure(self, nonzero):
        """Where a path of non-zero weights makes a quantity non-zero: boolean ``h`` and
        ``delta`` per layer (lists as in :meth:`_power_forward` / :meth:`_power_backward`)
        and a boolean per parameter for :math:`\\kappa^{(1)}`.

        One pass of the network whose weights are 1 where ``nonzero`` and 0 elsewhere,
        every value clipped at 1 after each layer (path counts would overflow; only their
        sign matters).  Cached for the all-non-zero pattern.
        """
        if nonzero.all() and self._structure is not None:
            return self._structure
        ind = nonzero.astype(np.float64)
        A = np.ones((1,) + self.input_shape)
        hs = [A]
        for k, stage in enumerate(self._stages):
            W, b = self._blocks(ind, k)
            A = np.minimum(_affine(A, W, b, stage), 1.0)
            hs.append(A)
        deltas, grad = self._power_backward(ind, hs, saturate=True)
        out = ([h > 0 for h in hs], [None if d is None else d > 0 for d in deltas], grad > 0)
        if nonzero.all():
            self._structure = out
        return out

    def _lost_to_underflow(self, p, hs, deltas=None, grad=None):
        """Whether a node value, sensitivity or gradient entry that a path of non-zero
        weights makes positive came out below the normal float64 range (one reduction per
        array when nothing is that small)."""
        arrays = [("h", k, a) for k, a in enumerate(hs) if k > 0]
        if deltas is not None:
            arrays += [("d", k, a) for k, a in enumerate(deltas) if a is not None]
        if grad is not None:
            arrays.append(("k", 0, grad))
        small = [(kind, k, a) for kind, k, a in arrays if a.size and a.min() < _TINY]
        if not small:
            return False
        h_nz, d_nz, k_nz = self._nonzero_structure(p != 0)
        mask = {"h": h_nz, "d": d_nz}
        return any(bool(np.any((a < _TINY) & (k_nz if kind == "k" else mask[kind][k])))
                   for kind, k, a in small)

    def _dense_power(self, p, power, backward):
        """The float64 passes of the power network with weights ``|p|**power``: ``(total,
        hs, deltas, grad)`` (the last two None without ``backward``).

        Raises :class:`_NeedsGraph` when the float passes cannot be trusted: a power that
        overflows or falls below the normal range, a non-finite value, or a value that a
        non-zero path makes positive below the normal range (lost to underflow).
        """
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            w = p * p if power == 2.0 else np.abs(p) ** power
        if not _finite_sum(w):
            raise _NeedsGraph(PathOverflowError,
                              f"|p|**{power:g} overflows float64 for some parameter")
        if w.size and w.min() < _TINY and bool(np.any((w < _TINY) & (p != 0))):
            raise _NeedsGraph(PathUnderflowError, f"|p|**{power:g} is below the normal "
                              f"float64 range for some non-zero parameter")
        from .._memory import check_fits   # values, sensitivities, a padded layer and slab
        check_fits(8 * ((2 + backward) * self.n_nodes + (1 + backward) * self.n_params),
                   f"the dense passes of this {type(self).__name__}",
                   "use a smaller input or fewer channels")
        with _threads.for_size(self._work(1)):
            return self._dense_power_checked(p, w, backward)

    def _dense_power_checked(self, p, w, backward):
        hs = self._power_forward(w)
        deltas = grad = None
        if backward:
            deltas, grad = self._power_backward(w, hs)
        for k, h in enumerate(hs):
            if not _finite_sum(h):
                raise _NeedsGraph(PathOverflowError, f"a node value of layer {k} (shape "
                                  f"{self.shapes[k]}) overflowed float64")
        with np.errstate(over="ignore"):
            total = float(hs[-1].sum())
        if not math.isfinite(total):
            raise _NeedsGraph(PathOverflowError, "the sum over the outputs overflowed float64")
        if backward:
            for k, d in enumerate(deltas):
                if d is not None and not _finite_sum(d):
                    raise _NeedsGraph(PathOverflowError, f"an output sensitivity of layer "
                                      f"{k} (shape {self.shapes[k]}) overflowed float64")
            if not _finite_sum(grad):
                i = int(np.flatnonzero(~np.isfinite(grad))[0])
                raise _NeedsGraph(PathOverflowError, f"kappa1[{i}] overflowed float64")
        if self._lost_to_underflow(p, hs, deltas, grad):
            raise _NeedsGraph(PathUnderflowError, "a path sum fell below the normal float64 "
                              "range")
        return total, hs, deltas, grad

    def _on_graph(self, need, compute):
        """``compute(self.graph)``: the generic engine (scaled sweeps, careful kernels)
        decides what the float passes could not; when the graph is too large to build,
        the typed error of ``need`` (a :class:`_NeedsGraph`) says why."""
        try:
            g = self.graph
        except (GraphError, MemoryError) as exc:
            raise need.error(
                f"{need.reason} in the dense passes of this {type(self).__name__}, and the "
                f"generic engine (which recomputes such cases on scaled values) needs the edge "
                f"list, which does not fit: {exc}. Scale the weights (down for an overflow, up "
                f"for an underflow; a node-wise rescaling of the hidden units changes no "
                f"path product but can bring the intermediate values into range)") from None
        return compute(g)

    def path_quantities(self, p, with_kappa2=True):
        r""":math:`\gamma^2`, :math:`\kappa^{(1)}`, :math:`\kappa^{(2)}` and :math:`\kappa` by
        two dense passes of the squared network, without the edge list.

        With :math:`q = p^2` (every weight squared), the all-ones input (the bias node
        carries 1, as an input of the graph) and the ReLUs dropped (every value is
        :math:`\ge 0`), one forward pass gives the node values
        :math:`h_v = \sum_{u \to v} q_{\pi(u \to v)} h_u` and

        .. math::

            \gamma^2(p) = g(q) = \sum_{v \in V_{out}} h_v ,

        and one backward pass (seeded with 1 at every output) gives
        :math:`\delta_v = \partial g / \partial h_v` and, for every kernel entry, dense
        weight and bias,

        .. math::

            \kappa^{(1)}_i = \frac{\partial g}{\partial q_i}
                           = \sum_{(u \to v) \in E_i} h_u \delta_v ,

        a weight-gradient product per layer (a kernel entry sums over every position it is
        used at; a channel's bias over every position of the channel).  Convolutions run
        as products over channels on numpy's BLAS, one per kernel offset.

        :math:`\kappa^{(2)} = 0` exactly, by the depth certificate
        (:func:`pathgeom.kappa2_support`): every edge of one parameter leaves a node of one
        layer, so no input-to-output path holds two of them; hence :math:`\kappa =
        \kappa^{(1)}`.

        Equal to ``pathgeom.path_quantities(self.graph, p)`` to rounding (tested);
        :attr:`graph` is not built.  When the float64 passes cannot be trusted (a square
        beyond the float64 range, an overflowed intermediate, or a path sum below the
        normal range that a non-zero path makes positive), the generic engine on
        :attr:`graph` decides, as it does for any graph (careful and scaled sweeps).

        Parameters
        ----------
        p : array_like, shape (n_params,)
        with_kappa2 : bool, default True
            Also return :math:`\kappa^{(2)}` (zeros) and :math:`\kappa`.

        Returns
        -------
        PathQuantities
            ``(gamma2, kappa1, kappa2, kappa)``, as :func:`pathgeom.path_quantities`;
            ``kappa2`` and ``kappa`` are None with ``with_kappa2=False``.

        Raises
        ------
        PathOverflowError
            A quantity beyond the float64 range (or an intermediate the dense passes
            cannot handle when the graph is too large to build;
            :class:`~pathgeom.PathUnderflowError` for a loss to underflow then).

        Examples
        --------
        One convolution (kernel ``[1, 2]`` on an input of length 3) summed by the output
        layer: four paths through the kernel's two entries, two per output weight.

        >>> import numpy as np
        >>> from pathgeom.constructors.cnn import cnn, Conv1d
        >>> net = cnn((1, 3), [Conv1d(1, 2)], n_out=1)
        >>> p = net.pack(W=[np.array([[[1.0, 2.0]]])], W_out=[[3.0, 1.0]])
        >>> r = net.path_quantities(p)
        >>> r.gamma2                 # (1 + 4) * 9 + (1 + 4) * 1
        50.0
        >>> r.kappa1                 # W: 1 * 9 + 1 * 1 (one edge per output); W_out: 1 + 4
        array([10., 10.,  5.,  5.])
        >>> r.kappa2, bool(np.array_equal(r.kappa, r.kappa1))
        (array([0., 0., 0., 0.]), True)
        """
        p = as_params(p, self.n_params)
        with_kappa2 = check_bool(with_kappa2, "with_kappa2")
        try:
            total, _, _, k1 = self._dense_power(p, 2.0, backward=True)
        except _NeedsGraph as need:
            return self._on_graph(
                need, lambda g: geometry.path_quantities(g, p, with_kappa2=with_kappa2))
        if not with_kappa2:
            return geometry.PathQuantities(total, k1, None, None)
        # the depth certificate: no path holds two edges of one parameter
        return geometry.PathQuantities(total, k1, np.zeros(self.n_params), k1.copy())

    def gamma2(self, p):
        r""":math:`\gamma^2(p) = \sum_{\zeta} \prod_{e \in \zeta} p_{\pi(e)}^2` (eqs. 2-3):
        one dense forward pass of the squared network (see :meth:`path_quantities`).

        Examples
        --------
        >>> import numpy as np
        >>> from pathgeom.constructors.cnn import cnn, Conv1d
        >>> net = cnn((1, 3), [Conv1d(1, 2)], n_out=1, bias=True)
        >>> p = net.pack(W=[np.array([[[1.0, 2.0]]])], W_out=[[3.0, 1.0]], b=[[0.5]],
        ...              b_out=[2.0])
        >>> net.gamma2(p)   # 50 without bias, + 0.25 (9 + 1) from b, + 4 from b_out
        56.5
        """
        p = as_params(p, self.n_params)
        try:
            return self._dense_power(p, 2.0, backward=False)[0]
        except _NeedsGraph as need:
            return self._on_graph(need, lambda g: geometry.gamma2(g, p))

    def path_norm(self, p=None, q=2):
        r"""The :math:`L^q` path norm :math:`\big(\sum_{\zeta} \prod_{e \in \zeta}
        |p_{\pi(e)}|^q\big)^{1/q}` by one dense forward pass, without the edge list.

        The pass is the one of :meth:`gamma2` with every weight replaced by :math:`|w|^q`
        (all-ones input, bias node 1, no ReLU): the summed outputs are the sum over paths
        of :math:`\prod |w|^q`.  For :math:`q = 2` it is :math:`\sqrt{\gamma^2}`.  When a
        power or a path sum leaves the normal float64 range, :func:`pathgeom.path_norm` of
        :attr:`graph` decides (it reruns on scaled values).  :func:`pathgeom.path_norm`
        of the network calls this method.

        Parameters
        ----------
        p : array_like, shape (n_params,)
            Required (the network holds no weights; the default only keeps the signature
            of :meth:`pathgeom.OnnxNetwork.path_norm`).
        q : real, default 2
            :math:`q \ge 1`.

        Returns
        -------
        float

        Examples
        --------
        >>> import numpy as np, pathgeom
        >>> from pathgeom.constructors.cnn import cnn, Conv1d
        >>> net = cnn((1, 3), [Conv1d(1, 2)], n_out=1)
        >>> p = net.pack(W=[np.array([[[1.0, -2.0]]])], W_out=[[3.0, 1.0]])
        >>> net.path_norm(p, q=1)            # (1 + 2) * 3 + (1 + 2) * 1
        12.0
        >>> pathgeom.path_norm(net, p, q=2) ** 2
        50.0
        """
        q = geometry._check_q(q)
        if p is None:
            raise TypeError(f"path_norm of a {type(self).__name__} needs p (the network holds "
                            f"no weights); pass net.path_norm(p, q)")
        p = as_params(p, self.n_params)
        if q == 2.0:
            return math.sqrt(self.gamma2(p))
        try:
            total = self._dense_power(p, q, backward=False)[0]
        except _NeedsGraph as need:
            return self._on_graph(need, lambda g: geometry.path_norm(g, p, q))
        return total ** (1.0 / q)

    # ------------------------------------------------------------------ initialisation

    def init(self, rng, scheme="uniform", scale=None):
        r"""Random parameters; biases are 0.

        Parameters
        ----------
        rng : numpy.random.Generator
            The only source of randomness.
        scheme : {"uniform", "he"}
            ``"uniform"``: every weight from :math:`U[-\text{scale}, \text{scale}]`,
            ``scale`` 0.01 by default (the paper's section 5).  ``"he"``: normal with
            standard deviation :math:`\text{scale}\sqrt{2/\text{fan\_in}}` for layers
            followed by ReLU and :math:`\text{scale}\sqrt{1/\text{fan\_in}}` for the linear
            output layer, ``scale`` (a gain) 1 by default; fan_in is ``C_in * kh * kw``
            for a convolution and the input width for a dense layer.
        scale : float, optional

        Returns
        -------
        ndarray, shape (n_params,)
        """
        check_rng(rng)
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}; choose one of {INIT_SCHEMES}")
        if scale is None:
            scale = UNIFORM_SCALE if scheme == "uniform" else 1.0
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) \
                or not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        p = np.zeros(self.n_params)
        for stage, where in zip(self._stages, self._weights):
            shape = stage.weight_shape
            if scheme == "uniform":
                p[where] = rng.uniform(-scale, scale, size=shape).ravel()
            else:
                fan_in = math.prod(shape[1:])
                std = scale * math.sqrt((2.0 if stage.relu else 1.0) / fan_in)
                p[where] = rng.normal(0.0, std, size=shape).ravel()
        return p
