"""A hand-made sharing pattern: gamma^2, kappa1, exact kappa2, checked against the reference.

Run: python examples/custom_graph.py
"""

import numpy as np

import pathgeom
from pathgeom import reference

# Two routes from x to y.  Parameter 0 sits twice on the long route (x->a and b->c) and
# once on the short one (x->d); parameter 1 is an ordinary weight; parallel edges b->c on
# parameter 0 count as two edges.
edges = [("x", "a", 0), ("a", "b", 1), ("b", "c", 0), ("b", "c", 0), ("c", "y", 2),
         ("x", "d", 0), ("d", "y", 1)]
g = pathgeom.SharedGraph.from_edges(edges, inputs=["x"], outputs=["y"])
p = np.array([0.8, -1.5, 2.0])

r = pathgeom.path_quantities(g, p)
print(g)
print("nodes in topological order:", g.nodes)
print(f"gamma^2 = {r.gamma2:.6f}  (reference: {float(reference.gamma2(g, p)):.6f})")
print("kappa1  =", r.kappa1)
print("kappa2  =", r.kappa2, " (exact; the printed eq. (10) would be half of it)")
print("kappa   =", r.kappa)
exact = np.array([float(x) for x in reference.kappa(g, p)])
print("kappa from 1/2 d^2 gamma^2 / dp^2 in exact rationals:", exact)
print("max relative difference:", np.max(np.abs(r.kappa - exact) / exact))
print("parameters whose kappa2 can be non-zero:", pathgeom.kappa2_support(g))
