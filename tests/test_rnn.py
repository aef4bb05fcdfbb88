"""The RNN constructor: graph = dense, structured geometry = generic engine = reference,
Theorem 1 rescalings."""

import numpy as np
import pytest

import pathgeom
from pathgeom import PathOverflowError, reference

from helpers import as_floats, assert_close

CONFIGS = [
    dict(n_in=1, hidden=3, n_out=1, T=5, outputs="last", bias=False),
    dict(n_in=2, hidden=[3, 2], n_out=2, T=4, outputs="all", bias=True),
    dict(n_in=2, hidden=[2, 3, 2], n_out=1, T=5, outputs="last", bias=True),
    dict(n_in=3, hidden=4, n_out=2, T=1, outputs="all", bias=False),
    dict(n_in=1, hidden=[2, 2], n_out=3, T=6, outputs="all", bias=False),
    dict(n_in=2, hidden=[3, 2], n_out=1, T=2, outputs="last", bias=True),
]
IDS = [f"{c['hidden']}-{c['outputs']}-T{c['T']}-bias{int(c['bias'])}" for c in CONFIGS]


@pytest.fixture(params=list(enumerate(CONFIGS)), ids=IDS)
def case(request):
    seed, config = request.param
    rng = np.random.default_rng(seed)  # fixed per configuration: failures replay
    net = pathgeom.rnn(**config)
    p = net.init(rng, "uniform", scale=0.7)
    if net.bias:  # init leaves biases at zero; make them matter
        for l in range(net.n_layers):
            p[net.layout.slice("b", l)] = rng.uniform(-0.5, 0.5, net.hidden[l])
        p[net.layout.slice("b_out")] = rng.uniform(-0.5, 0.5, net.n_out)
    X = rng.normal(size=(4, net.T, net.n_in))
    return net, p, X, rng


def test_graph_forward_equals_dense_forward(case):
    net, p, X, _ = case
    Y = net.forward(p, X)
    assert Y.shape == ((4, net.n_out) if net.outputs == "last" else (4, net.T, net.n_out))
    scale = np.abs(net.forward(np.abs(p), np.abs(X))).reshape(4, -1)
    assert_close(net.graph.forward(p, net.graph_inputs(X)), Y.reshape(4, -1), 1e-12,
                 scale=1e-12 * scale)


def test_graph_backward_equals_dense_bptt(case):
    net, p, X, rng = case
    dY = rng.normal(size=net.forward(p, X).shape)
    dense = net.backward(p, X, dY)
    generic = net.graph.backward(p, net.graph_inputs(X), dY.reshape(4, -1))
    scale = net.backward(np.abs(p), np.abs(X), np.abs(dY))
    assert_close(dense, generic, 1e-11, scale=1e-11 * scale)


def test_structured_geometry_equals_generic_engine(case):
    net, p, _, _ = case
    a = net.path_quantities(p)
    b = pathgeom.path_quantities(net.graph, p)
    assert_close(a.gamma2, b.gamma2, 1e-12)
    assert_close(a.kappa1, b.kappa1, 1e-12)
    assert_close(a.kappa2, b.kappa2, 1e-11)
    assert_close(a.kappa, b.kappa, 1e-12)
    for name in ("gamma2", "kappa1", "kappa2", "kappa"):
        assert_close(getattr(net, name)(p), getattr(a, name), 0)


def test_only_w_rec_has_kappa2(case):
    net, p, _, _ = case
    k2 = net.kappa2(p)
    rec = np.zeros(net.n_params, bool)
    for l in range(net.n_layers):
        rec[net.layout.slice("W_rec", l)] = True
    assert np.all(k2[~rec] == 0.0)
    assert np.all(pathgeom.kappa2(net.graph, p)[~rec] == 0.0)
    if net.T >= 3:
        assert np.any(k2[rec] > 0)


@pytest.mark.parametrize("config", [dict(n_in=1, hidden=2, n_out=1, T=4),
                                    dict(n_in=1, hidden=[2, 2], n_out=2, T=3, outputs="all",
                                         bias=True),
                                    dict(n_in=2, hidden=[1, 2, 1], n_out=1, T=4, bias=True)])
