r"""Path-SGD (eq. 8), plain SGD and path-normalised Adam: a functional core and optimiser objects.

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

Eq. (8) has no global scale: at the paper's IRNN initialisation of a ReLU RNN the
curvature of the recurrent weights is 10^5-10^8 times smaller than a gradient entry, so
the raw step :math:`\eta\, g/\kappa` with the paper's rates blows the network up at
once.  :class:`PathSGD` therefore has named *step-size rules* (:data:`STEP_RULES`):

``"raw"``
    :math:`p - \eta\, g/\kappa`, eq. (8) as printed.
``"calibrated"``
    :math:`p - \eta\, c\, g/\kappa` with one constant
    :math:`c = \lVert g_1 \rVert / \lVert g_1/\kappa_1 \rVert` fixed at the first step,
    so that the first step has the Euclidean length of an SGD step and a learning rate
    means what it means for SGD.  A fixed :math:`c` keeps the commutation with every
    feasible rescaling along the run; its value depends on how the starting point is
    parametrised.
``"backtracking"`` (the default)
    The calibrated step, safeguarded: the step is halved until the loss of the same
    minibatch does not increase (a backtracking line search on the batch loss, at most
    :data:`MAX_HALVINGS` halvings), and the halving factor carries over to the next step,
    where it may double back towards 1.  The losses are invariant under rescalings, so
    the safeguard keeps the commutation too.  It needs the batch loss as a function of
    the parameters, ``opt.step(p, grad, model, loss=...)``, which
    :func:`pathgeom.training.train` passes.

The optimiser objects (:class:`SGD`, :class:`PathSGD`, :class:`PathAdam`, built by name
with :func:`make_optimizer`) share one interface, ``opt.step(p, grad, model, loss=None)
-> new p`` (never in place), ``opt.reset()``, and ``opt.state_dict()`` /
``opt.load_state_dict(state)`` (the moments, the calibration constant and the step
scale, so that a checkpointed run resumes bit for bit), which
:func:`pathgeom.training.train` drives.  Every step checks its result: a parameter that
would become infinite raises :class:`~pathgeom.PathOverflowError` naming it, and a
curvature that underflowed to 0 where the gradient is not 0 raises it too (the step
would otherwise skip that parameter silently).  The
curvature is recomputed from ``model`` at every step, through the structured
``model.path_quantities(p, with_kappa2=...)`` of a constructor such as :func:`pathgeom.rnn`
(:math:`O(T H^2)` for :math:`\kappa^{(1)}`, :math:`O(T H^3)` for the exact :math:`\kappa`)
or :func:`pathgeom.path_quantities` of a bare :class:`~pathgeom.SharedGraph`.  Each takes
an optional gradient-norm clipping threshold ``clip`` (:func:`clip_grad_norm`), applied to
the raw gradient before anything else.
"""

import numbers

import numpy as np

from . import geometry
from ._errors import PathOverflowError, PathUnderflowError
from ._validation import as_params, check_real
from .geometry import _check_graph
from .graph import SharedGraph

__all__ = ["path_sgd_step", "sgd_step", "clip_grad_norm", "PathSGD", "SGD", "PathAdam",
           "make_optimizer", "StepOverflowError", "CURVATURES", "STEP_RULES", "OPTIMIZERS", "MAX_HALVINGS"]

#: The curvatures Path-SGD and path-Adam divide by, and what each is.
CURVATURES = {"kappa1": "kappa^(1) only (eq. 9, Theorem 3): one forward and one backward "
                        "pass; the paper's practical choice",
              "kappa": "the exact kappa = kappa^(1) + kappa^(2) (Lemma 1)"}

#: The step-size rules of :class:`PathSGD` (module docstring).
STEP_RULES = {"raw": "eq. (8) as printed: p - lr * g / kappa",
              "calibrated": "p - lr * c * g / kappa, c = |g|/|g/kappa| fixed at the first step",
              "backtracking": "the calibrated step, halved until the minibatch loss does not "
                              "increase (default)"}

#: The most halvings of one backtracking step; past them the step is not taken.
MAX_HALVINGS = 60


def _check_rate(lr, name="lr"):
    return check_real(lr, name)


def _check_eps(eps):
    return check_real(eps, "eps", strict=False)


def _check_curvature(curvature):
    if callable(curvature) or (isinstance(curvature, str) and curvature in CURVATURES):
        return curvature
    raise ValueError(f"curvature must be one of {tuple(CURVATURES)} or a callable "
                     f"(g, p) -> array, got {curvature!r}")


