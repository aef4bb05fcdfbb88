"""Robustness fuzz of issue 24, by hand: bad and extreme inputs over the seven classes, each
outcome classified.

    python tests/fuzz_robustness.py                 # every class, about 700 inputs
    python tests/fuzz_robustness.py --classes 1 5   # some classes
    python tests/fuzz_robustness.py --seed 3 --scale 2 --json fuzz.json

Classes (issue 24): 1 silent wrong numbers, 2 damaged run files, 3 sizes that cannot fit,
4 files and file systems, 5 ONNX files that are not what they claim, 6 messages that
mislead, 7 signals and services.  Each input ends in one of

* ``typed``     -- a typed error (or CLI exit 2 / 1 with a message) that names the culprit;
* ``right``     -- an answer checked independently (exact rationals, a re-read file, ...);
* ``silent``    -- a wrong answer, or success where a refusal was due, or a misleading message;
* ``traceback`` -- an untyped exception or a traceback on stderr;
* ``oversized`` -- a MemoryError (or the CLI's out-of-memory net): an allocation was tried
  beyond what the process may use.

The process runs under an address-space limit (``RLIMIT_AS``, its size now + 4 GiB), so
that an estimate that is too low shows up as ``oversized`` instead of swapping.  Not part
of the default test run (it takes minutes); ``tests/test_robustness_issue24.py`` holds the
per-class regression tests.
"""

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from fractions import Fraction

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTCOMES = ("typed", "right", "silent", "traceback", "oversized")
# exceptions that count as typed: pathgeom's own and the standard "bad argument" ones
TYPED = (ValueError, TypeError, OverflowError, FileNotFoundError, ImportError)


class Case:
    """One input: ``run()`` returns an outcome and a short note."""

    def __init__(self, cls, name, fn):
        self.cls, self.name, self.fn = cls, name, fn


def _outcome_of_exception(exc, names=()):
    if isinstance(exc, MemoryError):
        return "oversized", f"MemoryError: {exc}"
    import pathgeom
    typed = isinstance(exc, TYPED) and type(exc).__module__ != "numpy" and \
        not type(exc).__name__.startswith("_")
    if isinstance(exc, OverflowError) and not isinstance(exc, pathgeom.PathOverflowError):
        typed = False   # a raw int/float conversion overflow
    if not typed:
        return "traceback", f"{type(exc).__name__}: {exc}"[:200]
    msg = str(exc)
    if names and not any(n in msg for n in names):
        return "silent", f"typed but does not name {names}: {msg[:160]}"
    return "typed", f"{type(exc).__name__}: {msg[:120]}"


def expect_error(fn, *names):
    """An API call that must raise a typed error naming one of ``names``."""
    def run():
        try:
            value = fn()
        except BaseException as exc:   # noqa: BLE001 -- classified
            if isinstance(exc, KeyboardInterrupt):
                raise
            return _outcome_of_exception(exc, names)
        return "silent", f"no error; returned {str(value)[:120]}"
    return run


def expect_value(fn, check, errors_ok=()):
    """An API call whose value ``check`` judges (True: right); a typed error naming one of
    ``errors_ok`` is accepted too (``typed``)."""
    def run():
        try:
            value = fn()
        except BaseException as exc:   # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            out, note = _outcome_of_exception(exc, errors_ok or ("\0",))
            return out, note
        ok, note = check(value)
        return ("right" if ok else "silent"), note
    return run


def cli(argv):
    """``pathgeom argv`` in this process: (status, stdout, stderr, exception)."""
    from pathgeom import cli as _cli
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            status = _cli.main(argv, out=out, err=err)
        return status, out.getvalue(), err.getvalue(), None
    except SystemExit as exc:   # argparse
        return exc.code, out.getvalue(), err.getvalue(), None
    except BaseException as exc:   # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        return None, out.getvalue(), err.getvalue(), exc


def expect_cli(argv, codes=(2,), names=(), check=None):
    """A command that must end with one of ``codes`` and a message naming one of
    ``names``; ``check()`` (optional) judges the files it left."""
    def run():
        status, out, err, exc = cli(argv() if callable(argv) else argv)
        if exc is not None:
            return _outcome_of_exception(exc)[0] if isinstance(exc, MemoryError) else \
                "traceback", f"{type(exc).__name__}: {str(exc)[:160]}"
        if "out of memory" in err or "Unable to allocate" in err or "MemoryError" in err:
            return "oversized", err.strip()[:160]
        if "Traceback" in err:
            return "traceback", err.strip()[-160:]
        if status not in codes:
            return "silent", f"exit {status} (expected {codes}): {(err or out).strip()[:160]}"
        if names and not any(n in err for n in names):
            return "silent", f"exit {status}, message does not name {names}: {err.strip()[:160]}"
        if check is not None:
            ok, note = check()
            if not ok:
                return "silent", note
        return ("typed" if status else "right"), (err or out).strip()[:120]
    return run


# ------------------------------------------------------------------------ class 1: numbers


def _close(a, b, rtol=1e-12):
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= rtol * np.abs(b) + 4 * 2.0 ** -1074))


def _exact(fn):
    """float() of an exact Fraction result, or 'overflow'."""
    try:
        v = fn()
        return [float(x) for x in v] if isinstance(v, list) else float(v)
    except OverflowError:
        return "overflow"


