"""numba's on-disk cache: the first call in a fresh process compiles, a second process
reuses the cache.  Each run uses a private NUMBA_CACHE_DIR, so the first start is cold."""

import os
import subprocess
import sys
import tempfile

SNIPPET = """
import time
t0 = time.perf_counter()
import numpy as np
import pathgeom
t1 = time.perf_counter()
g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 0)], ["x"], ["y"])
pathgeom.path_quantities(g, np.array([0.5, 2.0]))
g.backward([0.5, 2.0], [1.0], [1.0])
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def run(quick=False):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        times = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", SNIPPET], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            times.append([float(x) for x in out])
    (imp1, call1), (imp2, call2) = times
    print(f"first process (compiles):      import {imp1:.2f} s, first calls {call1:.2f} s")
    print(f"second process (numba cache):  import {imp2:.2f} s, first calls {call2:.2f} s "
          f"({call1 / call2:.0f}x faster first calls)")


if __name__ == "__main__":
    run()
