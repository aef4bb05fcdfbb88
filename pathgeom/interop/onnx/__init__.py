r"""Bring your own network: ONNX import (:func:`from_onnx`) and export (:func:`to_onnx`).

:func:`from_onnx` reads an ONNX model (a file or an ``onnx.ModelProto``) and describes the
DAG-ReLU network :math:`\mathcal{N}(G, \pi, p)` of the same function:

* every element of a floating-point **initializer** is one parameter, and an initializer
  used by several nodes is one block of parameters: weight tying is kept exactly;
  integer initializers and ``Constant`` nodes (shapes, axes, indices) are constants;
  initializers that are exact copies or transposes of another are reported (and tied with
  ``tie_transposes=True``);
* a linear operator (Gemm, MatMul, Conv, the RNN operator) creates one node per output
  element, with one edge per (input element, weight) pair; ``Relu`` turns those nodes into
  ReLU units; the model's outputs are the graph's (linear) outputs;
* a bias (Gemm's ``C``, Conv's ``B``, an ``Add`` of an initializer, the RNN operator's
  ``B``) is a set of edges from one **bias input node** fed with 1, the last graph input;
* **fixed weights**: ``MaxPool`` makes max-pooling units (incoming edges of weight 1),
  ``AveragePool``, ``GlobalAveragePool`` and ``ReduceMean`` linear units with edges of
  weight :math:`1/n`, an ``Add`` of two activations (a residual connection) edges of weight
  1, and a ``BatchNormalization`` that follows a Conv or Gemm is folded into it (the folded
  values are the parameters), elsewhere it is a linear unit with a fixed per-channel scale
  and shift;
* Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Identity, Gather, Slice, Split, Concat,
  Cast to a float type, Expand of constants (and Dropout at inference) only relabel units
  or compute constants: they create no node and no edge (a Cast of activations to an
  integer or bool type truncates them and is refused).

The package is laid out by task: :mod:`.reading` (the file, BatchNorm folding, the
parameters), :mod:`.rules` (one rule per operator type, in a table), :mod:`.importer` (the
walk), :mod:`.twin` (the operations' edges and dense passes), :mod:`.network`
(:class:`OnnxNetwork`) and :mod:`.export` (:func:`to_onnx`).

The ``onnx`` package is imported inside the functions only: ``import pathgeom`` never
needs it (install it with ``pip install 'pathgeom[onnx]'``).
"""

from ._base import _ADVICE, _GENERIC_ADVICE, EXPORT_OPSET, MIN_OPSET, _onnx
from .export import to_onnx
from .network import OnnxNetwork

__all__ = ["OnnxNetwork", "from_onnx", "to_onnx"]


