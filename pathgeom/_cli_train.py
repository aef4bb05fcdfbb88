"""The training commands of the ``pathgeom`` command line: ``train``, ``evaluate``, ``plot``,
``sweep`` and ``figure2``.  Registered by :mod:`pathgeom.cli`."""

import itertools
import json
import os
import time

import numpy as np

from .constructors import rnn
from .tasks import make_task
from .train import evaluate, load_params, make_optimizer, train

__all__ = ["add_commands"]

_TASK_DEFAULT_T = {"adding": 100, "digits": None, "charlm": 50}


def _floats(text):
    return [float(v) for v in text.split(",")]


def _ints(text):
    return [int(v) for v in text.split(",")]


def _strs(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def _task_from(name, T, seed, source=None):
    """The task of ``--task`` with its sizes (T: adding length, charlm sequence length)."""
    if name == "adding":
        return make_task("adding", T=T or _TASK_DEFAULT_T["adding"], seed=seed)
    if name == "digits":
        return make_task("digits", source=source or "builtin", seed=seed)
    if name == "charlm":
        return make_task("charlm", corpus=source or "builtin",
                         seq_len=T or _TASK_DEFAULT_T["charlm"], seed=seed)
    raise ValueError(f"unknown task {name!r}; choose adding, digits or charlm")


def _add_run_arguments(parser):
    parser.add_argument("--task", choices=("adding", "digits", "charlm"), default="adding")
    parser.add_argument("--T", type=int, default=None,
                        help="adding: sequence length (100); charlm: training sequence length "
                             "(50); digits: fixed by the data (64 built in, 784 for MNIST)")
    parser.add_argument("--data", default=None,
                        help="digits: a directory of MNIST IDX files; charlm: a corpus "
                             "directory (default: the built-in data)")
    parser.add_argument("--hidden", type=_ints, default=[100],
                        help="hidden units per layer, e.g. 100 or 64,64 (100)")
    parser.add_argument("--init", choices=("irnn", "lm", "uniform"), default="irnn",
                        help="initialisation scheme (irnn: W_rec = I, others U[-0.01, 0.01])")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--clip", type=float, default=None, help="gradient-norm clipping")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--engine", choices=("dense", "graph"), default="dense",
                        help="dense numpy BPTT (fast) or the generic graph engine")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_commands(sub):
    """Register the training subcommands on an argparse subparsers object."""
    p = sub.add_parser("train", help="train an RNN on a task with SGD, Path-SGD or path-Adam",
                       description="Train a ReLU RNN (pathgeom.rnn) on the adding problem, "
                                   "sequential digits or a character language model.")
    _add_run_arguments(p)
    p.add_argument("--optimizer", choices=("sgd", "path-sgd", "path-adam"), default="path-sgd")
    p.add_argument("--curvature", choices=("kappa1", "kappa"), default="kappa1",
                   help="Path-SGD / path-Adam curvature, recomputed every step (kappa1)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for the log, params and plot")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="reload a run's params.npz and evaluate it")
    p.add_argument("run", help="a run directory written by 'pathgeom train --out'")
    p.add_argument("--seed", type=int, default=None, help="test-set seed (the run's)")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("plot", help="learning curves of several runs in one figure ([plot])")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="curves.png")
    p.set_defaults(handler=_cmd_plot)

    p = sub.add_parser("sweep", help="a grid of runs (learning rates x optimisers x seeds)",
                       description="Run a grid in parallel processes with joblib (optional "
                                   "[sweep] extra), or on a Dask cluster with --scheduler "
                                   "(optional [dask] extra), and write one table.")
    _add_run_arguments(p)
    p.add_argument("--lrs", type=_floats, default=[1e-2, 1e-3, 1e-4])
    p.add_argument("--optimizers", type=_strs, default=["path-sgd", "sgd"])
    p.add_argument("--curvature", choices=("kappa1", "kappa"), default="kappa1")
    p.add_argument("--seeds", type=_ints, default=[0])
    p.add_argument("--preset", choices=("paper",), default=None,
                   help="paper: lr grid {1e-2, 1e-3, 1e-4}; path-sgd and sgd (IRNN); for "
                        "sgd the best of --irnn-inits initialisations per learning rate")
    p.add_argument("--irnn-inits", type=int, default=10)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--scheduler", default=None, help="a Dask scheduler address")
    p.add_argument("--out", default="sweep")
    p.set_defaults(handler=_cmd_sweep)


_OPTIMIZERS = ("sgd", "path-sgd", "path-adam")


