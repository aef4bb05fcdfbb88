"""Training you can trust: divergence reported, run directories that never lose data, exact
resume, sweeps that survive, arguments checked before any work, the default Path-SGD rule."""

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pathgeom
from pathgeom import cli, experiments, runs
from pathgeom.optim import STEP_RULES, PathSGD
from pathgeom.tasks import make_task
from pathgeom.training import make_optimizer, train


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([str(a) for a in argv], out=out, err=err)
    return status, out.getvalue(), err.getvalue()


TINY = ["--T", "6", "--hidden", "4", "--batch", "8", "--eval-every", "10", "--quiet"]


def snapshot(directory):
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


# ---------------------------------------------------------------- the default rule


class TestDefaultRule:
    @pytest.mark.parametrize("lr", [1e-2, 1e-3, 1e-4])
    def test_paper_grid_does_not_blow_up(self, lr):
        """The paper's rates with the default rule, 400 steps at T = 50, H = 32 from the
        IRNN initialisation: finite, never flagged, no worse than 1.5x the start (the raw
        eq. (8) step blows the same network up at step 2 at every one of these rates)."""
        task = make_task("adding", T=50, seed=0)
        net = pathgeom.rnn(2, 32, 1, 50)
        res = train(net, task, make_optimizer("path-sgd", lr), 400, rng=0, eval_every=100,
                    progress=False, threads=1)
        assert res.status == "finished"
        assert res.test_loss <= 1.5 * res.history[0]["test_loss"]
        raw = train(net, task, make_optimizer("path-sgd", lr, rule="raw"), 400, rng=0,
                    eval_every=100, progress=False, threads=1)
        assert raw.status == "diverged" and raw.steps < 5

    def test_backtracking_halves_until_the_batch_loss_does_not_increase(self):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
        losses = []

        def loss(q):
            losses.append(q.copy())
            return (q[0] * q[1] - 3.0) ** 2

        p = np.array([0.5, 2.0])
        grad = np.array([2 * (1 - 3) * 2.0, 2 * (1 - 3) * 0.5])
        opt = PathSGD(lr=10.0)  # a far too long first step
        new = opt.step(p, grad, g, loss=loss)
        tried = losses[1:]  # losses[0] is the loss at p
        assert loss(new) <= loss(p)
        full = PathSGD(lr=10.0, rule="calibrated").step(p, grad, g)
        d = p - full
        assert opt.s < 1 and opt.halvings >= 1
        np.testing.assert_allclose(new, p - opt.s * d, rtol=1e-15)
        # every larger scale that was tried increased the loss
        assert len(tried) == opt.halvings + 1
        for q in tried[:-1]:
            assert (q[0] * q[1] - 3.0) ** 2 > (p[0] * p[1] - 3.0) ** 2
        # the scale carries over and doubles back towards 1 when steps succeed
        s = opt.s
        opt.step(new, np.zeros(2), g, loss=loss)
        assert opt.s == min(1.0, 2 * s)

    def test_calibration_constant_is_fixed_at_the_first_step(self):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
        opt = PathSGD(lr=0.1, rule="calibrated")
        p, grad = np.array([0.5, 2.0]), np.array([1.0, -2.0])
        new = opt.step(p, grad, g)
        u = grad / np.array([4.0, 0.25])
        assert opt.c == pytest.approx(np.linalg.norm(grad) / np.linalg.norm(u), rel=1e-15)
        c = opt.c
        opt.step(new, 3 * grad, g)
        assert opt.c == c
        opt.reset()
        assert opt.c is None

    def test_rescaling_commutes_with_the_calibrated_step_for_a_fixed_constant(self):
        net = pathgeom.rnn(1, 3, 1, T=4)
        rng = np.random.default_rng(2)
        p = net.init(rng, "uniform", scale=0.7)
        alpha = [rng.uniform(0.5, 2.0, 3)]
        q = net.rescale_units(p, alpha)
        X = rng.normal(size=(5, 4, 1))
        Y = rng.normal(size=(5, 1))
        grads = [net.backward(v, X, 2 * (net.forward(v, X) - Y) / Y.size) for v in (p, q)]
        a = PathSGD(0.05, rule="calibrated", scale=3.0).step(p, grads[0], net)
        b = PathSGD(0.05, rule="calibrated", scale=3.0).step(q, grads[1], net)
        np.testing.assert_allclose(net.rescale_units(a, alpha), b, rtol=1e-12, atol=1e-15)

    def test_state_dict_round_trip(self):
        g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
        for name in ("path-sgd", "path-adam", "sgd"):
            opt = make_optimizer(name, 0.1)
            p = np.array([0.5, 2.0])
            loss = lambda q: float(q @ q)  # noqa: E731
            p = opt.step(p, np.array([1.0, -1.0]), g, loss=loss)
            state = opt.state_dict()
            twin = make_optimizer(name, 0.1)
            twin.load_state_dict(state)
            np.testing.assert_array_equal(opt.step(p, np.ones(2), g, loss=loss),
                                          twin.step(p, np.ones(2), g, loss=loss))


# ---------------------------------------------------------------- divergence


