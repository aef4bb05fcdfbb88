r"""Training RNNs (and any shared-weight graph) with SGD, Path-SGD and path-normalised Adam.

:func:`train` runs minibatch training of a network on a task (see :mod:`pathgeom.tasks`:
an object with ``n_in, n_out, T, outputs, loss, sample(rng, B), test``), with

* the dense numpy BPTT of :class:`pathgeom.RNN` (``engine="dense"``, fast) or the generic
  graph engine :meth:`SharedGraph.forward` / :meth:`~SharedGraph.backward`
  (``engine="graph"``, any graph; the same gradients to rounding);
* the losses :func:`mse_loss` and :func:`softmax_cross_entropy` (log-sum-exp stable), both
  means over every predicted position, with :func:`accuracy` and :func:`bits_per_char`;
* the optimisers of :mod:`pathgeom.optim` (:class:`SGD`, :class:`PathSGD`,
  :class:`PathAdam`, :func:`make_optimizer`), re-exported here.  Path-SGD's curvature
  (:math:`\kappa^{(1)}`, the paper's practical choice, or the exact
  :math:`\kappa = \kappa^{(1)} + \kappa^{(2)}`) is recomputed from the current parameters
  at every step, by the RNN's structured path quantities;
* divergence handling: a non-finite loss, a loss above ``diverge_factor`` times the
  run's initial test loss, a non-finite parameter or a
  :class:`~pathgeom.PathOverflowError` stops the run at once, with
  ``status="diverged"``, a message naming the step and the cause, and the last good
  parameters kept (and saved);
* run directories (:mod:`pathgeom.runs`): checkpoints every ``checkpoint_every`` steps
  and on SIGINT/SIGTERM (``status="interrupted"``), exact resumption
  (``resume=True``: the same parameters, bit for bit, as an uninterrupted run), atomic
  files, and an existing directory never overwritten unless asked;
* deliberate thread counts (``threads``: BLAS through threadpoolctl, and numba);
* a tqdm progress bar with the running loss.
"""

import contextlib
import math
import numbers
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import _threads, runs
from ._errors import PathOverflowError
from ._validation import as_real_array, check_int, check_rng
from .constructors.rnn import RNN
from .graph import SharedGraph
from .optim import (SGD, PathAdam, PathSGD, StepOverflowError, clip_grad_norm,
                    make_optimizer)
from .runs import RunDirError, load_params, save_params

__all__ = ["mse_loss", "softmax_cross_entropy", "accuracy", "bits_per_char", "SGD",
           "PathSGD", "PathAdam", "make_optimizer", "clip_grad_norm", "TrainResult", "train",
           "evaluate", "save_params", "load_params", "STATUSES", "thread_limits"]

#: How a run can end (``TrainResult.status``, ``result.json["status"]``).
STATUSES = ("finished", "diverged", "interrupted")

ENGINES = ("dense", "graph")


# ---------------------------------------------------------------------------- losses


def mse_loss(Y_pred, Y):
    r"""Mean squared error over every entry, and its gradient.

    .. math::

        L = \frac1N \sum_i (\hat y_i - y_i)^2, \qquad
        \frac{\partial L}{\partial \hat y_i} = \frac2N (\hat y_i - y_i).

    Parameters
    ----------
    Y_pred, Y : array_like, same shape

    Returns
    -------
    loss : float
    dY : ndarray, shape of ``Y_pred``

    Examples
    --------
    >>> from pathgeom.training import mse_loss
    >>> mse_loss([[1.0], [2.0]], [[0.0], [2.0]])
    (0.5, array([[1.],
           [0.]]))
    """
    Y_pred = np.asarray(Y_pred, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y_pred.shape != Y.shape:
        raise ValueError(f"predictions have shape {Y_pred.shape} but targets {Y.shape}; "
                         f"mse_loss needs equal shapes")
    if Y.size == 0:
        raise ValueError("mse_loss of an empty batch")
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite: the caller checks
        r = Y_pred - Y
        loss = float(np.vdot(r, r)) / r.size
        return loss, r * (2.0 / r.size)


def _check_labels(logits, labels):
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits have shape {logits.shape} but labels {labels.shape}; "
                         f"logits must be labels.shape + (n_classes,)")
    if labels.size == 0:
        raise ValueError("a loss of an empty batch")
    C = logits.shape[-1]
    bad = np.flatnonzero((labels < 0) | (labels >= C))
    if bad.size:
        raise ValueError(f"label {labels.ravel()[bad[0]]} (flat index {int(bad[0])}) is not "
                         f"a class index in 0..{C - 1}")
    return logits, labels


