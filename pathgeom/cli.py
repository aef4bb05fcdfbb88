"""The ``pathgeom`` command line (also ``python -m pathgeom``).

``pathgeom demo`` is the main job of ``make demo``: it first trains one network from p and
from a badly balanced rescaling T_beta(p) with SGD and Path-SGD (the invariance figure),
then builds a small unrolled RNN as a shared-weight graph, checks Lemma 1 against the exact
rational reference, and times the exact curvature on a larger network.

The teaching commands check the paper's statements on a network of your choice
(``--net rnn|mlp|cnn|chain`` with sizes, or ``--graph FILE`` in the edge-list format of
:mod:`pathgeom.edgelist`, or an ONNX model ``FILE.onnx``, whose own weights are used unless
``--params`` gives others); ``--json`` prints machine-readable output:

- ``pathgeom lemma1``: kappa from its definition against kappa1 + kappa2, and the paper's
  printed eq. (10) and (11);
- ``pathgeom invariance``: a random feasible rescaling leaves f and gamma^2 unchanged and
  commutes with Path-SGD, not with SGD (Theorem 2);
- ``pathgeom group``: the rescaling group's dimension and basis (Definition 2, Theorem 1);
- ``pathgeom pathnorm``: the Lq path norms (q = 1, 2, 4 unless ``--q`` says otherwise);
- ``pathgeom draw``: a figure of the graph, edges coloured by shared parameter; with
  ``--rescale`` the same network before and after a feasible rescaling (needs the optional
  ``[plot]`` extra, matplotlib).

Exit status: 0 on success, 1 when the command could not run (an overflow, matplotlib
missing), 2 for bad arguments or a malformed graph file.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from . import _cli_train, experiments, reference
from .constructors._rnn_edges import rnn_param_blocks
from .constructors import Conv1d, cnn, mlp, rnn
from .edgelist import EdgeListError, read_edge_list
from ._errors import GraphError, PathOverflowError, PathUnderflowError
from .geometry import gamma2, kappa2_support, path_norm, path_quantities
from .graph import SharedGraph
from .plotting import draw_graph
from ._json import jsonable as _jsonable
from .rescaling import rescaling_group
from .verify import verify_invariance, verify_lemma1

__all__ = ["main"]


def _rnn_graph(n_in, H, n_out, T):
    net = rnn(n_in, H, n_out, T)
    return net.graph, net.layout.slice("W_rec", 0)


def _demo_invariance(args, out, err):
    """The demo's first part: the rescaled start in training (the invariance figure)."""
    print("1. Rescaling invariance in training (Theorem 2): one network trained from p and "
          "from a badly balanced T_beta(p) -- the same function -- with SGD and Path-SGD",
          file=out)
    name = "mlp"
    try:
        net, task, s = experiments.race_preset(name, seed=args.seed)
    except ImportError:
        name = "rnn"   # the digits need scikit-learn (the [digits] extra)
        print("   (scikit-learn is missing, so the built-in digits are too: pip install "
              "'pathgeom[digits]'; the RNN on the adding problem instead)", file=out)
        net, task, s = experiments.race_preset(name, seed=args.seed)
    race = experiments.rescaled_race(
        net, task, args.invariance_steps, s["spread"], sgd_lr=s["sgd_lr"],
        path_sgd_lr=s["path_sgd_lr"], batch_size=s["batch_size"], seed=args.seed,
        setup={"command": f"pathgeom invariance --train --net {name} --steps "
                          f"{args.invariance_steps} --seed {args.seed}", "net": name})
    d = race.to_dict()
    metric = race.metric
    print(f"   {net!r} on {task.name}, {args.invariance_steps} steps, beta spanning "
          f"{s['spread']:g} orders of magnitude", file=out)
    print(f"   Path-SGD: the two runs' losses differ by at most "
          f"{_fmt_gap(race.path_sgd_max_difference)} (rounding); SGD's by "
          f"{_fmt_gap(race.sgd_max_difference)}", file=out)
    for key, label in (("sgd_balanced", "SGD from p"), ("sgd_unbalanced", "SGD from T(p)"),
                       ("path_sgd_unbalanced", "Path-SGD from T(p)")):
        r = d[key]
        value = r.get(f"test_{metric}")
        what = r["message"].split(":")[0] if r["status"] == "diverged" else r["status"]
        print(f"   {label:20} {what}, test {metric} "
              f"{'n/a' if value is None else f'{value:.3g}'}", file=out)
    if args.invariance_plot:
        try:
            _import_figure()
        except ImportError:
            print("   (no figure: matplotlib is not installed; pip install "
                  "'pathgeom[plot]')", file=out)
        else:
            if os.path.dirname(args.invariance_plot):
                os.makedirs(os.path.dirname(args.invariance_plot), exist_ok=True)
            race.plot(args.invariance_plot)
            print(f"   figure: {args.invariance_plot}", file=out)
    print("", file=out)


