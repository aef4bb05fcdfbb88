"""ResNet-18 at ImageNet size through the ONNX import: import time and memory, and the dense
path quantities on one thread, beside PyTorch's float64 autograd of the same squared network.

Target (issue 23): a ResNet-18 at 3x224x224 imports in seconds under 2 GB, and
``imp.path_quantities()`` (gamma^2, kappa1, kappa2 = 0 by the depth certificate, kappa) on
one thread takes at most the time of PyTorch's float64 forward + gradient of the squared
network on one thread (``benchmarks/_torch_yardstick.py``, when torch and torchvision are
installed; never a dependency).

The model: ``--model FILE.onnx`` (e.g. torchvision's folded ResNet-18, written by
``python benchmarks/_torch_yardstick.py --export resnet18.onnx``), else a model with
ResNet-18's layer shapes and random weights written with onnx.helper
(``tests/onnx_models.py``).

    python benchmarks/bench_resnet.py [--size 224] [--model FILE.onnx]
"""

import argparse
import os
import pathlib
import resource
import sys
import tempfile
import time
import tracemalloc

import numpy as np

import pathgeom

HERE = pathlib.Path(__file__).resolve().parent


def _resnet18_file(size, directory):
    sys.path.insert(0, str(HERE.parent / "tests"))
    try:
        from onnx_models import resnet18
    finally:
        sys.path.pop(0)
    import onnx
    path = os.path.join(directory, f"resnet18_{size}.onnx")
    onnx.save(resnet18(np.random.default_rng(0), size=size), path)
    return path


def torch_seconds(size):
    """PyTorch's yardstick (seconds), or None without torch/torchvision or the helper."""
    try:
        from _torch_yardstick import torch_yardstick_seconds
    except ImportError:
        return None
    return torch_yardstick_seconds(size=size, threads=1)


def measure(path, repeat=3):
    """``(import_s, import_peak_bytes, path_quantities_s, result)`` for the model file."""
    from threadpoolctl import threadpool_limits
    t0 = time.perf_counter()
    imp = pathgeom.from_onnx(path)
    import_s = time.perf_counter() - t0
    del imp
    tracemalloc.start()
    imp = pathgeom.from_onnx(path)
    peak_import = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    with threadpool_limits(1):
        res = imp.path_quantities()            # warm-up (and the parameter bookkeeping)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = imp.path_quantities()
            times.append(time.perf_counter() - t0)
        norm_times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            imp.path_norm(q=2)
            norm_times.append(time.perf_counter() - t0)
        tracemalloc.start()
        imp.path_quantities()
        peak_pq = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return imp, import_s, peak_import, min(times), peak_pq, res, min(norm_times)


def run(quick=False, size=None, model=None):
    """Print the figures; ``model``: an .onnx file (its input size is its own)."""
    size = size or (32 if quick else 224)
    with tempfile.TemporaryDirectory() as tmp:
        path = model or _resnet18_file(size, tmp)
        imp, import_s, peak_import, pq_s, peak_pq, res, norm_s = measure(path,
                                                                           1 if quick else 3)
    print(f"ResNet-18 ({'model ' + str(model) if model else 'onnx.helper, random weights'}), "
          f"input {imp.input_shapes[0]}: {imp.n_params} parameters")
    print(f"import: {import_s * 1e3:.0f} ms, peak traced memory {peak_import / 2**20:.0f} MiB")
    print(f"path_quantities, one thread: {pq_s * 1e3:.0f} ms "
          f"(peak traced memory {peak_pq / 2**20:.0f} MiB); gamma^2 = {res.gamma2!r}, "
          f"kappa2 = 0 by the depth certificate: {not res.kappa2.any()}")
    print(f"path_norm (one forward pass), one thread: {norm_s * 1e3:.0f} ms; "
          f"path_quantities / path_norm = {pq_s / norm_s:.2f}x")
    print(f"process peak resident memory (import, passes, and the model built here): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    t = torch_seconds(size)
    if t is None:
        print("PyTorch float64 yardstick: not measured (torch/torchvision or "
              "benchmarks/_torch_yardstick.py missing)")
    else:
        print(f"PyTorch float64 forward + autograd of the squared network, one thread: "
              f"{t * 1e3:.0f} ms; pathgeom / PyTorch = {pq_s / t:.2f}x")
    return pq_s


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="input height = width (224)")
    parser.add_argument("--model", default=None, help="an .onnx file instead of the built one")
    parser.add_argument("--quick", action="store_true", help="32x32, one repeat")
    a = parser.parse_args()
    sys.path.insert(0, str(HERE))
    run(quick=a.quick, size=a.size, model=a.model)