def softmax_cross_entropy(logits, labels):
    r"""Mean softmax cross-entropy (in nats) over every labelled position, and its gradient.

    With :math:`m = \max_c z_c` (log-sum-exp, so no ``exp`` overflows),

    .. math::

        L = \frac1N \sum_n \Big(m_n + \log \sum_c e^{z_{nc} - m_n} - z_{n y_n}\Big), \qquad
        \frac{\partial L}{\partial z_{nc}} = \frac1N \big(\mathrm{softmax}(z_n)_c
                                                   - [c = y_n]\big).

    Parameters
    ----------
    logits : array_like, shape labels.shape + (n_classes,)
    labels : array_like of int, any shape (e.g. (B,) or (B, T))

    Returns
    -------
    loss : float
    dY : ndarray, shape of ``logits``

    Examples
    --------
    >>> import numpy as np
    >>> from pathgeom.training import softmax_cross_entropy
    >>> loss, dY = softmax_cross_entropy([[0.0, 0.0], [1000.0, 0.0]], [1, 0])
    >>> loss, bool(np.isclose(loss, np.log(2) / 2))
    (0.34657359027997264, True)
    >>> dY
    array([[ 0.25, -0.25],
           [ 0.  ,  0.  ]])
    """
    logits, labels = _check_labels(logits, labels)
    N = labels.size
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite: the caller checks
        z = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=-1, keepdims=True)
        picked = np.take_along_axis(z, labels[..., None], axis=-1)
        loss = float(np.sum(np.log(s) - picked)) / N
        dY = e / (s * N)
    idx = np.unravel_index(np.arange(N), labels.shape) + (labels.ravel(),)
    dY[idx] -= 1.0 / N
    return loss, dY


def accuracy(logits, labels):
    """Fraction of positions whose largest logit is the label (ties: the first class).

    Examples
    --------
    >>> from pathgeom.training import accuracy
    >>> accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 1, 1])
    0.6666666666666666
    """
    logits, labels = _check_labels(logits, labels)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def bits_per_char(loss_nats):
    r"""A cross-entropy in nats per character as bits per character: :math:`L / \ln 2`.

    >>> from pathgeom.training import bits_per_char
    >>> bits_per_char(0.6931471805599453)
    1.0
    """
    return float(loss_nats) / math.log(2.0)


_LOSSES = {"mse": mse_loss, "xent": softmax_cross_entropy}


def _loss_fn(task):
    if task.loss not in _LOSSES:
        raise ValueError(f"task {task.name!r} has loss {task.loss!r}; train knows "
                         f"{sorted(_LOSSES)}")
    return _LOSSES[task.loss]


def _metric_name(task):
    """``mse`` for regression, ``accuracy`` for one label per sequence, ``bits_per_char``
    for a label at every step (a language model)."""
    if task.loss == "mse":
        return "mse"
    return "accuracy" if task.outputs == "last" else "bits_per_char"


# ---------------------------------------------------------------------------- passes