def _demo(args, out, err=None):
    if args.invariance_steps > 0:
        _demo_invariance(args, out, err)
        print("2. Lemma 1: kappa = kappa1 + kappa2 on a small unrolled RNN", file=out)
    rng = np.random.default_rng(args.seed)
    T, H = args.T, args.H
    g, rec = _rnn_graph(1, H, 1, T)
    p = rng.uniform(-1.0, 1.0, g.n_params)
    print(f"Unrolled ReLU RNN, T = {T}, H = {H}: {g}", file=out)
    r = path_quantities(g, p)
    print(f"gamma^2 = {r.gamma2:.6g}   (parameters with kappa2 not certified zero: "
          f"{kappa2_support(g).size}, the {H * H} entries of W_rec)", file=out)
    exact_k = np.array([float(x) for x in reference.kappa(g, p)])
    eq10 = np.array([float(x) for x in reference.kappa2_printed_eq10(g, p)])
    eq11 = np.array([float(x) for x in reference.kappa2_printed_eq11(g, p)])
    print("\nLemma 1 on W_rec: kappa = 1/2 d^2 gamma^2/dp^2 (exact rationals) vs the engine",
          file=out)
    print(f"{'param':>6} {'kappa (def)':>12} {'kappa1':>12} {'kappa2':>12} "
          f"{'eq.(10)':>12} {'eq.(11)':>12}", file=out)
    for i in range(rec.start, rec.stop):
        print(f"{i:>6} {exact_k[i]:>12.6g} {r.kappa1[i]:>12.6g} {r.kappa2[i]:>12.6g} "
              f"{eq10[i]:>12.6g} {eq11[i]:>12.6g}", file=out)
    err = np.max(np.abs(r.kappa1 + r.kappa2 - exact_k) / np.maximum(np.abs(exact_k), 1e-300))
    print(f"largest relative error of kappa1 + kappa2 against the definition: {err:.1e}",
          file=out)
    nz = r.kappa2 != 0
    if nz.any():
        print(f"on the {int(nz.sum())} parameters with kappa2 != 0: printed eq.(10) / exact "
              f"kappa2 = {np.median(eq10[nz] / r.kappa2[nz]):.3g}, eq.(11) / exact = "
              f"{np.median(eq11[nz] / r.kappa2[nz]):.3g}", file=out)

    T2, H2 = args.big_T, args.big_H
    g2, _ = _rnn_graph(1, H2, 1, T2)
    p2 = rng.uniform(-0.1, 0.1, g2.n_params)
    path_quantities(g2, p2)  # compile / warm up
    t0 = time.perf_counter()
    cheap = path_quantities(g2, p2, with_kappa2=False)
    t1 = time.perf_counter()
    full = path_quantities(g2, p2)
    t2 = time.perf_counter()
    print(f"\nT = {T2}, H = {H2} ({g2.n_edges:,} edges, {kappa2_support(g2).size:,} "
          f"interacting parameters):", file=out)
    print(f"  gamma^2 + kappa1: {1e3 * (t1 - t0):.3g} ms;  exact kappa (with kappa2): "
          f"{1e3 * (t2 - t1):.3g} ms", file=out)
    ratio = np.linalg.norm(full.kappa2) / np.linalg.norm(cheap.kappa1)
    print(f"  ||kappa2|| / ||kappa1|| = {ratio:.3g}", file=out)

    print("\nTheorem 2 on the small RNN graph: a random feasible rescaling (Definition 2)",
          file=out)
    print(str(verify_invariance(g, p, rng)), file=out)

    if args.race_steps > 0:
        print("\nThe adding-problem race shows three optimisers from one IRNN start on a short "
              "adding problem; it does not reproduce the paper's claim that Path-SGD beats "
              "SGD there (it was not reproduced here: docs/results.md)", file=out)
        experiments.adding_race(args.race_T, args.race_H, args.race_steps, args.seed, out,
                               err if err is not None else sys.stderr, plot=args.race_plot)
    return 0


# --------------------------------------------------------------------------- networks
#
# Each --net choice is one builder (args) -> (graph, description), registered in _NETS;
# its size options are added in _add_network_arguments.  A description is a dict with
#   "net":     the --net name, or "file";
#   "summary": one line for humans;
#   "group_dim_theory": the rescaling-group dimension the theory predicts, or None;
#   "theory":  where that prediction comes from (or None).


def _rnn_network(args):
    """Unrolled ReLU RNN (paper Table 1) from :func:`pathgeom.rnn`, output at the last step,
    relabelled ``x[t,i]``, ``h[t,j]`` (``h2[t,j]`` for the second layer, ...), ``y[o]``."""
    n_in, hidden, n_out, T = args.n_in, args.H, args.n_out, args.T
    net = rnn(n_in, hidden, n_out, T)
    names = [f"x[{t + 1},{i}]" for t in range(T) for i in range(n_in)]
    for l, H in enumerate(hidden):
        tag = "h" if l == 0 else f"h{l + 1}"
        names += [f"{tag}[{t + 1},{j}]" for t in range(T) for j in range(H)]
    names += [f"y[{o}]" for o in range(n_out)]
    src, dst, par = net.graph.edges()
    ids = np.asarray(net.graph.nodes)
    edges = [(names[u], names[v], i) for u, v, i in
             zip(ids[src].tolist(), ids[dst].tolist(), par.tolist())]
    g = SharedGraph.from_edges(edges, [names[k] for k in net.graph.inputs],
                               [names[k] for k in net.graph.outputs],
                               n_params=net.n_params)
    blocks = ", ".join(f"{name}{'' if l is None else f'[{l}]'} {'x'.join(map(str, shape))}"
                       for name, l, shape in rnn_param_blocks(n_in, hidden, n_out))
    summary = (f"ReLU RNN unrolled over T = {T} steps, hidden {list(hidden)}, n_in = {n_in}, "
               f"n_out = {n_out} (output at the last step); p = [{blocks}], row-major")
    return g, {"net": "rnn", "summary": summary, "group_dim_theory": sum(hidden),
               "theory": f"Theorem 1: one free scale per hidden unit, sum_i H_i = {sum(hidden)}",
               "param_names": net.layout.param_names()}


