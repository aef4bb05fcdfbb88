r"""Rescaling invariance (Definition 2, Theorems 1-2) and the verifiers of Lemma 1.

A *node-wise rescaling* multiplies every edge weight by :math:`\beta_v / \beta_u`, with
:math:`\beta > 0` on internal nodes and :math:`\beta = 1` on inputs and outputs.  In a
network with shared weights it is *feasible* (Definition 2) when all edges of one
parameter get the same factor; in logs, :math:`b = \log \beta`,

.. math::

    b_v - b_u = c_i \quad \text{for every } (u \to v) \in E_i, \qquad
    b = 0 \text{ on } V_{in} \cup V_{out},

and then :math:`T_\beta(p)_i = p_i\, e^{c_i}`.  The feasible :math:`b` form a linear
space, the *rescaling group* (in log coordinates).  A ReLU is positively homogeneous,
so :math:`T_\beta` changes neither the function :math:`f_p` nor any path product, hence
nor :math:`\gamma^2`; :math:`\partial L / \partial p_i` scales by :math:`\beta_u/\beta_v`
and :math:`\kappa_i` by :math:`(\beta_u/\beta_v)^2`, so a Path-SGD step commutes with
:math:`T_\beta` (Theorem 2) and a plain SGD step does not.

:func:`rescaling_group` decides the group's dimension exactly (integer and rational
arithmetic, no float tolerance), :func:`rescale` applies :math:`T_\beta`,
:func:`verify_invariance` measures all of the above on one graph, and
:func:`verify_lemma1` checks :math:`\kappa = \kappa^{(1)} + \kappa^{(2)}` against the
definition :math:`\tfrac12 \partial^2\gamma^2/\partial p_i^2` computed independently of
the engine.

Preconditions: every function takes a :class:`~pathgeom.SharedGraph`; arrays over nodes
are in :attr:`SharedGraph.nodes` order, arrays over parameters have length ``n_params``.
"""

import dataclasses
import math
import numbers
from collections import defaultdict
from fractions import Fraction
from typing import Optional

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from . import geometry, reference
from ._errors import PathOverflowError
from ._validation import as_params, as_real_array, check_scale
from .geometry import _check_graph

__all__ = ["RescalingGroup", "rescaling_group", "rescale", "Lemma1Report", "verify_lemma1",
           "InvarianceReport", "verify_invariance"]

#: Largest |log beta| :meth:`RescalingGroup.sample` accepts: beta, 1/beta and the ratios
#: beta_v / beta_u (|log| up to twice this) then stay well inside float64.
_LOG_BETA_MAX = 300.0

#: Default relative tolerance, in log space, of the feasibility checks (see
#: :meth:`RescalingGroup.contains`).
RTOL = 1e-9

#: :func:`verify_lemma1` enumerates paths exactly up to this many (``max_paths``).
LEMMA1_MAX_PATHS = 2000
#: Largest :func:`pathgeom.reference.dag_cost` (edge visits) for the exact dynamic
#: programme in :func:`verify_lemma1`, and largest visits x longest path (the integers grow
#: with the path length); beyond them the definition is taken numerically.
LEMMA1_EXACT_BUDGET = 2_000_000
LEMMA1_EXACT_WORK = 200_000_000
#: Enumerate paths (the definition itself, :mod:`pathgeom.reference`) only when
#: paths x (longest path + 1) x (n_params + (longest path + 1)**2) is at most this.
ENUMERATION_BUDGET = 2_000_000
#: Budget (pairs of edges on one parameter times paths) for the printed eq. (11) in exact
#: rationals, whose reference enumerates path sums per pair of edges; above it eq. (11) is
#: derived as kappa2 / 4.
EQ11_BUDGET = 1_000_000


# =========================================================================== the group
#
# Unknowns: b on internal nodes (0 on inputs and outputs, which we merge into one
# "ground" class).  For each parameter with edges e_0, e_1, ..., e_k the constraints are
# D(e_j) - D(e_0) = 0 with D(u -> v) = b_v - b_u; c_i = D(e_0) is then determined, so
# the group is the solution space of these rows over b alone (a parameter on one edge
# adds no row: its c is free).
#
# 1. Rows that reduce to +-(b_x - s b_y) = 0 or b_x = 0 are applied as a signed union-find
#    (b_x = sign * b_root), vectorised: one pass reduces every pending row through the
#    current classes and merges all two-term rows at once with connected components of
#    the "double cover" (a vertex for +b_r and one for -b_r).  Repeat until no row merges.
#    On RNNs, CNNs and MLPs this alone settles everything (the rows of W_in / the kernels
#    merge a unit's copies over time / positions; the other rows then vanish).
# 2. Whatever rows remain (over class roots) are deduplicated and brought to reduced row
#    echelon form with Fractions; the kernel gives an integer basis.
# The dimension is therefore decided in exact arithmetic.