def _passes(model, task, engine):
    """``(forward(p, X) -> predictions, backward(p, X, dY) -> grad, n_params)``."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if isinstance(model, RNN):
        for name in ("n_in", "n_out", "T", "outputs"):
            if getattr(model, name) != getattr(task, name):
                raise ValueError(f"the model has {name}={getattr(model, name)!r} but task "
                                 f"{task.name!r} has {name}={getattr(task, name)!r}; build "
                                 f"the network with pathgeom.rnn(task.n_in, H, task.n_out, "
                                 f"task.T, outputs=task.outputs)")
    if engine == "dense":
        if isinstance(model, RNN):
            last = {}  # the hidden states of the latest forward pass, reused by its backward

            def forward(p, X):
                Y, states = model.forward_with_states(p, X)
                last.update(key=(id(p), id(X)), states=states)
                return Y

            def backward(p, X, dY):
                states = last.get("states") if last.get("key") == (id(p), id(X)) else None
                return model.backward(p, X, dY, states=states)

            return forward, backward, model.n_params
        if callable(getattr(model, "forward", None)) and callable(
                getattr(model, "backward", None)) and hasattr(model, "input_shape"):
            return _feedforward_passes(model, task)
        raise TypeError(f"engine='dense' needs a network with dense passes (pathgeom.rnn, "
                        f"cnn or mlp), got {type(model).__name__}; use engine='graph' for a "
                        f"SharedGraph")
    g = model if isinstance(model, SharedGraph) else getattr(model, "graph", None)
    if not isinstance(g, SharedGraph):
        raise TypeError(f"engine='graph' needs a SharedGraph or a network with .graph, got "
                        f"{type(model).__name__}")
    rows = getattr(model, "graph_inputs", None) or (lambda X: np.reshape(X, (len(X), -1)))
    if hasattr(model, "input_shape") and not isinstance(model, RNN):  # a sequence per sample
        to_rows, shape_in = rows, tuple(model.input_shape)
        rows = lambda X: to_rows(np.reshape(X, (len(X),) + shape_in))  # noqa: E731

    def shape(B):
        return (B, task.n_out) if task.outputs == "last" else (B, task.T, task.n_out)

    def forward(p, X):
        return g.forward(p, rows(X)).reshape(shape(len(X)))

    def backward(p, X, dY):
        return g.backward(p, rows(X), np.reshape(dY, (len(X), -1)))

    return forward, backward, g.n_params


def _feedforward_passes(model, task):
    """Dense passes of a feed-forward network (:func:`pathgeom.cnn`, :func:`pathgeom.mlp`)
    on a task with one output per sequence: each sequence ``(T, n_in)`` is read as one
    sample of ``model.input_shape`` (same number of values, C order), e.g. the 64 pixels of
    a built-in digit as a ``(1, 8, 8)`` image."""
    size = int(np.prod(model.input_shape))
    if task.outputs != "last" or task.T * task.n_in != size or model.n_out != task.n_out:
        raise ValueError(f"a {type(model).__name__} with input_shape {model.input_shape} and "
                         f"{model.n_out} outputs cannot take task {task.name!r} (T={task.T}, "
                         f"n_in={task.n_in}, n_out={task.n_out}, outputs={task.outputs!r}): "
                         f"it needs T * n_in = {size}, n_out = {task.n_out} and one output "
                         f"per sequence")

    def samples(X):
        return np.reshape(X, (len(X),) + tuple(model.input_shape))

    def forward(p, X):
        return model.forward(p, samples(X))

    def backward(p, X, dY):
        return model.backward(p, samples(X), dY)

    return forward, backward, model.n_params


def _evaluate(forward, task, p, batch_size):
    """Test loss and metric, in chunks of ``batch_size`` sequences."""
    X, Y = task.test
    loss_fn = _loss_fn(task)
    metric = _metric_name(task)
    total = correct = 0.0
    for s in range(0, len(X), batch_size):
        Yc = Y[s:s + batch_size]
        out = forward(p, X[s:s + batch_size])
        loss, _ = loss_fn(out, Yc)
        total += loss * Yc.size
        if metric == "accuracy":
            correct += accuracy(out, Yc) * Yc.size
    n = np.size(Y)
    loss = total / n
    value = {"mse": loss, "accuracy": correct / n,
             "bits_per_char": loss / math.log(2.0)}[metric]
    return float(loss), float(value)


def evaluate(model, task, p, engine="dense", batch_size=500):
    """``(test_loss, test_metric)`` of ``model`` with parameters ``p`` on ``task.test``.

    The metric is the test MSE for a regression task (``loss="mse"``), the accuracy for a
    classification with one label per sequence (``outputs="last"``), and bits per
    character for a label at every step (``outputs="all"``, a language model).  The test
    set is run in chunks of ``batch_size`` sequences.
    """
    forward, _, _ = _passes(model, task, engine)
    return _evaluate(forward, task, p, _positive(batch_size, "batch_size"))


# ---------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    p : ndarray
        The final parameters; after a divergence, the last good ones.
    history : list of dict
        One row every ``log_every`` steps (and at every evaluation): ``step`` (updates
        done), ``train_loss`` (the mean minibatch loss of the steps since the previous row,
        each at the parameters *before* its update; None at step 0), ``test_loss`` and
        ``test_metric`` (at step 0, every ``eval_every`` steps and the last step; None
        elsewhere).
    test_loss, test_metric : float
        On the test set at ``p`` (nan when even that overflows).
    diverged : bool
        ``status == "diverged"``.
    message : str
        How the run ended; after a divergence, at which step and why.
    seconds : float
        Wall time of the run, summed over its resumptions.
    steps : int
        Updates done (kept).
    status : {"finished", "diverged", "interrupted"}
    resumed_from : int or None
        The step a resumed run continued from (None for a fresh run).
    valid_loss : float or None
        The loss on ``task.valid`` at ``p`` when the task has a validation set.
    """

    p: np.ndarray
    history: list = field(repr=False)
    test_loss: float
    test_metric: float
    diverged: bool
    message: str
    seconds: float
    steps: int = 0
    status: str = "finished"
    resumed_from: object = None
    valid_loss: object = None


def _positive(value, name):
    return check_int(value, name, 1)


