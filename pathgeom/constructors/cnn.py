r"""Convolutional networks as shared-weight graphs: every kernel entry is one parameter.

A CNN is the network of paper Table 1 with weights shared across positions: the edge from
input position :math:`i` of channel :math:`c` to output position :math:`o` of channel
:math:`c'` carries the kernel entry :math:`W[c', c, i - (o s - \text{pad})]`, one parameter
for all positions.  :func:`cnn` builds it from layer specifications (:class:`Conv1d`,
:class:`Conv2d`, :class:`Dense`), ReLU after each, then a linear output layer:

.. math::

    Z^l[c', o] = \sum_{c} \sum_{k} W^l[c', c, k]\, A^{l-1}[c, o s + k - \text{pad}]
                 \;[+\, b^l[c']], \qquad A^l = \mathrm{relu}(Z^l), \qquad
    y = W_{out}\, \mathrm{vec}(A^{L}) \;[+\, b_{out}],

cross-correlation as in the common deep-learning libraries, zero padding (a padded
position is simply not a node: it has no edge), channels first, :math:`\mathrm{vec}` in C
order.  The depth certificate of :func:`pathgeom.kappa2_support` proves
:math:`\kappa^{(2)} \equiv 0`: every edge of one kernel leaves a node of the same layer,
so no input-to-output path holds two of them.

Graph node ids (which are also the node positions in ``graph.nodes``):

* ``0 .. n_x - 1``: the input, C order of ``input_shape``; then, with ``bias=True``, the
  bias node ``n_x`` (the **last** input, carrying 1);
* then each hidden layer's units, C order of its shape ``(C, L)``, ``(C, H, W)`` or
  ``(units,)``; then the ``n_out`` outputs.

:meth:`CNN.layer_nodes` gives the ids of one layer in its shape.  The machinery
(:class:`FeedForward`, in ``constructors/_feedforward.py``) is shared with
:func:`pathgeom.constructors.mlp.mlp`.
"""

import numbers
from dataclasses import dataclass


from ._feedforward import (INIT_SCHEMES, UNIFORM_SCALE, FeedForward,  # noqa: F401
                           _int_at_least, _Stage)

__all__ = ["Conv1d", "Conv2d", "Dense", "CNN", "FeedForward", "cnn"]


# --------------------------------------------------------------------------- layer specs


