"""The RNN constructor's structured path quantities against the generic graph engine and
autodiff (JAX / PyTorch one-hot Hessian-vector products, when installed).

Targets (issue 3): exact kappa of a one-layer RNN, T = 100, H = 100, under 50 ms;
T = 784, H = 100 under 2 s; building the T = 784, H = 100 graph (8 M edges) under 3 s and
1 GiB peak memory.
"""

import subprocess
import sys
import textwrap

import numba
import numpy as np

import pathgeom

from _common import best_time

SIZES = [(10, 16), (50, 32), (100, 64), (100, 100), (784, 100)]
GENERIC_BUDGET = 1.2e10  # edge x parameter updates for the generic kappa2 (about a second)
AUTODIFF_BUDGET = 1.2e10  # parameters x T x H^2 for one-hot HVPs (tens of seconds)


def _net(T, H, rng):
    net = pathgeom.rnn(1, H, 1, T)
    p = net.init(rng, "irnn")
    s = np.sqrt(2.7 / H)  # E[W_rec^2] * H = 0.9: path sums stay in range for any T
    p[net.layout.slice("W_rec", 0)] = rng.uniform(-s, s, H * H)
    return net, p


def _dense_gamma2(T, H, net):
    """gamma^2 of the one-layer RNN as a function of p, for an autodiff framework
    (the squared network on the all-ones input, unrolled in Python: traced once)."""
    L = net.layout
    s_in, s_rec, s_out = L.slice("W_in", 0), L.slice("W_rec", 0), L.slice("W_out")

    def gamma2(p):
        q = p * p
        w_in = q[s_in]
        R = q[s_rec].reshape(H, H)
        h = w_in
        for _ in range(T - 1):
            h = w_in + R @ h
        return (q[s_out] * h).sum()
    return gamma2


def jax_kappa(T, H, net, p, chunk=256):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    gamma2 = _dense_gamma2(T, H, net)

    grad = jax.grad(gamma2)
    m = p.size

    @jax.jit
    def diag_chunk(p, idx):
        one_hot = jax.nn.one_hot(idx, m, dtype=p.dtype)
        return jax.vmap(lambda e, i: jax.jvp(grad, (p,), (e,))[1][i])(one_hot, idx)

    pj = jnp.asarray(p)
    chunks = [jnp.arange(s, min(s + chunk, m)) for s in range(0, m, chunk)]

    def run():
        return np.concatenate([np.asarray(diag_chunk(pj, c)) for c in chunks]) / 2
    return best_time(run, repeat=1, min_time=0), run()


def torch_kappa(T, H, net, p, chunk=256):
    try:
        import torch
        from torch.func import grad, jvp, vmap
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    gamma2 = _dense_gamma2(T, H, net)
    pt = torch.tensor(p, dtype=torch.float64)
    m = p.size

    def run():
        out = []
        with torch.no_grad():
            for s in range(0, m, chunk):
                idx = torch.arange(s, min(s + chunk, m))
                eye = torch.nn.functional.one_hot(idx, m).to(torch.float64)
                hvp = vmap(lambda e: jvp(grad(gamma2), (pt,), (e,))[1])(eye)
                out.append(hvp[torch.arange(idx.numel()), idx].numpy())
        return np.concatenate(out) / 2
    return best_time(run, repeat=1, min_time=0), run()


def _ms(t, base):
    return f"{t * 1e3:.3g}ms ({t / base:.0f}x)"


