"""How far each weight block of a finished run moved from its initialisation.

Usage: python docs/results/weights_moved.py RUN_DIR [RUN_DIR ...]

RUN_DIR holds a run's ``run.json`` and ``params.npz`` (a run directory of ``pathgeom train``
or ``pathgeom sweep``, or its copy under docs/results/runs/). The initial parameters are
rebuilt from the run's configuration (its initialisation scheme and seed), exactly as
training drew them. Printed per block: the norm at the start, the norm of the change, and
the median of kappa^(1) at the start (eq. 9), the divisor of the Path-SGD step.
"""
import sys

import numpy as np

from pathgeom import experiments, runs


def main(dirs):
    print("| run | block | norm at start | norm of change | median κ⁽¹⁾ at start |")
    print("|---|---|---:|---:|---:|")
    for d in dirs:
        config = experiments.read_run_config(d)
        net, p = runs.load_params(f"{d}/params.npz")[:2]
        p0 = net.init(np.random.default_rng(config["seed"]), config["init"])
        kappa1 = net.kappa1(p0)
        name = d.rstrip("/").split("/")[-1]
        for block in ("W_in", "W_rec", "W_out"):
            s = net.layout.slice(block) if block == "W_out" else net.layout.slice(block, 0)
            print(f"| {name} | {block} | {np.linalg.norm(p0[s]):.3g} | "
                  f"{np.linalg.norm(p[s] - p0[s]):.3g} | {np.median(kappa1[s]):.2g} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
