r"""Unrolled multi-layer ReLU RNNs (paper Table 1) with structured path quantities.

For layers :math:`l = 1, \dots, d-1` of widths :math:`H_l` and times :math:`t = 1..T`,

.. math::

    h^0_t = x_t, \qquad
    h^l_t = \mathrm{relu}\big(W^l_{in} h^{l-1}_t + W^l_{rec} h^l_{t-1} + b^l\big), \qquad
    y_t = W_{out} h^{d-1}_t + b_{out},

with no time-0 nodes (:math:`h^l_0 = 0` adds no path; free time-0 nodes would add rescaling
freedom and break Theorem 1).  The graph is built by :func:`pathgeom.constructors._rnn_edges.rnn_arrays`.

Structured quantities.  With :math:`q = p^2` the squared network on the all-ones input has
layer values :math:`h^l_t = A_l h^{l-1}_t + R_l h^l_{t-1} + a_l` (:math:`A = W_{in}^{\odot 2}`,
:math:`R = W_{rec}^{\odot 2}`, :math:`a = b^{\odot 2}`, :math:`h^0_t = \mathbf 1`) and
sensitivities :math:`\delta^l_t = A_{l+1}^\top \delta^{l+1}_t + R_l^\top \delta^l_{t+1}`
(the top layer receives :math:`O^\top \mathbf 1` at output times, :math:`O = W_{out}^{\odot 2}`).
Then :math:`\kappa^{(1)}` of every block is a sum over time of outer products, e.g.
:math:`\kappa^{(1)}(W_{rec})[j,k] = \sum_{t=2}^{T} \delta_t[j] h_{t-1}[k]`, and only
:math:`W_{rec}` can have :math:`\kappa^{(2)} \ne 0`.  A path between two nodes of one
layer stays in that layer, so (derived in :meth:`RNN._kappa2_rec`)

.. math::

    \kappa^{(2)}(W_{rec})[j,k] = 4 R[j,k] \sum_{s=0}^{T-3} (R^s)[k,j]\, C_s[j,k], \qquad
    C_s[j,k] = \sum_{t=2}^{T-s-1} \delta_{t+s+1}[j]\, h_{t-1}[k],

:math:`O(T H^3 + T^2 H^2)` as written (one matrix power and one lagged sum per lag).
pathgeom evaluates it by a backward recursion instead (:meth:`RNN._kappa2_rec`):
:math:`W_u = R W_{u+1} + \mathrm{diag}(\delta_{u+2})` gives the whole sum in
:math:`O(T H^3)`, with no :math:`T^2` term, against :math:`O(|E|)` per parameter for the
generic engine.
"""

import warnings

import numpy as np

from .. import _threads, engine, geometry
from ._rnn_edges import rnn_arrays, rnn_param_blocks
from .._errors import PathOverflowError
from .._validation import as_params, as_real_array, check_bool, check_scale, check_int, check_rng
from ..graph import SharedGraph
from ._base import Layout, Network, check_graph_size

__all__ = ["rnn", "RNN"]

#: The initialisation schemes of :meth:`RNN.init` and what each draws.
INIT_SCHEMES = {"irnn": "W_rec = I, other weights U[-0.01, 0.01] (adding problem, digits)",
                "lm": "W_rec ~ U[-0.01, 0.01], other weights U[-0.2, 0.2] (language models)",
                "uniform": "every weight U[-scale, scale]",
                "np-rnn": "W_rec = A^T A / H + I scaled to largest eigenvalue 1, A ~ N(0, 1) "
                          "(Talathi & Vartak's np-RNN); other weights U[-0.01, 0.01]"}
_SCHEMES = tuple(INIT_SCHEMES)
#: Relative accuracy per entry that ``path_quantities(method="fft")`` guarantees (else it
#: falls back to the exact recursive sum).
FFT_RTOL = 1e-10


def _normalised_positive_definite(rng, H):
    r"""The np-RNN recurrent matrix (Talathi & Vartak, 2016): with :math:`A_{ij} \sim N(0, 1)`,
    :math:`K = A^T A / H + I` divided by its largest eigenvalue -- symmetric, positive
    definite (every eigenvalue in :math:`[1/\lambda_{max}(K), 1]`), largest eigenvalue exactly 1."""
    A = rng.standard_normal((H, H))
    K = A.T @ A / H + np.eye(H)
    K = (K + K.T) / 2
    return K / np.linalg.eigvalsh(K)[-1]


def rnn(n_in, hidden, n_out, T, outputs="last", bias=False):
    r"""An unrolled ReLU RNN as a shared-weight graph, with its dense twin.

    Parameters
    ----------
    n_in : int
        Input width per time step.
    hidden : int or sequence of int
        Hidden widths :math:`H_1, \dots, H_{d-1}` (one int: one layer).
    n_out : int
        Output width per output step.
    T : int
        Sequence length (number of unrolled steps), >= 1.
    outputs : {"last", "all"}
        Outputs :math:`y_T` only, or :math:`y_1, \dots, y_T`.
    bias : bool
        Add per-unit biases :math:`b^l` and :math:`b_{out}`, shared over time, fed by one
        extra input node (the last input) that carries 1.

    Returns
    -------
    RNN
        ``.graph`` has inputs time-major (``x_1[0..n_in-1], x_2[...], ...``, then the bias
        node) and outputs time-major.

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> net = pathgeom.rnn(n_in=2, hidden=3, n_out=1, T=4)
    >>> net.graph
    SharedGraph(n_nodes=21, n_edges=54, n_params=18, n_inputs=8, n_outputs=1)
    >>> p = net.init(np.random.default_rng(0), "irnn")
    >>> X = np.random.default_rng(1).normal(size=(5, 4, 2))
    >>> np.allclose(net.forward(p, X), net.graph.forward(p, X.reshape(5, -1)))
    True
    >>> np.allclose(net.kappa(p), pathgeom.kappa(net.graph, p))
    True
    """
    return RNN(n_in, hidden, n_out, T, outputs=outputs, bias=bias)


