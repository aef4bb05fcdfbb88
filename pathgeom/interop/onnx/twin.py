r"""The dense twin of an imported ONNX model: its layers as array operations.

An import records the model as a program of operations (:class:`ConvOp`,
:class:`MatMulOp`, :class:`BiasOp`, :class:`AddOp`, :class:`PoolOp`, :class:`MeanOp`,
:class:`ReluOp`, :class:`RNNOp`) on the node ids of the graph it describes.  Each operation
can

* list its **edges** (``edges()``: source ids, destination ids, parameter index or -1,
  fixed weight), from which :attr:`OnnxNetwork.graph` is built when it is first asked for;
* run **densely** on a node-value array ``H`` of shape ``(B, n_nodes)``: the network
  itself (``power=None``: ReLU, max-pooling, the weights ``p``), or its *power network*
  (``power=q``: every weight, fixed or free, replaced by :math:`|w|^q`, ReLU and max-pooling
  units replaced by identity units, so a max-pooling unit sums its window), whose summed
  outputs on the all-ones input are :math:`\sum_{\text{paths}} \prod |w|^q`;
* run the **backward** pass of the power network (the transpose of each linear map), which
  gives :math:`\delta_v = \partial g / \partial h_v` and :math:`\kappa^{(1)}_i = \partial
  g / \partial q_i = \sum_{(u \to v) \in E_i} h_u \delta_v` (Theorem 3) with convolutions
  as im2col products on numpy's BLAS.

Parameter index arrays use -1 for a constant zero weight (no edge); value arrays handed to
the operations have one extra trailing 0 so that index -1 reads 0.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ... import _conv_kernels


def distinct(flat):
    """Whether the integers ``flat`` are pairwise different (a sort; numpy's hash-based
    ``unique`` is slow on large arrays)."""
    flat = np.asarray(flat).ravel()
    if flat.size < 2:
        return True
    d = np.diff(flat)
    if bool(np.all(d > 0)):
        return True
    srt = np.sort(flat)
    return not bool(np.any(srt[1:] == srt[:-1]))


def sorted_unique(flat):
    """The distinct values of ``flat``, sorted."""
    srt = np.sort(np.asarray(flat).ravel())
    if srt.size < 2:
        return srt
    return srt[np.concatenate([[True], srt[1:] != srt[:-1]])]


#: The largest edge list :attr:`OnnxNetwork.graph` builds (about 100 bytes per edge while it
#: is built); beyond it the graph is refused with an error, and the dense passes remain.
MAX_GRAPH_EDGES = 200_000_000


class _Index:
    """An index array (node ids or parameter indices) read and added to along the last axis.

    A contiguous range becomes a slice (views, no copies); unique indices a fancy index;
    anything else (repeats, -1) goes through ``np.add.at`` when added to.
    """

    __slots__ = ("shape", "sl", "tsl", "flat", "unique")

    def __init__(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        self.shape = idx.shape
        flat = idx.ravel()
        self.sl, self.tsl, self.flat, self.unique = None, None, flat, True
        if _is_range(flat):
            self.sl = slice(int(flat[0]), int(flat[-1]) + 1)
        elif idx.ndim == 2 and _is_range(idx.T.ravel()):
            # the transpose of a range (a Gemm weight read with transB=1): views too
            self.tsl = slice(int(idx[0, 0]), int(idx[0, 0]) + idx.size)
        else:
            self.unique = bool(flat.size == 0 or (flat.min() >= 0 and distinct(flat)))

    def _rows(self, A, vals):
        vals = np.asarray(vals)
        full = A.shape[:-1] + self.shape
        if vals.size != math.prod(full):
            vals = np.broadcast_to(vals, full)
        return vals.reshape(A.shape[:-1] + (-1,))

    def _tview(self, A):
        return A[..., self.tsl].reshape(A.shape[:-1] + self.shape[::-1]).swapaxes(-1, -2)

    def take(self, A):
        """``A[..., idx]`` in the index's shape (a view for a range or its transpose)."""
        if self.tsl is not None:
            return self._tview(A)
        v = A[..., self.sl] if self.sl is not None else A[..., self.flat]
        return v.reshape(A.shape[:-1] + self.shape)

    def add(self, A, vals):
        """``A[..., idx] += vals`` with repeated indices adding up."""
        if self.tsl is not None:
            view = self._tview(A)
            view += np.broadcast_to(vals, view.shape) if np.size(vals) != view.size \
                else np.reshape(vals, view.shape)
            return
        if self.sl is not None:
            # in the index's shape: a broadcast value (a bias per channel) is not copied
            view = A[..., self.sl].reshape(A.shape[:-1] + self.shape)
            vals = np.asarray(vals)
            view += vals.reshape(view.shape) if vals.size == view.size else vals
            return
        vals = self._rows(A, vals)
        if self.unique:
            A[..., self.flat] += vals
        elif A.ndim == 1:
            np.add.at(A, self.flat, vals)
        else:
            for b in range(A.shape[0]):
                np.add.at(A[b], self.flat, vals[b])

    def put(self, A, vals):
        if self.tsl is not None:
            view = self._tview(A)
            view[...] = np.broadcast_to(vals, view.shape) if np.size(vals) != view.size \
                else np.reshape(vals, view.shape)
            return
        if self.sl is not None:
            view = A[..., self.sl].reshape(A.shape[:-1] + self.shape)
            vals = np.asarray(vals)
            view[...] = vals.reshape(view.shape) if vals.size == view.size else vals
            return
        A[..., self.flat] = self._rows(A, vals)