def run(quick=False):
    rng = np.random.default_rng(0)
    sizes = SIZES[:2] if quick else SIZES
    nets = [(T, H) + _net(T, H, rng) for T, H in sizes]
    rows, notes = [], set()
    # all pathgeom timings first: autodiff frameworks leave spinning worker threads behind
    for T, H, net, p in nets:
        t1 = best_time(lambda: net.path_quantities(p, with_kappa2=False))
        tk = best_time(lambda: net.path_quantities(p))
        exact = net.path_quantities(p)
        row = dict(T=T, H=H, edges=net.graph.n_edges, t1=t1, tk=tk, kappa=exact.kappa)
        support = pathgeom.kappa2_support(net.graph).size
        if net.graph.n_edges * support <= GENERIC_BUDGET * (0.01 if quick else 1):
            generic = pathgeom.path_quantities(net.graph, p)
            assert np.allclose(generic.kappa, exact.kappa, rtol=1e-10, atol=0)
            row["generic"] = best_time(lambda: pathgeom.path_quantities(net.graph, p),
                                       repeat=3, min_time=0)
        else:
            notes.add(f"generic κ skipped where |E| × |support| > {GENERIC_BUDGET:.1e} "
                      f"(several seconds)")
        row["tf"] = best_time(lambda: net.path_quantities(p, method="fft"), repeat=2)
        fft = net.path_quantities(p, method="fft").kappa2
        rec = net.layout.slice("W_rec", 0)
        row["err"] = np.max(np.abs(fft[rec] - exact.kappa2[rec]) / exact.kappa2[rec])
        rows.append(row)
    for (T, H, net, p), row in zip(nets, rows):
        for name, fn in (("JAX", jax_kappa), ("PyTorch", torch_kappa)):
            if net.n_params * T * H * H > AUTODIFF_BUDGET * (0.001 if quick else 1):
                notes.add(f"autodiff skipped where n_params × T × H² > {AUTODIFF_BUDGET:.1e}")
                continue
            res = fn(T, H, net, p)
            if res is None:
                notes.add(f"{name} not installed: its column is n/a "
                          f"({'pip install -e .[bench]' if name == 'JAX' else 'pip install torch==2.13.0 (CPU)'})")
                row[name] = "n/a"
                continue
            assert np.allclose(res[1], row["kappa"], rtol=1e-8,
                               atol=1e-12 * row["kappa"].max())
            row[name] = res[0]
    print("times; in brackets the ratio to the structured exact κ of the same row")
    print(f"{'T':>4} {'H':>4} {'edges':>10} {'γ²+κ⁽¹⁾':>9} {'exact κ':>9} {'generic κ':>14} "
          f"{'JAX':>16} {'PyTorch':>16} {'fft rel.err':>11} {'fft time':>9}")
    for r in rows:
        cells = []
        for key, width in (("generic", 14), ("JAX", 16), ("PyTorch", 16)):
            v = r.get(key, "skipped")
            cells.append(f"{v if isinstance(v, str) else _ms(v, r['tk']):>{width}}")
        print(f"{r['T']:>4} {r['H']:>4} {r['edges']:>10,} {r['t1'] * 1e3:>7.2f}ms "
              f"{r['tk'] * 1e3:>7.2f}ms " + " ".join(cells)
              + f" {r['err']:>11.1e} {r['tf'] * 1e3:>7.1f}ms")
    for note in sorted(notes):
        print("  " + note)


def construction(quick=False):
    """Build time and peak memory of the T = 784, H = 100 graph, in a fresh process."""
    T, H = (100, 32) if quick else (784, 100)
    code = textwrap.dedent(f"""
        import time, pathgeom

        def hwm():  # peak resident set of this process, MiB
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024

        pathgeom.rnn(1, 4, 1, T=3)  # compile / load the construction kernels
        before = hwm()
        t0 = time.perf_counter()
        net = pathgeom.rnn(1, {H}, 1, T={T})
        dt = time.perf_counter() - t0
        print(net.graph.n_edges, dt, before, hwm())
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    edges, dt, before, peak = int(out[0]), float(out[1]), float(out[2]), float(out[3])
    print(f"pathgeom.rnn(1, {H}, 1, T={T}): {edges:,} edges built in {dt:.2f} s; peak resident "
          f"memory {peak:.0f} MiB ({peak - before:.0f} MiB above the process before the build)")


if __name__ == "__main__":
    construction(quick="--quick" in sys.argv)
    run(quick="--quick" in sys.argv)