def _check_rule(rule):
    if isinstance(rule, str) and rule in STEP_RULES:
        return rule
    raise ValueError(f"rule must be one of {tuple(STEP_RULES)}, got {rule!r}")


class StepOverflowError(PathOverflowError):
    """An update that would make a parameter non-finite (the step, not the point, is at
    fault: the training loop keeps the parameters it started from)."""


def _checked_result(new, what, p=None, grad=None):
    """``new`` when finite, else a StepOverflowError naming the first bad parameter."""
    bad = np.flatnonzero(~np.isfinite(new))
    if bad.size:
        i = int(bad[0])
        was = "" if p is None else f" (p[{i}] = {p[i]!r}, gradient {grad[i]!r})"
        raise StepOverflowError(f"{what} made parameter {i} non-finite{was}: the step does "
                                f"not fit in float64; use a smaller learning rate or scale "
                                f"the weights")
    return new


def _support_kappa1(model, p):
    """kappa^(1) of the network whose weights are 1 where ``p != 0`` and 0 elsewhere:
    positive exactly where the true kappa^(1) is positive in exact arithmetic (path counts
    cannot underflow).  None when even the counts overflow, or for a callable curvature."""
    if model is None:
        return None
    for scale in (1.0, 0.5, 0.25):
        ind = (p != 0).astype(np.float64) * scale
        try:
            if isinstance(model, SharedGraph):
                return geometry.kappa1(model, ind)
            return model.path_quantities(ind, with_kappa2=False).kappa1
        except PathOverflowError:
            continue
    return None


def _check_underflow(k, grad, model=None, p=None):
    """A curvature of exactly 0 where the same network with every non-zero weight set to 1
    has a positive one is an underflow: raise rather than skip the parameter silently.
    (A structural 0 -- no weighted path crosses parameter i -- is left alone: then the
    network's own gradient is 0 too.)"""
    suspect = np.flatnonzero((k == 0) & (grad != 0))
    if suspect.size == 0 or model is None:
        return
    support = _support_kappa1(model, p)
    if support is None:
        return
    bad = suspect[support[suspect] > 0]
    if bad.size:
        i = int(bad[0])
        raise PathUnderflowError(f"the curvature of parameter {i} underflowed to 0 while its "
                                f"gradient is {float(grad[i])!r}: the path products through it are "
                                f"below the float64 range; scale the weights up (a feasible "
                                f"rescaling does not help)")


def _curvature(g, p, curvature):
    """The curvature vector, validated."""
    if curvature == "kappa":
        return geometry.kappa(g, p)
    if curvature == "kappa1":
        return geometry.kappa1(g, p)
    return _called_curvature(curvature, g, p)


def _called_curvature(curvature, model, p):
    """``curvature(model, p)``, validated: finite, >= 0, one value per parameter."""
    k = np.asarray(curvature(model, p))
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

    Raises
    ------
    PathOverflowError
        When a parameter of the result would not be finite, or a curvature underflowed to
        0 where the gradient is not 0.

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
    _check_underflow(k, grad, None if callable(curvature) else g, p)
    on = k > 0
    new = p.copy()
    with np.errstate(over="ignore", invalid="ignore"):  # checked below
        new[on] = p[on] - lr * grad[on] / (k[on] + eps)
    return _checked_result(new, "the Path-SGD step", p, grad)


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
    lr = _check_rate(lr)
    with np.errstate(over="ignore", invalid="ignore"):  # checked
        new = p - lr * grad
    return _checked_result(new, "the SGD step", p, grad)


def clip_grad_norm(grad, max_norm):
    r"""``grad`` scaled down to Euclidean norm ``max_norm`` if it is longer (a new array).

    :math:`g \leftarrow g \cdot \min(1, c / \lVert g \rVert_2)`; ``max_norm=None`` returns
    ``grad`` as it is.

    Examples
    --------
    >>> from pathgeom.optim import clip_grad_norm
    >>> clip_grad_norm([3.0, 4.0], 1.0), clip_grad_norm([0.3, 0.4], 1.0)
    (array([0.6, 0.8]), array([0.3, 0.4]))
    """
    grad = np.asarray(grad, dtype=np.float64)
    if max_norm is None:
        return grad
    max_norm = _check_rate(max_norm, "max_norm")  # > 0 and finite: a negative one flips g
    with np.errstate(over="ignore", invalid="ignore"):
        norm = float(np.sqrt(grad @ grad))
    if norm > max_norm:  # also scales an infinite norm (no-op: the result stays non-finite)
        return grad * (max_norm / norm)
    return grad


