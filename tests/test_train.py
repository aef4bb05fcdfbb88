"""Training: losses, engines, optimisers in the loop, divergence, files, reloading."""

import csv
import json
import math

import numpy as np
import pytest

import pathgeom
from pathgeom import PathOverflowError
from pathgeom.optim import path_sgd_step
from pathgeom.training import (PathAdam, PathSGD, SGD, _passes, accuracy, bits_per_char,
                            evaluate, load_params, make_optimizer, mse_loss, save_params,
                            softmax_cross_entropy, train)

from helpers import assert_close


# ---------------------------------------------------------------- stand-in tasks (task API)


class TinyAdding:
    """Adding problem with short sequences: values, a marker channel with two ones."""

    name, n_in, n_out, outputs, loss, baseline = "tiny-adding", 2, 1, "last", "mse", 1 / 6

    def __init__(self, T=6):
        self.T = T
        self.test = self.sample(np.random.default_rng(123), 40)
        self.valid = None

    def sample(self, rng, B):
        X = np.zeros((B, self.T, 2))
        X[..., 0] = rng.uniform(size=(B, self.T))
        h = self.T // 2
        i, j = rng.integers(0, h, B), rng.integers(h, self.T, B)
        X[np.arange(B), i, 1] = X[np.arange(B), j, 1] = 1.0
        return X, (X[..., 0] * X[..., 1]).sum(axis=1, keepdims=True)

    def describe(self):
        return f"tiny adding problem, T={self.T}"


class TinyClass:
    """Three classes from the mean of a sequence of uniforms."""

    name, n_in, n_out, T, outputs, loss, baseline = "tiny-class", 1, 3, 5, "last", "xent", 1.1

    def __init__(self):
        self.test = self.sample(np.random.default_rng(7), 30)
        self.valid = None

    def sample(self, rng, B):
        X = rng.uniform(size=(B, self.T, 1))
        m = X[:, :, 0].mean(axis=1)
        return X, np.digitize(m, [0.45, 0.55]).astype(np.int64)

    def describe(self):
        return "tiny classification"


class TinyLM:
    """Next symbol of a noisy cycle 0, 1, 2, 0, ... (one-hot inputs, a label every step)."""

    name, n_in, n_out, T, outputs, loss, baseline = "tiny-lm", 3, 3, 4, "all", "xent", 1.1

    def __init__(self):
        self.test = self.sample(np.random.default_rng(9), 20)
        self.valid = self.test

    def sample(self, rng, B):
        s = (rng.integers(0, 3, (B, 1)) + np.arange(self.T + 1)) % 3
        flip = rng.uniform(size=s.shape) < 0.1
        s = np.where(flip, rng.integers(0, 3, s.shape), s)
        return np.eye(3)[s[:, :-1]], s[:, 1:].astype(np.int64)

    def describe(self):
        return "tiny language model"


def rnn_for(task, hidden=4, bias=False):
    return pathgeom.rnn(task.n_in, hidden, task.n_out, task.T, outputs=task.outputs, bias=bias)


def central_diff(f, x, i, h=1e-6):
    e = np.zeros_like(x)
    e[i] = h
    return (f(x + e) - f(x - e)) / (2 * h)


# ---------------------------------------------------------------- losses and metrics


