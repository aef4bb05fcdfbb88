"""The timings quoted in the concept pages, each measured by one row of this script.

    python benchmarks/bench_docs.py            # every row
    python benchmarks/bench_docs.py group      # rows whose key contains "group"

Each row is the best of several calls after a warm-up call (numba compilation is never
timed), in this process, with the library's default thread settings unless the row says
otherwise.  The machine's load average is printed first: on a shared machine the rows are
slower, and the pages quote them with the load they were measured under.
"""

import os
import sys
import time

import numpy as np

import pathgeom
from pathgeom.constructors.cnn import Conv2d, Dense

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_time  # noqa: E402


def _group(g):
    g._cache.pop("rescaling_group", None)   # the group is cached on the graph
    return pathgeom.rescaling_group(g)


def _chain(n_edges):
    k = np.arange(n_edges)
    return pathgeom.SharedGraph.from_arrays(k, k + 1, k, inputs=[0], outputs=[n_edges])


def rows():
    """``(key, what, seconds)`` of every row, built lazily."""
    def cnn_build():
        return pathgeom.cnn((3, 32, 32), [Conv2d(16, 3, padding=1), Conv2d(16, 3, padding=1),
                                          Dense(16)], 10).graph

    yield "cnn-build", f"cnn 3x32x32, two 3x3 conv of 16 channels, Dense(16): " \
                       f"{cnn_build().n_edges:,} edges, build", \
        lambda: best_time(cnn_build, repeat=3)
    big = pathgeom.cnn((3, 224, 224), [Conv2d(32, 3, padding=1), Conv2d(32, 3, padding=1),
                                       Conv2d(8, 3, stride=2), Dense(10)], 10)
    p_big = big.init(np.random.default_rng(0), "he")
    yield "cnn-dense-quantities", f"cnn 3x224x224, two 3x3 conv of 32 channels, a stride-2 " \
                                  f"conv of 8, Dense(10) (up to {big.n_edges_bound:,} edges, " \
                                  f"never built): path_quantities, dense", \
        lambda: best_time(lambda: big.path_quantities(p_big), repeat=3)
    yield "cnn-dense-path-norm", "the same cnn: path_norm q=1, dense", \
        lambda: best_time(lambda: big.path_norm(p_big, 1), repeat=3)
    for T, H in ((50, 16), (100, 64)):
        g = pathgeom.rnn(1, H, 1, T).graph
        yield f"group-rnn-T{T}-H{H}", f"rescaling_group, RNN T={T} H={H} " \
                                      f"({g.n_edges:,} edges)", \
            (lambda g=g: best_time(lambda: _group(g), repeat=3))
    chain = _chain(100_000)
    yield "group-chain", "rescaling_group, chain of 100,000 edges", \
        lambda: best_time(lambda: _group(chain), repeat=3)
    net = pathgeom.mlp([100, 100, 100, 1])
    yield "group-mlp", f"rescaling_group, MLP [100, 100, 100, 1] ({net.graph.n_edges:,} " \
                       f"edges)", lambda: best_time(lambda: _group(net.graph), repeat=5)
    yield "charlm-corpus", "built-in character corpus, 100,000 / 10,000 / 10,000 chars", \
        lambda: best_time(lambda: pathgeom.make_task("charlm", corpus="builtin"), repeat=3)
    def step(name, T, steps):
        task = pathgeom.make_task("adding", T=T, seed=0)
        rnn = pathgeom.rnn(task.n_in, 100, task.n_out, task.T)

        def once():
            opt = pathgeom.make_optimizer(name, 1e-3)
            # eval_every beyond the run: only the evaluations at steps 0 and `steps`
            res = pathgeom.train(rnn, task, opt, steps, batch_size=16, rng=0,
                                 eval_every=None, progress=False, threads=1)
            return res.seconds / steps
        once()
        return min(once() for _ in range(2))

    for T, steps in ((100, 200), (784, 100)):
        for name in ("sgd", "path-sgd"):
            yield f"train-step-T{T}-{name}", f"train step, {name}, adding T={T} H=100 batch " \
                                             f"16, 1 thread (a run of {steps} steps / {steps})", \
                (lambda name=name, T=T, steps=steps: step(name, T, steps))


def main(only):
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} on "
          f"{os.cpu_count()} CPUs")
    for key, what, measure in rows():
        if only and not any(o in key for o in only):
            continue
        t = measure()
        shown = f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"
        print(f"{key:26} {what:86} {shown:>10}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main(sys.argv[1:])
    print(f"({time.perf_counter() - t0:.0f} s)")
