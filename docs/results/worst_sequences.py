"""Where a run's test MSE comes from: the squared error of each test sequence.

Usage: python docs/results/worst_sequences.py RUN_DIR [RUN_DIR ...]

RUN_DIR holds an adding-problem run's ``run.json`` and ``params.npz`` (a run directory of
``pathgeom train`` or ``pathgeom sweep``, or its copy under docs/results/runs/). The test
set is rebuilt from the run's data seed. Printed per run: the test MSE (the mean), the
median squared error, the number of sequences with squared error above 1, and the largest
squared error; a mean far above the median comes from a few sequences.
"""
import sys

import numpy as np

from pathgeom import experiments, runs
from pathgeom.tasks import make_task


def main(dirs):
    print("| run | test MSE | median | sequences above 1 | largest |")
    print("|---|---:|---:|---:|---:|")
    for d in dirs:
        config = experiments.check_config(experiments.read_run_config(d))
        if config["task"] != "adding":
            sys.exit(f"{d}: an {config['task']} run; this script reads adding-problem runs")
        net, p = runs.load_params(f"{d}/params.npz")[:2]
        X, Y = make_task("adding", T=config["T"], seed=config["data_seed"]).test
        err = ((np.asarray(net.forward(p, X)).reshape(Y.shape) - Y) ** 2).ravel()
        name = d.rstrip("/").split("/")[-1]
        print(f"| {name} | {err.mean():.4g} | {np.median(err):.3g} | {(err > 1).sum()} of "
              f"{err.size} | {err.max():.3g} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
