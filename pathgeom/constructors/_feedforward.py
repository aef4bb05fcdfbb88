r"""Feed-forward networks of ReLU layers as shared-weight graphs: the machinery shared by
:func:`pathgeom.cnn` and :func:`pathgeom.mlp`.

A :class:`FeedForward` network is a list of stages (a convolution or a dense layer, ReLU
after each, then a linear output layer).  This module builds the graph's edge arrays
(one parameter per kernel entry, shared by every position) and computes the same function
densely (cross-correlation by strided slabs, its backward pass), so that the dense twin
and the graph agree to rounding (tested).
"""

import math
import numbers
from typing import NamedTuple

import numpy as np

from .. import _threads
from .._errors import PathOverflowError
from .._validation import _as_float_array, as_params, check_bool, check_int, check_rng
from ..graph import SharedGraph
from ._base import Layout, Network, check_graph_size

__all__ = ["FeedForward", "UNIFORM_SCALE", "INIT_SCHEMES"]

#: Default half-width of the ``"uniform"`` initialisation (paper, section 5).
UNIFORM_SCALE = 0.01
INIT_SCHEMES = ("uniform", "he")


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


class FeedForward(Network):
    r"""A layered ReLU network of convolutions and dense layers (base of :class:`CNN` and MLP).

    Holds the stages, the parameter layout, the graph and the dense numpy passes.
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
        n_edges = sum(math.prod(s.out_shape) * (math.prod(s.weight_shape[1:]) + self.bias)
                      for s in self._stages)   # an upper bound: padding drops edges
        n_nodes = math.prod(self.input_shape) + sum(math.prod(s.out_shape) for s in stages)
        check_graph_size(n_nodes, n_edges, f"a {type(self).__name__}")
        self.graph = self._build_graph()

    # ------------------------------------------------------------------ the graph

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
                if stage.conv:
                    Z = _correlate(A, W, stage)
                    if b is not None:
                        Z = Z + b.reshape((-1,) + (1,) * len(stage.kernel))
                else:
                    Z = A.reshape(A.shape[0], -1) @ W.T
                    if b is not None:
                        Z = Z + b
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
