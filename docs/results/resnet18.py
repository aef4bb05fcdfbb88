"""The ResNet-18 walkthrough (docs/resnet18.md): path norms, kappa per layer, the rescaling
group, from torchvision's ResNet-18 exported to ONNX.

    python benchmarks/_torch_yardstick.py --export resnet18.onnx          # 3x224x224
    python benchmarks/_torch_yardstick.py --export resnet18_16.onnx 16    # 3x16x16
    python docs/results/resnet18.py resnet18.onnx resnet18_16.onnx

(the exports need PyTorch and torchvision, in any environment; this script needs pathgeom
with its [onnx] and [plot] extras only).  Writes ``docs/results/resnet18.json`` (every
number the page quotes) and ``docs/img/resnet18-kappa1.png`` (kappa1 per layer).  Timings
are on one thread (``pathgeom.threads(1)``), best of three, after a first call.
"""

import json
import pathlib
import resource
import sys
import time

import numpy as np

import pathgeom

HERE = pathlib.Path(__file__).resolve().parent


def _best(fn, repeat=3):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def layer_table(net, kappa1):
    """Per weight initializer (conv and fc weights, in model order): its size and the
    quantiles of kappa1 over its entries."""
    rows = []
    for name, values in net.unpack(kappa1).items():
        if values.ndim < 2:          # biases: one per channel
            continue
        v = values.ravel()
        q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
        rows.append({"name": name, "shape": list(values.shape), "n": int(v.size),
                     "min": float(v.min()), "q10": float(q10), "median": float(q50),
                     "q90": float(q90), "max": float(v.max()),
                     "zeros": int(np.count_nonzero(v == 0))})
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    x = np.arange(len(rows))
    med = np.array([r["median"] for r in rows])
    lo = np.array([r["q10"] for r in rows])
    hi = np.array([r["q90"] for r in rows])
    ax.fill_between(x, [r["min"] if r["min"] > 0 else np.nan for r in rows],
                    [r["max"] for r in rows], color="0.88", label="min to max")
    ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.35, label="10 % to 90 %")
    ax.plot(x, med, "o-", color="tab:blue", ms=3, label="median")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"].replace(".weight", "") for r in rows], rotation=70,
                       fontsize=7)
    ax.set_ylabel("κ⁽¹⁾ = ∂γ²/∂(w²)")
    ax.set_title("ResNet-18 (torchvision, BatchNorms folded, random weights), 3×224×224: "
                 "κ⁽¹⁾ per weight tensor", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(big, small):
    out = {}
    t0 = time.perf_counter()
    net = pathgeom.from_onnx(big)
    out["import_seconds"] = time.perf_counter() - t0
    out["n_params"] = net.n_params
    out["n_edges"] = net.n_edges_bound
    out["folded"] = list(net.folded)
    with pathgeom.threads(1):
        out["path_norms"] = {str(q): pathgeom.path_norm(net, q=q) for q in (1, 2, 4)}
        out["path_norm_seconds"] = _best(lambda: pathgeom.path_norm(net, q=2))
        r = net.path_quantities()
        out["path_quantities_seconds"] = _best(net.path_quantities)
    out["gamma2"] = r.gamma2
    out["kappa2_all_zero"] = bool(not np.any(r.kappa2))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = layer_table(net, r.kappa1)
    out["layers"] = rows
    del net, r
    small_net = pathgeom.from_onnx(small)
    t0 = time.perf_counter()
    g = small_net.graph
    G = pathgeom.rescaling_group(g)
    out["small"] = {"n_edges": g.n_edges, "n_nodes": g.n_nodes,
                    "group_dim": G.dim, "group_seconds": time.perf_counter() - t0,
                    "isolated_nodes": int(np.count_nonzero(
                        (np.bincount(g.edges()[0], minlength=g.n_nodes)
                         + np.bincount(g.edges()[1], minlength=g.n_nodes)) == 0))}
    dense = small_net.path_quantities()
    edge = pathgeom.path_quantities(g, small_net.p, with_kappa2=False)
    out["small"]["gamma2_rel_diff"] = abs(dense.gamma2 - edge.gamma2) / edge.gamma2
    out["small"]["kappa1_max_rel_diff"] = float(
        np.max(np.abs(dense.kappa1 - edge.kappa1)) / np.max(np.abs(edge.kappa1)))
    (HERE / "resnet18.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(rows, HERE.parent / "img" / "resnet18-kappa1.png")
    print(json.dumps({k: v for k, v in out.items() if k != "layers"}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
