"""Cost of a training step: SGD against Path-SGD (kappa1, and exact kappa with the
structured RNN kappa2), and the dense RNN step against PyTorch on the CPU.

Targets (issue 5), B = 64, T = 100, H = 100: a Path-SGD (kappa1) step at most 1.15x an SGD
step (the paper's O(1/B) claim); the exact-kappa step at most 2x; the dense training step
(forward + backward) within 2x of PyTorch's when PyTorch is installed.  The default
backtracking rule adds one forward pass of the minibatch per step (more when it halves).
"""

import numba
import numpy as np

import pathgeom
from pathgeom.training import make_optimizer

from _common import train_step_fn as _step_fn, best_time


def torch_step_time(net, p, X, Y):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    blocks = net.unpack(p)
    W_in = torch.tensor(blocks["W_in"][0], requires_grad=True)
    W_rec = torch.tensor(blocks["W_rec"][0], requires_grad=True)
    W_out = torch.tensor(blocks["W_out"], requires_grad=True)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    lr = 1e-3

    def step():
        h = torch.relu(Xt[:, 0] @ W_in.T)
        for t in range(1, Xt.shape[1]):
            h = torch.relu(Xt[:, t] @ W_in.T + h @ W_rec.T)
        loss = ((h @ W_out.T - Yt) ** 2).mean()
        for w in (W_in, W_rec, W_out):
            w.grad = None
        loss.backward()
        with torch.no_grad():
            for w in (W_in, W_rec, W_out):
                w -= lr * w.grad
    return best_time(step, repeat=10)


def run(quick=False):
    B, T, H = (16, 20, 16) if quick else (64, 100, 100)
    rng = np.random.default_rng(0)
    net = pathgeom.rnn(2, H, 1, T)
    p = net.init(rng, "irnn")
    X = rng.random((B, T, 2))
    Y = X[:, :, 0].sum(axis=1, keepdims=True) / T
    steps = [(name, _step_fn(net, p, X, Y, opt)) for name, opt in (
        ("SGD", make_optimizer("sgd", 1e-3)),
        ("Path-SGD, kappa1, raw step", make_optimizer("path-sgd", 1e-3, rule="raw")),
        ("Path-SGD, kappa1, backtracking (default)", make_optimizer("path-sgd", 1e-3)),
        ("Path-SGD, exact kappa, raw step",
         make_optimizer("path-sgd", 1e-3, curvature="kappa", rule="raw")))]
    # interleaved rounds, best of each: drifts of the machine's speed hit all three alike
    best = {name: np.inf for name, _ in steps}
    for _ in range(3 if quick else 8):
        for name, fn in steps:
            best[name] = min(best[name], best_time(fn, repeat=3, min_time=0))
    rows = [(name, best[name]) for name, _ in steps]
    sgd = rows[0][1]
    print(f"training step, B={B} T={T} H={H} (forward + backward + update), dense numpy BPTT")
    for name, t in rows:
        print(f"  {name:42} {t * 1e3:8.2f} ms  {t / sgd:6.2f}x SGD")
    tt = torch_step_time(net, p, X, Y)
    if tt is None:
        print("  PyTorch not installed: no comparison (pip install torch==2.13.0 for the CPU "
              "build)")
    else:
        print(f"  {'PyTorch SGD step (CPU, float64)':38} {tt * 1e3:8.2f} ms  "
              f"pathgeom SGD step / PyTorch = {sgd / tt:.2f}")


if __name__ == "__main__":
    import sys
    run(quick="--quick" in sys.argv)