def _check_clip(clip):
    if clip is None:
        return None
    return _check_rate(clip, "clip")


def _check_model(model):
    """``model`` is a SharedGraph or has ``.path_quantities(p, with_kappa2=...)``."""
    if isinstance(model, SharedGraph) or callable(getattr(model, "path_quantities", None)):
        return model
    raise TypeError(f"expected a pathgeom.SharedGraph or a network with "
                    f".path_quantities(p, with_kappa2=...) (e.g. pathgeom.rnn(...)), got "
                    f"{type(model).__name__}")


def _model_curvature(model, p, curvature):
    """The curvature vector of ``model`` at ``p``: the structured path quantities when the
    model has them, the generic engine for a bare graph, or the callable ``(model, p)``."""
    if callable(curvature):
        return _called_curvature(curvature, model, p)
    exact = curvature == "kappa"
    if isinstance(model, SharedGraph):
        pq = geometry.path_quantities(model, p, with_kappa2=exact)
    else:
        pq = model.path_quantities(p, with_kappa2=exact)
    k = pq.kappa if exact else pq.kappa1
    if k.shape != p.shape:
        raise ValueError(f"the model has {k.size} parameters but p has shape {p.shape}")
    return k


def _as_vector(p, grad):
    if np.ndim(p) != 1:
        raise ValueError(f"p must be a 1-D parameter vector, got shape {np.shape(p)}")
    n = np.shape(p)[0]
    return as_params(p, n), as_params(grad, n, name="grad")


class _Optimizer:
    """Shared pieces: the learning rate, clipping, the bound model, state and ``reset``."""

    model = None
    #: names of the attributes that make up the optimiser's state (``state_dict``)
    _state = ()

    def reset(self):
        """Forget any state from earlier steps (a no-op for stateless optimisers)."""

    def state_dict(self):
        """The optimiser's state as a dict of floats, ints, None and float64 arrays: what a
        checkpoint stores so that a run resumes bit for bit (:meth:`load_state_dict`)."""
        return {k: (None if getattr(self, k) is None else
                    np.array(getattr(self, k)) if isinstance(getattr(self, k), np.ndarray)
                    else getattr(self, k)) for k in self._state}

    def load_state_dict(self, state):
        """Restore a state from :meth:`state_dict` (keys it does not name are refused)."""
        unknown = set(state) - set(self._state)
        missing = set(self._state) - set(state)
        if unknown or missing:
            raise ValueError(f"{type(self).__name__} state has keys {sorted(state)}; expected "
                             f"{sorted(self._state)}")
        for k in self._state:
            v = state[k]
            if isinstance(v, np.ndarray):
                v = None if v.dtype == object else (
                    np.array(v, dtype=np.float64) if v.ndim else v.item())
            setattr(self, k, v)

    def _model_for(self, model):
        if model is None:
            if self.model is None:
                raise TypeError(f"{type(self).__name__}.step needs the model for its "
                                f"curvature: call opt.step(p, grad, model)")
            return self.model
        return _check_model(model)

    def _extra_repr(self):
        return "" if self.clip is None else f", clip={self.clip!r}"


class SGD(_Optimizer):
    r"""Plain SGD: ``SGD(lr, clip=None).step(p, grad, model=None)`` is
    :math:`p - \eta\, \mathrm{clip}(\partial L/\partial p)` (``model`` is ignored).

    Examples
    --------
    >>> from pathgeom.optim import SGD
    >>> SGD(lr=0.1).step([0.5, 2.0], [1.0, 1.0])
    array([0.4, 1.9])
    >>> SGD(lr=0.1, clip=1.0).step([0.0, 0.0], [3.0, 4.0])
    array([-0.06, -0.08])
    """

    def __init__(self, *args, **kwargs):
        model = kwargs.pop("g", None)
        if args and not isinstance(args[0], numbers.Real):  # SGD(g, lr): as PathSGD(g, lr)
            model, args = args[0], args[1:]
        self.model = None if model is None else _check_model(model)
        self._configure(*args, **kwargs)

    def _configure(self, lr, clip=None):
        self.lr = _check_rate(lr)
        self.clip = _check_clip(clip)

    def step(self, p, grad, model=None, loss=None):
        """The parameters after one step from ``p`` (a new array); ``loss`` is ignored."""
        p, grad = _as_vector(p, grad)
        with np.errstate(over="ignore", invalid="ignore"):  # checked
            new = p - self.lr * clip_grad_norm(grad, self.clip)
        return _checked_result(new, "the SGD step", p, grad)

    def __repr__(self):
        return f"SGD(lr={self.lr!r}{self._extra_repr()})"


