"""A small image CNN: kappa2 == 0 is proved by the depth certificate, not computed.

Builds a CNN on 3x16x16 inputs, checks that the graph and the dense numpy network compute
the same function, shows that pathgeom.kappa2_support is empty (every edge of one kernel
entry leaves nodes of one layer, so no path holds two of them) and prints gamma^2 and
kappa1 = kappa.

Run: python examples/cnn_certificate.py
"""

import numpy as np

import pathgeom
from pathgeom.constructors.cnn import Conv2d, Dense, cnn

net = cnn((3, 16, 16), [Conv2d(8, 3, padding=1), Conv2d(8, 3, stride=2), Dense(16)], n_out=4,
          bias=True)
print(net)
print(net.graph)
print("layer shapes:", net.shapes)

rng = np.random.default_rng(0)
p = net.init(rng, "he")
X = rng.normal(size=(8,) + net.input_shape)
dense, graph = net.forward(p, X), net.graph.forward(p, net.graph_inputs(X))
print(f"dense forward vs graph forward: max |difference| = {np.abs(dense - graph).max():.1e}")

support = pathgeom.kappa2_support(net.graph)
print(f"kappa2_support: {support} ({support.size} of {net.n_params} parameters need a "
      f"tangent sweep)")
r = net.path_quantities(p)
print(f"gamma^2 = {r.gamma2:.6g}")
print("kappa2 == 0 exactly:", bool(np.all(r.kappa2 == 0)),
      "  kappa == kappa1:", bool(np.array_equal(r.kappa, r.kappa1)))
blocks = net.unpack(r.kappa1)
for k, w in enumerate(blocks["W"]):
    print(f"kappa1 of W[{k}] {w.shape}: min {w.min():.4g}, max {w.max():.4g}")
print(f"kappa1 of W_out {blocks['W_out'].shape}: min {blocks['W_out'].min():.4g}, "
      f"max {blocks['W_out'].max():.4g}")
print("kappa1 of the conv biases (one per channel):", np.round(blocks["b"][0], 4))
