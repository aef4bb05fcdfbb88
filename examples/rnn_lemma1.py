"""Lemma 1 on a two-layer RNN: structured kappa = generic engine = exact definition.

Run: python examples/rnn_lemma1.py
"""

import time

import numpy as np

import pathgeom
from pathgeom import reference

rng = np.random.default_rng(0)

# small enough for the exact rational reference (explicit path enumeration)
net = pathgeom.rnn(n_in=1, hidden=[2, 2], n_out=1, T=4)
p = net.init(rng, "uniform", scale=0.8)
r = net.path_quantities(p)
exact = np.array([float(x) for x in reference.kappa(net.graph, p)])
print(net)
print(f"gamma^2 = {r.gamma2:.6g}")
for l in range(net.n_layers):
    s = net.layout.slice("W_rec", l)
    print(f"layer {l}: kappa2 / kappa1 on W_rec =", np.round(r.kappa2[s] / r.kappa1[s], 4))
err = np.max(np.abs(r.kappa - exact) / exact)
print(f"max relative error of kappa1 + kappa2 against 1/2 d^2 gamma^2/dp^2 (exact): {err:.1e}")

# a larger one: structured against the generic engine, and the time each takes
net = pathgeom.rnn(n_in=1, hidden=64, n_out=1, T=100)
p = net.init(rng, "lm")
for name, fn in (("structured", lambda: net.path_quantities(p)),
                 ("generic graph engine", lambda: pathgeom.path_quantities(net.graph, p))):
    fn()
    t0 = time.perf_counter()
    res = fn()
    print(f"T=100, H=64, {name}: {1e3 * (time.perf_counter() - t0):.1f} ms")
print("agree:", np.allclose(net.path_quantities(p).kappa,
                            pathgeom.path_quantities(net.graph, p).kappa, rtol=1e-10))