class TestLosses:
    def test_mse_value_and_gradient(self):
        rng = np.random.default_rng(0)
        Yp, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
        loss, dY = mse_loss(Yp, Y)
        assert_close(loss, np.mean((Yp - Y) ** 2))
        fd = [central_diff(lambda v: mse_loss(v.reshape(4, 3), Y)[0], Yp.ravel(), i)
              for i in range(12)]
        assert_close(dY.ravel(), fd, 1e-7)

    @pytest.mark.parametrize("shape", [(5,), (3, 4)])
    def test_xent_matches_the_definition_and_finite_differences(self, shape):
        rng = np.random.default_rng(1)
        z = rng.normal(size=shape + (4,)) * 3
        y = rng.integers(0, 4, shape)
        loss, dY = softmax_cross_entropy(z, y)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        naive = -np.mean(np.take_along_axis(logp, y[..., None], axis=-1))
        assert_close(loss, naive, 1e-13)
        flat = z.ravel()
        fd = [central_diff(lambda v: softmax_cross_entropy(v.reshape(z.shape), y)[0], flat, i)
              for i in range(flat.size)]
        assert_close(dY.ravel(), fd, 1e-6, scale=1e-3)  # fd error ~ 1e-16 / h, absolute

    def test_xent_is_stable_for_huge_logits(self):
        z = np.array([[1e4, 0.0, -1e4], [1e300, 1e300, -1e300]])
        loss, dY = softmax_cross_entropy(z, np.array([1, 0]))
        # row 0: loss 1e4; row 1: two equal logits, log 2
        assert_close(loss, (1e4 + math.log(2)) / 2)
        assert np.isfinite(dY).all()
        assert_close(dY, [[0.5, -0.5, 0.0], [-0.25, 0.25, 0.0]], 1e-15, scale=1e-15)
        shifted, _ = softmax_cross_entropy(z[:1] - 1e4, [1])
        assert_close(shifted, 1e4)

    def test_metrics(self):
        assert accuracy([[0.2, 0.8], [0.9, 0.1]], [1, 1]) == 0.5
        assert accuracy(np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=int)) == 1.0
        assert_close(bits_per_char(math.log(4)), 2.0)

    @pytest.mark.parametrize("args, match", [
        ((np.zeros((2, 3)), np.array([0, 3])), r"label 3 .* not a class index in 0..2"),
        ((np.zeros((2, 3)), np.array([0.0, 1.0])), r"integer class indices"),
        ((np.zeros((2, 3)), np.array([0, 1, 2])), r"labels.shape \+ \(n_classes,\)"),
    ])
    def test_xent_errors(self, args, match):
        with pytest.raises(ValueError, match=match):
            softmax_cross_entropy(*args)

    def test_mse_shape_error(self):
        with pytest.raises(ValueError, match="equal shapes"):
            mse_loss(np.zeros((2, 1)), np.zeros(2))


# ---------------------------------------------------------------- gradients through the network


TASKS = [TinyAdding, TinyClass, TinyLM]


class TestEngines:
    @pytest.mark.parametrize("task_cls", TASKS)
    @pytest.mark.parametrize("bias", [False, True])
    def test_dense_equals_graph_engine(self, task_cls, bias):
        task = task_cls()
        net = rnn_for(task, hidden=[3, 4], bias=bias)
        p = net.init(np.random.default_rng(2), "uniform", scale=0.6)
        X, Y = task.sample(np.random.default_rng(3), 16)
        loss_fn = mse_loss if task.loss == "mse" else softmax_cross_entropy
        results = {}
        for engine in ("dense", "graph"):
            forward, backward, _ = _passes(net, task, engine)
            loss, dY = loss_fn(forward(p, X), Y)
            results[engine] = loss, backward(p, X, dY)
        assert_close(results["graph"][0], results["dense"][0], 1e-12)
        g = results["dense"][1]
        assert np.abs(g).max() > 0
        assert_close(results["graph"][1], g, 1e-11, scale=1e-12 * np.abs(g).max())

    @pytest.mark.parametrize("task_cls", TASKS)
    def test_gradient_matches_finite_differences(self, task_cls):
        task = task_cls()
        net = rnn_for(task, hidden=3, bias=True)
        p = net.init(np.random.default_rng(4), "uniform", scale=0.7)
        X, Y = task.sample(np.random.default_rng(5), 8)
        loss_fn = mse_loss if task.loss == "mse" else softmax_cross_entropy
        _, dY = loss_fn(net.forward(p, X), Y)
        grad = net.backward(p, X, dY)
        fd = np.array([central_diff(lambda q: loss_fn(net.forward(q, X), Y)[0], p, i)
                       for i in range(p.size)])
        assert_close(grad, fd, 1e-5, scale=1e-6)

    def test_training_trajectories_agree(self):
        task = TinyAdding()
        net = rnn_for(task)
        runs = [train(net, task, make_optimizer("path-sgd", 1e-4), 5, batch_size=8, rng=0,
                      progress=False, engine=e) for e in ("dense", "graph")]
        assert_close(runs[1].p, runs[0].p, 1e-9, scale=1e-12)

    def test_bare_shared_graph(self):
        task = TinyAdding()
        net = rnn_for(task)
        p0 = net.init(np.random.default_rng(0))
        a = train(net, task, SGD(0.1), 4, batch_size=8, rng=1, p0=p0, progress=False,
                  engine="graph")
        b = train(net.graph, task, SGD(0.1), 4, batch_size=8, rng=1, p0=p0, progress=False,
                  engine="graph")
        np.testing.assert_array_equal(a.p, b.p)
        with pytest.raises(TypeError, match="engine='graph'"):
            train(net.graph, task, SGD(0.1), 1, p0=p0, progress=False)


