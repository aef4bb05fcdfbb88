r"""The path regularizer :math:`\gamma^2` and its curvature terms :math:`\kappa^{(1)}, \kappa^{(2)}, \kappa`.

Everything here is computed on the *squared network*: the same graph with every weight
squared, :math:`q = p^2`, run on the all-ones input.  Its node values are

.. math::

    h_v = 1 \ (v \in V_{in}), \qquad h_v = \sum_{u \to v} q_{\pi(u \to v)} h_u ,

(all :math:`\ge 0`, so the ReLU is the identity) and :math:`g(q) = \sum_{v \in V_{out}} h_v`
is the path regularizer of eqs. (2)-(3):

.. math::

    \gamma^2(p) = \sum_{\zeta \in \mathcal{P}} \prod_{e \in \zeta} w_e^2 = g(p^2).

With :math:`\delta_v = \partial g / \partial h_v` (one backward pass seeded with 1 at
every output), eq. (8) splits as

.. math::

    \kappa_i = \tfrac12 \frac{\partial^2 \gamma^2}{\partial p_i^2}
             = \underbrace{\frac{\partial g}{\partial q_i}}_{\kappa^{(1)}_i}
             + \underbrace{2 q_i \frac{\partial^2 g}{\partial q_i^2}}_{\kappa^{(2)}_i},
    \qquad
    \kappa^{(1)}_i = \sum_{(u \to v) \in E_i} h_u \delta_v \quad \text{(Theorem 3)}.

:math:`\kappa^{(2)}` here is the *exact* term, so :math:`\kappa = \kappa^{(1)} + \kappa^{(2)}`
(Lemma 1).  The paper's printed eq. (10) equals :math:`\tfrac12 \kappa^{(2)}` and its
eq. (11) equals :math:`\tfrac14 \kappa^{(2)}` (see :mod:`pathgeom.reference`).

Costs: :math:`\gamma^2` and :math:`\kappa^{(1)}` take one forward and one backward sweep
over the edges, :math:`O(|E|)`.  :math:`\kappa^{(2)}_i` takes one forward-tangent sweep per
parameter that can interact, :math:`O(|E|)` each, batched over many parameters per sweep
and spread over numba's threads; parameters that the depth certificate proves zero
(:func:`kappa2_support`) cost nothing.
"""

import math
import numbers
import warnings
from typing import NamedTuple, Optional


import numpy as np

from . import _threads, engine
from ._errors import PathOverflowError
from ._validation import as_params, check_bool, first_nonfinite_row
from .graph import SharedGraph

__all__ = ["PathQuantities", "path_quantities", "gamma2", "kappa1", "kappa2", "kappa",
           "kappa2_support", "squared_values", "squared_network", "path_norm"]

#: Parameters per forward-tangent sweep in :func:`kappa2` (one SIMD-friendly row per node).
TANGENT_BLOCK = 64
#: Largest tangent buffer (bytes) one thread may hold; wider graphs get narrower blocks.
TANGENT_MEMORY = 128 << 20


class PathQuantities(NamedTuple):
    r"""The results of :func:`path_quantities`.

    Attributes
    ----------
    gamma2 : float
        :math:`\gamma^2(p)`, eqs. (2)-(3).
    kappa1 : ndarray, shape (n_params,)
        :math:`\kappa^{(1)}`, eq. (9) / Theorem 3.
    kappa2 : ndarray, shape (n_params,) or None
        Exact :math:`\kappa^{(2)}` (None when not requested).
    kappa : ndarray, shape (n_params,) or None
        :math:`\kappa = \kappa^{(1)} + \kappa^{(2)} = \tfrac12 \partial^2\gamma^2/\partial p^2`.
    """

    gamma2: float
    kappa1: np.ndarray
    kappa2: Optional[np.ndarray]
    kappa: Optional[np.ndarray]


def _check_graph(g):
    if not isinstance(g, SharedGraph):
        raise TypeError(f"expected a pathgeom.SharedGraph, got {type(g).__name__}; build one "
                        f"with SharedGraph.from_edges / from_arrays / from_networkx")


def _own_method(obj, name):
    """Whether ``obj`` is a network object (not a SharedGraph) with its own method
    ``name``: the module's functions hand such objects to it."""
    return not isinstance(obj, SharedGraph) and callable(getattr(obj, name, None))


def _overflow(g, row, what):
    raise PathOverflowError(
        f"{what} overflowed float64 at node {g.nodes[row]!r} (position {row}): the squared "
        f"network's path sums exceed the float64 range; scale the weights down "
        f"(scaling p by c < 1 multiplies each path's term by c**(2 * path length))")


def _dead(g):
    """Cached per graph: positions of the nodes that reach no output, and of those no
    input reaches (their h, resp. delta, multiply nothing and are set to 0)."""
    dead = g._cache.get("dead_nodes")
    if dead is None:
        c = g.compiled
        dead = g._cache["dead_nodes"] = (np.flatnonzero(~c.live), np.flatnonzero(~c.reached))
    return dead