def _random_graph(rng):
    import pathgeom
    L = int(rng.integers(2, 9))
    nodes = ["x0", "x1"] + [f"h{i}" for i in range(L)] + ["y"]
    P = int(rng.integers(1, 5))
    edges = []
    for j, v in enumerate(nodes[2:]):
        preds = nodes[:j + 2]
        k = min(len(preds), int(rng.integers(1, 3)))
        for u in rng.choice(preds, size=k, replace=False):
            if rng.random() < 0.15:   # a fixed weight, extreme sometimes
                w = float(rng.choice([-1.0, 1.0]) * 2.0 ** rng.uniform(-300, 300)) \
                    if rng.random() < 0.5 else float(rng.choice([1.0, -1.0, 0.5, 2.0]))
                edges.append((str(u), v, pathgeom.fixed(w)))
            else:
                edges.append((str(u), v, int(rng.integers(P))))
    return pathgeom.SharedGraph.from_edges(edges, ["x0", "x1"], ["y"], n_params=P)


def class1(rng, n):
    import pathgeom
    from pathgeom import reference
    cases = []

    def quantities_case(g, p):
        def run():
            exp_g = _exact(lambda: reference.gamma2(g, p))
            exp_k = _exact(lambda: list(reference.kappa(g, p)))
            try:
                r = pathgeom.path_quantities(g, p)
                g2 = pathgeom.gamma2(g, p)
            except pathgeom.PathOverflowError as exc:
                if exp_g == "overflow" or exp_k == "overflow":
                    return "typed", str(exc)[:100]
                return "silent", f"overflow raised, exact gamma2 {exp_g}, kappa {exp_k}"
            except BaseException as exc:   # noqa: BLE001
                return _outcome_of_exception(exc)
            if exp_g == "overflow" or exp_k == "overflow":
                return "silent", "finite result where the exact one overflows"
            ok = _close(r.gamma2, exp_g) and _close(g2, exp_g) and _close(r.kappa, exp_k)
            return ("right" if ok else "silent"), f"gamma2 {r.gamma2!r} vs {exp_g!r}"
        return run

    n_q = int(n * 0.55)
    for k in range(n_q):
        g = _random_graph(rng)
        E = [60, 200, 400, 700][k % 4]
        p = rng.choice([-1.0, 1.0], g.n_params) * 2.0 ** rng.uniform(-E, E, g.n_params)
        if rng.random() < 0.15:
            p[rng.integers(g.n_params)] = 0.0
        cases.append(Case(1, f"path quantities, weights 2^+-{E}", quantities_case(g, p)))
    # the chain and subnormal middles
    chain = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 2)],
                                            ["x"], ["y"])
    for a in (1e-170, 3e-162, 1e-160, 1e-155):
        p = np.array([a, 1.0, 1.0 / a])
        cases.append(Case(1, f"gamma2 chain ({a}, 1, 1/{a})", expect_value(
            lambda p=p: pathgeom.gamma2(chain, p),
            lambda v, p=p: (_close(v, float(reference.gamma2(chain, p))), repr(v)))))

    # rescale: exact T_beta(p) or a range error
    def rescale_case(g, p, beta):
        def run():
            src, dst, par = g.edges()
            exact = []
            for i in range(g.n_params):
                e = int(np.flatnonzero(par == i)[0]) if (par == i).any() else None
                r = Fraction(1) if e is None else Fraction(beta[dst[e]]) / Fraction(beta[src[e]])
                exact.append(Fraction(p[i]) * r)
            try:
                want = [float(x) for x in exact]
                bad = any(x != 0 and abs(w) < np.finfo(float).tiny for x, w in zip(exact, want))
            except OverflowError:
                want, bad = None, True
            try:
                got = pathgeom.rescale(g, p, beta)
            except pathgeom.PathOverflowError as exc:
                return ("typed" if bad else "silent"), str(exc)[:100]
            except BaseException as exc:   # noqa: BLE001
                return _outcome_of_exception(exc)
            if bad:
                return "silent", f"returned {got} for an unrepresentable rescaling"
            return ("right" if _close(got, want, 1e-12) else "silent"), f"{got} vs {want}"
        return run

    for k in range(int(n * 0.12)):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 2)],
                                            ["x"], ["y"])
        p = rng.choice([-1.0, 1.0], 3) * 10.0 ** rng.uniform(-300, 300, 3)
        beta = np.array([1.0, 10.0 ** rng.uniform(-300, 300), 10.0 ** rng.uniform(-300, 300),
                         1.0])
        cases.append(Case(1, "rescale extreme beta", rescale_case(g, p, beta)))
    # yes/no arguments
    for v in ("False", "True", "no", 0, 1, None, [], 0.0, np.int64(1)):
        cases.append(Case(1, f"rnn bias={v!r}", expect_error(
            lambda v=v: pathgeom.rnn(1, 2, 1, 3, bias=v), "bias")))
        cases.append(Case(1, f"mlp bias={v!r}", expect_error(
            lambda v=v: pathgeom.mlp([2, 3, 1], bias=v), "bias")))
    # lemma1 numerically with small weights: no false violation
    g4 = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1), ("x", "b", 2),
                                          ("b", "y", 3)], ["x"], ["y"])
    for k in range(12):
        p = 10.0 ** rng.uniform(-150, 0, 4)

        def lemma(p=p):
            # no false violation: every compared entry lies within the definition's
            # estimated error (or 1e-6 relative)
            r = pathgeom.verify_lemma1(g4, p, max_paths=0)
            total = r.kappa1 + r.kappa2
            diff = np.abs(total - r.kappa_def)
            bad = ~r.underflow & (diff > np.maximum(r.kappa_def_err,
                                                    1e-6 * np.abs(r.kappa_def)))
            return not bad.any(), f"max_rel_error {r.max_rel_error}, {p}"
        cases.append(Case(1, "lemma1 numerical, small weights", expect_value(
            lambda p=p: p, lambda _v, lemma=lemma: lemma())))
    return cases


