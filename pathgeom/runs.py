"""Run directories: the files a training run writes, atomically, and reads back to resume.

A run directory holds

========================  ==============================================================
``checkpoint.npz``        everything a run needs to continue bit for bit: the parameters
                          and the ones one update before, the step, the random generator's
                          state, the optimiser's state, the history so far, the run's
                          configuration and its divergence bound.  Written every
                          ``checkpoint_every`` steps, on SIGINT/SIGTERM and at the end.
``result.json``           how the run ended: ``status`` (``"finished"``, ``"diverged"`` or
                          ``"interrupted"``), ``diverged``, ``test_loss``,
                          ``test_metric``, ``valid_loss``, ``message``, ``steps``,
                          ``resumed_from``, ``seconds``, ``config``.  Written at the end.
``params.npz``            the parameters ``p`` (the last good ones after a divergence) and
                          the model's configuration (:func:`load_params`).
``history.csv``           the learning curve: ``step, train_loss, test_loss, test_metric``
``history.json``          (the same rows), rewritten with every checkpoint.
``run.json``              the command line's configuration (``pathgeom train``), from
                          which ``pathgeom train --resume DIR`` rebuilds the run.
========================  ==============================================================

Every file is written to a temporary name in the same directory and moved into place with
:func:`os.replace`, so a reader (or a crash) never sees half a file.
"""

import csv
import io
import json
import os
import shutil
import zipfile

import numpy as np

from ._json import jsonable
from ._npzcheck import npz_shapes
from .constructors.rnn import RNN

__all__ = ["RunDirError", "RUN_FILES", "prepare_run_dir", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_json", "save_checkpoint", "load_checkpoint",
           "has_checkpoint", "write_history", "read_history", "write_result", "read_result",
           "read_json", "save_params", "load_params", "model_config", "jsonable",
           "check_checkpoint_meta", "run_identity"]

#: The files of a run directory (``--overwrite`` removes exactly these).
RUN_FILES = ("checkpoint.npz", "result.json", "params.npz", "history.csv", "history.json",
             "run.json", "curve.png", "branched_from.json")

#: The largest parameter vector :func:`load_params` accepts from a file (2**28 = 268M
#: parameters, 2 GiB of float64): a crafted file cannot make it allocate more.
MAX_PARAMS = 2 ** 28


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (it exists, is a file, is damaged)."""


# ---------------------------------------------------------------------------- atomic files


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file and :func:`os.replace`
    (:func:`pathgeom._files.atomic_write_bytes`: a target that is not a regular file is
    refused, a failed write leaves the old file and raises an OSError naming the file)."""
    from ._files import atomic_write_bytes as write
    write(path, data)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, indent=1):
    """Write ``obj`` as strict JSON (non-finite floats as null) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n")


def _savez_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_json(path, what="file"):
    """The JSON in ``path``; a :class:`RunDirError` naming the file when it is missing or
    damaged."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise RunDirError(f"{path} not found ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is damaged: not valid JSON ({exc})") from None


# ---------------------------------------------------------------------------- the directory