def _path_normalised(grad, k, eps):
    """``grad / (k + eps)`` where ``k > 0``, 0 elsewhere; and the mask ``k > 0``."""
    on = k > 0
    u = np.zeros_like(grad)
    with np.errstate(over="ignore"):  # an overflow shows as a non-finite step
        np.divide(grad, k + eps if eps else k, out=u, where=on)
    return u, on


def _norm(v):
    """Euclidean norm without spurious overflow or underflow (scaled by the largest entry)."""
    m = float(np.max(np.abs(v))) if v.size else 0.0
    if m == 0.0 or not np.isfinite(m):
        return m
    w = v / m
    return m * float(np.sqrt(w @ w))


def _batch_loss(loss, q):
    """``loss(q)`` as a float; inf when it is not finite or the forward pass overflows."""
    try:
        value = float(loss(q))
    except PathOverflowError:
        return np.inf
    return value if np.isfinite(value) else np.inf


class PathSGD(_Optimizer):
    r"""Path-SGD (eq. 8) with the curvature recomputed at every step and a step-size rule.

    Two forms:

    ``PathSGD(lr, curvature="kappa1", rule="backtracking", eps=0.0, clip=None)``
        The training form: ``opt.step(p, grad, model, loss=None)`` computes the curvature
        of ``model`` at ``p`` (a network with ``.path_quantities``, e.g.
        :func:`pathgeom.rnn`, or a :class:`~pathgeom.SharedGraph`).
    ``PathSGD(g, lr, ...)``
        Bound to one graph or network ``g``: ``opt.step(p, grad, loss=None)`` uses ``g``.

    With :math:`\tilde g` the gradient after clipping (``clip``: the largest gradient
    norm) and :math:`u_i = \tilde g_i / (\kappa_i + \epsilon)` where :math:`\kappa_i > 0`
    (0 elsewhere: those parameters are returned unchanged), the step is
    :math:`p - \eta\, s\, c\, u` where, by ``rule`` (:data:`STEP_RULES`):

    * ``"raw"``: :math:`c = s = 1`, eq. (8) as printed;
    * ``"calibrated"``: :math:`c = \lVert \tilde g_1 \rVert / \lVert u_1 \rVert` at the first
      step after :meth:`reset`, then fixed (or the ``scale`` given); :math:`s = 1`;
    * ``"backtracking"``: :math:`c` as for ``"calibrated"``; :math:`s` starts each step at
      twice the previous step's (at most 1) and is halved until
      ``loss(new) <= loss(p)`` for the ``loss`` callable of this minibatch (at most
      :data:`MAX_HALVINGS` times; then the step is not taken).

    ``curvature`` is ``"kappa1"`` (:math:`\kappa^{(1)}` only, the paper's practical choice),
    ``"kappa"`` (the exact :math:`\kappa^{(1)} + \kappa^{(2)}`; for an RNN the structured
    :math:`O(T H^3)` :math:`\kappa^{(2)}`), or a callable ``(model, p) -> array``.

    Attributes
    ----------
    c : float or None
        The calibration constant (None until the first step of a calibrated rule).
    s : float
        The backtracking step scale of the latest step (1 for the other rules).
    halvings : int
        Halvings done by the backtracking rule since :meth:`reset`.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom.optim import PathSGD, SGD
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
    >>> for opt in (PathSGD(g, lr=0.1, rule="raw"), SGD(lr=0.1)):
    ...     print(opt, opt.step([0.5, 2.0], [1.0, 1.0]))
    PathSGD(lr=0.1, curvature='kappa1', rule='raw', eps=0.0) [0.475 1.6  ]
    SGD(lr=0.1) [0.4 1.9]

    The calibrated first step has the length of an SGD step, ``lr * |g|``:

    >>> opt = PathSGD(lr=0.1, rule="calibrated")
    >>> new = opt.step([0.5, 2.0], [1.0, 1.0], g)
    >>> round(float(np.linalg.norm(new - [0.5, 2.0])), 6), round(0.1 * 2 ** 0.5, 6)
    (0.141421, 0.141421)

    The default rule needs the minibatch loss as a function of the parameters:

    >>> loss = lambda q: (q[0] * q[1] - 3.0) ** 2     # fit f(1) = 3 with f(x) = p1 p0 x
    >>> opt = PathSGD(lr=0.5)
    >>> p = np.array([0.5, 2.0])
    >>> for _ in range(3):
    ...     grad = np.array([2 * (p[0] * p[1] - 3) * p[1], 2 * (p[0] * p[1] - 3) * p[0]])
    ...     p = opt.step(p, grad, g, loss=loss)
    ...     print(round(loss(p), 4), opt.s)        # from loss 4.0; s: the step scale kept
    1.0 0.5
    0.5625 1.0
    0.0039 0.5
    """

    _state = ("c", "s", "halvings")

    def __init__(self, *args, **kwargs):
        model = kwargs.pop("g", None)
        if args and not isinstance(args[0], numbers.Real):  # PathSGD(g, lr, ...)
            model, args = args[0], args[1:]
        if model is not None:
            model = _check_model(model)
        self._configure(*args, **kwargs)
        self.model = model
        self.reset()

    def _configure(self, lr, curvature="kappa1", rule="backtracking", eps=0.0, clip=None,
                   scale=None):
        self.lr = _check_rate(lr)
        self.curvature = _check_curvature(curvature)
        self.rule = _check_rule(rule)
        self.eps = _check_eps(eps)
        self.clip = _check_clip(clip)
        self.scale = None if scale is None else _check_rate(scale, "scale")

    def reset(self):
        """Forget the calibration constant and the backtracking scale."""
        self.c = self.scale if self.rule != "raw" else None
        self.s = 1.0
        self.halvings = 0

    @property
    def graph(self):
        """The graph or network of the bound form (None for the training form)."""
        return self.model

    def step(self, p, grad, model=None, loss=None):
        """The parameters after one step from ``p`` (a new array); the curvature is that of
        ``model`` at ``p`` (or of the bound graph); ``loss(q)`` is the minibatch loss at
        ``q``, needed by the ``"backtracking"`` rule."""
        model = self._model_for(model)
        if self.rule == "backtracking" and not callable(loss):
            raise TypeError("PathSGD(rule='backtracking') needs the minibatch loss: call "
                            "opt.step(p, grad, model, loss=lambda q: ...), or choose "
                            "rule='calibrated' or 'raw'")
        p, grad = _as_vector(p, grad)
        k = _model_curvature(model, p, self.curvature)
        _check_underflow(k, grad, None if callable(self.curvature) else model, p)
        g = clip_grad_norm(grad, self.clip)
        u, _ = _path_normalised(g, k, self.eps)
        if self.rule != "raw" and self.c is None:
            nu = _norm(u)
            if nu == 0:           # a zero gradient moves nothing: calibrate at a later step
                return p.copy()
            self.c = _norm(g) / nu
        c = 1.0 if self.rule == "raw" else self.c
        with np.errstate(over="ignore", invalid="ignore"):  # checked
            d = (self.lr * c) * u
        new = _checked_result(p - d, f"the Path-SGD ({self.rule}) step", p, grad)
        if self.rule != "backtracking":
            return new
        return self._backtrack(p, d, loss)

    def _backtrack(self, p, d, loss):
        """``p - s d`` with the largest ``s = 2 s_prev / 2^j <= 1`` whose loss is not above
        ``loss(p)``; ``p`` itself after :data:`MAX_HALVINGS` halvings."""
        base = _batch_loss(loss, p)
        s = min(1.0, 2.0 * self.s)
        for _ in range(MAX_HALVINGS + 1):
            new = p - s * d
            if _batch_loss(loss, new) <= base:
                self.s = s
                return new
            s *= 0.5
            self.halvings += 1
        self.s = 1.0   # no step taken; the next one starts afresh
        return p.copy()

    def __repr__(self):
        c = self.curvature if isinstance(self.curvature, str) else getattr(
            self.curvature, "__name__", "callable")
        scale = "" if self.scale is None else f", scale={self.scale!r}"
        return (f"PathSGD(lr={self.lr!r}, curvature={c!r}, rule={self.rule!r}, "
                f"eps={self.eps!r}{scale}{self._extra_repr()})")


