"""Theorem 2 in action: Path-SGD does not care how an RNN is rescaled; SGD does.

A one-layer ReLU RNN and a badly scaled copy of it (a feasible node-wise rescaling: same
function, same gamma^2) are trained on the same regression task.  Path-SGD produces the same
functions from both starting points, step after step; plain SGD does not.

Run: python examples/invariance_path_sgd.py   (a second; the same story in training, with
a figure: `pathgeom invariance --train`, docs/concepts/invariance.md)
"""

import numpy as np

import pathgeom
from pathgeom.invariance import rescale, rescaling_group
from pathgeom.optim import SGD, PathSGD

T, H = 6, 3
g = pathgeom.rnn(1, H, 1, T).graph   # the unrolled RNN as a shared-weight graph
rng = np.random.default_rng(0)
G = rescaling_group(g)
print(f"{g}\nrescaling group dimension {G.dim} (Theorem 1: H = {H})")

# a regression task: targets from a random "teacher" with the same architecture
X = rng.normal(size=(64, T))
Y = g.forward(rng.uniform(-0.8, 0.8, g.n_params), X)
p0 = rng.uniform(-0.6, 0.6, g.n_params)
beta = G.sample(rng, scale=1.5)                     # hidden units rescaled by e^(+-1.5)-ish
q0 = rescale(g, p0, beta)
print(f"hidden-unit factors beta: {np.round(beta[T:T + H], 3)}")
print(f"same function: {np.allclose(g.forward(p0, X), g.forward(q0, X), rtol=1e-12)}, "
      f"same gamma^2: {pathgeom.gamma2(g, p0):.6f} = {pathgeom.gamma2(g, q0):.6f}\n")


def loss_and_grad(p):
    residual = g.forward(p, X) - Y
    return 0.5 * np.mean(residual ** 2), g.backward(p, X, residual / len(X))


largest_gap = {}   # optimiser -> largest relative |T_beta(p_k) - q_k| over the 40 steps
for opt in (PathSGD(g, lr=0.05, curvature="kappa1", rule="raw"), SGD(lr=0.05)):
    p, q = p0, q0
    largest_gap[type(opt).__name__] = 0.0
    print(opt)
    print(f"{'step':>6} {'loss from p':>14} {'loss from T(p)':>15} {'rel. |T(p_k) - q_k|':>22}")
    for step in range(41):
        lp, gp = loss_and_grad(p)
        lq, gq = loss_and_grad(q)
        if step % 10 == 0:
            gap = np.max(np.abs(rescale(g, p, beta) - q)) / np.max(np.abs(q))
            largest_gap[type(opt).__name__] = max(largest_gap[type(opt).__name__], gap)
            print(f"{step:>6} {lp:>14.6g} {lq:>15.6g} {gap:>22.2g}")
        p, q = opt.step(p, gp), opt.step(q, gq)
    print()
print("largest relative gap between T_beta(p_k) and q_k: " + ", ".join(
    f"{name} {gap:.2g}" for name, gap in largest_gap.items()))
