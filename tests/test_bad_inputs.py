"""Generated bad inputs thrown at the public API and the non-training CLI commands.

Every test asserts on the *kind* of failure: a typed error (GraphError, PathOverflowError,
ValueError or TypeError -- never a raw numpy/builtin error such as OverflowError,
IndexError, MemoryError or a ComplexWarning that silently drops data) whose message names
the culprit.  For the CLI: exit status 2 and a one-line message naming the flag or the
file and line, never a traceback.

Number of generated bad inputs per run: the sum of ``max_examples`` below (see
``BUDGET``).
"""

import contextlib
import io
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pathgeom
from pathgeom import GraphError, PathOverflowError, cli
from pathgeom.invariance import rescale, rescaling_group, verify_invariance, verify_lemma1

TYPED = (GraphError, PathOverflowError, ValueError, TypeError)
RAW = (OverflowError, IndexError, MemoryError, ZeroDivisionError, KeyError, AttributeError,
       RecursionError)

BUDGET = {"params": 120, "inputs": 60, "arrays": 120, "edges": 80, "scales": 80,
          "cli_flags": 60, "cli_files": 40}
fast = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expect_typed(call, *culprits):
    """``call()`` must raise a typed error whose message names one of ``culprits``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a ComplexWarning would mean data dropped
        try:
            call()
        except PathOverflowError as exc:
            message = str(exc)
        except RAW as exc:
            if isinstance(exc, TYPED):          # GraphError etc. are ValueErrors
                message = str(exc)
            else:
                raise AssertionError(f"raw {type(exc).__name__}: {exc}") from exc
        except TYPED as exc:
            message = str(exc)
        else:
            raise AssertionError(f"no error; expected one naming {culprits}")
    assert any(c in message for c in culprits), f"{message!r} names none of {culprits}"
    return message


# --------------------------------------------------------------------------- fixtures

CHAIN = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 1), ("x", "y", 2)],
                                        ["x"], ["y"])
RNN = pathgeom.rnn(2, 3, 1, 4)
MLP = pathgeom.mlp([2, 3, 1])
CNN = pathgeom.cnn((1, 5), [pathgeom.Conv1d(2, 2)], 1)


def _param_functions():
    g = CHAIN
    rng = lambda: np.random.default_rng(0)
    return {
        "gamma2": lambda p: pathgeom.gamma2(g, p),
        "kappa": lambda p: pathgeom.kappa(g, p),
        "path_quantities": lambda p: pathgeom.path_quantities(g, p),
        "forward": lambda p: g.forward(p, [1.0]),
        "backward": lambda p: g.backward(p, [1.0], [1.0]),
        "verify_lemma1": lambda p: verify_lemma1(g, p),
        "rescale": lambda p: rescale(g, p, np.ones(g.n_nodes)),
        "verify_invariance": lambda p: verify_invariance(g, p, rng()),
        "rnn.path_quantities": lambda p: RNN.path_quantities(p),
        "rnn.forward": lambda p: RNN.forward(p, np.zeros((4, 2))),
        "mlp.forward": lambda p: MLP.forward(p, [1.0, 2.0]),
        "cnn.backward": lambda p: CNN.backward(p, np.ones((1, 5)), [1.0]),
    }


FUNCTIONS = _param_functions()
N_PARAMS = {"rnn": RNN.n_params, "mlp": MLP.n_params, "cnn": CNN.n_params}


def _n_params_for(name):
    return N_PARAMS.get(name.split(".")[0], CHAIN.n_params)


@st.composite
def bad_params(draw, n):
    """A bad parameter vector for a graph with ``n`` parameters, and what it gets wrong."""
    kind = draw(st.sampled_from(["complex", "object", "string", "length", "nonfinite",
                                 "ragged", "timedelta", "2d"]))
    values = draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n))
    if kind == "complex":
        imag = draw(st.sampled_from([0.0, 1.0]))
        return np.array(values) + 1j * imag, ("complex",)
    if kind == "object":
        return np.array(values, dtype=object), ("object",)
    if kind == "string":
        return [str(v) for v in values], ("dtype", "numeric")
    if kind == "length":
        m = draw(st.integers(0, n + 3).filter(lambda k: k != n))
        return np.zeros(m), ("shape", "n_params", "entries", "length")
    if kind == "nonfinite":
        k = draw(st.integers(0, n - 1))
        values[k] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return np.array(values), (f"[{k}]",)
    if kind == "ragged":
        return [values[:1], values], ("rectangular", "shape", "inhomogeneous")
    if kind == "timedelta":
        return np.zeros(n, dtype="m8[s]"), ("time",)
    return np.zeros((n, 1)), ("shape", "1-D", "n_params")


@settings(max_examples=BUDGET["params"], **fast)
@given(st.data())
def test_bad_parameter_vectors(data):
    name = data.draw(st.sampled_from(sorted(FUNCTIONS)))
    p, culprits = data.draw(bad_params(_n_params_for(name)))
    expect_typed(lambda: FUNCTIONS[name](p), *culprits)


@st.composite
def bad_inputs(draw, width):
    kind = draw(st.sampled_from(["complex", "object", "shape", "nonfinite"]))
    if kind == "complex":
        return np.zeros((2, width), dtype=complex), ("complex",)
    if kind == "object":
        return np.zeros((2, width), dtype=object), ("object",)
    if kind == "shape":
        w = draw(st.integers(0, width + 3).filter(lambda k: k != width))
        return np.zeros((2, w)), ("shape",)
    X = np.zeros((2, width))
    X[draw(st.integers(0, 1)), draw(st.integers(0, width - 1))] = math.nan
    return X, ("not finite",)


@settings(max_examples=BUDGET["inputs"], **fast)
@given(st.data())
def test_bad_network_inputs(data):
    which = data.draw(st.sampled_from(["graph", "rnn", "mlp", "cnn", "rnn-dY"]))
    if which == "graph":
        X, culprits = data.draw(bad_inputs(CHAIN.n_inputs))
        call = lambda: CHAIN.forward(np.ones(CHAIN.n_params), X)
    elif which == "rnn":
        X, culprits = data.draw(bad_inputs(2))
        X = np.stack([X] * 4, axis=1) if X.shape[1] == 2 else X   # (B, T, n_in)
        call = lambda: RNN.forward(np.zeros(RNN.n_params), X)
    elif which == "rnn-dY":
        dY, culprits = data.draw(bad_inputs(1))
        call = lambda: RNN.backward(np.zeros(RNN.n_params), np.zeros((2, 4, 2)), dY)
    elif which == "mlp":
        X, culprits = data.draw(bad_inputs(2))
        call = lambda: MLP.forward(np.zeros(MLP.n_params), X)
    else:
        X, culprits = data.draw(bad_inputs(5))
        call = lambda: CNN.forward(np.zeros(CNN.n_params), X.reshape(2, 1, -1)
                                   if X.shape[1] == 5 else X)
    expect_typed(call, *culprits)


# --------------------------------------------------------------------------- graphs

@st.composite
def bad_arrays(draw):
    """Arguments of SharedGraph.from_arrays with one bad part, and the culprit's name."""
    src, dst, par, inputs, outputs = [0, 1], [1, 2], [0, 1], [0], [2]
    args = dict(src=src, dst=dst, param=par, inputs=inputs, outputs=outputs)
    kind = draw(st.sampled_from(["huge", "uint64", "pyint", "float", "negative", "complex",
                                 "n_nodes", "n_params", "bool", "2d", "cycle"]))
    target = draw(st.sampled_from(["src", "dst", "param"]))
    if kind == "huge":
        v = draw(st.integers(2 ** 31, 2 ** 62))
        args[target] = [0, v] if target != "param" else [0, v]
        return args, (target, str(v), "n_params", "n_nodes")
    if kind == "uint64":
        v = draw(st.integers(2 ** 63, 2 ** 64 - 1))
        args[target] = np.array([0, v], dtype=np.uint64)
        return args, (f"{target}[1]",)
    if kind == "pyint":
        v = draw(st.integers(2 ** 64, 2 ** 200))
        args[target] = [0, v]
        return args, (f"{target}[1]",)
    if kind == "float":
        args[target] = [0.0, draw(st.sampled_from([0.5, 1e300, math.nan, math.inf]))]
        return args, (target,)
    if kind == "negative":
        args[target] = [0, draw(st.integers(-2 ** 40, -1))]
        return args, ("out of range", "unknown", "node")
    if kind == "complex":
        args[target] = np.array([0, 1], dtype=complex)
        return args, (target,)
    if kind == "n_nodes":
        args["n_nodes"] = draw(st.one_of(st.integers(2 ** 23, 2 ** 62), st.just(-1),
                                         st.just(2.5), st.just("3")))
        return args, ("n_nodes",)
    if kind == "n_params":
        args["n_params"] = draw(st.one_of(st.integers(2 ** 23, 2 ** 62), st.just(-1),
                                          st.just(True), st.just("3")))
        return args, ("n_params",)
    if kind == "bool":
        args[target] = np.array([False, True])
        return args, (target,)
    if kind == "2d":
        args[target] = [[0, 1]]
        return args, (target,)
    length = draw(st.integers(2, 400))
    args.update(src=list(range(length)), dst=[(k + 1) % length for k in range(length)],
                param=[0] * length, inputs=[length], outputs=[length + 1])
    return args, ("cycle",)


