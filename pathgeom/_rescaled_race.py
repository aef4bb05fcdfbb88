r"""The rescaled start in training: one network trained from :math:`p` and from
:math:`T_\beta(p)` with SGD and with Path-SGD (:func:`rescaled_race`), and its two-panel
figure (:meth:`RescaledRace.plot`).  Re-exported by :mod:`pathgeom.experiments`.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_int, check_real
from .optim import SGD, PathSGD
from .rescaling import rescale, rescaling_group
from .training import train

__all__ = ["rescaled_race", "RescaledRace", "spread_rescaling", "race_preset", "RACE_NETS"]


def spread_rescaling(g, rng, spread):
    r"""A random feasible rescaling :math:`\beta` of ``g`` whose entries span ``spread``
    orders of magnitude: :math:`\max_v \beta_v / \min_v \beta_v = 10^{\text{spread}}`.

    :math:`\log\beta = s\, B^\top z` with :math:`z \sim N(0, I)` over the group's basis
    :math:`B` (:func:`pathgeom.rescaling_group`) and :math:`s` chosen for the span; inputs
    and outputs keep :math:`\beta = 1`.

    Parameters
    ----------
    g : SharedGraph
    rng : numpy.random.Generator
    spread : float
        Orders of magnitude, >= 0 (0: the identity).

    Returns
    -------
    ndarray, shape (g.n_nodes,)

    Raises
    ------
    ValueError
        ``spread`` negative or not finite, or ``spread > 0`` on a graph whose rescaling
        group has dimension 0.

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> from pathgeom.experiments import spread_rescaling
    >>> g = pathgeom.mlp([2, 3, 1]).graph
    >>> beta = spread_rescaling(g, np.random.default_rng(0), 2.0)
    >>> round(float(np.log10(beta.max() / beta.min())), 12)
    2.0
    >>> pathgeom.rescaling_group(g).contains(beta)
    True
    """
    spread = check_real(spread, "spread", 0.0, strict=False)
    G = rescaling_group(g)
    if spread == 0:
        return np.ones(g.n_nodes)
    if G.dim == 0:
        raise ValueError("this graph has no feasible rescaling but the identity (its "
                         "rescaling group has dimension 0); use spread 0")
    b = np.zeros(g.n_nodes)
    while np.ptp(b) == 0:          # z = 0 has probability 0; redraw rather than divide by 0
        b = np.asarray(G.basis_sparse.T @ rng.standard_normal(G.dim)).reshape(g.n_nodes)
    return np.exp(b * (spread * math.log(10.0) / np.ptp(b)))


def _curve(result):
    """``{step: training loss}`` and ``{step: test loss}`` of a run's history."""
    train_loss = {h["step"]: h["train_loss"] for h in result.history
                  if h.get("train_loss") is not None}
    test_loss = {h["step"]: h["test_loss"] for h in result.history
                 if h.get("test_loss") is not None}
    return train_loss, test_loss


def _max_difference(a, b):
    """Largest |difference| of two runs' losses: training and test losses at every step
    both reached, and the final test losses (a diverged run's: at its last good
    parameters); None when no pair is finite."""
    gaps = []
    for ca, cb in zip(_curve(a), _curve(b)):
        common = sorted(set(ca) & set(cb))
        gaps += [abs(ca[s] - cb[s]) for s in common]
    gaps.append(abs(a.test_loss - b.test_loss))
    gaps = [x for x in gaps if np.isfinite(x)]
    return float(max(gaps)) if gaps else None


def _outcome(result, metric):
    """A run's end as a JSON-able dict."""
    return {"status": result.status, "steps": int(result.steps),
            "test_loss": float(result.test_loss) if np.isfinite(result.test_loss) else None,
            f"test_{metric}": (float(result.test_metric) if np.isfinite(result.test_metric)
                               else None),
            "message": result.message}


