"""Issue 13's table: every row as a ratio against its yardstick, measured in this run.

Yardsticks (all timed in this process, best of several, compile time excluded):

* one JAX gradient of the squared RNN (jit, float64; the faster of a Python-unrolled and
  a ``lax.scan`` time loop) for the structured RNN rows;
* the machine's copy bandwidth over 16 bytes per edge for the generic passes (one thread);
* JAX jit one-hot Hessian-vector products for the generic exact kappa;
* an SGD step for the Path-SGD step;
* the step's matrix-multiply flops at the dgemm rate measured here (2048 x 2048, every
  thread) for the dense training step; its note adds the same step and yardstick on one
  thread (``threads=1``, what training runs use), which is not the row.

``python benchmarks/bench_targets.py [--quick] [row-name-substring ...]``
"""

import contextlib
import subprocess
import sys
import time

import numba
import numpy as np

import pathgeom
from pathgeom.training import make_optimizer, thread_limits

from _common import train_step_fn as _step_fn, best_time, copy_bandwidth, layered_dag_arrays, rnn_graph

TARGETS = {  # row key -> (what, target text, target value, 'le' or 'ge')
    "k1-100-100": ("RNN gamma2+kappa1 (structured) T=100 H=100 / JAX grad", 1.0, "le"),
    "k1-784-100": ("RNN gamma2+kappa1 (structured) T=784 H=100 / JAX grad", 1.0, "le"),
    "k1-100-512": ("RNN gamma2+kappa1 (structured) T=100 H=512 / JAX grad", 1.0, "le"),
    "kap-100-100": ("RNN exact kappa (structured) T=100 H=100 / JAX grad", 8.0, "le"),
    "kap-784-100": ("RNN exact kappa (structured) T=784 H=100 / JAX grad", 10.0, "le"),
    "gen-rnn": ("generic gamma2+kappa1, RNN T=100 H=100, 1 thread / copy bound", 0.50, "ge"),
    "gen-dag-1e5": ("generic, random DAG fan-in 10, 1e5 params: M edges/s / 300", 1.0, "ge"),
    "gen-dag-1e6": ("generic, random DAG fan-in 100, 1e6 params: M edges/s / 300", 1.0, "ge"),
    "gen-kappa": ("generic exact kappa RNN T=100 H=64: ms / 120 ms", 1.0, "le"),
    "psgd-100": ("Path-SGD(kappa1, raw) step / SGD step, B=64 T=100 H=100", 1.10, "le"),
    "psgd-784": ("Path-SGD(kappa1, raw) step / SGD step, B=64 T=784 H=100", 1.10, "le"),
    "dense-sgd": ("dense SGD step B=64 T=100 H=100 / its matmul flops at dgemm rate", 2.0,
                  "le"),
    "busy-k1-100-100": ("busy: RNN gamma2+kappa1 T=100 H=100 / quiet 1 thread", 1.3, "le"),
    "busy-k1-784-100": ("busy: RNN gamma2+kappa1 T=784 H=100 / quiet 1 thread", 1.3, "le"),
    "busy-kap-100-100": ("busy: RNN exact kappa T=100 H=100 / quiet 1 thread", 1.3, "le"),
    "busy-kap-784-100": ("busy: RNN exact kappa T=784 H=100 / quiet 1 thread", 1.3, "le"),
    "busy-kap-100-512": ("busy: RNN exact kappa T=100 H=512 / quiet 1 thread", 1.3, "le"),
    "quiet-kap-100-100": ("quiet: RNN exact kappa T=100 H=100, default / 1 thread", 1.05,
                          "le"),
    "quiet-kap-100-512": ("quiet: RNN exact kappa T=100 H=512, default / 1 thread", 1.05,
                          "le"),
}


def rnn_net(T, H, rng, n_in=1):
    net = pathgeom.rnn(n_in, H, 1, T)
    p = net.init(rng, "irnn")
    s = np.sqrt(2.7 / H)  # E[W_rec^2] * H = 0.9: path sums stay in range for any T
    p[net.layout.slice("W_rec", 0)] = rng.uniform(-s, s, H * H)
    return net, p