class PathAdam(_Optimizer):
    r"""Adam fed with the path-normalised gradient :math:`u = g / \kappa` (the paper's
    language-model setting), the curvature recomputed at every step.

    .. math::

        m \leftarrow \beta_1 m + (1 - \beta_1) u, \quad
        v \leftarrow \beta_2 v + (1 - \beta_2) u^2, \quad
        p \leftarrow p - \eta\, \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon},

    with :math:`u_i = \tilde g_i / \kappa_i` (:math:`\tilde g`: the clipped gradient) where
    :math:`\kappa_i > 0` and 0 elsewhere; parameters with :math:`\kappa_i = 0` at this step
    are returned unchanged.  The moments are the optimiser's state: :meth:`reset` clears them
    (:func:`pathgeom.training.train` does so at the start of every run) and
    :meth:`state_dict` saves them.  Adam's step is invariant to the scale of ``u``, so no
    step-size rule is needed.

    Examples
    --------
    The first Adam step moves every parameter with a non-zero gradient by about ``lr``:

    >>> import pathgeom
    >>> from pathgeom.optim import PathAdam
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
    >>> opt = PathAdam(lr=0.01)
    >>> opt
    PathAdam(lr=0.01, curvature='kappa1', betas=(0.9, 0.999), eps=1e-08)
    >>> opt.step([0.5, 2.0], [1.0, -1.0], g)
    array([0.49, 2.01])
    """

    _state = ("m", "v", "t")

    def __init__(self, lr, curvature="kappa1", betas=(0.9, 0.999), eps=1e-8, clip=None):
        self.lr = _check_rate(lr)
        self.curvature = _check_curvature(curvature)
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}") from None
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (b1, b2)
        self.eps = _check_eps(eps)
        self.clip = _check_clip(clip)
        self.reset()

    def reset(self):
        """Clear the moments and the step count."""
        self.m = self.v = None
        self.t = 0

    def step(self, p, grad, model=None, loss=None):
        """The parameters after one step from ``p`` (a new array); updates the moments
        (``loss`` is ignored)."""
        model = self._model_for(model)
        p, grad = _as_vector(p, grad)
        if self.m is not None and self.m.shape != p.shape:
            raise ValueError(f"PathAdam holds moments for {self.m.size} parameters but p has "
                             f"{p.size}; call opt.reset() before training another model")
        k = _model_curvature(model, p, self.curvature)
        _check_underflow(k, grad, None if callable(self.curvature) else model, p)
        u, on = _path_normalised(clip_grad_norm(grad, self.clip), k, 0.0)
        b1, b2 = self.betas
        t = self.t + 1
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            m = u * (1 - b1) if self.m is None else b1 * self.m + (1 - b1) * u
            v = u * u * (1 - b2) if self.v is None else b2 * self.v + (1 - b2) * (u * u)
            d = (self.lr / (1 - b1 ** t)) * m / (np.sqrt(v / (1 - b2 ** t)) + self.eps)
            d[~on] = 0.0
            new = p - d
        if not (np.isfinite(m).all() and np.isfinite(v).all()):
            bad = int(np.flatnonzero(~(np.isfinite(m) & np.isfinite(v)))[0])
            raise StepOverflowError(f"the path-Adam moments of parameter {bad} overflowed "
                                    f"float64 (g/kappa = {u[bad]!r}); use gradient clipping "
                                    f"or scale the weights")
        _checked_result(new, "the path-Adam step", p, grad)
        self.m, self.v, self.t = m, v, t
        return new

    def __repr__(self):
        c = self.curvature if isinstance(self.curvature, str) else getattr(
            self.curvature, "__name__", "callable")
        return (f"PathAdam(lr={self.lr!r}, curvature={c!r}, betas={self.betas!r}, "
                f"eps={self.eps!r}{self._extra_repr()})")


#: The optimisers of :func:`make_optimizer`, the ``--optimizer`` choices of the CLI.
OPTIMIZERS = {"sgd": SGD, "path-sgd": PathSGD, "path-adam": PathAdam}
_OPTIMIZERS = OPTIMIZERS


def make_optimizer(name, lr, **kwargs):
    """An optimiser by name: ``"sgd"``, ``"path-sgd"`` or ``"path-adam"``; ``kwargs`` go to
    :class:`SGD` (``clip``), :class:`PathSGD` (``curvature, rule, eps, clip, scale``) or
    :class:`PathAdam` (``curvature, betas, eps, clip``).

    Examples
    --------
    >>> from pathgeom.optim import make_optimizer
    >>> make_optimizer("path-sgd", 1e-3, curvature="kappa", clip=10.0)
    PathSGD(lr=0.001, curvature='kappa', rule='backtracking', eps=0.0, clip=10.0)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    if cls is SGD and kwargs.keys() - {"clip"}:
        raise TypeError(f"sgd takes only clip=..., not {sorted(kwargs.keys() - {'clip'})}")
    return cls(lr, **kwargs)