class _Diverged(Exception):
    """``(step, what, bad_p)``: ``bad_p`` when the failure was measured at ``p`` itself,
    so that the last good parameters are those one update before."""


def _nonfinite(what, arr):
    bad = np.flatnonzero(~np.isfinite(arr))
    return (f"{what}: {bad.size} of {arr.size} entries are not finite (first: "
            f"[{int(bad[0])}] = {arr[bad[0]]})")


@contextlib.contextmanager
def thread_limits(threads):
    """Run the block with ``threads`` BLAS threads (threadpoolctl) and numba threads, and
    restore both afterwards; ``None`` leaves them as they are.

    Small per-step matrices (an RNN with H = 100) run fastest on one thread, and a sweep
    of single-threaded runs uses the cores better than runs that fight over them."""
    if threads is None:
        yield
        return
    threads = _positive(threads, "threads")
    with _threads.threads(threads):
        yield


class _BatchLoss:
    """The minibatch loss as a function of the parameters, ``loss(q)``, for step-size rules
    that look at it; the loss at ``p``, already computed by the loop, is not recomputed
    (the same passes would give the same number)."""

    def __init__(self, forward, loss_fn, X, Y, p, loss_at_p):
        self.forward, self.loss_fn, self.X, self.Y = forward, loss_fn, X, Y
        self.p, self.loss_at_p = p, loss_at_p

    def __call__(self, q):
        if q is self.p or np.array_equal(q, self.p):
            return self.loss_at_p
        return self.loss_fn(self.forward(q, self.X), self.Y)[0]


class _StopFlag:
    """SIGINT/SIGTERM set a flag that the loop checks after every step (a second SIGINT
    interrupts at once); installed only in the main thread, restored afterwards."""

    def __init__(self, enabled):
        self.signal = None
        self._old = {}
        self.enabled = enabled and threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _check_rng(rng):
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(0 if rng is None else int(rng))
    return check_rng(rng, "rng (a numpy.random.Generator, an int seed or None)")


def _check_factor(diverge_factor):
    if diverge_factor is None:
        return math.inf
    if (isinstance(diverge_factor, bool) or not isinstance(diverge_factor, numbers.Real)
            or math.isnan(diverge_factor) or diverge_factor <= 1):
        raise ValueError(f"diverge_factor must be a number > 1 (or None for no bound), got "
                         f"{diverge_factor!r}")
    return float(diverge_factor)


def _check_p0(p0, n_params):
    p = np.array(as_real_array(p0, "p0"))  # the one dtype rule; a private copy
    if p.shape != (n_params,):
        raise ValueError(f"p0 has shape {p.shape}; the model has {n_params} parameters")
    if not np.isfinite(p).all():
        raise ValueError(_nonfinite("p0 is not finite", p))
    return p


def _run_config(task, model, optimizer, batch_size, eval_every, engine, log_every,
                diverge_factor, threads):
    """What a resumed run must share with the run it continues (everything but steps)."""
    return dict(task=task.name, task_description=_describe(task),
                model=runs.model_config(model), optimizer=repr(optimizer),
                batch_size=batch_size, eval_every=eval_every, engine=engine,
                log_every=log_every, diverge_factor=diverge_factor, threads=threads,
                metric=_metric_name(task))


