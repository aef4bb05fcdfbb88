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
* divergence handling: a non-finite loss, a non-finite parameter or a
  :class:`~pathgeom.PathOverflowError` stops the run at once, with ``diverged=True``, a
  message naming the step and the cause, and the last good parameters kept (and saved);
* a tqdm progress bar with the running loss, and files for the curve, the result and the
  parameters (``out_dir``), which :func:`load_params` reloads.
"""

import csv
import json
import math
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ._errors import PathOverflowError
from .constructors.rnn import RNN
from .graph import SharedGraph
from .optim import SGD, PathAdam, PathSGD, clip_grad_norm, make_optimizer

__all__ = ["mse_loss", "softmax_cross_entropy", "accuracy", "bits_per_char", "SGD",
           "PathSGD", "PathAdam", "make_optimizer", "clip_grad_norm", "TrainResult", "train",
           "evaluate", "save_params", "load_params"]

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
    >>> from pathgeom.train import mse_loss
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
    >>> from pathgeom.train import softmax_cross_entropy
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
    >>> from pathgeom.train import accuracy
    >>> accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 1, 1])
    0.6666666666666666
    """
    logits, labels = _check_labels(logits, labels)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def bits_per_char(loss_nats):
    r"""A cross-entropy in nats per character as bits per character: :math:`L / \ln 2`.

    >>> from pathgeom.train import bits_per_char
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
        if not isinstance(model, RNN):
            raise TypeError(f"engine='dense' needs a pathgeom.RNN, got "
                            f"{type(model).__name__}; use engine='graph' for a SharedGraph")
        last = {}  # the hidden states of the latest forward pass, reused by its backward

        def forward(p, X):
            Y, states = model.forward_with_states(p, X)
            last.update(key=(id(p), id(X)), states=states)
            return Y

        def backward(p, X, dY):
            states = last.get("states") if last.get("key") == (id(p), id(X)) else None
            return model.backward(p, X, dY, states=states)

        return forward, backward, model.n_params
    g = model if isinstance(model, SharedGraph) else getattr(model, "graph", None)
    if not isinstance(g, SharedGraph):
        raise TypeError(f"engine='graph' needs a SharedGraph or a network with .graph, got "
                        f"{type(model).__name__}")
    rows = getattr(model, "graph_inputs", None) or (lambda X: np.reshape(X, (len(X), -1)))

    def shape(B):
        return (B, task.n_out) if task.outputs == "last" else (B, task.T, task.n_out)

    def forward(p, X):
        return g.forward(p, rows(X)).reshape(shape(len(X)))

    def backward(p, X, dY):
        return g.backward(p, rows(X), np.reshape(dY, (len(X), -1)))

    return forward, backward, g.n_params


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
        One entry per step: ``step`` (updates done), ``train_loss`` (the batch loss at
        the parameters *before* that update; None at step 0), ``test_loss`` and
        ``test_metric`` (at step 0, every ``eval_every`` steps and the last step; None
        elsewhere).
    test_loss, test_metric : float
        On the test set at ``p`` (nan when even that overflows).
    diverged : bool
    message : str
        How the run ended; after a divergence, at which step and why.
    seconds : float
        Wall time of the run.
    steps : int
        Updates done.
    """

    p: np.ndarray
    history: list = field(repr=False)
    test_loss: float
    test_metric: float
    diverged: bool
    message: str
    seconds: float
    steps: int = 0


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _Diverged(Exception):
    pass


def _nonfinite(what, arr):
    bad = np.flatnonzero(~np.isfinite(arr))
    return (f"{what}: {bad.size} of {arr.size} entries are not finite (first: "
            f"[{int(bad[0])}] = {arr[bad[0]]})")