def _mlp_network(args):
    """Fully connected ReLU network from :func:`pathgeom.mlp` (no sharing)."""
    sizes = [args.n_in] + list(args.hidden) + [args.n_out]
    net = mlp(sizes)
    return net.graph, {
        "net": "mlp", "summary": f"MLP with sizes {sizes} (no weight sharing); p = W[0], "
                                 f"W[1], ..., row-major",
        "group_dim_theory": sum(args.hidden),
        "theory": "one free scale per hidden unit (no sharing constrains it)",
        "param_names": net.layout.param_names()}


def _cnn_network(args):
    """1-D convolutional network from :func:`pathgeom.cnn`: ``--channels`` conv layers."""
    shape = (args.in_channels, args.width)
    layers = [Conv1d(c, args.kernel) for c in args.channels]
    net = cnn(shape, layers, args.n_out)
    return net.graph, {
        "net": "cnn", "summary": f"1-D CNN on input {shape}, conv channels "
                                 f"{list(args.channels)}, kernel {args.kernel}, "
                                 f"{args.n_out} linear outputs",
        "group_dim_theory": sum(args.channels),
        "theory": "one free scale per channel: a kernel entry is shared by every position",
        "param_names": net.layout.param_names()}


def _chain_network(args):
    """in -> v1 -> ... -> out, ``--length`` edges, distinct parameters or (``--share``) one."""
    L = args.length
    nodes = ["in"] + [f"v{k}" for k in range(1, L)] + ["out"]
    edges = [(a, b, 0 if args.share else k) for k, (a, b) in enumerate(zip(nodes, nodes[1:]))]
    g = SharedGraph.from_edges(edges, ["in"], ["out"])
    if args.share:
        summary = f"chain of {L} edges all on one parameter p: gamma^2 = p^{2 * L}"
        theory = "shared chain: b_vk = k c and -b_v(L-1) = c force c = 0"
        dim = 0
    else:
        summary = f"chain of {L} edges, each on its own parameter"
        theory = "no sharing: every internal node rescales freely"
        dim = L - 1
    return g, {"net": "chain", "summary": summary, "group_dim_theory": dim, "theory": theory}


_NETS = {"rnn": _rnn_network, "chain": _chain_network, "mlp": _mlp_network,
         "cnn": _cnn_network}