def _config(args, optimizer, lr, seed, data_seed=None):
    """One run: ``seed`` draws the initialisation and batches, ``data_seed`` (default: the
    same) fixes the task's test set and corpus, so that runs compared in one table are
    scored on the same data."""
    return dict(task=args.task, T=args.T, data=args.data, hidden=list(args.hidden),
                init=args.init, steps=args.steps, batch=args.batch, clip=args.clip,
                eval_every=args.eval_every, engine=args.engine, optimizer=optimizer,
                curvature=args.curvature, lr=lr, seed=seed,
                data_seed=seed if data_seed is None else data_seed)


def run_config(config, out_dir=None, progress=False):
    """One training run from a plain dict (what the sweep ships to worker processes)."""
    task = _task_from(config["task"], config["T"], config.get("data_seed", config["seed"]),
                      config["data"])
    net = rnn(task.n_in, config["hidden"], task.n_out, task.T, outputs=task.outputs)
    rng = np.random.default_rng(config["seed"])
    p0 = net.init(rng, config["init"])
    kwargs = {} if config["optimizer"] == "sgd" else {"curvature": config["curvature"]}
    opt = make_optimizer(config["optimizer"], config["lr"], clip=config["clip"], **kwargs)
    result = train(net, task, opt, config["steps"], batch_size=config["batch"], rng=rng,
                   p0=p0, eval_every=config["eval_every"], out_dir=out_dir, progress=progress,
                   engine=config["engine"])
    row = dict(config, test_loss=float(result.test_loss), test_metric=float(result.test_metric),
               diverged=bool(result.diverged), message=result.message,
               seconds=float(result.seconds), out_dir=out_dir)
    if out_dir:
        finite = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                  for k, v in row.items()}
        with open(os.path.join(out_dir, "run.json"), "w") as fh:
            json.dump({"config": config, "result": finite}, fh, indent=1, allow_nan=False)
    return row


def _metric_name(task):
    return {"adding": "test MSE", "digits": "test accuracy", "charlm": "test bits/char"}[task]


def _cmd_train(args, out, err):
    config = _config(args, args.optimizer, args.lr, args.seed)
    row = run_config(config, out_dir=args.out, progress=not args.quiet)
    status = "DIVERGED: " + row["message"] if row["diverged"] else "finished"
    print(f"{args.optimizer} (lr {args.lr:g}) on {args.task}: {status}", file=out)
    print(f"{_metric_name(args.task)}: {row['test_metric']:.6g}   (test loss "
          f"{row['test_loss']:.6g}, {row['seconds']:.1f} s)", file=out)
    if args.out:
        print(f"log, params and result in {args.out}/", file=out)
        plotted = _plot_runs([args.out], os.path.join(args.out, "curve.png"), err)
        if plotted:
            print(f"learning curve: {plotted}", file=out)
    return 1 if row["diverged"] else 0


def _cmd_evaluate(args, out, err):
    path = os.path.join(args.run, "run.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: 'pathgeom evaluate' reads runs written by "
                                f"'pathgeom train --out DIR' (in Python, use "
                                f"pathgeom.load_params and pathgeom.evaluate)")
    with open(path) as fh:
        config = json.load(fh)["config"]
    seed = config.get("data_seed", config["seed"]) if args.seed is None else args.seed
    task = _task_from(config["task"], config["T"], seed, config.get("data"))
    net, p = load_params(os.path.join(args.run, "params.npz"))
    loss, metric = evaluate(net, task, p)
    print(f"{_metric_name(config['task'])}: {metric:.6g}   (test loss {loss:.6g})", file=out)
    return 0


def _plot_runs(runs, path, err):
    """Learning curves of the runs in ``runs`` into ``path``; None without matplotlib."""
    histories = {}
    for run in runs:
        with open(os.path.join(run, "history.json")) as fh:
            history = json.load(fh)
        with open(os.path.join(run, "run.json")) as fh:
            config = json.load(fh)["config"]
        label = f"{config['optimizer']} lr={config['lr']:g} seed={config['seed']}"
        histories[label] = history
    return _plot_histories(histories, path, err)


def _cmd_plot(args, out, err):
    path = _plot_runs(args.runs, args.out, err)
    if path is None:
        return 1
    print(f"wrote {path}", file=out)
    return 0