@settings(max_examples=BUDGET["arrays"], **fast)
@given(bad_arrays())
def test_bad_graph_arrays(case):
    args, culprits = case
    message = expect_typed(lambda: pathgeom.SharedGraph.from_arrays(**args), *culprits)
    if "cycle" in culprits:
        assert len(message) < 400, "a cycle error must list a readable number of nodes"


@st.composite
def bad_edges(draw):
    kind = draw(st.sampled_from(["index_type", "huge_index", "negative", "triple",
                                 "unhashable", "into_input", "n_params"]))
    edges = [("x", "a", 0), ("a", "y", 1)]
    if kind == "index_type":
        bad = draw(st.sampled_from([1.5, "0", None, True, 2.0]))
        edges.append(("x", "y", bad))
        return edges, {}, ("edge #2",)
    if kind == "huge_index":
        edges.append(("x", "y", draw(st.integers(2 ** 31 - 1, 2 ** 100))))
        return edges, {}, ("edge #2",)
    if kind == "negative":
        edges.append(("x", "y", draw(st.integers(-10 ** 6, -1))))
        return edges, {}, ("edge #2",)
    if kind == "triple":
        edges.append(draw(st.sampled_from([("x", "y"), "xy0", 3, ("x", "y", 0, 1)])))
        return edges, {}, ("edge #2",)
    if kind == "unhashable":
        edges.append((["x"], "y", 0))
        return edges, {}, ("hashable",)
    if kind == "into_input":
        edges.append(("a", "x", 0))
        return edges, {}, ("input",)
    return edges, {"n_params": draw(st.integers(2 ** 23, 2 ** 31))}, ("n_params",)


