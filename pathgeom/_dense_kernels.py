"""numba kernels of the RNN constructor's dense passes (the real network on a batch).

One layer of a ReLU RNN on a batch of ``B`` sequences, time-major and C-contiguous:
``x`` (T, B, K) is what the layer receives from below (the inputs, or the states of the
layer below), ``h`` (T, B, H) its states.  The time loops are in ``engine.py``: per step
one matrix product by numpy (BLAS) and one call of a kernel here, which does the step's
element-wise work in one pass over each row while it is in cache (input drive, bias and
relu going forward; the gradient from above, the carry and the relu mask going back), in
place of the several numpy passes and temporaries it replaces.

The kernels call no BLAS: every product of the dense passes goes through numpy's BLAS, so
one library's threads serve them all (numba's ``np.dot`` would call scipy's BLAS, a second
library whose idle threads spin for a while after each call and would compete with
numpy's).

Conventions: nothing here validates (the wrappers in ``engine.py`` and the callers in
``constructors/rnn.py`` do); outputs are written into arrays the caller allocated; no
fast-math: the operations of the numpy passes, in their order, so a non-finite value
propagates as it did there and the callers' overflow checks see it.
"""

import numba
import numpy as np

#: Input widths up to this (an input width of 2, one output) are multiplied inline in the
#: step kernels; wider ones by one BLAS product for every step at once.
SMALL = 8


@numba.njit(cache=True, inline="always")
def _narrow_product(a, M, row):
    """``row = a M`` for a short vector ``a`` (K,) and ``M`` (K, H), row by row of ``M``
    (``a[0] M[0]`` first, then ``+= a[k] M[k]``: the order the numpy passes summed in)."""
    a0 = a[0]
    m0 = M[0]
    for j in range(row.shape[0]):
        row[j] = a0 * m0[j]
    for k in range(1, M.shape[0]):
        ak = a[k]
        mk = M[k]
        for j in range(row.shape[0]):
            row[j] += ak * mk[j]


@numba.njit(cache=True)
def rnn_forward_step(x, WinT, b, z, h, t, wide):
    """Step ``t`` of one layer's forward pass, in place on ``h[t]`` (B, H):

    ``h[t] = relu(z + (d + b))`` (without ``z`` at ``t = 0``), where ``z`` (B, H) is
    ``h[t-1] W_rec^T`` and the input drive ``d`` is ``x[t] WinT`` (``x`` (T, B, K) with
    ``K <= SMALL``, ``WinT`` (K, H)) or, when ``wide``, already in ``h[t]``.  relu keeps a
    nan (the overflow checks see it).
    """
    B = h.shape[1]
    H = h.shape[2]
    K = WinT.shape[0]
    rec = t > 0
    ht = h[t]
    for i in range(B):
        row = ht[i]
        zi = z[i]
        if wide:
            if rec:
                for j in range(H):
                    v = zi[j] + (row[j] + b[j])
                    row[j] = 0.0 if v < 0.0 else v
            else:
                for j in range(H):
                    v = row[j] + b[j]
                    row[j] = 0.0 if v < 0.0 else v
            continue
        xr = x[t, i]
        if K == 1 and rec:
            x0 = xr[0]
            w0 = WinT[0]
            for j in range(H):
                v = zi[j] + (x0 * w0[j] + b[j])
                row[j] = 0.0 if v < 0.0 else v
        elif K == 2 and rec:
            x0 = xr[0]
            x1 = xr[1]
            w0 = WinT[0]
            w1 = WinT[1]
            for j in range(H):
                v = zi[j] + ((x0 * w0[j] + x1 * w1[j]) + b[j])
                row[j] = 0.0 if v < 0.0 else v
        else:  # any narrow K: the drive first, in the row itself
            _narrow_product(xr, WinT, row)
            if rec:
                for j in range(H):
                    v = zi[j] + (row[j] + b[j])
                    row[j] = 0.0 if v < 0.0 else v
            else:
                for j in range(H):
                    v = row[j] + b[j]
                    row[j] = 0.0 if v < 0.0 else v


