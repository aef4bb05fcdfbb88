"""A short adding-problem run: SGD (IRNN), Path-SGD and path-Adam from the same start.

Run: python examples/adding_race.py   (about ten seconds; `pathgeom demo` runs a longer one)
"""

import numpy as np

import pathgeom

task = pathgeom.make_task("adding", T=20, seed=0)
net = pathgeom.rnn(task.n_in, 16, task.n_out, task.T)
print(task.describe())
for name, lr in (("sgd", 1e-3), ("path-sgd", 1e-7), ("path-adam", 1e-3)):
    rng = np.random.default_rng(0)
    p0 = net.init(rng, "irnn")
    kwargs = {} if name == "sgd" else {"curvature": "kappa1"}
    result = pathgeom.train(net, task, pathgeom.make_optimizer(name, lr, **kwargs), steps=500,
                            batch_size=64, rng=rng, p0=p0, eval_every=250, progress=False)
    status = "diverged: " + result.message if result.diverged else "finished"
    print(f"{name:10} lr {lr:g}: test MSE {result.test_loss:.4f} ({status})")
print(f"predicting the mean gives {task.baseline:.4f}")
