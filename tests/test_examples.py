"""Every script in examples/ runs with the settings its docstring documents and shows what
the docstring claims (the claims are checked on the script's own variables)."""

import os
import runpy

import numpy as np
import pytest

from helpers import assert_close

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def run(name, capsys):
    namespace = runpy.run_path(os.path.join(EXAMPLES, name), run_name="__main__")
    return namespace, capsys.readouterr().out


def test_every_example_is_tested():
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    tested = sorted(n[len("test_"):].replace("_example", "") + ".py" for n in globals()
                    if n.startswith("test_") and n.endswith("_example"))
    assert scripts == tested


def test_adding_race_example(capsys):
    ns, out = run("adding_race.py", capsys)
    assert set(ns["results"]) == {"sgd", "path-sgd", "path-adam"}
    for name, r in ns["results"].items():
        assert r["status"] == "finished", name
        assert r["moved"] > 1e-2, name              # every optimiser moves the network
        assert r["end"] < 0.5 * r["start"], name    # and lowers the test MSE
    assert "predicting the mean gives" in out


def test_cnn_certificate_example(capsys):
    ns, out = run("cnn_certificate.py", capsys)
    assert_close(ns["graph"], ns["dense"], rtol=1e-12, scale=np.abs(ns["dense"]).max())
    assert ns["support"].size == 0
    assert np.all(ns["r"].kappa2 == 0) and np.array_equal(ns["r"].kappa, ns["r"].kappa1)


def test_custom_graph_example(capsys):
    ns, out = run("custom_graph.py", capsys)
    assert_close(ns["r"].kappa, ns["exact"])
    assert ns["r"].kappa2[0] > 0 and list(ns["pathgeom"].kappa2_support(ns["g"])) == [0]


def test_invariance_path_sgd_example(capsys):
    ns, out = run("invariance_path_sgd.py", capsys)
    assert "same function: True" in out
    assert ns["largest_gap"]["PathSGD"] < 1e-12     # Path-SGD commutes with T_beta
    assert ns["largest_gap"]["SGD"] > 0.1           # SGD does not


def test_rnn_lemma1_example(capsys):
    ns, out = run("rnn_lemma1.py", capsys)
    assert ns["err"] < 1e-12
    assert "agree: True" in out