def train(model, task, optimizer, steps, batch_size=64, rng=None, p0=None, eval_every=100,
          out_dir=None, progress=True, engine="dense", *, diverge_factor=100.0,
          checkpoint_every=500, log_every=1, resume=False, overwrite=False, threads=None,
          should_stop=None, handle_signals=True, meta=None):
    r"""Train ``model`` on ``task`` with ``optimizer`` for ``steps`` minibatch updates.

    Each step draws ``X, Y = task.sample(rng, batch_size)``, computes the loss (mean over
    every predicted position) and its gradient, and takes
    ``p = optimizer.step(p, grad, model, loss=...)`` (``loss``: the minibatch loss as a
    function of the parameters, which Path-SGD's backtracking rule uses); Path-SGD and
    path-Adam recompute their curvature from the current ``p`` at every step.

    Parameters
    ----------
    model : pathgeom.RNN, CNN or MLP, or a SharedGraph / network with ``.graph``
        An RNN must match the task (``n_in, n_out, T, outputs``); a feed-forward network
        reads each sequence as one sample of its ``input_shape`` (``T * n_in`` values; one
        output per sequence); any of them, or a bare graph, runs on the generic engine
        with ``engine="graph"``.
    task : task object
        ``name, n_in, n_out, T, outputs, loss ("mse" | "xent"), sample(rng, B), test``
        (and ``valid``, or None).
    optimizer : SGD, PathSGD or PathAdam
        (:func:`make_optimizer`); :meth:`reset` is called first (or its state restored
        when resuming).
    steps : int
        Number of updates (>= 0); when resuming, the total including the steps done.
    batch_size : int
    rng : numpy.random.Generator, int or None
        Draws the batches (and ``p0`` when not given); an int seeds a new generator; None
        means seed 0, so that a run is reproducible by default.  Ignored when resuming:
        the generator's state comes from the checkpoint.
    p0 : array_like, optional
        Initial parameters; default ``model.init(rng, "irnn")`` for an RNN,
        ``model.init(rng)`` for other networks (required for a bare graph).
    eval_every : int or None
        Evaluate on ``task.test`` every this many steps (and at steps 0 and ``steps``).
    out_dir : str or path, optional
        The run directory (:mod:`pathgeom.runs`): ``checkpoint.npz`` every
        ``checkpoint_every`` steps, on SIGINT/SIGTERM and at the end; ``history.csv`` and
        ``history.json`` with each checkpoint; ``result.json`` and ``params.npz`` at the
        end.  An existing non-empty directory is refused unless ``resume`` or
        ``overwrite``; a path that is a file is refused.  Checked before any work.
    progress : bool
        Show a tqdm progress bar with the running (exponentially averaged) training loss.
    engine : {"dense", "graph"}
        ``"dense"``: the RNN's numpy BPTT; ``"graph"``: :meth:`SharedGraph.forward` /
        :meth:`~SharedGraph.backward` on ``model.graph`` (the same numbers to rounding).
    diverge_factor : float or None, default 100
        A training or test loss above this many times the initial test loss stops the run
        as diverged (None: only non-finite values do).
    checkpoint_every : int, default 500
        Steps between checkpoints (with ``out_dir``).
    log_every : int, default 1
        Steps between history rows (evaluations always get one).
    resume : bool
        Continue the run in ``out_dir`` from its checkpoint, with its parameters, random
        generator, optimiser state and thread count: the result equals, bit for bit, the
        run that was never interrupted.  ``model``, ``task``, ``optimizer`` and the other
        settings must be those of the run (checked), ``steps`` may be larger.  A finished
        run with ``steps`` not larger, or a diverged run, is returned unchanged.
    overwrite : bool
        Replace the run files in an existing ``out_dir``.
    threads : int or None
        BLAS and numba threads during the run (:func:`thread_limits`); None leaves the
        process's settings.
    should_stop : callable, optional
        Called after every step; when it returns True the run stops as interrupted (a
        checkpoint is written).  SIGINT and SIGTERM do the same when ``handle_signals``
        and the run is in the main thread.
    meta : dict, optional
        JSON-able data written to ``out_dir/run.json`` when a fresh run starts (the
        command line stores its configuration there).

    Returns
    -------
    TrainResult

    Notes
    -----
    A non-finite training loss, a loss above the ``diverge_factor`` bound, a non-finite
    parameter after an update, a non-finite test loss or a
    :class:`~pathgeom.PathOverflowError` (in the forward or backward pass or in the
    curvature) stops the run at once: ``status="diverged"``, the message says what
    happened at which step, and ``p`` (and ``params.npz``) holds the last good parameters:
    those whose losses were finite and below the bound.

    Examples
    --------
    A tiny regression task, the mean of a 3-step sequence:

    >>> import numpy as np, pathgeom
    >>> from pathgeom.training import train, make_optimizer
    >>> class Mean:
    ...     name, n_in, n_out, T, outputs, loss, valid = "mean", 1, 1, 3, "last", "mse", None
    ...     def sample(self, rng, B):
    ...         X = rng.uniform(size=(B, 3, 1))
    ...         return X, X.mean(axis=1)
    ...     test = property(lambda self: self.sample(np.random.default_rng(1), 100))
    >>> net = pathgeom.rnn(1, 4, 1, T=3)
    >>> res = train(net, Mean(), make_optimizer("path-adam", 0.03), steps=300,
    ...             eval_every=100, progress=False)
    >>> [(h["step"], round(h["test_loss"], 4)) for h in res.history if h["test_loss"] is not None]
    [(0, 0.2668), (100, 0.059), (200, 0.0086), (300, 0.001)]
    >>> res.status, res.message
    ('finished', 'finished 300 steps: test mse 0.00105')
    """
    forward, backward, n_params = _passes(model, task, engine)
    loss_fn = _loss_fn(task)
    steps = check_int(steps, "steps", 0)
    batch_size = _positive(batch_size, "batch_size")
    eval_every = (steps or 1) if eval_every is None else _positive(eval_every, "eval_every")
    checkpoint_every = _positive(checkpoint_every, "checkpoint_every")
    log_every = _positive(log_every, "log_every")
    factor = _check_factor(diverge_factor)
    if threads is not None:
        threads = _positive(threads, "threads")
    if should_stop is not None and not callable(should_stop):
        raise TypeError("should_stop must be a callable () -> bool")
    if (resume or overwrite) and out_dir is None:
        raise ValueError("resume and overwrite need out_dir, the run directory")
    config = _run_config(task, model, optimizer, batch_size, eval_every, engine, log_every,
                         None if math.isinf(factor) else factor, threads)
    ckpt = None
    if out_dir is not None:
        out_dir = runs.prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
        if meta is not None and not resume:
            runs.atomic_write_json(f"{out_dir}/run.json", meta)
        if resume:
            ckpt = runs.load_checkpoint(out_dir)
            _check_same_run(ckpt["config"], config, out_dir)
            if ckpt["step"] > steps:
                raise ValueError(f"{out_dir} has done {ckpt['step']} steps already; resume "
                                 f"with steps >= {ckpt['step']}")
    if ckpt is None:
        rng = _check_rng(rng)
        if p0 is None:
            if not callable(getattr(model, "init", None)):
                raise ValueError("p0 is required: this model has no init(rng, scheme)")
            p0 = model.init(rng, "irnn") if isinstance(model, RNN) else model.init(rng)
        p = _check_p0(p0, n_params)
        optimizer.reset()
    with thread_limits(threads):
        return _Loop(model, task, optimizer, forward, backward, loss_fn, steps, batch_size,
                     eval_every, checkpoint_every, log_every, factor, out_dir, config,
                     progress, should_stop, handle_signals).run(
            *((p, rng, None) if ckpt is None else (None, None, ckpt)))


