"""The command line (in-process) and the edge-list file format."""

import io
import json
import sys

import numpy as np
import pytest

import pathgeom
from pathgeom import cli, plotting
from pathgeom.edgelist import (EdgeListError, format_edge_list, parse_edge_list,
                                read_edge_list, write_edge_list)

SMALL = """\
# two hidden units sharing their input weight (Figure 1 style)
inputs x
outputs y

x a 0
x b 0      # shared with x -> a
a y 1
b y 2
"""


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text(SMALL)
    return str(path)


# --------------------------------------------------------------------------- subcommands


class TestDefaults:
    def test_lemma1(self):
        status, out, err = run("lemma1")
        assert status == 0 and err == ""
        assert "ReLU RNN unrolled over T = 4 steps, hidden [3]" in out
        assert "exact rationals, enumerating the 120 input-output paths" in out
        assert "printed eq.(10) / exact kappa2 = 0.5, eq.(11) / exact = 0.25" in out
        err_line = next(l for l in out.splitlines() if l.startswith("largest relative error"))
        assert float(err_line.rsplit(" ", 1)[1]) < 1e-12

    def test_invariance(self):
        status, out, err = run("invariance")
        assert status == 0 and err == ""
        assert "rescaling group dimension: 3" in out
        values = {line[:52].strip(): float(line[52:]) for line in out.splitlines()
                  if line.startswith("  ")}
        assert values["path-sgd (kappa)"] < 1e-13 and values["path-sgd (kappa1)"] < 1e-13
        assert values["gamma^2"] < 1e-13 and values["sgd"] > 1e-2

    def test_group(self):
        status, out, err = run("group")
        assert status == 0 and err == ""
        assert "dimension 3" in out and "-- agrees" in out
        assert "b1: +1 on h[1,0] h[2,0] h[3,0] h[4,0]" in out

    def test_group_sizes_and_nets(self):
        status, out, _ = run("group", "--T", "6", "--H", "5", "--n-in", "2", "--n-out", "3",
                             "--show", "2")
        assert status == 0 and "dimension 5" in out and "... 3 more" in out
        assert "dimension 0" in run("group", "--net", "chain", "--share")[1]
        assert "dimension 4" in run("group", "--net", "chain", "--length", "5")[1]

    @pytest.mark.parametrize("argv, dim", [(["--net", "rnn", "--H", "3,2", "--T", "3"], 5),
                                           (["--net", "mlp", "--hidden", "4,2"], 6),
                                           (["--net", "cnn", "--channels", "3,2"], 5)])
    def test_constructor_nets(self, argv, dim):
        status, out, _ = run("group", *argv)
        assert status == 0 and f"dimension {dim}" in out and "-- agrees" in out
        status, out, _ = run("lemma1", *argv)
        err_line = next(l for l in out.splitlines() if l.startswith("largest relative error"))
        assert status == 0 and float(err_line.rsplit(" ", 1)[1]) < 1e-12
        status, out, _ = run("invariance", *argv)
        assert status == 0 and f"rescaling group dimension: {dim}" in out

    def test_bad_size_list(self, capsys):
        with pytest.raises(SystemExit) as exc:
            cli.main(["group", "--H", "3,x"], out=io.StringIO(), err=io.StringIO())
        assert exc.value.code == 2

    def test_lemma1_numerical_route(self):
        status, out, _ = run("lemma1", "--T", "3", "--H", "2", "--max-paths", "0")
        assert status == 0 and "central differences" in out and "+/-" in out

    def test_overflow_is_a_message(self):
        status, out, err = run("lemma1", "--T", "400", "--H", "4", "--weight-scale", "3")
        assert status == 1 and out == "" and "Traceback" not in err
        assert "overflowed float64" in err and "--weight-scale" in err

    @pytest.mark.parametrize("argv", [["invariance", "--lr", "0"], ["group", "--T", "0"],
                                      ["lemma1", "--weight-scale", "nan"],
                                      ["invariance", "--scale", "-1"], ["group", "--net", "gru"]])
    def test_bad_arguments(self, argv, capsys):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2 and "error: argument" in capsys.readouterr().err

    def test_demo_unchanged(self):
        status, out, _ = run("demo", "--T", "3", "--H", "2", "--big-T", "5", "--big-H", "4",
                             "--race-steps", "0", "--invariance-steps", "0")
        assert status == 0
        assert "eq.(10) / exact kappa2 = 0.5, eq.(11) / exact = 0.25" in out


