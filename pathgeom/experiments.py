"""Experiments: runs described by plain configurations, grids of them (sweeps), and the
paper's comparisons built on them.

A *run configuration* is a dict of JSON values (what ``pathgeom train`` records in a run
directory's ``run.json``)::

    task, T, data, hidden, init, steps, batch, clip, eval_every, log_every, engine,
    optimizer, curvature, rule, lr, seed, data_seed, diverge_factor, checkpoint_every,
    threads

:func:`check_config` validates one before any work; :func:`run_config` trains it into a
run directory (resumable); :func:`resume_run` continues a run directory from its own
configuration.  :func:`sweep` runs a grid of configurations in worker processes or on a
Dask cluster, each in a directory of its own, writing the table as runs complete, and
resumes an interrupted grid.  :func:`select_irnn` applies the paper's IRNN protocol (per
learning rate, the best of several initialisations, chosen on the validation set).
"""

import concurrent.futures as cf
import itertools
import math
import multiprocessing
import numbers
import os
import signal
import threading
import time

import numpy as np

from . import runs
from .constructors import rnn
from .constructors.rnn import INIT_SCHEMES
from ._validation import check_int, check_real
from .optim import CURVATURES, OPTIMIZERS, STEP_RULES, make_optimizer
from .plotting import plot_histories
from .tasks import make_task
from .training import train
from ._rescaled_race import (RACE_NETS, RescaledRace, race_preset, rescaled_race,  # noqa: F401
                             spread_rescaling)

__all__ = ["kappa_ratio", "figure2_table", "adding_race", "RACE", "DEFAULTS", "TASK_DEFAULT_T", "check_config", "make_config", "run_config",
           "resume_run", "run_dir_name", "sweep", "select_irnn", "SweepError", "grid",
           "TABLE_COLUMNS", "read_run_config", "method_name", "export_runs",
           "write_export_table", "EXPORT_COLUMNS", "sweep_status", "STATUS_COLUMNS",
           "branch_runs", "BRANCH_SHARED", "branch_record", "own_seconds",
           "load_start", "rescaled_race", "RescaledRace", "spread_rescaling", "race_preset", "RACE_NETS"]

#: The default of every run setting (the command line shows these in ``--help``).
DEFAULTS = dict(task="adding", T=None, data=None, hidden=[100], init="irnn", steps=1000,
                batch=64, clip=None, eval_every=100, log_every=10, engine="dense",
                optimizer="path-sgd", curvature="kappa1", rule="backtracking", lr=1e-3,
                seed=0, data_seed=None, diverge_factor=100.0, checkpoint_every=500,
                threads=1, init_from=None)

#: The default sequence length per task (None: fixed by the data).
TASK_DEFAULT_T = {"adding": 100, "digits": None, "charlm": 50}


class SweepError(ValueError):
    """A sweep that cannot run as asked."""


def _int(config, key, low):
    check_int(config[key], key, low)


def _rate(config, key, low=0.0, allow_none=False):
    check_real(config[key], key, low, allow_none=allow_none)