def _int_tuple(value, n, what, minimum):
    """An int (repeated ``n`` times) or a sequence of ``n`` ints, each >= ``minimum``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (value,) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            values = None
        if values is None or len(values) != n:
            kind = "an int" if n == 1 else f"an int or a pair of ints"
            raise ValueError(f"{what} must be {kind}, got {value!r}")
    return tuple(_int_at_least(v, what, minimum) for v in values)


class _Conv:
    """Shared validation of :class:`Conv1d` and :class:`Conv2d` (``ndim`` spatial axes)."""

    ndim = 0

    def __post_init__(self):
        name = type(self).__name__
        object.__setattr__(self, "out_channels",
                           _int_at_least(self.out_channels, f"{name} out_channels", 1))
        for field, minimum in (("kernel_size", 1), ("stride", 1), ("padding", 0)):
            value = _int_tuple(getattr(self, field), self.ndim, f"{name} {field}", minimum)
            object.__setattr__(self, field, value[0] if self.ndim == 1 else value)
        for k, pad in zip(self._axes()[0], self._axes()[2]):
            if pad >= k:
                raise ValueError(
                    f"{name} padding {self.padding} must be smaller than kernel_size "
                    f"{self.kernel_size} along every axis: with padding >= kernel_size, "
                    f"border outputs would see only zero padding (constant units that "
                    f"break the layered structure); use padding <= kernel_size - 1")

    def _axes(self):
        """``(kernel, stride, padding)`` as tuples with one entry per spatial axis."""
        as_tuple = (lambda v: (v,)) if self.ndim == 1 else tuple
        return as_tuple(self.kernel_size), as_tuple(self.stride), as_tuple(self.padding)


@dataclass(frozen=True)
class Conv1d(_Conv):
    r"""A 1-D convolution layer (cross-correlation, zero padding), followed by ReLU.

    Input ``(C_in, L)``, output ``(out_channels, L_out)`` with
    :math:`L_{out} = \lfloor (L + 2\,\text{padding} - \text{kernel\_size}) / \text{stride}
    \rfloor + 1`; kernel of shape ``(out_channels, C_in, kernel_size)``.

    Parameters
    ----------
    out_channels : int
    kernel_size : int
    stride : int, default 1
    padding : int, default 0
        Zeros on both ends; must be smaller than ``kernel_size``.

    Examples
    --------
    >>> from pathgeom.constructors.cnn import Conv1d
    >>> Conv1d(4, 3, padding=1)
    Conv1d(out_channels=4, kernel_size=3, stride=1, padding=1)
    """

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    ndim = 1


@dataclass(frozen=True)
class Conv2d(_Conv):
    r"""A 2-D convolution layer (cross-correlation, zero padding), followed by ReLU.

    Input ``(C_in, H, W)``, output ``(out_channels, H_out, W_out)`` with, per axis,
    :math:`\lfloor (n + 2\,\text{padding} - \text{kernel}) / \text{stride} \rfloor + 1`;
    kernel of shape ``(out_channels, C_in, kh, kw)``.  ``kernel_size``, ``stride`` and
    ``padding`` are ints or ``(height, width)`` pairs; they are stored as pairs.

    Examples
    --------
    >>> from pathgeom.constructors.cnn import Conv2d
    >>> Conv2d(8, 3, stride=(1, 2))
    Conv2d(out_channels=8, kernel_size=(3, 3), stride=(1, 2), padding=(0, 0))
    """

    out_channels: int
    kernel_size: object
    stride: object = 1
    padding: object = 0
    ndim = 2


@dataclass(frozen=True)
class Dense:
    """A fully connected layer of ``units`` ReLU units; flattens its input in C order.

    Examples
    --------
    >>> from pathgeom.constructors.cnn import Dense
    >>> Dense(16)
    Dense(units=16)
    """

    units: int

    def __post_init__(self):
        object.__setattr__(self, "units", _int_at_least(self.units, "Dense units", 1))


# --------------------------------------------------------------------------- the CNN


class CNN(FeedForward):
    r"""A convolutional ReLU network built by :func:`cnn` (see the module docstring).

    Parameter blocks (arguments of :meth:`pack`, keys of :meth:`unpack`):

    * ``W``: list, one array per hidden layer: a kernel ``(out_channels, C_in, k)`` /
      ``(out_channels, C_in, kh, kw)`` for a convolution, a matrix ``(units, n_prev)`` for
      a dense layer (``n_prev`` the C-order flattened size of its input);
    * ``W_out``: ``(n_out, n_last)``, the linear output layer;
    * with ``bias=True``, ``b``: list with one vector per hidden layer, ``(out_channels,)``
      (one parameter per channel, shared by all its positions) or ``(units,)``; and
      ``b_out``: ``(n_out,)``.

    In ``p``: ``W[0], W[1], ..., W_out`` then ``b[0], ..., b_out``, each row-major.
    """

    def __init__(self, input_shape, layers, n_out, bias):
        self.layers = tuple(layers)
        stages = _stages(input_shape, self.layers, n_out)
        n = len(self.layers)
        super().__init__(input_shape, stages, bias,
                         [("W", k) for k in range(n)] + [("W_out", None)],
                         [("b", k) for k in range(n)] + [("b_out", None)])

    def __repr__(self):
        return (f"CNN(input_shape={self.input_shape}, layers={list(self.layers)}, "
                f"n_out={self.n_out}, bias={self.bias})")


def _stages(input_shape, layers, n_out):
    """Validate a CNN's layer sequence and work out every layer's shapes."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a tuple of positive ints, got "
                         f"{input_shape!r}") from None
    if not shape:
        raise ValueError("input_shape is empty; give (C, L) for Conv1d or (C, H, W) for Conv2d")
    shape = tuple(_int_at_least(n, f"input_shape {input_shape!r}: each entry", 1)
                  for n in shape)
    n_out = _int_at_least(n_out, "n_out", 1)
    if not layers:
        raise ValueError("layers is empty; give at least one Conv1d, Conv2d or Dense layer "
                         "(for a linear model use mlp([n_in, n_out]))")
    stages, seen_dense = [], False
    for k, layer in enumerate(layers):
        where = f"layers[{k}] ({layer!r})"
        if isinstance(layer, _Conv):
            if seen_dense:
                raise ValueError(f"{where} follows a Dense layer; convolutions must come "
                                 f"before every Dense layer")
            if len(shape) != 1 + layer.ndim:
                want = "(C, L)" if layer.ndim == 1 else "(C, H, W)"
                raise ValueError(f"{where} needs an input of shape {want}, got {shape}"
                                 + (" (input_shape)" if k == 0 else " from the layer before"))
            kernel, stride, padding = layer._axes()
            out = tuple((n + 2 * pad - kk) // s + 1
                        for n, kk, s, pad in zip(shape[1:], kernel, stride, padding))
            if min(out) < 1:
                raise ValueError(f"{where} has no output position: its input is {shape} and "
                                 f"the kernel {kernel} does not fit in the padded size "
                                 f"{tuple(n + 2 * pad for n, pad in zip(shape[1:], padding))}; "
                                 f"use a smaller kernel or more padding")
            out = (layer.out_channels,) + out
            stages.append(_Stage(True, shape, out, kernel, stride, padding, True))
        elif isinstance(layer, Dense):
            seen_dense = True
            out = (layer.units,)
            stages.append(_Stage(False, shape, out, (), (), (), True))
        else:
            raise TypeError(f"{where} is not a layer; use Conv1d, Conv2d or Dense")
        shape = out
    stages.append(_Stage(False, shape, (n_out,), (), (), (), False))
    return stages


