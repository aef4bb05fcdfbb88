r"""numba kernels of the dense convolution passes: im2col and its transpose, one sample.

A two-dimensional convolution of one sample ``X`` (C, S1, S2) with kernel (K1, K2), strides
(s1, s2), dilations (d1, d2) and leading pads (p1, p2) reads, for output position
(o1, o2) and kernel offset (k1, k2), the input entry

.. math::

    i_a = o_a s_a + k_a d_a - p_a \qquad (a = 1, 2),

or zero when :math:`i_a` falls outside :math:`[0, S_a)` (the padding).  :func:`im2col2d`
writes these entries as the matrix ``cols`` (C K1 K2, O1 O2) whose product with the
kernel matrix (M, C K1 K2) is the convolution; :func:`col2im2d` adds the transpose of that
map applied to a matrix of the same shape into (C, S1, S2) (the input gradient of the
convolution, from ``W^T dY``).

Conventions as in the other kernel modules: no validation (the callers in
``pathgeom/interop/onnx/twin.py`` pass C-contiguous float64 arrays of the right shapes),
outputs written into arrays the caller allocated, one thread, no BLAS.  Every entry of
``cols`` is written (padding entries as 0), so its buffer needs no clearing between calls.
"""

import numba

__all__ = ["im2col2d", "im2col2d_segments", "col2im2d", "sum_pool2d",
           "sum_pool2d_t"]


@numba.njit(cache=True)
def _valid_range(O, S, s, off):
    """The outputs o in [0, O) with 0 <= o * s + off < S, as a half-open range inside
    [0, O] (empty, ``lo == hi``, when every output reads the padding)."""
    lo = 0
    if off < 0:
        lo = min((-off + s - 1) // s, O)
    hi = O
    if (O - 1) * s + off >= S:
        hi = (S - 1 - off) // s + 1 if S - 1 - off >= 0 else 0
    if hi < lo:
        hi = lo
    return lo, hi


@numba.njit(cache=True)
def im2col2d(X, K1, K2, s1, s2, d1, d2, p1, p2, O2, cols):
    """``cols[(c, k1, k2), (o1, o2)] = X[c, o1 s1 + k1 d1 - p1, o2 s2 + k2 d2 - p2]`` (0 in
    the padding); ``cols`` has shape (C K1 K2, O1 O2)."""
    C, S1, S2 = X.shape
    O = cols.shape[1]
    O1 = O // O2 if O2 > 0 else 0
    row = 0
    for c in range(C):
        for k1 in range(K1):
            off1 = k1 * d1 - p1
            a1, b1 = _valid_range(O1, S1, s1, off1)
            for k2 in range(K2):
                off2 = k2 * d2 - p2
                a2, b2 = _valid_range(O2, S2, s2, off2)
                r = cols[row]
                for o1 in range(O1):
                    base = o1 * O2
                    if o1 < a1 or o1 >= b1:
                        for o2 in range(O2):
                            r[base + o2] = 0.0
                        continue
                    i1 = o1 * s1 + off1
                    for o2 in range(a2):
                        r[base + o2] = 0.0
                    if s2 == 1:
                        for o2 in range(a2, b2):
                            r[base + o2] = X[c, i1, o2 + off2]
                    else:
                        for o2 in range(a2, b2):
                            r[base + o2] = X[c, i1, o2 * s2 + off2]
                    for o2 in range(b2, O2):
                        r[base + o2] = 0.0
                row += 1


@numba.njit(cache=True)
def col2im2d(dcols, K1, K2, s1, s2, d1, d2, p1, p2, O2, dX):
    """``dX[c, o1 s1 + k1 d1 - p1, o2 s2 + k2 d2 - p2] += dcols[(c, k1, k2), (o1, o2)]``
    for every entry inside the input (the transpose of :func:`im2col2d`, added)."""
    C, S1, S2 = dX.shape
    O = dcols.shape[1]
    O1 = O // O2 if O2 > 0 else 0
    row = 0
    for c in range(C):
        for k1 in range(K1):
            off1 = k1 * d1 - p1
            a1, b1 = _valid_range(O1, S1, s1, off1)
            for k2 in range(K2):
                off2 = k2 * d2 - p2
                a2, b2 = _valid_range(O2, S2, s2, off2)
                r = dcols[row]
                for o1 in range(a1, b1):
                    base = o1 * O2
                    i1 = o1 * s1 + off1
                    if s2 == 1:
                        for o2 in range(a2, b2):
                            dX[c, i1, o2 + off2] += r[base + o2]
                    else:
                        for o2 in range(a2, b2):
                            dX[c, i1, o2 * s2 + off2] += r[base + o2]
                row += 1


@numba.njit(cache=True)
def im2col2d_segments(X, K1, K2, s1, s2, d1, d2, p1, p2, seg, cols):
    """:func:`im2col2d` for runs of outputs: ``seg[j] = (o1, o2_start, o2_stop)`` lists
    the outputs of row ``o1`` from ``o2_start`` to ``o2_stop - 1``; their windows fill the
    columns of ``cols`` (C K1 K2, n) in that order."""
    C, S1, S2 = X.shape
    row = 0
    for c in range(C):
        for k1 in range(K1):
            off1 = k1 * d1 - p1
            for k2 in range(K2):
                off2 = k2 * d2 - p2
                r = cols[row]
                j = 0
                for t in range(seg.shape[0]):
                    o1 = seg[t, 0]
                    a = seg[t, 1]
                    b = seg[t, 2]
                    i1 = o1 * s1 + off1
                    if i1 < 0 or i1 >= S1:
                        for o2 in range(a, b):
                            r[j] = 0.0
                            j += 1
                        continue
                    for o2 in range(a, b):
                        i2 = o2 * s2 + off2
                        if 0 <= i2 < S2:
                            r[j] = X[c, i1, i2]
                        else:
                            r[j] = 0.0
                        j += 1
                row += 1


@numba.njit(cache=True)
def sum_pool2d(X, K1, K2, s1, s2, d1, d2, p1, p2, Y):
    """``Y[c, o1, o2] = sum of X[c, o1 s1 + k1 d1 - p1, o2 s2 + k2 d2 - p2]`` over the
    window entries inside the input (a pooling unit of the power network)."""
    C, S1, S2 = X.shape
    O1, O2 = Y.shape[1], Y.shape[2]
    for c in range(C):
        for o1 in range(O1):
            for o2 in range(O2):
                acc = 0.0
                for k1 in range(K1):
                    i1 = o1 * s1 + k1 * d1 - p1
                    if i1 < 0 or i1 >= S1:
                        continue
                    for k2 in range(K2):
                        i2 = o2 * s2 + k2 * d2 - p2
                        if 0 <= i2 < S2:
                            acc += X[c, i1, i2]
                Y[c, o1, o2] = acc


@numba.njit(cache=True)
def sum_pool2d_t(dY, K1, K2, s1, s2, d1, d2, p1, p2, dX):
    """The transpose of :func:`sum_pool2d`, added: ``dX[c, i] += dY[c, o]`` for every
    window entry ``i`` of every output ``o``."""
    C, S1, S2 = dX.shape
    O1, O2 = dY.shape[1], dY.shape[2]
    for c in range(C):
        for o1 in range(O1):
            for k1 in range(K1):
                i1 = o1 * s1 + k1 * d1 - p1
                if i1 < 0 or i1 >= S1:
                    continue
                for o2 in range(O2):
                    g = dY[c, o1, o2]
                    for k2 in range(K2):
                        i2 = o2 * s2 + k2 * d2 - p2
                        if 0 <= i2 < S2:
                            dX[c, i1, i2] += g