def _int_at_least(minimum):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _int_list(text):
    """``3`` or ``3,2``: a list of positive integers."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got "
                                         f"{text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _float_at_least(low, strict):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not np.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {'>' if strict else '>='} {low:g}, got {text}")
        return value
    return parse


def _add_network_arguments(parser):
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--net", choices=sorted(_NETS), default=None,
                       help="a built-in network (default: rnn)")
    which.add_argument("--graph", metavar="FILE",
                       help="an edge-list file: 'inputs a b', 'outputs y' and 'u v param' "
                            "lines, '#' comments (docs/concepts/invariance.md); or an ONNX "
                            "model, FILE.onnx (docs/concepts/own-model.md; needs the [onnx] "
                            "extra)")
    sizes = parser.add_argument_group("sizes of --net")
    sizes.add_argument("--T", type=_positive_int, default=4, help="rnn: time steps (4)")
    sizes.add_argument("--H", type=_int_list, default=[3],
                       help="rnn: hidden units per layer, e.g. 3 or 3,2 (3)")
    sizes.add_argument("--n-in", type=_positive_int, default=1,
                       help="rnn: inputs per step; mlp: input width (1)")
    sizes.add_argument("--n-out", type=_positive_int, default=1,
                       help="rnn, mlp, cnn: outputs (1)")
    sizes.add_argument("--hidden", type=_int_list, default=[3, 2],
                       help="mlp: hidden widths (3,2)")
    sizes.add_argument("--in-channels", type=_positive_int, default=1,
                       help="cnn: input channels (1)")
    sizes.add_argument("--width", type=_positive_int, default=6, help="cnn: input length (6)")
    sizes.add_argument("--channels", type=_int_list, default=[2, 2],
                       help="cnn: output channels of each Conv1d layer (2,2)")
    sizes.add_argument("--kernel", type=_positive_int, default=2, help="cnn: kernel size (2)")
    sizes.add_argument("--length", type=_positive_int, default=3,
                       help="chain: number of edges (3)")
    sizes.add_argument("--share", action="store_true",
                       help="chain: put every edge on one parameter")
    parser.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed (0)")


def _is_onnx(args):
    graph = getattr(args, "graph", None)   # (commands without --graph: never)
    return graph is not None and str(graph).lower().endswith(".onnx")


def _network_from_args(args):
    """``(graph, description)`` for ``--graph FILE`` or ``--net NAME`` (see ``_NETS``).

    An ONNX model's description carries its own weights (``"own_p"``) and parameter names.
    """
    if args.graph is not None:
        if _is_onnx(args):   # needs the optional [onnx] extra
            from .interop.onnx import from_onnx
            imp = from_onnx(args.graph)
            g = imp.graph
            return g, {"net": "file", "summary": f"ONNX model {args.graph}: {g!r}",
                       "group_dim_theory": None, "theory": None, "own_p": imp.p,
                       "param_names": [f"{name}{list(idx)}" for name, idx in
                                       imp.param_names] if imp.n_params <= 100000 else None}
        else:
            g = read_edge_list(args.graph)
            kind = "edge-list file"
        return g, {"net": "file", "summary": f"{kind} {args.graph}: {g!r}",
                   "group_dim_theory": None, "theory": None}
    return _NETS[args.net or "rnn"](args)


def _weights(g, args, rng, desc=None):
    """``(p, source)``: the user's parameters (``--params FILE``), else an ONNX model's own
    weights, else ``p ~ U(-S, S)``; ``source`` says which, for the printed header."""
    if getattr(args, "params", None):
        return _read_params(args.params, g.n_params), f"p from --params {args.params}"
    if desc is not None and desc.get("own_p") is not None:
        return desc["own_p"], "p: the model's own weights (its initializers)"
    S = 1.0 if args.weight_scale is None else args.weight_scale
    return (rng.uniform(-S, S, g.n_params), f"p ~ U(-{S:g}, {S:g}), seed {args.seed}")


_ONNX_OWN_WEIGHTS = ("an ONNX model is read with its own weights (its initializers), "
                     "which --weight-scale does not change")


def _refuse_weight_scale(args):
    """``--weight-scale`` with an ONNX model or with ``--params``: an error (it would be
    silently ignored)."""
    if getattr(args, "weight_scale", None) is not None and getattr(args, "params", None):
        raise ValueError(f"--weight-scale {args.weight_scale:g} draws random weights p ~ "
                         f"U(-S, S), but --params {args.params} gives the weights; drop "
                         f"one of the two")
    if _is_onnx(args) and getattr(args, "weight_scale", None) is not None:
        raise ValueError(f"--weight-scale {args.weight_scale:g} draws random weights p ~ "
                         f"U(-S, S), but {_ONNX_OWN_WEIGHTS}; drop --weight-scale, or pass "
                         f"other weights with --params FILE")


def _range_advice(args, exc):
    """What to change when a path quantity leaves the float64 range."""
    smaller = not isinstance(exc, PathUnderflowError)
    if _is_onnx(args):
        return (f"({_ONNX_OWN_WEIGHTS}; the path sums of these weights leave the float64 "
                f"range: pass {'smaller' if smaller else 'larger'} weights with --params "
                f"FILE, e.g. the model's own scaled by a constant c, which scales a path of "
                f"L weights by c^L)")
    if smaller:
        return "(try a smaller --weight-scale or --T)"
    return "(try a larger --weight-scale)"


def _public(desc):
    """The description without the arrays it carries for the commands."""
    return {k: v for k, v in desc.items() if k not in ("own_p",)}


def _read_params(path, n_params):
    """``p`` from a ``.npy`` file, a ``.npz`` file (its array ``p``, e.g. a run's
    params.npz) or a text file of numbers (whitespace or commas, ``#`` comments)."""
    from ._files import check_input_file, read_npy
    from ._validation import as_params
    try:   # not found, a directory, a FIFO, a device: said as such
        check_input_file(path, "--params", max_bytes=None if path.endswith((".npz", ".npy"))
                         else 64 * n_params + (1 << 20))
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    if path.endswith(".npy"):   # its messages name --params and the file
        return as_params(np.ravel(read_npy(path, n_params)), n_params,
                         name=f"--params {path}")
    try:
        if path.endswith(".npz"):
            from ._npzcheck import check_npz
            check_npz(path, "p", n_expected=n_params)
            with np.load(path, allow_pickle=False) as f:
                p = f["p"]
        else:
            with open(path, encoding="utf-8-sig") as fh:
                text = " ".join(line.split("#")[0] for line in fh)
            p = np.array([float(t) for t in text.replace(",", " ").split()])
    except (OSError, ValueError) as exc:
        raise ValueError(f"--params {path}: {exc}") from None
    return as_params(np.ravel(p), n_params, name=f"--params {path}")


def _emit_json(obj, out):
    print(json.dumps(_jsonable(obj), indent=2, allow_nan=False), file=out)


# --------------------------------------------------------------------------- commands


def _lemma1(args, out, err):
    _refuse_weight_scale(args)
    g, desc = _network_from_args(args)
    rng = np.random.default_rng(args.seed)
    p, source = _weights(g, args, rng, desc)
    report = verify_lemma1(g, p, max_paths=args.max_paths, param_names=desc.get("param_names"))
    if args.json:
        _emit_json({"network": _public(desc), "weights": source, "p": p,
                    "gamma2": float(gamma2(g, p)), "report": report.to_dict()}, out)
    else:
        print(f"{desc['summary']}\n{g}\n{source}\n", file=out)
        print(report, file=out)
    return 0


def _invariance(args, out, err):
    if args.train:
        return _invariance_train(args, out, err)
    if args.steps is not None or args.spread is not None or args.out is not None:
        raise ValueError("--steps, --spread and --out belong to --train (add --train)")
    _refuse_weight_scale(args)
    g, desc = _network_from_args(args)
    rng = np.random.default_rng(args.seed)
    p, source = _weights(g, args, rng, desc)
    report = verify_invariance(g, p, rng, scale=args.scale, batch=args.batch, lr=args.lr)
    if args.json:
        _emit_json({"network": _public(desc), "weights": source, "p": p,
                    "report": report.to_dict()}, out)
    else:
        print(f"{desc['summary']}\n{g}\n{source}\n", file=out)
        print(report, file=out)
    return 0


def _check_group_size(g):
    """The rescaling group's memory (about 250 bytes per edge, measured) before it is built."""
    from ._memory import check_fits
    check_fits(320 * g.n_edges, f"the rescaling group of {g.n_edges:,} edges",
               "choose a smaller network (--T, --hidden, ...)")


_TRAIN_FIGURE = "invariance-training.png"


def _invariance_train(args, out, err):
    """``invariance --train``: the rescaled race (:func:`pathgeom.experiments.rescaled_race`)
    and its two-panel figure; with --json one JSON object on stdout, messages on stderr."""
    if args.graph is not None or (args.net or "mlp") not in experiments.RACE_NETS:
        raise ValueError(f"--train trains one of --net {'|'.join(sorted(experiments.RACE_NETS))}"
                         f" (default mlp), not {args.graph or args.net}")
    if args.params:
        raise ValueError("--params does not apply to --train: the race draws its own "
                         "balanced start (to train from given weights: pathgeom train "
                         "--init-from FILE)")
    name = args.net or "mlp"
    target = args.out or _TRAIN_FIGURE
    try:
        _import_figure()
    except ImportError:
        raise ImportError("the figure of --train needs matplotlib: pip install "
                          "'pathgeom[plot]'") from None
    path, fmt = _draw_target(target)
    net, task, settings = experiments.race_preset(name, seed=args.seed)
    steps = settings["steps"] if args.steps is None else args.steps
    spread = settings["spread"] if args.spread is None else args.spread
    command = (f"pathgeom invariance --train --net {name} --steps {steps} --spread {spread:g} "
               f"--seed {args.seed} --out {target}")
    log = err if args.json else out
    print(f"training {net!r} on {task.name} from p and from T_beta(p) ({spread:g} orders of "
          f"magnitude), SGD and Path-SGD, {steps} steps each ...", file=err)
    t0 = time.perf_counter()
    race = experiments.rescaled_race(
        net, task, steps, spread, sgd_lr=settings["sgd_lr"],
        path_sgd_lr=settings["path_sgd_lr"], batch_size=settings["batch_size"],
        seed=args.seed, setup={"command": command, "net": name})
    race.plot(path)
    seconds = time.perf_counter() - t0
    result = race.to_dict()
    result["seconds_with_figure"] = seconds
    result["figure"] = path
    if args.json:
        _emit_json(result, out)
    else:
        metric = race.metric

        def end(key):
            r = result[key]
            value = r.get(f"test_{metric}")
            shown = "n/a" if value is None else f"{value:.4g}"
            if r["status"] == "diverged":
                return f"{r['message'].split(':')[0]}, test {metric} {shown} (last good)"
            return f"{r['status']} after {r['steps']} steps, test {metric} {shown}"
        print(race.caption(), file=out)
        print(f"largest |difference| of the losses: Path-SGD {_fmt_gap(race.path_sgd_max_difference)}"
              f", SGD {_fmt_gap(race.sgd_max_difference)}", file=out)
        for key in ("path_sgd_balanced", "path_sgd_unbalanced", "sgd_balanced",
                    "sgd_unbalanced"):
            print(f"  {key:20} {end(key)}", file=out)
        for lr, r in result["sgd_unbalanced_smaller_rates"].items():
            value = r.get(f"test_{metric}")
            print(f"  sgd_unbalanced lr {lr:<6} {r['status']}, test {metric} "
                  f"{'n/a' if value is None else f'{value:.4g}'}", file=out)
    print(f"wrote {path} ({seconds:.1f} s)", file=log if not args.json else err)
    return 0


def _fmt_gap(x):
    return "n/a" if x is None else f"{x:.3g}"


def _names(labels, limit):
    shown = " ".join(str(x) for x in labels[:limit])
    return shown + (f" ... ({len(labels)} nodes)" if len(labels) > limit else "")


def _group(args, out, err):
    g, desc = _network_from_args(args)
    _check_group_size(g)
    t0 = time.perf_counter()
    G = rescaling_group(g)
    seconds = time.perf_counter() - t0
    theory = desc.get("group_dim_theory")
    nodes = g.nodes
    B = G.basis_sparse
    if args.json:
        vectors = []
        for k in range(G.dim):
            lo, hi = B.indptr[k], B.indptr[k + 1]
            vectors.append({str(nodes[c]): float(v) for c, v in
                            zip(B.indices[lo:hi].tolist(), B.data[lo:hi].tolist())})
        _emit_json({"network": _public(desc), "dim": G.dim, "agrees_with_theory":
                    None if theory is None else G.dim == theory, "seconds": seconds,
                    "basis": vectors}, out)
        return 0
    print(f"{desc['summary']}\n{g}\n", file=out)
    print(f"rescaling group (Definition 2): dimension {G.dim}, decided in exact arithmetic "
          f"in {seconds:.3g} s", file=out)
    if theory is not None:
        verdict = "agrees" if G.dim == theory else "DISAGREES"
        print(f"theory: {theory} ({desc['theory']}) -- {verdict}", file=out)
    if G.dim:
        print(f"basis of log(beta) (integer vectors; inputs and outputs stay at 0), "
              f"first {min(G.dim, args.show)}:", file=out)
    for k in range(min(G.dim, args.show)):
        cols = B.indices[B.indptr[k]:B.indptr[k + 1]]
        vals = B.data[B.indptr[k]:B.indptr[k + 1]]
        parts = []
        for value in np.unique(vals[vals != 0]):
            labels = [nodes[i] for i in np.sort(cols[vals == value]).tolist()]
            parts.append(f"{value:+g} on {_names(labels, 6)}")
        print(f"  b{k + 1}: " + "; ".join(parts), file=out)
    if G.dim > args.show:
        print(f"  ... {G.dim - args.show} more (--show N, or --json)", file=out)
    return 0


# --------------------------------------------------------------------------- draw

_DRAW_DEFAULT = "pathgeom-graph.png"

_INSTALL_PLOT = ("pathgeom draw needs matplotlib, which is not installed. Install the "
                 "optional extra:\n    pip install 'pathgeom[plot]'")


def _import_figure():
    from matplotlib.figure import Figure  # optional dependency: the [plot] extra
    return Figure


def _draw_target(out):
    """``(path, format)`` that ``draw --out OUT`` writes: exactly the path written, or the
    default file name inside a directory; ValueError naming OUT otherwise."""
    import os
    from matplotlib.figure import Figure
    if out == "":
        raise ValueError("--out is empty; give a file name such as graph.png")
    if out.endswith(("/", os.sep)) or os.path.isdir(out):
        if not os.path.isdir(out):
            raise ValueError(f"--out {out!r} names a directory that does not exist; create "
                             f"it first or give a file name")
        out = os.path.join(out, _DRAW_DEFAULT)
    parent = os.path.dirname(out) or "."
    if not os.path.isdir(parent):
        raise ValueError(f"--out {out!r}: the directory {parent!r} does not exist")
    stem, suffix = os.path.splitext(os.path.basename(out))
    if not stem:
        raise ValueError(f"--out {out!r} has no file name before the suffix; give e.g. "
                         f"graph{suffix or '.png'}")
    fmt = suffix[1:].lower() if suffix else "png"
    from ._files import check_output_target
    check_output_target(out, "--out")
    supported = Figure().canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"--out {out!r}: unknown image format {fmt!r}; use one of "
                         f"{', '.join(sorted(supported))}")
    return out, fmt