@settings(max_examples=BUDGET["edges"], **fast)
@given(bad_edges())
def test_bad_edge_lists(case):
    edges, kwargs, culprits = case
    expect_typed(lambda: pathgeom.SharedGraph.from_edges(edges, ["x"], ["y"], **kwargs),
                 *culprits)


def test_support_of_a_graph_with_a_huge_declared_parameter_count_is_refused_early():
    with pytest.raises(GraphError, match="n_params"):
        pathgeom.SharedGraph.from_arrays([0], [1], [0], [0], [1], n_params=2 ** 31 - 1)


# --------------------------------------------------------------------------- numbers

@settings(max_examples=BUDGET["scales"], **fast)
@given(st.data())
def test_bad_numeric_arguments(data):
    bad = data.draw(st.sampled_from([math.nan, -1.0, math.inf, -math.inf, "1", [1.0],
                                     True, 1j]))
    rng = np.random.default_rng(0)
    which = data.draw(st.sampled_from(["rnn.init", "mlp.init", "cnn.init", "sample",
                                       "invariance.scale", "invariance.lr"]))
    if which == "rnn.init":
        call, culprit = (lambda: RNN.init(rng, "uniform", scale=bad)), "scale"
    elif which == "mlp.init":
        call, culprit = (lambda: MLP.init(rng, "uniform", scale=bad)), "scale"
    elif which == "cnn.init":
        call, culprit = (lambda: CNN.init(rng, "he", scale=bad)), "scale"
    elif which == "sample":
        call, culprit = (lambda: rescaling_group(CHAIN).sample(rng, bad)), "scale"
    elif which == "invariance.scale":
        call = lambda: verify_invariance(CHAIN, [1.0, 1.0, 1.0], rng, scale=bad)
        culprit = "scale"
    else:
        call = lambda: verify_invariance(CHAIN, [1.0, 1.0, 1.0], rng, lr=bad)
        culprit = "lr"
    expect_typed(call, culprit)


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e300])
def test_huge_rescaling_scale_names_the_scale(scale):
    g = pathgeom.rnn(1, 3, 1, 4).graph
    p = np.full(g.n_params, 0.5)
    message = expect_typed(lambda: verify_invariance(g, p, np.random.default_rng(0),
                                                     scale=scale), "scale=")
    assert "beta[" not in message


