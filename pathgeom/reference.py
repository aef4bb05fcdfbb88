r"""The executable definitions: explicit path enumeration in exact rational arithmetic.

Slow on purpose (exponential in depth): every quantity is computed from its definition
with :class:`fractions.Fraction`, independently of the numba engine, for small graphs and
for testing.  Floats given as parameters or inputs are converted exactly.

Notation: :math:`\mathcal{P}` is the set of input-to-output paths :math:`\zeta` (tuples
of edges), :math:`q = p^2`, and :math:`n_i(\zeta)` the number of edges of :math:`\zeta`
in :math:`E_i`.  Along a path,
:math:`\prod_{e \in \zeta} q_{\pi(e)} = q_i^{n_i(\zeta)} R_{i}(\zeta)`.

==========================  ============================================================
function                    definition
==========================  ============================================================
:func:`gamma2`              :math:`\sum_\zeta \prod_{e \in \zeta} q_{\pi(e)}` (eqs. 2-3)
:func:`kappa`               :math:`\tfrac12 \partial^2 \gamma^2 / \partial p_i^2`, by exact
                            differentiation of the polynomial :math:`\gamma^2` in
                            :math:`p_i` (eq. 8)
:func:`kappa1`              eq. (9): :math:`\sum_{e \in E_i} \sum_{\zeta \ni e}
                            \prod_{e'' \in \zeta, e'' \ne e} q`
:func:`kappa2`              the exact term: :math:`4 q_i \sum_\zeta \sum_{\{e, e'\}
                            \subseteq \zeta \cap E_i} \prod_{e'' \ne e, e'} q`, so that
                            :math:`\kappa = \kappa^{(1)} + \kappa^{(2)}`
:func:`kappa2_printed_eq10` the paper's eq. (10) as printed: ordered pairs
                            :math:`e_1 \ne e_2`, factor :math:`q_i` (half the exact term)
:func:`kappa2_printed_eq11` the paper's eq. (11) as printed, with :math:`h`,
                            :math:`\delta` and :math:`\partial h_{u'}/\partial h_v` as path
                            sums (a quarter of the exact term)
:func:`forward`             the ReLU network of Table 1, exactly
:func:`backward`            :math:`\partial (dy \cdot f_p(x)) / \partial p` from the path
                            form of a ReLU network: :math:`y_o = \sum_{\zeta \text{ active}}
                            x_{\zeta_0} \prod_{e \in \zeta} w_e`
==========================  ============================================================

Per path with :math:`n = n_i(\zeta)`: :math:`\kappa` contributes
:math:`n(2n-1) q_i^{n-1} R`, :math:`\kappa^{(1)}` contributes :math:`n q_i^{n-1} R`, the
exact :math:`\kappa^{(2)}` :math:`2n(n-1) q_i^{n-1} R`, eq. (10) :math:`n(n-1) q_i^{n-1} R`
and eq. (11) :math:`\tfrac12 n(n-1) q_i^{n-1} R`.

Examples
--------
The smallest witness that the printed constants are not the exact term: the chain
``in -> a -> out`` whose two edges share :math:`p`, so :math:`\gamma^2 = p^4`:

>>> import pathgeom
>>> from pathgeom import reference
>>> g = pathgeom.SharedGraph.from_edges([("in", "a", 0), ("a", "out", 0)], ["in"], ["out"])
>>> p = [3]
>>> reference.kappa(g, p), reference.kappa1(g, p), reference.kappa2(g, p)
([Fraction(54, 1)], [Fraction(18, 1)], [Fraction(36, 1)])
>>> reference.kappa2_printed_eq10(g, p), reference.kappa2_printed_eq11(g, p)
([Fraction(18, 1)], [Fraction(9, 1)])
"""

import math
from collections import defaultdict
from fractions import Fraction

import numpy as np