@numba.njit(cache=True)
def rnn_bptt_step(G, M, h, dz, carry, t, wide):
    """Step ``t`` of one layer's backpropagation through time, into ``dz[t]`` (B, H):

    ``dz[t] = (g + carry) * (h[t] > 0)`` (without ``carry`` at the last step), as the
    numpy pass (so ``inf * 0`` is nan), where ``carry`` (B, H) is ``dz[t+1] W_rec`` and
    the gradient from above ``g`` is ``G[s] M`` (``G`` (TG, B, K), ``K <= SMALL``,
    ``M`` (K, H)) or, when ``wide``, ``G[s]`` itself (``G`` (TG, B, H)), with ``s = t``
    when ``TG = T`` and ``G`` reaching the last step only when ``TG = 1``.

    Returns whether ``h[t]`` holds a value that is not finite (its exponent bits all set:
    an integer max over the step, which vectorises where a float check would not).
    """
    T = h.shape[0]
    B = h.shape[1]
    H = h.shape[2]
    TG = G.shape[0]
    last = t == T - 1
    has_g = TG == T or last
    s = t - (T - TG)
    hf = h[t].ravel()
    df = dz[t].ravel()
    cf = carry.ravel()
    if has_g and not wide:  # g = G[s] M, row by row, into dz[t]
        for i in range(B):
            _narrow_product(G[s, i], M, dz[t, i])
    exp_bits = np.int64(0x7FF0000000000000)
    top = np.int64(0)
    hb = hf.view(np.int64)
    n = B * H
    if not has_g:
        for e in range(n):
            df[e] = cf[e] * (1.0 if hf[e] > 0.0 else 0.0)
            top = max(top, hb[e] & exp_bits)
    elif wide:
        gf = G[s].ravel()
        if last:
            for e in range(n):
                df[e] = gf[e] * (1.0 if hf[e] > 0.0 else 0.0)
                top = max(top, hb[e] & exp_bits)
        else:
            for e in range(n):
                df[e] = (gf[e] + cf[e]) * (1.0 if hf[e] > 0.0 else 0.0)
                top = max(top, hb[e] & exp_bits)
    elif last:
        for e in range(n):
            df[e] = df[e] * (1.0 if hf[e] > 0.0 else 0.0)
            top = max(top, hb[e] & exp_bits)
    else:
        for e in range(n):
            df[e] = (df[e] + cf[e]) * (1.0 if hf[e] > 0.0 else 0.0)
            top = max(top, hb[e] & exp_bits)
    return top == exp_bits


@numba.njit(cache=True)
def rnn_sums(dz, x, narrow, want_b, gWinT, gb):
    """Sums over every (time, row) pair of ``dz`` (T, B, H) and ``x`` (T, B, K): the
    input-weight gradient, transposed, ``gWinT[k] = sum dz x[k]`` (K, H) when ``narrow``,
    and the bias gradient ``gb = sum dz`` (H,) when ``want_b``."""
    T = dz.shape[0]
    B = dz.shape[1]
    H = dz.shape[2]
    K = x.shape[2]
    if narrow:
        for k in range(K):
            for j in range(H):
                gWinT[k, j] = 0.0
    if want_b:
        for j in range(H):
            gb[j] = 0.0
    for t in range(T):
        for i in range(B):
            d = dz[t, i]
            xr = x[t, i]
            if narrow and K == 2 and want_b:
                x0 = xr[0]
                x1 = xr[1]
                a0 = gWinT[0]
                a1 = gWinT[1]
                for j in range(H):
                    dj = d[j]
                    a0[j] += dj * x0
                    a1[j] += dj * x1
                    gb[j] += dj
                continue
            if narrow:
                for k in range(K):
                    xk = xr[k]
                    ak = gWinT[k]
                    for j in range(H):
                        ak[j] += d[j] * xk
            if want_b:
                for j in range(H):
                    gb[j] += d[j]