def prepare_run_dir(out_dir, resume=False, overwrite=False, create=True):
    """Check ``out_dir`` before any work and (with ``create``) create it.

    A path that is a file is refused; an existing directory that is not empty is refused
    unless ``resume`` (continue it) or ``overwrite`` (remove its :data:`RUN_FILES` first).
    Returns the path as a string.
    """
    out_dir = os.fspath(out_dir)
    if resume and overwrite:
        raise RunDirError("choose one of resume and overwrite, not both")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RunDirError(f"{out_dir} is a file, not a directory: choose another output "
                          f"directory")
    if resume:
        if not has_checkpoint(out_dir):
            raise RunDirError(f"{out_dir} holds no checkpoint.npz to resume from: start the "
                              f"run without resume (or with overwrite)")
        return out_dir
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise RunDirError(f"{out_dir} exists and is not empty: resume it (--resume "
                              f"{out_dir}), replace its run files (--overwrite) or choose "
                              f"another output directory")
        if not create:
            return out_dir
        for name in RUN_FILES:
            target = os.path.join(out_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
    if create:
        os.makedirs(out_dir, exist_ok=True)
    return out_dir


def has_checkpoint(out_dir):
    """Whether ``out_dir`` holds a checkpoint to resume from."""
    return os.path.isfile(os.path.join(os.fspath(out_dir), "checkpoint.npz"))


# ---------------------------------------------------------------------------- checkpoints


def save_checkpoint(out_dir, ckpt):
    """Write ``ckpt`` (a dict: float64 arrays ``p``, ``prev``; ``opt_state``, a dict of
    arrays, numbers and None; everything else JSON-able) to ``out_dir/checkpoint.npz``."""
    arrays = {"p": np.asarray(ckpt["p"], dtype=np.float64),
              "prev": np.asarray(ckpt["prev"], dtype=np.float64)}
    opt_meta = {}
    for k, v in ckpt["opt_state"].items():
        if isinstance(v, np.ndarray):
            arrays[f"opt.{k}"] = v
        else:
            opt_meta[k] = v
    meta = {k: v for k, v in ckpt.items() if k not in ("p", "prev", "opt_state")}
    meta["opt_meta"] = opt_meta
    meta.setdefault("identity", run_identity(out_dir))
    arrays["meta"] = np.array(json.dumps(jsonable(meta), allow_nan=False))
    atomic_write_bytes(os.path.join(out_dir, "checkpoint.npz"), _savez_bytes(**arrays))


#: The largest ``meta`` entry (JSON text) :func:`load_checkpoint` reads: 256 MiB of UCS-4.
MAX_META_CHARS = 1 << 26

_STATUSES = (None, "finished", "diverged", "interrupted")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    import math
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_checkpoint_meta(meta, n_params, path):
    """Refuse (:class:`RunDirError` naming ``path`` and the entry) checkpoint metadata that
    :func:`save_checkpoint` cannot have written: the one validator of a checkpoint's
    ``meta`` before a run resumes from it.

    Checked: ``step`` an integer >= 0; ``history`` a list of rows, each a dict with an
    integer ``step`` between 0 and ``step`` and numbers or null for the losses;
    ``window`` ``[sum, count]``; ``seconds`` a number >= 0; the test losses numbers or
    null (the initial one a number); ``status`` one of null, finished, diverged,
    interrupted; ``resumed_from`` null or an integer <= ``step``; ``rng_state`` a state
    numpy's generator accepts; ``config`` a dict; ``opt_meta`` a dict of numbers and null.
    """
    def bad(what):
        raise RunDirError(f"{path} is damaged: {what}; start the run again with --overwrite "
                          f"(or resume from an intact copy)")
    if not isinstance(meta, dict):
        bad(f"its metadata is a JSON {type(meta).__name__}, not an object")
    required = ("step", "history", "window", "seconds", "initial_test_loss", "test_loss",
                "test_metric", "status", "resumed_from", "rng_state", "config", "opt_meta")
    missing = [k for k in required if k not in meta]
    if missing:
        bad(f"its metadata has no {', '.join(missing)}")
    step = meta["step"]
    if not _is_int(step) or step < 0 or step > 1 << 62:
        bad(f"step = {step!r} is not an integer >= 0")
    hist = meta["history"]
    if not isinstance(hist, list):
        bad(f"history is a {type(hist).__name__}, not a list of rows")
    for j, row in enumerate(hist):
        if not isinstance(row, dict) or not _is_int(row.get("step")) \
                or not 0 <= row["step"] <= step:
            bad(f"history[{j}] = {str(row)[:80]} is not a row with an integer step between "
                f"0 and {step}")
        for k in ("train_loss", "test_loss", "test_metric"):
            if row.get(k) is not None and not _is_num(row[k]):
                bad(f"history[{j}][{k!r}] = {row[k]!r} is not a number or null")
    w = meta["window"]
    if not (isinstance(w, list) and len(w) == 2 and _is_num(w[0]) and _is_int(w[1])
            and w[1] >= 0):
        bad(f"window = {str(w)[:80]} is not [sum, count]")
    if not _is_num(meta["seconds"]) or meta["seconds"] < 0:
        bad(f"seconds = {meta['seconds']!r} is not a number >= 0")
    if not _is_num(meta["initial_test_loss"]):
        bad(f"initial_test_loss = {meta['initial_test_loss']!r} is not a number")
    for k in ("test_loss", "test_metric"):
        if meta[k] is not None and not _is_num(meta[k]):
            bad(f"{k} = {meta[k]!r} is not a number or null")
    if meta["status"] not in _STATUSES:
        bad(f"status = {str(meta['status'])[:80]!r} is not one of {list(_STATUSES)}")
    rf = meta["resumed_from"]
    if rf is not None and (not _is_int(rf) or not 0 <= rf <= step):
        bad(f"resumed_from = {rf!r} is not null or an integer between 0 and {step}")
    if not isinstance(meta["config"], dict):
        bad(f"config is a {type(meta['config']).__name__}, not an object")
    om = meta["opt_meta"]
    if not isinstance(om, dict) or not all(v is None or _is_num(v) for v in om.values()):
        bad(f"opt_meta = {str(om)[:80]} is not an object of numbers and nulls")
    rs = meta["rng_state"]
    try:
        if not isinstance(rs, dict) or rs.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        np.random.default_rng().bit_generator.state = rs
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        bad(f"rng_state = {str(rs)[:80]} is not a random generator state ({exc})")
    return meta


def _check_members(path, shapes):
    """The arrays of a checkpoint, checked from their headers before any is read."""
    def bad(what):
        raise RunDirError(f"{path} is damaged: {what}; start the run again with --overwrite")
    for name in ("p", "prev", "meta"):
        if name not in shapes:
            bad(f"it has no array {name!r} (it holds {sorted(shapes)})")
    (sp, dp), (sq, dq) = shapes["p"], shapes["prev"]
    for name, (sh, dt) in (("p", shapes["p"]), ("prev", shapes["prev"])):
        if len(sh) != 1 or dt.kind != "f" or sh[0] > MAX_PARAMS:
            bad(f"{name!r} has shape {sh} and dtype {dt}, not a float vector of at most "
                f"{MAX_PARAMS:,} parameters")
    if sp != sq:
        bad(f"'p' has shape {sp} but 'prev' {sq}")
    sm, dm = shapes["meta"]
    if sm != () or dm.kind != "U" or dm.itemsize // 4 > MAX_META_CHARS:
        bad(f"'meta' has shape {sm} and dtype {dm}, not one JSON text of at most "
            f"{MAX_META_CHARS:,} characters")
    for name, (sh, dt) in shapes.items():
        if name.startswith("opt."):
            if dt.kind not in "fiub" or len(sh) > 1 or (sh and sh != sp):
                bad(f"optimiser state {name[4:]!r} has shape {sh} and dtype {dt}; expected "
                    f"a number or a float vector like 'p' {sp}")
        elif name not in ("p", "prev", "meta"):
            bad(f"it holds an unexpected array {name!r}")
    return sp[0]


def run_identity(out_dir):
    """What identifies the run in ``out_dir``: the configuration in its ``run.json`` less
    ``steps`` (which a resume may extend), or None when it has no readable one."""
    try:
        with open(os.path.join(os.fspath(out_dir), "run.json"), encoding="utf-8") as fh:
            config = json.load(fh).get("config")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(config, dict):
        return None
    return {k: v for k, v in config.items() if k != "steps"}


def _check_identity(out_dir, path, stored):
    """Refuse a checkpoint written by another run than the one ``out_dir/run.json``
    describes (copied from a run with another seed, say)."""
    current = run_identity(out_dir)
    if not isinstance(stored, dict) or current is None or stored == current:
        return
    keys = sorted(set(stored) | set(current), key=str)
    k = next(k for k in keys if stored.get(k) != current.get(k))
    raise RunDirError(f"{path} was written by another run: its {k} is {stored.get(k)!r} but "
                      f"{os.path.join(os.fspath(out_dir), 'run.json')} says "
                      f"{current.get(k)!r}; resume a run only from its own checkpoint (or "
                      f"start this one again with --overwrite)")


def load_checkpoint(out_dir):
    """The dict :func:`save_checkpoint` wrote (``opt_state`` rebuilt), checked first.

    Every array's declared shape is checked from its header before it is read (a crafted
    file cannot make this allocate), then the metadata with
    :func:`check_checkpoint_meta`; a damaged file raises :class:`RunDirError` naming it.
    """
    path = os.path.join(os.fspath(out_dir), "checkpoint.npz")
    if not os.path.exists(path):
        raise RunDirError(f"{path} not found: nothing to resume")
    if not os.path.isfile(path):
        raise RunDirError(f"{path} is not a regular file: nothing to resume from")
    try:
        n = _check_members(path, npz_shapes(path))
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            check_checkpoint_meta(meta, n, path)
            ckpt = dict(meta, p=np.array(f["p"]), prev=np.array(f["prev"]))
            opt_state = dict(meta.pop("opt_meta"))
            for name in f.files:
                if name.startswith("opt."):
                    opt_state[name[4:]] = np.array(f[name])
    except RunDirError:
        raise
    except RecursionError:
        raise RunDirError(f"{path} is damaged: its metadata is nested too deeply to be a "
                          f"checkpoint; start the run again with --overwrite") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile,
            json.JSONDecodeError) as exc:
        raise RunDirError(f"{path} is damaged ({exc}); start the run again with "
                          f"--overwrite") from None
    for name in ("p", "prev"):
        if not np.isfinite(ckpt[name]).all():
            raise RunDirError(f"{path} is damaged: {name!r} holds non-finite values")
    _check_identity(out_dir, path, ckpt.pop("identity", None))
    ckpt.pop("opt_meta", None)
    ckpt["opt_state"] = opt_state
    return ckpt