def _finite(x):
    """Whether every entry of ``x`` (>= 0 or nan) is finite: one sum, and the elementwise
    test only when the sum itself is not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(x)):
            return True
    return bool(np.isfinite(x).all())


def _squared_forward(g, q, careful=False):
    """Node values ``h`` of the squared network; nodes that reach no output are zeroed.

    With ``careful=True`` (the rerun after a non-finite value) a term with a zero factor
    is exactly 0 and non-finite values are left for the caller to judge.
    """
    c = g.compiled
    h = np.zeros(g.n_nodes)
    h[c.inputs] = 1.0
    engine.sq_forward(c, q, h, careful=careful)
    h[_dead(g)[0]] = 0.0  # they feed nothing that is summed; zeroing keeps inf*0 out of kappa
    if not careful and not _finite(h):
        _overflow(g, first_nonfinite_row(h), "gamma^2")
    return h


def _squared_delta(g, q):
    """``delta = dg/dh`` (it does not depend on ``h``: the squared network is linear)."""
    c = g.compiled
    delta = np.zeros(g.n_nodes)
    delta[c.outputs] = 1.0
    engine.sq_delta(c, q, delta)
    delta[_dead(g)[1]] = 0.0  # h = 0 there: these sensitivities multiply nothing
    if not _finite(delta):
        _overflow(g, first_nonfinite_row(delta), "the output sensitivity delta")
    return delta


def _squared_sweeps(g, q):
    """``h``, ``delta`` and ``kappa1 = dg/dq`` in two sweeps: ``delta`` backward, then
    ``h`` forward adding each edge's ``h_u delta_v`` to its parameter's ``kappa1``.
    Raises PathOverflowError for any non-finite value (the callers then rerun carefully)."""
    c = g.compiled
    delta = _squared_delta(g, q)
    h = np.zeros(g.n_nodes)
    h[c.inputs] = 1.0
    k1 = np.zeros(c.n_ext)
    engine.sq_forward_kappa1(c, q, h, delta, k1)
    k1 = k1[:g.n_params]
    h[_dead(g)[0]] = 0.0
    if not _finite(h):
        _overflow(g, first_nonfinite_row(h), "gamma^2")
    # every value of the squared network is >= 0: kappa1_i, a sum of at most
    # max_uses products h_u delta_v, is finite when max_uses max(h) max(delta) is
    # (a nan anywhere fails the comparison), else each entry is tested
    with np.errstate(over="ignore", invalid="ignore"):
        bound = _max_uses(g) * h.max(initial=0.0) * delta.max(initial=0.0)
    if not bound <= _HUGE and not _finite(k1):
        i = int(np.flatnonzero(~np.isfinite(k1))[0])
        raise PathOverflowError(f"kappa1[{i}] overflowed float64; scale the weights down")
    return h, delta, k1


def _squared_backward_careful(g, q, h):
    """``delta`` and ``kappa1`` with 0 * (anything) = 0 (the rerun after a non-finite
    value); non-finite values are left for the caller to judge."""
    c = g.compiled
    delta = np.zeros(g.n_nodes)
    delta[c.outputs] = 1.0
    k1 = np.zeros(c.n_ext)
    engine.sq_backward_careful(c, q, h, delta, k1)
    delta[_dead(g)[1]] = 0.0
    return delta, k1[:g.n_params]


def _gamma2_from(g, h):
    """Sum of the squared network's outputs, with the overflow of the sum itself caught."""
    with np.errstate(over="ignore"):
        total = float(h[g.compiled.outputs].sum())
    if not np.isfinite(total):
        raise PathOverflowError("gamma^2 overflowed float64 in the sum over the outputs (each "
                                "output's path sum is finite); scale the weights down")
    return total


def _setup(g, p):
    """Validated ``p`` squared, extended by the squared fixed weights (the vector the
    kernels read: its length is ``g.compiled.n_ext``; slice ``[:g.n_params]`` for the
    parameters' own quantities).  Entries of ``q`` may be inf (a weight whose square
    overflows): the callers decide whether that matters (it does not when every path
    through the parameter also carries a zero weight)."""
    return _setup_stats(g, p)[0]


def _setup_stats(g, p):
    """:func:`_setup`, and what its reductions tell: ``(q, finite, least)`` with
    ``finite`` whether every entry of ``q`` is finite and ``least`` its least entry.
    ``p``'s finiteness is read off the largest square (one reduction instead of a test
    per entry and a sum)."""
    _check_graph(g)
    arr = as_params(p, g.n_params, finite=False)
    with np.errstate(over="ignore", invalid="ignore"):
        q = arr * arr
        top = q.max(initial=0.0)
    if not top <= _HUGE:                       # inf or nan: a non-finite p, or a square
        as_params(arr, g.n_params)            # that overflows (raises for the former)
    least = q.min(initial=np.inf)
    c = g.compiled
    if c.fixed.shape[0]:
        with np.errstate(over="ignore"):
            fq = np.abs(c.fixed) ** 2.0
        top = max(top, float(fq.max()))
        least = min(least, float(fq.min()))
        q = engine.extended_sq(c, q)
    return q, bool(top <= _HUGE), least


def _blame_overflow(g, q, h, what):
    """Raise for an overflowed quantity: name a parameter whose square overflows and that
    carries a non-zero value, if there is one, else the first non-finite node."""
    c = g.compiled
    if not _finite(q):
        hit = np.flatnonzero(~np.isfinite(q[c.par]) & (h[c.src] != 0))
        if hit.size:
            i = int(c.par[hit[0]])
            if i >= g.n_params:
                raise PathOverflowError(
                    f"the square of the fixed weight {float(c.fixed[i - g.n_params])!r} overflows "
                    f"float64 and it lies on a path whose other weights are non-zero, so "
                    f"{what} does too; scale the fixed weights down")
            raise PathOverflowError(
                f"p[{i}]**2 overflows float64 and p[{i}] lies on a path whose other "
                f"weights are non-zero, so {what} does too; scale the weights down")
    if np.isfinite(h).all():
        raise PathOverflowError(f"{what} overflowed float64 in the sum over the outputs "
                                f"(each output's path sum is finite); scale the weights down")
    _overflow(g, first_nonfinite_row(h), what)


def _q_overflow(q, p=None):
    i = int(np.flatnonzero(~np.isfinite(q))[0])
    where = "" if p is None else f" (p[{i}] = {p[i]})"
    raise PathOverflowError(f"p[{i}]**2 overflows float64{where} and p[{i}] lies on a path "
                            f"whose other weights are non-zero; scale the weights down")


def _careful_quantities(g, q, with_kappa2):
    """All quantities with 0 * (anything) = 0; PathOverflowError only for a result that is
    itself beyond float64, naming the first node or parameter where it went.  Returns the
    quantities and the ``h``, ``delta`` they came from."""
    h = _squared_forward(g, q, careful=True)
    delta, k1 = _squared_backward_careful(g, q, h)
    with np.errstate(over="ignore"):
        total = float(h[g.compiled.outputs].sum())
    if not np.isfinite(total):
        _blame_overflow(g, q, h, "gamma^2")
    if not np.isfinite(k1).all():
        i = int(np.flatnonzero(~np.isfinite(k1))[0])
        if not np.isfinite(q[i]):
            _q_overflow(q[:g.n_params])
        raise PathOverflowError(f"kappa1[{i}] overflowed float64; scale the weights down")
    if not with_kappa2:
        return PathQuantities(total, k1, None, None), h, delta
    c = g.compiled
    support = _support_and_blocks(g)[0]
    k2 = np.zeros(g.n_params)
    vmin, vmax = _param_head_range(g)
    for i in support.tolist():
        out = engine.tangent_one(c, q, h, delta, i, int(vmin[i]), int(vmax[i]) + 1)
        if out != 0.0:
            with np.errstate(over="ignore", invalid="ignore"):   # judged below
                k2[i] = 4.0 * q[i] * out
    with np.errstate(over="ignore"):
        k = k1 + k2
    if not np.isfinite(k).all():
        i = int(np.flatnonzero(~np.isfinite(k))[0])
        raise PathOverflowError(f"kappa2[{i}] overflowed float64; scale the weights down")
    return PathQuantities(total, k1, k2, k), h, delta


