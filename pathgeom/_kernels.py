"""numba kernels over the compiled graph.

Conventions shared by every kernel (nothing here validates; the callers in
``graph.py`` and ``geometry.py`` do):

* nodes are ``0..n-1`` in topological order, so every edge ``u -> v`` has ``u < v``;
* incoming edges of node ``v`` are ``src[indptr[v]:indptr[v+1]]`` with parameter
  indices ``par[...]`` (CSR by destination, int32 indices, int64 ``indptr``); the
  outgoing edges of ``u`` are ``dst[optr[u]:optr[u+1]]`` with ``opar[...]``;
* node-by-batch arrays are ``(n_nodes, B)`` and C-contiguous, so one node's batch
  is a contiguous row;
* outputs are written into arrays the caller preallocated.
"""

import numba
import numpy as np

_FM = {"contract"}  # allow fused multiply-add; keeps inf/nan semantics for overflow checks


# --------------------------------------------------------------------------- construction


@numba.njit(cache=True)
def _grouped_csr(n, group, other, par, pos, n_params):
    """CSR of the edges grouped by ``pos[group]``, each group sorted by (pos[other], par).

    Returns ``ptr`` (n+1,) int64 and the int32 arrays ``pos[other]`` and ``par`` in CSR
    order.  One counting pass, one scatter of combined keys, then a sort of each group
    that is not already in order.
    """
    E = group.shape[0]
    ptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(E):
        ptr[pos[group[e]] + 1] += 1
    for v in range(n):
        ptr[v + 1] += ptr[v]
    fill = ptr[:-1].copy()
    key = np.empty(E, dtype=np.int64)
    m = max(n_params, 1)
    for e in range(E):
        g = pos[group[e]]
        key[fill[g]] = pos[other[e]] * m + par[e]
        fill[g] += 1
    for v in range(n):
        lo = ptr[v]
        hi = ptr[v + 1]
        ordered = True
        for e in range(lo + 1, hi):
            if key[e] < key[e - 1]:
                ordered = False
                break
        if not ordered:  # mergesort: O(k log k) on every input pattern
            seg = key[lo:hi].copy()
            key[lo:hi] = seg[np.argsort(seg, kind="mergesort")]
    out_other = np.empty(E, dtype=np.int32)
    out_par = np.empty(E, dtype=np.int32)
    for e in range(E):
        out_other[e] = key[e] // m
        out_par[e] = key[e] % m
    return ptr, out_other, out_par


@numba.njit(cache=True)
def build_csr(n, src, dst, par, pos, n_params):
    """Both CSRs of a graph whose node ``i`` goes to position ``pos[i]`` (a topological order).

    Incoming edges grouped by destination, sorted by (source, parameter); outgoing edges
    grouped by source, sorted by (destination, parameter).  O(E log(max degree)).
    """
    indptr, in_src, in_par = _grouped_csr(n, dst, src, par, pos, n_params)
    optr, out_dst, out_par = _grouped_csr(n, src, dst, par, pos, n_params)
    return indptr, in_src, in_par, optr, out_dst, out_par