def _draw(args, out, err):
    try:
        _import_figure()
    except ImportError:
        print(_INSTALL_PLOT, file=err)
        return 1
    path, fmt = _draw_target(args.out)
    g, desc = _network_from_args(args)
    rng = np.random.default_rng(args.seed)
    if args.params:
        p = _read_params(args.params, g.n_params)
    elif desc.get("own_p") is not None:
        p = desc["own_p"]                       # an ONNX model's own weights
    else:
        p = np.round(rng.choice([-1.0, 1.0], g.n_params) * rng.uniform(0.5, 2.0, g.n_params), 2)
    used = np.flatnonzero(g.param_edge_counts() > 0)
    beta, note = None, ""
    if args.rescale:
        _check_group_size(g)
        G = rescaling_group(g)
        z = rng.choice([-1.0, 1.0], G.dim)
        beta = np.exp2(G.basis_sparse.T @ z) if G.dim else np.ones(g.n_nodes)
        note = f"; rescaling group of dimension {G.dim}, β = 2^(±basis)"
    fig = draw_graph(g, p, beta=beta,
                     title=f"{desc['summary']}\nedges coloured by shared parameter, laid out "
                           f"by depth{note}")
    if fmt not in ("svg", "pdf", "eps", "ps"):   # raster formats: pixels in memory
        from .plotting import check_raster
        check_raster(fig, args.dpi)
    from ._files import save_figure
    save_figure(fig, path, dpi=args.dpi, format=fmt)
    print(f"wrote {path} ({g.n_nodes} nodes, {g.n_edges} edges, {used.size} parameters "
          f"in use{', before and after rescaling' if args.rescale else ''})", file=out)
    return 0