def test_structured_geometry_equals_exact_reference(config):
    net = pathgeom.rnn(**config)
    p = net.init(np.random.default_rng(3), "uniform", scale=0.9)
    if net.bias:
        p[net.layout.slice("b_out")] = 0.3
        for l in range(net.n_layers):
            p[net.layout.slice("b", l)] = 0.2 + 0.1 * l
    r = net.path_quantities(p)
    assert_close(r.gamma2, float(reference.gamma2(net.graph, p)), 1e-12)
    assert_close(r.kappa1, as_floats(reference.kappa1(net.graph, p)), 1e-12)
    assert_close(r.kappa2, as_floats(reference.kappa2(net.graph, p)), 1e-12)
    assert_close(r.kappa, as_floats(reference.kappa(net.graph, p)), 1e-12)


def test_no_time_zero_nodes():
    net = pathgeom.rnn(n_in=2, hidden=[3, 4], n_out=5, T=6, outputs="all", bias=True)
    assert net.graph.n_nodes == 6 * 2 + 1 + 6 * (3 + 4) + 6 * 5
    assert net.graph.n_inputs == 6 * 2 + 1
    # the first hidden step sees only the layer below (and the bias): no recurrent edge
    g = net.graph
    src, dst, par = g.edges()
    first = [g.index(12 + 1 + j) for j in range(3)]  # h^1_1 nodes: ids after the inputs
    rec = net.layout.slice("W_rec", 0)
    assert not np.any(np.isin(dst, first) & (par >= rec.start) & (par < rec.stop))


def test_layout_round_trip_and_errors():
    net = pathgeom.rnn(2, [3, 2], 1, T=3, bias=True)
    rng = np.random.default_rng(0)
    p = rng.normal(size=net.n_params)
    blocks = net.unpack(p)
    assert [w.shape for w in blocks["W_in"]] == [(3, 2), (2, 3)]
    assert [w.shape for w in blocks["W_rec"]] == [(3, 3), (2, 2)]
    assert blocks["W_out"].shape == (1, 2) and blocks["b_out"].shape == (1,)
    np.testing.assert_array_equal(net.pack(**blocks), p)
    blocks["W_rec"][1] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"W_rec\[1\] has shape \(3, 3\), expected \(2, 2\)"):
        net.pack(**blocks)
    blocks["W_rec"][1] = np.zeros((2, 2))
    del blocks["b_out"]
    with pytest.raises(ValueError, match="missing parameter block 'b_out'"):
        net.pack(**blocks)