def jax_grad_time(T, H, net, p):
    """Best time of one jit-compiled JAX gradient of the squared RNN's gamma^2 (float64)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    L = net.layout
    s_in, s_rec, s_out = L.slice("W_in", 0), L.slice("W_rec", 0), L.slice("W_out")

    def unrolled(p):
        q = p * p
        w_in, R = q[s_in], q[s_rec].reshape(H, H)
        h = w_in
        for _ in range(T - 1):
            h = w_in + R @ h
        return (q[s_out] * h).sum()

    def scanned(p):
        q = p * p
        w_in, R = q[s_in], q[s_rec].reshape(H, H)
        h, _ = jax.lax.scan(lambda h, _: (w_in + R @ h, None), w_in, None, length=T - 1)
        return (q[s_out] * h).sum()

    pj = jnp.asarray(p)
    best = np.inf
    ref = net.path_quantities(p, with_kappa2=False)
    for fn in ([unrolled, scanned] if T <= 200 else [scanned]):
        g = jax.jit(jax.value_and_grad(fn))
        v, d = g(pj)
        # d gamma^2 / dp = 2 p kappa1: the yardstick computes the same thing
        assert np.allclose(np.asarray(d), 2 * p * ref.kappa1, rtol=1e-9,
                           atol=1e-12 * np.abs(np.asarray(d)).max())
        best = min(best, best_time(lambda: jax.block_until_ready(g(pj)), repeat=20,
                                   min_time=0.5))
    return best


def dgemm_rate(n=2048):
    a = np.random.default_rng(0).random((n, n))
    b = a.copy()
    t = best_time(lambda: a @ b, repeat=5)
    return 2.0 * n ** 3 / t


def structured_rows(quick, want):
    rng = np.random.default_rng(0)
    sizes = [(100, 100), (784, 100), (100, 512)] if not quick else [(20, 16)]
    out = []
    for T, H in sizes:
        k1, kap = (f"k1-{T}-{H}", f"kap-{T}-{H}") if not quick else ("k1-100-100",
                                                                    "kap-100-100")
        if not (want(k1) or want(kap)):
            continue
        net, p = rnn_net(T, H, rng)
        t1 = best_time(lambda: net.path_quantities(p, with_kappa2=False), repeat=20,
                       min_time=0.5)
        tk = None
        if kap in TARGETS and want(kap) or quick:
            tk = best_time(lambda: net.path_quantities(p), repeat=10, min_time=0.5)
        tj = jax_grad_time(T, H, net, p)
        if tj is None:
            print("  JAX not installed (pip install -e '.[bench]'): no yardstick")
            continue
        out.append((k1, t1 / tj, f"{t1 * 1e3:.3f} ms vs JAX grad {tj * 1e3:.3f} ms"))
        if tk is not None:
            out.append((kap, tk / tj, f"{tk * 1e3:.2f} ms vs JAX grad {tj * 1e3:.3f} ms"))
    return out


def generic_rows(quick, want):
    out = []
    rng = np.random.default_rng(0)
    # the copy bound of issue 25: a 128 MiB np.copyto moves 2 x 128 MiB (read + write);
    # at 16 bytes per edge (the two CSRs' indices) that many edges per second
    bw = 2 * copy_bandwidth(128 << 20)
    bound = bw / 16
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        cases = [("gen-rnn", (100, 100) if not quick else (20, 16), None)]
        cases += [("gen-dag-1e5", None, (10_000, 10, 10, 100_000)),
                  ("gen-dag-1e6", None, (10_000, 10, 100, 1_000_000))]
        if quick:
            cases = cases[:1] + [("gen-dag-1e5", None, (1000, 5, 10, 10_000))]
        for key, rnn, dag in cases:
            if not want(key):
                continue
            if rnn:
                g, _ = rnn_graph(*rnn)
            else:
                a = layered_dag_arrays(rng, *dag[:3], n_params=dag[3])
                g = pathgeom.SharedGraph.from_arrays(a["src"], a["dst"], a["param"],
                                                     a["inputs"], a["outputs"], a["n_nodes"],
                                                     a["n_params"])
            fan_in = g.n_edges / np.count_nonzero(np.diff(g.compiled.indptr))
            s = np.sqrt(3 * 0.9 / fan_in)
            p = rng.uniform(-s, s, g.n_params)
            t = best_time(lambda: pathgeom.path_quantities(g, p, with_kappa2=False),
                          repeat=10, min_time=0.5)
            rate = g.n_edges / t
            if rnn:
                out.append((key, rate / bound, f"{rate / 1e6:.0f} M edges/s, bound "
                            f"{bound / 1e6:.0f} M edges/s ({bw / 1e9:.1f} GB/s copy, read + "
                            f"write)"))
            else:
                out.append((key, rate / 300e6, f"{rate / 1e6:.0f} M edges/s "
                            f"({rate / bound:.0%} of the copy bound), {g.n_edges:,} edges"))
    finally:
        numba.set_num_threads(threads)
    if want("gen-kappa"):
        T, H = (100, 64) if not quick else (20, 16)
        g, _ = rnn_graph(T, H)
        p = rng.uniform(-np.sqrt(2.7 / H), np.sqrt(2.7 / H), g.n_params)
        t = best_time(lambda: pathgeom.path_quantities(g, p), repeat=3)
        note = f"{t * 1e3:.0f} ms on {threads} threads"
        try:
            from bench_rnn import jax_kappa
            net = pathgeom.rnn(1, H, 1, T)
            jx = jax_kappa(T, H, net, p)
            if jx is not None:
                note += f", {jx[0] / t:.0f}x faster than JAX one-hot HVPs ({jx[0]:.2f} s)"
        except Exception as exc:  # the yardstick is optional; the row is not
            note += f" (JAX HVPs failed: {exc})"
        out.append(("gen-kappa", t / 0.120, note))
    return out


@contextlib.contextmanager
def busy_core():
    """Another process holding one core for the block (a pure-Python busy loop), as on a
    laptop, a CI runner or a shared node; stopped afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)   # let it start spinning
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def busy_rows(quick, want):
    """Structured RNN targets with another process holding one core, against the quiet
    one-thread time measured in this run; and quiet default threads against one thread
    (nothing gets slower on a quiet machine).  The note gives the busy time without the
    per-call thread choice (every product on the caller's thread count), the behaviour
    before it."""
    from pathgeom import _threads
    rng = np.random.default_rng(0)
    out = []
    sizes = [(100, 100), (784, 100), (100, 512)] if not quick else [(20, 16)]
    for T, H in sizes:
        keys = {k: f"{k}-{T}-{H}" if not quick else f"{k}-100-100"
                for k in ("busy-k1", "busy-kap", "quiet-kap")}
        keys = {k: v for k, v in keys.items() if v in TARGETS and want(v)}
        if not keys:
            continue
        net, p = rnn_net(T, H, rng)
        fns = {"busy-k1": lambda: net.path_quantities(p, with_kappa2=False),
               "busy-kap": lambda: net.path_quantities(p),
               "quiet-kap": lambda: net.path_quantities(p)}
        rep = dict(repeat=5 if quick else 15, min_time=0.2 if quick else 1.0)
        for k, key in keys.items():
            fn = fns[k]
            with pathgeom.threads(1):
                one = best_time(fn, **rep)
            if k == "quiet-kap":
                default = best_time(fn, **rep)
                out.append((key, default / one, f"{default * 1e3:.2f} ms default, "
                            f"{one * 1e3:.2f} ms on 1 thread"))
                continue
            with busy_core():
                busy = best_time(fn, **rep)
                saved = _threads.SMALL_WORK
                _threads.SMALL_WORK = 0       # the behaviour before the per-call choice
                try:
                    before = best_time(fn, **rep)
                finally:
                    _threads.SMALL_WORK = saved
            out.append((key, busy / one, f"busy {busy * 1e3:.2f} ms, quiet 1 thread "
                        f"{one * 1e3:.2f} ms; busy without the per-call choice "
                        f"{before * 1e3:.2f} ms ({before / one:.1f}x)"))
    return out