# ---------------------------------------------------------------------------- history, result

_HISTORY_KEYS = ("step", "train_loss", "test_loss", "test_metric")


def write_history(out_dir, rows):
    """``history.csv`` and ``history.json`` (atomically) from the history rows."""
    clean = [{k: (jsonable(h.get(k)) if k != "step" else int(h["step"])) for k in _HISTORY_KEYS}
             for h in rows]
    atomic_write_json(os.path.join(out_dir, "history.json"), clean, indent=None)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_HISTORY_KEYS)
    for h in clean:
        w.writerow([h["step"]] + ["" if h[k] is None else repr(float(h[k]))
                                  for k in _HISTORY_KEYS[1:]])
    atomic_write_text(os.path.join(out_dir, "history.csv"), buf.getvalue())


def read_history(out_dir):
    """The history rows of a run directory (``history.json``, else ``history.csv``)."""
    path = os.path.join(os.fspath(out_dir), "history.json")
    if os.path.exists(path):
        rows = read_json(path, "the learning curve of a run")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "step" in r
                                                 for r in rows):
            raise RunDirError(f"{path} is damaged: expected a list of rows with 'step'")
        return rows
    path = os.path.join(os.fspath(out_dir), "history.csv")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: (int(v) if k == "step" else float(v) if v != "" else None)
                     for k, v in row.items()} for row in csv.DictReader(fh)]
    except FileNotFoundError:
        raise RunDirError(f"{out_dir} holds no history.json or history.csv: is it a run "
                          f"directory written by pathgeom train?") from None
    except (ValueError, TypeError) as exc:
        raise RunDirError(f"{path} is damaged ({exc})") from None