def train(model, task, optimizer, steps, batch_size=64, rng=None, p0=None, eval_every=100,
          out_dir=None, progress=True, engine="dense"):
    r"""Train ``model`` on ``task`` with ``optimizer`` for ``steps`` minibatch updates.

    Each step draws ``X, Y = task.sample(rng, batch_size)``, computes the loss (mean over
    every predicted position) and its gradient, and takes
    ``p = optimizer.step(p, grad, model)``; Path-SGD and path-Adam recompute their
    curvature from the current ``p`` at every step.

    Parameters
    ----------
    model : pathgeom.RNN, or a SharedGraph / network with ``.graph`` (``engine="graph"``)
        Must match the task (``n_in, n_out, T, outputs``).
    task : task object
        ``name, n_in, n_out, T, outputs, loss ("mse" | "xent"), sample(rng, B), test``.
    optimizer : SGD, PathSGD or PathAdam
        (:func:`make_optimizer`); :meth:`reset` is called first.
    steps : int
        Number of updates (>= 0).
    batch_size : int
    rng : numpy.random.Generator, int or None
        Draws the batches (and ``p0`` when not given); an int seeds a new generator; None
        means seed 0, so that a run is reproducible by default.
    p0 : array_like, optional
        Initial parameters; default ``model.init(rng, "irnn")`` (required for a bare graph).
    eval_every : int or None
        Evaluate on ``task.test`` every this many steps (and at steps 0 and ``steps``).
    out_dir : str or path, optional
        Write ``history.csv``, ``history.json`` (the curve), ``result.json`` (final metric,
        configuration, seconds, diverged and message) and ``params.npz`` (the parameters
        and the model's configuration, see :func:`load_params`) there.
    progress : bool
        Show a tqdm progress bar with the running (exponentially averaged) training loss.
    engine : {"dense", "graph"}
        ``"dense"``: the RNN's numpy BPTT; ``"graph"``: :meth:`SharedGraph.forward` /
        :meth:`~SharedGraph.backward` on ``model.graph`` (the same numbers to rounding).

    Returns
    -------
    TrainResult

    Notes
    -----
    A non-finite training loss, a non-finite parameter after an update, a non-finite test
    loss or a :class:`~pathgeom.PathOverflowError` (in the forward or backward pass or in
    the curvature) stops the run at once: ``diverged=True``, the message says what happened
    at which step, and ``p`` (and ``params.npz``) holds the last good parameters, those
    before the failing step.

    Examples
    --------
    A tiny regression task, the mean of a 3-step sequence:

    >>> import numpy as np, pathgeom
    >>> from pathgeom.train import train, make_optimizer
    >>> class Mean:
    ...     name, n_in, n_out, T, outputs, loss = "mean", 1, 1, 3, "last", "mse"
    ...     def sample(self, rng, B):
    ...         X = rng.uniform(size=(B, 3, 1))
    ...         return X, X.mean(axis=1)
    ...     test = property(lambda self: self.sample(np.random.default_rng(1), 100))
    >>> net = pathgeom.rnn(1, 4, 1, T=3)
    >>> res = train(net, Mean(), make_optimizer("path-adam", 0.03), steps=300,
    ...             eval_every=100, progress=False)
    >>> [(h["step"], round(h["test_loss"], 4)) for h in res.history if h["test_loss"] is not None]
    [(0, 0.2668), (100, 0.059), (200, 0.0086), (300, 0.001)]
    >>> res.diverged, res.message
    (False, 'finished 300 steps: test mse 0.00105')
    """
    forward, backward, n_params = _passes(model, task, engine)
    loss_fn = _loss_fn(task)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    steps = int(steps)
    batch_size = _positive(batch_size, "batch_size")
    eval_every = (steps or 1) if eval_every is None else _positive(eval_every, "eval_every")
    if rng is None or isinstance(rng, numbers.Integral):
        rng = np.random.default_rng(0 if rng is None else int(rng))
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator, an int seed or None")
    if p0 is None:
        if not callable(getattr(model, "init", None)):
            raise ValueError("p0 is required: this model has no init(rng, scheme)")
        p0 = model.init(rng, "irnn")
    p = np.array(p0, dtype=np.float64)  # a private copy
    if p.shape != (n_params,):
        raise ValueError(f"p0 has shape {p.shape}; the model has {n_params} parameters")
    if not np.isfinite(p).all():
        raise ValueError(_nonfinite("p0 is not finite", p))
    optimizer.reset()

    start = time.perf_counter()
    history, message, diverged, done = [], None, False, 0
    prev = p  # the parameters one update before p: the fallback when p itself fails
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc=f"{type(optimizer).__name__} on {task.name}",
                   unit="step", dynamic_ncols=True)
    running, weight = 0.0, 0.0
    quiet = np.errstate(over="ignore", invalid="ignore")  # overflow is reported as divergence
    quiet.__enter__()
    try:
        try:
            test_loss, test_metric = _evaluate(forward, task, p, 500)
            if not np.isfinite(test_loss):
                raise _Diverged(0, f"the test loss at p0 is {test_loss}")
        except PathOverflowError as e:
            raise _Diverged(0, f"the forward pass at p0 overflowed float64 ({e})") from None
        history.append(dict(step=0, train_loss=None, test_loss=test_loss,
                            test_metric=test_metric))
        for step in range(1, steps + 1):
            X, Y = task.sample(rng, batch_size)
            stage = "the forward pass"
            try:
                loss, dY = loss_fn(forward(p, X), Y)
                if not np.isfinite(loss):
                    raise _Diverged(step, f"the training loss is {loss}", True)
                stage = "the backward pass"
                grad = backward(p, X, dY)
                stage = f"the {type(optimizer).__name__} update"
                new = optimizer.step(p, grad, model)
                if not np.isfinite(new).all():
                    raise _Diverged(step, _nonfinite(
                        f"the {type(optimizer).__name__} update made parameters non-finite",
                        new))
                entry = dict(step=step, train_loss=loss, test_loss=None, test_metric=None)
                if step % eval_every == 0 or step == steps:
                    stage = "the test evaluation"
                    test_loss, test_metric = _evaluate(forward, task, new, 500)
                    if not np.isfinite(test_loss):
                        raise _Diverged(step, f"the test loss is {test_loss}")
                    entry.update(test_loss=test_loss, test_metric=test_metric)
            except PathOverflowError as e:
                bad_p = stage != "the test evaluation"  # computed at p, not at new
                raise _Diverged(step, f"{stage} overflowed float64 ({e})", bad_p) from None
            prev, p, done = p, new, step
            history.append(entry)
            if bar is not None:
                running, weight = 0.95 * running + 0.05 * loss, 0.95 * weight + 0.05
                bar.set_postfix_str(f"loss {running / weight:.4g}", refresh=False)
                bar.update(1)
    except _Diverged as e:
        diverged = True
        step, what, bad_p = (e.args + (False,))[:3]
        if bad_p and done:  # the failure was computed at p: go back one more update
            p, done = prev, done - 1
        history = [h for h in history if h["step"] <= done]  # only updates that were kept
        message = (f"diverged at step {step}: {what}; stopped and kept the last good "
                   f"parameters, those after {done} updates")
        try:
            test_loss, test_metric = _evaluate(forward, task, p, 500)
        except PathOverflowError:
            test_loss = test_metric = float("nan")
    finally:
        quiet.__exit__(None, None, None)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    metric = _metric_name(task)
    if message is None:
        message = f"finished {steps} steps: test {metric} {test_metric:.3g}"
    result = TrainResult(p=p, history=history, test_loss=test_loss, test_metric=test_metric,
                         diverged=diverged, message=message, seconds=seconds, steps=done)
    if out_dir is not None:
        config = dict(task=task.name, task_description=_describe(task), model=_config(model),
                      optimizer=repr(optimizer), steps=steps, batch_size=batch_size,
                      eval_every=eval_every, engine=engine, metric=metric)
        _write(out_dir, result, model, config)
    return result


