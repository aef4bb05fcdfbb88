"""Regression tests of issue 24 (robustness, third round), one block per class.

The fuzz that found these is ``tests/fuzz_robustness.py`` (run by hand).
"""

import contextlib
import io
import json
import os
import shutil
import stat
import zipfile

import numpy as np
import pytest

import pathgeom
from pathgeom import PathOverflowError, PathUnderflowError, cli, reference
from pathgeom import runs

from helpers import assert_close


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):   # argparse's own messages
            status = cli.main([str(a) for a in argv], out=out, err=err)
    except SystemExit as exc:
        status = exc.code
    return status, out.getvalue(), err.getvalue()


CHAIN = [("x", "a", 0), ("a", "b", 1), ("b", "y", 2)]


# ---------------------------------------------------------------- 1: no silent wrong numbers


@pytest.mark.parametrize("p", [[1e-170, 1e85, 1e85], [3e-162, 1.0, 1 / 3e-162],
                               [1e-160, 1e-5, 1e155], [1e-200, 1e-100, 1e150]])
def test_gamma2_with_an_underflowing_factor_is_exact(p):
    g = pathgeom.SharedGraph.from_edges(CHAIN, ["x"], ["y"])
    exact = float(reference.gamma2(g, p))
    assert exact > 0
    assert_close(pathgeom.gamma2(g, p), exact, 1e-14)


@pytest.mark.parametrize("seed", range(6))
def test_path_quantities_over_700_binades_match_the_exact_sums(seed):
    rng = np.random.default_rng(seed)
    edges = [("x0", "h0", 0), ("x1", "h0", 1), ("h0", "h1", 2), ("x0", "h1", 0),
             ("h1", "h2", 1), ("h0", "h2", 3), ("h2", "y", 2), ("h1", "y", 3)]
    g = pathgeom.SharedGraph.from_edges(edges, ["x0", "x1"], ["y"])
    p = rng.choice([-1.0, 1.0], 4) * 2.0 ** rng.uniform(-300, 300, 4)
    try:
        want_g = float(reference.gamma2(g, p))
        want_k = np.array([float(k) for k in reference.kappa(g, p)])
    except OverflowError:
        with pytest.raises(PathOverflowError):
            pathgeom.path_quantities(g, p)
        return
    r = pathgeom.path_quantities(g, p)
    tiny = np.finfo(float).tiny
    assert abs(r.gamma2 - want_g) <= 1e-12 * want_g + 4 * 2.0 ** -1074
    assert np.all(np.abs(r.kappa - want_k) <= 1e-12 * np.abs(want_k) + 4 * 2.0 ** -1074)
    assert (want_g == 0) == (r.gamma2 == 0) or want_g < tiny


@pytest.mark.parametrize("t", [3.1e-123, 7.7e-123, 1e-120])
def test_kappa2_whose_tangent_is_subnormal(t):
    # t_b = 1e-200, t_c = t * 1e-200 is subnormal (a few digits) while h, delta and the
    # result are normal: kappa2[1] came out a few percent wrong before
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "c", 2),
                                         ("c", "d", 3), ("d", "y", 1)], ["x"], ["y"])
    p = np.array([1e-100, 1e50, np.sqrt(t), 1e100])
    want = [float(k) for k in reference.kappa(g, p)]
    assert_close(pathgeom.kappa(g, p), want, 1e-13)


@pytest.mark.parametrize("w", [1e-170, 1e-200, 3e-160])
def test_underflow_through_a_fixed_weight(w):
    g = pathgeom.SharedGraph.from_edges(
        [("x", "a", 0), ("a", "b", pathgeom.fixed(w)), ("b", "y", 1), ("x", "y", 2)],
        ["x"], ["y"])
    p = np.array([1e100, 0.5 / w * 1e-100, 1.0])
    r = pathgeom.path_quantities(g, p)
    want_g = float(reference.gamma2(g, p))
    want_k = [float(k) for k in reference.kappa(g, p)]
    assert_close(r.gamma2, want_g, 1e-13)
    assert_close(r.kappa, want_k, 1e-13)
    assert r.gamma2 > 1.0   # the chain's path (0.25) is not lost


def test_rnn_structured_path_with_an_underflowing_input_matrix():
    net = pathgeom.rnn(1, 2, 1, 3)
    p = net.init(np.random.default_rng(1))
    p[net.layout.slice("W_in", 0)] *= 1e-160
    p[net.layout.slice("W_out")] *= 1e153
    want = float(reference.gamma2(net.graph, p))
    assert want > 1e-30
    assert_close(net.path_quantities(p).gamma2, want, 1e-12)
    assert_close(net.gamma2(p), want, 1e-12)