# ---------------------------------------------------------------- optimisers


CHAIN_DEAD = pathgeom.SharedGraph.from_edges(
    [("x", "a", 0), ("a", "y", 1), ("a", "dead", 3)], ["x"], ["y"], n_params=4)


class TestOptimizers:
    @pytest.mark.parametrize("curvature", ["kappa1", "kappa"])
    def test_path_sgd_uses_the_structured_curvature(self, curvature):
        net = pathgeom.rnn(2, 3, 1, T=5)
        rng = np.random.default_rng(0)
        p = net.init(rng, "uniform", scale=0.5)
        grad = rng.normal(size=p.size)
        new = PathSGD(0.01, curvature=curvature, rule="raw").step(p, grad, net)
        ref = path_sgd_step(net.graph, p, grad, 0.01, curvature=curvature)
        assert_close(new, ref, 1e-12, scale=np.abs(p).max())
        if curvature == "kappa":  # kappa2 is not zero here: the two choices differ
            k1 = PathSGD(0.01, curvature="kappa1", rule="raw").step(p, grad, net)
            assert np.abs(k1 - new).max() > 1e-6

    @pytest.mark.parametrize("opt", [PathSGD(0.1, rule="raw"), PathSGD(0.1, eps=1e-3, rule="raw"), PathAdam(0.1)])
    def test_zero_curvature_parameters_are_unchanged(self, opt):
        p = np.array([0.7, 0.0, 1.0, 2.0])  # kappa = 0 for p0 (blocked), p2 (no edge), p3
        new = opt.step(p, np.ones(4), CHAIN_DEAD)
        np.testing.assert_array_equal(new[[0, 2, 3]], p[[0, 2, 3]])
        assert new[1] != p[1]
        newer = opt.step(new, np.ones(4), CHAIN_DEAD)  # p1 != 0 now: p0 moves, p2, p3 not
        np.testing.assert_array_equal(newer[[2, 3]], p[[2, 3]])
        assert newer[0] != p[0]

    def test_path_adam_matches_a_reference(self):
        p = np.array([0.5, 2.0])
        rng = np.random.default_rng(0)
        grads = rng.normal(size=(3, 2))
        chain = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1)], ["x"], ["y"])
        opt = PathAdam(0.05, betas=(0.8, 0.9), eps=1e-6)
        m = v = np.zeros(2)
        ref = p.copy()
        for t, g in enumerate(grads, start=1):
            p = opt.step(p, g, chain)
            u = g / np.array([ref[1] ** 2, ref[0] ** 2])   # kappa of the chain
            m, v = 0.8 * m + 0.2 * u, 0.9 * v + 0.1 * u * u
            ref = ref - 0.05 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-6)
            assert_close(p, ref, 1e-13)
        opt.reset()
        assert opt.t == 0 and opt.m is None

    def test_path_adam_state_size_error(self):
        opt = PathAdam(0.1)
        opt.step([0.7, 0.0, 1.0, 2.0], np.ones(4), CHAIN_DEAD)
        with pytest.raises(ValueError, match="reset"):
            opt.step([0.5], [1.0], pathgeom.SharedGraph.from_edges([("x", "y", 0)], ["x"],
                                                                   ["y"]))

    @pytest.mark.parametrize("name, kw", [("sgd", {}), ("path-sgd", {"rule": "raw"}),
                                          ("path-adam", {})])
    def test_clipping(self, name, kw):
        net = pathgeom.rnn(1, 2, 1, T=3)
        p = net.init(np.random.default_rng(0), "uniform", scale=0.5)
        grad = np.linspace(-3, 3, p.size)
        clipped = grad * (0.5 / np.linalg.norm(grad))
        a = make_optimizer(name, 0.01, clip=0.5, **kw).step(p, grad, net)
        b = make_optimizer(name, 0.01, **kw).step(p, clipped, net)
        assert_close(a, b, 1e-14, scale=1.0)
        small = grad * 1e-3  # below the threshold: untouched
        assert_close(make_optimizer(name, 0.01, clip=0.5, **kw).step(p, small, net),
                     make_optimizer(name, 0.01, **kw).step(p, small, net), 1e-15, scale=1.0)

    def test_make_optimizer_and_repr(self):
        assert repr(make_optimizer("sgd", 0.1, clip=1.0)) == "SGD(lr=0.1, clip=1.0)"
        assert repr(make_optimizer("path-adam", 1e-3, curvature="kappa")) == (
            "PathAdam(lr=0.001, curvature='kappa', betas=(0.9, 0.999), eps=1e-08)")
        with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
            make_optimizer("adam", 0.1)
        with pytest.raises(TypeError, match="sgd takes only clip"):
            make_optimizer("sgd", 0.1, curvature="kappa1")
        with pytest.raises(ValueError, match="clip must be"):
            make_optimizer("path-sgd", 0.1, clip=0.0)
        with pytest.raises(ValueError, match="betas"):
            PathAdam(0.1, betas=(1.0, 0.5))

    def test_training_form_needs_a_model(self):
        with pytest.raises(TypeError, match=r"opt.step\(p, grad, model\)"):
            PathSGD(0.1).step([1.0], [1.0])
        with pytest.raises(TypeError, match="path_quantities"):
            PathSGD(0.1).step([1.0], [1.0], model="net")

    def test_bound_form_accepts_a_network(self):
        net = pathgeom.rnn(1, 2, 1, T=3)
        p = net.init(np.random.default_rng(0), "uniform", scale=0.5)
        grad = np.ones(p.size)
        np.testing.assert_array_equal(PathSGD(net, 0.1, rule="raw").step(p, grad),
                                      PathSGD(0.1, rule="raw").step(p, grad, net))