class TestDivergence:
    def test_blow_up_is_flagged_and_exits_1(self, tmp_path):
        status, out, _ = run("train", *TINY, "--steps", "200", "--optimizer", "sgd", "--lr",
                             "30", "--out", tmp_path / "r")
        assert status == 1 and "DIVERGED" in out
        result = json.loads((tmp_path / "r" / "result.json").read_text())
        assert result["status"] == "diverged" and result["diverged"] is True
        bound = 100 * result["initial_test_loss"]
        assert result["test_loss"] is not None and result["test_loss"] <= bound
        net, p = pathgeom.load_params(tmp_path / "r" / "params.npz")
        assert np.isfinite(p).all()

    def test_factor_bound_stops_before_overflow(self):
        task = make_task("adding", T=6, seed=0)
        net = pathgeom.rnn(2, 4, 1, 6)
        res = train(net, task, make_optimizer("sgd", 30.0), 200, batch_size=8, rng=0,
                    progress=False, diverge_factor=10)
        assert res.status == "diverged" and "above 10 x the initial test loss" in res.message
        assert res.test_loss <= 10 * res.history[0]["test_loss"]
        # the kept parameters' losses were all below the bound
        assert all(h["train_loss"] is None or h["train_loss"] <= 10 * res.history[0]["test_loss"]
                   for h in res.history)

    def test_bad_factor(self):
        task = make_task("adding", T=6, seed=0)
        with pytest.raises(ValueError, match="diverge_factor must be a number > 1"):
            train(pathgeom.rnn(2, 4, 1, 6), task, make_optimizer("sgd", 0.1), 1,
                  diverge_factor=0.5, progress=False)


# ---------------------------------------------------------------- run directories


class TestRunDirectories:
    def test_existing_out_is_refused_and_left_byte_identical(self, tmp_path):
        out_dir = tmp_path / "r"
        assert run("train", *TINY, "--steps", "20", "--out", out_dir)[0] == 0
        before = snapshot(out_dir)
        started = time.perf_counter()
        status, _, err = run("train", *TINY, "--steps", "20000", "--out", out_dir)
        assert status == 2 and "--resume" in err and "--overwrite" in err
        assert time.perf_counter() - started < 5  # refused before any training
        assert snapshot(out_dir) == before

    def test_out_that_is_a_file_is_refused_at_once(self, tmp_path):
        f = tmp_path / "file"
        f.write_bytes(b"precious")
        status, _, err = run("train", *TINY, "--steps", "20000", "--out", f)
        assert status == 2 and "is a file" in err
        assert f.read_bytes() == b"precious"

    def test_overwrite(self, tmp_path):
        out_dir = tmp_path / "r"
        run("train", *TINY, "--steps", "10", "--out", out_dir)
        (out_dir / "notes.txt").write_text("mine")
        status, _, _ = run("train", *TINY, "--steps", "15", "--out", out_dir, "--overwrite")
        assert status == 0 and (out_dir / "notes.txt").read_text() == "mine"
        assert json.loads((out_dir / "result.json").read_text())["steps"] == 15

    def test_checkpoints_are_written_during_the_run(self, tmp_path):
        seen = []

        def stop():
            seen.append(runs.load_checkpoint(tmp_path)["step"]
                        if runs.has_checkpoint(tmp_path) else None)
            return False
        task = make_task("adding", T=6, seed=0)
        train(pathgeom.rnn(2, 4, 1, 6), task, make_optimizer("sgd", 0.01), 30, batch_size=4,
              progress=False, out_dir=tmp_path, checkpoint_every=10, should_stop=stop)
        # seen[k] is read after step k + 1
        assert seen[8] is None and seen[9] == 10 and seen[24] == 20
        assert json.loads((tmp_path / "result.json").read_text())["status"] == "finished"

    def test_damaged_files_are_named(self, tmp_path):
        out_dir = tmp_path / "r"
        run("train", *TINY, "--steps", "5", "--out", out_dir)
        (out_dir / "run.json").write_text("{not json")
        status, _, err = run("evaluate", out_dir)
        assert status == 2 and "run.json is damaged" in err
        np.savez(tmp_path / "bad.npz", p=np.zeros(3))
        with pytest.raises(runs.RunDirError, match=r"bad.npz has no 'kind'"):
            runs.load_params(tmp_path / "bad.npz")
        np.save(tmp_path / "single.npy", np.zeros(3))
        os.rename(tmp_path / "single.npy", tmp_path / "single.npz")
        with pytest.raises(runs.RunDirError, match="single.npz"):
            runs.load_params(tmp_path / "single.npz")

    def test_crafted_sizes_are_refused_before_allocating(self, tmp_path):
        np.savez(tmp_path / "huge.npz", p=np.zeros(3), kind="rnn", n_in=1,
                 hidden=np.array([2 ** 20]), n_out=1, T=5, outputs="last", bias=False)
        with pytest.raises(runs.RunDirError, match="larger than load_params accepts"):
            runs.load_params(tmp_path / "huge.npz")


# ---------------------------------------------------------------- exact resume