def test_underflow_error_is_an_overflow_error_and_exported():
    assert issubclass(PathUnderflowError, PathOverflowError)
    assert "PathUnderflowError" in pathgeom.__all__


@pytest.mark.parametrize("p, beta, err", [
    ([1.0, 1e-200], [1.0, 1e200, 1.0], PathUnderflowError),
    ([1e200, 1.0], [1.0, 1e200, 1.0], PathOverflowError),
    ([1e-200, 1e200], [1.0, 1e300, 1.0], None),     # ratio beyond float64, result fine
])
def test_rescale_refuses_what_it_cannot_represent(p, beta, err):
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
    if err is None:
        np.testing.assert_allclose(pathgeom.rescale(g, p, beta), [1e100, 1e-100], rtol=1e-13)
    else:
        with pytest.raises(err, match=r"p\[\d\]"):
            pathgeom.rescale(g, p, beta)


@pytest.mark.parametrize("value", ["False", "True", 1, 0, None, 1.0])
def test_yes_no_arguments_take_bools_only(value):
    for build in (lambda: pathgeom.rnn(1, 2, 1, 3, bias=value),
                  lambda: pathgeom.mlp([2, 3, 1], bias=value),
                  lambda: pathgeom.path_quantities(pathgeom.SharedGraph.from_edges(
                      CHAIN, ["x"], ["y"]), [1.0, 1.0, 1.0], with_kappa2=value)):
        with pytest.raises(TypeError, match="must be True or False"):
            build()
    assert pathgeom.rnn(1, 2, 1, 3, bias=np.bool_(True)).bias is True


@pytest.mark.parametrize("p", [[1e-60, 1e-60, 1.0, 1.0], [1e-80] * 4, [1e-9, 1e-9, 1.0, 2.0]])
def test_lemma1_numerical_reports_no_false_violation(p):
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1), ("x", "b", 2),
                                         ("b", "y", 3)], ["x"], ["y"])
    r = pathgeom.verify_lemma1(g, np.array(p), max_paths=0)
    assert not (np.isfinite(r.max_rel_error) and r.max_rel_error > 1e-6)
    assert np.all(r.kappa_def_err[r.kappa_def == 0] >= 0)
    unresolved = r.underflow & (r.kappa1 + r.kappa2 != 0)
    if unresolved.any():
        assert r.underflow_note


# ---------------------------------------------------------------- 2: damaged run files


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("base") / "run"
    status, _, err = run("train", "--T", 5, "--hidden", 2, "--steps", 4,
                         "--checkpoint-every", 2, "--out", d, "--quiet")
    assert status == 0, err
    return d