def _param_head_range(g):
    """Per parameter, the first and last head position of its edges."""
    c = g.compiled
    heads = np.repeat(np.arange(g.n_nodes), np.diff(c.indptr))
    vmin = np.full(c.n_ext, g.n_nodes, dtype=np.int64)
    vmax = np.full(c.n_ext, -1, dtype=np.int64)
    np.minimum.at(vmin, c.par, heads)
    np.maximum.at(vmax, c.par, heads)
    return vmin, vmax


# ---------------------------------------------------------------------------- underflow
#
# A path product can be representable while a factor of it is not: weights (1e-170, 1e85,
# 1e85) on a chain give gamma^2 = 1, but (1e-170)**2 is 0 in float64.  The float sweeps
# are checked for such losses (a non-zero weight whose square is below the normal
# float64 range, or a node value, sensitivity or kappa that is below it although a
# non-zero path makes it) and, when one is found, the quantities are recomputed on scaled
# values (mantissa and int64 exponent per number, pathgeom._kernels.sq_forward_scaled &c.):
# every result is then the float64 rounding of the exact sums' value.

_TINY = np.finfo(np.float64).tiny
_HUGE = np.finfo(np.float64).max


def _weights(g, p):
    """The weight per (extended) parameter index of the compiled edges: ``p``, then the
    graph's fixed edge weights when it has any."""
    fixed = getattr(g.compiled, "fixed", None)
    if fixed is not None and fixed.shape[0]:
        return np.concatenate([p, fixed])
    return p


def _squares_underflow(w, q):
    """Whether a non-zero weight's square is below the normal float64 range (one
    reduction when no square is that small)."""
    if not q.size or not q.min() < _TINY:   # (nan: not here; the callers check finiteness)
        return False
    return np.count_nonzero(q < _TINY) != np.count_nonzero(w == 0)


def _k1_structure(g):
    """Cached per graph: per (extended) parameter, whether one of its edges leads from a
    node an input reaches to a node that reaches an output."""
    s = g._cache.get("k1_structure")
    if s is None:
        c = g.compiled
        heads = np.repeat(np.arange(g.n_nodes), np.diff(c.indptr))
        ok = c.reached[c.src] & c.live[heads]
        s = np.zeros(max(int(c.par.max()) + 1 if c.par.size else 0, g.n_params), bool)
        s[c.par[ok]] = True
        g._cache["k1_structure"] = s
    return s


def _nonzero_structure(g, w):
    """``h``, ``delta`` and ``kappa1`` of the squared network with every non-zero weight
    set to 1 (path counts, possibly inf): > 0 exactly where a non-zero path makes the
    quantity non-zero."""
    c = g.compiled
    nz = (w != 0).astype(np.float64)
    h = np.zeros(g.n_nodes)
    h[c.inputs] = 1.0
    engine.sq_forward(c, nz, h, careful=True)
    h[_dead(g)[0]] = 0.0
    delta, k1 = _backward_careful_ext(g, nz, h)
    return h, delta, k1


def _backward_careful_ext(g, q, h):
    c = g.compiled
    delta = np.zeros(g.n_nodes)
    delta[c.outputs] = 1.0
    k1 = np.zeros(q.shape[0])
    engine.sq_backward_careful(c, q, h, delta, k1)
    delta[_dead(g)[1]] = 0.0
    return delta, k1


def _max_uses(g):
    """Cached per graph: the most edges any (extended) parameter index has."""
    m = g._cache.get("max_uses")
    if m is None:
        par = g.compiled.par
        m = g._cache["max_uses"] = float(np.bincount(par).max()) if par.size else 0.0
    return m


def _outside(g):
    """Cached per graph: how many nodes are outside ``live & reached`` (their ``h`` and
    ``delta`` are exactly 0 after the sweeps), and how many parameters have no edge from
    a reached node into a live one (their ``kappa1`` is exactly 0)."""
    out = g._cache.get("outside_counts")
    if out is None:
        c = g.compiled
        n_nodes = int(np.count_nonzero(~(c.live & c.reached)))
        n_par = g.n_params - int(np.count_nonzero(_k1_structure(g)[:g.n_params]))
        out = g._cache["outside_counts"] = (n_nodes, n_par)
    return out


def _only_structural_zeros(x, n_zero):
    """Whether the entries below the normal range are just the ``n_zero`` that the
    structure makes exactly 0 (so none that a non-zero path makes positive underflowed)."""
    if n_zero == 0:
        return x.min(initial=1.0) >= _TINY
    return np.count_nonzero(x < _TINY) == n_zero


def _lost_to_underflow(g, w, h, delta=None, k1=None):
    """Whether a node value (or sensitivity, or kappa1) that a non-zero path makes
    non-zero came out below the normal float64 range."""
    n_nodes, n_par = _outside(g)
    if _only_structural_zeros(h, n_nodes) and \
            (delta is None or _only_structural_zeros(delta, n_nodes)) and \
            (k1 is None or _only_structural_zeros(k1, n_par)):
        return False   # nothing below the normal range but the structural zeros
    c = g.compiled
    mask = c.live & c.reached
    with np.errstate(invalid="ignore"):
        cand_h = mask & (h < _TINY)
        cand_d = mask & (delta < _TINY) if delta is not None else None
        cand_k = (k1 < _TINY) if k1 is not None else None
    if not (cand_h.any() or (cand_d is not None and cand_d.any())
            or (cand_k is not None and cand_k.any())):
        return False
    if (w != 0).all():
        if cand_h.any() or (cand_d is not None and cand_d.any()):
            return True
        return bool((cand_k & _k1_structure(g)[:k1.shape[0]]).any())
    h_nz, d_nz, k_nz = _nonzero_structure(g, w)
    if (cand_h & (h_nz > 0)).any():
        return True
    if cand_d is not None and (cand_d & (d_nz > 0)).any():
        return True
    return bool(cand_k is not None and (cand_k & (k_nz[:k1.shape[0]] > 0)).any())