def from_onnx(model, tie_transposes=False, batch_axis=None):
    r"""The network of an ONNX model, with its parameters.

    Parameters
    ----------
    model : str, path-like, binary file object or onnx.ModelProto
        An ``.onnx`` file or a loaded model, opset 13 or later.
    tie_transposes : bool or mapping
        Make floating-point initializers that are exact copies or transposes of an earlier
        one the same parameters as that one (an exporter that writes a tied weight ``W``
        and ``W.t()`` as two tensors loses the tie; this restores it, and with it the exact
        :math:`\kappa^{(2)}`).  False (the default): such pairs only raise a warning naming
        both.  True: the pairs found without doubt are tied; a match is in doubt, warned
        about and not tied, when the earlier initializer has few distinct values (leaving
        out its most frequent value, fewer than two values remain or one occurs twice:
        zeros, identity matrices, one-hot or sign patterns, which unrelated tensors share
        by coincidence) or when it is a symmetric matrix that the later one equals both as
        a copy and as the transpose (the two ties share different entries).  Arrays of a
        single value are never reported.  A mapping ``{initializer: (source, "copy" |
        "transpose")}`` does what True does and ties each named initializer to ``source``
        as given (overriding the automatic match; ``None`` instead of a pair leaves it
        untied); each entry is checked (both floating-point initializers, equal values,
        no cycle), and a ValueError names a bad one.  The names are those after folding
        (see the warnings, :meth:`OnnxNetwork.unpack`).
    batch_axis : int or list of int, optional
        The batch axis of the model's input (one per input for several).  By default it is
        the input's one dynamic axis; when every axis has a fixed size (a model exported
        without ``dynamic_axes``), axis 1 for an input read directly by an RNN operator in
        its ``[seq, batch, features]`` layout, else axis 0.  A sequence model unrolled by
        torch's dynamo exporter from ``(seq, batch, features)`` data needs
        ``batch_axis=1``.  The network describes one example and is applied to every
        example of a batch of any size, so no operation may mix examples: a ``Reshape``
        must keep the batch axis first as ``0`` or ``-1``, or as the fixed batch size the
        model was exported for (every input's batch axis of that fixed size); a fixed
        first size with a dynamic batch axis is refused.

    Returns
    -------
    OnnxNetwork
        ``.p`` (float64 values of the floating-point initializers, each element one
        parameter, an initializer used by several nodes one block: tied weights),
        ``.param_names`` (``(initializer, index)`` per parameter; a Gemm's
        :math:`\alpha B` and :math:`\beta C` are the blocks ``"<B>*<alpha>"`` and
        ``"<C>*<beta>"``, listed in ``.scaled``, since each edge carries that product), dense
        ``.forward(X)``, ``.path_quantities()``, ``.path_norm(q=...)``, and ``.graph`` (a
        :class:`~pathgeom.SharedGraph`, built when first used) with ``.graph_inputs(X)``,
        so that ``graph.forward(p, graph_inputs(X))`` equals the model's output reshaped to
        ``(B, -1)``.

    Raises
    ------
    GraphError
        An operator outside pathgeom's class of DAG-ReLU networks (other activations,
        gates, normalisations over features, products of activations), a Reshape that
        mixes examples, a non-zero constant used as a weight, a Cast of activations to an
        integer or bool type, an initializer read by Gemms with different ``alpha`` (its
        uses would untie); the message names the node, its operator and what to do.
    FileNotFoundError, IsADirectoryError, ValueError
        A path that does not lead to a readable ONNX file.
    ValueError
        A bad ``tie_transposes`` entry (unknown initializer, values that differ, a cycle).
    ImportError
        When the optional ``onnx`` package is missing (``pip install 'pathgeom[onnx]'``).

    Warns
    -----
    UserWarning
        An initializer is an exact copy or transpose of another and is not tied (see
        ``tie_transposes``).

    Notes
    -----
    Supported: Gemm (transA/transB; alpha and beta folded into the parameters, see
    ``.scaled``), MatMul (activations times a weight matrix), Add (of a bias, of two
    activations), Relu, Conv (any number of spatial axes; strides, pads, auto_pad,
    dilations, group), MaxPool and AveragePool (kernel, strides, pads, auto_pad, dilations,
    both ``count_include_pad``; ``ceil_mode`` only when it adds no window),
    GlobalAveragePool, ReduceMean (not over the batch axis), BatchNormalization (evaluation
    mode), the RNN operator with ``activations=["Relu"]`` (forward, with or without its bias
    ``B`` (whose two halves ``Wb`` and ``Rb`` are separate parameters), ``initial_h`` absent
    or zero; unrolled with no time-0 nodes like :func:`pathgeom.rnn`), and Flatten, Reshape,
    Squeeze, Unsqueeze, Transpose, Identity, Gather, Slice, Split, Concat, Cast (of
    activations and weights: to float32, float64, float16 or bfloat16 only, read as the
    identity), Expand, Dropout (inference), Shape, Constant and ConstantOfShape where they
    only relabel units or compute constants.

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> from pathgeom.constructors.mlp import mlp
    >>> net = mlp([3, 4, 2], bias=True)
    >>> p = net.init(np.random.default_rng(0), "he")
    >>> onx = pathgeom.from_onnx(pathgeom.to_onnx(net, p))
    >>> onx.graph.n_params == net.n_params, bool(np.array_equal(onx.p, p))
    (True, True)
    >>> X = np.random.default_rng(1).normal(size=(5, 3))
    >>> np.allclose(onx.forward(X), net.forward(p, X))
    True
    >>> bool(np.isclose(onx.gamma2(), net.gamma2(p)))
    True
    """
    _onnx()
    from . import importer, reading, rules
    proto = reading.load(model)
    from collections.abc import Mapping
    if not isinstance(tie_transposes, (bool, Mapping)):
        raise TypeError(f"tie_transposes must be True, False or a mapping {{initializer: "
                        f"(source, 'copy' | 'transpose')}}, got {tie_transposes!r}")
    proto, scaled = reading.fold_gemm_scalars(proto)
    proto, folded = reading.fold_batchnorms(proto)
    p, blocks, values, ties = reading.read_parameters(proto, tie=tie_transposes)
    imp = importer._Importer(_onnx(), proto, p, blocks, values, batch_axis)
    program = imp.run(rules.RULES)
    return OnnxNetwork(program, p, imp.input_names, imp.input_shapes, imp.batch_axes,
                       imp.output_names, imp.output_shapes, imp.bias is not None, blocks,
                       folded, ties, scaled)