def _is_range(flat):
    return bool(flat.size and flat[0] >= 0 and flat[-1] - flat[0] == flat.size - 1 and
                (flat.size == 1 or np.all(np.diff(flat) == 1)))


class _State:
    """One dense pass: node values ``H`` (B, n_nodes), parameter values ``w`` (with a
    trailing 0 for index -1), ``power`` (None: the network; q: the power network)."""

    def __init__(self, H, w, power, work=None):
        self.H = H
        self.w = w
        self.power = power
        self.cache = {}
        self.work = work

    def buf(self, key, shape, fill=None):
        """A scratch array: kept in the workspace between passes (no fresh memory to fault
        in at every pass), or new when there is none.  ``fill`` sets it only when made."""
        if self.work is None:
            return np.empty(shape) if fill is None else np.full(shape, fill)
        a = self.work.get(key)
        if a is None or a.shape != tuple(shape):
            a = np.empty(shape) if fill is None else np.full(shape, fill)
            self.work[key] = a
        return a

    def fixed(self, value):
        """A fixed weight as it enters this pass: itself, or :math:`|w|^q`."""
        if self.power is None:
            return value
        return np.abs(value) ** self.power


def _flat_edges(src, dst, par=None, weight=None):
    src, dst = np.broadcast_arrays(src, dst)
    if par is not None:
        src, dst, par = np.broadcast_arrays(src, dst, par)
        par = par.ravel()
        keep = par >= 0
        return (src.ravel()[keep], dst.ravel()[keep], par[keep], None)
    src, dst, weight = np.broadcast_arrays(src, dst, np.asarray(weight, dtype=np.float64))
    weight = weight.ravel()
    keep = weight != 0
    return (src.ravel()[keep], dst.ravel()[keep],
            np.full(int(keep.sum()), -1, dtype=np.int64), weight[keep])


class _Op:
    """One operation of the program; see the module docstring."""

    dense = True           # has dense passes
    params = ()            # parameter index arrays whose edges it creates
    loops = False          # one parameter on two edges of a path (RNN over time)
    exclusive = False      # no other operation uses its parameters (set by the program)

    def edges(self):
        return []

    def n_edges(self):
        """An upper bound on ``len(edges())``, without making them."""
        return 0

    def forward(self, st):
        raise NotImplementedError

    def backward(self, st, D, G):
        raise NotImplementedError


# --------------------------------------------------------------------------- windows


def _window_geometry(S, K, strides, pads, dil):
    """Output sizes, and per spatial axis the (output, offset, input) triples of the window."""
    nsp = len(S)
    out_shape, triples = [], []
    for a in range(nsp):
        n_out = (S[a] + pads[a] + pads[a + nsp] - dil[a] * (K[a] - 1) - 1) // strides[a] + 1
        out_shape.append(int(n_out))
        oa, ja = np.meshgrid(np.arange(max(n_out, 0)), np.arange(K[a]), indexing="ij")
        ia = oa * strides[a] + ja * dil[a] - pads[a]
        ok = (ia >= 0) & (ia < S[a])
        triples.append((oa[ok], ja[ok], ia[ok]))
    return tuple(out_shape), triples


def _flat_window_triples(out_shape, K, S, triples):
    """Flat (output, offset, input) indices of every valid window entry, all axes."""
    o = j = i = np.zeros(1, dtype=np.int64)
    for a, (oa, ja, ia) in enumerate(triples):
        o = (o[:, None] * out_shape[a] + oa).ravel()
        j = (j[:, None] * K[a] + ja).ravel()
        i = (i[:, None] * S[a] + ia).ravel()
    return o, j, i