def _damage(src, dst, mutate):
    shutil.copytree(src, dst)
    path = dst / "checkpoint.npz"
    with np.load(path) as f:
        arrays = {k: np.array(f[k]) for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    new = mutate(meta)
    arrays["meta"] = np.array(new if isinstance(new, str) else    # raw JSON text
                              json.dumps(meta if new is None else new))
    np.savez(path, **arrays)
    return dst


@pytest.mark.parametrize("name, mutate, words", [
    ("negative step", lambda m: m.update(step=-1), "step = -1"),
    ("float step", lambda m: m.update(step=2.5), "step = 2.5"),
    ("no config", lambda m: m.pop("config") and None, "no config"),
    ("garbage rng", lambda m: m.update(rng_state={"bit_generator": "PCG64", "state": 1}),
     "rng_state"),
    ("history row", lambda m: m.update(history=[{"step": 99}]), "history[0]"),
    ("optimiser keys", lambda m: m.update(opt_meta={"bogus": 1.0}), "optimiser state"),
    ("list-shaped", lambda m: [1, 2, 3], "JSON list"),
    ("deeply nested", lambda m: "[" * 100000 + "]" * 100000, "nested"),
])
def test_damaged_checkpoint_refused_naming_the_file(base_run, tmp_path, name, mutate, words):
    d = _damage(base_run, tmp_path / "r", mutate)
    status, _, err = run("train", "--resume", d, "--steps", 6, "--quiet")
    assert status == 2 and "checkpoint.npz" in err and words in err, err
    assert "Traceback" not in err


def test_checkpoint_of_another_run_is_refused(base_run, tmp_path):
    other = tmp_path / "other"
    assert run("train", "--T", 5, "--hidden", 2, "--steps", 4, "--checkpoint-every", 2,
               "--seed", 3, "--out", other, "--quiet")[0] == 0
    shutil.copy(base_run / "checkpoint.npz", other / "checkpoint.npz")
    status, _, err = run("train", "--resume", other, "--steps", 6, "--quiet")
    assert status == 2 and "another run" in err and "seed" in err, err


@pytest.mark.parametrize("content, words", [
    ({}, "configs"), ({"configs": []}, "at least one"), ({"configs": [7]}, "configs[0]"),
    ({"configs": [{"task": "nope"}]}, "unknown task"), ([], "configs"),
])
def test_damaged_sweep_json_refused(tmp_path, content, words):
    (tmp_path / "sweep.json").write_text(json.dumps(content))
    status, _, err = run("status", tmp_path)
    assert status == 2 and "sweep.json" in err and words in err, err


# ---------------------------------------------------------------- 3: sizes


@pytest.mark.parametrize("argv", [
    ("train", "--T", 10 ** 7, "--hidden", 4, "--steps", 2, "--quiet"),
    ("train", "--T", 10, "--batch", 10 ** 9, "--hidden", 4, "--steps", 2, "--quiet"),
    ("invariance", "--net", "rnn", "--batch", 10 ** 10),
    ("group", "--net", "rnn", "--T", 10 ** 9),
])
def test_sizes_refused_before_allocating(argv):
    status, _, err = run(*argv)
    assert status == 2 and ("needs about" in err or "2**31" in err), err


def test_memory_estimate_sees_ulimit(monkeypatch):
    from pathgeom import _memory
    import resource
    monkeypatch.setattr(resource, "getrlimit", lambda which: (200 << 20, -1))
    monkeypatch.setattr(_memory, "_mapped_bytes", lambda: 100 << 20)
    avail, which = _memory.available_memory()
    assert avail <= 100 << 20 and "ulimit" in which
    with pytest.raises(_memory.MemoryLimitError, match="ulimit"):
        _memory.check_fits(95 << 20, "a thing", "--smaller")


@pytest.mark.parametrize("shape", [(2 ** 33,), (2 ** 40,), (10 ** 6, 10 ** 6)])
def test_npz_header_bombs_are_refused_unread(tmp_path, shape):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as zf:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
        zf.writestr("p.npy", buf.getvalue())
    status, _, err = run("lemma1", "--net", "chain", "--params", path)
    assert status == 2 and "shape" in err
    npy = tmp_path / "p.npy"
    with open(npy, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": shape})
    status, _, err = run("lemma1", "--net", "chain", "--params", npy)
    assert status == 2 and "shape" in err


def test_onnx_declared_dims_refused():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    for e in (31, 36, 40):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2 ** e])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
        W = helper.make_tensor("W", TensorProto.FLOAT, [1, 1], [1.0])
        node = helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)
        model = helper.make_model(helper.make_graph([node], "g", [x], [y], [W]))
        with pytest.raises(pathgeom.GraphError, match="2\\*\\*31"):
            pathgeom.from_onnx(model)
    assert onnx


# ---------------------------------------------------------------- 4: files and file systems


@pytest.mark.parametrize("target", ["/dev/null", "/dev/full", "fifo"])
def test_writes_refuse_targets_that_are_not_regular_files(tmp_path, target):
    if target == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
    before = os.stat(target).st_mode
    status, _, err = run("draw", "--net", "chain", "--out", target)
    assert status == 2 and target in err
    with pytest.raises(ValueError, match="regular files"):
        runs.atomic_write_bytes(target, b"x")
    assert os.stat(target).st_mode == before and not stat.S_ISREG(before)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    from pathgeom import _files
    path = tmp_path / "f.json"
    path.write_text("old")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(_files.os, "fsync", full)
    with pytest.raises(_files.OutputError, match="disk is full") as info:
        runs.atomic_write_json(path, {"a": 1})
    assert info.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.json"]


@pytest.mark.parametrize("what", ["/dev/zero", "fifo", "dir", "missing"])
def test_inputs_that_are_not_regular_files(tmp_path, what):
    src = {"/dev/zero": "/dev/zero", "dir": str(tmp_path), "missing": str(tmp_path / "no"),
           "fifo": str(tmp_path / "fifo")}[what]
    if what == "fifo":
        os.mkfifo(src)
    word = {"/dev/zero": "character device", "fifo": "FIFO", "dir": "directory",
            "missing": "no such file"}[what]
    for argv in (("lemma1", "--graph", src), ("lemma1", "--net", "chain", "--params", src)):
        status, _, err = run(*argv)
        assert status == 2 and word in err, err