def check_config(config):
    """Validate a run configuration (a dict with the keys of :data:`DEFAULTS`); return it
    with ``T`` and ``data_seed`` filled in.  Every value is checked before any work, and a
    setting the task or optimiser would ignore is refused."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown run settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    config = dict(DEFAULTS, **config)
    task = config["task"]
    if task not in TASK_DEFAULT_T:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_DEFAULT_T)}")
    if task == "digits":
        if config["T"] is not None:
            raise ValueError("the digits task has no T: its sequence length is fixed by the "
                             "data (64 built in, 784 for MNIST or the 28x28 stand-in)")
    else:
        if config["T"] is None:
            config["T"] = TASK_DEFAULT_T[task]
        _int(config, "T", 2 if task == "adding" else 1)
    if task == "adding" and config["data"] is not None:
        raise ValueError("the adding task is generated: it takes no data directory (drop "
                         "--data)")
    hidden = config["hidden"]
    if not isinstance(hidden, (list, tuple)) or not hidden or not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1
            for h in hidden):
        raise ValueError(f"hidden must be a list of positive integers, got {hidden!r}")
    config["hidden"] = [int(h) for h in hidden]
    if config["init"] not in INIT_SCHEMES:
        raise ValueError(f"unknown init {config['init']!r}; choose one of "
                         f"{sorted(INIT_SCHEMES)}")
    _int(config, "steps", 0)
    for key in ("batch", "eval_every", "log_every", "checkpoint_every", "threads"):
        _int(config, key, 1)
    _int(config, "seed", 0)
    if config["data_seed"] is None:
        config["data_seed"] = config["seed"]
    _int(config, "data_seed", 0)
    _rate(config, "lr")
    _rate(config, "clip", allow_none=True)
    _rate(config, "diverge_factor", low=1.0, allow_none=True)
    if config["engine"] not in ("dense", "graph"):
        raise ValueError(f"engine must be 'dense' or 'graph', got {config['engine']!r}")
    opt = config["optimizer"]
    if opt not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt!r}; choose one of {sorted(OPTIMIZERS)}")
    if config["curvature"] not in CURVATURES:
        raise ValueError(f"unknown curvature {config['curvature']!r}; choose one of "
                         f"{sorted(CURVATURES)}")
    if config["rule"] not in STEP_RULES:
        raise ValueError(f"unknown rule {config['rule']!r}; choose one of "
                         f"{sorted(STEP_RULES)}")
    init_from = config["init_from"]
    if init_from is not None:
        if not isinstance(init_from, str) or not os.path.isfile(init_from):
            raise ValueError(f"init_from {init_from!r}: no such file (give a run's "
                             f"params.npz, a .npy or a text file of the parameters)")
    return config


def make_config(**settings):
    """A checked run configuration: :data:`DEFAULTS` updated with ``settings``."""
    return check_config(settings)


def _build(config):
    """``(task, net, optimizer, p0, rng)`` of a checked configuration."""
    task = config["task"]
    if task == "adding":
        t = make_task("adding", T=config["T"], seed=config["data_seed"])
    elif task == "digits":
        t = make_task("digits", source=config["data"] or "builtin", seed=config["data_seed"])
    else:
        t = make_task("charlm", corpus=config["data"] or "builtin", seq_len=config["T"],
                      seed=config["data_seed"])
    net = rnn(t.n_in, config["hidden"], t.n_out, t.T, outputs=t.outputs)
    rng = np.random.default_rng(config["seed"])
    p0 = net.init(rng, config["init"])   # drawn even with init_from: the same batch stream
    if config["init_from"] is not None:
        p0 = load_start(config["init_from"], net.n_params)
    kwargs = {}
    if config["optimizer"] != "sgd":
        kwargs["curvature"] = config["curvature"]
    if config["optimizer"] == "path-sgd":
        kwargs["rule"] = config["rule"]
    opt = make_optimizer(config["optimizer"], config["lr"], clip=config["clip"], **kwargs)
    return t, net, opt, p0, rng


def load_start(path, n_params):
    """Starting parameters from a file: a ``.npz`` holding an array ``p`` (a run's
    ``params.npz``, or ``numpy.savez(path, p=...)``), a ``.npy`` array, or a text file of
    numbers (whitespace or commas, ``#`` comments); checked to be ``n_params`` finite
    numbers.  ``pathgeom train --init-from FILE`` uses it.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from pathgeom.experiments import load_start
    >>> path = os.path.join(tempfile.mkdtemp(), "start.npz")
    >>> np.savez(path, p=np.array([0.5, -2.0]))
    >>> load_start(path, 2)
    array([ 0.5, -2. ])
    >>> load_start(path, 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: init_from ...start.npz: 'p' has shape (2,) but the network has 3 parameters
    """
    from ._validation import as_params
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"init_from {path}: no such file")
    try:
        if path.endswith(".npz"):
            from ._npzcheck import check_npz
            check_npz(path, "p", n_expected=n_params)
            with np.load(path, allow_pickle=False) as f:
                p = f["p"]
        elif path.endswith(".npy"):
            p = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8-sig") as fh:
                text = " ".join(line.split("#")[0] for line in fh)
            p = np.array([float(t) for t in text.replace(",", " ").split()])
        return as_params(np.ravel(p), n_params, name=f"init_from {path}")
    except (OSError, ValueError) as exc:
        msg = str(exc)
        if not msg.startswith("init_from"):
            msg = f"init_from {msg}" if msg.startswith(path) else f"init_from {path}: {msg}"
        raise ValueError(msg) from None


def run_config(config, out_dir=None, progress=False, resume=False, overwrite=False,
               should_stop=None, handle_signals=True):
    """Train one run configuration; the result as a flat dict (a table row).

    With ``out_dir`` the run directory gets ``run.json`` (the configuration, written first)
    and everything :func:`pathgeom.training.train` writes; ``resume`` continues it.
    """
    config = check_config(config)
    if out_dir is not None:  # checked before the task is built; created by train
        out_dir = runs.prepare_run_dir(out_dir, resume=resume, overwrite=overwrite,
                                       create=False)
    task, net, opt, p0, rng = _build(config)
    result = train(net, task, opt, config["steps"], batch_size=config["batch"], rng=rng,
                   p0=p0, eval_every=config["eval_every"], out_dir=out_dir,
                   progress=progress, engine=config["engine"],
                   diverge_factor=config["diverge_factor"],
                   checkpoint_every=config["checkpoint_every"], log_every=config["log_every"],
                   resume=resume, overwrite=overwrite, threads=config["threads"],
                   should_stop=should_stop, handle_signals=handle_signals,
                   meta={"config": config})
    row = dict(config, status=result.status, test_loss=float(result.test_loss),
               test_metric=float(result.test_metric), valid_loss=result.valid_loss,
               diverged=result.diverged, message=result.message, seconds=result.seconds,
               steps_done=result.steps, resumed_from=result.resumed_from, out_dir=out_dir)
    if out_dir is not None:
        runs.atomic_write_json(os.path.join(out_dir, "run.json"),
                               {"config": config, "result": row})
    return row


def read_sweep_configs(sweep_dir):
    """The run configurations in ``sweep_dir/sweep.json``, each checked
    (:func:`check_config`): the one reader of a sweep's grid.  A missing, damaged or
    foreign file raises :class:`SweepError` naming it and what is wrong."""
    path = os.path.join(os.fspath(sweep_dir), "sweep.json")
    if not os.path.isfile(path):
        raise SweepError(f"{sweep_dir} is not a sweep directory (no sweep.json): give the "
                         f"--out directory of a pathgeom sweep")
    try:
        stored = runs.read_json(path, "the grid of a sweep")
    except RecursionError:
        raise SweepError(f"{path} is damaged: nested too deeply to be a sweep's grid") from None
    configs = stored.get("configs") if isinstance(stored, dict) else None
    if not isinstance(configs, list) or not configs:
        raise SweepError(f"{path} is damaged: expected {{\"configs\": [run configurations]}} "
                         f"with at least one configuration")
    out = []
    for k, config in enumerate(configs):
        if not isinstance(config, dict):
            raise SweepError(f"{path} is damaged: configs[{k}] is a "
                             f"{type(config).__name__}, not a run configuration")
        try:
            out.append(check_config(config))
        except (ValueError, TypeError) as exc:
            raise SweepError(f"{path} is damaged: configs[{k}]: {exc}") from None
    return out


def read_run_config(run_dir):
    """The configuration in ``run_dir/run.json``."""
    stored = runs.read_json(os.path.join(os.fspath(run_dir), "run.json"),
                            "the configuration of a run written by pathgeom train --out")
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        raise runs.RunDirError(f"{run_dir}/run.json is damaged: it has no 'config'")
    return stored["config"]


def resume_run(run_dir, steps=None, progress=False, should_stop=None, handle_signals=True):
    """Continue the run in ``run_dir`` with its own configuration (``steps`` may extend
    it); a run that never checkpointed starts again from its configuration."""
    config = read_run_config(run_dir)
    if steps is not None:
        config = dict(config, steps=steps)
    config = check_config(config)
    resume = runs.has_checkpoint(run_dir)
    if resume and steps is not None:
        _check_not_fewer(run_dir, config["steps"])   # before anything is written
        runs.atomic_write_json(os.path.join(run_dir, "run.json"), {"config": config})
    return run_config(config, run_dir, progress=progress, resume=resume,
                      overwrite=not resume, should_stop=should_stop,
                      handle_signals=handle_signals)


def _check_not_fewer(run_dir, steps):
    """Refuse to resume ``run_dir`` with fewer steps than its checkpoint has done."""
    done = runs.load_checkpoint(run_dir)["step"]
    if steps < done:
        raise runs.RunDirError(f"{run_dir} has done {done} steps already; resume with "
                               f"steps >= {done}")


# ---------------------------------------------------------------------------- sweeps

#: The columns of a sweep's ``table.csv``.
TABLE_COLUMNS = ("run", "optimizer", "rule", "lr", "seed", "data_seed", "status", "steps",
                 "test_loss", "test_metric", "valid_loss", "selected", "seconds")


def run_dir_name(config):
    """A directory name that differs for every (optimizer, lr, seed): the learning rate is
    written with :func:`repr`, which tells apart any two different floats."""
    return f"{config['optimizer']}-lr{config['lr']!r}-seed{config['seed']}"


def select_irnn(rows, key="valid_loss"):
    """The paper's IRNN protocol: among the SGD runs of one learning rate and data seed,
    the run that did not diverge with the lowest ``key`` (the validation loss) is
    selected; every other optimiser's runs are selected as they are.  Returns the rows
    with a boolean ``selected``."""
    out = [dict(r, selected=r["optimizer"] != "sgd") for r in rows]
    cells = {}
    for r in out:
        if r["optimizer"] == "sgd":
            cells.setdefault((r["lr"], r["data_seed"]), []).append(r)
    for cell in cells.values():
        ok = [r for r in cell if r["status"] == "finished"]
        if ok:
            def score(r):
                v = r.get(key)
                return math.inf if v is None or not math.isfinite(v) else v
            min(ok, key=score)["selected"] = True
    return out


def _write_table(path, rows):
    lines = [",".join(TABLE_COLUMNS)]
    for r in sorted(rows, key=lambda r: r["run"]):
        vals = []
        for c in TABLE_COLUMNS:
            v = r.get(c)
            vals.append("" if v is None else repr(float(v)) if isinstance(v, float) else str(v))
        lines.append(",".join(vals))
    runs.atomic_write_text(path, "\n".join(lines) + "\n")


def _row_from_dir(run_dir, name):
    """The table row of a run directory with a result, or None."""
    if not os.path.exists(os.path.join(run_dir, "result.json")):
        return None
    res = runs.read_result(run_dir)
    config = read_run_config(run_dir)
    return dict(run=name, optimizer=config["optimizer"], rule=config.get("rule"),
                lr=config["lr"], seed=config["seed"], data_seed=config.get("data_seed"),
                status=res["status"], steps=res["steps"], test_loss=res["test_loss"],
                test_metric=res.get("test_metric"), valid_loss=res.get("valid_loss"),
                seconds=res.get("seconds"), requested=config["steps"])


def _sweep_job(config, run_dir, stop=None):
    """One run of a sweep, in a worker: fresh, resumed, or left alone when it is done (or
    when the sweep is stopping before it started)."""
    if stop is not None and stop():
        return os.path.basename(run_dir)
    if os.path.exists(os.path.join(run_dir, "result.json")):
        res = runs.read_result(run_dir)
        if res["status"] == "diverged" or (res["status"] == "finished"
                                          and res["steps"] >= config["steps"]):
            return os.path.basename(run_dir)
    if runs.has_checkpoint(run_dir):
        runs.atomic_write_json(os.path.join(run_dir, "run.json"), {"config": config})
        if os.path.exists(os.path.join(run_dir, "result.json")):   # of fewer steps: the
            os.remove(os.path.join(run_dir, "result.json"))       # run goes on (or fails)
        run_config(config, run_dir, resume=True, should_stop=stop,
                   handle_signals=not isinstance(stop, _DaskStop))
    else:
        run_config(config, run_dir, overwrite=True, should_stop=stop,
                   handle_signals=not isinstance(stop, _DaskStop))
    return os.path.basename(run_dir)


class _DaskStop:
    """``should_stop`` for runs on a Dask cluster: a distributed Event, polled at most
    every ``every`` seconds (workers run tasks outside the main thread: no signals)."""

    def __init__(self, name, every=2.0):
        self.name, self.every, self._next, self._event = name, every, 0.0, None

    def __call__(self):
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every
        if self._event is None:
            from distributed import Event
            self._event = Event(self.name)
        return self._event.is_set()

    def __getstate__(self):
        return {"name": self.name, "every": self.every}

    def __setstate__(self, state):
        self.__init__(state["name"], state["every"])


def sweep(configs, out_dir, jobs=None, scheduler=None, resume=False, progress=None):
    """Run the grid ``configs`` (run configurations) into ``out_dir``, one directory per
    run (:func:`run_dir_name`), ``table.csv`` rewritten atomically as each run ends.

    ``jobs`` worker processes run locally (default: the number of CPUs), or
    ``scheduler`` names a Dask scheduler address (``"local"`` starts a ``LocalCluster``
    with ``jobs`` single-threaded workers; needs the ``[dask]`` extra).  An existing
    non-empty ``out_dir`` is refused unless ``resume``, which skips finished runs,
    resumes interrupted ones from their checkpoints and starts the rest (``steps`` may
    have grown).  SIGINT/SIGTERM stop the grid cleanly: running runs checkpoint and end
    as interrupted, the table is written.  Returns the table rows (with ``selected`` from
    :func:`select_irnn`).
    """
    configs = [check_config(c) for c in configs]
    names = [run_dir_name(c) for c in configs]
    seen = set()
    for n in names:
        if n in seen:
            raise SweepError(f"the grid has run {n} twice: remove the duplicate learning "
                             f"rate, optimiser or seed")
        seen.add(n)
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SweepError(f"{out_dir} is a file, not a directory")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not resume:
        raise SweepError(f"{out_dir} exists and is not empty: resume the sweep (--resume) or "
                         f"choose another output directory")
    if scheduler and scheduler != "local":
        _check_scheduler(scheduler)
    for c, n in zip(configs, names):  # before anything is written
        if runs.has_checkpoint(os.path.join(out_dir, n)):
            _check_not_fewer(os.path.join(out_dir, n), c["steps"])
    os.makedirs(out_dir, exist_ok=True)
    runs.atomic_write_json(os.path.join(out_dir, "sweep.json"), {"configs": configs})
    dirs = [os.path.abspath(os.path.join(out_dir, n)) for n in names]
    table = os.path.join(out_dir, "table.csv")
    rows = {}

    def record(name, failed=None):
        if failed is not None:   # its row (from an earlier result, if any) is not current
            _report_failure(name, failed)
            rows.pop(name, None)
        else:
            row = _row_from_dir(os.path.join(out_dir, name), name)
            if row is not None:
                rows[name] = row
        _write_table(table, select_irnn(list(rows.values())))

    for n in names:
        row = _row_from_dir(os.path.join(out_dir, n), n)
        if row is not None:
            rows[n] = row
    todo = [(c, d) for c, d, n in zip(configs, dirs, names)
            if not (n in rows and (rows[n]["status"] == "diverged" or (
                rows[n]["status"] == "finished" and rows[n]["steps"] >= c["steps"])))]
    _write_table(table, select_irnn(list(rows.values())))
    bar = None
    if progress or (progress is None and len(todo) > 1):
        from tqdm import tqdm
        bar = tqdm(total=len(configs), initial=len(configs) - len(todo), unit="run",
                   desc="sweep", dynamic_ncols=True)
    try:
        if scheduler:
            _sweep_dask(todo, scheduler, jobs, record, bar)
        else:
            _sweep_local(todo, jobs, record, bar)
    finally:
        if bar is not None:
            bar.close()
    return select_irnn([rows[n] for n in names if n in rows])


#: The settings that every run of a branch shares (:func:`branch_runs`): the problem, and
#: for SGD what the IRNN selection compares within a learning rate.
BRANCH_SHARED = ("task", "T", "data", "hidden", "batch", "init", "clip")


def branch_runs(run_dirs, out_dir, steps):
    """Copy runs (of sweeps, or of ``pathgeom train --out``) into a new sweep directory
    ``out_dir``, to be continued there to ``steps`` updates; the sources stay as they are.

    Returns the run configurations with ``steps`` set, also written to
    ``out_dir/sweep.json``: ``sweep(configs, out_dir, resume=True)`` resumes every copy
    from its checkpoint (bit for bit as if the source had been continued), and the branch
    is an ordinary sweep (``--resume``, :func:`sweep_status`, :func:`export_runs`).

    Everything is checked before anything is written: each source needs a checkpoint and
    no more than ``steps`` updates done; a diverged run is refused; the sources must agree
    on :data:`BRANCH_SHARED` (one problem; for SGD, one initialisation and clipping, so
    that the IRNN selection compares like with like); and two sources that would share a
    directory name (:func:`run_dir_name`) are refused.  ``out_dir`` must not exist or be
    empty.  The run files (:data:`pathgeom.runs.RUN_FILES`) are copied into a temporary
    directory beside ``out_dir``, which is then renamed to ``out_dir`` (into an existing
    empty ``out_dir``, its entries are moved, ``sweep.json`` last), so a failed copy
    leaves ``out_dir`` as it was.

    Each copy gets a ``branched_from.json``: ``{"source": the source's absolute path,
    "step": its checkpoint's step, "seconds": its run time so far}``.  A copy's
    ``seconds`` count on from the source's, so its own run time is ``seconds`` minus the
    recorded ``seconds`` (:func:`own_seconds`).
    """
    import shutil
    import tempfile
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise SweepError(f"{out_dir} exists and is not empty: branch into a new directory")
    if not run_dirs:
        raise SweepError("no runs to branch: give one or more run directories")
    configs, names, records, first = [], {}, {}, None
    for src in map(os.fspath, run_dirs):
        config = check_config(dict(read_run_config(src), steps=steps))
        if not runs.has_checkpoint(src):
            raise runs.RunDirError(f"{src} has no checkpoint to continue from")
        ckpt = runs.load_checkpoint(src)
        statuses = {ckpt.get("status")}
        if os.path.exists(os.path.join(src, "result.json")):
            statuses.add(runs.read_result(src)["status"])
        if "diverged" in statuses:
            raise SweepError(f"{src} diverged: there is nothing to continue")
        _check_not_fewer(src, steps)
        if first is None:
            first = (src, config)
        for key in BRANCH_SHARED:
            if config[key] != first[1][key]:
                raise SweepError(f"{first[0]} and {src} differ in {key} ({first[1][key]!r} "
                                 f"against {config[key]!r}): a branch holds runs of one "
                                 f"problem, initialisation and clipping; branch them into "
                                 f"separate sweeps")
        name = run_dir_name(config)
        if name in names:
            raise SweepError(f"{names[name]} and {src} would share the directory {name} (the "
                             f"same optimiser, learning rate and seed): branch them into "
                             f"separate sweeps")
        names[name] = src
        configs.append(config)
        records[name] = {"source": os.path.abspath(src), "step": int(ckpt["step"]),
                         "seconds": float(ckpt.get("seconds") or 0.0)}
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".branch-", dir=parent)
    try:
        for name, src in names.items():
            os.mkdir(os.path.join(tmp, name))
            for f in runs.RUN_FILES:
                if os.path.isfile(os.path.join(src, f)):
                    shutil.copy2(os.path.join(src, f), os.path.join(tmp, name, f))
            runs.atomic_write_json(os.path.join(tmp, name, "branched_from.json"),
                                   records[name])
        runs.atomic_write_json(os.path.join(tmp, "sweep.json"), {"configs": configs})
        if os.path.isdir(out_dir):   # an empty directory (perhaps the working directory)
            for name in [*names, "sweep.json"]:   # sweep.json last: then it is a sweep
                os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
        else:
            os.replace(tmp, out_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return configs


def branch_record(run_dir):
    """What a copy made by :func:`branch_runs` inherited from its source: the dict of its
    ``branched_from.json`` (``source``, ``step``, ``seconds``), or None for a run that is
    not a copy."""
    path = os.path.join(os.fspath(run_dir), "branched_from.json")
    if not os.path.isfile(path):
        return None
    return runs.read_json(path, "the record of a branched run")


def own_seconds(run_dir, seconds):
    """The run time a run spent itself: ``seconds`` (its wall time so far, as
    :func:`sweep_status` reports it) less what a copy made by :func:`branch_runs` inherited
    from its source (0 for a run that is not a copy)."""
    record = branch_record(run_dir)
    return seconds if record is None else seconds - record["seconds"]


#: The keys of a row of :func:`sweep_status`.
STATUS_COLUMNS = ("run", "method", "optimizer", "lr", "seed", "status", "step", "steps",
                  "test_metric", "seconds")


def sweep_status(sweep_dir):
    """Where every run of the sweep in ``sweep_dir`` stands, read from its files only (safe
    while the sweep runs; nothing is written).

    One dict per run of the grid, in the grid's order, with the keys
    :data:`STATUS_COLUMNS`: ``step`` is the number of updates done (from the newer of the
    run's ``result.json`` and checkpoint), ``steps`` the number the grid asks for,
    ``test_metric`` the last evaluated test metric (None before the first evaluation),
    ``seconds`` the wall time spent so far, and ``status`` one of

    ``finished``
        done, with at least ``steps`` updates;
    ``diverged``
        stopped by the divergence check (a sweep does not resume it);
    ``interrupted``
        stopped cleanly (SIGINT/SIGTERM) after some updates: a resumed sweep continues it
        from its checkpoint;
    ``running``
        a checkpoint newer than any result: the run is under way, or its process was killed
        without a clean stop (then it resumes from that checkpoint);
    ``to extend``
        finished with fewer updates than the grid now asks for (``--resume --steps``);
    ``not started``
        no updates yet.

    The files change at checkpoints only, so a run shows its state as of its last
    checkpoint (``checkpoint_every`` updates at most behind).
    """
    sweep_dir = os.fspath(sweep_dir)
    out = []
    for config in read_sweep_configs(sweep_dir):
        name = run_dir_name(config)
        run_dir = os.path.join(sweep_dir, name)
        status, step, metric, seconds = "not started", 0, None, 0.0
        if runs.has_checkpoint(run_dir):
            ckpt = runs.load_checkpoint(run_dir)
            step, seconds = ckpt["step"], ckpt.get("seconds") or 0.0
            evaluated = [h for h in ckpt["history"] if h.get("test_metric") is not None]
            metric = evaluated[-1]["test_metric"] if evaluated else None
            status = ckpt.get("status") or "running"
        if os.path.exists(os.path.join(run_dir, "result.json")):
            res = runs.read_result(run_dir)
            if res["steps"] >= step:
                status, step = res["status"], res["steps"]
                metric, seconds = res.get("test_metric"), res.get("seconds") or 0.0
        if status == "finished" and step < config["steps"]:
            status = "to extend"
        elif status in ("interrupted", "running") and step == 0:
            status = "not started"
        out.append(dict(run=name, method=method_name(config), optimizer=config["optimizer"],
                        lr=config["lr"], seed=config["seed"], status=status, step=step,
                        steps=config["steps"], test_metric=metric, seconds=seconds))
    return out


class _FileStop:
    """``should_stop`` for runs in local worker processes: true once the sweep's stop file
    exists (queued runs then do not start; running ones checkpoint and end)."""

    def __init__(self, path):
        self.path = path

    def __call__(self):
        return os.path.exists(self.path)


def _sweep_local(todo, jobs, record, bar):
    jobs = jobs or os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    stop_file = os.path.join(os.path.dirname(todo[0][1]), ".stop") if todo else None
    if stop_file and os.path.exists(stop_file):
        os.remove(stop_file)
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                                initializer=_ignore_sigint_until_run) as pool:
        futures = {pool.submit(_sweep_job, c, d, _FileStop(stop_file)): d for c, d in todo}

        def stop(signum, frame):
            # the running runs see the stop file after their current step; the workers are
            # never signalled (one that died idle would leave the pool's queue locked)
            stopping.set()
            with open(stop_file, "w"):
                pass
            for f in futures:
                f.cancel()

        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, stop)
        try:
            for f in cf.as_completed(futures):
                if f.cancelled():
                    continue
                if f.exception() is not None:
                    record(os.path.basename(futures[f]), failed=f.exception())
                    continue
                record(os.path.basename(futures[f]))
                if bar is not None:
                    bar.update(1)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
    if stop_file and os.path.exists(stop_file):
        os.remove(stop_file)


def _report_failure(run_dir, exc):
    """A run that raised: named on stderr; the sweep goes on (the run keeps its checkpoint
    and is retried by --resume)."""
    import sys
    print(f"pathgeom sweep: run {os.path.basename(run_dir)} failed: "
          f"{type(exc).__name__}: {exc}", file=sys.stderr)


def _ignore_sigint_until_run():
    """Worker initializer: during a run, the run's own handler (installed by train) takes
    SIGINT and SIGTERM as a request to stop; before and between runs a worker ignores
    both, which a Ctrl-C (or a SIGTERM to the process group) sends to the workers too: the
    sweep process stops the grid."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _local_cluster(jobs):
    """The ``LocalCluster`` of ``--scheduler local``: ``jobs`` single-threaded worker
    processes (default: one per CPU) that leave stop signals to the sweep and run without
    Dask's ``MALLOC_TRIM_THRESHOLD_`` (:func:`pathgeom._dask.training_worker_config`)."""
    from distributed import LocalCluster
    from ._dask import IgnoreStopSignals, training_worker_config
    with training_worker_config():
        return LocalCluster(n_workers=jobs or os.cpu_count() or 1, threads_per_worker=1,
                            processes=True, dashboard_address=None,
                            plugins={IgnoreStopSignals()})


#: Seconds to wait for a Dask scheduler's TCP port before a sweep is refused.
SCHEDULER_TIMEOUT = 5.0


def _check_scheduler(address):
    """Refuse (SweepError naming it) a Dask scheduler address that is malformed or whose
    TCP port does not answer within :data:`SCHEDULER_TIMEOUT` seconds, before anything is
    written (Dask itself would retry for 30 seconds and end in a traceback)."""
    import socket
    from urllib.parse import urlsplit
    if not isinstance(address, str) or not address.strip():
        raise SweepError(f"--scheduler {address!r} is not a Dask scheduler address (e.g. "
                         f"tcp://host:8786) or 'local'")
    text = address if "://" in address else f"tcp://{address}"
    parts = urlsplit(text)
    if parts.scheme not in ("tcp", "tls"):
        return   # inproc://, ucx://, ...: left to Dask
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise SweepError(f"--scheduler {address!r} is not a Dask scheduler address: expected "
                         f"tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786) or 'local'")
    try:
        sock = socket.create_connection((host, port), timeout=SCHEDULER_TIMEOUT)
    except OSError as exc:
        raise SweepError(f"no Dask scheduler answers at {address} ({exc.strerror or exc}); "
                         f"start one (dask scheduler) or use --scheduler local") from None
    if parts.scheme == "tcp":
        # a Dask server sends its handshake first: 8 bytes, the little-endian length of a
        # small message.  Anything else (an HTTP server, a proxy) is not a scheduler, and
        # Dask would read its bytes as a length and try to allocate that much.
        with sock:
            try:
                head = b""
                while len(head) < 8:
                    chunk = sock.recv(8 - len(head))
                    if not chunk:
                        break
                    head += chunk
            except OSError:
                head = b""
        n = int.from_bytes(head, "little") if len(head) == 8 else None
        if n is None or n > 1 << 26:
            raise SweepError(f"the server at {address} does not speak Dask's protocol (it "
                             f"sent no Dask handshake within {SCHEDULER_TIMEOUT:g} s); give "
                             f"the address of a Dask scheduler (dask scheduler prints it) or "
                             f"use --scheduler local")
    else:
        sock.close()


def _sweep_dask(todo, scheduler, jobs, record, bar):
    try:
        from distributed import Client, Event, as_completed
    except ImportError:
        raise ImportError("--scheduler needs dask.distributed: pip install "
                          "'pathgeom[dask]'") from None
    cluster = None
    if scheduler == "local":
        cluster = _local_cluster(jobs)
        scheduler = cluster
    name = f"pathgeom-sweep-stop-{os.getpid()}-{time.time_ns()}"
    try:
        with Client(scheduler) as client:
            event = Event(name, client=client)
            stop = _DaskStop(name)
            futures = [client.submit(_sweep_job, c, d, stop, pure=False, key=f"run-{i}-{name}")
                       for i, (c, d) in enumerate(todo)]

            def on_signal(signum, frame):
                event.set()

            old = {}
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    old[sig] = signal.signal(sig, on_signal)
            try:
                for f in as_completed(futures):
                    if f.status == "error":
                        record(os.path.basename(todo[futures.index(f)][1]),
                               failed=f.exception())
                        continue
                    if f.status != "finished":
                        continue
                    record(f.result())
                    if bar is not None:
                        bar.update(1)
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)
    finally:
        if cluster is not None:
            cluster.close()


def grid(base, optimizers, lrs, seeds, irnn_inits=1):
    """The run configurations of a grid: every optimiser x learning rate x seed; with
    ``irnn_inits > 1`` the SGD (IRNN) runs get that many initialisations per cell (seeds
    ``seed * 1000 + k``), all scored on the seed's data (``data_seed``)."""
    configs = []
    for opt, lr, seed in itertools.product(optimizers, lrs, seeds):
        if opt == "sgd" and irnn_inits > 1:
            for k in range(irnn_inits):
                configs.append(dict(base, optimizer=opt, lr=lr, seed=seed * 1000 + k,
                                    data_seed=seed))
        else:
            configs.append(dict(base, optimizer=opt, lr=lr, seed=seed, data_seed=seed))
    return configs


# ---------------------------------------------------------------------------- evidence

#: The columns of an exported results table (``export_table``).
EXPORT_COLUMNS = ("T", "method", "lr", "steps", "test_mse", "run")


def method_name(config):
    """The name of a run's method in a results table: ``path-sgd``, ``path-adam``, or for
    SGD its initialisation (``irnn``, ``np-rnn``, ...)."""
    if config["optimizer"] == "sgd":
        return config["init"]
    return config["optimizer"]


def export_runs(sweep_dir, dest, keep_every=1000, repo_root=None):
    """Copy the selected runs of ``sweep_dir`` that finished into ``dest`` as small evidence:
    ``result.json``, ``params.npz`` and a thinned ``history.csv`` (the rows at multiples of
    ``keep_every`` and every evaluation); return one table row per run (``EXPORT_COLUMNS``
    plus ``test_metric``), ``run`` relative to ``repo_root`` (default: ``dest``'s parent's
    parent's ... the current directory).  The sweep's own ``table.csv`` (every run, the
    diverged and unfinished ones included, with status, losses and wall time) is copied
    beside them as ``dest/all-runs.csv``."""
    import csv
    import io
    import shutil
    sweep_dir, dest = os.fspath(sweep_dir), os.fspath(dest)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise SweepError(f"{dest} is a file, not a directory: export into a directory")
    real_sweep, real_dest = os.path.realpath(sweep_dir), os.path.realpath(dest)
    if os.path.commonpath([real_sweep, real_dest]) in (real_sweep, real_dest):
        raise SweepError(f"cannot export {sweep_dir} into {dest}: one lies inside the other "
                         f"(the copies would overwrite their sources); choose a destination "
                         f"outside the sweep")
    names = [run_dir_name(c) for c in read_sweep_configs(sweep_dir)]
    rows = [r for r in (_row_from_dir(os.path.join(sweep_dir, n), n) for n in names)
            if r is not None]
    out = []
    os.makedirs(dest, exist_ok=True)
    table = os.path.join(sweep_dir, "table.csv")
    if os.path.exists(table):
        shutil.copyfile(table, os.path.join(dest, "all-runs.csv"))
    for r in select_irnn(rows):
        if not r["selected"] or r["status"] != "finished" or r["test_loss"] is None:
            continue  # diverged runs are reported in the text; unfinished ones are not results
        src = os.path.join(sweep_dir, r["run"])
        config = read_run_config(src)
        target = os.path.join(dest, r["run"])
        os.makedirs(target, exist_ok=True)
        for name in ("result.json", "params.npz", "run.json"):
            shutil.copyfile(os.path.join(src, name), os.path.join(target, name))
        history = runs.read_history(src)
        kept = [h for h in history if h["step"] % keep_every == 0
                or h.get("test_loss") is not None or h is history[-1]]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(("step", "train_loss", "test_loss", "test_metric"))
        for h in kept:
            w.writerow([h["step"]] + ["" if h.get(k) is None else repr(float(h[k]))
                                      for k in ("train_loss", "test_loss", "test_metric")])
        runs.atomic_write_text(os.path.join(target, "history.csv"), buf.getvalue())
        rel = os.path.relpath(target, repo_root or os.getcwd())
        T = config["T"]
        if T is None:  # digits: the sequence length is the trained model's
            T = runs.load_params(os.path.join(target, "params.npz"))[0].T
        out.append(dict(T=T, method=method_name(config), lr=config["lr"],
                        steps=r["steps"], test_mse=r["test_loss"], run=rel,
                        test_metric=r["test_metric"], status=r["status"],
                        requested=config["steps"]))
    return out


def write_export_table(path, rows, columns=EXPORT_COLUMNS):
    """``rows`` (from :func:`export_runs`) as CSV with full-precision numbers."""
    lines = [",".join(columns)]
    for r in sorted(rows, key=lambda r: (r["T"], r["method"], -r["lr"])):
        lines.append(",".join(repr(r[c]) if isinstance(r[c], float) else str(r[c])
                              for c in columns))
    runs.atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- the paper's figure 2


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


# ---------------------------------------------------------------------------- the demo race

#: (optimizer, learning rates tried) in the demo's adding-problem race; the best rate of each
#: optimiser (lowest final test loss) is kept.  Path-SGD uses its default step-size rule
#: (backtracking on the calibrated step), so its rates mean what they mean for SGD.  One rate
#: each keeps the demo short: the one that did best in a grid of {1e-2, 1e-3} at T = 30,
#: H = 32, 8,000 steps (SGD 1e-2 ended at 1.21, Path-SGD 1e-3 at 0.183).
RACE = (("sgd", (1e-3,)), ("path-sgd", (1e-2,)), ("path-adam", (1e-3,)))


def adding_race(T, H, steps, seed, out, err, plot=os.path.join("build", "demo", "demo-race.png")):
    """A short adding-problem race: SGD (IRNN), Path-SGD (kappa1, default rule) and
    path-Adam from the same
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
        if os.path.dirname(plot):
            os.makedirs(os.path.dirname(plot), exist_ok=True)
        plot_histories({f"{n} lr={v[1]:g}": v[2].history for n, v in best.items()}, plot,
                        err, title=f"adding problem, T = {T}, H = {H}",
                        baseline=task.baseline)
        if os.path.exists(plot):
            print(f"learning curves: {plot}", file=out)
    return best