class _Windows:
    """Strided, dilated, zero-padded windows over the spatial axes of ``(B, C, *S)``."""

    def __init__(self, S, K, strides, pads, dil):
        self.S, self.K = tuple(S), tuple(K)
        self.strides, self.dil = tuple(strides), tuple(dil)
        nsp = len(S)
        self.nsp = nsp
        self.lo = tuple(pads[:nsp])
        self.hi = tuple(pads[nsp:])
        self.out_shape, self.triples = _window_geometry(S, K, strides, pads, dil)
        self.padded = any(self.lo) or any(self.hi)
        self._offsets_cache = None
        # the padded input may need trimming: positions past the last window are unused
        self.Sp = tuple(S[a] + self.lo[a] + self.hi[a] for a in range(nsp))

    def inner(self):
        return (Ellipsis,) + tuple(slice(self.lo[a], self.lo[a] + self.S[a])
                                   for a in range(self.nsp))

    def pad(self, X, fill=0.0, st=None, key=None):
        """``X`` with its padding (the border of a kept buffer is written once)."""
        if not self.padded:
            return X
        shape = X.shape[:2] + self.Sp
        if st is None:
            Xp = np.full(shape, fill)
        else:
            Xp = st.buf((key, "pad", fill), shape, fill)
        Xp[self.inner()] = X
        return Xp

    def view(self, Xp):
        """``(B, C, *O, *K)`` view of the windows of the padded input."""
        nsp = self.nsp
        span = tuple(self.dil[a] * (self.K[a] - 1) + 1 for a in range(nsp))
        win = sliding_window_view(Xp, span, axis=tuple(range(2, 2 + nsp)))
        sel = ((slice(None), slice(None))
               + tuple(slice(None, self.strides[a] * (self.out_shape[a] - 1) + 1,
                             self.strides[a]) for a in range(nsp))
               + tuple(slice(None, None, self.dil[a]) for a in range(nsp)))
        return win[sel]

    def _offsets(self):
        """Per kernel offset: the (output slices, input slices) of its valid entries."""
        if self._offsets_cache is not None:
            return self._offsets_cache
        out = []
        for k in np.ndindex(*self.K):
            src, dst = [], []
            for a in range(self.nsp):
                s, d, lo = self.strides[a], self.dil[a], self.lo[a]
                off = k[a] * d - lo
                o0 = max(0, -(off // s))            # first o with o * s + off >= 0
                o1 = min(self.out_shape[a] - 1, (self.S[a] - 1 - off) // s)
                if o1 < o0:
                    break
                src.append(slice(o0, o1 + 1))
                dst.append(slice(o0 * s + off, o1 * s + off + 1, s))
            else:
                out.append((k, tuple(src), tuple(dst)))
        self._offsets_cache = out
        return out

    def gather_into(self, X, cols):
        """im2col without a padded copy: ``cols`` (C, *K, B, *O) gets the window entries of
        ``X`` (B, C, *S); entries in the padding are never written (they stay 0)."""
        Xt = X.swapaxes(0, 1)                                   # (C, B, *S)
        for k, o_sl, i_sl in self._offsets():
            cols[(slice(None),) + k + (slice(None),) + o_sl] = \
                Xt[(slice(None), slice(None)) + i_sl]

    def scatter_into(self, cols, target):
        """``target`` (B, C, *S) += the transpose of :meth:`view` applied to ``cols``
        (B, C, *O, *K): window entries in the padding are dropped, no padded buffer."""
        for k, o_sl, i_sl in self._offsets():
            target[(slice(None), slice(None)) + i_sl] += \
                cols[(slice(None), slice(None)) + o_sl + k]

    def scatter(self, cols, B, C, st=None, key=None):
        """The transpose of :meth:`view`: ``cols`` (B, C, *O, *K) summed into (B, C, *S)."""
        nsp = self.nsp
        if st is None:
            Xp = np.zeros((B, C) + self.Sp)
        else:
            Xp = st.buf((key, "scatter"), (B, C) + self.Sp)
            Xp.fill(0.0)
        for k in np.ndindex(*self.K):
            sel = tuple(slice(k[a] * self.dil[a],
                              k[a] * self.dil[a] + self.strides[a] * (self.out_shape[a] - 1) + 1,
                              self.strides[a]) for a in range(nsp))
            Xp[(slice(None), slice(None)) + sel] += cols[(Ellipsis,) + k]
        if not self.padded:
            return Xp
        return Xp[(Ellipsis,) + tuple(slice(self.lo[a], self.lo[a] + self.S[a])
                                      for a in range(nsp))]


# --------------------------------------------------------------------------- linear maps


class ConvOp(_Op):
    """``Conv``: ``y[m, o] = sum_{c, k} W[m, c, k] x[c, o * s + k * d - pad]`` per group."""

    def __init__(self, x, y, W, strides, pads, dil, group, x_is_input=False):
        self.x, self.y = _Index(x), _Index(y)
        self.x_ids, self.y_ids = x, y
        self.W = np.asarray(W)
        self.Wi = _Index(self.W)
        self.params = (self.W,)
        self.group = int(group)
        self.win = _Windows(x.shape[1:], self.W.shape[2:], strides, pads, dil)
        self.x_is_input = x_is_input

    def edges(self):
        C, S = self.x_ids.shape[0], self.x_ids.shape[1:]
        M = self.W.shape[0]
        G = self.group
        o, j, i = _flat_window_triples(self.win.out_shape, self.win.K, S, self.win.triples)
        Xf = self.x_ids.reshape(C, -1)
        Of = self.y_ids.reshape(M, -1)
        Wf = self.W.reshape(M, C // G, -1)
        co = np.arange(M)[:, None, None]
        cl = np.arange(C // G)[None, :, None]
        ci = (co // (M // G)) * (C // G) + cl
        return [_flat_edges(Xf[ci, i[None, None, :]], Of[co, o[None, None, :]],
                            Wf[co, cl, j[None, None, :]])]

    def n_edges(self):
        taps = math.prod(len(t[0]) for t in self.win.triples)
        return self.W.shape[0] * self.W.shape[1] * taps

    def _cols(self, X, st):
        """im2col: ``(G, C/G * prod(K), B * prod(O))`` in a kept buffer (made with zeros,
        so the entries that fall in the padding, never written, stay 0).  One sample of a
        two-dimensional convolution goes through the compiled kernel (which writes every
        entry); anything else through numpy's strided copies."""
        B, C = X.shape[:2]
        O = math.prod(self.win.out_shape)
        shape = (self.group, C // self.group * math.prod(self.win.K), B * O)
        cols = st.buf((id(self), "cols"), shape, 0.0)
        if B == 1 and self.win.nsp == 2:
            w = self.win
            _conv_kernels.im2col2d(np.ascontiguousarray(X[0]), *w.K, *w.strides, *w.dil,
                                   *w.lo, w.out_shape[1], cols.reshape(-1, O))
        else:
            self.win.gather_into(X, cols.reshape((C,) + self.win.K + (B,) + self.win.out_shape))
        return cols

    def _wf(self, st):
        M = self.W.shape[0]
        return self.Wi.take(st.w).reshape(self.group, M // self.group, -1)

    def _masks(self):
        """Per spatial axis, the 0/1 matrices (K_a, O_a) "offset j feeds output o" and
        (K_a, S_a) "offset j reads input i" (the window is a product over the axes)."""
        masks = getattr(self, "_mask_cache", None)
        if masks is None:
            out_masks, in_masks = [], []
            for a, (oa, ja, ia) in enumerate(self.win.triples):
                mo = np.zeros((self.win.K[a], self.win.out_shape[a]))
                mo[ja, oa] = 1.0
                mi = np.zeros((self.win.K[a], self.win.S[a]))
                mi[ja, ia] = 1.0
                out_masks.append(mo)
                in_masks.append(mi)
            masks = self._mask_cache = (out_masks, in_masks)
        return masks

    def _const_columns(self, X, st):
        """When each input channel of one sample is constant (the all-ones input of the
        power network), the convolution needs no im2col: with ``x_c`` the channel values
        and :math:`V_{mk} = \\sum_c W_{mck} x_c`,
        :math:`Y_{mo} = \\sum_k V_{mk} \\prod_a [\\text{offset } k_a \\text{ feeds } o_a]`,
        a contraction axis by axis.  Returns ``(Y (M, O), x)`` or None."""
        if X.shape[0] != 1:
            return None
        C = X.shape[1]
        xc = X[0].reshape(C, -1)
        if xc.shape[1] == 0 or not (xc == xc[:, :1]).all():
            return None
        x = xc[:, 0].copy()
        if not np.isfinite(x).all():
            return None         # inf times a 0 of the window masks would make NaNs
        g, M = self.group, self.W.shape[0]
        Wf = self._wf(st).reshape(g, M // g, C // g, -1)
        V = np.einsum("gmck,gc->gmk", Wf, x.reshape(g, C // g)).reshape((M,) + self.win.K)
        Y = _along_axes(V, self._masks()[0])
        return Y.reshape(M, -1), x

    def _band(self, box):
        """The output positions whose windows leave the constant box (the border band):
        ``(flat index, runs (o1, o2_start, o2_stop), interior box)``, or None
        when the interior is too small."""
        cache = self.__dict__.setdefault("_band_cache", {})
        if box in cache:
            return cache[box]
        w = self.win
        ranges = []
        for a in range(2):
            o = np.arange(w.out_shape[a])
            start = o * w.strides[a] - w.lo[a]
            inside = (start >= box[a][0]) & (start + (w.K[a] - 1) * w.dil[a] < box[a][1])
            ranges.append(inside)
        mask = ranges[0][:, None] & ranges[1][None, :]
        n_int = int(mask.sum())
        band = None
        if n_int >= BAND_MIN_INTERIOR * mask.size:
            # the interior outputs form a box (a product of ranges)
            (a1,), (a2,) = np.nonzero(ranges[0])[0][:1], np.nonzero(ranges[1])[0][:1]
            interior = ((int(a1), int(a1) + int(ranges[0].sum())),
                        (int(a2), int(a2) + int(ranges[1].sum())))
            (b1, c1), (b2, c2) = interior
            seg = []
            for o1 in range(w.out_shape[0]):
                if b1 <= o1 < c1:
                    seg += [(o1, 0, b2), (o1, c2, w.out_shape[1])]
                else:
                    seg.append((o1, 0, w.out_shape[1]))
            seg = np.array([t for t in seg if t[2] > t[1]], dtype=np.int64).reshape(-1, 3)
            band = (np.flatnonzero(~mask.ravel()), seg, interior)
        if len(cache) < 8:
            cache[box] = band
        return band

    def _band_forward(self, X0, st):
        """One sample whose channels are constant on a box (the power network on the
        all-ones input, away from the zero padding): every output whose window lies in the
        box has the value :math:`\\sum_{c,k} W_{mck} v_c`; the product runs over the
        border band's columns only.  False (nothing done) when that does not pay."""
        found = _constant_box(X0)
        if found is None:
            return False
        box, v = found
        band = self._band(box)
        if band is None:
            return False
        idx, seg, interior = band
        w = self.win
        M = self.W.shape[0]
        Wf = self._wf(st)[0]
        nb = idx.size
        # the band's windows, then one more column: the window of every interior output
        cols = st.buf((id(self), "cols_band"), (Wf.shape[1], nb + 1))
        _conv_kernels.im2col2d_segments(np.ascontiguousarray(X0), *w.K, *w.strides, *w.dil,
                                        *w.lo, seg, cols[:, :nb])
        cols[:, nb] = np.repeat(v, math.prod(w.K))
        if self.y.sl is not None:
            Y = st.H[0, self.y.sl].reshape(M, -1)
        else:
            Y = np.empty((M, math.prod(w.out_shape)))
        yb = Wf @ cols
        Y[:] = yb[:, nb:]
        Y[:, idx] = yb[:, :nb]
        if self.y.sl is None:
            self.y.put(st.H, Y[None])
        st.cache[(id(self), "band")] = (idx, interior, cols)
        return True

    def forward(self, st):
        X = self.x.take(st.H)
        B = X.shape[0]
        M = self.W.shape[0]
        const = self._const_columns(X, st)
        if const is not None:
            st.cache[(id(self), "x")] = const[1]
            self.y.put(st.H, const[0][None])
            return
        if B == 1 and self.group == 1 and self.win.nsp == 2 and self._band_forward(X[0], st):
            return
        cols = self._cols(X, st)
        Wf = self._wf(st)
        if B == 1 and self.group == 1 and self.y.sl is not None:
            np.matmul(Wf[0], cols[0], out=st.H[0, self.y.sl].reshape(M, -1))
            return
        Y = (Wf[0] @ cols[0])[None] if self.group == 1 else np.matmul(Wf, cols)
        Y = Y.reshape(M, B, -1)
        self.y.put(st.H, Y[:, 0] if B == 1 else Y.transpose(1, 0, 2))

    def _gradient_band(self, Dy, st):
        """For one sample whose upstream gradient ``Dy`` (1, M, O) is constant per channel
        on a box of outputs covering at least :data:`BAND_MIN_INTERIOR` of them (and the
        forward pass took the im2col route): ``(band positions, box positions,
        [dY_band, d_box])``; else None."""
        w = self.win
        if (self.group != 1 or w.nsp != 2 or (id(self), "cols") not in (st.work or {})
                or (id(self), "band") in st.cache):
            return None
        M = self.W.shape[0]
        found = _constant_box(Dy[0].reshape((M,) + w.out_shape))
        if found is None:
            return None
        ((a1, b1), (a2, b2)), d = found
        O = math.prod(w.out_shape)
        if (b1 - a1) * (b2 - a2) < BAND_MIN_INTERIOR * O:
            return None
        cache = self.__dict__.setdefault("_gband_cache", {})
        key = (a1, b1, a2, b2)
        if key not in cache:
            inside = np.zeros(w.out_shape, dtype=bool)
            inside[a1:b1, a2:b2] = True
            cache[key] = (np.flatnonzero(~inside.ravel()), np.flatnonzero(inside.ravel()))
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
        band, box = cache[key]
        Dext = st.buf((id(self), "dy_gband"), (M, band.size + 1))
        Dext[:, :band.size] = Dy[0][:, band]
        Dext[:, band.size] = d
        return band, box, Dext

    def _put_grad(self, G, gw):
        """Write (an exclusive slice) or add the weight gradient ``gw`` into ``G``."""
        if self.exclusive and self.Wi.sl is not None:
            G[self.Wi.sl] = gw.reshape(-1)
        else:
            self.Wi.add(G, gw.reshape(self.W.shape))

    def backward(self, st, D, G):
        M = self.W.shape[0]
        g = self.group
        C = self.x_ids.shape[0]
        Dy = self.y.take(D).reshape(g, M // g, -1)                  # B = 1
        d = Dy[:, :, :1]
        # an upstream gradient constant per channel (after a global average pool, say):
        # no products with the positions, only with the window masks
        dconst = _constant_rows(Dy, d)
        x = st.cache.get((id(self), "x"))
        if x is not None:
            # constant input channels: dW[m, c, k] = x_c sum_o dY[m, o] [k feeds o]
            U = _along_axes(Dy.reshape((M,) + self.win.out_shape),
                            [m.T for m in self._masks()[0]]).reshape(g, M // g, 1, -1)
            self._put_grad(G, U * x.reshape(g, 1, C // g, 1))
        elif (id(self), "band") in st.cache:
            # dW = dY[:, band] cols_band^T + (sum of dY over the interior) c_interior^T,
            # one product with the extra column
            idx, interior, cols = st.cache[(id(self), "band")]
            D0 = Dy[0]
            nb = idx.size
            Dext = st.buf((id(self), "dy_band"), (M, nb + 1))
            Dext[:, :nb] = D0[:, idx]
            (a1, b1), (a2, b2) = interior
            Dext[:, nb] = D0.reshape((M,) + self.win.out_shape)[:, a1:b1, a2:b2].sum(axis=(1, 2))
            if self.exclusive and self.Wi.sl is not None:
                np.matmul(Dext, cols.T, out=G[self.Wi.sl].reshape(M, -1))
            else:
                self.Wi.add(G, (Dext @ cols.T).reshape(self.W.shape))
        elif not dconst and (gb := self._gradient_band(Dy, st)) is not None:
            # dY constant on a box of outputs (the last layers, away from the padding):
            # dW = dY_band cols_band^T + d_box (sum of cols over the box)^T and
            # dcols = W^T [dY_band, d_box], the box's columns all alike: one extra column
            band, box, Dext = gb
            cols = st.work[(id(self), "cols")][0]
            nb = band.size
            Cext = st.buf((id(self), "cols_gband"), (cols.shape[0], nb + 1))
            Cext[:, :nb] = cols[:, band]
            Cext[:, nb] = cols[:, box].sum(axis=1)
            if self.exclusive and self.Wi.sl is not None:
                np.matmul(Dext, Cext.T, out=G[self.Wi.sl].reshape(M, -1))
            else:
                self.Wi.add(G, (Dext @ Cext.T).reshape(self.W.shape))
            if self.x_is_input:
                return
            dext = self._wf(st)[0].T @ Dext
            dcols = st.buf((id(self), "dcols"), (dext.shape[0], Dy.shape[2]))
            dcols[:, band] = dext[:, :nb]
            dcols[:, box] = dext[:, nb:]
            self._col2im(dcols, st, D)
            return
        else:
            cols = st.work[(id(self), "cols")]
            if dconst and g == 1 and self.exclusive and self.Wi.sl is not None:
                np.multiply(d[0], cols[0].sum(axis=1), out=G[self.Wi.sl].reshape(M, -1))
            elif dconst:
                self._put_grad(G, d * cols.sum(axis=2)[:, None, :])
            elif g == 1 and self.exclusive and self.Wi.sl is not None:
                # the only operation on these parameters: the product lands in G directly
                np.matmul(Dy[0], cols[0].T, out=G[self.Wi.sl].reshape(M, -1))
            elif g == 1:
                self.Wi.add(G, Dy[0] @ cols[0].T)
            else:
                self.Wi.add(G, np.matmul(Dy, cols.transpose(0, 2, 1)))
        if self.x_is_input:
            return
        Wf = self._wf(st)
        if dconst:
            # dX[c, i] = sum_k u[c, k] [offset k reads i], u = W^T d per group
            u = np.matmul(Wf.transpose(0, 2, 1), d).reshape((C,) + self.win.K)
            dX = _along_axes(u, self._masks()[1])
            self.x.add(D, dX[None])
            return
        O = Dy.shape[2]
        if g == 1:
            dcols = np.matmul(Wf[0].T, Dy[0],
                              out=st.buf((id(self), "dcols"), (Wf.shape[2], O)))
        else:
            dcols = np.matmul(Wf.transpose(0, 2, 1), Dy)                # (G, CK/G, O)
        self._col2im(dcols, st, D)

    def _col2im(self, dcols, st, D):
        """``D[x] +=`` the transpose of im2col applied to ``dcols`` (CK, O), one sample."""
        C = self.x_ids.shape[0]
        O = dcols.shape[-1]
        nsp = self.win.nsp
        if nsp == 2:
            w = self.win
            if self.x.sl is not None:
                target = self.x.take(D)[0]
            else:
                target = st.buf((id(self), "dX"), (C,) + w.S)
                target.fill(0.0)
            _conv_kernels.col2im2d(dcols.reshape(-1, O), *w.K, *w.strides, *w.dil, *w.lo,
                                   w.out_shape[1], target)
            if self.x.sl is None:
                self.x.add(D, target[None])
            return
        dcols = dcols.reshape((C,) + self.win.K + (1,) + self.win.out_shape)
        perm = (nsp + 1, 0) + tuple(range(nsp + 2, 2 * nsp + 2)) + tuple(range(1, nsp + 1))
        if self.x.sl is not None:
            self.win.scatter_into(dcols.transpose(perm), self.x.take(D))
        else:
            self.x.add(D, self.win.scatter(dcols.transpose(perm), 1, C, st, id(self)))


#: A convolution of one sample takes the border-band route (see
#: :meth:`ConvOp._band_forward`) when at least this share of its outputs is interior.
BAND_MIN_INTERIOR = 0.1


def _constant_box(X0):
    """For one sample ``X0`` (C, S1, S2): the largest box around the centre position on
    which every channel is constant, as ``(((lo1, hi1), (lo2, hi2)), values (C,))``; None
    when there is no such box beyond the centre."""
    C, S1, S2 = X0.shape
    if C == 0 or S1 == 0 or S2 == 0:
        return None
    c1, c2 = S1 // 2, S2 // 2
    v = X0[:, c1, c2].copy()
    eq = (X0 == v[:, None, None]).all(axis=0)
    bounds = []
    for line, c, S in ((eq[:, c2], c1, S1), (eq[c1, :], c2, S2)):
        off = np.flatnonzero(~line[:c])
        lo = int(off[-1]) + 1 if off.size else 0
        off = np.flatnonzero(~line[c:])
        hi = c + int(off[0]) if off.size else S
        bounds.append((lo, hi))
    (lo1, hi1), (lo2, hi2) = bounds
    if (hi1 - lo1) * (hi2 - lo2) <= 1 or not eq[lo1:hi1, lo2:hi2].all():
        return None
    return (tuple(bounds), v)


def _constant_rows(Dy, first):
    """Whether every row of ``Dy`` (..., n) equals its first entry ``first`` (..., 1)."""
    return Dy.shape[-1] > 0 and bool((Dy == first).all())


def _along_axes(A, mats):
    r"""One product per axis, last axis first: for ``A`` of shape (R, K_1, ..., K_n),

    .. math::

        \text{out}[r, o_1, \dots, o_n] = \sum_k A[r, k_1, \dots, k_n]
        \prod_a \text{mats}[a][k_a, o_a].
    """
    for m in reversed(mats):
        A = np.moveaxis(A @ m, -1, 1)
    return A


class MatMulOp(_Op):
    """``Gemm`` / ``MatMul``: ``y[..., m] = sum_k x[..., k] W[k, m]``."""

    def __init__(self, x, y, W, x_is_input=False):
        self.x, self.y = _Index(x), _Index(y)
        self.x_ids, self.y_ids = x, y
        self.W = np.asarray(W)                 # (K, M)
        self.Wi = _Index(self.W)
        self.params = (self.W,)
        self.x_is_input = x_is_input

    def edges(self):
        return [_flat_edges(self.x_ids[..., None, :], self.y_ids[..., :, None], self.W.T)]

    def n_edges(self):
        return self.x_ids.size * self.W.shape[1]

    def forward(self, st):
        self.y.put(st.H, np.matmul(self.x.take(st.H), self.Wi.take(st.w)))

    def backward(self, st, D, G):
        K, M = self.W.shape
        X = self.x.take(st.H).reshape(-1, K)
        Dy = self.y.take(D).reshape(-1, M)
        if self.Wi.tsl is not None:
            # a weight stored transposed (Gemm transB=1): the product in its storage order
            block = G[self.Wi.tsl].reshape(M, K)
            if self.exclusive:
                np.matmul(Dy.T, X, out=block)
            else:
                block += Dy.T @ X
        else:
            self.Wi.add(G, X.T @ Dy)
        if not self.x_is_input:
            self.x.add(D, (Dy @ self.Wi.take(st.w).T).reshape((1,) + self.x.shape))


class BiasOp(_Op):
    """Edges from the bias node (value 1) into ``y``: parameters ``C`` or fixed ``values``.

    ``C`` / ``values`` broadcast to ``y``'s shape (one bias per channel, say).
    """

    def __init__(self, bias_node, y, C=None, values=None):
        self.y = _Index(y)
        self.y_ids = y
        self.bias_node = bias_node
        src = np.asarray(C if C is not None else values)
        src = src.reshape((1,) * (y.ndim - src.ndim) + src.shape)
        self.axes = tuple(a for a in range(y.ndim) if src.shape[a] == 1 and y.shape[a] != 1)
        if C is not None:
            self.C = src
            self.Ci = _Index(src)
            self.params = (src,)
            self.values = None
        else:
            self.C = None
            self.values = src.astype(np.float64)

    def edges(self):
        if self.C is not None:
            return [_flat_edges(self.bias_node, self.y_ids, self.C)]
        return [_flat_edges(self.bias_node, self.y_ids, weight=self.values)]

    def n_edges(self):
        return self.y_ids.size

    def forward(self, st):
        vals = self.Ci.take(st.w) if self.C is not None else st.fixed(self.values)
        self.y.add(st.H, vals)

    def backward(self, st, D, G):
        if self.C is not None:
            d = self.y.take(D)[0]
            if self.axes:
                d = d.sum(axis=self.axes, keepdims=True)
            self.Ci.add(G, d)


class AddOp(_Op):
    """Fixed-weight edges ``x -> y`` elementwise (``w`` broadcast to ``y``'s shape).

    ``merge=True``: ``x`` and ``y`` are one node of the graph (two linear outputs added up,
    the node of ``x`` merged into that of ``y``), so there is no edge, only the sum.
    """

    def __init__(self, x, y, w=1.0, merge=False):
        self.x, self.y = _Index(x), _Index(y)
        self.x_ids, self.y_ids = x, y
        self.w = np.broadcast_to(np.asarray(w, dtype=np.float64), np.shape(y))
        self.scalar = float(self.w.flat[0]) if np.all(self.w == self.w.flat[0]) else None
        self.merge = merge

    def edges(self):
        if self.merge:
            return []
        return [_flat_edges(self.x_ids, self.y_ids, weight=self.w)]

    def n_edges(self):
        return 0 if self.merge else np.size(self.y_ids)

    def _w(self, st):
        return st.fixed(self.scalar if self.scalar is not None else self.w)

    def forward(self, st):
        w = self._w(st)
        x = self.x.take(st.H)
        self.y.add(st.H, x if (self.scalar is not None and w == 1.0) else w * x)

    def backward(self, st, D, G):
        w = self._w(st)
        d = self.y.take(D)
        self.x.add(D, d if (self.scalar is not None and w == 1.0) else w * d)


class ReluOp(_Op):
    """Makes linear nodes ReLU units (in the graph: their kind)."""

    def __init__(self, ids):
        self.ids = _Index(ids)

    def forward(self, st):
        if st.power is None:
            self.ids.put(st.H, np.maximum(self.ids.take(st.H), 0.0))

    def backward(self, st, D, G):
        return


class PoolOp(_Op):
    """``MaxPool`` (max units, edges of weight 1) or ``AveragePool`` (linear units, 1/n)."""

    def __init__(self, x, y, kind, K, strides, pads, dil, count_include_pad=False):
        self.x, self.y = _Index(x), _Index(y)
        self.x_ids, self.y_ids = x, y
        self.kind = kind
        self.win = _Windows(x.shape[1:], K, strides, pads, dil)
        S = x.shape[1:]
        if kind == "avg":
            if count_include_pad:
                n = np.full(self.win.out_shape, float(math.prod(K)))
            else:
                n = np.ones(1)
                for a, (oa, _, _) in enumerate(self.win.triples):
                    cnt = np.bincount(oa, minlength=self.win.out_shape[a]).astype(float)
                    n = np.multiply.outer(n, cnt) if a else cnt
            self.weight = 1.0 / n                               # per output position
        else:
            self.weight = np.ones(self.win.out_shape)
        self.S = S

    def edges(self):
        C = self.x_ids.shape[0]
        o, j, i = _flat_window_triples(self.win.out_shape, self.win.K, self.S,
                                       self.win.triples)
        Xf = self.x_ids.reshape(C, -1)
        Of = self.y_ids.reshape(C, -1)
        return [_flat_edges(Xf[:, i], Of[:, o], weight=self.weight.ravel()[o][None, :])]

    def n_edges(self):
        return self.x_ids.shape[0] * math.prod(len(t[0]) for t in self.win.triples)

    def forward(self, st):
        X = self.x.take(st.H)
        axes = tuple(range(-self.win.nsp, 0))
        if self.kind == "max" and st.power is None:
            Y = self.win.view(self.win.pad(X, -np.inf, st, id(self))).max(axis=axes)
        elif self.y.sl is not None and X.shape[0] == 1 and self.win.nsp == 2:
            # one sample of the power network, or of a real average pool: each window
            # summed by the compiled kernel (then weighted)
            w = self.win
            Y = self.y.take(st.H)[0]
            _conv_kernels.sum_pool2d(np.ascontiguousarray(X[0]), *w.K, *w.strides, *w.dil,
                                     *w.lo, Y)
            if self.kind == "avg":
                Y *= st.fixed(self.weight)
            return
        elif self.y.sl is not None and X.shape[0] == 1:
            # the power network: each window summed, as shifted adds into the fresh units
            Y = self.y.take(st.H)
            Y.fill(0.0)
            for k, o_sl, i_sl in self.win._offsets():
                Y[(slice(None), slice(None)) + o_sl] += X[(slice(None), slice(None)) + i_sl]
            if self.kind == "avg":
                Y *= st.fixed(self.weight)
            return
        else:
            Y = self.win.view(self.win.pad(X, 0.0, st, id(self))).sum(axis=axes)
            if self.kind == "avg":
                Y *= st.fixed(self.weight)
        self.y.put(st.H, Y)

    def backward(self, st, D, G):
        Dy = self.y.take(D)                                 # (1, C, *O)
        if self.kind == "avg":
            Dy = Dy * st.fixed(self.weight)
        if self.x.sl is not None and self.win.nsp == 2:
            w = self.win
            _conv_kernels.sum_pool2d_t(np.ascontiguousarray(Dy[0]), *w.K, *w.strides, *w.dil,
                                       *w.lo, self.x.take(D)[0])
            return
        cols = np.broadcast_to(Dy.reshape(Dy.shape + (1,) * self.win.nsp),
                               Dy.shape + self.win.K)
        if self.x.sl is not None:
            self.win.scatter_into(cols, self.x.take(D))
        else:
            self.x.add(D, self.win.scatter(cols, 1, Dy.shape[1], st, id(self)))


class MeanOp(_Op):
    """``GlobalAveragePool`` / ``ReduceMean``: linear units, edges of weight 1/n."""

    def __init__(self, x, y, axes):
        """``y`` has ``x``'s shape with the ``axes`` of size 1 (keepdims)."""
        self.x, self.y = _Index(x), _Index(y)
        self.x_ids, self.y_ids = x, y
        self.axes = tuple(axes)
        self.n = math.prod(x.shape[a] for a in axes)

    def edges(self):
        return [_flat_edges(self.x_ids, self.y_ids, weight=np.full(self.x_ids.shape,
                                                                    1.0 / self.n))]

    def n_edges(self):
        return self.x_ids.size

    def forward(self, st):
        X = self.x.take(st.H)
        axes = tuple(a + 1 for a in self.axes)
        self.y.put(st.H, X.sum(axis=axes, keepdims=True) * st.fixed(1.0 / self.n))

    def backward(self, st, D, G):
        self.x.add(D, self.y.take(D) * st.fixed(1.0 / self.n))


class RNNOp(_Op):
    """The ONNX RNN operator unrolled in time: edges only (no dense pass)."""

    dense = False
    loops = True

    def __init__(self, edge_list, params):
        self._edges = edge_list
        self.params = tuple(params)

    def edges(self):
        return [_flat_edges(s, d, p) for s, d, p in self._edges]

    def n_edges(self):
        return sum(int(np.prod(np.broadcast_shapes(np.shape(s), np.shape(d), np.shape(p))))
                   for s, d, p in self._edges)


# --------------------------------------------------------------------------- passes


def dense_forward(ops, n_nodes, input_ids, rows, w, power, work=None):
    """Run the program on ``rows`` (B, n_inputs): the node values ``H`` (B, n_nodes).

    ``work``: a dict of kept scratch arrays (see :meth:`_State.buf`), or None.
    """
    shape = (rows.shape[0], n_nodes)
    if work is None:
        H = np.zeros(shape)
    else:
        H = work.get("H")
        if H is None or H.shape != shape:
            H = work["H"] = np.zeros(shape)
        else:
            H.fill(0.0)
    H[:, input_ids] = rows
    st = _State(H, w, power, work)
    for op in ops:
        op.forward(st)
    return st


def dense_backward(ops, st, output_ids, n_params):
    """Backward pass of the power network from every output with seed 1.

    Returns ``(delta, grad)``: ``delta`` (n_nodes,) and ``grad`` (n_params,), the
    derivative of the summed outputs with respect to each parameter's power value.
    """
    D = st.buf("D", (1, st.H.shape[1]))
    D.fill(0.0)
    D[0, output_ids] = 1.0
    G = np.zeros(n_params + 1)
    for op in reversed(ops):
        op.backward(st, D, G)
    return D[0], G[:-1]
