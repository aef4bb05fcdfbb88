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
