r"""Verification of the paper's statements on any graph: Lemma 1
(:math:`\kappa = \kappa^{(1)} + \kappa^{(2)}` against the definition
:math:`\tfrac12 \partial^2\gamma^2/\partial p_i^2`, computed independently of the engine)
and Theorem 2 (a random feasible rescaling leaves :math:`f` and :math:`\gamma^2`
unchanged and commutes with Path-SGD, not with SGD).

:func:`verify_lemma1` takes the definition from exact rational path enumeration
(:mod:`pathgeom.reference`) on small graphs, an exact rational dynamic programme over the
DAG on larger ones, and central differences beyond that; :func:`verify_invariance`
samples the group of :mod:`pathgeom.rescaling`.  Both return reports with a text form and
a JSON form (``to_dict``).
"""

import dataclasses
import math
from typing import Optional

import numpy as np

from . import geometry, reference
from ._errors import PathOverflowError
from ._validation import as_params, check_scale
from .geometry import _check_graph

from .rescaling import _param_ratios, rescale, rescaling_group

__all__ = ["Lemma1Report", "verify_lemma1", "InvarianceReport", "verify_invariance",
           "LEMMA1_MAX_PATHS"]

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


def _check_names(names, g):
    """``names`` as a list of ``n_params`` strings (e.g. ``net.layout.param_names()``), or
    None."""
    if names is None:
        return None
    names = [str(n) for n in names]
    if len(names) != g.n_params:
        raise ValueError(f"param_names has {len(names)} entries but the graph has "
                         f"{g.n_params} parameters")
    return names


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
    param_names: Optional[list] = None

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
        names = self.param_names
        width = max([6] + [len(str(n)) for n in names]) if names is not None else 6
        head = (f"{'param':>{width}} {'kappa (def)':>13}" + (f" {'+/-':>9}" if err_col else "")
                + f" {'kappa1':>13} {'kappa2':>13} {'k1 + k2':>13} {'eq.(10)':>13}"
                  f" {'eq.(11)':>13} {'rel. err':>9}")
        lines = [head]
        for i in rows.tolist():
            label = i if names is None else names[i]
            line = f"{label:>{width}} {self.kappa_def[i]:>13.6g}"
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
    same = np.all(D == 0.0, axis=0)   # gamma^2 did not change at any step: kappa_i is 0
    value[same] = 0.0                 # or below what the differences resolve, which is
    with np.errstate(invalid="ignore", over="ignore"):   # the error then (the largest step's)
        resolution = np.nanmin(np.where(np.isfinite(round_D), round_D, np.inf), axis=0)
    err[same] = np.where(np.isfinite(resolution[same]), resolution[same], np.inf)
    err[same & (mag[0] == 0.0)] = 0.0  # gamma^2 = 0 around p (every path has a zero weight)
    on_path = geometry._k1_structure(g)[:m]   # p_i on some input-output path
    err[same & ~on_path] = 0.0         # gamma^2 does not depend on p_i at all
    return value, err


def verify_lemma1(g, p, max_paths=LEMMA1_MAX_PATHS, param_names=None):
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
    param_names : list of str, optional
        One name per parameter (e.g. ``net.layout.param_names()``), shown in the table
        and kept in the report instead of bare indices.

    Returns
    -------
    Lemma1Report
        ``str(report)`` is a table; ``report.to_dict()`` a dict of arrays.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom.verify import verify_lemma1
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
    if not exact:   # the differences cannot tell these from 0, and k1 + k2 lies in 0 +/- err
        unresolved = (k_err >= np.abs(k_def)) & (diff <= k_err) & (total != k_def) & ~underflow
        if unresolved.any():
            idx = np.flatnonzero(unresolved)
            shown = ", ".join(str(i) for i in idx[:8].tolist()) + (" ..." if idx.size > 8
                                                                   else "")
            extra = (f"{idx.size} entr{'y' if idx.size == 1 else 'ies'} of kappa are below "
                     f"what the central differences of gamma^2 = {r.gamma2:.3g} resolve "
                     f"(definition 0 +/- err; kappa1 + kappa2 lies within it) and are not "
                     f"compared (parameters {shown}); run with a path budget "
                     f"(--max-paths > 0) for the exact definition")
            note = extra if note is None else f"{note}; {extra}"
            underflow = underflow | unresolved
    rel[underflow] = np.nan
    kept = rel[~underflow]
    max_rel = float(np.max(kept, initial=0.0)) if kept.size or not underflow.any() else math.nan
    return Lemma1Report(exact=exact, method=method, kappa_def=k_def, kappa_def_err=k_err,
                        kappa1=r.kappa1, kappa2=r.kappa2, eq10=eq10, eq11=eq11,
                        printed_source=printed_source, rel_error=rel,
                        max_rel_error=max_rel, n_paths=n_paths, underflow=underflow,
                        underflow_note=note, param_names=_check_names(param_names, g))


#: Values below this have lost relative accuracy to float64's gradual underflow.
_SMALL = np.finfo(np.float64).tiny / np.finfo(np.float64).eps


def _weighted_path_exists(g, p):
    """Whether some input-output path has every weight non-zero (then gamma^2 > 0 exactly)."""
    src, dst, _ = g.edges()
    ok = np.zeros(g.n_nodes, dtype=bool)
    ok[g.compiled.inputs] = True
    nonzero = (g.edge_weights(p) != 0).tolist()
    for u, v, w in zip(src.tolist(), dst.tolist(), nonzero):   # sorted by destination
        if w and ok[u]:
            ok[v] = True
    return bool(ok[g.compiled.outputs].any())


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
    >>> from pathgeom.verify import verify_invariance
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
    from ._memory import check_fits   # node-by-batch values and gradients, at p and T_beta p
    check_fits(6 * 8 * int(batch) * (g.n_nodes + g.n_inputs + g.n_outputs),
               f"the forward and backward passes of {int(batch):,} inputs through "
               f"{g.n_nodes:,} nodes", "choose a smaller batch (--batch)")
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