def _q_list(text):
    try:
        qs = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers >= 1 separated by commas, got "
                                         f"{text!r}") from None
    if not qs or any(not (q >= 1.0 and np.isfinite(q)) for q in qs):
        raise argparse.ArgumentTypeError(f"every q must be a finite number >= 1, got {text!r}")
    return qs


def _pathnorm(args, out, err):
    rng = np.random.default_rng(args.seed)
    _refuse_weight_scale(args)
    if _is_onnx(args):
        # the dense passes: no edge list is built (ImageNet-size models stay cheap)
        from .interop.onnx import from_onnx
        imp = from_onnx(args.graph)
        summary = f"ONNX model {args.graph}: {imp!r}"
        if args.params:
            p, source = (_read_params(args.params, imp.n_params),
                         f"p from --params {args.params}")
        else:
            p, source = imp.p, "p: the model's own weights (its initializers)"
        norms = {q: imp.path_norm(p, q) for q in args.q}
    else:
        g, desc = _network_from_args(args)
        summary = f"{desc['summary']}"
        p, source = _weights(g, args, rng, desc)
        norms = {q: float(path_norm(g, p, q)) for q in args.q}
    if args.json:
        out.write(json.dumps({"network": summary, "weights": source,
                              "path_norms": {f"{q:g}": v for q, v in norms.items()}},
                             indent=2, allow_nan=False) + "\n")
        return 0
    print(f"{summary}\n{source}", file=out)
    for q, v in norms.items():
        print(f"L{q:g} path norm: {v!r}", file=out)
    return 0


