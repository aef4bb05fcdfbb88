"""Thread settings of a training run: the same Path-SGD run with one BLAS/numba thread and
with the library defaults (every core), timed back to back in one process.

On a machine whose cores are busy (a sweep, another job) the default BLAS threads fight
for the cores on every small matrix product; one thread per run avoids it.  Prints the
seconds of each and their ratio; ``python benchmarks/bench_threads.py [steps] [T] [H]``.
"""

import sys
import time

import numpy as np

import pathgeom
from pathgeom.tasks import make_task
from pathgeom.training import make_optimizer, train


def timed(threads, steps, T, H, repeats=2):
    task = make_task("adding", T=T, seed=0)
    net = pathgeom.rnn(2, H, 1, T)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        train(net, task, make_optimizer("path-sgd", 1e-3), steps, batch_size=64, rng=0,
              eval_every=steps, progress=False, threads=threads)
        best = min(best, time.perf_counter() - start)
    return best


def run(quick=False):
    """For ``make bench``: 300 steps at T = 100, H = 100 (``quick``: 5 steps, T = 10)."""
    main(5, 10, 8) if quick else main()


def main(steps=300, T=100, H=100):
    timed(1, 2, T, H, repeats=1)  # compile and warm up
    one = timed(1, steps, T, H)
    default = timed(None, steps, T, H)
    print(f"{steps} Path-SGD steps, T = {T}, H = {H}, batch 64")
    print(f"  threads = 1 (the CLI default):     {one:9.4f} s")
    print(f"  library default threads:           {default:9.4f} s   ({default / one:.3f}x)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