__all__ = ["paths", "gamma2", "kappa", "kappa1", "kappa2", "kappa2_printed_eq10",
           "kappa2_printed_eq11", "forward", "backward", "path_norm_power", "path_count", "dag_cost",
           "gamma2_dag", "kappa_dag"]

#: Refuse graphs with more input-to-output paths than this (pass ``max_paths`` to change).
MAX_PATHS = 200_000


def _fractions(values, name):
    try:
        return [Fraction(v) for v in values]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{name} must hold finite numbers: {exc}") from None


def _edge_list(g):
    """``(u, v, i)`` per edge, ``i`` indexing the extended weights (:func:`_extended`)."""
    src, dst, par = g._edges_ext()
    return list(zip(src.tolist(), dst.tolist(), par.tolist()))


def _extended(g, p):
    """The real parameters as Fractions, then the graph's fixed weights (exactly)."""
    return list(p) + [Fraction(float(w)) for w in g.compiled.fixed.tolist()]


def _paths_between(g, edges, starts, is_end, max_paths):
    """Every path from a node of ``starts`` to a node where ``is_end`` holds.

    Depth-first with an explicit stack (no recursion: a chain of any length works), in
    the order a recursive walk would list them.
    """
    out_edges = defaultdict(list)
    for k, (u, v, _) in enumerate(edges):
        out_edges[u].append(k)
    found = []
    for s in starts:
        path = []
        stack = [(s, 0)]          # (node, index of the next outgoing edge to try)
        while stack:
            node, nxt = stack[-1]
            out = out_edges[node]
            if nxt == len(out):
                stack.pop()
                if path:
                    path.pop()
                continue
            stack[-1] = (node, nxt + 1)
            k = out[nxt]
            path.append(k)
            child = edges[k][1]
            if is_end(child):
                found.append(tuple(path))
                if len(found) > max_paths:
                    raise ValueError(f"more than {max_paths} paths: the reference enumerates "
                                     f"paths explicitly and is meant for small graphs")
            stack.append((child, 0))
    return found


def paths(g, max_paths=MAX_PATHS):
    """All input-to-output paths of ``g``, each a tuple of indices into ``g.edges()``."""
    edges = _edge_list(g)
    outputs = set(g.compiled.outputs.tolist())
    return _paths_between(g, edges, g.compiled.inputs.tolist(), outputs.__contains__, max_paths)


def _setup(g, p, max_paths):
    p = _fractions(p, "p")
    if len(p) != g.n_params:
        raise ValueError(f"p has {len(p)} entries; the graph has {g.n_params} parameters")
    p = _extended(g, p)
    edges = _edge_list(g)
    return p, [p[i] * p[i] for i in range(len(p))], edges, paths(g, max_paths)


def _product(q, edges, path, skip=()):
    r = Fraction(1)
    for pos, k in enumerate(path):
        if pos not in skip:
            r *= q[edges[k][2]]
    return r


def gamma2(g, p, max_paths=MAX_PATHS):
    r""":math:`\gamma^2(p) = \sum_{\zeta} \prod_{e \in \zeta} p_{\pi(e)}^2`, exactly."""
    _, q, edges, ps = _setup(g, p, max_paths)
    return sum((_product(q, edges, z) for z in ps), Fraction(0))


def kappa(g, p, max_paths=MAX_PATHS):
    r""":math:`\kappa_i = \tfrac12 \partial^2\gamma^2/\partial p_i^2` by exact polynomial differentiation.

    :math:`\gamma^2` is written as a polynomial in :math:`p_i` (the other parameters
    fixed): a path with :math:`n` edges in :math:`E_i` is the monomial
    :math:`R\, p_i^{2n}`; each monomial :math:`a p^k` is differentiated twice to
    :math:`a k (k-1) p^{k-2}`.
    """
    p, q, edges, ps = _setup(g, p, max_paths)
    result = []
    for i in range(g.n_params):
        poly = defaultdict(Fraction)  # exponent of p_i -> coefficient
        for z in ps:
            on_i = [pos for pos, k in enumerate(z) if edges[k][2] == i]
            poly[2 * len(on_i)] += _product(q, edges, z, skip=set(on_i))
        second = sum((a * k * (k - 1) * p[i] ** (k - 2) for k, a in poly.items() if k >= 2),
                     Fraction(0))
        result.append(second / 2)
    return result