def training_rows(quick, want):
    out = []
    rng = np.random.default_rng(0)
    B, H = (16, 16) if quick else (64, 100)
    for T in ((20,) if quick else (100, 784)):
        key = f"psgd-{T}"
        if not (want(key) or (T == (20 if quick else 100) and want("dense-sgd"))):
            continue
        net = pathgeom.rnn(2, H, 1, T)
        p = net.init(rng, "irnn")
        X = rng.random((B, T, 2))
        Y = X[:, :, 0].sum(axis=1, keepdims=True) / T
        steps = [("sgd", make_optimizer("sgd", 1e-3)),
                 ("raw", make_optimizer("path-sgd", 1e-3, rule="raw")),
                 ("backtracking", make_optimizer("path-sgd", 1e-3))]
        best = {name: np.inf for name, _ in steps}
        fns = [(name, _step_fn(net, p, X, Y, opt)) for name, opt in steps]
        for _ in range(3 if quick else 8):  # interleaved rounds: drifts hit all alike
            for name, fn in fns:
                best[name] = min(best[name], best_time(fn, repeat=3, min_time=0))
        if want(key) or quick:
            out.append((key if not quick else "psgd-100", best["raw"] / best["sgd"],
                        f"SGD {best['sgd'] * 1e3:.2f} ms, raw {best['raw'] * 1e3:.2f} ms; "
                        f"default (backtracking) {best['backtracking'] / best['sgd']:.2f}x"))
        if T == (20 if quick else 100) and want("dense-sgd"):
            flops = 3 * 2.0 * (T - 1) * B * H * H + 2 * 2.0 * T * B * H * 2  # rec + input
            n = 512 if quick else 2048
            rate = dgemm_rate(n)
            t_flops = flops / rate
            # not the row: the same step and yardstick on one thread (train's threads=1)
            with thread_limits(1):
                fn = fns[0][1]
                one = min(best_time(fn, repeat=3, min_time=0) for _ in range(3 if quick else 8))
                rate1 = dgemm_rate(n)
            out.append(("dense-sgd", best["sgd"] / t_flops,
                        f"{best['sgd'] * 1e3:.2f} ms; {flops / 1e6:.0f} Mflop at "
                        f"{rate / 1e9:.0f} Gflop/s = {t_flops * 1e3:.2f} ms. One thread "
                        f"(not the row): {one * 1e3:.2f} ms = {one * rate1 / flops:.2f}x "
                        f"at the 1-thread {rate1 / 1e9:.0f} Gflop/s"))
    return out


def run(quick=False, only=()):
    def want(key):
        return not only or any(o in key for o in only)
    rows = []
    # pathgeom-only rows first, JAX-timed rows last (XLA leaves worker threads behind)
    rows += training_rows(quick, want)
    rows += generic_rows(quick, want)
    rows += structured_rows(quick, want)
    rows += busy_rows(quick, want)
    order = list(TARGETS)
    rows.sort(key=lambda r: order.index(r[0]) if r[0] in order else len(order))
    print(f"{'row':66} {'ratio':>7} {'target':>8}  met  measured")
    for key, ratio, note in rows:
        what, target, sense = TARGETS[key]
        ok = ratio <= target if sense == "le" else ratio >= target
        sign = "<=" if sense == "le" else ">="
        print(f"{what:66} {ratio:7.2f} {sign}{target:6.2f}  {'yes' if ok else 'NO ':3}  {note}")


if __name__ == "__main__":
    args = sys.argv[1:]
    run(quick="--quick" in args, only=[a for a in args if not a.startswith("--")])