# ---------------------------------------------------------------- the training loop


class TestTrain:
    @pytest.mark.parametrize("name, lr, bias, kw", [
        ("sgd", 0.03, True, {}), ("path-sgd", 1e-5, False, {"rule": "raw"}),
        ("path-adam", 0.01, False, {})])
    def test_learns_the_tiny_adding_problem(self, name, lr, bias, kw):
        task = TinyAdding()
        res = train(rnn_for(task, bias=bias), task, make_optimizer(name, lr, **kw), 150,
                    batch_size=16, rng=0, eval_every=50, progress=False)
        assert not res.diverged and res.steps == 150
        first = res.history[0]["test_loss"]
        assert res.test_loss < 0.7 * first
        assert res.test_metric == res.test_loss  # the metric of a regression is its MSE
        assert [h["step"] for h in res.history] == list(range(151))
        assert [h["step"] for h in res.history if h["test_loss"] is not None] == [0, 50, 100,
                                                                                  150]
        assert res.history[0]["train_loss"] is None
        assert all(np.isfinite(h["train_loss"]) for h in res.history[1:])

    def test_deterministic(self):
        task = TinyClass()
        runs = [train(rnn_for(task), task, PathAdam(0.01), 10, batch_size=8, rng=3,
                      progress=False) for _ in range(2)]
        np.testing.assert_array_equal(runs[0].p, runs[1].p)

    @pytest.mark.parametrize("task_cls, metric", [
        (TinyClass, lambda loss, out, Y: accuracy(out, Y)),
        (TinyLM, lambda loss, out, Y: loss / math.log(2)),
    ])
    def test_metrics_and_evaluate(self, task_cls, metric):
        task = task_cls()
        net = rnn_for(task, hidden=5)
        res = train(net, task, PathAdam(0.02), 20, batch_size=8, rng=1, progress=False)
        X, Y = task.test
        loss, _ = softmax_cross_entropy(net.forward(res.p, X), Y)
        assert_close(res.test_loss, loss, 1e-12)
        assert_close(res.test_metric, metric(loss, net.forward(res.p, X), Y), 1e-12)
        assert evaluate(net, task, res.p, batch_size=7) == pytest.approx(
            (res.test_loss, res.test_metric), rel=1e-12)

    def test_p0_read_only_and_not_mutated(self):
        task = TinyAdding()
        net = rnn_for(task)
        p0 = net.init(np.random.default_rng(0))
        p0.flags.writeable = False
        keep = p0.copy()
        res = train(net, task, SGD(0.1), 3, batch_size=4, p0=p0, progress=False)
        np.testing.assert_array_equal(p0, keep)
        assert not np.shares_memory(res.p, p0)

    def test_validation(self):
        task = TinyAdding()
        with pytest.raises(ValueError, match=r"T=5 but task 'tiny-adding' has T=6"):
            train(pathgeom.rnn(2, 3, 1, T=5), task, SGD(0.1), 1, progress=False)
        with pytest.raises(ValueError, match="engine must be"):
            train(rnn_for(task), task, SGD(0.1), 1, progress=False, engine="jax")
        with pytest.raises(ValueError, match="batch_size"):
            train(rnn_for(task), task, SGD(0.1), 1, batch_size=0, progress=False)
        with pytest.raises(ValueError, match="p0 has shape"):
            train(rnn_for(task), task, SGD(0.1), 1, p0=np.zeros(3), progress=False)

    def test_progress_bar_shows_the_running_loss(self, capsys):
        task = TinyAdding()
        train(rnn_for(task), task, SGD(0.1), 5, batch_size=4, progress=True)
        err = capsys.readouterr().err
        assert "SGD on tiny-adding" in err and "loss " in err and "5/5" in err