def write_result(out_dir, result):
    """``result.json`` (atomically)."""
    atomic_write_json(os.path.join(out_dir, "result.json"), result)


def read_result(out_dir):
    """The ``result.json`` of a run directory, checked for the keys every result has."""
    path = os.path.join(os.fspath(out_dir), "result.json")
    result = read_json(path, "the result of a run")
    missing = [k for k in ("status", "test_loss", "steps") if not isinstance(result, dict)
               or k not in result]
    if missing:
        raise RunDirError(f"{path} is damaged: it has no {', '.join(missing)}")
    return result


# ---------------------------------------------------------------------------- parameters


def model_config(model):
    """The configuration that rebuilds ``model`` (an RNN), or its class name."""
    if isinstance(model, RNN):
        return dict(kind="rnn", n_in=model.n_in, hidden=list(model.hidden),
                    n_out=model.n_out, T=model.T, outputs=model.outputs, bias=model.bias)
    return dict(kind=type(model).__name__)


def _npz_path(path):
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def save_params(path, model, p):
    """Save ``p`` and the configuration of ``model`` (an RNN) to ``path`` atomically.

    As with :func:`numpy.savez`, ``.npz`` is appended to a path without it; the path
    written is returned.  For models other than an RNN only ``p`` and the class name are
    stored (:func:`load_params` then refuses to rebuild).
    """
    config = model_config(model)
    arrays = {k: np.asarray(v) for k, v in config.items()}
    path = _npz_path(path)
    atomic_write_bytes(path, _savez_bytes(p=np.asarray(p, dtype=np.float64), **arrays))
    return path


