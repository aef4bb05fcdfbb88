"""Regression tests of issue 10 (robustness), one block per family."""

import io
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import pathgeom
from pathgeom import PathOverflowError, cli, reference
from pathgeom.invariance import rescaling_group, verify_lemma1

from helpers import assert_close


# ---------------------------------------------------------------- 4: RNN fft is exact or falls back

@pytest.mark.parametrize("seed", range(4))
def test_rnn_fft_exact_per_entry_over_ten_decades(seed):
    net = pathgeom.rnn(1, 4, 1, 12)
    rng = np.random.default_rng(seed)
    p = rng.choice([-1, 1], net.n_params) * 10.0 ** rng.uniform(-5, 5, net.n_params) / 400
    exact = pathgeom.path_quantities(net.graph, p).kappa2
    fft = net.path_quantities(p, method="fft").kappa2
    assert_close(fft, exact, 1e-9)


def test_rnn_fft_still_used_on_benign_weights():
    net = pathgeom.rnn(1, 8, 1, 40)
    p = net.init(np.random.default_rng(0), "uniform", 0.5)
    fft = net.path_quantities(p, method="fft").kappa2
    rec = net.path_quantities(p).kappa2
    assert_close(fft, rec, 1e-9)
    assert not np.array_equal(fft, rec)      # the FFT route itself, certified


# ---------------------------------------------------------------- 5: exact zeros, huge weights

@pytest.mark.parametrize("huge", [1e200, 1e160, 1.7e308])
def test_huge_weight_on_no_weighted_path_is_no_overflow(huge):
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 2),
                                         ("x", "y", 3)], ["x"], ["y"])
    p = np.array([0.0, huge, 0.0, 2.0])
    r = pathgeom.path_quantities(g, p)
    assert r.gamma2 == 4.0 and pathgeom.gamma2(g, p) == 4.0
    np.testing.assert_array_equal(r.kappa, [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(r.kappa2, 0.0)
    with pytest.raises(PathOverflowError):          # a real overflow is still reported
        pathgeom.path_quantities(g, np.array([1.0, huge, 1.0, 2.0]))


def test_every_quantity_zero_with_huge_shared_weight():
    net = pathgeom.rnn(1, 2, 1, 5)
    p = np.zeros(net.n_params)
    p[net.layout.slice("W_rec", 0)] = 1e250         # W_in = W_out = 0
    r = net.path_quantities(p)
    assert r.gamma2 == 0.0 and not np.any(r.kappa)
    r2 = pathgeom.path_quantities(net.graph, p)
    assert r2.gamma2 == 0.0 and not np.any(r2.kappa)


# ---------------------------------------------------------------- 6: depth, no recursion

def test_reference_walk_does_not_recurse():
    L = 3000
    g = pathgeom.SharedGraph.from_arrays(np.arange(L), np.arange(1, L + 1),
                                         np.zeros(L, dtype=int), [0], [L])
    assert len(reference.paths(g)) == 1
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        assert reference.path_count(g) == 1 and len(reference.paths(g)[0]) == L
    finally:
        sys.setrecursionlimit(limit)


def test_dag_dp_equals_enumeration_on_a_shared_rnn():
    g = pathgeom.rnn(1, 2, 1, 4).graph
    p = np.random.default_rng(0).uniform(-1, 1, g.n_params)
    assert reference.kappa_dag(g, p) == reference.kappa(g, p)
    assert reference.gamma2_dag(g, p) == reference.gamma2(g, p)


@pytest.mark.slow
def test_lemma1_on_a_chain_of_1500_within_a_minute():
    t0 = time.perf_counter()
    status = cli.main(["lemma1", "--net", "chain", "--length", "1500", "--share",
                       "--weight-scale", "1.2"], out=io.StringIO(), err=io.StringIO())
    assert status == 0 and time.perf_counter() - t0 < 60
    g = pathgeom.rnn(1, 1, 1, 1000).graph
    r = verify_lemma1(g, np.full(g.n_params, 0.9))
    assert r.exact and r.n_paths == 1000 and r.max_rel_error < 1e-12


# ---------------------------------------------------------------- 8: sparse rescaling group

def test_group_of_a_1e5_edge_chain_is_sparse_and_fast():
    L = 100_000
    g = pathgeom.SharedGraph.from_arrays(np.arange(L), np.arange(1, L + 1), np.arange(L),
                                         [0], [L])
    tracemalloc.start()
    t0 = time.perf_counter()
    G = rescaling_group(g)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert G.dim == L - 1 and G.basis_sparse.nnz == L - 1
    assert seconds < 10 and peak < 200 * 2 ** 20
    with pytest.raises(ValueError, match="basis_sparse"):
        G.basis
    beta = G.sample(np.random.default_rng(0), 0.1)
    assert G.contains(beta)


def test_group_of_a_20k_edge_mlp_in_seconds():
    g = pathgeom.mlp([2] * 5001).graph
    assert g.n_edges == 20_000
    t0 = time.perf_counter()
    G = rescaling_group(g)
    assert G.dim == 2 * 4999 and time.perf_counter() - t0 < 5


# ---------------------------------------------------------------- 10: underflow in the Lemma 1 checker

@pytest.mark.parametrize("max_paths", [2000, 0])
def test_lemma1_says_underflow_instead_of_inf(max_paths):
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 2)],
                                        ["x"], ["y"])
    p = np.array([1e-60, 1e-60, 1e-60])               # gamma^2 = 1e-360: underflows
    r = verify_lemma1(g, p, max_paths=max_paths)
    assert not np.isinf(r.rel_error).any() and r.max_rel_error != np.inf
    assert r.underflow_note and "underflow" in r.underflow_note
    assert "underflow" in str(r)


