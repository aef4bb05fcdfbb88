"""The training commands of the ``pathgeom`` command line: ``train``, ``evaluate``, ``plot``,
``sweep``, ``status``, ``export`` and ``figure2``.  Registered by :mod:`pathgeom.cli`."""

import argparse
import os
import time

from . import experiments, runs
from .constructors.rnn import INIT_SCHEMES
from .experiments import DEFAULTS, TASK_DEFAULT_T, check_config, run_config
from .optim import CURVATURES, OPTIMIZERS, STEP_RULES
from .plotting import plot_histories
from .training import evaluate, load_params

__all__ = ["add_commands"]

_INTERRUPTED = 130  # the exit status of a run stopped by SIGINT/SIGTERM (128 + SIGINT)


def _floats(text):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def _ints(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _strs(text):
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:   # "--optimizers ," must not mean "the default grid"
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give comma-separated "
                                         f"values")
    return values


def _opt(parser, flag, key=None, help="", **kwargs):
    """An option whose default lives in :data:`DEFAULTS` (shown in the help; the parsed
    value is None when the user did not give it, so that a resumed run can tell)."""
    key = key or flag.lstrip("-").replace("-", "_")
    default = DEFAULTS[key]
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    parser.add_argument(flag, dest=key, default=None,
                        help=f"{help} (default: {shown})" if help else f"(default: {shown})",
                        **kwargs)


# flags that only change how a run is shown, allowed with --resume
_OUTPUT_FLAGS = ("quiet",)