def test_init_schemes():
    net = pathgeom.rnn(3, [4, 2], 2, T=3)
    rng = np.random.default_rng(0)
    b = net.unpack(net.init(rng, "irnn"))
    np.testing.assert_array_equal(b["W_rec"][0], np.eye(4))
    assert np.abs(b["W_in"][1]).max() <= 0.01 and np.abs(b["W_out"]).max() <= 0.01
    b = net.unpack(net.init(rng, "lm"))
    assert np.abs(b["W_rec"][0]).max() <= 0.01 < np.abs(b["W_in"][0]).max() <= 0.2
    with pytest.raises(ValueError, match="unknown scheme"):
        net.init(rng, "glorot")
    with pytest.raises(TypeError, match="Generator"):
        net.init(0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        pathgeom.rnn(1, 2, 1, T=0)
    with pytest.raises(ValueError, match="outputs must be 'last' or 'all'"):
        pathgeom.rnn(1, 2, 1, T=3, outputs="first")
    net = pathgeom.rnn(2, 2, 1, T=3)
    with pytest.raises(ValueError, match=r"expected \(B, T, n_in\) = \(B, 3, 2\)"):
        net.forward(np.zeros(net.n_params), np.zeros((4, 3, 3)))


class TestTheorem1:
    @pytest.fixture(params=CONFIGS[:3], ids=IDS[:3])
    def rescaled(self, request):
        rng = np.random.default_rng(7)
        net = pathgeom.rnn(**request.param)
        p = net.init(rng, "uniform", scale=0.7)
        if net.bias:
            p[net.layout.slice("b", 0)] = 0.3
        alpha = [rng.uniform(0.3, 3.0, H) for H in net.hidden]
        return net, p, net.rescale_units(p, alpha), net.beta(alpha), rng

    def test_function_and_gamma2_unchanged(self, rescaled):
        net, p, p2, _, rng = rescaled
        X = rng.normal(size=(5, net.T, net.n_in))
        scale = np.abs(net.forward(np.abs(p), np.abs(X)))
        assert_close(net.forward(p2, X), net.forward(p, X), 1e-12, scale=1e-12 * scale)
        assert_close(net.gamma2(p2), net.gamma2(p), 1e-12)

    def test_equals_the_node_wise_rescaling_of_the_graph(self, rescaled):
        net, p, p2, beta, _ = rescaled
        src, dst, par = net.graph.edges()
        expected = p.copy()
        expected[par] = p[par] * beta[dst] / beta[src]  # every edge of a block agrees
        assert_close(p2, expected, 1e-14)
        inputs = [net.graph.index(x) for x in net.graph.inputs + net.graph.outputs]
        np.testing.assert_array_equal(beta[inputs], 1.0)

    def test_kappa_and_gradient_scale(self, rescaled):
        net, p, p2, beta, rng = rescaled
        src, dst, par = net.graph.edges()
        ratio = np.ones_like(p)
        ratio[par] = beta[dst] / beta[src]  # the same on every edge of a parameter
        k, k2 = net.kappa(p), net.kappa(p2)
        assert_close(k2 * ratio ** 2, k, 1e-11)
        X = rng.normal(size=(3, net.T, net.n_in))
        dY = rng.normal(size=net.forward(p, X).shape)
        g, g2 = net.backward(p, X, dY), net.backward(p2, X, dY)
        scale = net.backward(np.abs(p), np.abs(X), np.abs(dY))
        assert_close(g2 * ratio, g, 1e-11, scale=1e-11 * scale)


def test_long_sequences_overflow_with_an_error():
    net = pathgeom.rnn(1, 4, 1, T=400)
    p = net.init(np.random.default_rng(0), "irnn")
    p[net.layout.slice("W_rec", 0)] = 2.0  # R = 4 everywhere: rho(R) = 16
    with pytest.raises(PathOverflowError, match=r"layer 0 at time step \d+"):
        net.kappa(p)
    with pytest.raises(PathOverflowError):
        pathgeom.kappa(net.graph, p)


@pytest.mark.parametrize("method", ["recursive", "lagged", "fft"])
@pytest.mark.parametrize("config", [dict(n_in=1, hidden=5, n_out=1, T=9),
                                    dict(n_in=2, hidden=[4, 3], n_out=2, T=7, outputs="all",
                                         bias=True)])
def test_kappa2_methods_agree_with_the_generic_engine(method, config):
    net = pathgeom.rnn(**config)
    p = net.init(np.random.default_rng(11), "uniform", scale=0.8)
    generic = pathgeom.kappa2(net.graph, p)
    # recursive and lagged sum positive terms; fft's error is absolute (eps * largest term)
    rtol, scale = (1e-12, None) if method != "fft" else (1e-10, generic.max())
    assert_close(net.path_quantities(p, method=method).kappa2, generic, rtol, scale=scale)


def test_kappa2_method_name_is_checked():
    net = pathgeom.rnn(1, 2, 1, T=4)
    with pytest.raises(ValueError, match="method must be"):
        net.path_quantities(np.ones(net.n_params), method="dense")


def test_one_layer_blocks_may_be_bare_arrays():
    net = pathgeom.rnn(2, 3, 1, T=4, bias=True)
    rng = np.random.default_rng(0)
    blocks = net.unpack(rng.normal(size=net.n_params))
    bare = dict(blocks, W_in=blocks["W_in"][0], W_rec=blocks["W_rec"][0], b=blocks["b"][0])
    np.testing.assert_array_equal(net.pack(**bare), net.pack(**blocks))
    alpha = rng.uniform(0.5, 2, 3)
    np.testing.assert_array_equal(net.rescale_units(net.pack(**blocks), alpha),
                                  net.rescale_units(net.pack(**blocks), [alpha]))


class TestRegressions:
    """Cases an independent review found."""

    def test_structured_gamma2_does_not_check_delta(self):
        # gamma^2 fits, delta of layer 0 (2^2 per step over 600 steps) does not
        net = pathgeom.rnn(1, 1, 1, T=600)
        p = net.pack(W_in=np.array([[1e-60]]), W_rec=np.array([[2.0]]), W_out=np.array([[1.0]]))
        assert_close(net.gamma2(p), pathgeom.gamma2(net.graph, p), 1e-12)
        with pytest.raises(PathOverflowError, match="delta of layer 0"):
            net.kappa1(p)
        with pytest.raises(PathOverflowError):
            pathgeom.kappa1(net.graph, p)

    def test_backward_rejects_non_finite_dY_and_overflow(self):
        net = pathgeom.rnn(1, 2, 1, T=3)
        p = net.init(np.random.default_rng(0), "uniform", scale=0.5)
        X = np.ones((2, 3, 1))
        with pytest.raises(ValueError, match=r"dY\[0, 0\] = nan is not finite"):
            net.backward(p, X, [[np.nan], [1.0]])
        with pytest.raises(PathOverflowError, match="gradient of parameter"):
            net.backward(p, 1e6 * X, np.full((2, 1), 1e308))
        with pytest.raises(PathOverflowError):
            net.backward(np.full(net.n_params, 1e120), X, np.ones((2, 1)))

    def test_non_finite_X_is_named(self):
        net = pathgeom.rnn(2, 2, 1, T=3)
        X = np.zeros((2, 3, 2))
        X[1, 2, 0] = np.inf
        with pytest.raises(ValueError, match=r"X\[1, 2, 0\] = inf is not finite"):
            net.forward(np.zeros(net.n_params), X)


def test_rescale_with_one_step_leaves_the_unused_w_rec_alone():
    """With T = 1, W_rec is on no edge: rescale must agree with the graph's rescaling."""
    from pathgeom.invariance import rescale
    net = pathgeom.rnn(2, [4], 1, T=1)
    rng = np.random.default_rng(0)
    p = rng.normal(size=net.n_params)
    alpha = rng.uniform(0.5, 2.0, 4)
    np.testing.assert_allclose(net.rescale_units(p, alpha), rescale(net.graph, p, net.beta(alpha)))


def test_np_rnn_init_is_normalised_positive_definite():
    """np-RNN: W_rec = (A^T A / H + I) / lambda_max, symmetric positive definite with largest
    eigenvalue exactly 1; the other weights as for irnn."""
    net = pathgeom.rnn(2, [7, 5], 1, T=4)
    p = net.init(np.random.default_rng(3), "np-rnn")
    for l, H in enumerate((7, 5)):
        W = p[net.layout.slice("W_rec", l)].reshape(H, H)
        np.testing.assert_allclose(W, W.T, rtol=0, atol=1e-15)
        ev = np.linalg.eigvalsh(W)
        assert abs(ev[-1] - 1.0) < 1e-12
        # lambda_max * W - I = A^T A / H is positive semi-definite: the smallest eigenvalue
        # of W is 1 / lambda_max, so W's spectrum spans exactly [1 / lambda_max, 1]
        lam = 1.0 / ev[0]
        assert np.linalg.eigvalsh(lam * W - np.eye(H))[0] > -1e-12
        assert not np.allclose(W, np.eye(H))
    rest = p[net.layout.slice("W_out")]
    assert np.abs(rest).max() <= 0.01 and np.abs(rest).min() > 0


def test_np_rnn_spectrum_is_the_shifted_marchenko_pastur_law():
    """For large H the spectrum of A^T A / H fills [0, 4] (Marchenko-Pastur), so that of
    K = A^T A / H + I fills [1, 5] and W = K / lambda_max(K) spans about [1/5, 1]: strictly
    positive definite (without the identity the smallest eigenvalue would be near 0)."""
    from pathgeom.constructors.rnn import _normalised_positive_definite
    ev = np.linalg.eigvalsh(_normalised_positive_definite(np.random.default_rng(0), 400))
    assert abs(ev[-1] - 1.0) < 1e-12
    assert 0.18 < ev[0] < 0.22
    assert 0.31 < np.median(ev) < 0.36   # MP(1) has median 0.65: (1 + 0.65) / 5 = 0.33


@pytest.mark.parametrize("n_in, hidden, n_out, T, outputs, bias", [
    (1, [3], 1, 1, "last", False), (2, [3, 4], 2, 5, "all", True), (3, [2, 2, 2], 1, 7,
                                                                     "last", True)])
def test_size_check_counts_the_edges_exactly(monkeypatch, n_in, hidden, n_out, T, outputs,
                                             bias):
    """The constructor refuses oversized networks before allocating; its count is exact."""
    from pathgeom.constructors import _base
    seen = {}
    real = _base.check_graph_size
    import sys
    module = sys.modules["pathgeom.constructors.rnn"]   # (the name rnn is the function)
    monkeypatch.setattr(module, "check_graph_size",
                        lambda n, e, what: seen.update(n=n, e=e) or real(n, e, what))
    net = pathgeom.rnn(n_in, hidden, n_out, T, outputs=outputs, bias=bias)
    assert seen == {"n": net.graph.n_nodes, "e": net.graph.n_edges}
    with pytest.raises(pathgeom.GraphError, match="limited to 2"):
        pathgeom.rnn(1, [100_000], 1, 10)