# --------------------------------------------------------------------------- main


def _parser():
    parser = argparse.ArgumentParser(prog="pathgeom", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the invariance figure, Lemma 1 on a small RNN graph, "
                                        "timings")
    demo.add_argument("--T", type=_positive_int, default=5,
                      help="time steps of the checked RNN")
    demo.add_argument("--H", type=_positive_int, default=2,
                      help="hidden units of the checked RNN")
    demo.add_argument("--big-T", type=_positive_int, default=100,
                      help="time steps of the timed RNN")
    demo.add_argument("--big-H", type=_positive_int, default=64,
                      help="hidden units of the timed RNN")
    demo.add_argument("--seed", type=_nonnegative_int, default=0)
    demo.add_argument("--invariance-steps", type=_nonnegative_int, default=500,
                      help="training steps of the invariance race shown first; 0 skips it "
                           "(500)")
    demo.add_argument("--invariance-plot",
                      default=os.path.join("build", "demo", "invariance-training.png"),
                      help="its two-panel figure ([plot] extra); empty: none")
    demo.add_argument("--race-T", type=_positive_int, default=30,
                      help="adding-problem length (30)")
    demo.add_argument("--race-H", type=_positive_int, default=32,
                      help="hidden units in the race (32)")
    demo.add_argument("--race-steps", type=_nonnegative_int, default=8000,
                      help="training steps per run; 0 skips the race (8000)")
    demo.add_argument("--race-plot", default=os.path.join("build", "demo", "demo-race.png"),
                      help="learning-curve figure of the race ([plot] extra)")

    lemma1 = sub.add_parser("lemma1", help="kappa from its definition vs kappa1 + kappa2",
                            description="Lemma 1: kappa = 1/2 d^2 gamma^2/dp^2 from its "
                                        "definition (exact rationals on small graphs, else a "
                                        "numerical derivative) against the engine's kappa1 + "
                                        "kappa2, with the paper's printed eq. (10) and (11).")
    _add_network_arguments(lemma1)
    lemma1.add_argument("--max-paths", type=_nonnegative_int, default=2000, metavar="N",
                        help="enumerate paths (the definition) up to this many, beyond "
                             "that exact dynamic programming; 0: numerical derivative "
                             "(2000)")
    invariance = sub.add_parser("invariance", help="a random feasible rescaling: what changes",
                                description="Theorem 2: a random feasible node-wise "
                                            "rescaling leaves f and gamma^2 unchanged and "
                                            "commutes with Path-SGD, not with SGD.")
    _add_network_arguments(invariance)
    invariance.add_argument("--scale", type=_float_at_least(0.0, False), default=1.0,
                            help="std of the log-space coefficients of beta (1.0)")
    invariance.add_argument("--batch", type=_positive_int, default=8,
                            help="random inputs for f (8)")
    invariance.add_argument("--lr", type=_float_at_least(0.0, True), default=0.1,
                            help="learning rate (0.1)")
    trained = invariance.add_argument_group(
        "training from the rescaled start (--train)",
        "the same network and data stream trained from p and from T_beta(p), SGD and "
        "Path-SGD; a two-panel figure (--out). --net mlp (default; the built-in digits, "
        "[digits] extra), cnn (the same digits) or rnn (adding problem, T = 10); the "
        "network sizes and rates are the race's own (pathgeom.experiments.RACE_NETS)")
    trained.add_argument("--train", action="store_true",
                         help="train instead of checking one step (needs the [plot] extra)")
    trained.add_argument("--steps", type=_positive_int, default=None,
                         help="training steps per run (mlp 500, cnn 300, rnn 300)")
    trained.add_argument("--spread", type=_float_at_least(0.0, False), default=None,
                         help="orders of magnitude spanned by beta (3)")
    trained.add_argument("--out", default=None,
                         help=f"the figure (default {_TRAIN_FIGURE})")
    group = sub.add_parser("group", help="dimension and basis of the rescaling group",
                           description="Definition 2 / Theorem 1: the feasible node-wise "
                                       "rescalings, dimension decided exactly.")
    _add_network_arguments(group)
    group.add_argument("--show", type=_positive_int, default=8,
                       help="basis vectors to print (8)")
    pathnorm = sub.add_parser(
        "pathnorm", help="Lq path norms (sum over paths of prod |w|^q)^(1/q)",
        description="The Lq path norms of a network: (sum over input-output paths of the "
                    "product of |w|^q)^(1/q), fixed weights included, max-pooling units "
                    "passing every path. An ONNX model uses its own weights (dense passes, "
                    "no edge list).")
    _add_network_arguments(pathnorm)
    pathnorm.add_argument("--q", type=_q_list, default=[1.0, 2.0, 4.0], metavar="Q[,Q...]",
                          help="the exponents, each >= 1 (1,2,4)")
    draw = sub.add_parser("draw", help="a figure of the graph (needs pathgeom[plot])",
                          description="Render the graph, edges coloured by shared parameter, "
                                      "nodes laid out by depth; --rescale shows it before and "
                                      "after a feasible rescaling (the paper's Figure 1).")
    _add_network_arguments(draw)
    draw.add_argument("--out", default=_DRAW_DEFAULT,
                      help="output image file (format from its suffix, PNG without one); "
                           f"an existing directory or a path ending in '/' gets "
                           f"{_DRAW_DEFAULT} inside it")
    draw.add_argument("--rescale", action="store_true",
                      help="two panels: p and T_beta(p), weights and beta labelled")
    draw.add_argument("--dpi", type=_positive_int, default=120)
    draw.add_argument("--params", metavar="FILE", default=None,
                      help="the weights to show (a .npy, a .npz with p, or a text file); "
                           "default: an ONNX model's own weights, else random values in "
                           "+-[0.5, 2]")
    for p in (lemma1, invariance, pathnorm):
        p.add_argument("--weight-scale", type=_float_at_least(0.0, True), default=None,
                       metavar="S", help="draw p ~ U(-S, S) (1.0); not with an ONNX model, "
                                         "which has its own weights")
        p.add_argument("--params", metavar="FILE", default=None,
                       help="your parameters instead of random ones: a .npy, a .npz with "
                            "an array p (e.g. a run's params.npz) or a text file of "
                            "n_params numbers")
    for p in (lemma1, invariance, group, pathnorm):
        p.add_argument("--json", action="store_true", help="machine-readable output")
    for name, handler in (("demo", _demo), ("lemma1", _lemma1), ("invariance", _invariance),
                          ("group", _group), ("draw", _draw), ("pathnorm", _pathnorm)):
        sub.choices[name].set_defaults(handler=handler)
    _cli_train.add_commands(sub)
    _cli_train.add_figure2(sub)
    return parser