def _constraint_rows(g):
    """Node positions (R, 4) and integer coefficients (R, 4) of the rows D(e) - D(e_0)."""
    src, dst, par = g.edges()
    order = np.argsort(par, kind="stable")
    sorted_par = par[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = sorted_par[1:] != sorted_par[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    head = order[run_start][~first]          # the first edge of the parameter
    rest = order[~first]                     # every other edge
    nodes = np.stack([dst[rest], src[rest], dst[head], src[head]], axis=1)
    coef = np.tile(np.array([1, -1, -1, 1], dtype=np.int64), (rest.size, 1))
    return nodes, coef


def _reduce_rows(nodes, coef, root, sign, ground):
    """Rows expressed in class roots, like terms combined, ground terms dropped."""
    R = root[nodes]
    S = sign[nodes] * coef
    S[R == ground] = 0
    k = np.argsort(R, axis=1, kind="stable")
    R = np.take_along_axis(R, k, axis=1)
    S = np.take_along_axis(S, k, axis=1)
    for j in range(1, R.shape[1]):           # sorted, so equal roots are adjacent
        same = R[:, j] == R[:, j - 1]
        S[same, j] += S[same, j - 1]
        S[same, j - 1] = 0
    return R, S


def _merge(root, sign, ground, pairs, sigma, zeros):
    """Apply b_x = sigma * b_y for ``pairs`` (x, y) and b_x = 0 for ``zeros`` (class roots)."""
    n = ground + 1
    a = [2 * pairs[:, 0], 2 * pairs[:, 0] + 1, 2 * zeros, 2 * zeros + 1, [2 * ground]]
    b = [2 * pairs[:, 1] + (sigma < 0), 2 * pairs[:, 1] + (sigma > 0),
         np.full(zeros.size, 2 * ground), np.full(zeros.size, 2 * ground), [2 * ground + 1]]
    a = np.concatenate(a).astype(np.int64)
    b = np.concatenate(b).astype(np.int64)
    cover = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(2 * n, 2 * n))
    _, label = connected_components(cover, directed=False)
    plus, minus = label[0::2], label[1::2]
    zero = plus == minus                     # b_r = -b_r: the class is 0 (ground's too)
    key = np.minimum(plus, minus)
    s = np.where(plus == key, 1, -1)         # b_r = s_r * y_key
    rep = np.full(label.max() + 1, n, dtype=np.int64)
    np.minimum.at(rep, key, np.arange(n))    # the smallest class id sharing the key
    new_root = rep[key]
    new_sign = s * s[new_root]               # relative to the representative itself
    new_root[zero] = ground
    new_sign[zero] = 1
    return new_root[root], sign * new_sign[root]


def _rref(rows):
    """Reduced row echelon form over Fractions of sparse integer rows (dicts col -> int).

    Returns ``(pivots, where)``: ``pivots[c]`` is the row (dict, coefficient 1 at ``c``)
    whose pivot column is ``c``; ``where[c]`` the pivot columns whose rows hold the free
    column ``c``.  Pivots are chosen to touch as few existing rows as possible.
    """
    pivots = {}
    where = defaultdict(set)
    for row in rows:
        r = {c: Fraction(v) for c, v in row.items()}
        for c in [c for c in r if c in pivots]:
            f = r.pop(c)
            for c2, v2 in pivots[c].items():
                if c2 != c:
                    nv = r.get(c2, 0) - f * v2
                    if nv:
                        r[c2] = nv
                    else:
                        r.pop(c2, None)
        if not r:
            continue
        p = min(r, key=lambda c: (len(where[c]), -c))
        inv = 1 / r[p]
        r = {c: v * inv for c, v in r.items()}
        for pc in list(where.pop(p, ())):    # clear column p from the other pivot rows
            other = pivots[pc]
            f = other.pop(p)
            for c2, v2 in r.items():
                if c2 == p:
                    continue
                nv = other.get(c2, 0) - f * v2
                if nv:
                    other[c2] = nv
                    where[c2].add(pc)
                else:
                    other.pop(c2, None)
                    where[c2].discard(pc)
        pivots[p] = r
        for c in r:
            if c != p:
                where[c].add(p)
    return pivots, where


def _primitive(vec):
    """A dict of Fractions scaled to coprime integers."""
    den = math.lcm(*(v.denominator for v in vec.values()))
    ints = {c: int(v * den) for c, v in vec.items()}
    div = math.gcd(*ints.values())
    return {c: v // div for c, v in ints.items()}


def _group_basis(g, merge=True):
    """Exact integer basis (dim, n_nodes) of the feasible log-rescalings, sparse (CSR).

    Memory is linear in the graph plus the non-zeros of the basis (one per node for RNNs,
    CNNs and MLPs); the dimension is decided in exact arithmetic.

    ``merge=False`` skips the union-find and hands every row to the rational elimination
    (slower; kept as a check of the fast route).
    """
    n = g.n_nodes
    ground = n
    root = np.arange(n + 1, dtype=np.int64)
    root[g._c.inputs] = ground
    root[g._c.outputs] = ground
    sign = np.ones(n + 1, dtype=np.int64)
    nodes, coef = _constraint_rows(g)
    while True:
        R, S = _reduce_rows(nodes, coef, root, sign, ground)
        if not merge or not nodes.shape[0]:
            break
        nnz = np.count_nonzero(S, axis=1)
        one = nnz == 1
        two = nnz == 2
        mask = S[two] != 0
        r2 = R[two][mask].reshape(-1, 2)
        s2 = S[two][mask].reshape(-1, 2)
        unit = np.abs(s2[:, 0]) == np.abs(s2[:, 1])
        two[np.flatnonzero(two)[~unit]] = False   # 2 b_x = b_y and the like stay rows
        r2, s2 = r2[unit], s2[unit]
        if not (one.any() or two.any()):
            break
        zeros = R[one][S[one] != 0]
        sigma = -np.sign(s2[:, 0] * s2[:, 1])   # s1 b_x + s2 b_y = 0  ->  b_x = sigma b_y
        root, sign = _merge(root, sign, ground, r2, sigma, zeros)
        keep = (nnz >= 2) & ~two
        nodes, coef = nodes[keep], coef[keep]
    classes = np.unique(root[:n][root[:n] != ground])
    col = {int(c): k for k, c in enumerate(classes.tolist())}
    R = np.where(S != 0, R, -1)
    left = np.unique(np.concatenate([R, S], axis=1)[np.any(S != 0, axis=1)], axis=0)
    rows = set()
    for rr, ss in zip(left[:, :4].tolist(), left[:, 4:].tolist()):
        row = {col[r]: s for r, s in zip(rr, ss) if s}
        d = math.gcd(*row.values())
        if row[min(row)] < 0:
            d = -d
        rows.add(tuple(sorted((c, s // d) for c, s in row.items())))
    pivots, where = _rref(dict(r) for r in sorted(rows))
    # the kernel: one vector per free class column, stored as (vector, class, value) triplets
    tri_k, tri_c, tri_v = [], [], []
    k = 0
    for f in range(classes.size):
        if f in pivots:
            continue
        touched = where.get(f)
        if not touched:                      # the common case: a class no row constrains
            tri_k.append(k)
            tri_c.append(f)
            tri_v.append(1.0)
        else:
            vec = {f: Fraction(1)}
            for pc in touched:
                vec[pc] = -pivots[pc][f]
            for c, v in _primitive(vec).items():
                tri_k.append(k)
                tri_c.append(c)
                tri_v.append(float(v))
        k += 1
    dim = k
    tri_k = np.asarray(tri_k, dtype=np.int64)
    tri_c = np.asarray(tri_c, dtype=np.int64)
    tri_v = np.asarray(tri_v, dtype=np.float64)
    # every node of a class gets the class's entries, times the node's sign: nnz is the
    # sum over nodes of the number of vectors holding its class (n_nodes when rows are
    # all merged, as on RNNs, CNNs and MLPs)
    live = np.flatnonzero(root[:n] != ground)
    node_cls = np.searchsorted(classes, root[live])
    by_class = np.argsort(tri_c, kind="stable")
    counts = np.bincount(tri_c, minlength=classes.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    reps = counts[node_cls]
    node_rep = np.repeat(live, reps)
    first = np.repeat(starts[node_cls], reps)
    within = np.arange(node_rep.size) - np.repeat(np.cumsum(reps) - reps, reps)
    t = by_class[first + within]
    values = tri_v[t] * sign[node_rep]
    basis = csr_matrix((values, (tri_k[t], node_rep)), shape=(dim, n))
    basis.sum_duplicates()
    basis.sort_indices()
    return basis


#: Largest dense :attr:`RescalingGroup.basis` (entries) built on request; beyond it use
#: :attr:`RescalingGroup.basis_sparse`.
DENSE_BASIS_LIMIT = 50_000_000


class RescalingGroup:
    r"""The feasible node-wise rescalings of a graph (Definition 2), in log coordinates.

    Build it with :func:`rescaling_group`.  An element is a vector :math:`b = \log\beta`
    over :attr:`SharedGraph.nodes`, zero on inputs and outputs, with :math:`b_v - b_u`
    equal on all edges of each parameter.

    Attributes
    ----------
    dim : int
        The dimension, decided exactly.  Internal nodes that touch no edge, and nodes on
        no input-output path, count: rescaling them is feasible (it changes no path
        product, though it may change parameters that only such nodes use).
    basis : ndarray, shape (dim, n_nodes)
        A basis of log-rescalings with coprime integer entries (read-only float64).
    nodes : tuple
        The node labels, the order of every per-node array.
    """

    def __init__(self, g, basis):
        self._graph = g
        self.nodes = g.nodes
        basis = csr_matrix(basis, dtype=np.float64, shape=None)
        if basis.shape[1] != g.n_nodes:
            raise ValueError(f"basis has {basis.shape[1]} columns; the graph has "
                             f"{g.n_nodes} nodes")
        self.dim = int(basis.shape[0])
        for arr in (basis.data, basis.indices, basis.indptr):
            arr.flags.writeable = False
        self._sparse = basis
        self._dense = None

    @property
    def basis_sparse(self):
        """The basis as a ``scipy.sparse`` CSR matrix (dim, n_nodes): memory linear in the graph."""
        return self._sparse

    @property
    def basis(self):
        """The basis as a dense read-only float64 array (dim, n_nodes), built on first use.

        Refused (ValueError) beyond :data:`DENSE_BASIS_LIMIT` entries: use
        :attr:`basis_sparse` for large graphs.
        """
        if self._dense is None:
            size = self.dim * len(self.nodes)
            if size > DENSE_BASIS_LIMIT:
                raise ValueError(f"the dense basis would hold {self.dim} x {len(self.nodes)} "
                                 f"= {size:,} entries (more than {DENSE_BASIS_LIMIT:,}); use "
                                 f"RescalingGroup.basis_sparse, a scipy.sparse matrix")
            arr = self._sparse.toarray()
            arr.flags.writeable = False
            self._dense = arr
        return self._dense

    def __repr__(self):
        return f"RescalingGroup(dim={self.dim}, n_nodes={len(self.nodes)})"

    def sample(self, rng, scale=1.0):
        r"""A random feasible :math:`\beta = \exp(\text{scale} \sum_k z_k\, \text{basis}_k)`, :math:`z \sim N(0, I)`.

        Parameters
        ----------
        rng : numpy.random.Generator
        scale : float, default 1.0
            Standard deviation of the log-space coefficients :math:`z_k`.

        Returns
        -------
        ndarray, shape (n_nodes,)
            :math:`\beta > 0`, exactly 1 on inputs and outputs (and everywhere when
            ``dim == 0``).

        Raises
        ------
        ValueError
            ``scale`` not a finite number >= 0, or so large that some
            :math:`\beta_v` or :math:`\beta_v / \beta_u` leaves the float64 range.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng"
                            f"(seed)), got {type(rng).__name__}")
        scale = check_scale(scale, "scale")
        z = rng.standard_normal(self.dim)
        b = float(scale) * (self._sparse.T @ z)
        b = np.asarray(b, dtype=np.float64).reshape(len(self.nodes))
        top = float(np.max(np.abs(b), initial=0.0))
        if top > _LOG_BETA_MAX:
            raise ValueError(f"scale={scale!r} is too large: the sampled log-rescaling "
                             f"reaches |log beta| = {top:.3g}, but beta and the ratios "
                             f"beta_v / beta_u stay inside float64 only for |log beta| <= "
                             f"{_LOG_BETA_MAX:g}; use a scale of at most about "
                             f"{scale * _LOG_BETA_MAX / top:.3g}")
        return np.exp(b)

    def contains(self, beta, rtol=RTOL):
        r"""Whether ``beta`` is a feasible rescaling (up to rounding).

        With :math:`b = \log\beta` and :math:`\tau = \text{rtol} \cdot \max(1,
        \max_v |b_v|)`: :math:`|b| \le \tau` on inputs and outputs, and on every
        parameter the log-ratios :math:`b_v - b_u` of its edges span at most
        :math:`\tau`.  The tolerance is relative to the size of :math:`b` because that is
        the rounding error :math:`\log` and :math:`\exp` leave in it.

        Returns
        -------
        bool
            False also for ``beta`` of the wrong shape, not finite or not positive.
        """
        try:
            b = _log_beta(self._graph, beta)
        except ValueError:
            return False
        return _violation(self._graph, b, rtol) is None


def rescaling_group(g):
    r"""The rescaling group of any shared-weight graph (Definition 2), exactly.

    Solves :math:`b_v - b_u = c_i` on every :math:`(u \to v) \in E_i`, :math:`b = 0` on
    inputs and outputs, for :math:`b` on the nodes: rows that set two classes of nodes
    equal up to sign are merged by a vectorised union-find, the rest (if any) are
    reduced over the rationals.  No float tolerance decides the dimension.  For an
    unrolled RNN it is :math:`\sum_i H_i` (Theorem 1); for an MLP, the number of hidden
    units; for a CNN, one per channel.  The result is cached on the graph.

    Parameters
    ----------
    g : SharedGraph

    Returns
    -------
    RescalingGroup

    Examples
    --------
    ``x -> a -> y`` and ``x -> b -> y``, the two hidden nodes sharing their input weight:

    >>> import numpy as np, pathgeom
    >>> from pathgeom.invariance import rescaling_group
    >>> g = pathgeom.SharedGraph.from_edges(
    ...     [("x", "a", 0), ("x", "b", 0), ("a", "y", 1), ("b", "y", 2)], ["x"], ["y"])
    >>> G = rescaling_group(g)
    >>> G.dim, g.nodes
    (1, ('x', 'a', 'b', 'y'))
    >>> G.basis               # a and b must be rescaled together
    array([[0., 1., 1., 0.]])
    >>> G.contains([1.0, 2.0, 2.0, 1.0]), G.contains([1.0, 2.0, 3.0, 1.0])
    (True, False)
    """
    _check_graph(g)
    key = "rescaling_group"
    if key not in g._cache:
        g._cache[key] = RescalingGroup(g, _group_basis(g))
    return g._cache[key]


# --------------------------------------------------------------------------- feasibility


def _log_beta(g, beta):
    arr = as_real_array(beta, "beta")
    if arr.shape != (g.n_nodes,):
        raise ValueError(f"beta has shape {arr.shape}; pass one value per node, shape "
                         f"({g.n_nodes},), in g.nodes order")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        v = int(bad[0])
        raise ValueError(f"beta[{v}] (node {g.nodes[v]!r}) = {arr[v]}; a rescaling needs "
                         f"finite beta > 0 on every node")
    return np.log(arr)


def _violation(g, b, rtol):
    """None if ``b`` is feasible within the tolerance, else a message naming the culprit."""
    tol = rtol * max(1.0, float(np.max(np.abs(b), initial=0.0)))
    fixed = np.concatenate([g._c.inputs, g._c.outputs])
    bad = fixed[np.abs(b[fixed]) > tol]
    if bad.size:
        v = int(bad[0])
        kind = "input" if v in set(g._c.inputs.tolist()) else "output"
        return (f"beta = {math.exp(b[v])!r} on {kind} node {g.nodes[v]!r}; inputs and "
                f"outputs must keep beta = 1")
    src, dst, par = g.edges()
    if not par.size:
        return None
    order = np.lexsort((np.arange(par.size), par))
    ratio = (b[dst] - b[src])[order]
    sp = par[order]
    starts = np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]])
    spread = np.maximum.reduceat(ratio, starts) - np.minimum.reduceat(ratio, starts)
    worst = int(np.argmax(spread))
    if spread[worst] <= tol:
        return None
    stop = starts[worst + 1] if worst + 1 < starts.size else sp.size
    run = order[starts[worst]:stop]
    e1 = int(run[np.argmax(ratio[starts[worst]:stop])])
    e2 = int(run[np.argmin(ratio[starts[worst]:stop])])
    nodes = g.nodes
    return (f"parameter {int(sp[starts[worst]])} has edges {nodes[src[e1]]!r} -> "
            f"{nodes[dst[e1]]!r} (beta_v / beta_u = {math.exp(b[dst[e1]] - b[src[e1]]):.6g}) "
            f"and {nodes[src[e2]]!r} -> {nodes[dst[e2]]!r} (beta_v / beta_u = "
            f"{math.exp(b[dst[e2]] - b[src[e2]]):.6g}); a feasible rescaling gives all "
            f"edges of one parameter the same ratio (Definition 2)")


def _param_ratios(g, beta):
    r""":math:`\beta_v / \beta_u` on the first edge of each parameter (1 where unused)."""
    src, dst, par = g.edges()
    used, first = np.unique(par, return_index=True)
    r = np.ones(g.n_params)
    r[used] = beta[dst[first]] / beta[src[first]]
    return r


def rescale(g, p, beta, rtol=RTOL):
    r"""The rescaled parameters :math:`T_\beta(p)_i = p_i\, \beta_v / \beta_u`, any :math:`(u \to v) \in E_i`.

    Parameters
    ----------
    g : SharedGraph
    p : array_like, shape (n_params,)
    beta : array_like, shape (n_nodes,)
        Positive, 1 on inputs and outputs, feasible (:meth:`RescalingGroup.contains`,
        with the same ``rtol``), in :attr:`SharedGraph.nodes` order.
    rtol : float, default :data:`RTOL`

    Returns
    -------
    ndarray, shape (n_params,)
        A new array; parameters on no edge are unchanged.

    Raises
    ------
    ValueError
        ``beta`` of the wrong shape, not finite, not positive, not 1 on an input or
        output, or not feasible: the message names a parameter and two of its edges whose
        ratios disagree.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom.invariance import rescale
    >>> g = pathgeom.SharedGraph.from_edges(
    ...     [("x", "a", 0), ("x", "b", 0), ("a", "y", 1), ("b", "y", 2)], ["x"], ["y"])
    >>> rescale(g, [1.0, 3.0, 5.0], [1.0, 2.0, 2.0, 1.0])
    array([2. , 1.5, 2.5])
    >>> rescale(g, [1.0, 3.0, 5.0], [1.0, 2.0, 4.0, 1.0])
    Traceback (most recent call last):
    ...
    ValueError: beta is not a feasible rescaling: parameter 0 has edges 'x' -> 'b' (beta_v / beta_u = 4) and 'x' -> 'a' (beta_v / beta_u = 2); a feasible rescaling gives all edges of one parameter the same ratio (Definition 2)
    """
    _check_graph(g)
    p = as_params(p, g.n_params)
    b = _log_beta(g, beta)
    problem = _violation(g, b, rtol)
    if problem is not None:
        raise ValueError(f"beta is not a feasible rescaling: {problem}")
    return p * _param_ratios(g, np.asarray(beta, dtype=np.float64))


# =========================================================================== reports


def _rel_diff(a, b):
    """``max |a - b| / max |b|`` (0 when both are 0): a scale-aware relative difference."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = float(np.max(np.abs(a - b), initial=0.0))
    den = float(np.max(np.abs(b), initial=0.0))
    if num == 0.0:
        return 0.0
    return num / den if den > 0 else math.inf


def _jsonable(obj):
    """Arrays, numpy scalars, tuples and non-finite floats turned into JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


# --------------------------------------------------------------------------- Lemma 1


@dataclasses.dataclass(frozen=True, eq=False)
class Lemma1Report:
    r"""The result of :func:`verify_lemma1`: :math:`\kappa` from its definition beside the engine.

    Attributes
    ----------
    exact : bool
        True when ``kappa_def`` comes from exact rational path enumeration
        (:mod:`pathgeom.reference`), False when from a numerical second derivative.
    method : str
        How ``kappa_def`` was obtained, in words.
    kappa_def, kappa_def_err : ndarray, shape (n_params,)
        :math:`\tfrac12 \partial^2\gamma^2/\partial p_i^2` and the estimated absolute error
        (0 when exact).
    kappa1, kappa2 : ndarray
        The engine's :math:`\kappa^{(1)}` and exact :math:`\kappa^{(2)}`.
    eq10, eq11 : ndarray
        The paper's printed eq. (10) and (11).
    printed_source : str
        ``"reference"`` (their own formulas, exact rationals) or a note that they were
        derived as :math:`\kappa^{(2)}/2` and :math:`\kappa^{(2)}/4`.
    rel_error : ndarray
        :math:`|\kappa^{(1)} + \kappa^{(2)} - \kappa_{def}| / |\kappa_{def}|` (0 where both
        are 0; nan where ``underflow`` is set: no relative comparison is meaningful there).
    max_rel_error : float
        Over the entries not flagged by ``underflow`` (nan if every entry is flagged).
    n_paths : int or None
        Number of input-output paths (counted exactly) on the exact routes.
    underflow : ndarray of bool, shape (n_params,)
        Entries whose values lie below the normal float64 range (:math:`\gamma^2` or
        :math:`\kappa` underflowed), so float64 cannot represent them to relative accuracy.
    underflow_note : str or None
        What underflowed, in words, and what to do (scale the weights up).
    """

    exact: bool
    method: str
    kappa_def: np.ndarray
    kappa_def_err: np.ndarray
    kappa1: np.ndarray
    kappa2: np.ndarray
    eq10: np.ndarray
    eq11: np.ndarray
    printed_source: str
    rel_error: np.ndarray
    max_rel_error: float
    n_paths: Optional[int]
    underflow: Optional[np.ndarray] = None
    underflow_note: Optional[str] = None

    def to_dict(self):
        """The fields as a dict (arrays stay arrays; see ``pathgeom.cli`` for JSON)."""
        return dataclasses.asdict(self)

    def table(self, max_rows=40):
        """The per-parameter table as text (all rows when ``max_rows`` is None)."""
        m = self.kappa1.size
        rows = np.arange(m)
        hidden = 0
        if max_rows is not None and m > max_rows:
            interesting = np.flatnonzero(self.kappa2 != 0)
            rest = np.flatnonzero(self.kappa2 == 0)
            rows = np.sort(np.concatenate([interesting, rest])[:max_rows])
            hidden = m - rows.size
        err_col = not self.exact
        head = (f"{'param':>6} {'kappa (def)':>13}" + (f" {'+/-':>9}" if err_col else "")
                + f" {'kappa1':>13} {'kappa2':>13} {'k1 + k2':>13} {'eq.(10)':>13}"
                  f" {'eq.(11)':>13} {'rel. err':>9}")
        lines = [head]
        for i in rows.tolist():
            line = f"{i:>6} {self.kappa_def[i]:>13.6g}"
            if err_col:
                line += f" {self.kappa_def_err[i]:>9.2g}"
            line += (f" {self.kappa1[i]:>13.6g} {self.kappa2[i]:>13.6g} "
                     f"{self.kappa1[i] + self.kappa2[i]:>13.6g} {self.eq10[i]:>13.6g} "
                     f"{self.eq11[i]:>13.6g} {self.rel_error[i]:>9.2g}")
            lines.append(line)
        if hidden:
            lines.append(f"... {hidden} more parameters not shown (those with kappa2 != 0 "
                         f"come first); to_dict() / --json has every row")
        return "\n".join(lines)

    def __str__(self):
        lines = ["Lemma 1: kappa = 1/2 d^2 gamma^2 / dp^2 from its definition, against the "
                 "engine's kappa1 + kappa2", f"definition computed by: {self.method}",
                 self.table(), ""]
        lines.append(f"largest relative error of kappa1 + kappa2 against the definition: "
                     f"{self.max_rel_error:.2g}"
                     + (" (over the entries that did not underflow)"
                        if self.underflow is not None and self.underflow.any() else ""))
        if self.underflow_note:
            lines.append(f"note: {self.underflow_note}")
        if not self.exact:
            with np.errstate(divide="ignore", invalid="ignore"):
                rel_err = np.where(self.kappa_def != 0,
                                   self.kappa_def_err / np.abs(self.kappa_def), 0.0)
            lines.append(f"(largest estimated relative error of the numerical derivative: "
                         f"{np.max(rel_err, initial=0.0):.2g})")
        nz = self.kappa2 != 0
        if nz.any():
            r10 = np.median(self.eq10[nz] / self.kappa2[nz])
            r11 = np.median(self.eq11[nz] / self.kappa2[nz])
            n = int(nz.sum())
            lines.append(f"on the {n} parameter{'s' if n > 1 else ''} with kappa2 != 0: printed "
                         f"eq.(10) / exact kappa2 = {r10:.3g}, eq.(11) / exact = {r11:.3g}"
                         f" [{self.printed_source}]")
        else:
            lines.append("kappa2 = 0 on every parameter: no path holds two edges of one "
                         "parameter, so kappa = kappa1")
        return "\n".join(lines)


def _numerical_kappa(g, p, n_steps=12, first_step=0.1):
    r"""Half the second derivative of :math:`\gamma^2` along each :math:`p_i`, with an error estimate.

    Central differences :math:`D(h) = (\gamma^2(p + h e_i) - 2\gamma^2(p) +
    \gamma^2(p - h e_i)) / 2h^2` at :math:`h = s_i\, \text{first\_step} / 2^j`
    (:math:`s_i = \max(|p_i|, \mathrm{rms}(p))`: a small :math:`p_i` still needs a step on
    the scale at which :math:`\gamma^2` varies), one Richardson
    step :math:`(4 D(h/2) - D(h)) / 3` (the error of :math:`D` is even in :math:`h`: the
    function is a polynomial in :math:`p_i`).  Per parameter the step with the smallest
    estimate is kept; the estimate is the change between consecutive extrapolations plus
    the rounding of :math:`\gamma^2` amplified by :math:`1/h^2`.
    """
    m = g.n_params
    g0 = geometry.gamma2(g, p)
    typical = float(np.sqrt(np.mean(p * p))) if m and np.any(p) else 1.0
    s = np.maximum(np.abs(p), typical)
    eps = np.finfo(float).eps
    rounding = 4.0 * eps * (int(g.depth.max(initial=0)) + 2)   # relative error of one gamma2
    D = np.full((n_steps, m), np.nan)
    mag = np.full((n_steps, m), np.nan)      # |gamma^2| summed over the four terms of D
    H = s * first_step / 2.0 ** np.arange(n_steps)[:, None]
    for j in range(n_steps):
        for i in range(m):
            h = H[j, i]
            try:
                up = p.copy()
                up[i] += h
                dn = p.copy()
                dn[i] -= h
                gp, gm = geometry.gamma2(g, up), geometry.gamma2(g, dn)
            except PathOverflowError:
                continue
            D[j, i] = ((gp - g0) + (gm - g0)) / (2.0 * h * h)
            mag[j, i] = abs(gp) + abs(gm) + 2.0 * abs(g0)
    R = (4.0 * D[1:] - D[:-1]) / 3.0
    round_D = rounding * mag / (2.0 * H * H)            # rounding of each D
    round_R = (4.0 * round_D[1:] + round_D[:-1]) / 3.0
    est = np.full_like(R, np.inf)
    est[1:] = np.abs(R[1:] - R[:-1]) + round_R[1:] + 4.0 * eps * np.abs(R[1:])
    est[~np.isfinite(est)] = np.inf
    best = np.argmin(est, axis=0)
    cols = np.arange(m)
    value = R[best, cols]
    err = est[best, cols]
    same = np.all(D == 0.0, axis=0)                # gamma^2 does not depend on p_i at all
    value[same] = 0.0
    err[same] = 0.0
    return value, err


def verify_lemma1(g, p, max_paths=LEMMA1_MAX_PATHS):
    r"""Lemma 1 on one graph: :math:`\kappa^{(1)} + \kappa^{(2)}` against the definition of :math:`\kappa`.

    The definition :math:`\kappa_i = \tfrac12 \partial^2\gamma^2/\partial p_i^2` (eq. 8) is
    computed independently of the engine's passes, in exact rationals: by path
    enumeration (:func:`pathgeom.reference.kappa`, the definition itself) on small graphs
    with at most ``max_paths`` input-output paths, otherwise by exact dynamic programming
    over the DAG (:func:`pathgeom.reference.kappa_dag`: second-order differentiation in
    big integers, no recursion, about linear in the graph times the path length).  Only
    graphs beyond :data:`LEMMA1_EXACT_BUDGET` fall back to central differences of
    :func:`pathgeom.gamma2` with Richardson extrapolation and an error estimate.  Beside
    it: the engine's :math:`\kappa^{(1)}` and exact :math:`\kappa^{(2)}`, and the paper's
    printed eq. (10) and (11), which are :math:`\kappa^{(2)}/2` and :math:`\kappa^{(2)}/4`
    (from their own formulas in exact rationals when the paths were enumerated; otherwise
    derived and labelled so).  Entries that float64 cannot hold to relative accuracy
    (:math:`\gamma^2` or :math:`\kappa` below the normal range) are flagged in
    ``underflow`` and explained in ``underflow_note`` instead of reported as violations.

    Parameters
    ----------
    g : SharedGraph
    p : array_like, shape (n_params,)
    max_paths : int, default :data:`LEMMA1_MAX_PATHS`
        Enumerate paths (the definition) up to this many; beyond, the exact dynamic
        programme.  0 forces the numerical derivative.

    Returns
    -------
    Lemma1Report
        ``str(report)`` is a table; ``report.to_dict()`` a dict of arrays.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom.invariance import verify_lemma1
    >>> chain = pathgeom.SharedGraph.from_edges([("in", "a", 0), ("a", "out", 0)], ["in"], ["out"])
    >>> r = verify_lemma1(chain, [2.0])   # gamma^2 = p**4: kappa = 6 p**2
    >>> r.exact, r.kappa_def, r.kappa1, r.kappa2, r.eq10, r.eq11, r.max_rel_error
    (True, array([24.]), array([8.]), array([16.]), array([8.]), array([4.]), 0.0)
    >>> verify_lemma1(chain, [2.0], max_paths=0).kappa_def   # numerically
    array([24.])
    """
    _check_graph(g)
    p = as_params(p, g.n_params)
    if (isinstance(max_paths, bool) or not isinstance(max_paths, (int, np.integer))
            or max_paths < 0):
        raise ValueError(f"max_paths must be an integer >= 0, got {max_paths!r}")
    r = geometry.path_quantities(g, p)
    floats = lambda xs: np.array([float(x) for x in xs], dtype=np.float64)
    n_paths = None
    exact = False
    if max_paths > 0:
        cost = reference.dag_cost(g)
        longest = int(np.max(g.depth, initial=0))
        exact = cost <= LEMMA1_EXACT_BUDGET and cost * max(longest, 1) <= LEMMA1_EXACT_WORK
        n_paths = reference.path_count(g) if exact else None
    if exact:
        enumerate_ok = (n_paths <= max_paths and n_paths * (longest + 1)
                        * (g.n_params + (longest + 1) ** 2) <= ENUMERATION_BUDGET)
        plural = "" if n_paths == 1 else "s"
        if enumerate_ok:
            method = f"exact rationals, enumerating the {n_paths} input-output path{plural}"
            k_def = floats(reference.kappa(g, p, max_paths=max_paths))
        else:
            method = (f"exact rationals by dynamic programming over the DAG ({n_paths} "
                      f"input-output path{plural}; enumerating them would be too slow)")
            k_def = floats(reference.kappa_dag(g, p))
        k_err = np.zeros(g.n_params)
        counts = g.param_edge_counts()
        if enumerate_ok:
            eq10 = floats(reference.kappa2_printed_eq10(g, p, max_paths=max_paths))
            if int(np.sum(counts * (counts - 1))) * max(n_paths, 1) <= EQ11_BUDGET:
                eq11 = floats(reference.kappa2_printed_eq11(g, p, max_paths=max_paths))
                printed_source = "eq.(10), (11) from their printed formulas, exact rationals"
            else:
                eq11 = r.kappa2 / 4.0
                printed_source = ("eq.(10) from its printed formula in exact rationals; "
                                  "eq.(11) derived as kappa2 / 4 (its reference is too slow "
                                  "here)")
        else:
            eq10 = r.kappa2 / 2.0
            eq11 = r.kappa2 / 4.0
            printed_source = ("derived as kappa2 / 2 and kappa2 / 4, not from the printed "
                              "formulas (they enumerate paths: too many here)")
    else:
        why = ("max_paths = 0" if not max_paths else
               f"the exact dynamic programme would take {cost:,} edge visits on integers of "
               f"up to {longest} x 2 x (bits of the weights) bits, beyond the budget")
        method = (f"central differences of gamma^2 with Richardson extrapolation ({why}); "
                  f"the +/- column is the estimated error")
        k_def, k_err = _numerical_kappa(g, p)
        eq10 = r.kappa2 / 2.0
        eq11 = r.kappa2 / 4.0
        printed_source = (f"derived as kappa2 / 2 and kappa2 / 4 (docs/concepts/"
                          f"path-regularizer.md), not from the printed formulas: {why}")
    total = r.kappa1 + r.kappa2
    diff = np.abs(total - k_def)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(k_def != 0, diff / np.abs(k_def), np.where(diff == 0, 0.0, np.inf))
    underflow, note = _lemma1_underflow(g, p, r, k_def, total, exact)
    rel[underflow] = np.nan
    kept = rel[~underflow]
    max_rel = float(np.max(kept, initial=0.0)) if kept.size or not underflow.any() else math.nan
    return Lemma1Report(exact=exact, method=method, kappa_def=k_def, kappa_def_err=k_err,
                        kappa1=r.kappa1, kappa2=r.kappa2, eq10=eq10, eq11=eq11,
                        printed_source=printed_source, rel_error=rel,
                        max_rel_error=max_rel, n_paths=n_paths, underflow=underflow,
                        underflow_note=note)


#: Values below this have lost relative accuracy to float64's gradual underflow.
_SMALL = np.finfo(np.float64).tiny / np.finfo(np.float64).eps


def _weighted_path_exists(g, p):
    """Whether some input-output path has every weight non-zero (then gamma^2 > 0 exactly)."""
    src, dst, par = g.edges()
    ok = np.zeros(g.n_nodes, dtype=bool)
    ok[g._c.inputs] = True
    nonzero = (p[par] != 0).tolist()
    for u, v, w in zip(src.tolist(), dst.tolist(), nonzero):   # sorted by destination
        if w and ok[u]:
            ok[v] = True
    return bool(ok[g._c.outputs].any())


def _lemma1_underflow(g, p, r, k_def, total, exact):
    """Entries where float64 underflow, not Lemma 1, decides the comparison; and a note."""
    m = g.n_params
    flags = np.zeros(m, dtype=bool)
    g2_under = r.gamma2 < _SMALL and _weighted_path_exists(g, p)
    small = (np.abs(k_def) < _SMALL) & (np.abs(total) < _SMALL) & ((k_def != 0) | (total != 0))
    if exact:
        flags |= small
    else:
        flags |= small
        if g2_under:   # the central differences of an underflowed gamma^2 say nothing
            flags |= (k_def == 0) | (total == 0) | ~np.isfinite(k_def)
    if not flags.any() and not g2_under:
        return flags, None
    parts = []
    if g2_under:
        parts.append(f"gamma^2 = {r.gamma2:.3g} underflows float64 (values below "
                     f"{_SMALL:.2g} lose relative accuracy) although some path has only "
                     f"non-zero weights")
    if flags.any():
        idx = np.flatnonzero(flags)
        shown = ", ".join(str(i) for i in idx[:8].tolist()) + (" ..." if idx.size > 8 else "")
        parts.append(f"{idx.size} entr{'y' if idx.size == 1 else 'ies'} of kappa lie below "
                     f"the normal float64 range and are not compared (parameters {shown})")
    return flags, ("; ".join(parts) + "; this is float64 underflow, not a violation of "
                   "Lemma 1: scale the weights up (rescaling p by c multiplies each path "
                   "term by c**(2 * path length))")


# --------------------------------------------------------------------------- invariance


@dataclasses.dataclass(frozen=True, eq=False)
class InvarianceReport:
    r"""The result of :func:`verify_invariance`.

    Relative differences are :math:`\max|a - b| / \max|b|`.

    Attributes
    ----------
    dim : int
        Dimension of the rescaling group.
    beta : ndarray, shape (n_nodes,)
        The feasible rescaling used.
    max_log_ratio : float
        :math:`\max_i |\log(\beta_v/\beta_u)|` over used parameters: how far
        :math:`T_\beta` is from the identity on :math:`p`.
    f_change, gamma2_change : float
        Relative change of the outputs on random inputs and of :math:`\gamma^2`.
    grad_law, kappa_law : float
        Relative difference of :math:`\nabla L(T_\beta p)` from :math:`\nabla L(p)\,
        \beta_u/\beta_v` and of :math:`\kappa(T_\beta p)` from :math:`\kappa(p)
        (\beta_u/\beta_v)^2`.
    steps : dict
        Optimiser name -> relative difference between ``rescale(step(p))`` and
        ``step(rescale(p))``, both measured as moves from ``rescale(p)`` (so the number
        does not shrink with the learning rate).
    grad_norm : float
        :math:`\max_i |\partial L/\partial p_i|` at ``p``; when 0 (no active path) every
        step is trivial and the comparison says nothing.
    """

    dim: int
    beta: np.ndarray
    max_log_ratio: float
    f_change: float
    gamma2_change: float
    grad_law: float
    kappa_law: float
    steps: dict
    grad_norm: float

    def to_dict(self):
        """The fields as a dict (arrays stay arrays)."""
        return dataclasses.asdict(self)

    def __str__(self):
        lines = [f"rescaling group dimension: {self.dim}"]
        if self.dim == 0:
            lines.append("the group is trivial: beta = 1, every optimiser commutes with it")
        lines.append(f"sampled feasible beta: largest |log(beta_v / beta_u)| on a parameter "
                     f"= {self.max_log_ratio:.3g}")
        lines.append("relative change under T_beta (theory: 0 up to rounding):")
        rows = [("outputs f(x) on random inputs", self.f_change),
                ("gamma^2", self.gamma2_change),
                ("dL/dp at T_beta(p) vs dL/dp * beta_u/beta_v", self.grad_law),
                ("kappa at T_beta(p) vs kappa * (beta_u/beta_v)^2", self.kappa_law)]
        lines += [f"  {name:<50}{value:.2g}" for name, value in rows]
        lines.append("does one step commute with T_beta? relative difference of "
                     "rescale(step(p)) and step(rescale(p))\n(theory: 0 for Path-SGD; "
                     "not 0 for SGD unless T_beta is the identity on p):")
        lines += [f"  {name:<50}{value:.2g}" for name, value in self.steps.items()]
        if self.grad_norm == 0:
            lines.append("note: dL/dp = 0 at p (no active path on these inputs), so every step "
                         "is trivial and commutes; try another seed")
        return "\n".join(lines)


def verify_invariance(g, p, rng, scale=1.0, batch=8, lr=0.1):
    r"""Theorem 2 on one graph: what a random feasible rescaling changes, and what it does not.

    Samples :math:`\beta` from :func:`rescaling_group`, and measures the relative change
    of :math:`f_p` on ``batch`` standard-normal inputs, of :math:`\gamma^2`, the laws of
    :math:`\partial L/\partial p` and :math:`\kappa`, and whether one step of Path-SGD
    (exact :math:`\kappa` and :math:`\kappa^{(1)}`) and of plain SGD commutes with
    :math:`T_\beta`.  The loss is :math:`\tfrac12 \|f_p(X) - Y\|^2` with random targets
    :math:`Y`.

    Parameters
    ----------
    g : SharedGraph
    p : array_like, shape (n_params,)
    rng : numpy.random.Generator
    scale : float, default 1.0
        Passed to :meth:`RescalingGroup.sample`.
    batch : int, default 8
    lr : float, default 0.1

    Returns
    -------
    InvarianceReport

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> from pathgeom.invariance import verify_invariance
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
    >>> r = verify_invariance(g, [0.5, -2.0], np.random.default_rng(0))
    >>> r.dim, r.f_change < 1e-15, r.steps["path-sgd (kappa)"] < 1e-15, r.steps["sgd"] > 0.1
    (1, True, True, True)
    """
    from .optim import SGD, PathSGD         # optim imports nothing from here; keeps it light

    _check_graph(g)
    p = as_params(p, g.n_params)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    lr = check_scale(lr, "lr", allow_zero=False)
    group = rescaling_group(g)
    beta = group.sample(rng, scale)
    with np.errstate(over="ignore", under="ignore"):
        pt = p * _param_ratios(g, beta)
    lost = ~np.isfinite(pt) | ((pt == 0) & (p != 0))
    if lost.any():
        i = int(np.flatnonzero(lost)[0])
        raise ValueError(f"scale={scale!r} is too large for these weights: the sampled "
                         f"rescaling takes p[{i}] = {p[i]!r} to {pt[i]!r}, outside the float64 "
                         f"range; use a smaller scale")
    pt = rescale(g, p, beta)
    ratio = _param_ratios(g, beta)
    used = g.param_edge_counts() > 0
    X = rng.standard_normal((batch, g.n_inputs))
    Y = rng.standard_normal((batch, g.n_outputs))
    f0, f1 = g.forward(p, X), g.forward(pt, X)
    grad0 = g.backward(p, X, f0 - Y)
    grad1 = g.backward(pt, X, f1 - Y)
    k0, k1 = geometry.kappa(g, p), geometry.kappa(g, pt)
    steps = {}
    for name, opt in (("path-sgd (kappa)", PathSGD(g, lr, curvature="kappa", rule="raw")),
                      ("path-sgd (kappa1)", PathSGD(g, lr, curvature="kappa1", rule="raw")),
                      ("sgd", SGD(lr))):
        after = opt.step(pt, grad1) - pt
        before = rescale(g, opt.step(p, grad0), beta) - pt
        steps[name] = _rel_diff(after, before)
    return InvarianceReport(
        dim=group.dim, beta=beta,
        max_log_ratio=float(np.max(np.abs(np.log(ratio[used])), initial=0.0)),
        f_change=_rel_diff(f1, f0),
        gamma2_change=_rel_diff(geometry.gamma2(g, pt), geometry.gamma2(g, p)),
        grad_law=_rel_diff(grad1, grad0 / ratio),
        kappa_law=_rel_diff(k1, k0 / ratio ** 2),
        steps=steps, grad_norm=float(np.max(np.abs(grad0), initial=0.0)))