def _check_same_run(stored, config, out_dir):
    diff = [k for k in config if stored.get(k) != runs.jsonable(config[k])]
    if diff:
        k = diff[0]
        raise RunDirError(f"{out_dir} was run with {k} = {stored.get(k)!r}, not "
                          f"{runs.jsonable(config[k])!r}: resume a run with the model, task, "
                          f"optimiser and settings it was started with")


class _Loop:
    """The state of one training run between steps, and what it writes."""

    def __init__(self, model, task, optimizer, forward, backward, loss_fn, steps, batch_size,
                 eval_every, checkpoint_every, log_every, factor, out_dir, config, progress,
                 should_stop, handle_signals):
        self.__dict__.update(locals())
        del self.__dict__["self"]

    # -- evaluation

    def _test(self, p):
        return _evaluate(self.forward, self.task, p, 500)

    def _valid_loss(self, p):
        valid = getattr(self.task, "valid", None)
        if valid is None:
            return None
        X, Y = valid
        total = 0.0
        for s in range(0, len(X), 500):
            Yc = Y[s:s + 500]
            total += self.loss_fn(self.forward(p, X[s:s + 500]), Yc)[0] * np.size(Yc)
        value = total / np.size(Y)
        return float(value) if np.isfinite(value) else None

    # -- the run

    def run(self, p, rng, ckpt):
        """The whole run with SIGINT/SIGTERM turned into a clean stop (the first test
        evaluation and the final writes included)."""
        with _StopFlag(self.handle_signals) as stop:
            self.stop = stop
            return self._run(p, rng, ckpt)

    def _run(self, p, rng, ckpt):
        start = time.perf_counter()
        if ckpt is None:
            st = dict(step=0, prev=p, p=p, history=[], window=[0.0, 0], seconds=0.0,
                      resumed_from=None, status=None)
            try:
                test_loss, test_metric = self._test(p)
            except PathOverflowError as e:
                return self._finish(st, start, "diverged", f"diverged at step 0: the forward "
                                    f"pass at p0 overflowed float64 ({e})", None, None)
            if not np.isfinite(test_loss):
                return self._finish(st, start, "diverged", f"diverged at step 0: the test "
                                    f"loss at p0 is {test_loss}", None, None)
            st.update(initial_test_loss=test_loss, test_loss=test_loss,
                      test_metric=test_metric, rng=rng)
            st["history"].append(dict(step=0, train_loss=None, test_loss=test_loss,
                                      test_metric=test_metric))
        else:
            st = self._restore(ckpt)
            if st["status"] == "diverged" or (st["status"] == "finished"
                                              and st["step"] >= self.steps):
                return self._unchanged(st)
            st["resumed_from"] = st["step"]
        init = st["initial_test_loss"]
        self.bound = self.factor * init if init > 0 else math.inf
        status, message = self._steps(st, start)
        if status == "finished":
            message = (f"finished {self.steps} steps: test {_metric_name(self.task)} "
                       f"{st['test_metric']:.3g}")
        return self._finish(st, start, status, message, st["test_loss"], st["test_metric"])

    def _steps(self, st, start):
        """Run the updates; ``(status, message)`` (the message only after a divergence or
        an interruption)."""
        p, prev, rng = st["p"], st["prev"], st["rng"]
        opt, forward, backward, loss_fn = self.optimizer, self.forward, self.backward, \
            self.loss_fn
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.steps, initial=st["step"], unit="step", dynamic_ncols=True,
                       desc=f"{type(opt).__name__} on {self.task.name}")
        running = weight = 0.0
        status = message = None
        quiet = np.errstate(over="ignore", invalid="ignore")  # overflow: reported
        try:
            stop = self.stop
            with quiet:
                for step in range(st["step"] + 1, self.steps + 1):
                    X, Y = self.task.sample(rng, self.batch_size)
                    stage = "the forward pass"
                    try:
                        loss, dY = loss_fn(forward(p, X), Y)
                        if not np.isfinite(loss) or loss > self.bound:
                            raise _Diverged(step, self._loss_text("training", loss), True)
                        stage = "the backward pass"
                        grad = backward(p, X, dY)
                        stage = f"the {type(opt).__name__} update"
                        new = opt.step(p, grad, self.model,
                                       loss=_BatchLoss(forward, loss_fn, X, Y, p, loss))
                        if not np.isfinite(new).all():
                            raise _Diverged(step, _nonfinite(
                                f"the {type(opt).__name__} update made parameters "
                                f"non-finite", new), False)
                        test = None
                        if step % self.eval_every == 0 or step == self.steps:
                            stage = "the test evaluation"
                            test = self._test(new)
                            if not np.isfinite(test[0]) or test[0] > self.bound:
                                raise _Diverged(step, self._loss_text("test", test[0]), False)
                    except PathOverflowError as e:
                        # computed at p (forward, backward, curvature): p is bad; a step
                        # that overflows (StepOverflowError) or a bad test is new's fault
                        bad_p = stage != "the test evaluation" and not isinstance(
                            e, StepOverflowError)
                        raise _Diverged(step, f"{stage} overflowed float64 ({e})",
                                        bad_p) from None
                    prev, p = p, new
                    st.update(step=step, p=p, prev=prev)
                    st["window"][0] += loss
                    st["window"][1] += 1
                    if test is not None:
                        st["test_loss"], st["test_metric"] = test
                    if test is not None or step % self.log_every == 0:
                        total, count = st["window"]
                        st["history"].append(dict(
                            step=step, train_loss=total / count if count else None,
                            test_loss=None if test is None else test[0],
                            test_metric=None if test is None else test[1]))
                        st["window"] = [0.0, 0]
                    if bar is not None:
                        running, weight = 0.95 * running + 0.05 * loss, 0.95 * weight + 0.05
                        bar.set_postfix_str(f"loss {running / weight:.4g}", refresh=False)
                        bar.update(1)
                    if self.out_dir is not None and step % self.checkpoint_every == 0 \
                            and step < self.steps:
                        self._checkpoint(st, None, start)
                    if stop.signal or (self.should_stop is not None and self.should_stop()):
                        why = f"by {stop.signal}" if stop.signal else "by should_stop"
                        if step < self.steps:
                            status = "interrupted"
                            message = (f"interrupted {why} after {step} of {self.steps} "
                                       f"steps; resume to continue")
                            break
            status = status or "finished"
        except _Diverged as e:
            step, what, bad_p = e.args
            if bad_p and st["step"] > 0 and st["p"] is not st["prev"]:
                st["p"], st["step"] = st["prev"], st["step"] - 1
            done = st["step"]
            st["history"] = [h for h in st["history"] if h["step"] <= done]
            status = "diverged"
            message = (f"diverged at step {step}: {what}; stopped and kept the last good "
                       f"parameters, those after {done} updates")
            try:
                st["test_loss"], st["test_metric"] = self._test(st["p"])
            except PathOverflowError:
                st["test_loss"] = st["test_metric"] = float("nan")
        finally:
            if bar is not None:
                bar.close()
        if status == "interrupted":
            try:
                test = self._test(st["p"])
            except PathOverflowError:
                test = (float("inf"), float("nan"))
            if not np.isfinite(test[0]) or test[0] > self.bound:
                # the parameters at the interruption already fail the bound: a divergence,
                # with the last good parameters (one update before) kept
                step = st["step"]
                if st["step"] > 0:
                    st["p"], st["step"] = st["prev"], st["step"] - 1
                st["history"] = [h for h in st["history"] if h["step"] <= st["step"]]
                status = "diverged"
                message = (f"diverged at step {step}: {self._loss_text('test', test[0])}; "
                           f"stopped and kept the last good parameters, those after "
                           f"{st['step']} updates")
                try:
                    test = self._test(st["p"])
                except PathOverflowError:
                    test = (float("nan"), float("nan"))
            st["test_loss"], st["test_metric"] = test
        return status, message

    def _loss_text(self, which, loss):
        if not np.isfinite(loss):
            return f"the {which} loss is {loss}"
        return (f"the {which} loss {loss:.4g} is above {self.factor:g} x the initial test "
                f"loss {self.bound / self.factor:.4g}")

    # -- files

    def _restore(self, ckpt):
        rng = np.random.default_rng()
        rng.bit_generator.state = ckpt["rng_state"]
        self.optimizer.reset()
        try:
            self.optimizer.load_state_dict(ckpt["opt_state"])
        except (ValueError, TypeError) as exc:
            raise RunDirError(f"{self.out_dir}/checkpoint.npz is damaged: its optimiser state "
                              f"does not fit ({exc}); start the run again with "
                              f"--overwrite") from None
        st = {k: ckpt[k] for k in ("step", "p", "prev", "history", "window", "seconds",
                                   "initial_test_loss", "test_loss", "test_metric", "status",
                                   "resumed_from")}
        st["rng"] = rng
        for k in ("test_loss", "test_metric"):
            st[k] = float("nan") if st[k] is None else st[k]
        return st

    def _checkpoint(self, st, status, start=None):
        seconds = st["seconds"] + (0.0 if start is None else time.perf_counter() - start)
        runs.save_checkpoint(self.out_dir, dict(
            p=st["p"], prev=st["prev"], step=st["step"], opt_state=self.optimizer.state_dict(),
            rng_state=st["rng"].bit_generator.state if st.get("rng") is not None else None,
            history=st["history"], window=st["window"], seconds=seconds,
            initial_test_loss=st.get("initial_test_loss"), test_loss=st.get("test_loss"),
            test_metric=st.get("test_metric"), status=status, resumed_from=st["resumed_from"],
            config=self.config))
        runs.write_history(self.out_dir, st["history"])

    def _finish(self, st, start, status, message, test_loss, test_metric):
        st["seconds"] += time.perf_counter() - start
        test_loss = float("nan") if test_loss is None else float(test_loss)
        test_metric = float("nan") if test_metric is None else float(test_metric)
        valid_loss = None
        if status != "diverged" or np.isfinite(test_loss):
            try:
                valid_loss = self._valid_loss(st["p"])
            except PathOverflowError:
                valid_loss = None
        result = TrainResult(p=st["p"], history=st["history"], test_loss=test_loss,
                             test_metric=test_metric, diverged=status == "diverged",
                             message=message, seconds=st["seconds"], steps=st["step"],
                             status=status, resumed_from=st["resumed_from"],
                             valid_loss=valid_loss)
        if self.out_dir is not None:
            if st.get("rng") is not None:
                self._checkpoint(st, status)
            else:
                runs.write_history(self.out_dir, st["history"])
            self._write_result(result, st.get("initial_test_loss"))
        return result

    def _write_result(self, result, initial):
        runs.write_result(self.out_dir, dict(
            status=result.status, diverged=result.diverged, test_loss=result.test_loss,
            test_metric=result.test_metric, valid_loss=result.valid_loss,
            initial_test_loss=initial, message=result.message, seconds=result.seconds,
            steps=result.steps, resumed_from=result.resumed_from,
            config=dict(self.config, steps=self.steps)))
        runs.save_params(f"{self.out_dir}/params.npz", self.model, result.p)

    def _unchanged(self, st):
        """A finished or diverged run resumed: nothing to do; its result as it was."""
        stored = runs.read_result(self.out_dir) if runs.os.path.exists(
            runs.os.path.join(self.out_dir, "result.json")) else {}
        def value(key):
            v = stored.get(key)
            return float(st[key] if v is None else v)

        return TrainResult(p=st["p"], history=st["history"],
                           test_loss=value("test_loss"), test_metric=value("test_metric"),
                           diverged=st["status"] == "diverged",
                           message=stored.get("message", f"{st['status']} (unchanged)"),
                           seconds=st["seconds"], steps=st["step"], status=st["status"],
                           resumed_from=stored.get("resumed_from", st["resumed_from"]),
                           valid_loss=stored.get("valid_loss"))


def _describe(task):
    describe = getattr(task, "describe", None)
    return describe() if callable(describe) else str(task.name)