class TestDivergence:
    def test_huge_learning_rate_stops_with_the_last_good_parameters(self, tmp_path):
        task = TinyAdding()
        net = rnn_for(task, bias=True)  # b_out oscillates with a growing amplitude
        res = train(net, task, SGD(1e8), 50, batch_size=8, rng=0, progress=False,
                    out_dir=tmp_path, diverge_factor=None)  # only non-finite losses stop it
        assert res.diverged and res.status == "diverged"
        # the loss at p_{k-1} is inf at step k: the last good parameters are p_{k-2}
        assert res.message.startswith(f"diverged at step {res.steps + 2}: the training loss "
                                      f"is inf; stopped and kept the last good parameters, "
                                      f"those after {res.steps} updates")
        assert np.isfinite(res.p).all() and np.isfinite(res.test_loss)
        # the history describes only kept updates (entry 0 is the start): steps 0..res.steps
        assert [h["step"] for h in res.history] == list(range(res.steps + 1))
        # the same run stopped just before the failing step reaches exactly these parameters
        again = train(net, task, SGD(1e8), res.steps, batch_size=8, rng=0, progress=False,
                      diverge_factor=None)
        assert not again.diverged
        np.testing.assert_array_equal(res.p, again.p)
        _, p_saved = load_params(tmp_path / "params.npz")
        np.testing.assert_array_equal(p_saved, res.p)
        saved = json.loads((tmp_path / "result.json").read_text())
        assert saved["diverged"] is True and saved["message"] == res.message

    def test_overflow_in_the_curvature(self):
        task = TinyAdding()
        net = rnn_for(task)
        calls = []

        def flaky(model, p):
            calls.append(1)
            if len(calls) == 3:
                raise PathOverflowError("kappa1[0] overflowed float64")
            return model.kappa1(p)

        res = train(net, task, PathSGD(1e-4, curvature=flaky), 10, batch_size=4,
                    progress=False)
        assert res.diverged and res.steps == 1  # the curvature at p_2 failed: p_1 is kept
        assert res.message.startswith("diverged at step 3: the PathSGD update overflowed "
                                      "float64 (kappa1[0] overflowed float64)")

    def test_overflowing_initial_parameters(self):
        task = TinyAdding(T=6)
        net = rnn_for(task)
        p0 = np.full(net.n_params, 1e80)
        res = train(net, task, SGD(0.1), 10, p0=p0, progress=False)
        assert res.diverged and res.steps == 0 and res.history == []
        assert res.message.startswith("diverged at step 0: the forward pass at p0 overflowed")
        np.testing.assert_array_equal(res.p, p0)
        assert math.isnan(res.test_loss)