@numba.njit(cache=True)
def longest_path_depth(n, src, dst):
    """Kahn's algorithm: longest-path depth from the sources, -1 on nodes on or after a cycle."""
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    indeg = np.zeros(n, dtype=np.int64)
    for e in range(src.shape[0]):
        out_ptr[src[e] + 1] += 1
        indeg[dst[e]] += 1
    for i in range(n):
        out_ptr[i + 1] += out_ptr[i]
    fill = out_ptr[:-1].copy()
    out_dst = np.empty(src.shape[0], dtype=np.int64)
    for e in range(src.shape[0]):
        out_dst[fill[src[e]]] = dst[e]
        fill[src[e]] += 1
    depth = np.full(n, -1, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for v in range(n):
        if indeg[v] == 0:
            depth[v] = 0
            queue[tail] = v
            tail += 1
    best = np.zeros(n, dtype=np.int64)
    while head < tail:
        u = queue[head]
        head += 1
        du = depth[u] + 1
        for k in range(out_ptr[u], out_ptr[u + 1]):
            v = out_dst[k]
            if du > best[v]:
                best[v] = du
            indeg[v] -= 1
            if indeg[v] == 0:
                depth[v] = best[v]
                queue[tail] = v
                tail += 1
    return depth


# --------------------------------------------------------------------------- real network
#
# The real network's sums can cancel exactly (a*x and -a*x arriving on two edges), and
# there relu'(0) = 0 decides the gradient, so these kernels reproduce exact cancellation:
# no fused multiply-add (no fastmath: every product is rounded on its own, then summed in
# the fixed CSR order), and every sum whose float result is not certainly accurate --
# |sum| <= n * 2**-23 * sum(|terms|), which covers every sum that cancels to 0 -- is
# recomputed exactly: each product split into two floats (Dekker), the pieces added into a
# nonoverlapping expansion (Shewchuk), the expansion rounded.  The result is then 0 exactly
# when the products of the node's (float) inputs cancel exactly, and within about 1e-9
# relative of their exact sum otherwise.  Terms with a zero weight are skipped (they are
# exactly 0, and 0 * inf must not become nan).

_SPLIT = 134217729.0          # 2**27 + 1, Dekker's splitter for float64
_LOOSE = 2.0 ** -23           # certainty threshold: n * _LOOSE * sum|terms|


@numba.njit(cache=True, inline="always")
def _two_product(a, b):
    """``(x, y)`` with ``x = fl(a * b)`` and ``x + y = a * b`` exactly (no overflow)."""
    x = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    y = ((ah * bh - x) + ah * bl + al * bh) + al * bl
    return x, y


@numba.njit(cache=True, inline="always")
def _grow(buf, n, x):
    """Add ``x`` to the nonoverlapping expansion ``buf[:n]`` (increasing magnitude)."""
    q = x
    m = 0
    for k in range(n):
        a = q
        b = buf[k]
        s = a + b
        bv = s - a
        av = s - bv
        err = (a - av) + (b - bv)
        q = s
        if err != 0.0:
            buf[m] = err
            m += 1
    if q != 0.0:
        buf[m] = q
        m += 1
    return m


@numba.njit(cache=True)
def _round_expansion(buf, n):
    s = 0.0
    for k in range(n):
        s += buf[k]
    return s


@numba.njit(cache=True)
def _exact_edge_sum(lo, hi, node, par, p, M, b, kind, skip):
    """Exact sum over the edges ``lo..hi-1`` of a CSR of ``p[par] * M[node, b]``, rounded
    once (the incoming CSR with the sources for the forward pass, the outgoing CSR with the
    heads for the backward pass), leaving out edges whose ``node`` has ``kind == skip``."""
    buf = np.empty(2 * (hi - lo) + 2)
    n = 0
    for e in range(lo, hi):
        if kind[node[e]] == skip:
            continue
        w = p[par[e]]
        x = M[node[e], b]
        if w == 0.0 or x == 0.0:
            continue
        t, r = _two_product(w, x)
        n = _grow(buf, n, t)
        if r != 0.0:
            n = _grow(buf, n, r)
    return _round_expansion(buf, n)


@numba.njit(cache=True)
def forward(indptr, src, par, kind, p, H, sel):
    """``H[v] = act_v(sum_{u->v} p[par] * H[u])`` for every node with incoming edges.

    ``kind[v]``: 0 identity, 1 ReLU, 2 max (``H[v] = max_{u->v} p[par] H[u]``, the first
    maximal incoming edge, in CSR order, is recorded as its source in ``sel[v]`` when
    ``sel`` has a row per node; pass a (0, B) ``sel`` for graphs without max nodes).
    ``H`` arrives holding the inputs' rows and zeros elsewhere.  Exact cancellation is
    reproduced (see the section comment).
    """
    B = H.shape[1]
    mag = np.empty(B)
    for v in range(H.shape[0]):
        lo = indptr[v]
        hi = indptr[v + 1]
        if lo == hi:
            continue
        row = H[v]
        if kind[v] == 2:
            srow = sel[v]
            for b in range(B):
                row[b] = -np.inf
            for e in range(lo, hi):
                w = p[par[e]]
                hu = H[src[e]]
                for b in range(B):
                    t = w * hu[b]
                    if t > row[b] or (e == lo and not t < row[b]):   # nan taken too
                        row[b] = t
                        srow[b] = src[e]
            continue
        for b in range(B):
            mag[b] = 0.0
        n = 0
        for e in range(lo, hi):
            w = p[par[e]]
            if w == 0.0:
                continue
            n += 1
            hu = H[src[e]]
            for b in range(B):
                t = w * hu[b]
                row[b] += t
                mag[b] += abs(t)
        if n >= 2:
            tol = n * _LOOSE
            for b in range(B):
                if abs(row[b]) <= tol * mag[b] and mag[b] > 0.0 and mag[b] < np.inf:
                    row[b] = _exact_edge_sum(lo, hi, src, par, p, H, b, kind, 255)
        if kind[v] == 1:
            for b in range(B):
                if row[b] < 0.0:  # nan (from inf - inf) stays nan and reaches the checks
                    row[b] = 0.0


@numba.njit(cache=True)
def backward(optr, dst, opar, kind, p, H, G, grad, sel):
    """Reverse pass in pull form over the outgoing CSR.

    ``G`` arrives with dL/dy on the output rows and zeros elsewhere and leaves holding
    ``dL/dz`` (``dL/dh`` masked by ``relu'``, with relu'(0) = 0); ``grad`` (zeros) gets
    ``dL/dp_i = sum_b sum_{(u->v) in E_i} dL/dz_v h_u`` for ``i < grad.shape[0]`` (higher
    indices are the fixed weights' pseudo-parameters: no gradient).  An edge into a max
    node (``kind`` 2) carries its gradient only where ``sel`` (from :func:`forward`) names
    its source, and only the first of parallel copies does.  Both kinds of sums reproduce
    exact cancellation (see the section comment): the per-node sums at once, the
    per-parameter sums by an exact second pass over the parameters whose float sum is
    uncertain.
    """
    n_nodes, B = H.shape
    n_params = grad.shape[0]
    gmag = np.zeros(n_params)
    gcount = np.zeros(n_params, dtype=np.int64)
    mag = np.empty(B)
    extra = np.empty(B)
    for u in range(n_nodes - 1, -1, -1):
        lo = optr[u]
        hi = optr[u + 1]
        if lo == hi:
            continue   # outputs (their G rows are the seeds) and nodes leading nowhere
        g = G[u]
        hu = H[u]
        h_any = False
        for b in range(B):
            mag[b] = 0.0
            if hu[b] != 0.0:
                h_any = True
        n = 0
        pooled = False
        for e in range(lo, hi):
            w = p[opar[e]]
            v = dst[e]
            gv = G[v]
            if kind[v] == 2:   # max node: only where u was selected, first parallel copy
                if e > lo and dst[e - 1] == v:
                    continue
                if not pooled:
                    pooled = True
                    for b in range(B):
                        extra[b] = 0.0
                srow = sel[v]
                for b in range(B):
                    if srow[b] == u:
                        extra[b] += w * gv[b]
                continue
            if h_any and opar[e] < n_params:   # h finite here: y * x is nan only for inf y
                i = opar[e]
                s = 0.0
                a = 0.0
                for b in range(B):
                    t = gv[b] * hu[b]
                    s += t
                    a += abs(t)
                grad[i] += s
                gmag[i] += a
                gcount[i] += B
            if w == 0.0:
                continue
            n += 1
            for b in range(B):
                t = w * gv[b]
                g[b] += t
                mag[b] += abs(t)
        if n >= 2:
            tol = n * _LOOSE
            for b in range(B):
                if abs(g[b]) <= tol * mag[b] and mag[b] > 0.0 and mag[b] < np.inf:
                    g[b] = _exact_edge_sum(lo, hi, dst, opar, p, G, b, kind, 2)
        if pooled:   # after the exactness check, which sums every edge (no selection)
            for b in range(B):
                g[b] += extra[b]
        if kind[u] == 1:
            for b in range(B):
                if not hu[b] > 0.0:
                    g[b] = 0.0
    # parameters whose float gradient is not certainly accurate: exactly, edge by edge
    unsure = np.zeros(n_params, dtype=np.bool_)
    any_unsure = False
    for i in range(n_params):
        if (gcount[i] >= 2 and gmag[i] > 0.0 and gmag[i] < np.inf
                and abs(grad[i]) <= gcount[i] * _LOOSE * gmag[i]):
            unsure[i] = True
            any_unsure = True
    if not any_unsure:
        return
    E = dst.shape[0]
    count = np.zeros(n_params + 1, dtype=np.int64)
    for e in range(E):
        if opar[e] < n_params and unsure[opar[e]]:   # (fixed weights: no gradient)
            count[opar[e] + 1] += 1
    for i in range(n_params):
        count[i + 1] += count[i]
    fill = count[:-1].copy()
    edges = np.empty(count[n_params], dtype=np.int64)
    tails = np.empty(count[n_params], dtype=np.int64)
    for u in range(n_nodes):
        for e in range(optr[u], optr[u + 1]):
            i = opar[e]
            if i < n_params and unsure[i]:
                edges[fill[i]] = e
                tails[fill[i]] = u
                fill[i] += 1
    for i in range(n_params):
        if not unsure[i]:
            continue
        k = count[i + 1] - count[i]
        buf = np.empty(2 * k * B + 2)
        m = 0
        for j in range(count[i], count[i + 1]):
            hu = H[tails[j]]
            gv = G[dst[edges[j]]]
            for b in range(B):
                if hu[b] != 0.0 and gv[b] != 0.0:
                    t, r = _two_product(gv[b], hu[b])
                    m = _grow(buf, m, t)
                    if r != 0.0:
                        m = _grow(buf, m, r)
        grad[i] = _round_expansion(buf, m)


# --------------------------------------------------------------------------- squared network
#
# The squared network is linear with non-negative weights, so delta (= dg/dh) does not
# depend on h: path_quantities sweeps delta first, backward, then h forward, adding each
# edge's kappa1 term h[u] * delta[v] as it goes (the h[u] it loads anyway).
#
# Indices are read as unsigned (``_U``): numba then indexes without the wrap-around
# code it emits for signed indices (negative index -> from the end), about half the
# instructions of these loops.  Every index in the compiled record is >= 0.

_U = numba.uint64


@numba.njit(cache=True, fastmath=_FM)
def sq_forward(indptr, src, par, q, h):
    """Squared network on the all-ones input: ``h[v] = sum_{u->v} q[par] h[u]``.

    ``h`` arrives with ones on the inputs and zeros elsewhere; every value stays >= 0,
    so the ReLU is the identity and is not applied.  Four partial sums let the loads of
    consecutive edges overlap (faster here than letting LLVM vectorise with gathers).
    """
    for v in range(h.shape[0]):
        lo = _U(indptr[v])
        hi = _U(indptr[v + 1])
        if lo == hi:
            continue
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        e = lo
        while e + _U(4) <= hi:
            s0 += q[_U(par[e])] * h[_U(src[e])]
            s1 += q[_U(par[e + _U(1)])] * h[_U(src[e + _U(1)])]
            s2 += q[_U(par[e + _U(2)])] * h[_U(src[e + _U(2)])]
            s3 += q[_U(par[e + _U(3)])] * h[_U(src[e + _U(3)])]
            e += _U(4)
        while e < hi:
            s0 += q[_U(par[e])] * h[_U(src[e])]
            e += _U(1)
        h[v] = (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, fastmath=_FM)
def sq_delta(optr, dst, opar, q, delta):
    """``delta[u] = sum_{u->v} q[par] delta[v]`` (pull over the outgoing CSR, last node first).

    ``delta`` arrives with ones on the outputs (which have no outgoing edges and keep
    them) and zeros elsewhere.  Each node's edges are read last to first as well, so that
    the whole sweep reads the CSR as one descending stream.
    """
    n = delta.shape[0]
    for k in range(n):
        u = n - 1 - k
        lo = _U(optr[u])
        hi = _U(optr[u + 1])
        if lo == hi:
            continue
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        e = hi
        while e >= lo + _U(4):
            e -= _U(4)
            s0 += q[_U(opar[e + _U(3)])] * delta[_U(dst[e + _U(3)])]
            s1 += q[_U(opar[e + _U(2)])] * delta[_U(dst[e + _U(2)])]
            s2 += q[_U(opar[e + _U(1)])] * delta[_U(dst[e + _U(1)])]
            s3 += q[_U(opar[e])] * delta[_U(dst[e])]
        while e > lo:
            e -= _U(1)
            s0 += q[_U(opar[e])] * delta[_U(dst[e])]
        delta[u] = (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, fastmath=_FM)
def sq_forward_kappa1(indptr, src, par, q, h, delta, kappa1):
    """:func:`sq_forward`, and ``kappa1[i] += h[u] delta[v]`` over the edges ``u -> v`` of
    ``E_i`` (``delta`` final, ``kappa1`` zeros on entry).

    ``h`` comes out equal to :func:`sq_forward`'s bit for bit (same sums in the same
    order).  Nodes with ``delta[v] == 0`` add no kappa1 terms: they are exactly 0 (and
    an overflowed ``h[u]`` in a branch that reaches no output must not make them nan).
    """
    for v in range(h.shape[0]):
        lo = _U(indptr[v])
        hi = _U(indptr[v + 1])
        if lo == hi:
            continue
        dv = delta[v]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        e = lo
        if dv == 0.0:
            while e + _U(4) <= hi:
                s0 += q[_U(par[e])] * h[_U(src[e])]
                s1 += q[_U(par[e + _U(1)])] * h[_U(src[e + _U(1)])]
                s2 += q[_U(par[e + _U(2)])] * h[_U(src[e + _U(2)])]
                s3 += q[_U(par[e + _U(3)])] * h[_U(src[e + _U(3)])]
                e += _U(4)
        while e + _U(4) <= hi:
            i0 = _U(par[e])
            i1 = _U(par[e + _U(1)])
            i2 = _U(par[e + _U(2)])
            i3 = _U(par[e + _U(3)])
            x0 = h[_U(src[e])]
            x1 = h[_U(src[e + _U(1)])]
            x2 = h[_U(src[e + _U(2)])]
            x3 = h[_U(src[e + _U(3)])]
            s0 += q[i0] * x0
            s1 += q[i1] * x1
            s2 += q[i2] * x2
            s3 += q[i3] * x3
            kappa1[i0] += x0 * dv
            kappa1[i1] += x1 * dv
            kappa1[i2] += x2 * dv
            kappa1[i3] += x3 * dv
            e += _U(4)
        while e < hi:
            i0 = _U(par[e])
            x0 = h[_U(src[e])]
            s0 += q[i0] * x0
            if dv != 0.0:
                kappa1[i0] += x0 * dv
            e += _U(1)
        h[v] = (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, fastmath=_FM)
def _tangent_block(indptr, src, par, q, h, delta, params, start, stop, slot, out):
    """Forward tangents of the squared network along ``q_i`` for the parameters ``params``.

    ``t_v[k] = sum_{u->v} q t_u[k] + sum_{(u->v) in E_{params[k]}} h_u`` over the nodes
    ``start..stop-1`` (tangents vanish before ``start``), accumulating
    ``out[k] = sum_{(u->v) in E_{params[k]}} t_u[k] delta_v``.
    ``slot`` is a scratch map parameter -> column, all -1 on entry and on exit.

    The propagation is a sparse-times-dense product (one row of K lanes per node); four
    edges are combined per pass over the row so that the row is loaded and stored once
    per four edges.  Incoming edges are sorted by source, so those from before ``start``
    (zero tangents) are a prefix that is skipped.
    """
    K = params.shape[0]
    for k in range(K):
        if params[k] >= 0:
            slot[params[k]] = k
        out[k] = 0.0
    t = np.empty((stop - start, K))
    for v in range(start, stop):
        tv = t[v - start]
        for c in range(K):
            tv[c] = 0.0
        lo = indptr[v]
        hi = indptr[v + 1]
        e = lo
        while e < hi and src[e] < start:
            e += 1
        while e + 4 <= hi:
            w0 = q[par[e]]
            w1 = q[par[e + 1]]
            w2 = q[par[e + 2]]
            w3 = q[par[e + 3]]
            t0 = t[src[e] - start]
            t1 = t[src[e + 1] - start]
            t2 = t[src[e + 2] - start]
            t3 = t[src[e + 3] - start]
            for c in range(K):
                tv[c] += (w0 * t0[c] + w1 * t1[c]) + (w2 * t2[c] + w3 * t3[c])
            e += 4
        while e < hi:
            w0 = q[par[e]]
            t0 = t[src[e] - start]
            for c in range(K):
                tv[c] += w0 * t0[c]
            e += 1
        dv = delta[v]
        for e in range(lo, hi):
            k = slot[par[e]]
            if k >= 0:
                u = src[e]
                if u >= start and dv != 0.0:
                    out[k] += t[u - start, k] * dv
                tv[k] += h[u]
    for k in range(K):
        if params[k] >= 0:
            slot[params[k]] = -1


@numba.njit(cache=True, parallel=True)
def tangent_blocks(indptr, src, par, q, h, delta, blocks, ranges, out):
    """Run :func:`_tangent_block` for every row of ``blocks`` (padded with -1), in parallel.

    Each iteration owns its scratch (``slot``, tangents) and writes only its own row
    ``out[b]``; the caller scatters the rows into the per-parameter result.
    """
    n_params = q.shape[0]
    for b in numba.prange(blocks.shape[0]):
        slot = np.full(n_params, -1, dtype=np.int64)
        _tangent_block(indptr, src, par, q, h, delta, blocks[b], ranges[b, 0], ranges[b, 1],
                       slot, out[b])


# --------------------------------------------------------------------------- graph facts


@numba.njit(cache=True)
def reaches_output(optr, dst, is_output):
    """``live[u]``: whether some path leads from ``u`` to an output node (outputs included)."""
    n = is_output.shape[0]
    live = is_output.copy()
    for u in range(n - 1, -1, -1):
        if live[u]:
            continue
        for e in range(optr[u], optr[u + 1]):
            if live[dst[e]]:
                live[u] = True
                break
    return live


@numba.njit(cache=True)
def reached_from(indptr, src, is_input):
    """``reached[v]``: whether some path leads from an input to ``v`` (inputs included)."""
    reached = is_input.copy()
    for v in range(is_input.shape[0]):
        if reached[v]:
            continue
        for e in range(indptr[v], indptr[v + 1]):
            if reached[src[e]]:
                reached[v] = True
                break
    return reached


@numba.njit(cache=True)
def sink_depth(optr, dst):
    """Longest-path distance from each node to a sink (0 on sinks)."""
    n = optr.shape[0] - 1
    r = np.zeros(n, dtype=np.int64)
    for u in range(n - 1, -1, -1):
        for e in range(optr[u], optr[u + 1]):
            if r[dst[e]] + 1 > r[u]:
                r[u] = r[dst[e]] + 1
    return r


@numba.njit(cache=True)
def param_extents(indptr, src, par, depth, sdepth, n_params):
    """Per parameter, over its edges ``u -> v``: the number of edges; the largest depth of
    a source and the smallest depth of a head; the largest sink depth of a head and the
    smallest of a source; the first and last head position.  Returned as an (7, m) array:
    ``count, src_depth_max, head_depth_min, head_sink_max, src_sink_min, head_min, head_max``.
    """
    big = np.iinfo(np.int64).max
    out = np.empty((7, n_params), dtype=np.int64)
    out[0] = 0
    out[1] = -1
    out[2] = big
    out[3] = -1
    out[4] = big
    out[5] = big
    out[6] = -1
    for v in range(indptr.shape[0] - 1):
        for e in range(indptr[v], indptr[v + 1]):
            i = par[e]
            u = src[e]
            out[0, i] += 1
            out[1, i] = max(out[1, i], depth[u])
            out[2, i] = min(out[2, i], depth[v])
            out[3, i] = max(out[3, i], sdepth[v])
            out[4, i] = min(out[4, i], sdepth[u])
            out[5, i] = min(out[5, i], v)
            out[6, i] = max(out[6, i], v)
    return out


# --------------------------------------------------------------------------- squared network, careful
#
# Used only when the fast kernels above met a non-finite value: a weight whose square
# overflows, or a path sum beyond float64 somewhere.  Here a term with a zero factor is
# exactly 0 (an inf in float64 stands for a finite, merely huge, value, and 0 times it is
# 0), so a huge weight on paths that carry a zero weight leaves every quantity finite.


@numba.njit(cache=True)
def sq_forward_careful(indptr, src, par, q, h):
    """:func:`sq_forward` with 0 * (anything) = 0."""
    for v in range(h.shape[0]):
        s = 0.0
        for e in range(indptr[v], indptr[v + 1]):
            a = q[par[e]]
            b = h[src[e]]
            if a != 0.0 and b != 0.0:
                s += a * b
        if indptr[v] < indptr[v + 1]:
            h[v] = s


@numba.njit(cache=True)
def sq_backward_careful(optr, dst, opar, q, h, delta, kappa1):
    """:func:`sq_backward` with 0 * (anything) = 0."""
    for u in range(h.shape[0] - 1, -1, -1):
        lo = optr[u]
        hi = optr[u + 1]
        if lo == hi:
            continue
        s = 0.0
        hu = h[u]
        for e in range(lo, hi):
            i = opar[e]
            d = delta[dst[e]]
            if d != 0.0:
                if q[i] != 0.0:
                    s += q[i] * d
                if hu != 0.0:
                    kappa1[i] += hu * d
        delta[u] = s


@numba.njit(cache=True)
def tangent_careful(indptr, src, par, q, h, delta, i, start, stop):
    """``sum_{(u->v) in E_i} t_u delta_v`` for one parameter, with 0 * (anything) = 0."""
    t = np.zeros(stop - start)
    out = 0.0
    for v in range(start, stop):
        s = 0.0
        dv = delta[v]
        for e in range(indptr[v], indptr[v + 1]):
            u = src[e]
            if u < start:
                if par[e] == i and h[u] != 0.0:
                    s += h[u]
                continue
            tu = t[u - start]
            a = q[par[e]]
            if a != 0.0 and tu != 0.0:
                s += a * tu
            if par[e] == i:
                if tu != 0.0 and dv != 0.0:
                    out += tu * dv
                if h[u] != 0.0:
                    s += h[u]
        t[v - start] = s
    return out


# --------------------------------------------------------------------------- RNN, structured
#
# The squared network of one RNN layer is linear with non-negative coefficients, so
# reassociating its sums changes rounding only (every term is >= 0): these kernels let
# LLVM vectorise the dot products ("reassoc"), and keep inf/nan semantics for the checks.

_FMR = {"contract", "reassoc"}


@numba.njit(cache=True, fastmath=_FMR)
def rnn_sq_sweep(R, drive, seed, h, d, fwd, bwd):
    """One layer's squared-network time loops, forward and backward in one pass over ``R``.

    ``fwd``: ``h[0] = drive[0]``, ``h[t] = drive[t] + R h[t-1]``.
    ``bwd``: ``d[T-1] = seed[T-1]``, ``d[t] = seed[t] + R^T d[t+1]``.
    The two recursions are independent (the squared network is linear), so step ``t``
    of the forward and step ``T-1-t`` of the backward read each row of ``R`` once.
    """
    T, H = h.shape
    if fwd:
        for k in range(H):
            h[0, k] = drive[0, k]
    if bwd:
        for k in range(H):
            d[T - 1, k] = seed[T - 1, k]
    for t in range(1, T):
        hp = h[t - 1]
        hn = h[t]
        dp = d[T - t]
        dn = d[T - 1 - t]
        if bwd:
            for k in range(H):
                dn[k] = seed[T - 1 - t, k]
        j = 0
        while j + 4 <= H:  # four rows at a time: hp and dn are loaded once per four rows
            R0 = R[j]
            R1 = R[j + 1]
            R2 = R[j + 2]
            R3 = R[j + 3]
            if fwd:
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                for k in range(H):
                    x = hp[k]
                    s0 += R0[k] * x
                    s1 += R1[k] * x
                    s2 += R2[k] * x
                    s3 += R3[k] * x
                hn[j] = drive[t, j] + s0
                hn[j + 1] = drive[t, j + 1] + s1
                hn[j + 2] = drive[t, j + 2] + s2
                hn[j + 3] = drive[t, j + 3] + s3
            if bwd:
                d0 = dp[j]
                d1 = dp[j + 1]
                d2 = dp[j + 2]
                d3 = dp[j + 3]
                for k in range(H):
                    dn[k] += (d0 * R0[k] + d1 * R1[k]) + (d2 * R2[k] + d3 * R3[k])
            j += 4
        while j < H:
            Rj = R[j]
            if fwd:
                s = 0.0
                for k in range(H):
                    s += Rj[k] * hp[k]
                hn[j] = drive[t, j] + s
            if bwd:
                dj = dp[j]
                for k in range(H):
                    dn[k] += dj * Rj[k]
            j += 1


@numba.njit(cache=True, fastmath=_FM)
def rnn_block_sums(Pow, h, delta, b, n, P, Loc):
    """Per block ``a = blk * b`` of the blocked kappa2 recursion (see ``RNN._kappa2_rec``):

    ``P[k, blk, j] = sum_{i < b, a+i < n} h[a+i, k] Pow[b-i][k, j]`` and
    ``Loc[blk, k, j] = sum_{s < b, a+s < n} Pow[s][k, j] delta[a+s+2, j]``.

    ``Pow`` holds ``R^0 .. R^b``.  Tiles of eight rows ``k`` outermost: a tile's rows of
    every power stay in L2 while all blocks pass, and the tile's output rows in L1.
    """
    nblk = Loc.shape[0]
    H = h.shape[1]
    for k0 in range(0, H, 8):
        k1 = min(k0 + 8, H)
        for blk in range(nblk):
            a = blk * b
            m = min(b, n - a)
            for k in range(k0, k1):
                Prow = P[k, blk]
                Lrow = Loc[blk, k]
                for j in range(H):
                    Prow[j] = 0.0
                    Lrow[j] = 0.0
            for i in range(m):
                du = delta[a + i + 2]
                for k in range(k0, k1):
                    Prow = P[k, blk]
                    Lrow = Loc[blk, k]
                    hk = h[a + i, k]
                    pw = Pow[b - i, k]
                    ps = Pow[i, k]
                    for j in range(H):
                        Prow[j] += hk * pw[j]
                        Lrow[j] += ps[j] * du[j]


# --------------------------------------------------------------------------- squared network, blocked
#
# Graphs whose parameters are many (q beyond the L2 cache) and spread over the edges at
# random: in the CSR sweeps every q[par] is a random read from L3 or memory, and adding
# kappa1 per edge a random read-modify-write.  The compiled record then also holds the
# edges into live nodes from reached nodes grouped by (depth level, block of 2**shift
# parameters) and sorted by parameter within each group (``build_blocks``).  Nodes of one
# depth do not feed each other, so a sweep may take a level's edges in any order: within
# a group the parameters increase (q and kappa1 read as a stream from one L2-sized
# block), and the node values of the level and of the sources are the random accesses,
# over a much smaller range.  Per edge 8 bytes: the source (int32) and one uint32 key =
# (head - first node of the group's segment) << 16 | (parameter - first of its block).
# Edges that touch a node no input reaches or that reaches no output are left out: every
# term they add is exactly 0 (h[u] = 0 or delta[v] = 0).

_LOW = np.uint64(0xFFFF)
_SHIFT = np.uint64(16)


@numba.njit(cache=True)
def param_scatter(indptr, par, span):
    """Fraction of consecutive incoming edges of a node whose parameters lie more than
    ``span`` apart (how random the CSR sweeps' reads of q are)."""
    far = 0
    pairs = 0
    for v in range(indptr.shape[0] - 1):
        for e in range(indptr[v] + 1, indptr[v + 1]):
            pairs += 1
            if abs(np.int64(par[e]) - np.int64(par[e - 1])) > span:
                far += 1
    return far / max(pairs, 1)


@numba.njit(cache=True)
def block_groups(indptr, depth, n_params, shift, width):
    """How many groups :func:`build_blocks` would make at most: over the segments, the
    smaller of a segment's edges and the number of parameter blocks."""
    n = indptr.shape[0] - 1
    n_blocks = (n_params >> shift) + 1
    groups = 0
    start = 0
    for v in range(1, n + 1):
        if v == n or depth[v] != depth[v - 1] or v - start >= width:
            groups += min(indptr[v] - indptr[start], n_blocks)
            start = v
    return groups


@numba.njit(cache=True)
def _sort_by_key(key, a, b, key2, a2, b2, k, bits):
    """Stable sort of ``key[:k]`` (values < 2**bits), carrying ``a`` and ``b`` along;
    the result is left in ``key, a, b`` (``key2, a2, b2`` are scratch).  Insertion sort
    for short runs, else least-significant-digit radix sort, 8 bits a pass (11 bits for
    long runs: fewer passes, and the counts stay small next to the run)."""
    if k < 64:
        for j in range(1, k):
            kj = key[j]
            aj = a[j]
            bj = b[j]
            i = j - 1
            while i >= 0 and key[i] > kj:
                key[i + 1] = key[i]
                a[i + 1] = a[i]
                b[i + 1] = b[i]
                i -= 1
            key[i + 1] = kj
            a[i + 1] = aj
            b[i + 1] = bj
        return
    digit = 11 if k >= 1 << 14 else 8
    mask = (1 << digit) - 1
    count = np.empty(mask + 2, dtype=np.int64)
    sk, sa, sb, dk, da, db = key, a, b, key2, a2, b2
    moved = False
    for shift in range(0, bits, digit):
        count[:] = 0
        for j in range(k):
            count[((sk[j] >> shift) & mask) + 1] += 1
        if count.max() == k:
            continue  # one digit value: already in order on this digit
        for d in range(mask + 1):
            count[d + 1] += count[d]
        for j in range(k):
            d = (sk[j] >> shift) & mask
            t = count[d]
            dk[t] = sk[j]
            da[t] = sa[j]
            db[t] = sb[j]
            count[d] = t + 1
        sk, sa, sb, dk, da, db = dk, da, db, sk, sa, sb
        moved = not moved
    if moved:
        key[:k] = sk[:k]
        a[:k] = sa[:k]
        b[:k] = sb[:k]


@numba.njit(cache=True)
def build_blocks(indptr, src, par, depth, live, reached, n_params, shift, width):
    """The blocked edge groups (see the section comment).

    Segments are runs of nodes of one depth, at most ``width`` (<= 2**16) long; groups
    are the runs of one segment whose parameters share ``par >> shift`` (shift <= 16).
    Returns ``ptr`` (G+1,) int64 (group g is ``ptr[g]:ptr[g+1]``), ``node`` and ``param``
    (G,) int64 (the group's first node and first parameter), ``bsrc`` (int32) and ``bkey``
    (uint32).  Within a group edges are sorted by parameter, ties in CSR order.  Each
    segment's edges are contiguous in the incoming CSR and sorted on their own, so the
    scratch is a segment's size.
    """
    n = indptr.shape[0] - 1
    seg_start = np.empty(n + 1, dtype=np.int64)
    n_seg = 0
    for v in range(n):
        if v == 0 or depth[v] != depth[v - 1] or v - seg_start[n_seg - 1] >= width:
            seg_start[n_seg] = v
            n_seg += 1
    seg_start[n_seg] = n
    kept = 0
    most = 0
    groups = 0   # at most: a segment has no more groups than edges or blocks
    n_blocks = (n_params >> shift) + 1
    for s in range(n_seg):
        k = 0
        for v in range(seg_start[s], seg_start[s + 1]):
            if live[v]:
                for e in range(indptr[v], indptr[v + 1]):
                    if reached[src[e]]:
                        k += 1
        kept += k
        most = max(most, k)
        groups += min(k, n_blocks)
    bits = 1
    while (1 << bits) < n_params:
        bits += 1
    key = np.empty(most, dtype=np.int64)
    edge = np.empty(most, dtype=np.int32)
    head = np.empty(most, dtype=np.int32)
    key2 = np.empty(most, dtype=np.int64)
    edge2 = np.empty(most, dtype=np.int32)
    head2 = np.empty(most, dtype=np.int32)
    ptr = np.empty(groups + 1, dtype=np.int64)
    node = np.empty(groups, dtype=np.int64)
    param = np.empty(groups, dtype=np.int64)
    bsrc = np.empty(kept, dtype=np.int32)
    bkey = np.empty(kept, dtype=np.uint32)
    g = 0
    out = 0
    for s in range(n_seg):
        base = seg_start[s]
        k = 0
        for v in range(base, seg_start[s + 1]):
            if live[v]:
                for e in range(indptr[v], indptr[v + 1]):
                    if reached[src[e]]:
                        key[k] = par[e]
                        edge[k] = e
                        head[k] = v
                        k += 1
        _sort_by_key(key, edge, head, key2, edge2, head2, k, bits)
        for j in range(k):
            blk = key[j] >> shift
            if j == 0 or blk != (key[j - 1] >> shift):
                ptr[g] = out
                node[g] = base
                param[g] = blk << shift
                g += 1
            bsrc[out] = src[edge[j]]
            bkey[out] = np.uint32(((head[j] - base) << 16) | (key[j] - param[g - 1]))
            out += 1
    ptr[g] = out
    return ptr[:g + 1].copy(), node[:g].copy(), param[:g].copy(), bsrc, bkey


@numba.njit(cache=True, fastmath=_FM)
def sq_forward_blocked(ptr, node, param, bsrc, bkey, q, h):
    """:func:`sq_forward` over the blocked groups, first level first (``h`` as there).
    The statements are those of :func:`sq_forward_kappa1_blocked` without kappa1, so
    that both give the same ``h`` bit for bit."""
    for g in range(ptr.shape[0] - 1):
        hb = h[node[g]:]
        qb = q[param[g]:]
        e = _U(ptr[g])
        hi = _U(ptr[g + 1])
        while e + _U(2) <= hi:
            k0 = _U(bkey[e])
            k1 = _U(bkey[e + _U(1)])
            x0 = h[_U(bsrc[e])]
            x1 = h[_U(bsrc[e + _U(1)])]
            hb[k0 >> _SHIFT] += qb[k0 & _LOW] * x0
            hb[k1 >> _SHIFT] += qb[k1 & _LOW] * x1
            e += _U(2)
        if e < hi:
            k0 = _U(bkey[e])
            x0 = h[_U(bsrc[e])]
            hb[k0 >> _SHIFT] += qb[k0 & _LOW] * x0


@numba.njit(cache=True, fastmath=_FM)
def sq_delta_blocked(ptr, node, param, bsrc, bkey, q, delta):
    """:func:`sq_delta` over the blocked groups, last level first, in push form:
    ``delta[u] += q[par] delta[v]`` (every ``delta[v]`` of a level is final before its
    edges are read, since its outgoing edges all lead to deeper levels)."""
    for k in range(ptr.shape[0] - 1):
        g = ptr.shape[0] - 2 - k
        db = delta[node[g]:]
        qb = q[param[g]:]
        e = _U(ptr[g])
        hi = _U(ptr[g + 1])
        while e + _U(2) <= hi:
            k0 = _U(bkey[e])
            k1 = _U(bkey[e + _U(1)])
            a0 = qb[k0 & _LOW] * db[k0 >> _SHIFT]
            a1 = qb[k1 & _LOW] * db[k1 >> _SHIFT]
            delta[_U(bsrc[e])] += a0
            delta[_U(bsrc[e + _U(1)])] += a1
            e += _U(2)
        if e < hi:
            k0 = _U(bkey[e])
            delta[_U(bsrc[e])] += qb[k0 & _LOW] * db[k0 >> _SHIFT]


@numba.njit(cache=True, fastmath=_FM)
def sq_forward_kappa1_blocked(ptr, node, param, bsrc, bkey, q, h, delta, kappa1):
    """:func:`sq_forward_blocked` adding ``kappa1[i] += h[u] delta[v]`` on every edge
    (``h`` bit for bit as there)."""
    for g in range(ptr.shape[0] - 1):
        hb = h[node[g]:]
        db = delta[node[g]:]
        qb = q[param[g]:]
        kb = kappa1[param[g]:]
        e = _U(ptr[g])
        hi = _U(ptr[g + 1])
        while e + _U(2) <= hi:
            k0 = _U(bkey[e])
            k1 = _U(bkey[e + _U(1)])
            i0 = k0 & _LOW
            i1 = k1 & _LOW
            v0 = k0 >> _SHIFT
            v1 = k1 >> _SHIFT
            x0 = h[_U(bsrc[e])]
            x1 = h[_U(bsrc[e + _U(1)])]
            hb[v0] += qb[i0] * x0
            kb[i0] += x0 * db[v0]
            hb[v1] += qb[i1] * x1
            kb[i1] += x1 * db[v1]
            e += _U(2)
        if e < hi:
            k0 = _U(bkey[e])
            i0 = k0 & _LOW
            v0 = k0 >> _SHIFT
            x0 = h[_U(bsrc[e])]
            hb[v0] += qb[i0] * x0
            kb[i0] += x0 * db[v0]


# --------------------------------------------------------------------------- runs of edges
#
# Structured graphs (unrolled RNNs, CNNs, dense layers) give a node incoming edges whose
# sources *and* parameters both count up by one: h_t[j] <- h_(t-1)[k] on W_rec[j, k],
# k = 0, 1, ...  A run (first source, first parameter, length) replaces those edges' 8
# bytes of indices each by 12 bytes per run, and the sweep over a run is a contiguous dot
# product (q[b:b+n] . h[a:a+n]) that the compiler vectorises.  delta is then pushed
# backward over the same runs (delta[a:a+n] += q[b:b+n] delta[v], nodes last to first),
# so both sweeps read the compact runs and no outgoing CSR.


@numba.njit(cache=True)
def build_runs(indptr, src, par):
    """Runs of the incoming CSR: maximal stretches of a node's edges with ``src`` and
    ``par`` both increasing by one.  Returns ``(ptr, rsrc, rpar, rlen)``: node ``v``'s
    runs are ``ptr[v]:ptr[v+1]``."""
    n = indptr.shape[0] - 1
    R = 0
    for v in range(n):
        for e in range(indptr[v], indptr[v + 1]):
            if e == indptr[v] or src[e] != src[e - 1] + 1 or par[e] != par[e - 1] + 1:
                R += 1
    ptr = np.zeros(n + 1, dtype=np.int64)
    rsrc = np.empty(R, dtype=np.int32)
    rpar = np.empty(R, dtype=np.int32)
    rlen = np.zeros(R, dtype=np.int32)
    r = -1
    for v in range(n):
        for e in range(indptr[v], indptr[v + 1]):
            if e == indptr[v] or src[e] != src[e - 1] + 1 or par[e] != par[e - 1] + 1:
                r += 1
                rsrc[r] = src[e]
                rpar[r] = par[e]
            rlen[r] += 1
        ptr[v + 1] = r + 1
    return ptr, rsrc, rpar, rlen


@numba.njit(cache=True, fastmath=_FM)
def _run_dot(q, b, x, a, n):
    """``sum_k q[b+k] x[a+k]`` for ``k < n``, in four interleaved partial sums."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    k = _U(0)
    while k + _U(4) <= n:
        s0 += q[b + k] * x[a + k]
        s1 += q[b + k + _U(1)] * x[a + k + _U(1)]
        s2 += q[b + k + _U(2)] * x[a + k + _U(2)]
        s3 += q[b + k + _U(3)] * x[a + k + _U(3)]
        k += _U(4)
    while k < n:
        s0 += q[b + k] * x[a + k]
        k += _U(1)
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, fastmath=_FM)
def sq_forward_runs(ptr, rsrc, rpar, rlen, q, h):
    """:func:`sq_forward` over runs: ``h[v] = sum_runs q[b:b+n] . h[a:a+n]``."""
    for v in range(h.shape[0]):
        lo = _U(ptr[v])
        hi = _U(ptr[v + 1])
        if lo == hi:
            continue
        s = 0.0
        for r in range(lo, hi):
            s += _run_dot(q, _U(rpar[r]), h, _U(rsrc[r]), _U(rlen[r]))
        h[v] = s


@numba.njit(cache=True, fastmath=_FM)
def sq_delta_runs(ptr, rsrc, rpar, rlen, q, delta):
    """:func:`sq_delta` over runs, in push form: nodes last to first,
    ``delta[a:a+n] += q[b:b+n] * delta[v]`` (``delta[v]`` is final when ``v`` is reached:
    every edge out of ``v`` goes to a later node)."""
    n_nodes = delta.shape[0]
    for k in range(n_nodes):
        v = n_nodes - 1 - k
        dv = delta[v]
        if dv == 0.0:
            continue
        for r in range(_U(ptr[v]), _U(ptr[v + 1])):
            a = _U(rsrc[r])
            b = _U(rpar[r])
            for j in range(_U(rlen[r])):
                delta[a + j] += q[b + j] * dv


@numba.njit(cache=True, fastmath=_FM)
def sq_forward_kappa1_runs(ptr, rsrc, rpar, rlen, q, h, delta, kappa1):
    """:func:`sq_forward_runs` (the same ``h`` bit for bit) and
    ``kappa1[b:b+n] += h[a:a+n] * delta[v]`` on every run (none where ``delta[v] == 0``)."""
    for v in range(h.shape[0]):
        lo = _U(ptr[v])
        hi = _U(ptr[v + 1])
        if lo == hi:
            continue
        dv = delta[v]
        s = 0.0
        for r in range(lo, hi):
            a = _U(rsrc[r])
            b = _U(rpar[r])
            m = _U(rlen[r])
            s += _run_dot(q, b, h, a, m)
            if dv != 0.0:
                for j in range(m):
                    kappa1[b + j] += h[a + j] * dv
        h[v] = s


# --------------------------------------------------------------------------- squared network, scaled
#
# Used only when the float64 sweeps lost a value to underflow (a weight whose square is
# below the float64 range, or a path sum that is).  Every value is held as a mantissa
# ``m`` (0 or 0.5 <= m < 1) and an int64 exponent ``x``: value = m * 2**x, so no
# intermediate under- or overflows and a result is rounded to float64 once, at the end.
# Zero factors give exact zeros, as in the careful kernels.

import math  # noqa: E402  (frexp / ldexp in the kernels below)


@numba.njit(cache=True, inline="always")
def _sc_norm(s, x):
    """``s * 2**x`` renormalised (``s`` > 0 finite, or 0)."""
    if s == 0.0:
        return 0.0, np.int64(0)
    f, k = math.frexp(s)
    return f, x + k


@numba.njit(cache=True, inline="always")
def _sc_add(m1, x1, m2, x2):
    """``m1 2**x1 + m2 2**x2`` (both normalised or 0), normalised."""
    if m2 == 0.0:
        return m1, x1
    if m1 == 0.0:
        return m2, x2
    if x1 >= x2:
        d = x2 - x1
        s = m1 + (math.ldexp(m2, d) if d > -1100 else 0.0)
        return _sc_norm(s, x1)
    d = x1 - x2
    s = m2 + (math.ldexp(m1, d) if d > -1100 else 0.0)
    return _sc_norm(s, x2)


@numba.njit(cache=True)
def sq_forward_scaled(indptr, src, par, qm, qx, hm, hx):
    """:func:`sq_forward_careful` on scaled values: ``q = qm 2**qx`` per (extended)
    parameter, ``h = hm 2**hx`` per node (inputs preset to 1 = 0.5 * 2**1)."""
    for v in range(hm.shape[0]):
        lo = indptr[v]
        hi = indptr[v + 1]
        if lo == hi:
            continue
        am = 0.0
        ax = np.int64(0)
        for e in range(lo, hi):
            i = par[e]
            u = src[e]
            if qm[i] != 0.0 and hm[u] != 0.0:
                tm, tx = _sc_norm(qm[i] * hm[u], qx[i] + hx[u])
                am, ax = _sc_add(am, ax, tm, tx)
        hm[v] = am
        hx[v] = ax


@numba.njit(cache=True)
def sq_backward_scaled(optr, dst, opar, qm, qx, hm, hx, dm, dx, km, kx):
    """:func:`sq_backward_careful` on scaled values (``delta`` preset to 1 on the outputs,
    ``kappa1`` = ``km 2**kx`` zeros on entry)."""
    for u in range(hm.shape[0] - 1, -1, -1):
        lo = optr[u]
        hi = optr[u + 1]
        if lo == hi:
            continue
        am = 0.0
        ax = np.int64(0)
        for e in range(lo, hi):
            i = opar[e]
            v = dst[e]
            if dm[v] != 0.0:
                if qm[i] != 0.0:
                    tm, tx = _sc_norm(qm[i] * dm[v], qx[i] + dx[v])
                    am, ax = _sc_add(am, ax, tm, tx)
                if hm[u] != 0.0:
                    tm, tx = _sc_norm(hm[u] * dm[v], hx[u] + dx[v])
                    km[i], kx[i] = _sc_add(km[i], kx[i], tm, tx)
        dm[u] = am
        dx[u] = ax


@numba.njit(cache=True)
def tangent_scaled(indptr, src, par, qm, qx, hm, hx, dm, dx, i, start, stop):
    """:func:`tangent_careful` on scaled values: ``(m, x)`` of
    ``sum_{(u->v) in E_i} t_u delta_v``."""
    n = stop - start
    tm = np.zeros(n)
    tx = np.zeros(n, dtype=np.int64)
    om = 0.0
    ox = np.int64(0)
    for v in range(start, stop):
        am = 0.0
        ax = np.int64(0)
        for e in range(indptr[v], indptr[v + 1]):
            u = src[e]
            p = par[e]
            if u >= start:
                j = u - start
                if tm[j] != 0.0:
                    if qm[p] != 0.0:
                        cm, cx = _sc_norm(qm[p] * tm[j], qx[p] + tx[j])
                        am, ax = _sc_add(am, ax, cm, cx)
                    if p == i and dm[v] != 0.0:
                        cm, cx = _sc_norm(tm[j] * dm[v], tx[j] + dx[v])
                        om, ox = _sc_add(om, ox, cm, cx)
            if p == i and hm[u] != 0.0:
                am, ax = _sc_add(am, ax, hm[u], hx[u])
        tm[v - start] = am
        tx[v - start] = ax
    return om, ox
