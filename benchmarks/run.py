"""``make bench``: every benchmark, each printing ratios against baselines timed in the same
run.  ``--quick`` runs small sizes only (a smoke test, not a measurement)."""

import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numba  # noqa: E402
import numpy  # noqa: E402

import bench_cache  # noqa: E402
import bench_core  # noqa: E402
import bench_dask  # noqa: E402
import bench_kappa2  # noqa: E402
import bench_rnn  # noqa: E402
import bench_sweep  # noqa: E402
import bench_targets  # noqa: E402
import bench_threads  # noqa: E402
import bench_train  # noqa: E402


def main(argv):
    quick = "--quick" in argv
    print(f"pathgeom benchmarks on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, numba {numba.__version__} ({numba.get_num_threads()} "
          f"threads), numpy {numpy.__version__}")
    for title, module, extra in (
            ("issue 13: every target as a ratio to its yardstick", bench_targets, []),
            ("gamma^2 + kappa1 throughput", bench_core, [bench_core.construction]),
            ("exact kappa2", bench_kappa2, []),
            ("RNN constructor: structured against generic and autodiff", bench_rnn,
             [bench_rnn.construction]),
            ("training step", bench_train, []),
            ("threads of a training run", bench_threads, []),
            ("a training run in a sweep worker", bench_sweep, []),
            ("compile cache", bench_cache, []),
            ("exact kappa2 on a Dask cluster: time against workers", bench_dask, [])):
        print(f"\n== {title} ==")
        module.run(quick=quick)
        for fn in extra:
            fn(quick=quick)


if __name__ == "__main__":
    main(sys.argv[1:])