def kappa1(g, p, max_paths=MAX_PATHS):
    r"""Eq. (9): :math:`\kappa^{(1)}_i = \sum_{e \in E_i} \sum_{\zeta \ni e} \prod_{e'' \in \zeta \setminus e} q`."""
    _, q, edges, ps = _setup(g, p, max_paths)
    result = [Fraction(0)] * len(q)
    for z in ps:
        for pos, k in enumerate(z):
            result[edges[k][2]] += _product(q, edges, z, skip={pos})
    return result[:g.n_params]   # fixed weights have no kappa


def _pair_sum(g, p, max_paths, ordered):
    """Per parameter: sum over paths of sum over pairs of its edges of the product of the rest."""
    _, q, edges, ps = _setup(g, p, max_paths)
    result = [Fraction(0)] * len(q)
    for z in ps:
        for a, ka in enumerate(z):
            for b, kb in enumerate(z):
                if (b != a if ordered else b > a) and edges[ka][2] == edges[kb][2]:
                    result[edges[ka][2]] += _product(q, edges, z, skip={a, b})
    return q, result


def kappa2(g, p, max_paths=MAX_PATHS):
    r"""The exact :math:`\kappa^{(2)}_i = 4 q_i \sum_\zeta \sum_{\{e, e'\} \subseteq \zeta \cap E_i} \prod_{e'' \ne e, e'} q`.

    Equals :math:`\kappa_i - \kappa^{(1)}_i`: a path with :math:`n` edges on :math:`E_i`
    has :math:`n(n-1)/2` unordered pairs, so it contributes :math:`2n(n-1) q_i^{n-1} R`.
    """
    q, pairs = _pair_sum(g, p, max_paths, ordered=False)
    return [4 * q[i] * pairs[i] for i in range(g.n_params)]


def kappa2_printed_eq10(g, p, max_paths=MAX_PATHS):
    r"""The paper's eq. (10) as printed: :math:`q_i \sum_{e_1 \ne e_2 \in E_i} \sum_{\zeta \ni e_1, e_2} \prod_{e \ne e_1, e_2} q`.

    This is half the exact :math:`\kappa^{(2)}` (the proof of Lemma 1 drops the factor 2
    of :math:`d(p^2)/dp`).
    """
    q, pairs = _pair_sum(g, p, max_paths, ordered=True)
    return [q[i] * pairs[i] for i in range(g.n_params)]


def kappa2_printed_eq11(g, p, max_paths=MAX_PATHS):
    r"""The paper's eq. (11) as printed: :math:`\sum_{(u\to v) \ne (u'\to v') \in E_i} q_i \frac{\partial g}{\partial h_{v'}} \frac{\partial h_{u'}}{\partial h_v} h_u`.

    :math:`h_u` (input-to-:math:`u` path sums), :math:`\partial g/\partial h_{v'}`
    (:math:`v'`-to-output path sums) and :math:`\partial h_{u'}/\partial h_v` (path sums
    from :math:`v` to :math:`u'`, 1 when :math:`v = u'`) are enumerated separately.
    Each pair on a common path is counted once, in path order, so this is a quarter of
    the exact :math:`\kappa^{(2)}`.
    """
    _, q, edges, _ = _setup(g, p, max_paths)
    outputs = set(g.compiled.outputs.tolist())
    inputs = g.compiled.inputs.tolist()

    def path_sum(starts, is_end, include_empty):
        total = Fraction(0)
        for z in _paths_between(g, edges, starts, is_end, max_paths):
            total += _product(q, edges, z)
        if include_empty and any(is_end(s) for s in starts):
            total += 1
        return total

    def h(u):
        return path_sum(inputs, lambda x: x == u, include_empty=u in inputs)

    def delta(v):
        return path_sum([v], outputs.__contains__, include_empty=v in outputs)

    def dh(v, u2):
        return path_sum([v], lambda x: x == u2, include_empty=True)

    result = [Fraction(0)] * g.n_params
    for a, (u, v, i) in enumerate(edges):
        for b, (u2, v2, j) in enumerate(edges):
            if a != b and i == j and i < g.n_params:
                result[i] += q[i] * delta(v2) * dh(v, u2) * h(u)
    return result


