r"""Path-SGD (eq. 8) and plain SGD: a functional core and small optimiser objects.

Path-SGD divides each coordinate of the gradient by the curvature of the path
regularizer along that coordinate,

.. math::

    p_i \leftarrow p_i - \eta\, \frac{\partial L / \partial p_i}{\kappa_i(p)},
    \qquad \kappa_i = \tfrac12 \frac{\partial^2 \gamma^2}{\partial p_i^2}
                    = \kappa^{(1)}_i + \kappa^{(2)}_i \quad \text{(eq. 8, Lemma 1)}.

Under a feasible node-wise rescaling :math:`T_\beta` the gradient scales by
:math:`\beta_u/\beta_v` and :math:`\kappa` by :math:`(\beta_u/\beta_v)^2`, so the step
commutes with :math:`T_\beta` (Theorem 2) for the exact :math:`\kappa`, for
:math:`\kappa^{(1)}` alone (the paper's practical choice), or for any
:math:`\kappa^{(1)} + c\,\kappa^{(2)}`; plain SGD does not commute.  A positive ``eps``
in the denominator breaks the exact commutation (it is not rescaled).

Parameters on no input-output path carrying weight have :math:`\kappa_i = 0`: they do not
affect :math:`\gamma^2`, the step :math:`0/0` has no meaning, and Path-SGD leaves them
unchanged (with the network's own loss their gradient is 0 too).
"""

import numbers

import numpy as np

from . import geometry
from ._validation import as_params
from .geometry import _check_graph

__all__ = ["path_sgd_step", "sgd_step", "PathSGD", "SGD"]

CURVATURES = ("kappa", "kappa1")


def _check_rate(lr, name="lr"):
    if (not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not np.isfinite(lr)
            or lr <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {lr!r}")
    return float(lr)


def _check_eps(eps):
    if (not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not np.isfinite(eps)
            or eps < 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_curvature(curvature):
    if callable(curvature) or curvature in CURVATURES:
        return curvature
    raise ValueError(f"curvature must be one of {CURVATURES} or a callable (g, p) -> array, "
                     f"got {curvature!r}")


def _curvature(g, p, curvature):
    """The curvature vector, validated."""
    if curvature == "kappa":
        return geometry.kappa(g, p)
    if curvature == "kappa1":
        return geometry.kappa1(g, p)
    k = np.asarray(curvature(g, p))
    if k.dtype == object or not np.issubdtype(k.dtype, np.number) or k.shape != p.shape:
        raise ValueError(f"the curvature callable returned {k.dtype} of shape {k.shape}; it "
                         f"must return a real array of shape ({p.size},)")
    k = k.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(k) | (k < 0))
    if bad.size:
        raise ValueError(f"the curvature callable returned {k[bad[0]]} for parameter "
                         f"{int(bad[0])}; curvatures must be finite and >= 0")
    return k


def path_sgd_step(g, p, grad, lr, curvature="kappa", eps=0.0):
    r"""One Path-SGD step (eq. 8): :math:`p_i - \eta\, g_i / (\kappa_i + \epsilon)`; :math:`p_i` where :math:`\kappa_i = 0`.

    Parameters
    ----------
    g : SharedGraph
    p : array_like, shape (n_params,)
    grad : array_like, shape (n_params,)
        :math:`\partial L / \partial p` at ``p`` (e.g. from :meth:`SharedGraph.backward`).
    lr : float
        Learning rate :math:`\eta > 0`.
    curvature : {"kappa", "kappa1"} or callable, default "kappa"
        ``"kappa"``: the exact :math:`\kappa = \kappa^{(1)} + \kappa^{(2)}`
        (:func:`pathgeom.kappa`); ``"kappa1"``: :math:`\kappa^{(1)}` only
        (:func:`pathgeom.kappa1`, the paper's choice, one forward and one backward pass);
        a callable ``(g, p) -> array`` of finite values >= 0.
    eps : float, default 0.0
        Added to the curvature where it is positive.

    Returns
    -------
    ndarray, shape (n_params,)
        A new array.  Parameters with curvature exactly 0 (on no path carrying weight)
        are returned unchanged.

    Examples
    --------
    The chain ``x -> a -> y`` with weights 0.5 and 2: :math:`\kappa = (4, 0.25)`.

    >>> import pathgeom
    >>> from pathgeom.optim import path_sgd_step
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
    >>> path_sgd_step(g, [0.5, 2.0], grad=[1.0, 1.0], lr=0.1)
    array([0.475, 1.6  ])
    """
    _check_graph(g)
    p = as_params(p, g.n_params)
    grad = as_params(grad, g.n_params, name="grad")
    lr = _check_rate(lr)
    eps = _check_eps(eps)
    k = _curvature(g, p, _check_curvature(curvature))
    on = k > 0
    new = p.copy()
    new[on] = p[on] - lr * grad[on] / (k[on] + eps)
    return new


def sgd_step(p, grad, lr):
    r"""One plain SGD step :math:`p - \eta\, \partial L/\partial p` (a new array).

    Examples
    --------
    >>> from pathgeom.optim import sgd_step
    >>> sgd_step([0.5, 2.0], [1.0, 1.0], lr=0.1)
    array([0.4, 1.9])
    """
    if np.ndim(p) != 1:
        raise ValueError(f"p must be a 1-D parameter vector, got shape {np.shape(p)}")
    n = np.shape(p)[0]
    p = as_params(p, n)
    grad = as_params(grad, n, name="grad")
    return p - _check_rate(lr) * grad


class PathSGD:
    r"""Path-SGD on one graph: ``PathSGD(g, lr, curvature="kappa", eps=0.0).step(p, grad)``.

    Holds the settings, validated once; :meth:`step` is :func:`path_sgd_step`.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom.optim import PathSGD, SGD
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
    >>> for opt in (PathSGD(g, lr=0.1, curvature="kappa1"), SGD(lr=0.1)):
    ...     print(opt, opt.step([0.5, 2.0], [1.0, 1.0]))
    PathSGD(lr=0.1, curvature='kappa1', eps=0.0) [0.475 1.6  ]
    SGD(lr=0.1) [0.4 1.9]
    """

    def __init__(self, g, lr, curvature="kappa", eps=0.0):
        _check_graph(g)
        self.graph = g
        self.lr = _check_rate(lr)
        self.curvature = _check_curvature(curvature)
        self.eps = _check_eps(eps)

    def step(self, p, grad):
        """The parameters after one step from ``p`` (a new array)."""
        return path_sgd_step(self.graph, p, grad, self.lr, self.curvature, self.eps)

    def __repr__(self):
        c = self.curvature if isinstance(self.curvature, str) else getattr(
            self.curvature, "__name__", "callable")
        return f"PathSGD(lr={self.lr!r}, curvature={c!r}, eps={self.eps!r})"


class SGD:
    r"""Plain SGD with the interface of :class:`PathSGD`: ``SGD(lr).step(p, grad)``."""

    def __init__(self, lr):
        self.lr = _check_rate(lr)

    def step(self, p, grad):
        """The parameters after one step from ``p`` (a new array)."""
        return sgd_step(p, grad, self.lr)

    def __repr__(self):
        return f"SGD(lr={self.lr!r})"
