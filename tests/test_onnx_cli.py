"""The command line on ONNX models: their own weights, ``--params``, ``pathnorm``."""

import io
import json

import numpy as np
import onnx
import pytest

import pathgeom
from pathgeom import cli

from helpers import assert_close
from onnx_models import resnet


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([str(a) for a in argv], out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "resnet.onnx"
    onnx.save(resnet(np.random.default_rng(0), size=8, widths=(2, 3)), str(path))
    return path


def test_pathnorm_text_and_json(model_file):
    imp = pathgeom.from_onnx(model_file)
    status, out, err = run_cli("pathnorm", "--graph", model_file)
    assert status == 0 and err == ""
    assert "the model's own weights" in out
    for q in (1, 2, 4):
        line = next(l for l in out.splitlines() if l.startswith(f"L{q} path norm: "))
        assert float(line.split(": ")[1]) == imp.path_norm(q=q)
    status, out, _ = run_cli("pathnorm", "--graph", model_file, "--q", "1.5,3", "--json")
    doc = json.loads(out)
    assert set(doc["path_norms"]) == {"1.5", "3"}
    assert doc["path_norms"]["3"] == imp.path_norm(q=3)          # full float64 precision
    assert "own weights" in doc["weights"]


def test_pathnorm_params_override(model_file, tmp_path):
    imp = pathgeom.from_onnx(model_file)
    p = np.random.default_rng(1).normal(size=imp.n_params)
    np.save(tmp_path / "p.npy", p)
    status, out, _ = run_cli("pathnorm", "--graph", model_file, "--params",
                             tmp_path / "p.npy", "--json", "--q", "2")
    doc = json.loads(out)
    assert status == 0 and "--params" in doc["weights"]
    assert doc["path_norms"]["2"] == imp.path_norm(p, 2)
    assert_close(doc["path_norms"]["2"] ** 2, imp.gamma2(p), rtol=1e-12)


@pytest.mark.parametrize("bad", ["0.5", "1,x", "inf", ""])
def test_pathnorm_bad_q(model_file, bad, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["pathnorm", "--graph", str(model_file), "--q", bad])
    assert info.value.code == 2
    assert "--q" in capsys.readouterr().err


def test_pathnorm_on_a_builtin_network():
    status, out, _ = run_cli("pathnorm", "--net", "mlp", "--q", "2", "--json")
    doc = json.loads(out)
    net = pathgeom.mlp([1, 3, 2, 1])
    p = np.random.default_rng(0).uniform(-1, 1, net.n_params)
    assert_close(doc["path_norms"]["2"] ** 2, pathgeom.gamma2(net.graph, p), rtol=1e-12)


def test_lemma1_uses_the_models_weights(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "small.onnx"
    onnx.save(resnet(rng, size=4, widths=(1, 2), in_ch=1, n_out=1), str(path))
    imp = pathgeom.from_onnx(path)
    status, out, _ = run_cli("lemma1", "--graph", path, "--json", "--max-paths", "0")
    doc = json.loads(out)
    assert status == 0 and "own weights" in doc["weights"]
    assert_close(np.array(doc["p"]), imp.p, rtol=0)
    assert_close(doc["gamma2"], imp.gamma2(), rtol=1e-12)
    p = rng.normal(size=imp.n_params)
    np.savetxt(tmp_path / "p.txt", p)
    status, out, _ = run_cli("lemma1", "--graph", path, "--params", tmp_path / "p.txt",
                             "--max-paths", "0")
    assert status == 0 and f"p from --params {tmp_path / 'p.txt'}" in out
    status, out, _ = run_cli("lemma1", "--graph", path, "--params", tmp_path / "p.txt",
                             "--max-paths", "0", "--json")
    assert_close(json.loads(out)["gamma2"], imp.gamma2(p), rtol=1e-12)


def test_group_of_a_model_too_large_for_an_edge_list(model_file, monkeypatch):
    from pathgeom.interop.onnx import twin
    monkeypatch.setattr(twin, "MAX_GRAPH_EDGES", 10)
    status, out, err = run_cli("group", "--graph", model_file)
    assert status == 1 and "MAX_GRAPH_EDGES" in err and "dense passes" in err
    status, out, _ = run_cli("pathnorm", "--graph", model_file)      # needs no edge list
    assert status == 0 and "L2 path norm" in out


# --------------------------------------------------------------------------- --weight-scale


@pytest.mark.parametrize("command", ["pathnorm", "lemma1", "invariance"])
def test_weight_scale_with_an_onnx_model_is_refused(model_file, command):
    # an ONNX model has its own weights: a flag that would be silently ignored is an error
    status, out, err = run_cli(command, "--graph", model_file, "--weight-scale", "2")
    assert status == 2 and out == ""
    for w in (f"pathgeom {command}: error: --weight-scale 2", "its own weights",
              "drop --weight-scale", "--params FILE"):
        assert w in err, err


def huge_model(path):
    """Two Gemm layers on one 2x2 weight of about 1e110: gamma^2 ~ 1e440, beyond float64."""
    W = 1e110 * np.array([[1.0, 1.1], [1.2, 1.3]])
    nodes = [onnx.helper.make_node("Gemm", ["x", "W"], ["z"], transB=1),
             onnx.helper.make_node("Relu", ["z"], ["h"]),
             onnx.helper.make_node("Gemm", ["h", "W"], ["y"], transB=1)]
    T = onnx.TensorProto.DOUBLE
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(
        nodes, "huge", [onnx.helper.make_tensor_value_info("x", T, ["N", 2])],
        [onnx.helper.make_tensor_value_info("y", T, ["N", 2])],
        [onnx.numpy_helper.from_array(W, "W")]),
        opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("command", ["pathnorm", "lemma1"])
def test_overflow_advice_on_an_onnx_model(command, tmp_path):
    path = huge_model(tmp_path / "huge.onnx")
    status, out, err = run_cli(command, "--graph", path)
    assert status == 1 and out == "" and "Traceback" not in err
    assert "overflow" in err and "its own weights" in err and "--params FILE" in err
    assert "try a smaller --weight-scale" not in err
    # the same weights scaled down by --params: in range
    np.save(tmp_path / "small.npy", pathgeom.from_onnx(path).p * 1e-110)
    status, out, err = run_cli(command, "--graph", path, "--params", tmp_path / "small.npy")
    assert status == 0 and err == ""


@pytest.mark.parametrize("command", ["pathnorm", "lemma1", "invariance"])
def test_weight_scale_with_params_is_refused(command, tmp_path):
    # both flags give the weights: the one that would be silently ignored is an error
    np.save(tmp_path / "p.npy", np.ones(pathgeom.mlp([1, 3, 2, 1]).n_params))
    status, out, err = run_cli(command, "--net", "mlp", "--params", tmp_path / "p.npy",
                               "--weight-scale", "2")
    assert status == 2 and out == ""
    for w in (f"pathgeom {command}: error: --weight-scale 2", "--params", "drop one"):
        assert w in err, err


def test_weight_scale_still_drives_builtin_networks():
    s2 = json.loads(run_cli("pathnorm", "--net", "mlp", "--q", "1", "--json",
                            "--weight-scale", "2")[1])
    s1 = json.loads(run_cli("pathnorm", "--net", "mlp", "--q", "1", "--json")[1])
    assert "U(-2, 2)" in s2["weights"] and "U(-1, 1)" in s1["weights"]
    # mlp [1, 3, 2, 1]: every path has 3 weights, so doubling them scales the L1 norm by 8
    assert_close(s2["path_norms"]["1"], 8 * s1["path_norms"]["1"], rtol=1e-12)