@dataclass
class RescaledRace:
    r"""What :func:`rescaled_race` ran and measured.

    Attributes
    ----------
    runs : dict
        ``TrainResult`` by name: ``"sgd/p"``, ``"sgd/T(p)"``, ``"path-sgd/p"``,
        ``"path-sgd/T(p)"`` and, for each extra SGD rate from the rescaled start,
        ``"sgd/T(p)/lr=..."``.
    path_sgd_max_difference, sgd_max_difference : float or None
        Largest |difference| between the two runs' training losses (every step) and test
        losses (every evaluation) over the steps both reached, and between their final
        test losses (a diverged run keeps its last good parameters).
    path_sgd_parameter_gap : float or None
        :math:`\max_i |T_\beta(p_k) - q_k|_i / \max_i |q_k|_i` after the last common step
        of the two Path-SGD runs (None if they did not end at the same step).
    beta, p0, q0 : ndarray
        The rescaling, the balanced start and :math:`T_\beta(p_0)`.
    setup : dict
        Everything needed to rerun it (network, task, sizes, rates, seeds).
    seconds : float
    """

    runs: dict
    path_sgd_max_difference: object
    sgd_max_difference: object
    path_sgd_parameter_gap: object
    beta: np.ndarray
    p0: np.ndarray
    q0: np.ndarray
    setup: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def metric(self):
        return self.setup.get("metric", "loss")

    def to_dict(self):
        """The measured numbers as JSON values (``--json`` prints this)."""
        m = self.metric
        out = {"path_sgd_max_difference": self.path_sgd_max_difference,
               "sgd_max_difference": self.sgd_max_difference,
               "path_sgd_parameter_gap": self.path_sgd_parameter_gap,
               "sgd_balanced": _outcome(self.runs["sgd/p"], m),
               "sgd_unbalanced": _outcome(self.runs["sgd/T(p)"], m),
               "path_sgd_balanced": _outcome(self.runs["path-sgd/p"], m),
               "path_sgd_unbalanced": _outcome(self.runs["path-sgd/T(p)"], m),
               "sgd_unbalanced_smaller_rates": {
                   k.split("lr=")[1]: _outcome(r, m) for k, r in self.runs.items()
                   if k.startswith("sgd/T(p)/lr=")},
               "beta_min": float(self.beta.min()), "beta_max": float(self.beta.max()),
               "setup": self.setup, "seconds": self.seconds}
        return out

    def caption(self):
        """One paragraph: what was run."""
        s = self.setup
        rates = ", ".join(f"{lr:g}" for lr in s["sgd_smaller_lrs"])
        return (f"{s['net_summary']} on {s['task_summary']}; {s['steps']} steps of batch "
                f"{s['batch_size']}, the same minibatch stream for every run, seed "
                f"{s['seed']}. T_β: a random feasible rescaling with β from "
                f"{self.beta.min():.3g} to {self.beta.max():.3g} ({s['spread']:g} orders of "
                f"magnitude). SGD lr {s['sgd_lr']:g} (and {rates} from T_β(p)); Path-SGD "
                f"(κ¹, backtracking) lr {s['path_sgd_lr']:g}, step scale c = "
                f"{s['path_sgd_scale']:.4g} calibrated once at p and used for both runs. "
                f"Command: {s['command']}")

    def plot(self, path, dpi=120):
        """The two-panel figure into ``path`` (format from the suffix); needs matplotlib
        (the ``[plot]`` extra).  Returns ``path``."""
        try:
            from matplotlib.figure import Figure   # no pyplot: the caller's backend is kept
        except ImportError:
            raise ImportError("the figure needs matplotlib: pip install "
                              "'pathgeom[plot]'") from None
        import textwrap
        fig = Figure(figsize=(12.0, 5.6))
        ax_a, ax_b = fig.subplots(1, 2)
        styles = {"path-sgd/p": dict(color="tab:blue", lw=3.5, alpha=0.35),
                  "path-sgd/T(p)": dict(color="navy", lw=1.0, ls="--"),
                  "sgd/p": dict(color="tab:orange", lw=1.5),
                  "sgd/T(p)": dict(color="tab:red", lw=1.5)}
        names = {"path-sgd/p": "Path-SGD from p", "path-sgd/T(p)": "Path-SGD from T_β(p)",
                 "sgd/p": "SGD from p", "sgd/T(p)": "SGD from T_β(p)"}
        s = self.setup
        # (a) training loss at every step: the invariance
        for key, st in styles.items():
            tr, _ = _curve(self.runs[key])
            steps = sorted(tr)
            ax_a.plot(steps, [tr[k] for k in steps], label=names[key], **st)
            r = self.runs[key]
            if r.diverged:
                last = steps[-1] if steps else 0
                y = tr[last] if steps else _curve(r)[1].get(0, 1.0)
                ax_a.plot([last], [y], "x", color=st["color"], ms=12, mew=3)
                ax_a.annotate(f"diverged at step {_diverged_at(r)}", (last, y),
                              xytext=(10, -16), textcoords="offset points",
                              color=st["color"], fontsize=8.5)
        ax_a.set_yscale("log")
        ax_a.set_xlabel("step")
        ax_a.set_ylabel("training loss of the minibatch")
        gap_p = self.path_sgd_max_difference
        gap_s = self.sgd_max_difference
        ax_a.set_title("(a) the same network, rescaled: Path-SGD's two runs are one curve",
                       fontsize=10)
        sgd_u = self.runs["sgd/T(p)"]
        note = (f"largest |difference| of the two runs' losses:\n"
                f"  Path-SGD {_fmt(gap_p)}\n  SGD {_fmt(gap_s)}"
                + (f"\n  (SGD from T_β(p) diverged at step {_diverged_at(sgd_u)})"
                   if sgd_u.diverged else ""))
        ax_a.text(0.98, 0.97, note, transform=ax_a.transAxes, ha="right", va="top",
                  fontsize=8.5, family="monospace",
                  bbox=dict(boxstyle="round", fc="white", ec="0.7"))
        ax_a.legend(fontsize=8, loc="lower left")
        # (b) the test metric at every evaluation: the benefit
        metric = self.metric
        key_b = [("path-sgd/p", styles["path-sgd/p"]), ("path-sgd/T(p)", styles["path-sgd/T(p)"]),
                 ("sgd/p", styles["sgd/p"]), ("sgd/T(p)", styles["sgd/T(p)"])]
        smaller = [k for k in self.runs if k.startswith("sgd/T(p)/lr=")]
        shades = ["#e377c2", "#8c564b", "#7f7f7f", "#bcbd22"]
        for k, colour in zip(smaller, shades):
            key_b.append((k, dict(color=colour, lw=1.2, ls=":")))
        for key, st in key_b:
            r = self.runs[key]
            rows = [h for h in r.history if h.get("test_metric") is not None
                    and np.isfinite(h["test_metric"])]
            label = names.get(key) or f"SGD from T_β(p), lr {key.split('lr=')[1]}"
            label += f", lr {s['path_sgd_lr' if key.startswith('path') else 'sgd_lr']:g}" \
                if key in names else ""
            end = (f": diverged at step {_diverged_at(r)}" if r.diverged else
                   f": {_metric_text(metric, r.test_metric)}")
            xs = [h["step"] for h in rows]
            ys = [h["test_metric"] for h in rows]
            ax_b.plot(xs, ys, marker="o" if len(xs) < 3 else None, ms=5,
                      label=label + end, **st)
            if r.diverged and xs:
                ax_b.plot([xs[-1]], [ys[-1]], "x", color=st["color"], ms=12, mew=3)
        if metric == "accuracy":
            ax_b.set_ylim(0.0, 1.02)
            ax_b.set_ylabel("test accuracy")
        else:
            ax_b.set_yscale("log")
            ax_b.set_ylabel(f"test {metric}")
        ax_b.set_xlabel("step")
        ax_b.set_title("(b) what it buys: from the badly balanced start T_β(p)", fontsize=10)
        ax_b.legend(fontsize=7.5, loc="best")
        caption = "\n".join(textwrap.wrap(self.caption(), 175))
        fig.text(0.01, 0.01, caption, fontsize=7.5, va="bottom", ha="left")
        fig.tight_layout(rect=(0, 0.03 + 0.022 * caption.count("\n"), 1, 1))
        fig.savefig(path, dpi=dpi)
        return path