def _positive_int(value, name):
    return check_int(value, name, 1)



class _Underflow(Exception):
    """Internal: the dense sweeps met a value below the normal float64 range."""


class RNN(Network):
    r"""An unrolled ReLU RNN: graph, parameter layout, dense passes, structured geometry.

    Parameter blocks (see :attr:`layout`): ``W_in`` (list, :math:`H_l \times H_{l-1}`),
    ``W_rec`` (list, :math:`H_l \times H_l`), ``W_out`` (:math:`n_{out} \times H_{d-1}`),
    and with ``bias=True`` ``b`` (list, :math:`H_l`) and ``b_out`` (:math:`n_{out}`).
    Build with :func:`pathgeom.rnn`.
    """

    def __init__(self, n_in, hidden, n_out, T, outputs="last", bias=False):
        self.n_in = _positive_int(n_in, "n_in")
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        self.hidden = tuple(_positive_int(H, "every hidden width") for H in hidden)
        self.n_out = _positive_int(n_out, "n_out")
        self.T = _positive_int(T, "T")
        if outputs not in ("last", "all"):
            raise ValueError(f"outputs must be 'last' or 'all', got {outputs!r}")
        self.outputs = outputs
        self.bias = check_bool(bias, "bias")
        self.layout = Layout(rnn_param_blocks(self.n_in, self.hidden, self.n_out, self.bias))
        widths = (self.n_in,) + self.hidden
        n_edges = sum(self.T * (a + b) * b - b * b for a, b in zip(widths[:-1], self.hidden))
        n_edges += self.bias * self.T * sum(self.hidden)
        n_outs = self.T if outputs == "all" else 1
        n_edges += n_outs * self.n_out * (self.hidden[-1] + self.bias)
        check_graph_size(self.T * sum(widths) + self.bias + n_outs * self.n_out, n_edges,
                         repr(self))
        a = rnn_arrays(self.n_in, self.hidden, self.n_out, self.T, outputs, self.bias)
        assert a["n_params"] == self.layout.n_params
        self._arrays = {k: a[k] for k in ("hidden_base", "out_base")}
        self.graph = SharedGraph.from_arrays(a["src"], a["dst"], a["param"], a["inputs"],
                                             a["outputs"], n_nodes=a["n_nodes"],
                                             n_params=a["n_params"])

    def __repr__(self):
        return (f"RNN(n_in={self.n_in}, hidden={list(self.hidden)}, n_out={self.n_out}, "
                f"T={self.T}, outputs={self.outputs!r}, bias={self.bias})")

    @property
    def n_layers(self):
        """Number of hidden layers, :math:`d - 1`."""
        return len(self.hidden)

    @property
    def depth(self):
        """Deprecated name of :attr:`n_layers` (on a :class:`~pathgeom.SharedGraph`,
        ``depth`` is the per-node longest-path depth)."""
        warnings.warn("RNN.depth is deprecated: use RNN.n_layers (SharedGraph.depth is the "
                      "per-node depth)", DeprecationWarning, stacklevel=2)
        return self.n_layers

    def _out_times(self):
        return np.arange(self.T) if self.outputs == "all" else np.array([self.T - 1])

    def _blocks(self, p):
        """Named views of ``p`` without copies: (W_in, W_rec, W_out, b, b_out)."""
        L = self.layout
        W_in = [p[L.slice("W_in", l)].reshape(L.shape("W_in", l)) for l in range(self.n_layers)]
        W_rec = [p[L.slice("W_rec", l)].reshape(L.shape("W_rec", l)) for l in range(self.n_layers)]
        W_out = p[L.slice("W_out")].reshape(L.shape("W_out"))
        if self.bias:
            b = [p[L.slice("b", l)] for l in range(self.n_layers)]
            b_out = p[L.slice("b_out")]
        else:
            b = [np.zeros(H) for H in self.hidden]
            b_out = np.zeros(self.n_out)
        return W_in, W_rec, W_out, b, b_out

    # ------------------------------------------------------------------ initialisation

    def init(self, rng, scheme="irnn", scale=0.01):
        r"""Initial parameters from the paper's schemes (section 5); biases are zero.

        Parameters
        ----------
        rng : numpy.random.Generator
        scheme : {"irnn", "lm", "np-rnn", "uniform"}
            ``"irnn"``: :math:`W_{rec} = I`, non-recurrent weights :math:`U[-0.01, 0.01]`
            (the adding-problem and sequential-digits setting, IRNN and RNN-Path alike).
            ``"lm"``: :math:`W_{rec} \sim U[-0.01, 0.01]`, non-recurrent
            :math:`U[-0.2, 0.2]` (the language-model setting).  ``"uniform"``: every weight
            :math:`U[-\text{scale}, \text{scale}]`.  ``"np-rnn"`` (Talathi & Vartak's
            normalised-positive-definite initialisation): :math:`W_{rec} = K / \lambda_{max}(K)`
            with :math:`K = A^T A / H + I`, :math:`A_{ij} \sim N(0, 1)` -- symmetric, positive
            definite, largest eigenvalue exactly 1 -- and non-recurrent weights
            :math:`U[-0.01, 0.01]` as for ``"irnn"`` (so that the two differ only in
            :math:`W_{rec}`).
        scale : float
            The range of ``"uniform"``.

        Returns
        -------
        ndarray, shape (n_params,)
        """
        check_rng(rng)
        if scheme not in _SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; choose one of {_SCHEMES}")
        scale = check_scale(scale, "scale")
        rec, nonrec = {"irnn": (None, 0.01), "lm": (0.01, 0.2), "np-rnn": (None, 0.01),
                       "uniform": (scale, scale)}[scheme]
        p = np.zeros(self.n_params)
        L = self.layout
        for l, H in enumerate(self.hidden):
            s = L.slice("W_in", l)
            p[s] = rng.uniform(-nonrec, nonrec, s.stop - s.start)
            s = L.slice("W_rec", l)
            if scheme == "np-rnn":
                p[s] = _normalised_positive_definite(rng, H).ravel()
            else:
                p[s] = np.eye(H).ravel() if rec is None else rng.uniform(-rec, rec, H * H)
        s = L.slice("W_out")
        p[s] = rng.uniform(-nonrec, nonrec, s.stop - s.start)
        return p

    # ------------------------------------------------------------------ dense passes

    def _check_X(self, X):
        X = as_real_array(X, "X")
        if X.ndim == 2:
            X = X[None]
            squeeze = True
        else:
            squeeze = False
        if X.ndim != 3 or X.shape[1:] != (self.T, self.n_in):
            raise ValueError(f"X has shape {np.shape(X)}; expected (B, T, n_in) = "
                             f"(B, {self.T}, {self.n_in}) or (T, n_in)")
        if not np.isfinite(X).all():
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
            raise ValueError(f"X{list(where[1:] if squeeze else where)} = {X[where]} is not "
                             f"finite; inputs must be finite")
        return X, squeeze

    def _run(self, p, X):
        """All hidden states: list over layers of arrays (T, B, H_l).

        Per layer :func:`pathgeom.engine.rnn_dense_forward`:
        ``h[t] = relu(h[t-1] W_rec^T + (x[t] W_in^T + b))``, per step one BLAS product and
        one compiled element-wise pass."""
        W_in, W_rec, _, b, _ = self._blocks(p)
        below = np.moveaxis(X, 1, 0)  # (T, B, n_in), a view
        T, B = below.shape[:2]
        from .._memory import check_fits   # the states, and about as much again backward
        check_fits(3 * 8 * T * B * sum(self.hidden), f"the hidden states of {B:,} sequences "
                   f"of length T = {T:,} ({sum(self.hidden):,} units)",
                   "choose a smaller batch (--batch) or T (--T)")
        states = []
        for l, H in enumerate(self.hidden):
            h = np.empty((T, B, H))
            # a time loop of (B, H) x (H, H) products: one thread unless they are large
            with _threads.for_size(B * H * max(H, below.shape[2])):
                engine.rnn_dense_forward(below, np.array(W_in[l].T, order="C"),
                                         np.array(W_rec[l].T, order="C"), np.array(b[l]), h)
            states.append(h)
            below = h
        return states

    def graph_inputs(self, X):
        """``X`` (B, T, n_in) as rows for ``self.graph``: time-major, plus 1 for the bias node."""
        X, squeeze = self._check_X(X)
        rows = X.reshape(X.shape[0], -1)
        if self.bias:
            rows = np.concatenate([rows, np.ones((rows.shape[0], 1))], axis=1)
        return rows[0] if squeeze else rows

    def forward(self, p, X):
        r"""Dense forward pass with numpy: the same function as ``self.graph.forward``
        applied to :meth:`graph_inputs`.

        Parameters
        ----------
        p : array_like, shape (n_params,)
        X : array_like, shape (B, T, n_in) or (T, n_in)

        Returns
        -------
        ndarray
            (B, n_out) with ``outputs="last"``, (B, T, n_out) with ``outputs="all"``
            (without the batch axis when ``X`` has none).
        """
        p = as_params(p, self.n_params)
        X, squeeze = self._check_X(X)
        Y, _ = self._forward_states(p, X)
        return Y[0] if squeeze else Y

    def forward_with_states(self, p, X):
        """:meth:`forward` on a batch ``X`` (B, T, n_in), also returning the hidden states,
        which :meth:`backward` accepts (``states=``) to skip recomputing them."""
        p = as_params(p, self.n_params)
        X, squeeze = self._check_X(X)
        if squeeze:
            raise ValueError("forward_with_states takes a batch X of shape (B, T, n_in)")
        return self._forward_states(p, X)

    def _forward_states(self, p, X):
        _, _, W_out, _, b_out = self._blocks(p)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            states = self._run(p, X)
            top = states[-1]
            if self.outputs == "last":
                Y = top[-1] @ W_out.T + b_out
            else:
                Y = np.moveaxis(top @ W_out.T + b_out, 0, 1)
        if not np.isfinite(Y).all():
            raise PathOverflowError("the dense forward pass overflowed float64; scale the "
                                    "weights down")
        return Y, states

    def backward(self, p, X, dY, states=None):
        r"""Dense backpropagation through time: :math:`\sum_b dY_b^\top \partial y_b / \partial p`.

        Equal to ``self.graph.backward(p, self.graph_inputs(X), dY.reshape(B, -1))``.
        ``states``, from :meth:`forward_with_states` at the same ``p`` and ``X``, saves
        the forward pass.

        Parameters
        ----------
        p : array_like, shape (n_params,)
        X : array_like, shape (B, T, n_in)
        dY : array_like, shape of :meth:`forward`'s result

        Returns
        -------
        ndarray, shape (n_params,)
        """
        p = as_params(p, self.n_params)
        X, squeeze = self._check_X(X)
        B = X.shape[0]
        want = (B, self.n_out) if self.outputs == "last" else (B, self.T, self.n_out)
        dY = as_real_array(dY, "dY")
        if squeeze:
            dY = dY[None]
        if dY.shape != want:
            raise ValueError(f"dY has shape {dY.shape}; expected {want}")
        if not np.isfinite(dY).all():
            where = [int(i) for i in np.argwhere(~np.isfinite(dY))[0]]
            raise ValueError(f"dY{where} = {dY[tuple(where)]} is not finite; the output "
                             f"gradient must be finite")
        if states is not None:
            states = self._check_states(states, B)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            return self._backward(p, X, dY, states)

    def _work(self):
        """Multiply-adds of the largest single BLAS product of the squared network's passes
        and the structured kappa2 (for the thread choice of
        :func:`pathgeom._threads.for_size`)."""
        H = max(self.hidden)
        K = max((self.n_in,) + self.hidden)
        return max(H ** 3, self.T * H * K)

    def _check_states(self, states, B):
        """``states`` as :meth:`forward_with_states` returns them for a batch of ``B``:
        one C-contiguous float64 array (T, B, H_l) per layer (the compiled passes read
        them without bounds checks)."""
        states = list(states)
        want = [(self.T, B, H) for H in self.hidden]
        got = [np.shape(h) for h in states]
        if got != want:
            raise ValueError(f"states have shapes {got}; expected {want}, as "
                             f"forward_with_states returns them for this X")
        return [np.ascontiguousarray(as_real_array(h, f"states[{l}]"))
                for l, h in enumerate(states)]

    def _backward(self, p, X, dY, states):
        W_in, W_rec, W_out, _, _ = self._blocks(p)
        if states is None:
            states = self._run(p, X)
        grad = np.zeros(self.n_params)
        gW_in, gW_rec, gW_out, gb, gb_out = self._blocks(grad)  # views (biases: with bias)
        top = states[-1]
        # the gradient reaching the top layer is G[t] @ W_out, G time-major: (1, B, n_out)
        # (the last step only) or (T, B, n_out)
        if self.outputs == "last":
            G = np.ascontiguousarray(dY[None])
            rows = top[-1]
        else:
            G = np.ascontiguousarray(np.moveaxis(dY, 1, 0))
            rows = top.reshape(-1, top.shape[-1])
        gW_out += G.reshape(-1, self.n_out).T @ rows
        if self.bias:
            gb_out += G.sum(axis=(0, 1))
        M = np.array(W_out)
        finite = [True] * self.n_layers
        for l in range(self.n_layers - 1, -1, -1):
            h = states[l]
            below = np.moveaxis(X, 1, 0) if l == 0 else states[l - 1]
            dz = np.empty_like(h)  # dL/d(pre-activation), (T, B, H)
            with _threads.for_size(h.shape[1] * h.shape[2] * max(h.shape[2], G.shape[2])):
                finite[l] = engine.rnn_dense_bptt(G, M, h, W_rec[l], dz)
            # the weight gradients: a few products over every (time, row) pair, at the
            # caller's thread count
            d_rec, d_in, d_b = engine.rnn_dense_grads(dz, h, below, self.bias)
            gW_rec[l] += d_rec
            gW_in[l] += d_in
            if self.bias:
                gb[l] += d_b
            G, M = dz, np.array(W_in[l])  # into the layer below
        for l, ok in enumerate(finite):
            if not ok:
                raise PathOverflowError(f"the dense forward pass overflowed float64 in layer "
                                        f"{l}; scale the weights down")
        if not np.isfinite(grad).all():
            i = int(np.flatnonzero(~np.isfinite(grad))[0])
            raise PathOverflowError(f"the gradient of parameter {i} overflowed float64; "
                                    f"scale the weights or dY down")
        return grad

    # ------------------------------------------------------------------ structured geometry

    def _squared_forward(self, q):
        """Squared-network layer values ``h[l]``, arrays (T, H_l), checked finite."""
        A, R, _, a, _ = self._blocks(q)
        T = self.T
        hs = []
        below = np.ones((T, self.n_in))
        for l in range(self.n_layers):
            drive = below @ A[l].T + a[l]
            h = np.empty((T, self.hidden[l]))
            engine.rnn_sq_sweep(R[l], drive, drive, h, h, True, False)
            hs.append(h)
            below = h
        self._check_finite(hs, "h")
        return hs

    def _squared_sweeps(self, q):
        """:meth:`_squared_forward` and :meth:`_squared_backward` at once: the top layer's
        forward and backward time loops share one pass over its ``R`` per step."""
        A, R, O, a, _ = self._blocks(q)
        T, top = self.T, self.n_layers - 1
        hs, deltas = [None] * self.n_layers, [None] * self.n_layers
        below = np.ones((T, self.n_in))
        for l in range(self.n_layers):
            drive = below @ A[l].T + a[l]
            hs[l] = np.empty((T, self.hidden[l]))
            if l == top:
                seed = self._out_mask()[:, None] * O.sum(axis=0)[None, :]
                deltas[l] = np.empty((T, self.hidden[l]))
                engine.rnn_sq_sweep(R[l], drive, seed, hs[l], deltas[l], True, True)
            else:
                engine.rnn_sq_sweep(R[l], drive, drive, hs[l], hs[l], True, False)
            below = hs[l]
        for l in range(top - 1, -1, -1):
            seed = np.ascontiguousarray(deltas[l + 1] @ A[l + 1])
            deltas[l] = np.empty((T, self.hidden[l]))
            engine.rnn_sq_sweep(R[l], seed, seed, deltas[l], deltas[l], False, True)
        self._check_finite(hs, "h")
        return hs, deltas  # deltas unchecked: the caller checks them after gamma^2

    def _out_mask(self):
        out_mask = np.zeros(self.T)
        out_mask[self._out_times()] = 1.0
        return out_mask

    def _squared_backward(self, q):
        """Sensitivities ``delta[l]`` = dg/dh of the squared network, arrays (T, H_l)."""
        A, R, O, _, _ = self._blocks(q)
        T = self.T
        seed = self._out_mask()[:, None] * O.sum(axis=0)[None, :]  # O^T 1 at output times
        deltas = [None] * self.n_layers
        for l in range(self.n_layers - 1, -1, -1):
            d = np.empty((T, self.hidden[l]))
            engine.rnn_sq_sweep(R[l], seed, seed, d, d, False, True)
            deltas[l] = d
            if l:
                seed = np.ascontiguousarray(d @ A[l])  # A_l^T delta^l_t, as rows
        self._check_finite(deltas, "delta")
        return deltas

    @staticmethod
    def _check_finite(arrays, name):
        for l, arr in enumerate(arrays):
            if not np.isfinite(arr).all():
                t = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
                what = "gamma^2" if name == "h" else "the output sensitivity delta"
                raise PathOverflowError(
                    f"{what} overflowed float64 in the squared network: {name} of layer {l} "
                    f"at time step {t + 1}; scale the weights down (paths grow like "
                    f"rho(W_rec * W_rec)**T)")


    @staticmethod
    def _kappa2_rec(R, h, delta, method="recursive"):
        r"""Exact :math:`\kappa^{(2)}` of one layer's :math:`W_{rec}` (0-based time :math:`\tau`).

        The edges of :math:`W_{rec}[j,k]` are :math:`e_\tau = h_{\tau-1}[k] \to h_\tau[j]`,
        :math:`\tau = 1..T-1`.  A pair :math:`e_\tau` before :math:`e_{\tau'}`,
        :math:`\tau' = \tau + s + 1`, is joined by the in-layer paths
        :math:`h_\tau[j] \leadsto h_{\tau+s}[k]`, whose squared-weight sum is
        :math:`(R^s)[k, j]`; the pair contributes
        :math:`h_{\tau-1}[k] (R^s)[k,j] \delta_{\tau+s+1}[j]`.  With :math:`u = \tau - 1`,

        .. math::

            \kappa^{(2)}[j,k] = 4 R[j,k]\, S[j,k], \qquad
            S[j,k] = \sum_{u=0}^{T-3} \sum_{s=0}^{T-3-u} h_u[k]\, (R^s)[k,j]\,
                     \delta_{u+s+2}[j].

        ``method="recursive"`` (default) evaluates this recursion in blocks of steps
        (:meth:`_kappa2_blocked`: :math:`b + 2T/b` matrix products instead of :math:`T`);
        ``method="stepwise"`` runs it one step at a time, as follows: the inner sum is
        :math:`W_u[k,j] = \sum_s (R^s)[k,j] \delta_{u+s+2}[j]`, which obeys
        :math:`W_u = R\, W_{u+1} + \mathrm{diag}(\delta_{u+2})`, :math:`W_{T-3} =
        \mathrm{diag}(\delta_{T-1})`; so :math:`S^\top = \sum_u \mathrm{diag}(h_u) W_u`
        costs :math:`T` products of :math:`H \times H` matrices, :math:`O(T H^3)`, and no
        lagged sums at all.  Every term is :math:`\ge 0`, so the result has the
        elementwise relative accuracy of a sum of positive numbers.

        ``method="lagged"``: the lagged form, :math:`S = \sum_s (R^s)^\top \odot C_s`
        with the lagged sums :math:`C_s = \sum_u \delta_{u+s+2} h_u^\top` by one matrix
        product per lag: :math:`O(T H^3 + T^2 H^2)`.

        ``method="fft"``: the lagged sums as cross-correlations by FFT,
        :math:`O(H^2 T \log T)` for that part (memory :math:`\approx 24 T H^2` bytes).  Its
        error is absolute, about machine epsilon times the largest :math:`C_s`, so small
        entries could lose relative accuracy; every result is therefore certified entry by
        entry against an error bound (:meth:`_fft_certified`), and when any entry could be
        off by more than :data:`FFT_RTOL` relative (weights spread over many decades, say)
        the exact ``"recursive"`` sum is returned instead.  So every method is exact to
        :data:`FFT_RTOL` per entry on every input.
        """
        T, H = h.shape
        if T < 3:
            return np.zeros((H, H))
        if method == "recursive":
            return RNN._kappa2_blocked(R, h, delta)
        if method == "stepwise":
            W = np.diag(delta[T - 1])
            St = h[T - 3][:, None] * W
            for u in range(T - 4, -1, -1):
                W = R @ W
                W[np.diag_indices(H)] += delta[u + 2]
                St += h[u][:, None] * W
            return 4.0 * R * St.T
        if method == "lagged":
            lagged = (delta[s + 2:].T @ h[:T - 2 - s] for s in range(T - 2))
        elif method == "fft":
            n = 2 * T
            Fd = np.fft.rfft(delta, n, axis=0)
            Fh = np.fft.rfft(h, n, axis=0)
            corr = np.fft.irfft(Fd[:, :, None] * np.conj(Fh[:, None, :]), n, axis=0)
            lagged = (corr[s + 2] for s in range(T - 2))  # corr[L][j,k] = sum_u d_{u+L}[j] h_u[k]
        else:
            raise ValueError(f"method must be 'recursive', 'stepwise', 'lagged' or 'fft', "
                             f"got {method!r}")
        total = np.zeros((H, H))
        power = np.eye(H)  # R^s
        psum = np.zeros((H, H))
        for C in lagged:
            total += power.T * C
            psum += power.T
            power = power @ R
        if method == "fft" and not RNN._fft_certified(total, psum, h, delta, n):
            # the FFT's error is absolute (about eps * |delta_j| |h_k| per lag); where the
            # entries span a wide dynamic range it swamps the small ones: use the exact sum
            return RNN._kappa2_rec(R, h, delta, "recursive")
        return 4.0 * R * total

    @staticmethod
    def _kappa2_block(T, H):
        """Block length of :meth:`_kappa2_blocked` minimising its multiply-adds."""
        n = T - 2
        best, best_cost = 1, np.inf
        for b in range(1, min(n, 256) + 1):
            nblk = -(-n // b)
            cost = H ** 3 * (b + 2 * nblk) + n * b * H * H / 2 + 2 * n * H * H
            if cost < best_cost:
                best, best_cost = b, cost
        return best

    @staticmethod
    def _kappa2_blocked(R, h, delta, b=None):
        r"""The ``"recursive"`` sum :math:`S^\top = \sum_u \mathrm{diag}(h_u) W_u` in blocks of
        :math:`b` steps, with matrix-matrix products of full size.

        Unrolling the recursion over a block :math:`u = a .. a+b-1` (:math:`n = T - 2`
        values of :math:`u`; :math:`W_m = 0` for :math:`m \ge n`),

        .. math::

            W_u = R^{a+b-u} W_{a+b} + \sum_{s=0}^{a+b-1-u} R^s D_{u+s+2},

        so :math:`S^\top = \sum_{blocks} P_a W_{a+b} + \sum_{s<b} R^s \odot G_s` with
        :math:`P_a = \sum_{u \in block} \mathrm{diag}(h_u) R^{a+b-u}` and the in-block
        lagged sums :math:`G_s = \sum h_u \delta_{u+s+2}^\top` over the :math:`u` of
        every block with :math:`u + s \le a + b - 1`; the block boundaries follow from
        :math:`W_a = R^b W_{a+b} + \sum_{s<b} R^s D_{a+s+2}`.  That is :math:`b + 2n/b`
        products of :math:`H \times H` matrices (the :math:`\sum_a P_a W_{a+b}` as one
        product of :math:`H \times (n/b) H` by :math:`(n/b) H \times H`) and :math:`b`
        lagged sums of :math:`n H^2` each, against :math:`n` products step by step.  Every
        term is :math:`\ge 0`, so the result keeps the elementwise relative accuracy of a
        sum of positive numbers.
        """
        T, H = h.shape
        n = T - 2
        if b is None:
            b = RNN._kappa2_block(T, H)
        nblk = -(-n // b)
        Pow = np.empty((b + 1, H, H))
        Pow[0] = np.eye(H)
        Pow[1] = R
        for s in range(2, b + 1):
            np.matmul(R, Pow[s - 1], out=Pow[s])
        h = np.ascontiguousarray(h)
        delta = np.ascontiguousarray(delta)
        P = np.empty((H, nblk, H))
        Loc = np.empty((nblk, H, H))
        engine.rnn_block_sums(Pow, h, delta, b, n, P, Loc)
        # block boundaries W_{a+b}, from the last block (W = 0 beyond n) to the first
        Wb = np.empty((nblk, H, H))
        Wb[nblk - 1] = 0.0
        if nblk > 1:
            Wb[nblk - 2] = Loc[nblk - 1]
            for blk in range(nblk - 2, 0, -1):
                np.matmul(Pow[b], Wb[blk], out=Wb[blk - 1])
                Wb[blk - 1] += Loc[blk]
        St = P.reshape(H, nblk * H) @ Wb.reshape(nblk * H, H)
        u = np.arange(n)
        r = u % b
        for s in range(min(b, n)):
            us = u[(r + s <= b - 1) & (u + s <= n - 1)]
            G = h[us].T @ delta[us + s + 2]
            St += Pow[s] * G
        return 4.0 * R * St.T

    @staticmethod
    def _fft_certified(total, psum, h, delta, n):
        r"""Whether every FFT entry is within :data:`FFT_RTOL` of the exact sum.

        A cross-correlation by FFT of length :math:`n` has an absolute error of at most
        about :math:`c\, \epsilon \log_2 n\, \|\delta_{\cdot j}\|_2 \|h_{\cdot k}\|_2`
        per lag (taken here with a generous :math:`c = 8`); summed against
        :math:`(R^s)^\top \ge 0` that bounds each entry's error by that factor times
        :math:`\sum_s (R^s)^\top`.  Every exact entry is a sum of non-negative terms, so
        the FFT result is accepted only where the bound is below ``FFT_RTOL`` times the
        entry's certified lower bound.
        """
        eps = np.finfo(np.float64).eps
        with np.errstate(over="ignore", invalid="ignore"):
            nd = np.sqrt(np.einsum("tj,tj->j", delta, delta))
            nh = np.sqrt(np.einsum("tk,tk->k", h, h))
            bound = 8.0 * eps * np.log2(n) * nd[:, None] * nh[None, :] * psum
            ok = np.isfinite(total).all() and np.isfinite(bound).all() and bool(
                np.all(bound <= FFT_RTOL * (total - bound)))
        return ok

    def _gamma2_from(self, q, hs):
        _, _, O, _, a_out = self._blocks(q)
        out_mask = self._out_mask()
        gamma2 = float(out_mask @ hs[-1] @ O.sum(axis=0) + out_mask.sum() * a_out.sum())
        if not np.isfinite(gamma2):
            raise PathOverflowError("gamma^2 overflowed float64 in the sum over the outputs; "
                                    "scale the weights down")
        return gamma2

    def gamma2(self, p):
        r""":math:`\gamma^2(p)` (eqs. 2-3) by the dense squared network: one forward sweep."""
        p = as_params(p, self.n_params)
        q = geometry._setup(self.graph, p)
        if not np.isfinite(q).all():
            return geometry.gamma2(self.graph, p)
        with np.errstate(under="ignore"):
            if geometry._squares_underflow(p, q):   # a square below float64: the
                return geometry.gamma2(self.graph, p)   # generic engine's scaled rerun
        try:
            with np.errstate(over="ignore", invalid="ignore"), \
                    _threads.for_size(self._work(), _threads.SEQUENTIAL_WORK):
                hs = self._squared_forward(q)
                if min((float(a.min()) for a in hs if a.size), default=1.0) < geometry._TINY:
                    return geometry.gamma2(self.graph, p)   # a value below the normal range
                return self._gamma2_from(q, hs)
        except PathOverflowError as dense_error:
            try:
                return geometry.gamma2(self.graph, p)
            except PathOverflowError:
                raise dense_error from None

    def path_quantities(self, p, with_kappa2=True, method="recursive"):
        r""":math:`\gamma^2, \kappa^{(1)}, \kappa^{(2)}, \kappa` from the dense squared network.

        Equal to ``pathgeom.path_quantities(self.graph, p)`` to rounding (tested), in
        :math:`O(d T H^2)` for :math:`\gamma^2, \kappa^{(1)}` and :math:`O(d T H^3)` for
        the exact :math:`\kappa^{(2)}` of every :math:`W_{rec}` (the only blocks where it
        can be non-zero: every other block's edges never share a path, since paths only go
        up layers and forward in time and each output ends its path).  ``method`` selects
        the :math:`W_{rec}` algorithm (see :meth:`_kappa2_rec`: ``"recursive"``,
        ``"stepwise"``, ``"lagged"`` or ``"fft"``).
        """
        p = as_params(p, self.n_params)
        with_kappa2 = check_bool(with_kappa2, "with_kappa2")
        if method not in ("recursive", "stepwise", "lagged", "fft"):
            raise ValueError(f"method must be 'recursive', 'stepwise', 'lagged' or 'fft', "
                             f"got {method!r}")
        q = geometry._setup(self.graph, p)
        if not np.isfinite(q).all():   # a weight whose square overflows: the generic
            return geometry.path_quantities(self.graph, p, with_kappa2)  # engine decides
        with np.errstate(under="ignore"):
            if geometry._squares_underflow(p, q):   # a square below float64: the
                return geometry.path_quantities(self.graph, p, with_kappa2)  # scaled rerun
        try:
            with _threads.for_size(self._work(), _threads.SEQUENTIAL_WORK):
                return self._path_quantities(p, q, with_kappa2, method)
        except _Underflow:              # a value below the normal range: the generic
            return geometry.path_quantities(self.graph, p, with_kappa2)  # engine decides
        except PathOverflowError as dense_error:   # may be an intermediate that only
            try:                                   # meets zero weights
                return geometry.path_quantities(self.graph, p, with_kappa2)
            except PathOverflowError:
                raise dense_error from None        # names the layer and time step

    def _path_quantities(self, p, q, with_kappa2, method):
        with np.errstate(over="ignore", invalid="ignore"):  # checked: PathOverflowError
            hs, deltas = self._squared_sweeps(q)
            gamma2 = self._gamma2_from(q, hs)
            self._check_finite(deltas, "delta")
            lo_h = min((float(a.min()) for a in hs if a.size), default=1.0)
            lo_d = min((float(a.min()) for a in deltas if a.size), default=1.0)
            if min(lo_h, lo_d, lo_h * lo_d) < geometry._TINY:
                raise _Underflow   # a node value, sensitivity or product of them may be lost
        _, R, _, _, _ = self._blocks(q)
        out_mask = self._out_mask()
        L = self.layout
        k1 = np.zeros(self.n_params)
        with np.errstate(over="ignore", invalid="ignore"):
            for l in range(self.n_layers):
                below = np.ones((self.T, self.n_in)) if l == 0 else hs[l - 1]
                k1[L.slice("W_in", l)] = (deltas[l].T @ below).ravel()
                k1[L.slice("W_rec", l)] = (deltas[l][1:].T @ hs[l][:-1]).ravel()
                if self.bias:
                    k1[L.slice("b", l)] = deltas[l].sum(axis=0)
        k1[L.slice("W_out")] = np.tile(out_mask @ hs[-1], self.n_out)
        if self.bias:
            k1[L.slice("b_out")] = out_mask.sum()
        if not np.isfinite(k1).all():
            i = int(np.flatnonzero(~np.isfinite(k1))[0])
            raise PathOverflowError(f"kappa1[{i}] overflowed float64; scale the weights down")
        if not with_kappa2:
            return geometry.PathQuantities(gamma2, k1, None, None)
        k2 = np.zeros(self.n_params)
        with np.errstate(over="ignore", invalid="ignore"):
            for l in range(self.n_layers):
                k2[L.slice("W_rec", l)] = self._kappa2_rec(R[l], hs[l], deltas[l],
                                                           method).ravel()
        if self.T >= 3:   # a tangent value may have been subnormal (see geometry's
            # _fix_kappa2_underflow): entries below this floor go to the generic engine
            dmax = max((float(d.max()) for d in deltas if d.size), default=0.0)
            n_edges = self.T * sum((a + b) * b for a, b in zip((self.n_in,) + self.hidden,
                                                              self.hidden))
            floor = max(geometry._TINY, 2.0 ** -1023 * n_edges * (self.T * self.n_layers + 2)
                        * dmax)   # 4 * 2**-1075 * |E| * (L + 1) * max delta * 2**50
            for l in range(self.n_layers):
                sl = L.slice("W_rec", l)
                if ((np.abs(k2[sl]) < floor) & (p[sl] != 0)).any():
                    raise _Underflow
        k = k1 + k2
        if not np.isfinite(k).all():
            raise PathOverflowError("kappa2 overflowed float64; scale the weights down")
        return geometry.PathQuantities(gamma2, k1, k2, k)

    # ------------------------------------------------------------------ rescaling (Theorem 1)

    def pack(self, **arrays):
        """Flatten named blocks into ``p``; for a one-layer RNN ``W_in``, ``W_rec`` and ``b``
        may be given as bare arrays instead of one-element lists."""
        if self.n_layers == 1:
            for name in ("W_in", "W_rec", "b"):
                if name in arrays and np.ndim(arrays[name]) == (1 if name == "b" else 2):
                    arrays[name] = [arrays[name]]
        return self.layout.pack(**arrays)

    def _check_alpha(self, alpha):
        if self.n_layers == 1 and np.ndim(alpha) == 1:
            alpha = [alpha]
        if len(alpha) != self.n_layers:
            raise ValueError(f"alpha must hold one array per hidden layer ({self.n_layers}), "
                             f"got {len(alpha)}")
        out = []
        for l, (a, H) in enumerate(zip(alpha, self.hidden)):
            a = as_real_array(a, f"alpha[{l}]")
            if a.shape != (H,):
                raise ValueError(f"alpha[{l}] has shape {a.shape}, expected ({H},)")
            if not (np.isfinite(a).all() and (a > 0).all()):
                raise ValueError(f"alpha[{l}] must be finite and > 0")
            out.append(a)
        return out

    def rescale(self, p, alpha):
        r"""Deprecated name of :meth:`rescale_units` (``pathgeom.rescale(g, p, beta)`` takes a
        node-wise :math:`\beta` over the graph; this takes one factor per hidden unit)."""
        warnings.warn("RNN.rescale(p, alpha) is deprecated: use RNN.rescale_units(p, alpha) "
                      "(pathgeom.rescale(g, p, beta) is the graph-level, node-wise form)",
                      DeprecationWarning, stacklevel=2)
        return self.rescale_units(p, alpha)

    def rescale_units(self, p, alpha):
        r"""Theorem 1's rescaling :math:`T_\alpha(p)`: the same function, new parameters.

        For :math:`\alpha^l_j > 0` (a list of one array per hidden layer, or a bare array for
        a one-layer RNN; :math:`\alpha^0 \equiv 1`):
        :math:`W^l_{in}[j,k] \leftarrow \alpha^l_j / \alpha^{l-1}_k\, W^l_{in}[j,k]`,
        :math:`W^l_{rec}[j,k] \leftarrow \alpha^l_j / \alpha^l_k\, W^l_{rec}[j,k]`,
        :math:`W_{out}[o,k] \leftarrow W_{out}[o,k] / \alpha^{d-1}_k`, and biases
        :math:`b^l_j \leftarrow \alpha^l_j b^l_j`.  The graph view is the node-wise rescaling
        :meth:`beta` (every copy of unit :math:`j` of layer :math:`l` over time gets
        :math:`\alpha^l_j`).

        Examples
        --------
        >>> import numpy as np, pathgeom
        >>> net = pathgeom.rnn(1, [3, 2], 1, T=5)
        >>> rng = np.random.default_rng(0)
        >>> p = net.init(rng, "uniform", scale=0.5)
        >>> p2 = net.rescale_units(p, [rng.uniform(0.5, 2, 3), rng.uniform(0.5, 2, 2)])
        >>> X = rng.normal(size=(4, 5, 1))
        >>> np.allclose(net.forward(p2, X), net.forward(p, X)), bool(np.isclose(net.gamma2(p2), net.gamma2(p)))
        (True, True)
        """
        p = as_params(p, self.n_params)
        alpha = self._check_alpha(alpha)
        blocks = self.unpack(p)
        prev = np.ones(self.n_in)
        for l, a in enumerate(alpha):
            blocks["W_in"][l] = a[:, None] / prev[None, :] * blocks["W_in"][l]
            if self.T > 1:  # with T = 1, W_rec is on no edge: the graph view leaves it alone
                blocks["W_rec"][l] = a[:, None] / a[None, :] * blocks["W_rec"][l]
            if self.bias:
                blocks["b"][l] = a * blocks["b"][l]
            prev = a
        blocks["W_out"] = blocks["W_out"] / prev[None, :]
        return self.pack(**blocks)

    def beta(self, alpha):
        r"""The node-wise rescaling :math:`\beta` (over ``self.graph.nodes``) of :meth:`rescale_units`.

        :math:`\beta = \alpha^l_j` on unit :math:`j` of layer :math:`l` at every time,
        1 on inputs, the bias node and outputs.
        """
        alpha = self._check_alpha(alpha)
        beta_by_id = np.ones(self.graph.n_nodes)
        for l, a in enumerate(alpha):
            base = self._arrays["hidden_base"][l]
            beta_by_id[base:base + self.T * self.hidden[l]] = np.tile(a, self.T)
        return beta_by_id[np.asarray(self.graph.nodes)]