def forward(g, p, x):
    r"""The network on one input vector ``x``, exactly: a list of output Fractions.

    Internal nodes apply their kind (:attr:`~pathgeom.SharedGraph.kinds`): ReLU
    :math:`\max(z, 0)`, identity :math:`z`, or max :math:`\max_{u \to v} w h_u`; outputs
    are linear.
    """
    w = _fractions(p, "p")
    x = _fractions(x, "x")
    if len(w) != g.n_params or len(x) != g.n_inputs:
        raise ValueError("p or x has the wrong length")
    return [_activations(g, _extended(g, w), x)[0][o] for o in g.compiled.outputs.tolist()]


def _activations(g, w, x):
    """Node values, whether each internal node is active, and each max node's selected
    edge, for the extended weights ``w``.

    A ReLU node is active when its pre-activation is > 0, an identity node always; a max
    node passes exactly one incoming edge, the first (in :meth:`edges` order, i.e. by
    source position) whose ``w h_u`` is maximal.
    """
    edges = _edge_list(g)
    incoming = defaultdict(list)
    for k, (u, v, i) in enumerate(edges):
        incoming[v].append((k, u, i))
    inputs = g.compiled.inputs.tolist()
    outputs = set(g.compiled.outputs.tolist())
    kind = g.compiled.kind.tolist()
    value = {}
    active = {}
    chosen = {}
    for v in range(g.n_nodes):  # positions are a topological order
        if v in inputs:
            value[v] = x[inputs.index(v)]
            continue
        if kind[v] == 2 and incoming[v]:                    # max neuron
            best = None
            for k, u, i in incoming[v]:
                t = w[i] * value[u]
                if best is None or t > best:
                    best, chosen[v] = t, k
            value[v], active[v] = best, True
            continue
        z = sum((w[i] * value[u] for _, u, i in incoming[v]), Fraction(0))
        linear = v in outputs or kind[v] == 0 or kind[v] == 2
        active[v] = linear or z > 0
        value[v] = z if linear else max(z, Fraction(0))
    return value, active, chosen


def backward(g, p, x, dy, max_paths=MAX_PATHS):
    r""":math:`\partial (dy \cdot f_p(x)) / \partial p_i` for one input, from the path form.

    A network of ReLU, identity and max neurons is, where no ReLU pre-activation is 0
    and no max is tied, a sum over *active* paths (every ReLU node on the path has a
    positive pre-activation, and every max node is entered through the edge it selects):
    :math:`y_o = \sum_{\zeta: x_a \leadsto o} x_a \prod_{e \in \zeta} w_e`.  Each path is a
    monomial :math:`x_a R\, p_i^{n}` whose derivative is :math:`n x_a R\, p_i^{n-1}`.
    Fixed weights are constants of :math:`R`.
    """
    w = _fractions(p, "p")
    x = _fractions(x, "x")
    dy = _fractions(dy, "dy")
    w = _extended(g, w)
    _, active, chosen = _activations(g, w, x)
    edges = _edge_list(g)
    inputs = g.compiled.inputs.tolist()
    outputs = g.compiled.outputs.tolist()
    grad = [Fraction(0)] * g.n_params
    for z in paths(g, max_paths):
        nodes = [edges[k][1] for k in z]
        if not all(active[v] for v in nodes):
            continue
        if not all(chosen.get(edges[k][1], k) == k for k in z):
            continue
        coef = x[inputs.index(edges[z[0]][0])] * dy[outputs.index(nodes[-1])]
        for i in {edges[k][2] for k in z}:
            if i >= g.n_params:
                continue
            n = sum(1 for k in z if edges[k][2] == i)
            rest = Fraction(1)
            for k in z:
                if edges[k][2] != i:
                    rest *= w[edges[k][2]]
            grad[i] += coef * n * w[i] ** (n - 1) * rest
    return grad