def _diverged_at(result):
    """The step at which a diverged run stopped (from its message), or None."""
    import re
    m = re.search(r"diverged at step (\d+)", result.message or "")
    return int(m.group(1)) if (result.diverged and m) else None


def _fmt(x):
    return "n/a" if x is None else f"{x:.2g}"


def _metric_text(metric, value):
    if not np.isfinite(value):
        return f"test {metric} n/a"
    return f"{100 * value:.1f}% correct" if metric == "accuracy" else f"test {metric} {value:.3g}"


def _metric_of(task):
    if task.loss == "mse":
        return "mse"
    return "accuracy" if task.outputs == "last" else "bits_per_char"


def rescaled_race(net, task, steps, beta_spread, *, sgd_lr=0.1, path_sgd_lr=1.0,
                  sgd_smaller_lrs=None, batch_size=32, seed=0, p0=None, init=None,
                  eval_every=None, curvature="kappa1", engine="dense", progress=False,
                  setup=None):
    r"""Train ``net`` from :math:`p` and from :math:`T_\beta(p)` with SGD and with Path-SGD.

    :math:`T_\beta` is a random feasible node-wise rescaling (Definition 2) whose entries
    span ``beta_spread`` orders of magnitude (:func:`spread_rescaling`): the same function
    and the same :math:`\gamma^2`, badly balanced weights.  Every run sees the same
    minibatch stream.  Path-SGD (the backtracking rule on :math:`\kappa^{(1)}` or the
    exact :math:`\kappa`) calibrates its step scale :math:`c` once, at :math:`p`, and the
    run from :math:`T_\beta(p)` uses the same :math:`c`: then every step commutes with
    :math:`T_\beta` (Theorem 2) and the two runs' losses agree to rounding.  SGD's do not:
    from the badly balanced start the rate that trains from :math:`p` diverges or crawls.
    Extra SGD runs from :math:`T_\beta(p)` at ``sgd_smaller_lrs`` show whether a smaller
    rate rescues it.

    Parameters
    ----------
    net : network
        A :func:`pathgeom.mlp`, :func:`pathgeom.cnn` or :func:`pathgeom.rnn` that fits
        ``task`` (see :func:`pathgeom.train`).
    task : task object
    steps : int
    beta_spread : float
        Orders of magnitude spanned by :math:`\beta` (e.g. 3: from about
        :math:`10^{-1.5}` to :math:`10^{1.5}`).
    sgd_lr, path_sgd_lr : float
    sgd_smaller_lrs : sequence of float, optional
        SGD rates also tried from :math:`T_\beta(p)`; default ``(sgd_lr/10, sgd_lr/100)``.
    batch_size, seed : int
        ``seed`` draws :math:`p` (unless ``p0``), :math:`\beta` and the minibatches.
    p0 : array_like, optional
        The balanced start; default ``net.init(rng, init)`` (``init`` None: the network's
        default scheme, ``"he"`` for an MLP or CNN, ``"irnn"`` for an RNN).
    eval_every : int, optional
        Steps between test evaluations (default ``steps // 20``).
    curvature : {"kappa1", "kappa"}
    engine : {"dense", "graph"}
    progress : bool
    setup : dict, optional
        Extra entries for :attr:`RescaledRace.setup` (the command line adds its command).

    Returns
    -------
    RescaledRace

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> from pathgeom.experiments import rescaled_race
    >>> class Sum:        # regression: the sum of 4 inputs, one output per sequence
    ...     name, n_in, n_out, T, outputs, loss, valid = "sum", 4, 1, 1, "last", "mse", None
    ...     def sample(self, rng, B):
    ...         X = rng.uniform(-1, 1, size=(B, 1, 4))
    ...         return X, X.sum(axis=2)
    ...     test = property(lambda self: self.sample(np.random.default_rng(1), 200))
    >>> race = rescaled_race(pathgeom.mlp([4, 8, 1]), Sum(), 40, 3.0, sgd_lr=0.05,
    ...                      path_sgd_lr=0.5)
    >>> race.path_sgd_max_difference < 1e-12 < 1e-3 < race.sgd_max_difference
    True
    """
    steps = check_int(steps, "steps", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    seed = check_int(seed, "seed", 0)
    sgd_lr = check_real(sgd_lr, "sgd_lr")
    path_sgd_lr = check_real(path_sgd_lr, "path_sgd_lr")
    if sgd_smaller_lrs is None:
        sgd_smaller_lrs = (sgd_lr / 10, sgd_lr / 100)
    sgd_smaller_lrs = tuple(check_real(lr, "sgd_smaller_lrs entry") for lr in sgd_smaller_lrs)
    g = getattr(net, "graph", None)
    if g is None:
        raise TypeError(f"rescaled_race needs a network with .graph (pathgeom.mlp, cnn or "
                        f"rnn), got {type(net).__name__}")
    rng = np.random.default_rng(seed)
    if p0 is None:
        from .constructors.rnn import RNN
        scheme = init or ("irnn" if isinstance(net, RNN) else "he")
        p0 = net.init(rng, scheme)
    p0 = np.array(p0, dtype=np.float64)
    beta = spread_rescaling(g, rng, beta_spread)
    q0 = rescale(g, p0, beta)
    eval_every = max(steps // 20, 1) if eval_every is None else check_int(
        eval_every, "eval_every", 1)
    data_seed = int(rng.integers(2 ** 31))

    def run(opt, start):
        return train(net, task, opt, steps, batch_size=batch_size,
                     rng=np.random.default_rng(data_seed), p0=start, eval_every=eval_every,
                     progress=progress, engine=engine, log_every=1)

    t0 = time.perf_counter()
    runs = {}
    first = PathSGD(path_sgd_lr, curvature=curvature, rule="backtracking")
    runs["path-sgd/p"] = run(first, p0)
    c = first.c if first.c is not None else 1.0
    runs["path-sgd/T(p)"] = run(PathSGD(path_sgd_lr, curvature=curvature,
                                        rule="backtracking", scale=c), q0)
    runs["sgd/p"] = run(SGD(sgd_lr), p0)
    runs["sgd/T(p)"] = run(SGD(sgd_lr), q0)
    for lr in sgd_smaller_lrs:
        runs[f"sgd/T(p)/lr={lr:g}"] = run(SGD(lr), q0)
    seconds = time.perf_counter() - t0
    a, b = runs["path-sgd/p"], runs["path-sgd/T(p)"]
    gap = None
    if a.steps == b.steps:
        mapped = rescale(g, a.p, beta)
        gap = float(np.max(np.abs(mapped - b.p)) / max(np.max(np.abs(b.p)), 1e-300))
    info = dict(net_summary=repr(net), task_summary=_describe(task), steps=steps,
                batch_size=batch_size, seed=seed, spread=float(beta_spread), sgd_lr=sgd_lr,
                path_sgd_lr=path_sgd_lr, sgd_smaller_lrs=list(sgd_smaller_lrs),
                path_sgd_scale=float(c), curvature=curvature, eval_every=eval_every,
                metric=_metric_of(task), command="pathgeom.experiments.rescaled_race")
    info.update(setup or {})
    return RescaledRace(runs=runs, path_sgd_max_difference=_max_difference(a, b),
                        sgd_max_difference=_max_difference(runs["sgd/p"], runs["sgd/T(p)"]),
                        path_sgd_parameter_gap=gap, beta=beta, p0=p0, q0=q0, setup=info,
                        seconds=seconds)


def _describe(task):
    describe = getattr(task, "describe", None)
    return describe() if callable(describe) else str(getattr(task, "name", task))


#: The networks of ``pathgeom invariance --train --net NAME``: task, sizes and rates.
RACE_NETS = {
    "mlp": dict(task="digits", steps=500, spread=3.0, sgd_lr=0.1, path_sgd_lr=1.0,
                batch_size=32),
    "cnn": dict(task="digits", steps=300, spread=3.0, sgd_lr=0.1, path_sgd_lr=1.0,
                batch_size=32),
    "rnn": dict(task="adding", steps=300, spread=3.0, sgd_lr=0.01, path_sgd_lr=0.1,
                batch_size=32),
}


def race_preset(name, seed=0):
    """``(net, task, settings)`` of a :data:`RACE_NETS` entry: an MLP ``[64, 64, 10]`` or a
    CNN (8 3x3 filters, then 10 outputs) on the built-in 8x8 digits (needs the
    ``[digits]`` extra, scikit-learn), or a ReLU RNN (H = 16) on the adding problem with
    T = 10."""
    if name not in RACE_NETS:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(RACE_NETS)}")
    from .constructors import mlp, rnn
    from .constructors.cnn import Conv2d, cnn
    from .tasks import make_task
    settings = dict(RACE_NETS[name])
    if settings["task"] == "digits":
        try:
            task = make_task("digits", seed=seed)
        except ImportError as exc:
            raise ImportError(f"{exc}\n(the {name} race trains on the built-in digits, "
                              f"which need the [digits] extra: pip install "
                              f"'pathgeom[digits]'; --net rnn needs nothing more)") from None
        if name == "mlp":
            net = mlp([64, 64, 10])
        else:
            net = cnn((1, 8, 8), [Conv2d(8, 3, padding=1)], 10)
    else:
        task = make_task("adding", T=10, seed=seed)
        net = rnn(task.n_in, 16, task.n_out, task.T)
    return net, task, settings