def test_export_into_the_sweep_itself_is_refused(tmp_path):
    from pathgeom import experiments
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(experiments.SweepError, match="inside"):
        experiments.export_runs(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------- 5: ONNX files


@pytest.fixture(scope="module")
def onnx_bytes():
    pytest.importorskip("onnx")
    net = pathgeom.mlp([3, 4, 2])
    return pathgeom.to_onnx(net, net.init(np.random.default_rng(0))).SerializeToString()


@pytest.mark.parametrize("kind", ["truncated", "text", "garbage", "empty", "dir", "symlink",
                                  "missing"])
def test_onnx_files_that_are_not_models(tmp_path, onnx_bytes, kind):
    path = tmp_path / "m.onnx"
    if kind == "truncated":
        path.write_bytes(onnx_bytes[:len(onnx_bytes) // 3])
    elif kind == "text":
        path.write_text("this is not a model\n" * 20)
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "dir":
        path.mkdir()
    elif kind == "symlink":
        (tmp_path / "real.onnx").write_bytes(onnx_bytes)
        path.symlink_to(tmp_path / "real.onnx")
    with pytest.raises(pathgeom.GraphError, match="m.onnx"):
        pathgeom.from_onnx(path)
    status, _, err = run("lemma1", "--graph", path)
    assert status == 2 and "m.onnx" in err


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "missing.bin"])
def test_onnx_external_data_outside_the_model_directory(tmp_path, onnx_bytes, location):
    onnx = pytest.importorskip("onnx")
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    model = onnx.ModelProto()
    model.ParseFromString(onnx_bytes)
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    del t.double_data[:]
    t.data_location = onnx.TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    (tmp_path / "d").mkdir()
    path = tmp_path / "d" / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(pathgeom.GraphError, match="m.onnx"):
        pathgeom.from_onnx(path)


# ---------------------------------------------------------------- 6: messages


def test_messages_say_what_is_wrong(tmp_path):
    npy = tmp_path / "p.npy"
    npy.write_text("1 2 3\n")
    status, _, err = run("lemma1", "--net", "chain", "--params", npy)
    assert status == 2 and "not a .npy file" in err and "pickle" not in err
    status, _, err = run("sweep", "--optimizers", ",", "--out", tmp_path / "s")
    assert status == 2 and "--optimizers" in err
    status, _, err = run("plot", tmp_path, "--out", "/dev/full")
    assert status == 2 and "/dev/full" in err and "wrote" not in err
    with pytest.raises(TypeError, match="read_edge_list"):
        pathgeom.edgelist.parse_edge_list(None)
    g = pathgeom.SharedGraph.from_edges([("x", "y", 0)], ["x"], ["y"])
    with pytest.raises(ValueError, match="rtol"):
        pathgeom.rescale(g, [1.0], np.ones(2), rtol="a")


def test_empty_batches_give_empty_outputs():
    net = pathgeom.cnn((1, 4, 4), [pathgeom.Conv2d(2, 3)], 1)
    p = net.init(np.random.default_rng(0))
    assert net.forward(p, np.zeros((0, 1, 4, 4))).shape == (0, 1)
    assert np.array_equal(net.backward(p, np.zeros((0, 1, 4, 4)), np.zeros((0, 1))),
                          np.zeros(net.n_params))


def test_onnx_duplicate_and_missing_initializers():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    W = helper.make_tensor("W", TensorProto.FLOAT, [1, 2], [1.0, 2.0])
    node = helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)
    dup = helper.make_model(helper.make_graph([node], "g", [x], [y], [W, W]))
    with pytest.raises(pathgeom.GraphError, match="two initializers named 'W'"):
        pathgeom.from_onnx(dup)
    missing = helper.make_model(helper.make_graph([node], "g", [x], [y], []))
    with pytest.raises(pathgeom.GraphError, match="missing initializer"):
        pathgeom.from_onnx(missing)


# ---------------------------------------------------------------- 7: signals and services


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "127.0.0.1:1", "tcp://:"])
def test_unreachable_scheduler_fails_fast(tmp_path, address):
    from pathgeom import experiments
    with pytest.raises(experiments.SweepError, match="scheduler|Dask"):
        experiments._check_scheduler(address)
    status, _, err = run("sweep", "--scheduler", address, "--T", 5, "--hidden", 2,
                         "--steps", 1, "--out", tmp_path / "s", "--quiet")
    assert status == 2 and not (tmp_path / "s").exists()


def test_server_that_is_not_dask_is_refused(tmp_path):
    import socket
    import threading
    from pathgeom import experiments
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def answer():   # an HTTP-ish server: its bytes read as an absurd Dask frame length
        conn, _ = srv.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()
    threading.Thread(target=answer, daemon=True).start()
    port = srv.getsockname()[1]
    with pytest.raises(experiments.SweepError, match="protocol"):
        experiments._check_scheduler(f"tcp://127.0.0.1:{port}")
    srv.close()