def path_norm_power(g, p, q=2, max_paths=MAX_PATHS):
    r""":math:`\sum_\zeta \prod_{e \in \zeta} |w_e|^q` over the input-to-output paths: the
    :math:`L^q` path norm to the power :math:`q`.

    Exact (a Fraction) for a positive integer ``q``; for another real ``q >= 1``, a float
    (each path's product in float64, summed with :func:`math.fsum`).  Fixed weights count
    like weights; max and identity neurons pass every path.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom import reference
    >>> g = pathgeom.SharedGraph.from_edges(
    ...     [("x", "h", 0), ("h", "y", 1), ("x", "y", pathgeom.fixed(-1.0))], ["x"], ["y"])
    >>> reference.path_norm_power(g, [2, -3], q=1)
    Fraction(7, 1)
    """
    w = _fractions(p, "p")
    if len(w) != g.n_params:
        raise ValueError(f"p has {len(w)} entries; the graph has {g.n_params} parameters")
    w = [abs(a) for a in _extended(g, w)]
    edges = _edge_list(g)
    ps = paths(g, max_paths)
    if float(q) == int(q) and q >= 1:
        k = int(q)
        return sum((math.prod((w[edges[e][2]] ** k for e in z), start=Fraction(1))
                    for z in ps), Fraction(0))
    return math.fsum(math.prod(float(w[edges[e][2]]) ** float(q) for e in z) for z in ps)


# --------------------------------------------------------------------------- exact DP
#
# The same definitions without enumerating paths: dynamic programming over the DAG in
# exact integer arithmetic.  All parameters are put over one denominator D (a power of
# two for floats): p_i = A_i / D with A_i an integer, so q_i = Q_i / D**2 with Q_i = A_i**2.
# A node at longest-path depth d holds H_v = h_v * D**(2 d), an integer (a path of length
# l <= d contributes prod Q * D**(2 (d - l))), and likewise Delta_u = delta_u *
# D**(2 sinkdepth(u)).  kappa_i = 1/2 d^2 gamma^2 / dp_i^2 is taken by second-order
# forward differentiation along A_i (p_i = A_i / D, so d/dp_i = D d/dA_i): the second
# derivative of H is driven by the "sources" of the edges of E_i, and those sources are
# summed against the exact adjoint Delta.  Nothing recurses; the integers grow like the
# longest path times the bits of the weights.


def _common_denominator(p):
    """``(A, D, shift)``: integers A_i = p_i * D, and log2(D) when D is a power of two."""
    D = 1
    for x in p:
        D = D * x.denominator // math.gcd(D, x.denominator)
    A = [int(x * D) for x in p]
    shift = D.bit_length() - 1 if D & (D - 1) == 0 else None
    return A, D, shift


def _dyadic_fraction(num, k, D, shift):
    """``num / D**k`` as a Fraction, cheaply when D is a power of two (no big gcd)."""
    if shift is None:
        return Fraction(num, D ** k)
    e = shift * k
    if num == 0:
        return Fraction(0)
    tz = min((num & -num).bit_length() - 1, e)
    num >>= tz
    e -= tz
    if hasattr(Fraction, "_from_coprime_ints"):                      # Python >= 3.12
        return Fraction._from_coprime_ints(num, 1 << e)
    return Fraction(num, 1 << e, _normalize=False)                   # coprime already


