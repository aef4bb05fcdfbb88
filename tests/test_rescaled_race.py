"""The rescaled start in training: rescaled_race, invariance --train, train --init-from."""

import io
import json

import numpy as np
import pytest

import pathgeom
from pathgeom import cli, experiments
from pathgeom.experiments import rescaled_race, spread_rescaling
from pathgeom.rescaling import rescale, rescaling_group

from helpers import assert_close


class Sum:
    """Regression: the sum of 4 inputs, one output per sequence."""
    name, n_in, n_out, T, outputs, loss, valid = "sum", 4, 1, 1, "last", "mse", None

    def sample(self, rng, B):
        X = rng.uniform(-1, 1, size=(B, 1, 4))
        return X, X.sum(axis=2)

    @property
    def test(self):
        return self.sample(np.random.default_rng(1), 200)


@pytest.mark.parametrize("spread", [0.5, 2.0, 4.0])
def test_spread_rescaling_is_feasible_and_spans_the_spread(spread):
    g = pathgeom.mlp([3, 4, 2, 1]).graph
    beta = spread_rescaling(g, np.random.default_rng(3), spread)
    assert rescaling_group(g).contains(beta)
    assert_close(np.log10(beta.max() / beta.min()), spread)
    fixed = list(g.compiled.inputs) + list(g.compiled.outputs)
    assert np.all(beta[fixed] == 1.0)


def test_spread_rescaling_refuses_a_rigid_graph():
    g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    with pytest.raises(ValueError, match="dimension 0"):
        spread_rescaling(g, np.random.default_rng(0), 1.0)
    assert np.all(spread_rescaling(g, np.random.default_rng(0), 0.0) == 1.0)


def test_path_sgd_runs_coincide_and_sgd_runs_part():
    net = pathgeom.mlp([4, 8, 1])
    race = rescaled_race(net, Sum(), 60, 1.0, sgd_lr=0.05, path_sgd_lr=0.5,
                         sgd_smaller_lrs=(0.005,), seed=2)
    a, b = race.runs["path-sgd/p"], race.runs["path-sgd/T(p)"]
    assert a.status == b.status == "finished" and a.steps == b.steps == 60
    # the parameters of the two Path-SGD runs stay related by T_beta, step after step
    assert_close(rescale(net.graph, a.p, race.beta), b.p, rtol=1e-10,
                 scale=np.max(np.abs(b.p)))
    assert race.path_sgd_parameter_gap < 1e-10
    assert race.path_sgd_max_difference < 1e-12
    # the start really is badly balanced, and SGD's two runs part
    assert np.log10(race.beta.max() / race.beta.min()) == pytest.approx(1.0)
    assert not np.allclose(race.p0, race.q0)
    assert race.runs["sgd/T(p)"].status == "finished"   # at this spread SGD still trains
    assert race.sgd_max_difference > 1e-2
    sgd_p = [h["train_loss"] for h in race.runs["sgd/p"].history if h["train_loss"]]
    sgd_q = [h["train_loss"] for h in race.runs["sgd/T(p)"].history if h["train_loss"]]
    assert sgd_p[0] == sgd_q[0]          # the same function at step 1 ...
    assert sgd_p[1:3] != sgd_q[1:3]      # ... and different ones after one SGD step
    d = race.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d["sgd_unbalanced_smaller_rates"]) == {"0.005"}
    assert d["path_sgd_balanced"]["test_mse"] == pytest.approx(
        d["path_sgd_unbalanced"]["test_mse"], rel=1e-12)


def test_path_sgd_with_its_own_calibration_would_not_coincide():
    """Why the race shares the step scale: the default calibration depends on the
    parametrisation (pathgeom.optim), so the run from T_beta(p) would differ."""
    net = pathgeom.mlp([4, 8, 1])
    race = rescaled_race(net, Sum(), 5, 3.0, sgd_lr=0.05, path_sgd_lr=0.5,
                         sgd_smaller_lrs=())
    own = pathgeom.make_optimizer("path-sgd", 0.5)
    res = pathgeom.train(net, Sum(), own, 5, batch_size=32, p0=race.q0, progress=False,
                         rng=np.random.default_rng(0))
    assert own.c != pytest.approx(race.setup["path_sgd_scale"], rel=1e-6)
    assert res.test_loss != pytest.approx(race.runs["path-sgd/T(p)"].test_loss, rel=1e-9)


