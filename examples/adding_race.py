"""A short adding-problem run: SGD (IRNN), Path-SGD and path-Adam from the same start.

What it shows: the three optimisers of pathgeom.make_optimizer, each at the rate the demo's
race uses (SGD 1e-3, Path-SGD 1e-2 with its default backtracking rule, path-Adam 1e-3),
trained from one IRNN initialisation on the same minibatches; every one of them moves the
network away from its start.  What it does not show: that Path-SGD beats SGD on the adding
problem, as the paper reports -- that was not reproduced here (docs/results.md), and 500
steps at T = 20 are far too few to decide it.  For what Path-SGD's rescaling invariance buys,
run `pathgeom invariance --train` (docs/concepts/invariance.md).

Run: python examples/adding_race.py   (a few seconds; `pathgeom demo` runs a longer race)
"""

import numpy as np

import pathgeom

task = pathgeom.make_task("adding", T=20, seed=0)
net = pathgeom.rnn(task.n_in, 16, task.n_out, task.T)
print(task.describe())
results = {}
for name, lr in (("sgd", 1e-3), ("path-sgd", 1e-2), ("path-adam", 1e-3)):
    rng = np.random.default_rng(0)
    p0 = net.init(rng, "irnn")
    kwargs = {} if name == "sgd" else {"curvature": "kappa1"}
    result = pathgeom.train(net, task, pathgeom.make_optimizer(name, lr, **kwargs), steps=500,
                            batch_size=64, rng=rng, p0=p0, eval_every=250, progress=False)
    status = "diverged: " + result.message if result.diverged else "finished"
    start = result.history[0]["test_loss"]
    moved = float(np.max(np.abs(result.p - p0)))
    print(f"{name:10} lr {lr:g}: test MSE {start:.4f} -> {result.test_loss:.4f}, largest "
          f"parameter change {moved:.3g} ({status})")
    results[name] = dict(start=start, end=result.test_loss, moved=moved, status=result.status)
print(f"predicting the mean gives {task.baseline:.4f}")