def _grid(args):
    """The list of run configs of a sweep."""
    lrs, optimizers, seeds = args.lrs, args.optimizers, args.seeds
    if args.preset == "paper":  # note: at the IRNN init Path-SGD blows up at these rates
        lrs, optimizers = [1e-2, 1e-3, 1e-4], ["path-sgd", "sgd"]
    unknown = [o for o in optimizers if o not in _OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {unknown}; choose from {list(_OPTIMIZERS)}")
    configs = []
    for opt, lr, seed in itertools.product(optimizers, lrs, seeds):
        if opt == "sgd" and args.preset == "paper":
            for k in range(args.irnn_inits):  # IRNN: several initialisations per cell,
                configs.append(_config(args, opt, lr, seed * 1000 + k, data_seed=seed))
        else:                                 # all scored on the seed's test set
            configs.append(_config(args, opt, lr, seed))
    return configs


def _cmd_sweep(args, out, err):
    try:
        import joblib
    except ImportError:
        print("pathgeom sweep needs joblib: pip install 'pathgeom[sweep]' (or "
              "'pathgeom[dask]' for --scheduler)", file=err)
        return 1
    configs = _grid(args)
    os.makedirs(args.out, exist_ok=True)
    dirs = [os.path.join(args.out, f"{c['optimizer']}-lr{c['lr']:g}-seed{c['seed']}")
            for c in configs]
    jobs = [joblib.delayed(run_config)(c, d) for c, d in zip(configs, dirs)]
    start = time.perf_counter()
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            print("--scheduler needs dask.distributed: pip install 'pathgeom[dask]'", file=err)
            return 1
        with Client(args.scheduler), joblib.parallel_config(backend="dask"):
            rows = joblib.Parallel()(jobs)
    else:
        rows = joblib.Parallel(n_jobs=args.jobs)(jobs)
    rows = _select_irnn(rows) if args.preset == "paper" else rows
    _write_table(rows, os.path.join(args.out, "table.csv"))
    print(_format_table(rows, args.task), file=out)
    print(f"{len(configs)} runs in {time.perf_counter() - start:.1f} s; table in "
          f"{os.path.join(args.out, 'table.csv')}", file=out)
    return 0


def _select_irnn(rows):
    """The paper's IRNN protocol: per learning rate, the initialisation that did not diverge
    and reached the lowest test loss (the paper picked the one that did not explode)."""
    keep = [r for r in rows if r["optimizer"] != "sgd"]
    cells = sorted({(r["lr"], r.get("data_seed", r["seed"])) for r in rows
                    if r["optimizer"] == "sgd"})
    for lr, data_seed in cells:  # one IRNN row per learning rate and base seed
        cell = [r for r in rows if r["optimizer"] == "sgd" and r["lr"] == lr
                and r.get("data_seed", r["seed"]) == data_seed]
        ok = [r for r in cell if not r["diverged"]] or cell
        keep.append(min(ok, key=lambda r: r["test_loss"] if np.isfinite(r["test_loss"])
                        else np.inf))
    return keep


_COLUMNS = ("optimizer", "lr", "seed", "data_seed", "test_loss", "test_metric", "diverged",
            "seconds")


def _write_table(rows, path):
    with open(path, "w") as fh:
        fh.write(",".join(_COLUMNS) + "\n")
        for r in rows:
            fh.write(",".join(str(r[c]) for c in _COLUMNS) + "\n")


def _format_table(rows, task):
    lines = [f"{'optimizer':>10} {'lr':>8} {'seed':>6} {'test loss':>11} "
             f"{_metric_name(task):>14} {'diverged':>9} {'seconds':>8}"]
    for r in sorted(rows, key=lambda r: (r["optimizer"], -r["lr"], r["seed"])):
        lines.append(f"{r['optimizer']:>10} {r['lr']:>8g} {r['seed']:>6} {r['test_loss']:>11.4g} "
                     f"{r['test_metric']:>14.4g} {str(r['diverged']):>9} {r['seconds']:>8.1f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figure 2


def kappa_ratio(net, p):
    r""":math:`\|\kappa^{(2)}\| / \|\kappa^{(1)}\|` over all parameters (structured RNN path)."""
    r = net.path_quantities(p)
    return float(np.linalg.norm(r.kappa2) / np.linalg.norm(r.kappa1))


def figure2_table(Ts, Hs, train_steps, seed=0, lr=1e-3, progress=False):
    """The paper's Figure 2 question on the built-in character corpus: the ratio
    ||kappa2|| / ||kappa1|| at the language-model initialisation and after
    ``train_steps`` path-Adam (kappa1) steps (the paper's language-model optimiser), for
    each (T, H)."""
    rows = []
    for T, H in itertools.product(Ts, Hs):
        task = make_task("charlm", corpus="builtin", seq_len=T, seed=seed)
        net = rnn(task.n_in, H, task.n_out, T, outputs="all")
        rng = np.random.default_rng(seed)
        p0 = net.init(rng, "lm")
        before = kappa_ratio(net, p0)
        after = None
        if train_steps:
            opt = make_optimizer("path-adam", lr, curvature="kappa1")
            res = train(net, task, opt, train_steps, batch_size=32, rng=rng, p0=p0,
                        eval_every=train_steps, progress=progress)
            after = kappa_ratio(net, res.p)
        rows.append(dict(T=T, H=H, init=before, trained=after))
    return rows


def _cmd_figure2(args, out, err):
    rows = figure2_table(args.Ts, args.Hs, args.train_steps, seed=args.seed, lr=args.lr,
                         progress=not args.quiet)
    print(f"||kappa2|| / ||kappa1|| on the built-in character corpus (outputs at every step); "
          f"'trained': after {args.train_steps} path-Adam (kappa1) steps, lr {args.lr:g}",
          file=out)
    print(f"{'T':>5} {'H':>5} {'at LM init':>12} {'trained':>12}", file=out)
    for r in rows:
        trained = "-" if r["trained"] is None else f"{r['trained']:.3g}"
        print(f"{r['T']:>5} {r['H']:>5} {r['init']:>12.3g} {trained:>12}", file=out)
    return 0


def add_figure2(sub):
    p = sub.add_parser("figure2", help="the paper's Figure 2: ||kappa2|| / ||kappa1||")
    p.add_argument("--Ts", type=_ints, default=[10, 20, 50, 100])
    p.add_argument("--Hs", type=_ints, default=[10, 50, 100, 200])
    p.add_argument("--train-steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=_cmd_figure2)


# --------------------------------------------------------------------------- the demo race

#: (optimizer, learning rates tried) in the demo's adding-problem race; the best rate of each
#: optimiser (lowest final test loss) is kept.  Path-SGD's rates are far below SGD's: at the
#: IRNN initialisation kappa1 of W_rec is ~1e-6, so lr * grad / kappa is a large step.
RACE = (("sgd", (1e-2, 1e-3)), ("path-sgd", (1e-6, 1e-8)), ("path-adam", (1e-3,)))


def adding_race(T, H, steps, seed, out, err, plot="demo-race.png"):
    """A short adding-problem race: SGD (IRNN), Path-SGD (kappa1) and path-Adam from the same
    IRNN initialisation, each at its best learning rate of a small grid; prints the table
    and a verdict read from the measured test losses, and plots the curves when it can."""
    task = make_task("adding", T=T, seed=seed)
    net = rnn(task.n_in, H, task.n_out, T)
    print(f"\nAdding problem, T = {T}, H = {H}, {steps} steps of batch 64 from the IRNN "
          f"initialisation (test MSE of predicting the mean: {task.baseline:.3f})", file=out)
    best = {}
    for name, lrs in RACE:
        for lr in lrs:
            rng = np.random.default_rng(seed)
            p0 = net.init(rng, "irnn")
            kwargs = {} if name == "sgd" else {"curvature": "kappa1"}
            res = train(net, task, make_optimizer(name, lr, **kwargs), steps, 64, rng=rng,
                        p0=p0, eval_every=max(steps // 10, 1), progress=False)
            loss = res.test_loss if np.isfinite(res.test_loss) else np.inf
            status = "diverged" if res.diverged else f"test MSE {res.test_loss:.4g}"
            print(f"  {name:10} lr {lr:<7g} {status}", file=out)
            if name not in best or loss < best[name][0]:
                best[name] = (loss, lr, res)
    ranking = sorted(best.items(), key=lambda kv: kv[1][0])
    (winner, (loss, lr, _)), rest = ranking[0], ranking[1:]
    others = "; ".join(f"{n} {v[0]:.3g}" if np.isfinite(v[0]) else f"{n} diverged"
                       for n, (v) in ((n, v) for n, v in rest))
    learned = "below" if loss < task.baseline else "not below"
    print(f"verdict: {winner} (lr {lr:g}) reached the lowest test MSE, {loss:.3g}, {learned} "
          f"the mean predictor's {task.baseline:.3f}; {others}", file=out)
    if plot:
        _plot_histories({f"{n} lr={v[1]:g}": v[2].history for n, v in best.items()}, plot,
                        err, title=f"adding problem, T = {T}, H = {H}",
                        baseline=task.baseline)
        if os.path.exists(plot):
            print(f"learning curves: {plot}", file=out)
    return best


def _plot_histories(histories, path, err, title="", baseline=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install 'pathgeom[plot]')", file=err)
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, history in histories.items():
        rows = [h for h in history if h.get("test_loss") is not None
                and np.isfinite(h["test_loss"])]
        ax.plot([h["step"] for h in rows], [h["test_loss"] for h in rows], label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="predict the mean")
    ax.set_xlabel("step")
    ax.set_ylabel("test loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