def _describe(task):
    describe = getattr(task, "describe", None)
    return describe() if callable(describe) else str(task.name)


# ---------------------------------------------------------------------------- files


def _config(model):
    if isinstance(model, RNN):
        return dict(kind="rnn", n_in=model.n_in, hidden=list(model.hidden),
                    n_out=model.n_out, T=model.T, outputs=model.outputs, bias=model.bias)
    return dict(kind=type(model).__name__)


def _finite_or_none(x):
    return None if x is None or not np.isfinite(x) else float(x)


def _write(out_dir, result, model, config):
    os.makedirs(out_dir, exist_ok=True)
    rows = [{k: _finite_or_none(v) if k != "step" else v for k, v in h.items()}
            for h in result.history]
    with open(os.path.join(out_dir, "history.json"), "w") as fh:
        json.dump(rows, fh)
    with open(os.path.join(out_dir, "history.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "train_loss", "test_loss", "test_metric"])
        for h in rows:
            w.writerow(["" if h[k] is None else repr(h[k]) if k != "step" else h[k]
                        for k in ("step", "train_loss", "test_loss", "test_metric")])
    with open(os.path.join(out_dir, "result.json"), "w") as fh:
        json.dump(dict(test_loss=_finite_or_none(result.test_loss),
                       test_metric=_finite_or_none(result.test_metric),
                       diverged=result.diverged, message=result.message,
                       seconds=result.seconds, steps=result.steps, config=config),
                  fh, indent=1)
    save_params(os.path.join(out_dir, "params.npz"), model, result.p)


def save_params(path, model, p):
    """Save ``p`` and the configuration of ``model`` (an RNN) to ``path`` (``.npz``).

    For other models only ``p`` is stored (:func:`load_params` then refuses to rebuild).
    """
    config = _config(model)
    arrays = {k: np.asarray(v) for k, v in config.items()}
    np.savez(path, p=np.asarray(p, dtype=np.float64), **arrays)


def load_params(path):
    """``(model, p)`` from a ``params.npz`` written by :func:`train` or :func:`save_params`.

    Examples
    --------
    >>> import os, tempfile, numpy as np, pathgeom
    >>> from pathgeom.train import save_params, load_params
    >>> net = pathgeom.rnn(2, [3, 4], 1, T=5, outputs="all", bias=True)
    >>> p = net.init(np.random.default_rng(0))
    >>> path = os.path.join(tempfile.mkdtemp(), "params.npz")
    >>> save_params(path, net, p)
    >>> net2, p2 = load_params(path)
    >>> net2, bool(np.array_equal(p2, p))
    (RNN(n_in=2, hidden=[3, 4], n_out=1, T=5, outputs='all', bias=True), True)
    """
    with np.load(path, allow_pickle=False) as f:
        if "p" not in f.files or "kind" not in f.files:
            raise ValueError(f"{path} is not a params.npz written by pathgeom.train (it holds "
                             f"{sorted(f.files)}; expected p, kind, ...)")
        kind = str(f["kind"])
        if kind != "rnn":
            raise ValueError(f"{path} holds the parameters of a {kind}, which load_params "
                             f"cannot rebuild; build the model yourself and use "
                             f"np.load(path)['p']")
        net = RNN(int(f["n_in"]), [int(h) for h in np.atleast_1d(f["hidden"])],
                  int(f["n_out"]), int(f["T"]), outputs=str(f["outputs"]),
                  bias=bool(f["bias"]))
        p = np.array(f["p"], dtype=np.float64)
    if p.shape != (net.n_params,):
        raise ValueError(f"{path}: p has shape {p.shape} but the stored RNN has "
                         f"{net.n_params} parameters")
    return net, p