class TestJson:
    def test_lemma1(self):
        status, out, _ = run("lemma1", "--json", "--T", "3", "--H", "2")
        d = json.loads(out)
        assert status == 0 and d["network"]["net"] == "rnn"
        r = d["report"]
        assert r["exact"] is True and r["max_rel_error"] < 1e-12
        assert len(r["kappa1"]) == len(d["p"]) == 8
        assert np.allclose(np.array(r["kappa1"]) + r["kappa2"], r["kappa_def"], rtol=1e-12)

    def test_invariance(self):
        d = json.loads(run("invariance", "--json")[1])
        assert d["report"]["dim"] == 3 and d["report"]["steps"]["sgd"] > 1e-2
        assert len(d["report"]["beta"]) == 17

    def test_group(self):
        d = json.loads(run("group", "--json", "--net", "chain")[1])
        assert d["dim"] == 2 and d["agrees_with_theory"] is True
        assert d["basis"] == [{"v1": 1.0}, {"v2": 1.0}]


class TestEdgeListFile:
    def test_group(self, small_file):
        status, out, _ = run("group", "--graph", small_file)
        assert status == 0 and "dimension 1" in out and "+1 on a b" in out
        assert "theory" not in out

    def test_lemma1_and_invariance(self, small_file):
        status, out, _ = run("lemma1", "--graph", small_file)
        assert status == 0 and "kappa2 = 0 on every parameter" in out
        status, out, _ = run("invariance", "--graph", small_file, "--seed", "4")
        assert status == 0 and "rescaling group dimension: 1" in out

    def test_json(self, small_file):
        for command in ("lemma1", "invariance", "group"):
            status, out, _ = run(command, "--graph", small_file, "--json")
            d = json.loads(out)
            assert status == 0 and d["network"]["net"] == "file"

    @pytest.mark.parametrize("text, line, match", [
        ("inputs x\noutputs y\nx y\n", 3, "expected 'u v param' \\(3 tokens\\)"),
        ("inputs x\noutputs y\n\n# c\nx y 0 extra\n", 5, "got 4 token"),
        ("inputs x\noutputs y\nx y w\n", 3, "parameter 'w' is not an integer"),
        ("inputs x\noutputs y\nx y -1\n", 3, "negative"),
        ("inputs x\noutputs y\nx x 0\n", 3, "self-loop"),
        ("inputs x\noutputs y\nparams two\nx y 0\n", 3, "params N"),
        ("inputs x\noutputs y\nparams 1\nx y 0\nx y 3\n", 5, "out of range for 'params 1'"),
        ("inputs x\noutputs y\nx a 0\na y 0\ny x 1\n", 5, "goes into input node 'x'"),
        ("inputs x\noutputs\nx y 0\n", 2, "names no node"),
        ("inputs x a\noutputs y a\nx y 0\n", 1, "both an input and an output"),
        ("inputs x\noutputs y\nx outputs 0\n", 3, "'outputs' is a keyword"),
        ("inputs x params\noutputs y\nx y 0\n", 1, "'params' is a keyword"),
    ])
    def test_malformed_files(self, tmp_path, text, line, match):
        path = tmp_path / "bad.txt"
        path.write_text(text)
        for command in ("group", "lemma1", "invariance"):
            status, out, err = run(command, "--graph", str(path))
            assert status == 2 and out == ""
            assert f"{path}:{line}: " in err
            assert "Traceback" not in err
        with pytest.raises(EdgeListError, match=match) as info:
            read_edge_list(path)
        assert info.value.line == line and info.value.source == str(path)

    @pytest.mark.parametrize("text, match", [
        ("outputs y\nx y 0\n", "no 'inputs' line"),
        ("inputs x\nx y 0\n", "no 'outputs' line"),
        ("inputs x\noutputs y\nx a 0\na b 0\nb a 1\na y 1\n", "cycle"),
    ])
    def test_file_level_errors(self, tmp_path, text, match):
        path = tmp_path / "bad.txt"
        path.write_text(text)
        status, _, err = run("group", "--graph", str(path))
        assert status == 2 and str(path) in err
        with pytest.raises(EdgeListError, match=match):
            read_edge_list(path)

    def test_missing_file(self, tmp_path):
        status, _, err = run("group", "--graph", str(tmp_path / "nope.txt"))
        assert status == 2 and "nope.txt: cannot read the file" in err

    def test_net_and_graph_are_exclusive(self, small_file, capsys):
        with pytest.raises(SystemExit) as info:
            cli.main(["group", "--net", "rnn", "--graph", small_file])
        assert info.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err