def _add_run_arguments(parser, sweep=False):
    _opt(parser, "--task", choices=sorted(TASK_DEFAULT_T), help="the task")
    _opt(parser, "--T", type=int,
         help="adding: sequence length (100); charlm: training sequence length (50); "
              "digits: fixed by the data, not accepted")
    _opt(parser, "--data",
         help="digits: a directory of MNIST IDX files, or builtin28 (the built-in digits "
              "upsampled to 28x28: T = 784); charlm: a corpus directory; adding: "
              "not accepted (built-in data when not given)")
    _opt(parser, "--hidden", type=_ints, help="hidden units per layer, e.g. 100 or 64,64")
    _opt(parser, "--init", choices=sorted(INIT_SCHEMES),
         help="initialisation: " + "; ".join(f"{k}: {v}" for k, v in INIT_SCHEMES.items()))
    _opt(parser, "--steps", type=int, help="updates (with --resume: the new total)")
    _opt(parser, "--batch", type=int, help="minibatch size")
    _opt(parser, "--clip", type=float, help="gradient-norm clipping (none by default)")
    _opt(parser, "--eval-every", type=int, help="steps between test evaluations")
    _opt(parser, "--log-every", type=int, help="steps between rows of history.csv")
    _opt(parser, "--engine", choices=("dense", "graph"),
         help="dense numpy BPTT (fast) or the generic graph engine")
    _opt(parser, "--curvature", choices=sorted(CURVATURES),
         help="Path-SGD / path-Adam curvature, recomputed every step: " + "; ".join(
             f"{k}: {v}" for k, v in CURVATURES.items()))
    _opt(parser, "--rule", choices=sorted(STEP_RULES),
         help="Path-SGD step-size rule: " + "; ".join(f"{k}: {v}"
                                                      for k, v in STEP_RULES.items()))
    _opt(parser, "--diverge-factor", type=float,
         help="stop as diverged when a loss exceeds this many times the initial test loss")
    _opt(parser, "--checkpoint-every", type=int,
         help="steps between checkpoints of a run with --out")
    _opt(parser, "--threads", type=int,
         help="BLAS and numba threads per run (one thread is fastest for these sizes; a "
              "sweep runs one such run per worker)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _given(args, keys):
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _config_from(args, **extra):
    """A checked run configuration from the parsed flags (defaults filled in)."""
    keys = [k for k in DEFAULTS if hasattr(args, k)]
    settings = _given(args, keys)
    settings.update(extra)
    config = check_config(settings)
    _refuse_ignored(args, config["optimizer"] if "optimizer" in settings else None)
    return config


def _refuse_ignored(args, optimizer):
    """Flags that the chosen optimiser would ignore are errors, never silence."""
    if optimizer is None:
        return
    if optimizer != "path-sgd" and args.rule is not None:
        raise ValueError(f"--rule applies to path-sgd only, not to {optimizer}")
    if optimizer == "sgd" and args.curvature is not None:
        raise ValueError("--curvature applies to path-sgd and path-adam, not to sgd")


def add_commands(sub):
    """Register the training subcommands on an argparse subparsers object."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "train", help="train an RNN on a task with SGD, Path-SGD or path-Adam",
        formatter_class=fmt,
        description="Train a ReLU RNN (pathgeom.rnn) on the adding problem, sequential digits "
                    "or a character language model.\n\nWith --out DIR the run is written to "
                    "DIR (checkpoints, history, result, parameters); an existing DIR is "
                    "refused unless --resume DIR or --overwrite. Exit status: 0 finished, 1 "
                    "diverged (or could not run), 2 bad arguments, 130 interrupted "
                    "(resume it with --resume DIR).")
    _add_run_arguments(p)
    _opt(p, "--optimizer", choices=sorted(OPTIMIZERS), help="the optimiser")
    _opt(p, "--lr", type=float, help="learning rate")
    _opt(p, "--seed", type=int, help="seed of the initialisation, the batches and the data")
    p.add_argument("--data-seed", dest="data_seed", type=int, default=None,
                   help="seed of the data alone (test and validation sets; default: --seed): "
                        "a sweep's IRNN initialisations share their cell's, so --seed K "
                        "--data-seed 0 reruns its run seed K on its own")
    p.add_argument("--init-from", dest="init_from", metavar="FILE", default=None,
                   help="start from these parameters instead of --init (a run's params.npz, "
                        "a .npz with an array p, a .npy or a text file); --init and --seed "
                        "still draw the batches as without it")
    p.add_argument("--out", default=None, help="the run directory (none: nothing is written)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR with its own settings (--steps may extend "
                        "it, --quiet may be given)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run files in an existing --out directory")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="reload a run's params.npz and evaluate it")
    p.add_argument("run", help="a run directory written by 'pathgeom train --out'")
    p.add_argument("--seed", type=int, default=None, help="test-set seed (default: the run's)")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("plot", help="learning curves of several runs in one figure ([plot])")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="curves.png",
                   help="PNG file, or an existing directory to write curves.png into "
                        "(default: curves.png)")
    p.set_defaults(handler=_cmd_plot)

    p = sub.add_parser(
        "sweep", help="a grid of runs (learning rates x optimisers x seeds)",
        formatter_class=fmt,
        description="Run a grid in worker processes (--jobs), or on a Dask cluster with "
                    "--scheduler ADDRESS or --scheduler local (the optional [dask] extra), "
                    "one run directory per run in --out, and write table.csv as runs end. "
                    "--resume skips finished runs and resumes interrupted ones; --from RUN ... "
                    "starts a new sweep from copies of runs, continued to --steps.")
    _add_run_arguments(p, sweep=True)
    p.add_argument("--lrs", type=_floats, default=None,
                   help="learning rates (default: 0.01,0.001,0.0001)")
    p.add_argument("--optimizers", type=_strs, default=None,
                   help="optimisers (default: path-sgd,sgd)")
    p.add_argument("--seeds", type=_ints, default=None, help="seeds (default: 0)")
    p.add_argument("--preset", choices=("paper",), default=None,
                   help="paper: learning rates {1e-2, 1e-3, 1e-4}; path-sgd and sgd (IRNN: "
                        "the best of --irnn-inits initialisations per learning rate, chosen "
                        "on the validation set)")
    p.add_argument("--irnn-inits", type=int, default=None,
                   help="initialisations per learning rate of sgd (default: 10 with "
                        "--preset paper, else 1)")
    p.add_argument("--jobs", type=int, default=None,
                   help=f"worker processes or Dask workers (default: {os.cpu_count() or 1})")
    p.add_argument("--scheduler", default=None,
                   help="a Dask scheduler address, or 'local' for a LocalCluster")
    p.add_argument("--out", default=None, help="the sweep directory (required)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out with its own grid (--steps may extend "
                        "it)")
    p.add_argument("--from", dest="branch", nargs="+", metavar="RUN", default=None,
                   help="a new sweep in --out from copies of these run directories, "
                        "continued to --steps (the runs themselves are left as they are; "
                        "resume the branch with --resume)")
    p.set_defaults(handler=_cmd_sweep)

    p = sub.add_parser(
        "status", help="where each run of a sweep stands (reads files only)",
        description="For each sweep directory, one line per run of its grid: status "
                    "(finished, diverged, interrupted, running, to extend, not started), "
                    "updates done of those asked for, the last evaluated test metric and "
                    "the wall time so far; then the totals. Nothing is written, so it is "
                    "safe while the sweep runs.")
    p.add_argument("sweeps", nargs="+", help="sweep directories")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser(
        "export", help="copy the selected runs of sweeps as small evidence and a table",
        description="For each sweep directory: the runs that finished (for SGD, the "
                    "initialisation selected on the validation set) are copied to "
                    "--dest/SWEEP/RUN (result.json, params.npz, run.json, a thinned "
                    "history.csv) and listed in --table: T,method,lr,steps,test_mse,run "
                    "(test_error = 1 - accuracy for the digits task); the sweep's table.csv "
                    "(every run, diverged and unfinished ones too) is copied to "
                    "--dest/SWEEP/all-runs.csv.")
    p.add_argument("sweeps", nargs="+", help="sweep directories")
    p.add_argument("--dest", required=True, help="directory for the copied runs")
    p.add_argument("--table", required=True, help="the CSV table to write")
    p.add_argument("--keep-every", type=int, default=1000,
                   help="history rows kept: multiples of this step, and every evaluation "
                        "(default: 1000)")
    p.set_defaults(handler=_cmd_export)


def _cmd_train(args, out, err):
    if args.resume:
        if args.out or args.overwrite:
            raise ValueError("--resume DIR continues DIR: do not give --out or --overwrite")
        changed = [k for k in DEFAULTS if k != "steps" and getattr(args, k, None) is not None]
        if changed:
            flags = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise ValueError(f"--resume uses the run's own settings: {flags} cannot be "
                             f"changed (only --steps and --quiet may be given)")
        row = experiments.resume_run(args.resume, steps=args.steps, progress=not args.quiet)
        run_dir = args.resume
    else:
        config = _config_from(args)
        if args.overwrite and not args.out:
            raise ValueError("--overwrite needs --out DIR")
        row = run_config(config, out_dir=args.out, progress=not args.quiet,
                         overwrite=args.overwrite)
        run_dir = args.out
    status = {"finished": "finished", "interrupted": "INTERRUPTED: " + row["message"],
              "diverged": "DIVERGED: " + row["message"]}[row["status"]]
    print(f"{row['optimizer']} (lr {row['lr']:g}) on {row['task']}: {status}", file=out)
    print(f"{_metric_name(row['task'])}: {row['test_metric']:.6g}   (test loss "
          f"{row['test_loss']:.6g}, {row['seconds']:.1f} s, {row['steps_done']} steps"
          f"{'' if row['resumed_from'] is None else ', resumed from step %d' % row['resumed_from']})",
          file=out)
    if run_dir:
        print(f"log, checkpoint, params and result in {run_dir}/", file=out)
        if row["status"] != "interrupted":
            plotted = _plot_runs([run_dir], os.path.join(run_dir, "curve.png"), err)
            if plotted:
                print(f"learning curve: {plotted}", file=out)
    return {"finished": 0, "diverged": 1, "interrupted": _INTERRUPTED}[row["status"]]


def _cmd_evaluate(args, out, err):
    config = experiments.read_run_config(args.run)
    if args.seed is not None:
        config = dict(config, data_seed=args.seed)
    config = check_config(config)
    task = experiments._build(config)[0]
    net, p = load_params(os.path.join(args.run, "params.npz"))
    loss, metric = evaluate(net, task, p)
    print(f"{_metric_name(config['task'])}: {metric:.6g}   (test loss {loss:.6g})", file=out)
    return 0


def _plot_runs(run_dirs, path, err):
    """Learning curves of the runs in ``run_dirs`` into ``path``; None without matplotlib."""
    configs = [experiments.read_run_config(run) for run in run_dirs]
    show_T = len({c.get("T") for c in configs}) > 1
    labels = []
    for config in configs:
        label = f"{experiments.method_name(config)} lr={config['lr']:g} seed={config['seed']}"
        if config["optimizer"] == "path-sgd" and config.get("rule", "backtracking") != \
                "backtracking":
            label += f" {config['rule']}"
        if config.get("clip") is not None:
            label += f" clip={config['clip']:g}"
        if show_T:
            label += f" T={config['T']}"
        labels.append(label)
    histories = {}
    for run, label in zip(run_dirs, labels):
        if labels.count(label) > 1:   # the same settings in two sweeps: name the directory
            label += f" ({os.path.basename(os.path.dirname(os.path.abspath(run)))})"
        histories[label] = runs.read_history(run)
    return _plot_histories(histories, path, err)


def _plot_path(path):
    """``path`` as written, or ``path/curves.png`` for a directory (existing or ending in a
    separator); a missing parent directory is an error."""
    if path.endswith(os.sep) or os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, "curves.png")
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"--out {path}: the directory {parent} does not exist")
    from ._files import check_output_target
    return check_output_target(path, "--out")


def _cmd_plot(args, out, err):
    path = _plot_runs(args.runs, _plot_path(args.out), err)
    if path is None:
        return 1
    print(f"wrote {path}", file=out)
    return 0


def _grid(args):
    """The list of run configs of a sweep."""
    lrs, optimizers = args.lrs or [1e-2, 1e-3, 1e-4], args.optimizers or ["path-sgd", "sgd"]
    if args.preset == "paper":
        lrs = [1e-2, 1e-3, 1e-4]
        optimizers = args.optimizers or ["path-sgd", "sgd"]
    unknown = [o for o in optimizers if o not in OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {unknown}; choose from {sorted(OPTIMIZERS)}")
    inits = args.irnn_inits if args.irnn_inits is not None else (
        10 if args.preset == "paper" else 1)
    if inits < 1:
        raise ValueError(f"--irnn-inits must be >= 1, got {inits}")
    keys = [k for k in DEFAULTS if hasattr(args, k) and k not in ("optimizer", "lr", "seed")]
    base = _given(args, keys)
    if "rule" in base and "path-sgd" not in optimizers:
        raise ValueError("--rule applies to path-sgd, which is not in --optimizers")
    if "curvature" in base and not set(optimizers) - {"sgd"}:
        raise ValueError("--curvature applies to path-sgd and path-adam, not to sgd")
    if inits > 1 and "sgd" in optimizers and base.get("task", DEFAULTS["task"]) == "digits":
        raise ValueError("the digits task has no validation set, so the best of several SGD "
                         "initialisations cannot be chosen without looking at the test set: "
                         "use --irnn-inits 1")
    return [check_config(c) for c in experiments.grid(base, optimizers, lrs,
                                                       args.seeds or [0], irnn_inits=inits)]


def _cmd_sweep(args, out, err):
    if not args.out:
        raise ValueError("sweep needs --out DIR, the sweep directory")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.resume or args.branch:
        changed = [k for k in DEFAULTS if k != "steps" and getattr(args, k, None) is not None]
        changed += [k for k in ("lrs", "optimizers", "seeds", "preset", "irnn_inits")
                    if getattr(args, k, None) is not None]
        what = "--from continues the runs' own settings" if args.branch else \
            "--resume continues the stored grid"
        if changed:
            flags = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise ValueError(f"{what}: {flags} cannot be changed "
                             f"(only --steps, --jobs, --scheduler and --quiet may be given)")
    if args.branch:
        if args.resume:
            raise ValueError("--from starts a new sweep in --out; --resume continues one: "
                             "give one of them")
        if args.steps is None:
            raise ValueError("--from needs --steps, the number of updates to continue to")
        configs = experiments.branch_runs(args.branch, args.out, args.steps)
        args.resume = True   # the copies resume from their checkpoints
    elif args.resume:
        configs = experiments.read_sweep_configs(args.out)
        if args.steps is not None:
            configs = [dict(c, steps=args.steps) for c in configs]
    else:
        configs = _grid(args)
    start = time.perf_counter()
    rows = experiments.sweep(configs, args.out, jobs=args.jobs, scheduler=args.scheduler,
                             resume=args.resume, progress=not args.quiet and None)
    print(_format_table(rows, configs[0]["task"]), file=out)
    print(f"{len(rows)} of {len(configs)} runs have results ({time.perf_counter() - start:.1f} s "
          f"this time); table in {os.path.join(args.out, 'table.csv')}", file=out)
    if any(r["status"] == "interrupted" for r in rows):
        return _INTERRUPTED
    return 1 if len(rows) < len(configs) else 0   # a run that failed (named on stderr)


def _cmd_status(args, out, err):
    for i, sweep_dir in enumerate(args.sweeps):
        rows = experiments.sweep_status(sweep_dir)
        task = experiments.read_sweep_configs(sweep_dir)[0]["task"]
        if i:
            print(file=out)
        print(sweep_dir, file=out)
        print(_format_status(rows, task), file=out)
        counts = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        done = sum(r["step"] for r in rows)
        asked = sum(r["steps"] for r in rows)
        # what a copy made with --from inherited from its source (read once per run)
        inherited = {r["run"]: experiments.branch_record(os.path.join(sweep_dir, r["run"]))
                     or {"step": 0, "seconds": 0.0} for r in rows}
        hours = sum(r["seconds"] - inherited[r["run"]]["seconds"] for r in rows) / 3600
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        print(f"{len(rows)} runs: {summary}; {done:,} of {asked:,} updates done "
              f"({100 * done / asked if asked else 100:.0f} %), {hours:.2f} h of run time"
              f"{_time_left(rows, inherited)}", file=out)
    return 0


def _time_left(rows, inherited):
    """The run time the unfinished runs still need, at the sweep's own rate so far (the
    updates and seconds a copy made with --from inherited from its source, ``inherited``
    per run, left out)."""
    left = sum(r["steps"] - r["step"] for r in rows if r["status"] != "diverged")
    if not left:
        return ""
    seconds = steps = 0
    for r in rows:
        if r["status"] == "diverged":
            continue
        record = inherited[r["run"]]
        if r["step"] > record["step"]:
            seconds += r["seconds"] - record["seconds"]
            steps += r["step"] - record["step"]
    if not steps:
        return "; no rate yet to estimate the rest"
    rate = seconds / steps
    return f"; about {left * rate / 3600:.2f} h more at {1e3 * rate:.3g} ms an update"


def _format_status(rows, task):
    lines = [f"{'run':<28} {'method':>9} {'status':>11} {'step':>9} {'of':>9} "
             f"{_metric_name(task):>14} {'seconds':>9}"]
    for r in rows:
        tm = "-" if r["test_metric"] is None else f"{r['test_metric']:.4g}"
        lines.append(f"{r['run']:<28} {r['method']:>9} {r['status']:>11} {r['step']:>9} "
                     f"{r['steps']:>9} {tm:>14} {r['seconds']:>9.0f}")
    return "\n".join(lines)


def _cmd_export(args, out, err):
    if args.keep_every < 1:
        raise ValueError(f"--keep-every must be >= 1, got {args.keep_every}")
    from ._files import check_output_target
    check_output_target(args.table, "--table")
    rows = []
    for sweep_dir in args.sweeps:
        dest = os.path.join(args.dest, os.path.basename(os.path.normpath(sweep_dir)))
        rows += experiments.export_runs(sweep_dir, dest, keep_every=args.keep_every)
    tasks = {experiments.read_run_config(r["run"])["task"] for r in rows}
    if tasks == {"digits"}:
        for r in rows:
            r["test_error"] = 1.0 - r["test_metric"]
        columns = ("T", "method", "lr", "steps", "test_error", "run")
    else:
        columns = experiments.EXPORT_COLUMNS
    experiments.write_export_table(args.table, rows, columns)
    print(f"{len(rows)} runs exported to {args.dest}; table {args.table}", file=out)
    return 0


def _metric_name(task):
    return {"adding": "test MSE", "digits": "test accuracy", "charlm": "test bits/char"}[task]


def _format_table(rows, task):
    lines = [f"{'optimizer':>10} {'lr':>8} {'seed':>6} {'status':>11} {'test loss':>11} "
             f"{_metric_name(task):>14} {'valid loss':>11} {'sel':>4} {'seconds':>8}"]
    for r in sorted(rows, key=lambda r: (r["optimizer"], -r["lr"], r["seed"])):
        valid = "-" if r.get("valid_loss") is None else f"{r['valid_loss']:.4g}"
        tl = "-" if r.get("test_loss") is None else f"{r['test_loss']:.4g}"
        tm = "-" if r.get("test_metric") is None else f"{r['test_metric']:.4g}"
        lines.append(f"{r['optimizer']:>10} {r['lr']:>8g} {r['seed']:>6} {r['status']:>11} "
                     f"{tl:>11} {tm:>14} {valid:>11} {'*' if r['selected'] else '':>4} "
                     f"{(r.get('seconds') or 0):>8.1f}")
    return "\n".join(lines)



# --------------------------------------------------------------------------- figure 2


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


# The experiments this module used to hold live in pathgeom.experiments (kept importable).
kappa_ratio = experiments.kappa_ratio
figure2_table = experiments.figure2_table
adding_race = experiments.adding_race
RACE = experiments.RACE
_plot_histories = plot_histories
