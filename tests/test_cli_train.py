"""The training commands: train, evaluate, plot, sweep, figure2, and the demo's race."""

import builtins
import io
import json

import pytest

from pathgeom import _cli_train, cli, experiments


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([str(a) for a in argv], out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def block_import(monkeypatch, *names):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in names:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake)


TINY = ["--T", "6", "--hidden", "4", "--steps", "20", "--batch", "8", "--eval-every", "10",
        "--quiet"]


def test_train_writes_a_reloadable_run(tmp_path):
    out_dir = tmp_path / "run"
    status, out, _ = run("train", "--task", "adding", *TINY, "--optimizer", "path-adam",
                         "--lr", "1e-3", "--out", out_dir)
    assert status == 0 and "test MSE:" in out
    for name in ("history.csv", "history.json", "params.npz", "run.json"):
        assert (out_dir / name).exists()
    metric = float(out.split("test MSE:")[1].split()[0])
    status, out2, _ = run("evaluate", out_dir)
    assert status == 0 and float(out2.split("test MSE:")[1].split()[0]) == pytest.approx(metric)
    config = json.loads((out_dir / "run.json").read_text())["config"]
    assert config["optimizer"] == "path-adam" and config["hidden"] == [4]


def test_divergence_is_reported_with_status_1(tmp_path):
    status, out, _ = run("train", "--task", "adding", *TINY, "--optimizer", "sgd", "--lr",
                         "1e30", "--out", tmp_path / "bad")
    assert status == 1 and "DIVERGED" in out
    assert (tmp_path / "bad" / "params.npz").exists()  # the last good parameters


def test_charlm_run():
    status, out, _ = run("train", "--task", "charlm", "--T", "8", "--hidden", "6", "--steps",
                         "5", "--batch", "4", "--quiet", "--optimizer", "path-sgd", "--lr", "1e-6")
    assert status == 0 and "test bits/char:" in out


def test_plot_needs_matplotlib(tmp_path, monkeypatch):
    run("train", "--task", "adding", *TINY, "--out", tmp_path / "a")
    block_import(monkeypatch, "matplotlib")
    status, _, err = run("plot", tmp_path / "a", "--out", tmp_path / "c.png")
    assert status == 1 and "pip install 'pathgeom[plot]'" in err


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    for opt in ("sgd", "path-sgd"):
        run("train", "--task", "adding", *TINY, "--optimizer", opt, "--lr", "1e-6",
            "--out", tmp_path / opt)
    status, out, _ = run("plot", tmp_path / "sgd", tmp_path / "path-sgd", "--out",
                         tmp_path / "c.png")
    assert status == 0 and (tmp_path / "c.png").stat().st_size > 1000


def test_plot_labels_name_the_method_and_keep_every_run(tmp_path, monkeypatch):
    """IRNN and np-RNN runs are labelled by their initialisation; runs with the same settings
    (two sweeps, or T = 6 and T = 8) each keep a curve of their own."""
    seen = {}
    monkeypatch.setattr(_cli_train, "_plot_histories",
                        lambda histories, path, err: seen.update(histories) or path)
    small = [a for a in TINY if a not in ("6",)]
    small.remove("--T")
    for name, extra in (("a/x", ["--T", "6"]), ("b/x", ["--T", "6"]), ("c", ["--T", "8"]),
                        ("np", ["--T", "6", "--init", "np-rnn", "--clip", "1"])):
        assert run("train", "--task", "adding", *small, *extra, "--optimizer", "sgd", "--lr",
                   "1e-3", "--out", tmp_path / name)[0] == 0
    seen.clear()   # (train plots its own run's curves too)
    _cli_train._plot_runs([str(tmp_path / n) for n in ("a/x", "b/x", "c", "np")], "x.png",
                          None)
    assert sorted(seen) == ["irnn lr=0.001 seed=0 T=6 (a)", "irnn lr=0.001 seed=0 T=6 (b)",
                            "irnn lr=0.001 seed=0 T=8", "np-rnn lr=0.001 seed=0 clip=1 T=6"]