class TestResume:
    @pytest.mark.parametrize("name", ["path-sgd", "path-adam", "sgd"])
    @pytest.mark.parametrize("stop_at", [1, 37, 99])
    def test_interrupted_then_resumed_equals_uninterrupted(self, tmp_path, name, stop_at):
        task = make_task("adding", T=8, seed=0)
        net = pathgeom.rnn(2, 5, 1, 8)
        kw = dict(batch_size=8, eval_every=25, progress=False, checkpoint_every=30)
        whole = train(net, task, make_optimizer(name, 1e-2), 100, rng=3,
                      out_dir=tmp_path / "a", **kw)
        calls = []
        part = train(net, task, make_optimizer(name, 1e-2), 100, rng=3,
                     out_dir=tmp_path / "b", should_stop=lambda: calls.append(1) or
                     len(calls) == stop_at, **kw)
        assert part.status == "interrupted" and part.steps == stop_at
        result = json.loads((tmp_path / "b" / "result.json").read_text())
        assert result["status"] == "interrupted" and result["test_loss"] is not None
        resumed = train(net, task, make_optimizer(name, 1e-2), 100, out_dir=tmp_path / "b",
                        resume=True, **kw)
        assert resumed.status == "finished" and resumed.resumed_from == stop_at
        np.testing.assert_array_equal(resumed.p, whole.p)
        assert resumed.history == whole.history
        assert json.loads((tmp_path / "b" / "result.json").read_text())["resumed_from"] \
            == stop_at

    def test_resume_checks_the_configuration(self, tmp_path):
        task = make_task("adding", T=8, seed=0)
        net = pathgeom.rnn(2, 5, 1, 8)
        train(net, task, make_optimizer("sgd", 1e-2), 10, batch_size=4, progress=False,
              out_dir=tmp_path)
        with pytest.raises(runs.RunDirError, match="optimizer"):
            train(net, task, make_optimizer("sgd", 1e-3), 20, batch_size=4, progress=False,
                  out_dir=tmp_path, resume=True)

    def test_resuming_a_finished_run_changes_nothing(self, tmp_path):
        out_dir = tmp_path / "r"
        run("train", *TINY, "--steps", "20", "--out", out_dir)
        before = snapshot(out_dir)
        status, out, _ = run("train", "--resume", out_dir, "--quiet")
        assert status == 0 and "finished" in out
        assert snapshot(out_dir) == before

    def test_resume_extends_with_steps_and_refuses_other_flags(self, tmp_path):
        out_dir = tmp_path / "r"
        run("train", *TINY, "--steps", "20", "--out", out_dir, "--optimizer", "path-adam")
        status, _, err = run("train", "--resume", out_dir, "--lr", "0.5")
        assert status == 2 and "--lr cannot be changed" in err
        status, out, _ = run("train", "--resume", out_dir, "--steps", "30", "--quiet")
        assert status == 0 and "resumed from step 20" in out
        whole = tmp_path / "w"
        run("train", *TINY, "--steps", "30", "--out", whole, "--optimizer", "path-adam")
        _, a = pathgeom.load_params(out_dir / "params.npz")
        _, b = pathgeom.load_params(whole / "params.npz")
        np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
    def test_a_real_signal_mid_run_then_resume(self, tmp_path, sig):
        """The command line under SIGINT/SIGTERM: no traceback, status interrupted, exit 130,
        and the resumed run equals the uninterrupted one bit for bit."""
        args = ["--T", "30", "--hidden", "16", "--batch", "16", "--steps", "3000",
                "--eval-every", "500", "--checkpoint-every", "200", "--quiet",
                "--optimizer", "path-sgd", "--lr", "0.01"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([sys.executable, "-m", "pathgeom", "train", *args, "--out",
                                 str(tmp_path / "b")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.time() + 120
        while not runs.has_checkpoint(tmp_path / "b") and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "INTERRUPTED" in out
        result = json.loads((tmp_path / "b" / "result.json").read_text())
        assert result["status"] == "interrupted" and 0 < result["steps"] < 3000
        assert run("train", "--resume", tmp_path / "b", "--quiet")[0] == 0
        assert run("train", *args, "--out", tmp_path / "a")[0] == 0
        _, a = pathgeom.load_params(tmp_path / "a" / "params.npz")
        _, b = pathgeom.load_params(tmp_path / "b" / "params.npz")
        np.testing.assert_array_equal(a, b)


    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
    @pytest.mark.parametrize("scheduler", [None, "local"])
    def test_a_signal_to_the_whole_process_group_stops_a_sweep_cleanly(self, tmp_path, sig,
                                                                       scheduler):
        """Ctrl-C in a terminal signals the sweep *and* its worker processes (one process
        group). The workers must not die of it, the busy one nor the idle one (its run,
        at lr 1e4, diverged at once): the running run checkpoints and ends as interrupted,
        the sweep exits 130, and no worker process is left behind."""
        out = tmp_path / "s"
        argv = [sys.executable, "-m", "pathgeom", "sweep", "--T", "30", "--hidden", "16",
                "--batch", "16", "--steps", "200000", "--eval-every", "500",
                "--checkpoint-every", "200", "--lrs", "0.01,1e4", "--optimizers", "sgd",
                "--jobs", "2", "--quiet", "--out", str(out)]
        if scheduler:
            argv += ["--scheduler", scheduler]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        run_dir, idle = out / "sgd-lr0.01-seed0", out / "sgd-lr10000.0-seed0"
        deadline = time.time() + 120
        while not (runs.has_checkpoint(run_dir) and (idle / "result.json").exists()) \
                and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, sig)
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        result = json.loads((run_dir / "result.json").read_text())
        assert result["status"] == "interrupted" and 0 < result["steps"] < 200000
        assert runs.load_checkpoint(run_dir)["step"] == result["steps"]
        assert json.loads((idle / "result.json").read_text())["status"] == "diverged"
        table = (out / "table.csv").read_text()
        assert ",interrupted," in table and ",diverged," in table
        deadline = time.time() + 30
        while time.time() < deadline:   # the group empties: no orphaned worker
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("worker processes outlived the sweep")


# ---------------------------------------------------------------- arguments


class TestArguments:
    @pytest.mark.parametrize("argv, match", [
        (["--T", "0"], "T must be an integer >= 2"),
        (["--task", "adding", "--data", "x"], "takes no data directory"),
        (["--task", "digits", "--T", "10"], "digits task has no T"),
        (["--optimizer", "sgd", "--rule", "raw"], "--rule applies to path-sgd only"),
        (["--optimizer", "sgd", "--curvature", "kappa"], "--curvature applies"),
        (["--hidden", "0"], "hidden must be a list of positive integers"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--batch", "0"], "batch must be an integer >= 1"),
        (["--threads", "0"], "threads must be an integer >= 1"),
        (["--diverge-factor", "1"], "diverge_factor must be a finite number > 1"),
    ])
    def test_refused_before_training(self, tmp_path, argv, match):
        status, _, err = run("train", *argv, "--steps", "100000", "--out", tmp_path / "r")
        assert status == 2 and match in err
        assert not (tmp_path / "r").exists()

    def test_every_default_is_in_help(self, capsys):
        with pytest.raises(SystemExit):
            cli.main(["train", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for key, value in experiments.DEFAULTS.items():
            flag = "--" + key.replace("_", "-")
            assert flag in text, flag
        for shown in ("(default: 0.001)", "(default: path-sgd)", "(default: backtracking)",
                      "(default: 100.0)", "(default: 500)", "(default: 1)"):
            assert shown in text
        assert all(rule in text for rule in STEP_RULES)

    def test_a_sweep_run_reruns_on_its_own_with_its_data_seed(self, tmp_path):
        """IRNN initialisation k of a sweep cell is seed k on the cell's data (data_seed 0):
        --seed k --data-seed 0 gives the same run, --seed k alone a different test set."""
        assert run("sweep", *TINY, "--steps", "6", "--lrs", "0.01", "--optimizers", "sgd",
                   "--irnn-inits", "2", "--jobs", "1", "--out", tmp_path / "s")[0] == 0
        swept = tmp_path / "s" / "sgd-lr0.01-seed1"
        args = ("train", *TINY, "--steps", "6", "--optimizer", "sgd", "--lr", "0.01",
                "--seed", "1")
        assert run(*args, "--data-seed", "0", "--out", tmp_path / "alone")[0] == 0
        assert run(*args, "--out", tmp_path / "other")[0] == 0

        def result(d):
            r = json.loads((d / "result.json").read_text())
            return r["initial_test_loss"], r["test_loss"]
        assert result(tmp_path / "alone") == result(swept)
        assert result(tmp_path / "other")[0] != result(swept)[0]
        assert experiments.read_run_config(tmp_path / "alone")["data_seed"] == 0
        _, a = pathgeom.load_params(tmp_path / "alone" / "params.npz")
        _, b = pathgeom.load_params(swept / "params.npz")
        np.testing.assert_array_equal(a, b)

    def test_thread_setting_is_recorded(self, tmp_path):
        run("train", *TINY, "--steps", "3", "--threads", "2", "--out", tmp_path / "r")
        result = json.loads((tmp_path / "r" / "result.json").read_text())
        assert result["config"]["threads"] == 2


# ---------------------------------------------------------------- sweeps


class TestSweep:
    def test_near_equal_rates_get_separate_directories(self, tmp_path):
        status, out, _ = run("sweep", *TINY, "--steps", "5", "--lrs", "0.001,0.0010000001",
                             "--optimizers", "sgd", "--jobs", "1", "--out", tmp_path / "s")
        assert status == 0
        dirs = sorted(d for d in os.listdir(tmp_path / "s") if d.startswith("sgd-"))
        assert dirs == ["sgd-lr0.001-seed0", "sgd-lr0.0010000001-seed0"]
        for d in dirs:
            config = json.loads((tmp_path / "s" / d / "run.json").read_text())["config"]
            assert repr(config["lr"]) == d.split("-lr")[1].split("-seed")[0]

    def test_duplicates_refused(self, tmp_path):
        status, _, err = run("sweep", *TINY, "--lrs", "0.001,0.001", "--out", tmp_path / "s")
        assert status == 2 and "twice" in err

    def test_existing_sweep_refused_then_resumed(self, tmp_path):
        base = ["sweep", *TINY, "--lrs", "0.01,0.001", "--optimizers", "sgd", "--jobs", "2",
                "--out", tmp_path / "s"]
        assert run(*base, "--steps", "10")[0] == 0
        table = (tmp_path / "s" / "table.csv").read_bytes()
        status, _, err = run(*base, "--steps", "10")
        assert status == 2 and "--resume" in err
        assert (tmp_path / "s" / "table.csv").read_bytes() == table
        # resuming a finished grid runs nothing and keeps every run's files
        before = snapshot(tmp_path / "s" / "sgd-lr0.01-seed0")
        assert run("sweep", "--out", tmp_path / "s", "--resume", "--quiet")[0] == 0
        assert snapshot(tmp_path / "s" / "sgd-lr0.01-seed0") == before
        # --steps extends every run from its checkpoint, equal to a longer fresh run
        assert run("sweep", "--out", tmp_path / "s", "--resume", "--steps", "20",
                   "--quiet")[0] == 0
        rows = (tmp_path / "s" / "table.csv").read_text().splitlines()[1:]
        assert len(rows) == 2 and all(",finished,20," in r for r in rows)
        fresh = tmp_path / "fresh"
        run("train", *TINY, "--optimizer", "sgd", "--lr", "0.01", "--steps", "20", "--out",
            fresh)
        _, a = pathgeom.load_params(fresh / "params.npz")
        _, b = pathgeom.load_params(tmp_path / "s" / "sgd-lr0.01-seed0" / "params.npz")
        np.testing.assert_array_equal(a, b)

    def test_interrupted_run_in_a_sweep_is_resumed(self, tmp_path):
        configs = [experiments.make_config(T=6, hidden=[4], batch=8, steps=40, optimizer="sgd",
                                           lr=0.01, checkpoint_every=10)]
        d = tmp_path / "s" / experiments.run_dir_name(configs[0])
        calls = []
        experiments.run_config(configs[0], d, should_stop=lambda: calls.append(1) or
                               len(calls) == 15)
        assert json.loads((d / "result.json").read_text())["status"] == "interrupted"
        rows = experiments.sweep(configs, tmp_path / "s", jobs=1, resume=True, progress=False)
        assert rows[0]["status"] == "finished" and rows[0]["steps"] == 40
        assert json.loads((d / "result.json").read_text())["resumed_from"] == 15

    def test_status_reads_where_each_run_stands_without_writing(self, tmp_path):
        def config(lr, steps=40):
            return experiments.make_config(T=6, hidden=[4], batch=8, steps=steps,
                                           optimizer="sgd", lr=lr, eval_every=10,
                                           checkpoint_every=10)
        sweep_dir = tmp_path / "s"
        experiments.sweep([config(0.01), config(1e4)], sweep_dir, jobs=1, progress=False)
        status, out, _ = run("status", sweep_dir)     # one finished, one diverged: nothing left
        assert status == 0 and "2 runs: 1 finished, 1 diverged" in out and "more" not in out

        def stop_after(n):
            calls = []
            return lambda: calls.append(1) or len(calls) > n
        # interrupted after 15 updates
        d = sweep_dir / experiments.run_dir_name(config(0.002))
        experiments.run_config(config(0.002), d, should_stop=stop_after(15))
        # under way: resumed from 15, checkpointed at 25, result.json still the old one
        d = sweep_dir / experiments.run_dir_name(config(0.003))
        experiments.run_config(config(0.003), d, should_stop=stop_after(15))
        old = (d / "result.json").read_bytes()
        experiments.resume_run(d, should_stop=stop_after(10))
        (d / "result.json").write_bytes(old)
        ckpt = runs.load_checkpoint(d)
        runs.save_checkpoint(d, dict(ckpt, status=None))
        # the grid now asks for 60 updates of the first run, and has one run not started
        grid = [config(0.01, 60), config(1e4), config(0.002), config(0.003), config(0.004)]
        runs.atomic_write_json(sweep_dir / "sweep.json", {"configs": grid})
        def tree():
            return {str(f): f.read_bytes() for f in sorted(sweep_dir.rglob("*"))
                    if f.is_file()}
        before = tree()
        rows = experiments.sweep_status(sweep_dir)
        assert tree() == before
        assert [r["run"] for r in rows] == [experiments.run_dir_name(c) for c in grid]
        assert [r["status"] for r in rows] == ["to extend", "diverged", "interrupted",
                                               "running", "not started"]
        steps = [json.loads((sweep_dir / r["run"] / "result.json").read_text())["steps"]
                 for r in rows[:4]]
        assert [r["step"] for r in rows] == steps[:3] + [ckpt["step"], 0]
        assert steps[0] == 40 and steps[1] < 40 and 0 < steps[2] < ckpt["step"] < 40
        assert steps[3] == steps[2]     # the old result.json of the run under way
        assert [r["steps"] for r in rows] == [60, 40, 40, 40, 40]
        result = json.loads((sweep_dir / rows[0]["run"] / "result.json").read_text())
        assert rows[0]["test_metric"] == result["test_metric"]
        last = [h for h in ckpt["history"] if h["test_metric"] is not None][-1]
        assert last["step"] == 20 and rows[3]["test_metric"] == last["test_metric"]
        assert rows[4]["test_metric"] is None and rows[4]["seconds"] == 0
        assert all(r["method"] == "irnn" for r in rows)
        status, out, _ = run("status", sweep_dir)
        assert status == 0 and tree() == before
        assert "5 runs: 1 to extend, 1 diverged, 1 interrupted, 1 running, 1 not started" in out
        done = sum(steps[:3]) + ckpt["step"]
        assert f"{done:,} of 220 updates done" in out
        # the time left: the updates still asked of every run but the diverged one, at the
        # rate of the runs that have done updates (not the diverged one either)
        left = (60 - steps[0]) + (40 - steps[2]) + (40 - ckpt["step"]) + 40
        timed = [rows[0], rows[2], rows[3]]
        rate = sum(r["seconds"] for r in timed) / sum(r["step"] for r in timed)
        assert f"about {left * rate / 3600:.2f} h more at {1e3 * rate:.3g} ms an update" in out
        # a directory that is not a sweep is named
        status, _, err = run("status", tmp_path)
        assert status == 2 and "no sweep.json" in err
        # a grid in which no run has done an update yet has no rate to go on
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        runs.atomic_write_json(fresh / "sweep.json", {"configs": [config(0.01), config(0.02)]})
        status, out, _ = run("status", fresh)
        assert status == 0 and "2 runs: 2 not started; 0 of 80 updates done" in out
        assert out.rstrip().endswith("; no rate yet to estimate the rest") and "h more" not in out

    def test_branch_continues_copies_of_runs_and_leaves_the_sources(self, tmp_path):
        src = tmp_path / "s"
        assert run("sweep", *TINY, "--steps", "10", "--lrs", "0.01,0.001", "--optimizers",
                   "sgd,path-sgd", "--jobs", "1", "--out", src)[0] == 0

        def tree(d):
            return {str(f): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}
        before = tree(src)
        picked = [src / "sgd-lr0.01-seed0", src / "path-sgd-lr0.001-seed0"]
        status, out, _ = run("sweep", "--from", *picked, "--steps", "20", "--jobs", "1",
                             "--quiet", "--out", tmp_path / "b")
        assert status == 0 and "2 of 2 runs have results" in out
        assert tree(src) == before
        for name in ("sgd-lr0.01-seed0", "path-sgd-lr0.001-seed0"):
            record = json.loads((tmp_path / "b" / name / "branched_from.json").read_text())
            source = runs.load_checkpoint(src / name)
            assert record == {"source": str((src / name).resolve()), "step": 10,
                              "seconds": source["seconds"]}
            result = json.loads((tmp_path / "b" / name / "result.json").read_text())
            assert 0 < experiments.own_seconds(tmp_path / "b" / name, result["seconds"]) \
                < result["seconds"]
        assert experiments.own_seconds(src / "sgd-lr0.01-seed0", 5.0) == 5.0
        rows = experiments.sweep_status(tmp_path / "b")
        assert [(r["run"], r["status"], r["step"]) for r in rows] == [
            ("sgd-lr0.01-seed0", "finished", 20), ("path-sgd-lr0.001-seed0", "finished", 20)]
        # continuing a copy is continuing the run: equal to a fresh 20-step run
        for name, opt, lr in (("sgd-lr0.01-seed0", "sgd", "0.01"),
                              ("path-sgd-lr0.001-seed0", "path-sgd", "0.001")):
            fresh = tmp_path / ("fresh-" + name)
            run("train", *TINY, "--optimizer", opt, "--lr", lr, "--steps", "20", "--out", fresh)
            _, a = pathgeom.load_params(fresh / "params.npz")
            _, b = pathgeom.load_params(tmp_path / "b" / name / "params.npz")
            np.testing.assert_array_equal(a, b)
            result = json.loads((tmp_path / "b" / name / "result.json").read_text())
            assert result["resumed_from"] == 10
        # the branch is an ordinary sweep from then on
        assert run("sweep", "--out", tmp_path / "b", "--resume", "--steps", "30",
                   "--quiet")[0] == 0
        assert {r["step"] for r in experiments.sweep_status(tmp_path / "b")} == {30}
        assert tree(src) == before
        # a fresh branch has done no updates of its own: no rate to estimate from (the
        # updates and time its copies inherited do not count)
        experiments.branch_runs(picked, tmp_path / "c", 40)
        status, out, _ = run("status", tmp_path / "c")
        assert status == 0 and "20 of 80 updates done (25 %), 0.00 h of run time" in out
        assert out.rstrip().endswith("; no rate yet to estimate the rest")

    def test_branch_refusals_write_nothing(self, tmp_path):
        src, other, long = tmp_path / "s", tmp_path / "t", tmp_path / "u"
        for d in (src, other):
            assert run("sweep", *TINY, "--steps", "10", "--lrs", "0.01,1e4", "--optimizers",
                       "sgd", "--jobs", "1", "--out", d)[0] == 0
        assert run("sweep", *TINY[2:], "--T", "7", "--steps", "10", "--lrs", "0.001",
                   "--optimizers", "sgd", "--jobs", "1", "--out", long)[0] == 0
        ok, bad = src / "sgd-lr0.01-seed0", src / "sgd-lr10000.0-seed0"
        assert json.loads((bad / "result.json").read_text())["status"] == "diverged"
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("")
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "run.json").write_text((ok / "run.json").read_text())
        out = tmp_path / "b"
        for argv, match in [
                (["--from", ok, "--out", out], "needs --steps"),
                (["--from", ok, "--steps", "20", "--lrs", "0.1", "--out", out],
                 "--lrs cannot be changed"),
                (["--from", ok, "--steps", "20", "--resume", "--out", out], "one of them"),
                (["--from", ok, "--steps", "5", "--out", out], "steps >= 10"),
                (["--from", bad, "--steps", "20", "--out", out], "diverged"),
                (["--from", ok, other / "sgd-lr0.01-seed0", "--steps", "20", "--out", out],
                 "separate sweeps"),
                (["--from", bare, "--steps", "20", "--out", out], "no checkpoint"),
                (["--from", ok, "--steps", "20", "--out", tmp_path / "full"],
                 "not empty"),
                (["--from", ok, long / "sgd-lr0.001-seed0", "--steps", "20", "--out", out],
                 "differ in T (6 against 7)"),
                (["--from", ok, "--steps", "20", "--threads", "2", "--out", out],
                 "--threads cannot be changed")]:
            status, _, err = run("sweep", *argv)
            assert status == 2 and match in err, (argv, err)
            assert not out.exists()
        assert not list(tmp_path.glob(".branch-*"))

    def test_a_failed_branch_leaves_nothing_and_an_empty_working_directory_works(
            self, tmp_path, monkeypatch):
        import shutil
        src = tmp_path / "s"
        assert run("sweep", *TINY, "--steps", "10", "--lrs", "0.01,0.001", "--optimizers",
                   "sgd", "--jobs", "1", "--out", src)[0] == 0
        picked = [src / "sgd-lr0.01-seed0", src / "sgd-lr0.001-seed0"]
        copy, calls = shutil.copy2, []

        def flaky(a, b, **kw):
            calls.append(a)
            if len(calls) == 9:
                raise OSError("disk full")
            return copy(a, b, **kw)
        monkeypatch.setattr(shutil, "copy2", flaky)
        with pytest.raises(OSError, match="disk full"):
            experiments.branch_runs(picked, tmp_path / "b", 20)
        assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".branch-*"))
        monkeypatch.setattr(shutil, "copy2", copy)
        # into the (empty) working directory itself
        (tmp_path / "here").mkdir()
        monkeypatch.chdir(tmp_path / "here")
        configs = experiments.branch_runs(picked, ".", 20)
        assert sorted(os.listdir(".")) == ["sgd-lr0.001-seed0", "sgd-lr0.01-seed0",
                                           "sweep.json"]
        assert [r["status"] for r in experiments.sweep_status(".")] == ["to extend"] * 2
        rows = experiments.sweep(configs, ".", jobs=1, resume=True, progress=False)
        assert [(r["status"], r["steps"]) for r in rows] == [("finished", 20)] * 2
        assert not list(tmp_path.glob(".branch-*"))

    def test_export_selected_runs_as_evidence(self, tmp_path):
        sweep_dir = tmp_path / "s"
        assert run("sweep", *TINY, "--steps", "30", "--lrs", "0.01", "--optimizers",
                   "path-sgd,sgd", "--irnn-inits", "3", "--jobs", "2", "--log-every", "1",
                   "--out", sweep_dir)[0] == 0
        status, out, _ = run("export", sweep_dir, "--dest", tmp_path / "ev", "--table",
                             tmp_path / "t.csv", "--keep-every", "10")
        assert status == 0 and "2 runs exported" in out
        # every run of the sweep, the ones not selected too, in the sweep's own table
        all_runs = (tmp_path / "ev" / "s" / "all-runs.csv").read_text()
        assert all_runs == (sweep_dir / "table.csv").read_text()
        assert len(all_runs.splitlines()) == 1 + 4
        lines = (tmp_path / "t.csv").read_text().splitlines()
        assert lines[0] == "T,method,lr,steps,test_mse,run"
        rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
        assert sorted(r["method"] for r in rows) == ["irnn", "path-sgd"]
        table = (sweep_dir / "table.csv").read_text().splitlines()
        chosen = [line.split(",")[0] for line in table[1:] if ",True," in line]
        for r in rows:
            run_dir = pathlib.Path(r["run"]) if os.path.isabs(r["run"]) else \
                pathlib.Path(os.getcwd()) / r["run"]
            result = json.loads((run_dir / "result.json").read_text())
            assert float(r["test_mse"]) == result["test_loss"]  # full precision
            assert run_dir.name in chosen
            steps = [int(line.split(",")[0]) for line in
                     (run_dir / "history.csv").read_text().splitlines()[1:]]
            assert steps == [0, 10, 20, 30]

    def test_export_of_digits_runs_gives_test_error_and_the_sequence_length(self, tmp_path):
        sweep_dir = tmp_path / "d"
        assert run("sweep", "--task", "digits", "--hidden", "4", "--batch", "8", "--steps",
                   "4", "--eval-every", "2", "--lrs", "0.001", "--optimizers", "path-adam",
                   "--jobs", "1", "--quiet", "--out", sweep_dir)[0] == 0
        status, out, _ = run("export", sweep_dir, "--dest", tmp_path / "ev", "--table",
                             tmp_path / "digits.csv")
        assert status == 0 and "1 runs exported" in out
        header, line = (tmp_path / "digits.csv").read_text().splitlines()
        assert header == "T,method,lr,steps,test_error,run"
        row = dict(zip(header.split(","), line.split(",")))
        result = json.loads((pathlib.Path(row["run"]) / "result.json").read_text())
        assert float(row["test_error"]) == 1.0 - result["test_metric"]
        assert int(row["T"]) == 64  # the built-in 8 x 8 digits, one pixel per step
        assert row["method"] == "path-adam" and int(row["steps"]) == 4


def test_an_interruption_right_after_a_blow_up_is_reported_as_a_divergence(tmp_path):
    """The test loss is checked at the interruption too: parameters that already fail the
    bound end the run as diverged, with the update before kept."""
    task = make_task("adding", T=30, seed=0)
    net = pathgeom.rnn(2, 16, 1, 30)
    res = train(net, task, make_optimizer("path-adam", 0.5), 50, batch_size=8, rng=0,
                progress=False, out_dir=tmp_path, should_stop=lambda: True)
    assert res.status == "diverged" and res.steps == 0
    assert "test loss" in res.message and np.isfinite(res.test_loss)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "diverged" and result["diverged"] is True


class TestReviewFixes:
    def test_resume_with_fewer_steps_is_refused_before_writing(self, tmp_path):
        out_dir = tmp_path / "r"
        run("train", *TINY, "--steps", "20", "--out", out_dir)
        before = snapshot(out_dir)
        status, _, err = run("train", "--resume", out_dir, "--steps", "10")
        assert status == 2 and "steps >= 20" in err
        assert snapshot(out_dir) == before
        assert run("train", "--resume", out_dir, "--quiet")[0] == 0

    def test_sweep_resume_refuses_grid_flags_and_fewer_steps(self, tmp_path):
        base = ["sweep", *TINY, "--lrs", "0.01", "--optimizers", "sgd", "--jobs", "1",
                "--out", tmp_path / "s"]
        assert run(*base, "--steps", "10")[0] == 0
        status, _, err = run("sweep", "--out", tmp_path / "s", "--resume", "--lrs", "0.5")
        assert status == 2 and "--lrs cannot be changed" in err
        sweep_json = (tmp_path / "s" / "sweep.json").read_bytes()
        status, _, err = run("sweep", "--out", tmp_path / "s", "--resume", "--steps", "5")
        assert status == 2 and "steps >= 10" in err
        assert (tmp_path / "s" / "sweep.json").read_bytes() == sweep_json

    def test_a_queued_sweep_run_does_not_start_once_the_sweep_stops(self, tmp_path):
        config = experiments.make_config(T=6, hidden=[4], batch=8, steps=40, optimizer="sgd")
        d = tmp_path / "s" / "run"
        experiments._sweep_job(config, str(d), stop=lambda: True)
        assert not d.exists()

    def test_an_overflowing_step_keeps_the_parameters_it_started_from(self):
        from pathgeom.optim import SGD, StepOverflowError

        class Flaky(SGD):
            calls = 0

            def step(self, p, grad, model=None, loss=None):
                Flaky.calls += 1
                if Flaky.calls == 5:
                    raise StepOverflowError("the step overflowed")
                return super().step(p, grad, model, loss)
        task = make_task("adding", T=6, seed=0)
        res = train(pathgeom.rnn(2, 4, 1, 6), task, Flaky(0.01), 10, batch_size=4,
                    progress=False)
        assert res.status == "diverged" and res.steps == 4   # p after 4 updates kept

    def test_damaged_zip_files_are_named(self, tmp_path):
        out_dir = tmp_path / "r"
        run("train", *TINY, "--steps", "5", "--out", out_dir)
        data = (out_dir / "checkpoint.npz").read_bytes()
        (out_dir / "checkpoint.npz").write_bytes(data[: len(data) // 2])
        status, _, err = run("train", "--resume", out_dir)
        assert status == 2 and "checkpoint.npz is damaged" in err and "Traceback" not in err
        (tmp_path / "empty.npz").write_bytes(b"")
        with pytest.raises(runs.RunDirError, match="empty.npz"):
            runs.load_params(tmp_path / "empty.npz")

    def test_digits_irnn_selection_needs_a_validation_set(self, tmp_path):
        status, _, err = run("sweep", "--task", "digits", "--preset", "paper", "--out",
                             tmp_path / "s")
        assert status == 2 and "no validation set" in err


def _malloc_trim_threshold():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_sweep_workers_start_with_the_training_settings():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's
    mmap threshold and makes a T = 100 training run 1.4-1.7 times slower
    (``benchmarks/bench_sweep.py``). The workers of ``--scheduler local`` must start
    without it, and a worker that Dask restarts must too. The nanny writes its environment
    variables into this process's environment: they are removed first and restored
    after."""
    distributed = pytest.importorskip("distributed")
    import dask
    from pathgeom._dask import MALLOC_TRIM_KEY
    names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        with experiments._local_cluster(1) as cluster, distributed.Client(cluster) as client:
            assert client.submit(_malloc_trim_threshold, pure=False).result() is None
            client.restart()
            assert client.submit(_malloc_trim_threshold, pure=False).result() is None
        # the control: a LocalCluster on Dask's defaults (pinned here, whatever the user's
        # own Dask configuration says) does set them
        with dask.config.set({MALLOC_TRIM_KEY: 65536}), \
                distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                         dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            assert client.submit(_malloc_trim_threshold, pure=False).result() == "65536"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
