"""The benchmark scripts run on small sizes (a smoke test: no timing is asserted).

They also cross-check pathgeom against their numpy/scipy baselines, which are independent
implementations of gamma^2, kappa1 and the kappa2 tangents.
"""

import contextlib
import io
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize("name", ["bench_core", "bench_kappa2", "bench_rnn", "bench_train",
                                  "bench_sweep", "bench_resnet"])
def test_benchmark_quick(bench_path, name):
    if name == "bench_sweep":
        pytest.importorskip("distributed")   # the [dask] extra (make test installs it)
    module = __import__(name)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        module.run(quick=True)
        if name in ("bench_core", "bench_rnn"):
            module.construction(quick=True)
    out = buf.getvalue()
    # every timing and every ratio printed is a positive finite number (the modules assert
    # their results against independent baselines themselves)
    import re
    times = [float(t) for t in re.findall(r"([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s?ms", out)]
    ratios = [float(r) for r in re.findall(r"([0-9]*\.?[0-9]+)x", out)]
    assert times and ratios
    assert all(0 <= t < 1e7 for t in times) and all(0 <= r < 1e7 for r in ratios)
    assert max(times) > 0 and max(ratios) > 0   # (a very fast row may print as 0.00)


def test_thread_benchmark_reports_both_settings(bench_path):
    import bench_threads
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench_threads.run(quick=True)
    lines = buf.getvalue().splitlines()
    one = float(lines[1].split(":")[1].split()[0])
    fields = lines[2].split(":")[1].split()
    default, ratio = fields[0], fields[2]
    assert one > 0 and float(default) > 0
    # the printed values are rounded: compare to their precision
    assert float(ratio.strip("()x")) == pytest.approx(float(default) / one, rel=0.05, abs=0.01)


def test_docs_benchmark_rows(bench_path):
    """benchmarks/bench_docs.py, which measures the timings the concept pages quote."""
    import bench_docs
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench_docs.main(["group-mlp", "charlm"])
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("load average")
    assert [line.split()[0] for line in lines[1:]] == ["group-mlp", "charlm-corpus"]
    assert all(float(line.split()[-2]) > 0 and line.endswith(" ms") for line in lines[1:])