class TestEdgeListFormat:
    def test_parse(self):
        g = parse_edge_list(SMALL)
        assert g.nodes == ("x", "a", "b", "y") and g.n_params == 3
        np.testing.assert_array_equal(g.param_edge_counts(), [2, 1, 1])

    def test_repeated_lines_and_parallel_edges(self):
        g = parse_edge_list("inputs x1\ninputs x2\noutputs y\nparams 4\n"
                            "x1 h 0\nx1 h 0\nx2 h 1\nh y 2\n")
        assert g.inputs == ("x1", "x2") and g.n_params == 4 and g.n_edges == 4

    def test_labels_are_strings(self):
        g = parse_edge_list("inputs 0\noutputs 2\n0 1 0\n1 2 0\n")
        assert g.nodes == ("0", "1", "2")

    @pytest.mark.parametrize("make", [
        lambda: parse_edge_list(SMALL),
        lambda: cli._rnn_network(cli._parser().parse_args(["group", "--T", "3", "--H", "2"]))[0],
        lambda: pathgeom.SharedGraph.from_edges([("x", "y", 2), ("x", "h", 0), ("h", "y", 0)],
                                                ["x", "lonely"], ["y"], n_params=5),
    ])
    def test_round_trip(self, make, tmp_path):
        g = make()
        path = tmp_path / "g.txt"
        write_edge_list(g, path)
        back = read_edge_list(path)
        triples = lambda h: sorted((h.nodes[u], h.nodes[v], i) for u, v, i in
                                   zip(*(a.tolist() for a in h.edges())))
        assert triples(back) == triples(g)
        assert (back.inputs, back.outputs, back.n_params) == (g.inputs, g.outputs, g.n_params)
        assert format_edge_list(back) == format_edge_list(g)

    def test_unwritable_labels(self):
        g = pathgeom.SharedGraph.from_edges([("a b", "y", 0)], ["a b"], ["y"])
        with pytest.raises(ValueError, match="whitespace"):
            format_edge_list(g)
        g = pathgeom.SharedGraph.from_arrays([0], [1], [0], [0], [1], n_nodes=3)
        with pytest.raises(ValueError, match="touches no edge"):
            format_edge_list(g)


# --------------------------------------------------------------------------- draw


class TestDraw:
    def test_without_matplotlib(self, monkeypatch, tmp_path):
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
        status, out, err = run("draw", "--out", str(tmp_path / "g.png"))
        assert status != 0 and out == ""
        assert "pip install 'pathgeom[plot]'" in err and "matplotlib" in err
        assert not (tmp_path / "g.png").exists()

    @pytest.mark.parametrize("extra", [[], ["--rescale"], ["--net", "chain", "--share",
                                                           "--rescale"]])
    def test_png(self, tmp_path, extra):
        pytest.importorskip("matplotlib")
        path = tmp_path / "g.png"
        status, out, _ = run("draw", "--T", "3", "--H", "2", "--out", str(path), *extra)
        assert status == 0 and f"wrote {path}" in out
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_png_from_file(self, tmp_path, small_file):
        pytest.importorskip("matplotlib")
        path = tmp_path / "g.png"
        status, out, _ = run("draw", "--graph", small_file, "--rescale", "--out", str(path))
        assert status == 0 and "4 nodes, 4 edges, 3 parameters in use" in out
        assert path.stat().st_size > 1000

    def test_layout_puts_inputs_beside_their_first_consumer(self):
        g, _ = cli._rnn_network(cli._parser().parse_args(["draw", "--T", "3", "--H", "1"]))
        xy = plotting._layout(g)
        assert xy[g.index("x[1,0]"), 0] == 0 and xy[g.index("h[1,0]"), 0] == 1
        assert xy[g.index("x[3,0]"), 0] == xy[g.index("h[2,0]"), 0] == 2
        assert xy[g.index("h[3,0]"), 0] == 3 and xy[g.index("y[0]"), 0] == 4


class TestNamesAndParams:
    def test_lemma1_names_the_rnn_parameters(self):
        status, out, _ = run("lemma1", "--net", "rnn", "--T", "3", "--H", "2")
        assert status == 0
        for name in ("W_in[0][1,0]", "W_rec[0][0,1]", "W_out[0,1]"):
            assert name in out
        status, out, _ = run("lemma1", "--net", "rnn", "--T", "3", "--H", "2", "--json")
        names = json.loads(out)["report"]["param_names"]
        assert names[:2] == ["W_in[0][0,0]", "W_in[0][1,0]"] and len(names) == 8

    @pytest.mark.parametrize("kind", ["txt", "npy", "npz"])
    def test_params_file(self, tmp_path, kind):
        p = np.array([0.5, -1.0, 2.0])
        path = tmp_path / f"p.{kind}"
        if kind == "txt":
            path.write_text("# my weights\n0.5, -1.0\n2.0\n")
        elif kind == "npy":
            np.save(path, p)
        else:
            np.savez(path, p=p)
        status, out, _ = run("lemma1", "--net", "chain", "--length", "3", "--params", str(path),
                             "--json")
        assert status == 0
        assert json.loads(out)["p"] == p.tolist()
        # gamma^2 = prod p^2, kappa_i = gamma^2 / p_i^2
        k = json.loads(out)["report"]["kappa_def"]
        np.testing.assert_allclose(k, [4.0, 1.0, 0.25], rtol=1e-15)

    def test_params_file_of_the_wrong_length_is_named(self, tmp_path):
        path = tmp_path / "p.txt"
        path.write_text("1 2")
        status, _, err = run("lemma1", "--net", "chain", "--length", "3", "--params", str(path))
        assert status == 2 and "p.txt" in err and "3 parameters" in err