class TestFiles:
    def test_outputs_and_reload(self, tmp_path):
        task = TinyLM()
        net = rnn_for(task, hidden=[3, 2], bias=True)
        res = train(net, task, PathSGD(1e-3, clip=5.0), 6, batch_size=4, eval_every=3,
                    out_dir=tmp_path / "run", progress=False)
        run = tmp_path / "run"
        with open(run / "history.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["step"]) for r in rows] == list(range(7))
        assert rows[0]["train_loss"] == "" and rows[1]["test_loss"] == ""
        assert float(rows[6]["test_loss"]) == res.test_loss
        history = json.loads((run / "history.json").read_text())
        assert history == res.history
        result = json.loads((run / "result.json").read_text())
        assert result["test_metric"] == res.test_metric and result["diverged"] is False
        assert result["config"]["model"] == dict(kind="rnn", n_in=3, hidden=[3, 2], n_out=3,
                                                 T=4, outputs="all", bias=True)
        assert result["config"]["metric"] == "bits_per_char"
        assert result["config"]["optimizer"] == (
            "PathSGD(lr=0.001, curvature='kappa1', rule='backtracking', eps=0.0, clip=5.0)")
        net2, p2 = load_params(run / "params.npz")
        assert repr(net2) == repr(net)
        np.testing.assert_array_equal(p2, res.p)
        assert evaluate(net2, task, p2) == (res.test_loss, res.test_metric)

    def test_load_errors(self, tmp_path):
        np.savez(tmp_path / "other.npz", w=np.zeros(2))
        with pytest.raises(ValueError, match="not a params.npz"):
            load_params(tmp_path / "other.npz")
        save_params(tmp_path / "graph.npz", CHAIN_DEAD, np.zeros(4))
        with pytest.raises(ValueError, match="SharedGraph, which load_params cannot rebuild"):
            load_params(tmp_path / "graph.npz")


class TestAnyModel:
    def test_a_cnn_trains_on_digits(self):
        """train() is not tied to the RNN: a CNN's dense passes read each 64-pixel sequence
        as a (1, 8, 8) image, and its accuracy rises well above chance."""
        pytest.importorskip("sklearn")
        from pathgeom.tasks import make_task
        task = make_task("digits", seed=0)
        net = pathgeom.cnn((1, 8, 8), [pathgeom.Conv2d(4, 3)], 10)
        res = train(net, task, make_optimizer("path-adam", 0.01), 200, batch_size=32, rng=0,
                    eval_every=100, progress=False)
        assert res.status == "finished"
        assert res.history[0]["test_metric"] < 0.2 and res.test_metric > 0.8
        # the same run on the generic graph engine gives the same parameters to rounding
        graph = train(net, task, make_optimizer("path-adam", 0.01), 20, batch_size=32, rng=0,
                      progress=False, engine="graph", p0=net.init(np.random.default_rng(0)))
        dense = train(net, task, make_optimizer("path-adam", 0.01), 20, batch_size=32, rng=0,
                      progress=False, p0=net.init(np.random.default_rng(0)))
        assert_close(graph.p, dense.p, 1e-9, scale=np.abs(dense.p).max())

    def test_a_feedforward_model_that_does_not_fit_the_task_is_refused(self):
        from pathgeom.tasks import make_task
        task = make_task("adding", T=6, seed=0)
        with pytest.raises(ValueError, match=r"T \* n_in = 16"):
            train(pathgeom.mlp([16, 4, 1]), task, make_optimizer("sgd", 0.1), 1,
                  progress=False)