class _Dag:
    """Edges, depths and the scaling helpers shared by the exact DP functions."""

    def __init__(self, g, p):
        self.p = _fractions(p, "p")
        if len(self.p) != g.n_params:
            raise ValueError(f"p has {len(self.p)} entries; the graph has {g.n_params} "
                             f"parameters")
        self.p = _extended(g, self.p)
        self.A, self.D, self.shift = _common_denominator(self.p)
        src, dst, par = g._edges_ext()
        self.src, self.dst, self.par = src.tolist(), dst.tolist(), par.tolist()
        c = g.compiled
        self.n = g.n_nodes
        self.depth = g.depth.tolist()
        # longest distance to a sink, by a plain reverse sweep (positions are topological)
        sdepth = [0] * self.n
        for u, v in sorted(zip(self.src, self.dst), reverse=True):
            sdepth[u] = max(sdepth[u], sdepth[v] + 1)
        self.sdepth = sdepth
        self.inputs = c.inputs.tolist()
        self.outputs = c.outputs.tolist()
        self.Q = [a * a for a in self.A]
        self.L = max((self.depth[v] for v in self.outputs), default=0)
        self.Lpath = max((a + b for a, b in zip(self.depth, self.sdepth)), default=0)

    def up(self, x, k):
        """``x * D**(2k)``."""
        if k == 0 or x == 0:
            return x
        if self.shift is not None:
            return x << (2 * self.shift * k)
        return x * self.D ** (2 * k)

    def forward(self):
        """Scaled squared-network values H (edges are sorted by destination)."""
        H = [0] * self.n
        for v in self.inputs:
            H[v] = 1
        d, Q, up = self.depth, self.Q, self.up
        for u, v, i in zip(self.src, self.dst, self.par):
            if H[u] and Q[i]:
                H[v] += up(Q[i] * H[u], d[v] - d[u] - 1)
        return H

    def backward(self):
        """Scaled sensitivities Delta (outputs 1), by a reverse sweep over the edges."""
        Delta = [0] * self.n
        for v in self.outputs:
            Delta[v] = 1
        order = sorted(range(len(self.src)), key=lambda e: -self.src[e])
        sd, Q, up = self.sdepth, self.Q, self.up
        for e in order:
            u, v, i = self.src[e], self.dst[e], self.par[e]
            if Delta[v] and Q[i]:
                Delta[u] += up(Q[i] * Delta[v], sd[u] - sd[v] - 1)
        return Delta


def path_count(g):
    """The number of input-to-output paths, by dynamic programming (an exact int)."""
    src, dst, _ = g.edges()
    count = [0] * g.n_nodes
    for v in g.compiled.inputs.tolist():
        count[v] = 1
    for u, v in zip(src.tolist(), dst.tolist()):   # sorted by destination: topological
        count[v] += count[u]
    return sum(count[v] for v in g.compiled.outputs.tolist())


def dag_cost(g):
    """Edge visits of :func:`kappa_dag` on ``g``: two sweeps, plus for each parameter with
    two or more edges one sweep over the edges between its first head and last tail."""
    c = g.compiled
    src, dst, par = g._edges_ext()
    E = int(src.size)
    if not E:
        return 0
    counts = np.bincount(par, minlength=c.n_ext)
    first_head = np.full(c.n_ext, g.n_nodes, dtype=np.int64)
    np.minimum.at(first_head, par, dst)
    last_tail = np.full(c.n_ext, -1, dtype=np.int64)
    np.maximum.at(last_tail, par, src)
    counts[g.n_params:] = 0       # fixed weights have no kappa: no tangent sweep
    multi = np.flatnonzero((counts >= 2) & (last_tail >= first_head))
    span = c.indptr[last_tail[multi] + 1] - c.indptr[first_head[multi]]
    return 2 * E + int(span.sum())