# ---------------------------------------------------------------- 11, 12: files and CLI messages

def test_edge_list_with_bom(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfinputs x\noutputs y\nx y 0\n")
    g = pathgeom.edgelist.read_edge_list(path)
    assert g.inputs == ("x",)


def test_draw_out_directory(tmp_path):
    pytest.importorskip("matplotlib")
    out = io.StringIO()
    status = cli.main(["draw", "--net", "chain", "--out", str(tmp_path) + os.sep],
                      out=out, err=io.StringIO())
    assert status == 0
    assert sorted(os.listdir(tmp_path)) == ["pathgeom-graph.png"]
    err = io.StringIO()
    assert cli.main(["draw", "--out", str(tmp_path / "missing") + os.sep], out=out,
                    err=err) == 2
    assert "missing" in err.getvalue()


def test_draw_labels_with_dollar_signs(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "net.txt"
    path.write_text("inputs $x\noutputs y$\n$x $\\alpha_ 0\n$\\alpha_ y$ 1\n")
    status = cli.main(["draw", "--graph", str(path), "--out", str(tmp_path / "g.png")],
                      out=io.StringIO(), err=io.StringIO())
    assert status == 0 and (tmp_path / "g.png").exists()


@pytest.mark.parametrize("argv, flag", [(["demo", "--T", "0"], "--T"),
                                        (["demo", "--H", "0"], "--H"),
                                        (["demo", "--big-H", "0"], "--big-H"),
                                        (["lemma1", "--max-paths", "-1"], "--max-paths")])
def test_cli_flags_validated(argv, flag, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv, out=io.StringIO(), err=io.StringIO())
    assert info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def test_invariance_huge_scale_names_the_scale():
    err = io.StringIO()
    assert cli.main(["invariance", "--scale", "1e6"], out=io.StringIO(), err=err) == 2
    assert "scale=1000000.0" in err.getvalue() and "beta[" not in err.getvalue()


def test_json_into_a_closed_pipe_ends_quietly():
    code = ("import subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-m', 'pathgeom', 'group', '--net', "
            "'chain', '--length', '20000', '--json'], stdout=subprocess.PIPE, "
            "stderr=subprocess.PIPE)\n"
            "p.stdout.readline(); p.stdout.close(); err = p.stderr.read(); p.wait()\n"
            "sys.stdout.write(err.decode())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert "Traceback" not in result.stdout and "BrokenPipe" not in result.stdout


# ---------------------------------------------------------------- 13: char-LM memory

def test_charlm_one_hot_without_identity(tmp_path):
    from pathgeom.tasks.charlm import CharLM
    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in range(0x4E00, 0x4E00 + 6000)]
    text = "".join(rng.choice(alphabet, 40_000))
    for name, part in (("train.txt", text[:30_000]), ("valid.txt", text[30_000:35_000]),
                       ("test.txt", text[35_000:])):
        (tmp_path / name).write_text(part, encoding="utf-8")
    task = CharLM(tmp_path, seq_len=10, n_test=2)
    tracemalloc.start()
    X, Y = task.sample(rng, 4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert X.shape == (4, 10, task.n_in) and task.n_in > 5000
    assert peak < 4 * X.nbytes                     # no n_in x n_in identity (288 MB)
    np.testing.assert_array_equal(X.argmax(axis=2)[:, 1:], Y[:, :-1])
    assert X.sum() == 40


# ---------------------------------------------------------------- 7: crafted .npz headers

def test_crafted_npz_refused_before_loading(tmp_path):
    import zipfile
    from pathgeom._npzcheck import check_npz
    header = {"descr": "<f8", "fortran_order": False, "shape": (2 ** 34,)}
    path = tmp_path / "params.npz"
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("p.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
    tracemalloc.start()
    with pytest.raises(ValueError, match="'p' declares shape"):
        check_npz(path, "p")
    with pytest.raises(ValueError, match="parameters"):
        check_npz(path, "p", n_expected=10)
    assert tracemalloc.get_traced_memory()[1] < 10 * 2 ** 20
    tracemalloc.stop()
    np.savez(tmp_path / "c.npz", p=np.zeros(3, dtype=complex))
    with pytest.raises(ValueError, match="complex"):
        check_npz(tmp_path / "c.npz", "p")