def test_the_default_race_tells_the_story():
    """The figure's claims, on the settings `pathgeom invariance --train` uses."""
    pytest.importorskip("sklearn")
    net, task, s = experiments.race_preset("mlp")
    race = rescaled_race(net, task, s["steps"], s["spread"], sgd_lr=s["sgd_lr"],
                         path_sgd_lr=s["path_sgd_lr"], batch_size=s["batch_size"])
    d = race.to_dict()
    assert d["path_sgd_max_difference"] < 1e-12
    assert d["sgd_max_difference"] > 1.0
    assert d["sgd_balanced"]["status"] == "finished"
    assert d["sgd_balanced"]["test_accuracy"] > 0.9
    assert d["sgd_unbalanced"]["status"] == "diverged"
    for r in d["sgd_unbalanced_smaller_rates"].values():     # slowed: far below
        assert r["test_accuracy"] < 0.8
    assert d["path_sgd_unbalanced"]["test_accuracy"] > 0.9


def test_cli_train_json_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    out, err = io.StringIO(), io.StringIO()
    fig = tmp_path / "race.png"
    status = cli.main(["invariance", "--train", "--net", "rnn", "--steps", "12", "--out",
                       str(fig), "--json"], out=out, err=err)
    assert status == 0, err.getvalue()
    d = json.loads(out.getvalue())            # exactly one JSON object on stdout
    assert d["path_sgd_max_difference"] < 1e-12
    assert {"sgd_max_difference", "sgd_balanced", "sgd_unbalanced"} <= set(d)
    assert "--steps 12" in d["setup"]["command"]
    assert fig.stat().st_size > 10_000 and fig.read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in err.getvalue()


def test_cli_train_text_and_refusals(tmp_path):
    pytest.importorskip("matplotlib")
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["invariance", "--train", "--net", "rnn", "--steps", "5", "--out",
                     str(tmp_path / "f.png")], out=out, err=err) == 0
    assert "Path-SGD" in out.getvalue() and "wrote" in out.getvalue()
    err = io.StringIO()
    assert cli.main(["invariance", "--train", "--net", "chain"], out=io.StringIO(),
                    err=err) == 2
    assert "--train" in err.getvalue()
    for extra in (["--steps", "3"], ["--spread", "2"], ["--out", "x.png"]):
        err = io.StringIO()
        assert cli.main(["invariance"] + extra, out=io.StringIO(), err=err) == 2
        assert "belong to --train" in err.getvalue()
    params = tmp_path / "p.txt"
    params.write_text("1 2 3")
    err = io.StringIO()
    assert cli.main(["invariance", "--train", "--params", str(params)], out=io.StringIO(),
                    err=err) == 2
    assert "--init-from" in err.getvalue()


def test_train_init_from_starts_from_the_file(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    args = ["train", "--steps", "6", "--T", "6", "--hidden", "5", "--quiet",
            "--eval-every", "3"]
    assert cli.main(args + ["--out", str(first)], out=io.StringIO(),
                    err=io.StringIO()) == 0
    assert cli.main(args + ["--out", str(second), "--init-from",
                            str(first / "params.npz")], out=io.StringIO(),
                    err=io.StringIO()) == 0
    _, p_end = pathgeom.load_params(str(first / "params.npz"))
    hist_a = json.loads((first / "result.json").read_text())
    hist_b = (second / "history.csv").read_text().splitlines()
    start_b = float(hist_b[1].split(",")[2])
    assert_close(start_b, hist_a["test_loss"])        # b starts where a ended
    config = experiments.read_run_config(str(second))
    assert config["init_from"] == str(first / "params.npz")
    err = io.StringIO()
    assert cli.main(args + ["--hidden", "4", "--init-from", str(first / "params.npz")],
                    out=io.StringIO(), err=err) == 2
    assert "init_from" in err.getvalue() and "parameters" in err.getvalue()
    err = io.StringIO()
    assert cli.main(args + ["--init-from", str(tmp_path / "missing.npz")],
                    out=io.StringIO(), err=err) == 2
    assert "no such file" in err.getvalue()


def test_train_init_from_a_text_file_is_the_same_run_as_p0(tmp_path):
    config = experiments.make_config(steps=4, T=5, hidden=[3], eval_every=2)
    task, net, opt, p0, rng = experiments._build(config)
    start = np.random.default_rng(7).uniform(-0.3, 0.3, net.n_params)
    path = tmp_path / "start.txt"
    path.write_text("# a start\n" + " ".join(repr(float(x)) for x in start))
    row = experiments.run_config(dict(config, init_from=str(path)))
    ref = pathgeom.train(net, task, opt, 4, batch_size=config["batch"], rng=rng, p0=start,
                         eval_every=2, progress=False, log_every=10)
    assert row["test_loss"] == ref.test_loss


def test_cli_train_without_matplotlib_says_what_to_install(monkeypatch, tmp_path):
    from test_cli_train import block_import
    block_import(monkeypatch, "matplotlib")
    err = io.StringIO()
    status = cli.main(["invariance", "--train", "--net", "rnn", "--steps", "2", "--out",
                       str(tmp_path / "f.png")], out=io.StringIO(), err=err)
    assert status == 1 and "pathgeom[plot]" in err.getvalue()
    assert not (tmp_path / "f.png").exists()