def cnn(input_shape, layers, n_out, bias=False):
    r"""A convolutional ReLU network as a shared-weight graph, with its dense twin.

    Parameters
    ----------
    input_shape : tuple of int
        Channels first: ``(C, L)`` before a :class:`Conv1d`, ``(C, H, W)`` before a
        :class:`Conv2d` (any shape when the first layer is :class:`Dense`).
    layers : sequence of Conv1d, Conv2d, Dense
        Hidden layers, each followed by ReLU; convolutions first, then dense layers
        (which flatten in C order).
    n_out : int
        Width of the linear output layer.
    bias : bool, default False
        Add one bias input node (the last input, carrying 1) feeding every hidden unit and
        output: one parameter per convolution channel (shared by all its positions), per
        dense unit and per output.

    Returns
    -------
    CNN
        ``.graph`` (a :class:`~pathgeom.SharedGraph`, built when first accessed),
        ``.layout``, ``.pack`` / ``.unpack`` (blocks ``W``, ``W_out``, ``b``, ``b_out``; see
        :class:`CNN`), ``.init``, dense ``.forward`` and ``.backward``, and the path
        quantities (``.path_quantities``, ``.gamma2`` ..., ``.path_norm``) by dense passes
        that never build the graph (see :meth:`FeedForward.path_quantities`).

    Raises
    ------
    ValueError
        A convolution after a dense layer, a convolution whose input has the wrong number
        of axes, a kernel that does not fit (no output position), padding >= kernel size,
        non-positive sizes.

    Examples
    --------
    >>> import numpy as np
    >>> import pathgeom
    >>> from pathgeom.constructors.cnn import cnn, Conv1d, Dense
    >>> net = cnn((1, 5), [Conv1d(2, 3), Dense(3)], n_out=1)
    >>> net.shapes                 # input, Conv1d output (C, L), Dense, outputs
    [(1, 5), (2, 3), (3,), (1,)]
    >>> net.graph
    SharedGraph(n_nodes=15, n_edges=39, n_params=27, n_inputs=5, n_outputs=1)
    >>> pathgeom.kappa2_support(net.graph)   # the depth certificate: kappa2 == 0 exactly
    array([], dtype=int64)
    >>> p = net.init(np.random.default_rng(0), "he")
    >>> X = np.random.default_rng(1).normal(size=(4, 1, 5))
    >>> np.allclose(net.forward(p, X), net.graph.forward(p, X.reshape(4, -1)))
    True
    """
    return CNN(input_shape, layers, n_out, bias)
