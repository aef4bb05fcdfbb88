r"""Rescaling invariance: the group of feasible node-wise rescalings (Definition 2,
Theorem 1) and its action :math:`T_\beta`.

A *node-wise rescaling* multiplies every edge weight by :math:`\beta_v / \beta_u`, with
:math:`\beta > 0` on internal nodes and :math:`\beta = 1` on inputs and outputs.  In a
network with shared weights it is *feasible* (Definition 2) when all edges of one
parameter get the same factor; in logs, :math:`b = \log \beta`,

.. math::

    b_v - b_u = c_i \quad \text{for every } (u \to v) \in E_i, \qquad
    b = 0 \text{ on } V_{in} \cup V_{out},

and :math:`b_v = b_u` on every edge of non-zero fixed weight (:func:`pathgeom.fixed`: it
cannot change; an edge into a max node is one),

and then :math:`T_\beta(p)_i = p_i\, e^{c_i}`.  The feasible :math:`b` form a linear
space, the *rescaling group* (in log coordinates).  A ReLU is positively homogeneous,
so :math:`T_\beta` changes neither the function :math:`f_p` nor any path product, hence
nor :math:`\gamma^2`; :math:`\partial L / \partial p_i` scales by :math:`\beta_u/\beta_v`
and :math:`\kappa_i` by :math:`(\beta_u/\beta_v)^2`, so a Path-SGD step commutes with
:math:`T_\beta` (Theorem 2) and a plain SGD step does not (:mod:`pathgeom.verify`
measures both).

:func:`rescaling_group` decides the group's dimension exactly (integer and rational
arithmetic, no float tolerance, a sparse basis) and :func:`rescale` applies
:math:`T_\beta`.

Preconditions: every function takes a :class:`~pathgeom.SharedGraph`; arrays over nodes
are in :attr:`SharedGraph.nodes` order, arrays over parameters have length ``n_params``.
"""

import math
from collections import defaultdict
from fractions import Fraction

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from ._validation import as_params, as_real_array, check_rng, check_scale
from .geometry import _check_graph

__all__ = ["RescalingGroup", "rescaling_group", "rescale", "RTOL"]

#: Largest |log beta| :meth:`RescalingGroup.sample` accepts: beta, 1/beta and the ratios
#: beta_v / beta_u (|log| up to twice this) then stay well inside float64.
_LOG_BETA_MAX = 300.0

#: Default relative tolerance, in log space, of the feasibility checks (see
#: :meth:`RescalingGroup.contains`).
RTOL = 1e-9

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
    """Node positions (R, 4) and integer coefficients (R, 4) of the rows D(e) - D(e_0),
    and for every edge of non-zero fixed weight the row D(e) = b_v - b_u (its weight
    cannot change); fixed edges of weight 0 constrain nothing (they carry no path)."""
    src, dst, par = g.edges()
    fw = g.fixed_weights()
    pin = np.flatnonzero((par < 0) & (fw != 0))
    fixed_nodes = np.stack([dst[pin], src[pin], dst[pin], src[pin]], axis=1)
    fixed_coef = np.tile(np.array([1, -1, 0, 0], dtype=np.int64), (pin.size, 1))
    keep = np.flatnonzero(par >= 0)
    src, dst, par = src[keep], dst[keep], par[keep]
    order = np.argsort(par, kind="stable")
    sorted_par = par[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = sorted_par[1:] != sorted_par[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    head = order[run_start][~first]          # the first edge of the parameter
    rest = order[~first]                     # every other edge
    nodes = np.stack([dst[rest], src[rest], dst[head], src[head]], axis=1)
    coef = np.tile(np.array([1, -1, -1, 1], dtype=np.int64), (rest.size, 1))
    return (np.concatenate([nodes, fixed_nodes]).astype(np.int64),
            np.concatenate([coef, fixed_coef]))


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
    root[g.compiled.inputs] = ground
    root[g.compiled.outputs] = ground
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
        check_rng(rng)
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
    >>> from pathgeom.rescaling import rescaling_group
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
    tol = check_scale(rtol, "rtol") * max(1.0, float(np.max(np.abs(b), initial=0.0)))
    fixed = np.concatenate([g.compiled.inputs, g.compiled.outputs])
    bad = fixed[np.abs(b[fixed]) > tol]
    if bad.size:
        v = int(bad[0])
        kind = "input" if v in set(g.compiled.inputs.tolist()) else "output"
        return (f"beta = {math.exp(b[v])!r} on {kind} node {g.nodes[v]!r}; inputs and "
                f"outputs must keep beta = 1")
    src, dst, par = g.edges()
    fw = g.fixed_weights()
    pin = np.flatnonzero((par < 0) & (fw != 0))
    moved = pin[np.abs(b[dst[pin]] - b[src[pin]]) > tol]
    if moved.size:
        e = int(moved[0])
        nodes = g.nodes
        return (f"the fixed edge {nodes[src[e]]!r} -> {nodes[dst[e]]!r} (weight {fw[e]!r}) "
                f"would be multiplied by beta_v / beta_u = "
                f"{math.exp(b[dst[e]] - b[src[e]]):.6g}; a fixed weight cannot change, so "
                f"a feasible rescaling gives its two nodes the same beta")
    keep = np.flatnonzero(par >= 0)
    src, dst, par = src[keep], dst[keep], par[keep]
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
    keep = np.flatnonzero(par >= 0)
    src, dst, par = src[keep], dst[keep], par[keep]
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
    >>> from pathgeom.rescaling import rescale
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
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out = p * _param_ratios(g, np.asarray(beta, dtype=np.float64))
    return _in_range(g, p, b, out)


def _in_range(g, p, b, out):
    """``out`` with entries that over- or underflowed in ``p * ratio`` (a ratio beyond
    float64, say) recomputed from ``log beta``; a parameter whose rescaled value is beyond
    the float64 range, or non-zero below its normal range, is refused (PathOverflowError,
    PathUnderflowError) instead of coming back as inf or 0."""
    from ._errors import PathOverflowError, PathUnderflowError
    tiny = np.finfo(np.float64).tiny
    bad = (~np.isfinite(out)) | ((np.abs(out) < tiny) & (p != 0))
    if not bad.any():
        return out
    src, dst, par = g.edges()
    keep = np.flatnonzero(par >= 0)          # fixed edges (-1) have no parameter
    src, dst, par = src[keep], dst[keep], par[keep]
    used, first = np.unique(par, return_index=True)
    lr = np.zeros(g.n_params)
    lr[used] = b[dst[first]] - b[src[first]]
    for i in np.flatnonzero(bad).tolist():
        m, e = math.frexp(p[i])
        k = math.floor(lr[i] / math.log(2.0))
        val = m * math.exp(lr[i] - k * math.log(2.0))
        try:
            out[i] = math.ldexp(val, e + k)
        except OverflowError:
            out[i] = math.copysign(math.inf, val)
        if not math.isfinite(out[i]):
            raise PathOverflowError(
                f"rescaled p[{i}] = {float(p[i])!r} * beta_v / beta_u = {float(p[i])!r} * exp({lr[i]:.6g}) "
                f"is beyond the float64 range; choose a smaller rescaling")
        if abs(out[i]) < tiny:
            raise PathUnderflowError(
                f"rescaled p[{i}] = {float(p[i])!r} * beta_v / beta_u = {float(p[i])!r} * exp({lr[i]:.6g}) "
                f"is below the normal float64 range (it would come out "
                f"{'0' if out[i] == 0 else 'imprecise'}); choose a milder rescaling")
    return out