def gamma2_dag(g, p):
    r""":math:`\gamma^2(p)` exactly, by dynamic programming over the DAG (no path enumeration).

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom import reference
    >>> g = pathgeom.SharedGraph.from_edges([("in", "a", 0), ("a", "out", 0)], ["in"], ["out"])
    >>> reference.gamma2_dag(g, [0.5]) == reference.gamma2(g, [0.5]) == Fraction(1, 16)
    True
    """
    dag = _Dag(g, p)
    H = dag.forward()
    L = dag.L
    num = sum(dag.up(H[v], L - dag.depth[v]) for v in dag.outputs)
    return _dyadic_fraction(num, 2 * L, dag.D, dag.shift)


def kappa_dag(g, p):
    r""":math:`\kappa_i = \tfrac12 \partial^2 \gamma^2 / \partial p_i^2` exactly, by dynamic programming.

    Equal to :func:`kappa` (which enumerates paths) on every graph, in time roughly
    :math:`O(|E|)` big-integer operations plus, for each parameter with two or more
    edges, one sweep over the edges between its first and its last edge
    (:func:`dag_cost`), instead of (number of paths) x (path length) x (parameters).

    With :math:`H` the scaled node values, :math:`T` their derivative along
    :math:`A_i` (zero before the first edge of :math:`E_i`) and :math:`\Delta` the scaled
    adjoint, the second derivative of :math:`\gamma^2` along :math:`A_i` is
    :math:`\sum_{(u \to v) \in E_i} (2 Q'_i T_u + Q''_i H_u)\, \Delta_v` up to powers of
    :math:`D`, with :math:`Q'_i = 2 A_i`, :math:`Q''_i = 2`.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom import reference
    >>> g = pathgeom.SharedGraph.from_edges([("in", "a", 0), ("a", "out", 0)], ["in"], ["out"])
    >>> reference.kappa_dag(g, [3]), reference.kappa(g, [3])
    ([Fraction(54, 1)], [Fraction(54, 1)])
    """
    dag = _Dag(g, p)
    H = dag.forward()
    Delta = dag.backward()
    d, sd, up = dag.depth, dag.sdepth, dag.up
    by_param = defaultdict(list)
    for e, i in enumerate(dag.par):
        by_param[i].append(e)
    indptr = g.compiled.indptr.tolist()
    result = [Fraction(0)] * g.n_params
    for i, edges_i in by_param.items():
        if i >= g.n_params:     # a fixed weight: no kappa of its own
            continue
        Q, A = dag.Q[i], dag.A[i]
        tails = [dag.src[e] for e in edges_i]
        heads = [dag.dst[e] for e in edges_i]
        first, last = min(heads), max(tails)
        T = {}
        if len(edges_i) >= 2 and last >= first:   # the tangent along A_i, where it matters
            on_i = set(edges_i)
            for v in range(first, last + 1):
                t = 0
                for e in range(indptr[v], indptr[v + 1]):
                    u = dag.src[e]
                    gap = d[v] - d[u] - 1
                    tu = T.get(u, 0)
                    if tu and dag.Q[dag.par[e]]:
                        t += up(dag.Q[dag.par[e]] * tu, gap)
                    if e in on_i and H[u]:
                        t += up(2 * A * H[u], gap)
                if t:
                    T[v] = t
        num = 0
        for e in edges_i:
            u, v = dag.src[e], dag.dst[e]
            if not Delta[v]:
                continue
            inner = 2 * A * T.get(u, 0) + H[u]     # (Q' T_u + Q''/2 H_u) with the 1/2
            if inner:
                k = d[u] + 1 + sd[v]                # the power of D**2 under this term
                num += up(inner * Delta[v], dag.Lpath - k)
        if num:
            result[i] = _dyadic_fraction(up(num, 1), 2 * dag.Lpath, dag.D, dag.shift)
    return result