def test_rnn_alpha_and_pack_refuse_complex():
    expect_typed(lambda: RNN.rescale_units(np.zeros(RNN.n_params), np.ones(3) + 0j), "complex")
    blocks = RNN.unpack(np.zeros(RNN.n_params))
    blocks["W_out"] = blocks["W_out"].astype(complex)
    expect_typed(lambda: RNN.pack(**blocks), "complex")


# --------------------------------------------------------------------------- the CLI

FLAGS = {
    "demo": ["--T", "--H", "--big-T", "--big-H", "--race-T", "--race-H", "--race-steps",
             "--seed"],
    "lemma1": ["--T", "--length", "--max-paths", "--weight-scale", "--seed", "--n-in"],
    "invariance": ["--scale", "--batch", "--lr", "--weight-scale", "--T"],
    "group": ["--show", "--width", "--kernel", "--T", "--H"],
    "draw": ["--dpi", "--T", "--hidden"],
}
ALLOWS_ZERO = {"--race-steps", "--seed", "--max-paths", "--scale"}


@settings(max_examples=BUDGET["cli_flags"], **fast)
@given(st.data())
def test_cli_bad_flag_values(data):
    command = data.draw(st.sampled_from(sorted(FLAGS)))
    flag = data.draw(st.sampled_from(FLAGS[command]))
    values = ["-1", "abc", "nan", "1e999", "", "-5"]
    if flag not in ALLOWS_ZERO:
        values.append("0")
    value = data.draw(st.sampled_from(values))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        cli.main([command, f"{flag}={value}"], out=io.StringIO(), err=io.StringIO())
    assert exit_info.value.code == 2
    text = err.getvalue()
    assert "Traceback" not in text
    assert f"argument {flag}" in text, text


BAD_LINES = [
    ("x y 2147483646", "parameter"),
    ("x y 99999999999999999999999", "parameter"),
    ("x y 1.5", "not an integer"),
    ("x y", "3 tokens"),
    ("params -1", "params N"),
    ("x x 0", "self-loop"),
    ("a b 0\nb a 0", "cycle"),
    ("y z 0", "output"),
]


@settings(max_examples=BUDGET["cli_files"], **fast)
@given(st.sampled_from(BAD_LINES), st.booleans(), st.sampled_from(["lemma1", "group",
                                                                   "invariance"]))
def test_cli_bad_edge_list_files(tmp_path_factory, case, bom, command):
    line, culprit = case
    path = tmp_path_factory.mktemp("edges") / "net.txt"
    text = "inputs x\noutputs y\nx h 0\nh y 1\n" + line + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([command, "--graph", str(path)], out=out, err=err)
    assert status == 2
    message = err.getvalue()
    assert "Traceback" not in message and str(path) in message and culprit in message
    assert len(message) < 800