# ------------------------------------------------------------------------ class 2: run files


class Env:
    """Scratch directories and the run directories the cases copy."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pathgeom-fuzz-")
        self._base = None
        self._sweep = None

    def path(self, *names):
        return os.path.join(self.root, *names)

    def fresh(self, prefix):
        return tempfile.mkdtemp(prefix=prefix, dir=self.root)

    def base_run(self):
        if self._base is None:
            self._base = self.path("base")
            s, _, err, exc = cli(["train", "--T", "5", "--hidden", "2", "--steps", "4",
                                  "--checkpoint-every", "2", "--out", self._base, "--quiet"])
            assert s == 0 and exc is None, err
        return self._base

    def copy_run(self):
        d = os.path.join(self.fresh("run-"), "r")
        shutil.copytree(self.base_run(), d)
        return d

    def base_sweep(self):
        if self._sweep is None:
            self._sweep = self.path("sweep")
            s, _, err, exc = cli(["sweep", "--T", "5", "--hidden", "2", "--steps", "2",
                                  "--optimizers", "sgd", "--lrs", "0.01", "--jobs", "1",
                                  "--out", self._sweep, "--quiet"])
            assert s == 0 and exc is None, (s, err, exc)
        return self._sweep


def _rewrite_checkpoint(run_dir, mutate):
    path = os.path.join(run_dir, "checkpoint.npz")
    with np.load(path) as f:
        arrays = {k: np.array(f[k]) for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    new = mutate(meta, arrays)
    if new is not None:
        meta = new
    arrays["meta"] = np.array(meta if isinstance(meta, str) else json.dumps(meta))
    np.savez(path, **arrays)


#: Per checkpoint entry, values save_checkpoint never writes there.
_GARBAGE = {
    "step": [-1, -10 ** 30, 2.5, "7", None, [], {}, True, 10 ** 40],
    "history": ["x", 5, None, {}, [1], [{"step": -1}], [{"step": "a"}], [{"step": 10 ** 6}],
                [{"step": 0, "test_loss": "a"}], [[0, 1]]],
    "rng_state": [None, "x", 5, [], {"bit_generator": "MT19937"}, {}, {"bit_generator": "PCG64",
                                                                       "state": "x"}],
    "opt_meta": ["x", 5, [], None, {"c": "a"}, {"c": [1]}, {"c": True}],
    "config": ["x", 5, [], None, True],
    "window": ["x", 5, [1], [1, 2, 3], [None, 0], [0.0, -1], [0.0, 1.5], None],
    "seconds": [-1, "x", None, [], True, {}],
    "status": ["x", 5, [], "done", True],
    "resumed_from": [-1, "x", 2.5, 10 ** 6, [], True],
    "initial_test_loss": [None, "x", [], True, {}],
    "test_loss": ["x", [], True, {}],
}


def class2(rng, n, env):
    cases = []
    fields = ["step", "history", "rng_state", "opt_meta", "config", "window", "seconds",
              "status", "resumed_from", "initial_test_loss", "test_loss"]

    def damaged(mutate, names=("checkpoint.npz",)):
        def argv():
            d = env.copy_run()
            _rewrite_checkpoint(d, mutate)
            return ["train", "--resume", d, "--steps", "6", "--quiet"]
        return expect_cli(argv, (2,), names)

    n_ckpt = int(n * 0.6)
    for k in range(n_ckpt):
        field = fields[k % len(fields)]
        values = _GARBAGE[field]
        value = values[int(rng.integers(len(values)))]
        if k // len(fields) % 2:
            def mut(meta, arrays, field=field):
                meta.pop(field)
            what = "missing"
        else:
            def mut(meta, arrays, field=field, value=value):
                meta[field] = value
            what = repr(value)[:20]
        cases.append(Case(2, f"checkpoint {field} = {what}", damaged(
            mut, ("checkpoint.npz", "was run with"))))
    for shape in ("[1, 2, 3]", "\"text\"", "[" * 5000 + "]" * 5000, "{" * 3, "null"):
        cases.append(Case(2, f"checkpoint meta {shape[:10]}", damaged(
            lambda meta, arrays, shape=shape: shape)))
    # identity and step
    for seed in (1, 2, 7):
        def other(seed=seed):
            d = env.copy_run()
            o = os.path.join(env.fresh("other-"), "o")
            s, _, err, _ = cli(["train", "--T", "5", "--hidden", "2", "--steps", "4",
                                "--checkpoint-every", "2", "--seed", str(seed), "--out", o,
                                "--quiet"])
            shutil.copy(os.path.join(d, "checkpoint.npz"), os.path.join(o, "checkpoint.npz"))
            return ["train", "--resume", o, "--steps", "6", "--quiet"]
        cases.append(Case(2, f"checkpoint copied to a run of seed {seed}", expect_cli(
            other, (2,), ("another run",))))
    # sweep.json
    bad_sweeps = [{}, {"configs": []}, {"configs": "x"}, {"configs": [1]},
                  {"configs": [{"task": "nope"}]}, {"configs": [{"lr": "a"}]}, [],
                  {"configs": [{"steps": -1}]}, {"configs": None}, "text"]
    for k, content in enumerate(bad_sweeps * 2):
        cmd = ["status"] if k < len(bad_sweeps) else ["export"]

        def argv(content=content, cmd=cmd):
            d = env.fresh("sweepjson-")
            with open(os.path.join(d, "sweep.json"), "w") as fh:
                json.dump(content, fh)
            if cmd == ["status"]:
                return ["status", d]
            return ["export", d, "--dest", env.fresh("dest-"), "--table",
                    os.path.join(env.fresh("tab-"), "t.csv")]
        cases.append(Case(2, f"{cmd[0]} sweep.json {str(content)[:30]}",
                          expect_cli(argv, (2,), ("sweep.json",))))

    def zero_steps():
        d = env.fresh("sw0-")
        shutil.copytree(env.base_sweep(), os.path.join(d, "s"))
        with open(os.path.join(d, "s", "sweep.json")) as fh:
            stored = json.load(fh)
        for c in stored["configs"]:
            c["steps"] = 0
        with open(os.path.join(d, "s", "sweep.json"), "w") as fh:
            json.dump(stored, fh)
        return ["status", os.path.join(d, "s")]
    cases.append(Case(2, "status of a sweep with 0 steps", expect_cli(zero_steps, (0,))))

    def failed_resume():
        d = env.fresh("swf-")
        s = os.path.join(d, "s")
        shutil.copytree(env.base_sweep(), s)
        run = [x for x in os.listdir(s) if os.path.isdir(os.path.join(s, x))][0]
        # a checkpoint that reads fine but belongs to other settings: the run fails when it
        # resumes, in its worker
        _rewrite_checkpoint(os.path.join(s, run),
                            lambda m, a: m["config"].update(log_every=999))
        state = {}

        def check():
            res = os.path.join(s, run, "result.json")
            stale = os.path.exists(res) and json.load(open(res)).get("status") == "finished"
            return not stale, "result.json still says finished"
        state["check"] = check
        return ["sweep", "--resume", "--out", s, "--steps", "3", "--quiet"], check
    def failed_case():
        argv, check = failed_resume()
        return expect_cli(argv, (1,), ("failed",), check)()
    cases.append(Case(2, "sweep whose run fails on resume", failed_case))
    return cases


# ------------------------------------------------------------------------ class 3: sizes


def _npy_header_bomb(path, shape, dtype="<f8"):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)


def _npz_with(path, members):
    import zipfile
    with zipfile.ZipFile(path, "w") as zf:
        for name, shape in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
            buf.write(b"\0" * 64)
            zf.writestr(name + ".npy", buf.getvalue())


def _deflate_bomb(path, nbytes):
    """An npz whose 'p' deflates to ``nbytes`` of zeros (a genuine float vector)."""
    import zipfile
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (nbytes // 8,)})
    head = buf.getvalue()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("p.npy", "w", force_zip64=True) as fh:
            fh.write(head)
            chunk = b"\0" * (1 << 24)
            left = nbytes
            while left > 0:
                fh.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)


def class3(rng, n, env):
    import pathgeom
    cases = []
    size_names = ("needs about", "more than", "2**31", "larger", "MAX", "declares", "limit")
    big = [10 ** 6, 10 ** 7, 10 ** 8, 10 ** 9, 2 ** 31, 10 ** 12]
    for v in big:
        cases.append(Case(3, f"train --T {v}", expect_cli(
            ["train", "--T", str(v), "--hidden", "4", "--steps", "2", "--quiet"], (2,),
            size_names)))
        if v <= 10 ** 6:   # these batches fit (and run)
            continue
        cases.append(Case(3, f"train --batch {v}", expect_cli(
            ["train", "--T", "10", "--batch", str(v), "--hidden", "4", "--steps", "2",
             "--quiet"], (2,), size_names)))
        cases.append(Case(3, f"invariance --batch {v}", expect_cli(
            ["invariance", "--net", "rnn", "--batch", str(v)], (2,), size_names)))
    for v in big:
        cases.append(Case(3, f"group --net rnn --T {v}", expect_cli(
            ["group", "--net", "rnn", "--T", str(v)], (2,), size_names)))
        cases.append(Case(3, f"train --hidden {v}", expect_cli(
            ["train", "--T", "10", "--hidden", str(v), "--steps", "2", "--quiet"], (2,),
            size_names)))
    for v in (3 * 10 ** 4, 10 ** 5, 10 ** 6):
        cases.append(Case(3, f"draw --T {v}", expect_cli(
            ["draw", "--net", "rnn", "--T", str(v), "--out", env.path(f"d{v}.png")], (2,),
            size_names)))
    for dpi in (10 ** 4, 10 ** 5, 10 ** 6, 2 ** 31):
        cases.append(Case(3, f"draw --dpi {dpi}", expect_cli(
            ["draw", "--net", "chain", "--dpi", str(dpi), "--out", env.path("dpi.png")], (2,),
            ("dpi",))))
    # ONNX declared dims and ConstantOfShape
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        onnx = None
    if onnx is not None:
        for e in range(31, 41):
            def model(e=e):
                x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2 ** e])
                y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
                W = helper.make_tensor("W", TensorProto.FLOAT, [1, 1], [1.0])
                node = helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)
                g = helper.make_graph([node], "g", [x], [y], [W])
                return helper.make_model(g)
            cases.append(Case(3, f"onnx input dim 2^{e}", expect_error(
                lambda model=model: pathgeom.from_onnx(model()), "2**31", "units")))
        for total in (10 ** 10, 10 ** 12, 10 ** 15):
            def model(total=total):
                shape = helper.make_tensor("s", TensorProto.INT64, [2], [total // 1000, 1000])
                x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
                y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
                c = helper.make_node("ConstantOfShape", ["s"], ["c"])
                r = helper.make_node("Relu", ["x"], ["y"])
                g = helper.make_graph([c, r], "g", [x], [y], [shape])
                return helper.make_model(g)
            cases.append(Case(3, f"onnx ConstantOfShape {total:.0e}", expect_error(
                lambda model=model: pathgeom.from_onnx(model()), "ConstantOfShape")))
    # npz/npy header bombs
    for k, shape in enumerate([(2 ** 33,), (2 ** 40,), (10 ** 6, 10 ** 6), (2 ** 62,)]):
        path = env.path(f"bomb{k}.npy")
        _npy_header_bomb(path, shape)
        cases.append(Case(3, f"--params npy header {shape}", expect_cli(
            ["lemma1", "--net", "chain", "--params", path], (2,), ("shape",))))
        pz = env.path(f"bomb{k}.npz")
        _npz_with(pz, {"p": shape})
        cases.append(Case(3, f"--params npz header {shape}", expect_cli(
            ["lemma1", "--net", "chain", "--params", pz], (2,), ("shape",))))
        cases.append(Case(3, f"load_params header {shape}", expect_error(
            lambda pz=pz: pathgeom.load_params(pz), "bomb")))

        def ckpt_bomb(shape=shape):
            d = env.copy_run()
            path = os.path.join(d, "checkpoint.npz")
            with np.load(path) as f:
                meta = str(f["meta"])
            import zipfile
            with zipfile.ZipFile(path, "w") as zf:
                for name, shp in (("p", shape), ("prev", shape)):
                    buf = io.BytesIO()
                    np.lib.format.write_array_header_1_0(
                        buf, {"descr": "<f8", "fortran_order": False, "shape": shp})
                    zf.writestr(name + ".npy", buf.getvalue())
                buf = io.BytesIO()
                np.save(buf, np.array(meta))
                zf.writestr("meta.npy", buf.getvalue())
            return ["train", "--resume", d, "--steps", "6", "--quiet"]
        cases.append(Case(3, f"checkpoint header {shape}", expect_cli(
            ckpt_bomb, (2,), ("checkpoint.npz",))))
    db = env.path("deflate.npz")
    _deflate_bomb(db, 1 << 32)   # 4 GiB of zeros in a few MB
    cases.append(Case(3, "--params deflate bomb", expect_cli(
        ["lemma1", "--net", "chain", "--params", db], (2,), ("shape",))))
    cases.append(Case(3, "load_params deflate bomb", expect_error(
        lambda: pathgeom.load_params(db), "deflate")))
    return cases


# ------------------------------------------------------------------------ class 4: files


def class4(rng, n, env):
    cases = []
    fifo = env.path("fifo")
    os.mkfifo(fifo)
    devnode = env.path("devnull-node")
    try:
        os.mknod(devnode, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        devnode = "/dev/null"
    bad_targets = {"a directory": env.fresh("dir-"), "/dev/full": "/dev/full",
                   "/dev/null": "/dev/null", "a FIFO": fifo, "a device node": devnode,
                   "a missing directory": env.path("nope", "x.png")}

    def still_device(path):
        def check():
            if path in ("/dev/full", "/dev/null", devnode):
                ok = stat.S_ISCHR(os.stat(path).st_mode)
                return ok, f"{path} is no longer a device"
            return True, ""
        return check

    for what, target in bad_targets.items():
        # (draw and plot write their default file name into a directory, train creates a
        # missing directory: documented, not refusals)
        if what != "a directory":
            cases.append(Case(4, f"draw --out {what}", expect_cli(
                ["draw", "--net", "chain", "--out", target], (2,), (target, "--out"),
                still_device(target))))
            cases.append(Case(4, f"plot --out {what}", expect_cli(
                lambda target=target: ["plot", env.base_run(), "--out", target], (2,),
                (target, "--out"), still_device(target))))
        cases.append(Case(4, f"export --table {what}", expect_cli(
            lambda target=target: ["export", env.base_sweep(), "--dest", env.fresh("exp-"),
                                   "--table", target], (2,), (target, "--table"),
            still_device(target))))
        if what in ("a missing directory", "a directory"):
            continue
        cases.append(Case(4, f"train --out {what}", expect_cli(
            ["train", "--T", "5", "--hidden", "2", "--steps", "2", "--quiet", "--out",
             target], (2,), (target,), still_device(target))))
    for what, src in {"/dev/zero": "/dev/zero", "a FIFO": fifo, "a directory": env.root,
                      "a missing file": env.path("missing.txt")}.items():
        cases.append(Case(4, f"--graph {what}", expect_cli(
            ["lemma1", "--graph", src], (2,), (src,))))
        cases.append(Case(4, f"--params {what}", expect_cli(
            ["lemma1", "--net", "chain", "--params", src], (2,), (src,))))
    cases.append(Case(4, "export into the sweep itself", expect_cli(
        lambda: ["export", env.base_sweep(), "--dest", env.base_sweep(), "--table",
                 env.path("t1.csv")], (2,), ("inside",))))
    cases.append(Case(4, "export into a file", expect_cli(
        lambda: ["export", env.base_sweep(), "--dest", env.path("t1.csv"), "--table",
                 env.path("t2.csv")] if open(env.path("t1.csv"), "w").close() is None
        else [], (2,), ("t1.csv",))))
    # a full disk and a read-only file system (tmpfs mounts; root only)
    mnt = env.path("mnt")
    os.mkdir(mnt)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", mnt],
                             capture_output=True).returncode == 0
    if mounted:
        env.mounts = [mnt]

        def full_disk(k):
            def run():
                out = os.path.join(mnt, f"run{k}")
                for f in os.listdir(mnt):
                    shutil.rmtree(os.path.join(mnt, f), ignore_errors=True)
                filler = os.path.join(mnt, "filler")
                subprocess.run(["mount", "-o", "remount,size=96k", mnt], capture_output=True)
                status, _, err, exc = cli(["train", "--T", "5", "--hidden", str(40 + 10 * k),
                                           "--steps", "40", "--checkpoint-every", "10",
                                           "--out", out, "--quiet"])
                if exc is not None:
                    return _outcome_of_exception(exc)
                if "Traceback" in err:
                    return "traceback", err[-160:]
                if status not in (1, 2) or "disk is full" not in err and "No space" not in err:
                    return "silent", f"exit {status}: {err.strip()[:160]}"
                # the last checkpoint is intact and --resume works once there is space
                if os.path.exists(os.path.join(out, "checkpoint.npz")):
                    import pathgeom.runs as runs
                    try:
                        runs.load_checkpoint(out)
                    except Exception as e:   # noqa: BLE001
                        return "silent", f"checkpoint damaged after a full disk: {e}"
                    subprocess.run(["mount", "-o", "remount,size=8m", mnt], capture_output=True)
                    s2, _, err2, exc2 = cli(["train", "--resume", out, "--steps", "40",
                                             "--quiet"])
                    if exc2 is not None or s2 != 0:
                        return "silent", f"--resume after freeing space: exit {s2} {err2[:100]}"
                del filler
                return "typed", err.strip()[:120]
            return run
        for k in range(3):
            cases.append(Case(4, "train on a full disk", full_disk(k)))
        ro = env.path("ro")
        os.mkdir(ro)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro],
                          capture_output=True).returncode == 0:
            env.mounts.append(ro)
            for cmd in (["draw", "--net", "chain", "--out", os.path.join(ro, "g.png")],
                        ["train", "--T", "5", "--hidden", "2", "--steps", "2", "--quiet",
                         "--out", os.path.join(ro, "r")]):
                cases.append(Case(4, f"{cmd[0]} into a read-only file system", expect_cli(
                    cmd, (2, 1), (ro,))))

    def stdout_case(redirect, codes):
        def run():
            env_vars = dict(os.environ, PYTHONPATH=ROOT)
            target = redirect[1]
            fh = open(target, "w") if target == "/dev/full" else None
            try:
                closed = target == "closed"
                p = subprocess.run([sys.executable, "-m", "pathgeom", "lemma1", "--net",
                                    "chain"] + redirect[0], env=env_vars,
                                   stdout=None if closed else fh if fh is not None else target,
                                   stderr=subprocess.PIPE, text=True, timeout=120,
                                   preexec_fn=(lambda: os.close(1)) if closed else None)
            finally:
                if fh is not None:
                    fh.close()
            if "Traceback" in p.stderr or "Exception ignored" in p.stderr:
                return "traceback", p.stderr[-160:]
            if p.returncode not in codes:
                return "silent", f"exit {p.returncode}"
            return "typed", p.stderr.strip()[:120]
        return run
    cases.append(Case(4, "stdout on /dev/full", stdout_case(([], "/dev/full"), (1,))))
    cases.append(Case(4, "stdout closed", stdout_case(([], "closed"), (2,))))
    cases.append(Case(4, "stdout /dev/null", stdout_case(([], subprocess.DEVNULL), (0,))))
    return cases


# ------------------------------------------------------------------------ class 5: ONNX


def class5(rng, n, env):
    import pathgeom
    cases = []
    try:
        import onnx
        from onnx import helper, TensorProto, numpy_helper
    except ImportError:
        return cases
    net = pathgeom.mlp([3, 4, 2])
    model = pathgeom.to_onnx(net, net.init(np.random.default_rng(0)))
    data = model.SerializeToString()
    good = env.path("good.onnx")
    with open(good, "wb") as fh:
        fh.write(data)
    names = ("ONNX", ".onnx")
    for k in range(int(n * 0.5)):
        cut = int(rng.integers(1, len(data)))
        path = env.path(f"trunc{k}.onnx")
        with open(path, "wb") as fh:
            fh.write(data[:cut])

        def trunc(path=path):
            try:
                o = pathgeom.from_onnx(path)
            except BaseException as exc:   # noqa: BLE001
                return _outcome_of_exception(exc, (path,))
            # a prefix may still parse as a model: then it must be the same network or
            # have been refused
            return ("right" if o.graph.n_edges == net.graph.n_edges else "silent"), "parsed"
        cases.append(Case(5, f"truncated at {cut}", trunc))
    for k in range(int(n * 0.25)):
        path = env.path(f"garbage{k}.onnx")
        with open(path, "wb") as fh:
            fh.write(rng.bytes(int(rng.integers(1, 4096))) if k % 2 else
                     ("hello, this is text\n" * int(rng.integers(1, 50))).encode())
        cases.append(Case(5, "garbage/text", expect_error(
            lambda path=path: pathgeom.from_onnx(path), path)))
    cases.append(Case(5, "a directory", expect_error(
        lambda: pathgeom.from_onnx(env.root), env.root)))
    cases.append(Case(5, "missing", expect_error(
        lambda: pathgeom.from_onnx(env.path("none.onnx")), "none.onnx")))
    cases.append(Case(5, "empty", expect_error(
        lambda: pathgeom.from_onnx(_touch(env.path("empty.onnx"))), "empty.onnx")))
    link = env.path("link.onnx")
    os.symlink(good, link)
    cases.append(Case(5, "a symlink", expect_error(lambda: pathgeom.from_onnx(link), "link")))
    secret = env.path("secret.bin")
    with open(secret, "wb") as fh:
        fh.write(np.ones(12, np.float32).tobytes())
    for k, loc in enumerate(["../secret.bin", secret, "../../etc/passwd", "sub/../../secret.bin",
                             "missing.bin", "/dev/zero"]):
        d = env.fresh("ext-")
        m = onnx.ModelProto()
        m.CopyFrom(model)
        t = m.graph.initializer[0]
        t.ClearField("raw_data")
        del t.double_data[:]
        del t.float_data[:]
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", loc
        path = os.path.join(d, "m.onnx")
        with open(path, "wb") as fh:
            fh.write(m.SerializeToString())
        cases.append(Case(5, f"external data {loc}", expect_error(
            lambda path=path: pathgeom.from_onnx(path), path)))
    for cmd in ("lemma1", "group", "invariance"):
        for path in (env.path("garbage1.onnx"), env.path("trunc0.onnx"), link):
            cases.append(Case(5, f"cli {cmd} --graph {os.path.basename(path)}", expect_cli(
                [cmd, "--graph", path], (2,), (path,))))
    return cases


def _touch(path):
    open(path, "wb").close()
    return path


# ------------------------------------------------------------------------ class 6: messages


def class6(rng, n, env):
    import pathgeom
    cases = []
    txt = env.path("text.npy")
    with open(txt, "w") as fh:
        fh.write("1 2 3\n")
    cases.append(Case(6, "text named .npy", expect_cli(
        ["lemma1", "--net", "chain", "--params", txt], (2,), ("not a .npy",))))
    fifo = env.path("fifo6")
    os.mkfifo(fifo)
    for what, src in {"/dev/zero": "/dev/zero", "FIFO": fifo, "directory": env.root}.items():
        for flag in ("--graph", "--params"):
            argv = ["lemma1", "--net", "chain", flag, src] if flag == "--params" else \
                ["lemma1", flag, src]
            word = {"/dev/zero": "device", "FIFO": "FIFO", "directory": "directory"}[what]
            cases.append(Case(6, f"{flag} {what} said as such", expect_cli(
                argv, (2,), (word,))))
    # underflow does not say "smaller"
    cases.append(Case(6, "rescale underflow message", expect_error(
        lambda: pathgeom.rescale(pathgeom.SharedGraph.from_edges(
            [("x", "a", 0), ("a", "y", 1)], ["x"], ["y"]), [1.0, 1e-200],
            [1.0, 1e200, 1.0]), "below")))
    cases.append(Case(6, "--optimizers ,", expect_cli(
        ["sweep", "--optimizers", ",", "--out", env.path("sw6")], (2,), ("--optimizers",))))
    cases.append(Case(6, "plot --out /dev/full", expect_cli(
        lambda: ["plot", env.base_run(), "--out", "/dev/full"], (2,), ("/dev/full",))))
    try:
        import onnx
        from onnx import helper, TensorProto
        have_onnx = True
    except ImportError:
        have_onnx = False
    if have_onnx:
        def dup():
            x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
            W = helper.make_tensor("W", TensorProto.FLOAT, [1, 2], [1.0, 2.0])
            W2 = helper.make_tensor("W", TensorProto.FLOAT, [1, 2], [3.0, 4.0])
            node = helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)
            return helper.make_model(helper.make_graph([node], "g", [x], [y], [W, W2]))
        cases.append(Case(6, "duplicate initializers", expect_error(
            lambda: pathgeom.from_onnx(dup()), "two initializers")))

        def missing():
            x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
            node = helper.make_node("Gemm", ["x", "Wmissing"], ["y"], transB=1)
            return helper.make_model(helper.make_graph([node], "g", [x], [y], []))
        cases.append(Case(6, "missing initializer", expect_error(
            lambda: pathgeom.from_onnx(missing()), "missing")))
        net = pathgeom.mlp([3, 4, 2])
        p = net.init(np.random.default_rng(1))
        onx = pathgeom.from_onnx(pathgeom.to_onnx(net, p))
        cases.append(Case(6, "onnx forward on an empty batch", expect_value(
            lambda: onx.forward(np.zeros((0, 3))), lambda v: (np.shape(v) == (0, 2),
                                                               str(np.shape(v))), ("batch",))))
    net = pathgeom.cnn((1, 4, 4), [pathgeom.Conv2d(2, 3)], 1)
    pc = net.init(np.random.default_rng(0))
    cases.append(Case(6, "cnn forward on an empty batch", expect_value(
        lambda: net.forward(pc, np.zeros((0, 1, 4, 4))),
        lambda v: (np.shape(v) == (0, 1), str(np.shape(v))), ("batch",))))
    for idx in (-10 ** 30, 10 ** 30, -1.5, "0", None, np.nan, 2 ** 63):
        cases.append(Case(6, f"parameter index {idx!r}", expect_error(
            lambda idx=idx: pathgeom.SharedGraph.from_edges([("x", "y", idx)], ["x"], ["y"]),
            "param", "index")))
    for text in (None, 3, b"inputs x", ["x y 0"]):
        cases.append(Case(6, f"parse_edge_list({text!r})", expect_error(
            lambda text=text: pathgeom.edgelist.parse_edge_list(text), "parse_edge_list")))
    g = pathgeom.SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"])
    for rtol in ("a", None, -1.0, float("nan"), [1e-9]):
        cases.append(Case(6, f"rescale rtol={rtol!r}", expect_error(
            lambda rtol=rtol: pathgeom.rescale(g, [1.0], np.ones(2), rtol=rtol), "rtol")))
        cases.append(Case(6, f"contains rtol={rtol!r}", expect_error(
            lambda rtol=rtol: pathgeom.rescaling_group(g).contains(np.ones(2), rtol=rtol),
            "rtol")))
    for w in ("--weight-scale", "--T", "--batch", "--scale", "--lr"):
        for v in ("nan", "-1", "inf", "x", "1e400"):
            cases.append(Case(6, f"invariance {w} {v}", expect_cli(
                ["invariance", "--net", "rnn", w, v], (2,), (w,))))
    return cases


# ------------------------------------------------------------------------ class 7: signals


def class7(rng, n, env):
    cases = []

    def early_signal(delay, sig):
        def run():
            out = os.path.join(env.fresh("sig-"), "o")
            env_vars = dict(os.environ, PYTHONPATH=ROOT)
            p = subprocess.Popen([sys.executable, "-m", "pathgeom", "train", "--T", "10",
                                  "--hidden", "4", "--steps", "100000", "--out", out,
                                  "--quiet"], env=env_vars, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            time.sleep(delay)
            p.send_signal(sig)
            _, err = p.communicate(timeout=300)
            code = p.returncode
            if code not in (130, 143, -signal.SIGINT, -signal.SIGTERM):
                return "silent", f"exit {code}"
            for f in (os.listdir(out) if os.path.isdir(out) else []):
                path = os.path.join(out, f)
                try:
                    if f.endswith(".json"):
                        json.load(open(path))
                    elif f.endswith(".npz"):
                        with np.load(path) as z:
                            [z[k] for k in z.files]
                    elif ".tmp" in f:
                        return "silent", f"half-written {f}"
                except Exception as exc:   # noqa: BLE001
                    return "silent", f"{f} half-written: {exc}"
            if "Traceback" in err:
                return "traceback", err.strip()[-120:]
            return "typed", f"exit {code}"
        return run
    for k in range(int(n * 0.6)):
        delay = float(rng.uniform(0.05, 2.0))
        sig = (signal.SIGINT, signal.SIGTERM)[k % 2]
        cases.append(Case(7, f"{sig.name} at {delay:.2f} s", early_signal(delay, sig)))
    # loopback addresses only: nothing outside this machine is ever contacted
    for addr in ("tcp://127.0.0.1:1", "127.0.0.1:1", "tcp://127.0.0.3:8786",
                 "tcp://:", "tcp://127.0.0.1:99999", "tcp://127.0.0.2:8786"):
        def sched(addr=addr):
            t0 = time.perf_counter()
            out = expect_cli(["sweep", "--scheduler", addr, "--T", "5", "--hidden", "2",
                              "--steps", "1", "--out", os.path.join(env.fresh("sch-"), "s"),
                              "--quiet"], (2,), (addr.split("//")[-1].split(":")[0] or addr,))()
            if time.perf_counter() - t0 > 15 and out[0] == "typed":
                return "silent", f"took {time.perf_counter() - t0:.0f} s"
            return out
        cases.append(Case(7, f"--scheduler {addr}", sched))
    return cases


# ------------------------------------------------------------------------ driver


BUILDERS = {1: class1, 2: class2, 3: class3, 4: class4, 5: class5, 6: class6, 7: class7}
TARGET = {1: 300, 2: 130, 3: 0, 4: 0, 5: 80, 6: 0, 7: 30}   # scaled generated inputs


def _limit_memory(extra=4 << 30):
    try:
        import resource
        with open("/proc/self/status") as fh:
            vm = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + extra, resource.RLIM_INFINITY))
        return vm + extra
    except Exception:   # noqa: BLE001
        return None


def run(classes=tuple(BUILDERS), seed=0, scale=1.0, verbose=False):
    """Build and run the cases; returns ``{class: {outcome: count}}`` and the bad ones."""
    import pathgeom  # noqa: F401  (compiled before the memory limit)
    import matplotlib
    matplotlib.use("Agg")
    rng = np.random.default_rng(seed)
    env = Env()
    env.mounts = []
    counts = {c: dict.fromkeys(OUTCOMES, 0) for c in classes}
    bad = []
    try:
        for c in classes:
            cases = BUILDERS[c](rng, int(TARGET[c] * scale), env) if c != 1 else \
                BUILDERS[c](rng, int(TARGET[c] * scale))
            for case in cases:
                try:
                    outcome, note = case.fn()
                except Exception as exc:   # noqa: BLE001 -- the harness's own failure
                    outcome, note = "traceback", "harness: " + "".join(
                        traceback.format_exception_only(type(exc), exc)).strip()[:160]
                counts[c][outcome] += 1
                if outcome in ("silent", "traceback", "oversized"):
                    bad.append((c, case.name, outcome, note))
                if verbose:
                    print(f"[{c}] {outcome:9} {case.name}: {note[:100]}", flush=True)
    finally:
        for m in getattr(env, "mounts", []):
            subprocess.run(["umount", m], capture_output=True)
        shutil.rmtree(env.root, ignore_errors=True)
    return counts, bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, nargs="+", default=list(BUILDERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the number of generated inputs (1: about 700 in all)")
    ap.add_argument("--json", default=None, help="also write the counts and bad cases here")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    limit = _limit_memory()
    t0 = time.perf_counter()
    counts, bad = run(tuple(args.classes), args.seed, args.scale, args.verbose)
    total = {o: sum(c[o] for c in counts.values()) for o in OUTCOMES}
    print(f"{'class':>5} " + " ".join(f"{o:>9}" for o in OUTCOMES) + f" {'inputs':>7}")
    for c, row in counts.items():
        print(f"{c:>5} " + " ".join(f"{row[o]:>9}" for o in OUTCOMES)
              + f" {sum(row.values()):>7}")
    print(f"{'all':>5} " + " ".join(f"{total[o]:>9}" for o in OUTCOMES)
          + f" {sum(total.values()):>7}")
    print(f"({time.perf_counter() - t0:.0f} s; address-space limit "
          f"{'none' if limit is None else f'{limit / 2**30:.1f} GiB'})")
    for c, name, outcome, note in bad:
        print(f"  [{c}] {outcome}: {name}: {note}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"counts": counts, "bad": bad}, fh, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
