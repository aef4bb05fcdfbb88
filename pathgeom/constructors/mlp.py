r"""Fully connected ReLU networks (multilayer perceptrons) as graphs: no weight sharing at all.

With ``sizes = [n_0, n_1, ..., n_L]``,

.. math::

    h^0 = x, \qquad h^l = \mathrm{relu}(W^{l-1} h^{l-1} \,[+\, b^{l-1}]) \ (0 < l < L),
    \qquad y = W^{L-1} h^{L-1} \,[+\, b^{L-1}],

``W[l]`` of shape ``(n_(l+1), n_l)`` (paper, Table 1).  Every edge has its own parameter,
so :math:`|E_i| = 1` and the depth certificate gives :math:`\kappa^{(2)} \equiv 0`
trivially; :math:`\kappa = \kappa^{(1)}`.

Graph node ids (= positions in ``graph.nodes``): the ``n_0`` inputs, then (with
``bias=True``) the bias node, the last input, carrying 1; then each layer's units in order;
the ``n_L`` outputs last.  The engine is :class:`pathgeom.constructors.cnn.FeedForward`,
shared with :func:`pathgeom.constructors.cnn.cnn`.
"""

from ._feedforward import FeedForward, _int_at_least, _Stage

__all__ = ["MLP", "mlp"]


class MLP(FeedForward):
    """A multilayer perceptron built by :func:`mlp`.

    Parameter blocks (arguments of :meth:`pack`, keys of :meth:`unpack`): ``W``, a list
    of ``len(sizes) - 1`` matrices, ``W[l]`` of shape ``(sizes[l+1], sizes[l])`` (the last
    one is the output layer); with ``bias=True`` also ``b``, a list of vectors
    ``b[l]`` of shape ``(sizes[l+1],)``.  In ``p``: ``W[0], ..., W[L-1]`` then
    ``b[0], ..., b[L-1]``, each row-major.
    """

    def __init__(self, sizes, bias):
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError(f"sizes must be a list [n_in, h_1, ..., n_out], got "
                             f"{sizes!r}") from None
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output width "
                             f"[n_in, ..., n_out], got {sizes!r}")
        self.sizes = tuple(_int_at_least(n, f"sizes[{k}]", 1) for k, n in enumerate(sizes))
        L = len(self.sizes) - 1
        stages = [_Stage(False, (a,), (b,), (), (), (), l < L - 1)
                  for l, (a, b) in enumerate(zip(self.sizes, self.sizes[1:]))]
        super().__init__((self.sizes[0],), stages, bias,
                         [("W", l) for l in range(L)], [("b", l) for l in range(L)])

    def __repr__(self):
        return f"MLP(sizes={list(self.sizes)}, bias={self.bias})"


def mlp(sizes, bias=False):
    r"""A fully connected ReLU network as a graph, with its dense twin.

    Parameters
    ----------
    sizes : sequence of int
        ``[n_in, h_1, ..., n_out]``: ReLU on the hidden layers, linear output.
    bias : bool, default False
        One bias input node (the last input, carrying 1) feeding every hidden unit and
        output through its own parameter.

    Returns
    -------
    MLP
        ``.graph`` (built when first accessed), ``.layout``, ``.pack(W=[...], b=[...])`` /
        ``.unpack``, ``.init``, dense ``.forward`` / ``.backward``, ``.gamma2``, the other
        path quantities and ``.path_norm`` (dense passes, no graph needed).

    Examples
    --------
    >>> import numpy as np
    >>> from pathgeom.constructors.mlp import mlp
    >>> net = mlp([2, 2, 1])
    >>> net.graph
    SharedGraph(n_nodes=5, n_edges=6, n_params=6, n_inputs=2, n_outputs=1)
    >>> p = net.pack(W=[[[1.0, 2.0], [3.0, -4.0]], [[1.0, 1.0]]])
    >>> net.forward(p, [[1.0, 1.0]])       # relu(3) + relu(-1)
    array([[3.]])
    >>> net.gamma2(p)                      # sum over the 4 paths of the squared weights
    30.0
    """
    return MLP(sizes, bias)
