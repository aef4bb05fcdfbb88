"""The ``pathgeom`` command line (also ``python -m pathgeom``).

``pathgeom demo`` is the main job of ``make demo``: it builds a small unrolled RNN as a
shared-weight graph, checks Lemma 1 against the exact rational reference, and times the
exact curvature on a larger network.
"""

import argparse
import sys
import time

import numpy as np

from . import reference
from ._builders import rnn_arrays
from .geometry import kappa2_support, path_quantities
from .graph import SharedGraph

__all__ = ["main"]


def _rnn_graph(n_in, H, n_out, T):
    a = rnn_arrays(n_in, H, n_out, T)
    g = SharedGraph.from_arrays(a["src"], a["dst"], a["param"], a["inputs"], a["outputs"],
                                n_nodes=a["n_nodes"], n_params=a["n_params"])
    return g, a["rec"]


def _demo(args, out):
    rng = np.random.default_rng(args.seed)
    T, H = args.T, args.H
    g, rec = _rnn_graph(1, H, 1, T)
    p = rng.uniform(-1.0, 1.0, g.n_params)
    print(f"Unrolled ReLU RNN, T = {T}, H = {H}: {g}", file=out)
    r = path_quantities(g, p)
    print(f"gamma^2 = {r.gamma2:.6g}   (parameters with kappa2 not certified zero: "
          f"{kappa2_support(g).size}, the {H * H} entries of W_rec)", file=out)
    exact_k = np.array([float(x) for x in reference.kappa(g, p)])
    eq10 = np.array([float(x) for x in reference.kappa2_printed_eq10(g, p)])
    eq11 = np.array([float(x) for x in reference.kappa2_printed_eq11(g, p)])
    print("\nLemma 1 on W_rec: kappa = 1/2 d^2 gamma^2/dp^2 (exact rationals) vs the engine",
          file=out)
    print(f"{'param':>6} {'kappa (def)':>12} {'kappa1':>12} {'kappa2':>12} "
          f"{'eq.(10)':>12} {'eq.(11)':>12}", file=out)
    for i in range(rec.start, rec.stop):
        print(f"{i:>6} {exact_k[i]:>12.6g} {r.kappa1[i]:>12.6g} {r.kappa2[i]:>12.6g} "
              f"{eq10[i]:>12.6g} {eq11[i]:>12.6g}", file=out)
    err = np.max(np.abs(r.kappa1 + r.kappa2 - exact_k) / np.maximum(np.abs(exact_k), 1e-300))
    print(f"largest relative error of kappa1 + kappa2 against the definition: {err:.1e}",
          file=out)
    nz = r.kappa2 != 0
    if nz.any():
        print(f"on the {int(nz.sum())} parameters with kappa2 != 0: printed eq.(10) / exact "
              f"kappa2 = {np.median(eq10[nz] / r.kappa2[nz]):.3g}, eq.(11) / exact = "
              f"{np.median(eq11[nz] / r.kappa2[nz]):.3g}", file=out)

    T2, H2 = args.big_T, args.big_H
    g2, _ = _rnn_graph(1, H2, 1, T2)
    p2 = rng.uniform(-0.1, 0.1, g2.n_params)
    path_quantities(g2, p2)  # compile / warm up
    t0 = time.perf_counter()
    cheap = path_quantities(g2, p2, with_kappa2=False)
    t1 = time.perf_counter()
    full = path_quantities(g2, p2)
    t2 = time.perf_counter()
    print(f"\nT = {T2}, H = {H2} ({g2.n_edges:,} edges, {kappa2_support(g2).size:,} "
          f"interacting parameters):", file=out)
    print(f"  gamma^2 + kappa1: {1e3 * (t1 - t0):.3g} ms;  exact kappa (with kappa2): "
          f"{1e3 * (t2 - t1):.3g} ms", file=out)
    ratio = np.linalg.norm(full.kappa2) / np.linalg.norm(cheap.kappa1)
    print(f"  ||kappa2|| / ||kappa1|| = {ratio:.3g}", file=out)
    return 0


def main(argv=None, out=None):
    """Entry point of the ``pathgeom`` console script."""
    out = sys.stdout if out is None else out
    parser = argparse.ArgumentParser(prog="pathgeom", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="Lemma 1 on a small RNN graph, and timings")
    demo.add_argument("--T", type=int, default=5, help="time steps of the checked RNN")
    demo.add_argument("--H", type=int, default=2, help="hidden units of the checked RNN")
    demo.add_argument("--big-T", type=int, default=100, help="time steps of the timed RNN")
    demo.add_argument("--big-H", type=int, default=64, help="hidden units of the timed RNN")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return {"demo": _demo}[args.command](args, out)