def _field(f, name, path):
    if name not in f.files:
        raise RunDirError(f"{path} has no '{name}' (it holds {sorted(f.files)}); it is not a "
                          f"params.npz written by pathgeom")
    return f[name]


def load_params(path):
    """``(model, p)`` from a ``params.npz`` written by :func:`pathgeom.training.train` or
    :func:`save_params` (``.npz`` is appended to a path without it when that file exists).

    Damaged or foreign files raise :class:`RunDirError` naming the file and what is wrong;
    sizes are checked before anything is allocated.

    Examples
    --------
    >>> import os, tempfile, numpy as np, pathgeom
    >>> from pathgeom.runs import save_params, load_params
    >>> net = pathgeom.rnn(2, [3, 4], 1, T=5, outputs="all", bias=True)
    >>> p = net.init(np.random.default_rng(0))
    >>> path = save_params(os.path.join(tempfile.mkdtemp(), "params"), net, p)
    >>> os.path.basename(path)
    'params.npz'
    >>> net2, p2 = load_params(path[:-4])
    >>> net2, bool(np.array_equal(p2, p))
    (RNN(n_in=2, hidden=[3, 4], n_out=1, T=5, outputs='all', bias=True), True)
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RunDirError(f"{path} not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunDirError(f"{path} is not a readable .npz file ({exc})") from None
    if not hasattr(f, "files"):
        raise RunDirError(f"{path} holds a single array, not a params.npz written by pathgeom "
                          f"(expected the fields p, kind, ...)")
    with f:
        try:
            kind = str(_field(f, "kind", path))
            if kind != "rnn":
                raise RunDirError(f"{path} holds the parameters of a {kind}, which "
                                  f"load_params cannot rebuild; build the model yourself and "
                                  f"use np.load(path)['p']")
            sizes = {k: np.atleast_1d(_field(f, k, path)) for k in
                     ("n_in", "hidden", "n_out", "T")}
            for k, v in sizes.items():
                if v.dtype.kind not in "iu" or v.size == 0 or (v < 1).any() \
                        or (v > MAX_PARAMS).any() or (k != "hidden" and v.size != 1):
                    raise RunDirError(f"{path}: '{k}' = {v.tolist()} is not a valid size")
            n_in, n_out, T = (int(sizes[k][0]) for k in ("n_in", "n_out", "T"))
            hidden = [int(h) for h in sizes["hidden"]]
            widths = [n_in] + hidden
            n_params = sum(a * b + b * b for a, b in zip(widths[:-1], hidden)) \
                + hidden[-1] * n_out
            if n_params > MAX_PARAMS or T > MAX_PARAMS:
                raise RunDirError(f"{path}: an RNN with n_in={n_in}, hidden={hidden}, "
                                  f"n_out={n_out}, T={T} is larger than load_params accepts")
            if "p" not in f.files:
                _field(f, "p", path)
            outputs = str(_field(f, "outputs", path))
            if outputs not in ("last", "all"):
                raise RunDirError(f"{path}: outputs = {outputs!r} is not 'last' or 'all'")
            net = RNN(n_in, hidden, n_out, T, outputs=outputs,
                      bias=bool(_field(f, "bias", path)))
            shape, dtype = npz_shapes(path)["p"]  # headers only: nothing allocated yet
            if shape != (net.n_params,) or dtype.kind != "f":
                raise RunDirError(f"{path}: p has shape {shape} and dtype {dtype} but the "
                                  f"stored RNN has {net.n_params} float parameters")
            p = np.array(f["p"], dtype=np.float64)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, RunDirError):
                raise
            raise RunDirError(f"{path} is damaged ({exc})") from None
    if not np.isfinite(p).all():
        i = int(np.flatnonzero(~np.isfinite(p))[0])
        raise RunDirError(f"{path}: p[{i}] = {p[i]} is not finite")
    return net, p