def main(argv=None, out=None, err=None):
    """Entry point of the ``pathgeom`` console script; returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    args = _parser().parse_args(argv)
    command = args.handler  # every subcommand registers its handler (set_defaults)
    if out is None:   # started with stdout closed (``>&-``): what it prints would be lost
        if err is not None:
            print(f"pathgeom {args.command}: error: standard output is closed; redirect it "
                  f"to a file or /dev/null", file=err)
        return 2
    try:
        status = command(args, out, err)
        if out is sys.stdout:
            out.flush()      # a closed pipe shows up here, not at interpreter exit
        return status
    except BrokenPipeError:
        # the reader went away (``pathgeom ... --json | head``): stop quietly; point
        # stdout at devnull so that the interpreter's final flush does not complain
        import os
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1             # the output was cut short
    except (EdgeListError, GraphError, FileNotFoundError, ValueError) as exc:
        print(f"pathgeom {args.command}: error: {exc}", file=err)
        return 2
    except ImportError as exc:  # an optional extra that is not installed
        print(f"pathgeom {args.command}: {exc}", file=err)
        return 1
    except PathOverflowError as exc:       # (and PathUnderflowError, a subclass)
        print(f"pathgeom {args.command}: {exc}\n{_range_advice(args, exc)}", file=err)
        return 1
    except MemoryError as exc:   # an allocation no estimate foresaw (or a graph refused
        # with its own advice, e.g. the edge list of an ImageNet-size ONNX model)
        print(f"pathgeom {args.command}: " + (str(exc) if str(exc) else
              "error: out of memory; choose smaller sizes (--T, --batch, --hidden, ...)"),
              file=err)
        return 1
    except OSError as exc:   # a disk that fails under a run, stdout on a full device, ...
        from ._files import DISK_ERRNOS, OutputError
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        msg = (f"pathgeom {args.command}: error: {exc}" if isinstance(exc, OutputError) else
               f"pathgeom {args.command}: error: {exc.strerror or exc}{where}")
        try:
            print(msg, file=err)
        except (OSError, ValueError):
            pass
        if out is sys.stdout:   # stdout on a full device: drop what is buffered, so that
            import os           # the interpreter's last flush does not fail again
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        return 1 if exc.errno in DISK_ERRNOS else 2
    except KeyboardInterrupt:
        print(f"pathgeom {args.command}: interrupted", file=err)
        return 130