def test_sweep(tmp_path):
    status, out, _ = run("sweep", *TINY, "--lrs", "1e-3,1e-4", "--optimizers", "sgd,path-adam",
                         "--jobs", "2", "--out", tmp_path / "s")
    assert status == 0 and "4 of 4 runs have results" in out
    lines = (tmp_path / "s" / "table.csv").read_text().splitlines()
    assert lines[0].startswith("run,optimizer,rule,lr,seed") and len(lines) == 5
    assert all(",finished,20," in line for line in lines[1:])


def test_sweep_on_a_local_dask_cluster(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=":0") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        status, out, _ = run("sweep", *TINY, "--lrs", "1e-3", "--optimizers", "sgd",
                             "--scheduler", cluster.scheduler_address, "--out", tmp_path / "d")
    assert status == 0 and "1 of 1 runs have results" in out


def test_paper_preset_grid_and_irnn_selection():
    args = cli._parser().parse_args(["sweep", "--preset", "paper", "--irnn-inits", "3",
                                     "--seeds", "0"])
    grid = _cli_train._grid(args)
    assert sorted({c["lr"] for c in grid}) == [1e-4, 1e-3, 1e-2]
    assert sum(c["optimizer"] == "sgd" for c in grid) == 3 * 3
    assert sum(c["optimizer"] == "path-sgd" for c in grid) == 3
    # every IRNN initialisation of a cell is scored on its base seed's data
    assert {c["data_seed"] for c in grid} == {0}
    rows = [dict(optimizer="sgd", lr=1e-3, seed=1000 * base + k, data_seed=base,
                 test_loss=test, valid_loss=None if valid is None else valid + base,
                 status=status)
            for base in (0, 1)
            for k, (test, valid, status) in enumerate([(0.1, 0.5, "finished"),
                                                       (None, None, "diverged"),
                                                       (0.9, 0.2, "finished")])]
    rows.append(dict(optimizer="path-sgd", lr=1e-3, seed=0, data_seed=0, test_loss=0.1,
                     valid_loss=0.3, status="finished"))
    kept = [r for r in experiments.select_irnn(rows) if r["selected"]]
    # chosen on the validation loss, not on the (here contrary) test loss
    assert sorted((r["optimizer"], r["seed"]) for r in kept) == [
        ("path-sgd", 0), ("sgd", 2), ("sgd", 1002)]


def test_cli_errors_are_messages(tmp_path):
    status, _, err = run("train", "--task", "charlm", "--data", tmp_path / "missing", *TINY)
    assert status == 2 and "error:" in err and "Traceback" not in err
    status, _, err = run("sweep", *TINY, "--optimizers", "adam", "--out", tmp_path / "s")
    assert status == 2 and "unknown optimizer" in err
    status, _, err = run("evaluate", tmp_path)
    assert status == 2 and "pathgeom train --out" in err and "run.json" in err


def test_figure2_table():
    status, out, _ = run("figure2", "--Ts", "4,6", "--Hs", "3", "--train-steps", "3",
                         "--quiet")
    assert status == 0
    rows = [l.split() for l in out.splitlines()[2:]]
    assert [r[:2] for r in rows] == [["4", "3"], ["6", "3"]]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)


def test_adding_race_verdict_is_read_from_the_runs():
    out, err = io.StringIO(), io.StringIO()
    best = _cli_train.adding_race(T=6, H=4, steps=30, seed=0, out=out, err=err, plot=None)
    text = out.getvalue()
    verdict = next(l for l in text.splitlines() if l.startswith("verdict:"))
    winner = min(best, key=lambda k: best[k][0])
    assert verdict.startswith(f"verdict: {winner} ")
    assert f"{best[winner][0]:.3g}" in verdict