def _scaled(a):
    """``a >= 0`` as (mantissa, int64 exponent)."""
    m, x = np.frexp(a)
    return m, x.astype(np.int64)


def _unscaled(m, x):
    """float64 of ``m * 2**x`` (inf beyond the range, rounded to 0 or a subnormal below)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(m, np.clip(x, -4000, 4000).astype(np.int32))


def _sc_add(m1, x1, m2, x2):
    """Elementwise ``m1 2**x1 + m2 2**x2`` of scaled arrays, normalised."""
    x = np.maximum(np.where(m1 != 0, x1, x2), np.where(m2 != 0, x2, x1))
    with np.errstate(under="ignore"):
        s = (np.ldexp(m1, np.clip(x1 - x, -4000, 0).astype(np.int32))
             + np.ldexp(m2, np.clip(x2 - x, -4000, 0).astype(np.int32)))
    f, k = np.frexp(s)
    return f, np.where(f != 0, x + k, 0)


def _sc_total(m, x):
    """float64 of the sum of scaled values."""
    nz = m != 0
    if not nz.any():
        return 0.0
    top = int(x[nz].max())
    with np.errstate(under="ignore"):
        s = float(np.ldexp(m[nz], np.clip(x[nz] - top, -4000, 0).astype(np.int32)).sum())
    return float(_unscaled(np.array([s]), np.array([top]))[0])


def _scaled_sweeps(g, w):
    """Scaled ``q``, ``h``, ``delta`` and ``kappa1`` (per extended parameter)."""
    c = g.compiled
    m, x = _scaled(np.abs(w))
    qm, qx = _scaled(m * m)
    qx = qx + 2 * x
    qx[qm == 0] = 0
    n = g.n_nodes
    hm = np.zeros(n)
    hx = np.zeros(n, dtype=np.int64)
    hm[c.inputs] = 0.5
    hx[c.inputs] = 1
    engine.sq_forward_scaled(c, qm, qx, hm, hx)
    dead_h, dead_d = _dead(g)
    hm[dead_h] = 0.0
    dm = np.zeros(n)
    dx = np.zeros(n, dtype=np.int64)
    dm[c.outputs] = 0.5
    dx[c.outputs] = 1
    km = np.zeros(w.shape[0])
    kx = np.zeros(w.shape[0], dtype=np.int64)
    engine.sq_backward_scaled(c, qm, qx, hm, hx, dm, dx, km, kx)
    dm[dead_d] = 0.0
    return (qm, qx), (hm, hx), (dm, dx), (km, kx)


def _scaled_gamma2(g, w):
    _, (hm, hx), _, _ = _scaled_sweeps(g, w)
    out = g.compiled.outputs
    total = _sc_total(hm[out], hx[out])
    if not np.isfinite(total):
        raise PathOverflowError("gamma^2 overflowed float64: the sum over the paths is beyond "
                                "the float64 range; scale the weights down")
    return total


def _scaled_k2(g, q, h, delta, params):
    """Scaled ``kappa2`` of ``params`` (``q``, ``h``, ``delta``: scaled pairs)."""
    c = g.compiled
    vmin, vmax = _param_head_range(g)
    m = np.zeros(params.shape[0])
    x = np.zeros(params.shape[0], dtype=np.int64)
    for j, i in enumerate(params.tolist()):
        om, ox = engine.tangent_one_scaled(c, q[0], q[1], h[0], h[1], delta[0], delta[1], i,
                                           int(vmin[i]), int(vmax[i]) + 1)
        if om != 0.0 and q[0][i] != 0.0:
            f, k = np.frexp(q[0][i] * om)
            m[j], x[j] = f, int(k) + int(q[1][i]) + int(ox) + 2
    return m, x


def _scaled_quantities(g, w, with_kappa2):
    """All quantities from the scaled sweeps; PathOverflowError only for a result beyond
    float64."""
    q, (hm, hx), delta, (km, kx) = _scaled_sweeps(g, w)
    out = g.compiled.outputs
    total = _sc_total(hm[out], hx[out])
    if not np.isfinite(total):
        raise PathOverflowError("gamma^2 overflowed float64: the sum over the paths is beyond "
                                "the float64 range; scale the weights down")
    n = g.n_params
    km, kx = km[:n], kx[:n]
    k1 = _unscaled(km, kx)
    if not np.isfinite(k1).all():
        i = int(np.flatnonzero(~np.isfinite(k1))[0])
        raise PathOverflowError(f"kappa1[{i}] overflowed float64; scale the weights down")
    if not with_kappa2:
        return PathQuantities(total, k1, None, None)
    support = _support_and_blocks(g)[0]
    m2 = np.zeros(n)
    x2 = np.zeros(n, dtype=np.int64)
    m2[support], x2[support] = _scaled_k2(g, q, (hm, hx), delta, support)
    k2 = _unscaled(m2, x2)
    k = _unscaled(*_sc_add(km, kx, m2, x2))
    for name, arr in (("kappa2", k2), ("kappa", k)):
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise PathOverflowError(f"{name}[{i}] overflowed float64; scale the weights down")
    return PathQuantities(total, k1, k2, k)


def _fix_kappa2_underflow(g, w, r, delta):
    r"""``r`` with the kappa2 (and kappa) entries that may have lost a tangent value to
    underflow recomputed on scaled values (when h, delta and kappa1 were fine).

    A tangent value :math:`t_v` may be subnormal however normal ``h`` and ``delta`` are;
    each operation on it then errs by at most :math:`2^{-1075}` absolutely, and an error
    :math:`\epsilon` at :math:`t_v` moves :math:`\kappa^{(2)}_i` by at most
    :math:`4 \epsilon (L + 1) \delta_v` (:math:`L` the longest path: a path holds at most
    :math:`L` edges of :math:`E_i`).  So an entry above :math:`2^{50}` times
    :math:`4 \cdot 2^{-1075} |E| (L + 1) \max \delta` has lost less than
    :math:`2^{-50}` of itself; the others (with a non-zero weight) are recomputed."""
    support = _support_and_blocks(g)[0]
    if not support.size:
        return r
    c = g.compiled
    depth = int(c.depth.max(initial=0)) + 1
    bound = 2.0 ** -1073 * max(c.src.shape[0], 1) * depth * float(delta.max(initial=0))  # 4 * 2**-1075
    with np.errstate(over="ignore"):
        floor = max(_TINY, bound * 2.0 ** 50)
    sus = support[(np.abs(r.kappa2[support]) < floor) & (w[support] != 0)]
    if not sus.size:
        return r
    q, h, delta, (km, kx) = _scaled_sweeps(g, w)
    m2, x2 = _scaled_k2(g, q, h, delta, sus)
    k2 = r.kappa2.copy()
    k2[sus] = _unscaled(m2, x2)
    k = r.kappa.copy()
    k[sus] = _unscaled(*_sc_add(km[sus], kx[sus], m2, x2))
    return PathQuantities(r.gamma2, r.kappa1, k2, k)


def squared_network(g, p):
    """Deprecated name of :func:`squared_values` (it returns arrays, not a network)."""
    warnings.warn("pathgeom.squared_network is deprecated: use pathgeom.squared_values (the "
                  "same (h, delta) arrays)", DeprecationWarning, stacklevel=2)
    return squared_values(g, p)


def squared_values(g, p):
    r"""Node values :math:`h` and sensitivities :math:`\delta` of the squared network.

    .. math::

        h_v = \gamma^2_v = \sum_{\zeta : V_{in} \leadsto v} \prod_{e \in \zeta} w_e^2,
        \qquad
        \delta_v = \frac{\partial g}{\partial h_v} = \sum_{\zeta : v \leadsto V_{out}}
                   \prod_{e \in \zeta} w_e^2 .

    Parameters
    ----------
    g : SharedGraph
    p : array_like, shape (n_params,)

    Returns
    -------
    h, delta : ndarray, shape (n_nodes,)
        In :attr:`SharedGraph.nodes` order.  ``h`` is set to 0 on nodes that reach no
        output and ``delta`` on nodes that no input reaches: there they multiply nothing
        in any path quantity (and zeroing them keeps an overflow in such a dead branch
        from turning into ``inf * 0``).

    Examples
    --------
    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    >>> h, delta = pathgeom.squared_values(g, [3.0])
    >>> h, delta
    (array([ 1.,  9., 81.]), array([81.,  9.,  1.]))
    """
    q = _setup(g, p)
    if not _finite(q):
        _q_overflow(q)
    w = _weights(g, np.asarray(p, dtype=np.float64))   # p validated by _setup
    h = _squared_forward(g, q)
    delta = _squared_delta(g, q)
    with np.errstate(under="ignore"):
        lost = _squares_underflow(w, q if q.shape == w.shape else w * w)
    if lost or _lost_to_underflow(g, w, h, delta):
        _, (hm, hx), (dm, dx), _ = _scaled_sweeps(g, w)
        h, delta = _unscaled(hm, hx), _unscaled(dm, dx)
        if not (np.isfinite(h).all() and np.isfinite(delta).all()):
            _overflow(g, first_nonfinite_row(np.where(np.isfinite(h), delta, h)),
                      "h or delta")
    return h, delta


def gamma2(g, p):
    r"""The path regularizer :math:`\gamma^2(p) = \sum_{\zeta} \prod_{e \in \zeta} p_{\pi(e)}^2` (eqs. 2-3).

    One forward sweep of the squared network on the all-ones input.

    Parameters
    ----------
    g : SharedGraph or network object
        A network of this library with its own ``gamma2`` (:func:`~pathgeom.cnn`,
        :func:`~pathgeom.mlp`, :func:`~pathgeom.rnn`, :func:`~pathgeom.from_onnx`) is
        handed to it (see :func:`path_quantities`).
    p : array_like, shape (n_params,)

    Returns
    -------
    float

    Raises
    ------
    PathOverflowError
        If a path sum exceeds float64; the message names the node.

    Examples
    --------
    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    >>> pathgeom.gamma2(g, [2.0])  # one path, p**4
    16.0
    """
    if _own_method(g, "gamma2"):
        return g.gamma2(p)
    q = _setup(g, p)
    w = _weights(g, np.asarray(p, dtype=np.float64))   # p validated by _setup
    with np.errstate(under="ignore", over="ignore"):
        if _squares_underflow(w, q if q.shape == w.shape else w * w):
            return _scaled_gamma2(g, w)
    if _finite(q):
        try:
            h = _squared_forward(g, q)
            total = _gamma2_from(g, h)
            if _lost_to_underflow(g, w, h):
                return _scaled_gamma2(g, w)
            return total
        except PathOverflowError:
            pass
    h = _squared_forward(g, q, careful=True)   # 0 * (anything) = 0: decides what overflows
    with np.errstate(over="ignore"):
        total = float(h[g.compiled.outputs].sum())
    if not np.isfinite(total):
        try:
            return _scaled_gamma2(g, w)   # an overflow that met a factor lost to underflow?
        except PathOverflowError:
            _blame_overflow(g, q, h, "gamma^2")
    if _lost_to_underflow(g, w, h):
        return _scaled_gamma2(g, w)
    return total


def kappa1(g, p):
    r""":math:`\kappa^{(1)}_i = \partial g / \partial q_i = \sum_{(u\to v) \in E_i} h_u \delta_v` (eq. 9, Theorem 3).

    One forward and one backward sweep of the squared network, :math:`O(|E|)`.

    Examples
    --------
    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    >>> pathgeom.kappa1(g, [2.0])  # 2 p**2
    array([8.])
    """
    return path_quantities(g, p, with_kappa2=False).kappa1


def kappa2(g, p, client=None):
    r"""The exact :math:`\kappa^{(2)}_i = 2 q_i \,\partial^2 g / \partial q_i^2`, any sharing pattern.

    Over pairs of edges :math:`e = (u\to v)` before :math:`e' = (u' \to v')` on a path,
    both in :math:`E_i`, with :math:`M(v, u')` the squared-network path sum from
    :math:`v` to :math:`u'` (:math:`M(v, v) = 1`):

    .. math::

        \kappa^{(2)}_i = 4 q_i \sum_{e \prec e' \in E_i} h_u \, M(v, u') \, \delta_{v'} .

    Computed with the forward tangent of the squared network along :math:`q_i`,
    :math:`t_v = \sum_{u \to v} q\, t_u + \sum_{(u \to v) \in E_i} h_u`, which gives
    :math:`\partial^2 g/\partial q_i^2 = 2 \sum_{(u \to v) \in E_i} t_u \delta_v`.
    This is twice the paper's printed eq. (10) and four times its eq. (11).

    Cost: parameters that :func:`kappa2_support` excludes are exactly 0 and free; each
    other parameter costs one tangent sweep over the edges between its first and last
    edge, :math:`O(|E|)`, done ``TANGENT_BLOCK`` (64) parameters at a time (one SIMD row
    per node; fewer on graphs so wide that the rows would exceed ``TANGENT_MEMORY`` per
    thread) and in parallel over numba's threads (``numba.set_num_threads``).

    Examples
    --------
    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    >>> pathgeom.kappa2(g, [2.0])  # 4 p**2; the printed eq. (10) would give 2 p**2
    array([16.])

    With ``client=`` (a ``dask.distributed.Client``) the tangent blocks run on the
    cluster's workers instead (see :func:`path_quantities`).
    """
    return path_quantities(g, p, client=client).kappa2


def kappa(g, p):
    r""":math:`\kappa_i = \tfrac12\, \partial^2 \gamma^2 / \partial p_i^2 = \kappa^{(1)}_i + \kappa^{(2)}_i` (eq. 8, Lemma 1).

    Examples
    --------
    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    >>> pathgeom.kappa(g, [2.0])  # gamma^2 = p**4, half its second derivative is 6 p**2
    array([24.])
    """
    return path_quantities(g, p).kappa


def _support_and_blocks(g):
    """Cached per graph: parameters not certified zero, grouped into tangent blocks."""
    cache = g._cache
    key = ("kappa2_blocks", TANGENT_BLOCK, TANGENT_MEMORY)
    if key not in cache:
        c = g.compiled
        sdepth = engine.sink_depth(c)
        extents = engine.param_extents(c, sdepth, c.n_ext)[:, :g.n_params]  # no fixed ones
        count, src_dmax, head_dmin, head_smax, src_smin, vmin, vmax = extents
        # a path v ~> u' between edges (u -> v), (u' -> v') of E_i needs
        # depth(v) <= depth(u') and sink_depth(v) >= sink_depth(u'); so if every source is
        # shallower than every head, or every head is nearer the sinks than every source,
        # no path holds two edges of E_i and kappa2_i = 0 exactly
        certified = (src_dmax < head_dmin) | (head_smax < src_smin)
        support = np.flatnonzero((count >= 2) & ~certified)
        order = support[np.argsort(vmin[support], kind="stable")]
        width = TANGENT_BLOCK
        # every block's node range lies within the support's overall range
        span = int(vmax[support].max() - vmin[support].min()) + 1 if support.size else 1
        while width > 1 and span * width * 8 > TANGENT_MEMORY:
            width //= 2
        n_blocks = -(-order.size // width)
        blocks = np.full((n_blocks, width), -1, dtype=np.int64)
        blocks.flat[:order.size] = order
        ranges = np.zeros((n_blocks, 2), dtype=np.int64)
        for b in range(n_blocks):
            members = blocks[b][blocks[b] >= 0]
            ranges[b] = vmin[members].min(), vmax[members].max() + 1
        support.flags.writeable = False
        cache[key] = (support, blocks, ranges)
    return cache[key]


def kappa2_support(g):
    r"""Parameters whose :math:`\kappa^{(2)}` the depth certificates do not prove zero.

    Longest-path depth from the sources strictly increases along every edge, so two
    edges whose sources have the same depth never lie on one path.  If every edge of
    :math:`E_i` leaves a node of one depth, :math:`\kappa^{(2)}_i = 0` exactly and
    :func:`kappa2` skips it.  More generally, a path from the head :math:`v` of one edge
    to the tail :math:`u'` of another needs :math:`\mathrm{depth}(v) \le
    \mathrm{depth}(u')`, so :math:`\max_{E_i} \mathrm{depth}(u) < \min_{E_i}
    \mathrm{depth}(v)` certifies zero; and the same with the longest distance to a sink,
    which decreases along edges: :math:`\max_{E_i} \mathrm{sink}(v) < \min_{E_i}
    \mathrm{sink}(u)` (this one covers parameters on edges into outputs).
    Feed-forward networks and CNNs have an empty support; in an unrolled RNN it is the
    recurrent matrices and the input matrices of layers above the first (whose
    :math:`\kappa^{(2)}` is zero too, by the layer structure that :func:`pathgeom.rnn`'s
    structured computation uses, but not by depth).

    Returns
    -------
    ndarray of int64
        Sorted parameter indices (read-only).

    Examples
    --------
    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0), ("x", "y", 1)],
    ...                                     ["x"], ["y"])
    >>> pathgeom.kappa2_support(g)
    array([0])
    """
    _check_graph(g)
    return _support_and_blocks(g)[0]


def _dask_tangent_task(graph_arrays, sweep_arrays, blocks, ranges):
    """One Dask task: the tangent blocks ``blocks`` on a worker (one numba thread: the
    cluster's threads are the parallelism).  ``graph_arrays`` is the worker's one copy
    of the compiled graph."""
    import numba
    indptr, src, par = graph_arrays
    q, h, delta = sweep_arrays
    out = np.zeros(blocks.shape, dtype=np.float64)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        engine.tangent_blocks(indptr, src, par, q, h, delta, blocks, ranges, out)
    finally:
        numba.set_num_threads(threads)
    return out


def _tangent_blocks_dask(g, q, h, delta, blocks, ranges, client):
    """:func:`pathgeom.engine.tangent_blocks` spread over a ``dask.distributed.Client``'s workers.

    The compiled graph is broadcast to every worker once per client and graph (the future
    is cached on the graph); ``q, h, delta`` once per call; the blocks go out in tasks of
    a few blocks each, largest node range first, and come back as rows of ``out``.
    """
    c = g.compiled
    key = ("dask_graph", getattr(client, "id", id(client)))
    fut = g._cache.get(key)
    if fut is None or getattr(fut, "status", "finished") != "finished":
        fut = client.scatter((c.indptr, c.src, c.par), broadcast=True, hash=False)
        g._cache[key] = fut
    sweep = client.scatter((q, h, delta), broadcast=True, hash=False)
    workers = max(1, sum(client.nthreads().values()))
    n_tasks = min(blocks.shape[0], 4 * workers)
    cost = ranges[:, 1] - ranges[:, 0]
    order = np.argsort(-cost, kind="stable")
    parts = [np.sort(order[i::n_tasks]) for i in range(n_tasks)]  # balanced by node range
    futures = [client.submit(_dask_tangent_task, fut, sweep, blocks[part], ranges[part],
                             pure=False) for part in parts]
    out = np.zeros(blocks.shape, dtype=np.float64)
    for part, rows in zip(parts, client.gather(futures)):
        out[part] = rows
    return out


def _kappa2_from(g, q, h, delta, client=None):
    c = g.compiled
    support, blocks, ranges = _support_and_blocks(g)
    k2 = np.zeros(g.n_params)
    if support.size:
        if client is not None:
            out = _tangent_blocks_dask(g, q, h, delta, blocks, ranges, client)
        else:
            out = np.zeros(blocks.shape, dtype=np.float64)
            # one numba thread when the sweeps are too small to share (see _threads)
            work = int((c.indptr[ranges[:, 1]] - c.indptr[ranges[:, 0]]).sum()) * blocks.shape[1]
            with _threads.for_size(work):
                engine.tangent_blocks(c.indptr, c.src, c.par, q, h, delta, blocks, ranges, out)
        mask = blocks >= 0
        k2[blocks[mask]] = 4.0 * q[blocks[mask]] * out[mask]
        if not np.isfinite(k2).all():
            i = int(np.flatnonzero(~np.isfinite(k2))[0])
            raise PathOverflowError(f"kappa2[{i}] overflowed float64; scale the weights down")
    return k2


def path_quantities(g, p, with_kappa2=True, client=None):
    r""":math:`\gamma^2`, :math:`\kappa^{(1)}`, exact :math:`\kappa^{(2)}` and :math:`\kappa` in one call.

    Shares one forward and one backward sweep of the squared network between all four;
    with ``with_kappa2=False`` that is all it does (the cheap Path-SGD curvature).

    Parameters
    ----------
    g : SharedGraph or network object
        A network of this library with its own ``path_quantities`` (:func:`~pathgeom.cnn`,
        :func:`~pathgeom.mlp`, :func:`~pathgeom.rnn`, :func:`~pathgeom.from_onnx`) is
        handed to it: its structured or dense passes give the same numbers (to rounding)
        without necessarily building ``g.graph``.  (With ``client``, its ``.graph`` is used.)
    p : array_like, shape (n_params,)
        Finite parameters.
    with_kappa2 : bool, default True
        Also compute the exact :math:`\kappa^{(2)}` and :math:`\kappa`.
    client : dask.distributed.Client, optional
        Spread the :math:`\kappa^{(2)}` tangent blocks (independent of each other) over
        the client's workers: the compiled graph goes to every worker once (cached per
        client on the graph), each task runs a few blocks on one numba thread.  Needs the
        ``[dask]`` extra; pathgeom never imports dask itself.

    Returns
    -------
    PathQuantities
        ``(gamma2, kappa1, kappa2, kappa)``; the last two are None when not requested.

    Raises
    ------
    ValueError
        ``p`` of the wrong shape or not finite.
    PathOverflowError
        A returned quantity beyond the float64 range; the message names the node or
        parameter.  A huge weight (even one whose square overflows) on paths that all
        carry an exact zero weight is no overflow: those terms are exactly 0.

    Examples
    --------
    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    >>> r = pathgeom.path_quantities(g, [2.0])
    >>> r.gamma2, r.kappa1, r.kappa2, r.kappa
    (16.0, array([8.]), array([16.]), array([24.]))
    """
    if _own_method(g, "path_quantities"):
        if client is None:
            return g.path_quantities(p, with_kappa2=with_kappa2)
        g = g.graph   # the client spreads the graph's tangent sweeps
    q, q_finite, q_least = _setup_stats(g, p)
    with_kappa2 = check_bool(with_kappa2, "with_kappa2")
    w = _weights(g, np.asarray(p, dtype=np.float64))   # p validated by _setup
    with np.errstate(under="ignore", over="ignore"):
        if q_least < _TINY and _squares_underflow(w, q if q.shape == w.shape else w * w):
            return _scaled_quantities(g, w, with_kappa2)
    try:
        r, h, delta = _float_quantities(g, q, with_kappa2, client, q_finite)
    except PathOverflowError as exc:   # a result beyond float64, or an intermediate that
        try:                           # met a factor lost to underflow: the scaled sweeps
            return _scaled_quantities(g, w, with_kappa2)   # decide
        except PathOverflowError:
            raise exc from None        # the float sweeps' message names the node
    if _lost_to_underflow(g, w, h, delta, r.kappa1):
        return _scaled_quantities(g, w, with_kappa2)
    if with_kappa2:
        r = _fix_kappa2_underflow(g, w, r, delta)
    return r


def _float_quantities(g, q, with_kappa2, client, q_finite=None):
    """The float64 sweeps (fast, then careful after a non-finite value): the quantities
    and the ``h``, ``delta`` they came from (``q_finite``: known already, or None)."""
    if not (q_finite if q_finite is not None else _finite(q)):
        return _careful_quantities(g, q, with_kappa2)
    try:
        h, delta, k1 = _squared_sweeps(g, q)
        g2 = _gamma2_from(g, h)
        if not with_kappa2:
            return PathQuantities(g2, k1, None, None), h, delta
        k2 = _kappa2_from(g, q, h, delta, client)
        with np.errstate(over="ignore"):
            k = k1 + k2
        if not np.isfinite(k).all():
            i = int(np.flatnonzero(~np.isfinite(k))[0])
            raise PathOverflowError(f"kappa[{i}] overflowed float64; scale the weights down")
    except PathOverflowError:
        # an intermediate went beyond float64; it may only ever meet zero weights (then
        # every quantity is finite): decide with the careful kernels, which re-raise
        # when a quantity really overflows
        return _careful_quantities(g, q, with_kappa2)
    return PathQuantities(g2, k1, k2, k), h, delta


# --------------------------------------------------------------------------- path norms


def _check_q(q):
    if isinstance(q, (bool, np.bool_)) or not isinstance(q, numbers.Real):
        raise TypeError(f"q must be a real number >= 1, got {type(q).__name__} {q!r}")
    q = float(q)
    if not (math.isfinite(q) and q >= 1.0):
        raise ValueError(f"q must be a finite real number >= 1, got {q!r} (the L^q path "
                         f"norm is a norm only for q >= 1)")
    return q


def _graph_path_norm(g, p, q):
    """The L^q path norm of a SharedGraph: the squared network's sweep with |w|**q; rerun
    on scaled values (mantissa, exponent) when a power or a path sum leaves the normal
    float64 range on the way (the result may still be representable)."""
    p = as_params(p, g.n_params)
    if q == 2.0:
        return math.sqrt(gamma2(g, p))
    c = g.compiled
    absw = np.abs(engine.extended(c, p))
    with np.errstate(over="ignore", under="ignore"):
        w = absw ** q
    if _finite(w) and not ((w < _TINY) & (absw != 0)).any():
        try:
            h = _squared_forward(g, w)
            if not _lost_to_underflow(g, absw, h):
                return _gamma2_from(g, h) ** (1.0 / q)
        except PathOverflowError:
            pass
    return _scaled_path_norm(g, absw, q)


def _scaled_path_norm(g, absw, q):
    """:func:`_graph_path_norm` on scaled values: ``|w|**q`` as (mantissa, exponent) built
    from frexp (the exponent's fraction folded into the mantissa), one scaled sweep, and
    the root taken on the exponent."""
    c = g.compiled
    m, x = np.frexp(absw)
    if q <= 1000:                       # m**q >= 0.5**1000: no underflow
        e = q * x.astype(np.float64)
        n = np.floor(e)
        vm, k = np.frexp(m ** q * np.exp2(e - n))
    else:
        with np.errstate(divide="ignore"):
            e = q * np.log2(np.where(absw > 0, absw, 1.0))
        n = np.floor(e)
        vm, k = np.frexp(np.exp2(e - n))
    vx = (n + k).astype(np.int64)
    vm[absw == 0] = 0.0
    vx[absw == 0] = 0
    hm = np.zeros(g.n_nodes)
    hx = np.zeros(g.n_nodes, dtype=np.int64)
    hm[c.inputs] = 0.5
    hx[c.inputs] = 1
    engine.sq_forward_scaled(c, vm, vx, hm, hx)
    hm[_dead(g)[0]] = 0.0
    om, ox = hm[c.outputs], hx[c.outputs]
    nz = om != 0
    if not nz.any():
        return 0.0
    top = int(ox[nz].max())
    with np.errstate(under="ignore"):
        s = float(np.ldexp(om[nz], np.clip(ox[nz] - top, -4000, 0).astype(np.int32)).sum())
    t = top / q                          # total ** (1/q) = s ** (1/q) * 2 ** t
    whole = math.floor(t)
    with np.errstate(over="ignore", under="ignore"):
        norm = float(np.ldexp(s ** (1.0 / q) * 2.0 ** (t - whole), whole))
    if not math.isfinite(norm):
        raise PathOverflowError(
            f"the L^{q:g} path norm is beyond the float64 range; scale the weights down (a "
            f"scale c multiplies each path's term by c**({q:g} * path length))")
    return norm


def path_norm(obj, p=None, q=2):
    r"""The :math:`L^q` path norm :math:`\|\Phi(p)\|_q = \big(\sum_{\zeta} \prod_{e \in \zeta} |w_e|^q\big)^{1/q}`.

    The sum runs over every input-to-output path :math:`\zeta` of the DAG; fixed weights
    (:func:`pathgeom.fixed`) count like weights, and max-pooling and identity neurons
    pass every path (so a network with max pooling has the path norm of the same network
    with identity neurons in their place, as in Gonon et al.'s path-lifting).  For
    :math:`q = 2` it is :math:`\sqrt{\gamma^2}` (eqs. 2-3); it is computed, like
    :math:`\gamma^2`, by one sweep of the network with every weight replaced by
    :math:`|w|^q` on the all-ones input.

    Parameters
    ----------
    obj : SharedGraph or network object
        A :class:`~pathgeom.SharedGraph` (then ``p`` is required), or any network of this
        library: an :func:`~pathgeom.from_onnx` import (its own weights when ``p`` is
        None), or a :func:`~pathgeom.rnn` / :func:`~pathgeom.cnn` / :func:`~pathgeom.mlp`
        network (with ``p``).
    p : array_like, shape (n_params,), optional
    q : real, default 2
        :math:`q \ge 1`.

    Returns
    -------
    float

    Raises
    ------
    PathOverflowError
        The sum over paths exceeds float64.

    Examples
    --------
    Two paths, :math:`x \to h \to y` (weights 3 and 4) and a residual :math:`x \to y`
    of fixed weight 1:

    >>> import pathgeom
    >>> g = pathgeom.SharedGraph.from_edges(
    ...     [("x", "h", 0), ("h", "y", 1), ("x", "y", pathgeom.fixed(1.0))], ["x"], ["y"])
    >>> pathgeom.path_norm(g, [3.0, 4.0], q=1)    # 3 * 4 + 1
    13.0
    >>> pathgeom.path_norm(g, [3.0, 4.0], q=2) ** 2
    145.0
    """
    q = _check_q(q)
    if isinstance(obj, SharedGraph):
        if p is None:
            raise TypeError("path_norm of a SharedGraph needs p (the graph holds no "
                            "weights); pass path_norm(g, p, q)")
        return _graph_path_norm(obj, p, q)
    own = getattr(obj, "path_norm", None)
    if callable(own):
        return own(p=p, q=q)
    graph = getattr(obj, "graph", None)
    if isinstance(graph, SharedGraph):
        if p is None:
            p = getattr(obj, "p", None)
        if p is None:
            raise TypeError(f"this {type(obj).__name__} holds no weights: pass p")
        return _graph_path_norm(graph, p, q)
    raise TypeError(f"path_norm takes a SharedGraph or a network of pathgeom (from_onnx, "
                    f"rnn, cnn, mlp), got {type(obj).__name__}")
