"""Reading an ONNX file: checks on the path and size, folding BatchNorms, the parameters.

* :func:`load` opens a path, file object or ``ModelProto`` with clear errors (missing file,
  directory, empty or unparsable file).
* :func:`fold_gemm_scalars` multiplies each Gemm's ``alpha`` into its weight and ``beta``
  into its bias: new initializers ``"<B>*<alpha>"`` and ``"<C>*<beta>"`` (the edge weights
  are those products).
* :func:`fold_batchnorms` rewrites ``Conv``/``Gemm`` followed by ``BatchNormalization``
  (evaluation mode) into one layer whose folded weight and bias are new initializers named
  ``"<W>*<bn>"`` and ``"<B>*<bn>"`` (or ``"<bn>.shift"`` when the layer had no bias), where
  ``<bn>`` is the BatchNorm's scale initializer's name without a trailing ``.weight``
  (``"layer1.0.bn1"`` for torchvision).
* :func:`read_parameters` makes every element of a floating-point initializer one
  parameter, and finds initializers that are exact copies or transposes of another
  (a warning names them; ``tie=True`` makes them one block of parameters when the match is
  no coincidence, see :func:`distinctive`, and not ambiguous; a mapping ties what it names).
"""

import os
import warnings

import numpy as np

from ._base import _onnx, _Params


def load(model):
    """The ``onnx.ModelProto`` of ``model`` (a path, a binary file object or a model),
    checked by :func:`pathgeom._files.check_onnx_model` (duplicate initializers, inputs
    nothing provides, sizes); a path by :func:`pathgeom._files.parse_onnx_file` (a GraphError
    naming the file for a missing, empty, truncated or foreign file, a directory, a
    symlink, external data outside the model's directory)."""
    from ..._files import check_onnx_model, parse_onnx_file
    return check_onnx_model(_load(model, parse_onnx_file))


def _load(model, parse_file):
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if hasattr(model, "read"):
        try:
            return onnx.load(model)
        except Exception as exc:  # protobuf raises its own DecodeError
            raise ValueError(f"the file object does not hold an ONNX model: {exc}") from exc
    if not isinstance(model, (str, bytes, os.PathLike)):
        raise TypeError(f"from_onnx takes a path, a binary file object or an "
                        f"onnx.ModelProto, got {type(model).__name__}")
    return parse_file(os.fsdecode(model))


def _uses(graph):
    uses = {}
    for node in graph.node:
        for name in node.input:
            if name:
                uses[name] = uses.get(name, 0) + 1
    for out in graph.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    return uses


def _bn_name(scale_name):
    return scale_name[:-len(".weight")] if scale_name.endswith(".weight") else scale_name


def fold_batchnorms(model):
    """A copy of ``model`` with every foldable BatchNorm folded into its Conv/Gemm.

    Returns ``(model, folded)``, ``folded`` a list of ``(bn, weight_name, bias_name)``.
    A BatchNorm is folded when it reads the output of a Conv or Gemm (alpha = beta = 1)
    that nothing else reads, and that layer's weight and bias initializers are used by it
    only (folding a shared weight would untie it).  Others stay, and become linear units
    with fixed per-channel weights.
    """
    onnx = _onnx()
    from onnx import helper, numpy_helper
    g = model.graph
    if not any(n.op_type == "BatchNormalization" for n in g.node):
        return model, []
    inits = {t.name: t for t in g.initializer}
    uses = _uses(g)
    producer = {o: n for n in g.node for o in n.output}
    replace, remove_nodes, drop_inits, folded = {}, set(), set(), []
    new_inits = {}                 # name of an old initializer -> list of new tensors
    rename = {}
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.input) < 5:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
        if attrs.get("training_mode", 0) or any(o and uses.get(o) for o in bn.output[1:]):
            continue
        layer = producer.get(bn.input[0])
        if layer is None or layer.op_type not in ("Conv", "Gemm") or \
                uses.get(bn.input[0], 0) != 1 or id(layer) in replace:
            continue
        if any(name not in inits for name in bn.input[1:5]):
            continue
        lattrs = {a.name: helper.get_attribute_value(a) for a in layer.attribute}
        if layer.op_type == "Gemm" and (lattrs.get("alpha", 1.0) != 1.0 or
                                        lattrs.get("beta", 1.0) != 1.0 or
                                        lattrs.get("transA", 0)):
            continue
        W_name = layer.input[1]
        B_name = layer.input[2] if len(layer.input) > 2 and layer.input[2] else None
        if W_name not in inits or uses.get(W_name) != 1 or \
                (B_name is not None and (B_name not in inits or uses.get(B_name) != 1)):
            continue
        W = numpy_helper.to_array(inits[W_name]).astype(np.float64)
        if not np.issubdtype(numpy_helper.to_array(inits[W_name]).dtype, np.floating):
            continue
        scale, shift, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64)
                                   for n in bn.input[1:5])
        a = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
        b = shift - a * mean
        if layer.op_type == "Conv":
            W2 = W * a.reshape((-1,) + (1,) * (W.ndim - 1))
        elif lattrs.get("transB", 0):
            W2 = W * a[:, None]
        else:
            W2 = W * a[None, :]
        name = _bn_name(bn.input[1])
        w_new = f"{W_name}*{name}"
        tensors = [numpy_helper.from_array(W2, w_new)]
        if B_name is not None:
            B = numpy_helper.to_array(inits[B_name]).astype(np.float64)
            b_new = f"{B_name}*{name}"
            new_inits[B_name] = [numpy_helper.from_array(a * B + b, b_new)]
            drop_inits.add(B_name)
        else:
            b_new = f"{name}.shift"
            tensors.append(numpy_helper.from_array(b, b_new))
        new_inits[W_name] = tensors
        drop_inits.add(W_name)
        for n in bn.input[1:5]:
            if uses.get(n) == 1:
                drop_inits.add(n)
        inputs = [layer.input[0], w_new, b_new]
        replace[id(layer)] = (inputs, bn.output[0])
        remove_nodes.add(id(bn))
        rename[bn.input[0]] = bn.output[0]
        folded.append((name, w_new, b_new))
    if not folded:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for node in g.node:
        if id(node) in remove_nodes:
            continue
        new = out.graph.node.add()
        new.CopyFrom(node)
        if id(node) in replace:
            inputs, output = replace[id(node)]
            del new.input[:]
            new.input.extend(inputs)
            new.output[0] = output
    del out.graph.initializer[:]
    for t in g.initializer:
        if t.name in new_inits:
            out.graph.initializer.extend(new_inits[t.name])
        if t.name not in drop_inits:
            out.graph.initializer.add().CopyFrom(t)
    return out, folded


def _label(node):
    return repr(node.name) if node.name else f"producing {node.output[0]!r}"


def fold_gemm_scalars(model):
    r"""A copy of ``model`` with each Gemm's ``alpha`` and ``beta`` folded into its weights.

    ``Y = alpha * A @ B' + beta * C``: every edge of the Gemm carries ``alpha * B[k, m]`` and
    every bias edge ``beta * C[m]``, so the parameters are those products.  A floating-point
    initializer ``B`` read by Gemms with ``alpha != 1`` becomes the initializer
    ``"<B>*<alpha>"`` (e.g. ``"W*0.5"``) holding ``alpha * B``, and ``C`` likewise
    ``"<C>*<beta>"``; the Gemms then have ``alpha = beta = 1``.  Returns ``(model,
    scaled)``, ``scaled`` a list of ``(initializer, factor, new_name)``.

    An initializer read elsewhere with another factor (another alpha, a MatMul, as C with
    another beta) cannot be scaled without untying its uses: a GraphError says so.  A B or
    C that is not an initializer read directly is left to the Gemm rule.
    """
    onnx = _onnx()
    from onnx import helper, numpy_helper
    from ..._errors import GraphError
    g = model.graph

    def factors(node):
        if node.op_type != "Gemm":
            return {}
        at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        out = {1: float(at.get("alpha", 1.0))}
        if len(node.input) > 2 and node.input[2]:
            out[2] = float(at.get("beta", 1.0))
        return out

    if not any(f != 1.0 for n in g.node for f in factors(n).values()):
        return model, []
    inits = {t.name: t for t in g.initializer}
    reads = {}                                # initializer -> [(node, slot, factor)]
    for node in g.node:
        fs = factors(node)
        for k, name in enumerate(node.input):
            if name in inits:
                reads.setdefault(name, []).append((node, k, fs.get(k, 1.0)))
    scale = {}
    for name, rs in reads.items():
        wanted = {f for _, _, f in rs}
        if wanted == {1.0} or not np.issubdtype(
                helper.tensor_dtype_to_np_dtype(inits[name].data_type), np.floating):
            continue
        if len(wanted) > 1 or any(o.name == name for o in g.output):
            how = ", ".join(
                f"node {_label(n)} ({n.op_type}"
                + (f", {'alpha' if k == 1 else 'beta'}={f:g})" if n.op_type == "Gemm" and
                   k in (1, 2) else ")") for n, k, f in rs)
            raise GraphError(
                f"initializer {name!r} is read with different scale factors: {how}. The "
                f"imported parameters of a Gemm are alpha * B and beta * C (each edge "
                f"carries the product), so one initializer read with two factors would "
                f"be two sets of parameters and lose its tie; give every Gemm that reads "
                f"it the same alpha (or beta), or fold the factors into the initializers "
                f"before export")
        scale[name] = wanted.pop()
    if not scale:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    renamed, scaled = {}, []
    del out.graph.initializer[:]
    for t in g.initializer:
        if t.name in scale:
            f = scale[t.name]
            new_name = f"{t.name}*{f!r}"
            value = f * numpy_helper.to_array(t).astype(np.float64)
            out.graph.initializer.add().CopyFrom(numpy_helper.from_array(value, new_name))
            renamed[t.name] = new_name
            scaled.append((t.name, f, new_name))
        else:
            out.graph.initializer.add().CopyFrom(t)
    kept_inputs = [i for i in g.input if i.name not in renamed]   # initializers listed
    del out.graph.input[:]                                        # as inputs too
    out.graph.input.extend(kept_inputs)
    for node in out.graph.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
        if node.op_type == "Gemm":
            fs = factors(node)
            keep = []
            for a in node.attribute:
                slot = {"alpha": 1, "beta": 2}.get(a.name)
                if slot is not None and slot in fs and slot < len(node.input) and \
                        node.input[slot] in renamed.values():
                    continue                      # folded into the renamed initializer
                keep.append(a)
            del node.attribute[:]
            node.attribute.extend(keep)
    return out, scaled


_CONSTANT_SLOTS = {"BatchNormalization": (1, 2, 3, 4), "Expand": (0,), "RNN": (5,),
                   "Shape": (0,)}


def _constant_inits(graph):
    """Initializers read only where a constant is meant: a BatchNormalization's statistics
    (an unfolded BatchNorm is a fixed per-channel map), an RNN's initial state, the tensor
    an Expand repeats.  They are constants, not parameters."""
    const, other = set(), set()
    for node in graph.node:
        slots = _CONSTANT_SLOTS.get(node.op_type, ())
        for k, name in enumerate(node.input):
            if name:
                (const if k in slots else other).add(name)
    return const - other


def distinctive(a):
    """Whether an exact copy of ``a`` is evidence of a tie rather than a coincidence.

    True when, leaving out its most frequent value (the zeros of a pruned weight), at least
    two values remain and none of them occurs twice: trained or randomly initialised
    weights.  False for arrays built from a few values, which two unrelated initializers
    share by construction: zeros, ones, identity matrices, one-hot rows, sign patterns,
    symmetric matrices (every off-diagonal value twice).
    """
    _, counts = np.unique(np.asarray(a).ravel(), return_counts=True)
    if counts.size < 3:
        return False
    rest = np.delete(counts, int(np.argmax(counts)))
    return bool(np.all(rest == 1))


def find_copies(arrays):
    """Pairs ``(later, earlier, how, doubt)``: initializer ``later`` holds the values of
    ``earlier`` in C order, possibly reshaped (``how == "copy"``), or those of its
    transpose (``"transpose"``, 2-D ``earlier``).

    ``doubt`` is None for a pair that :func:`read_parameters` may tie automatically,
    ``"few values"`` when ``earlier`` is not :func:`distinctive` (equal by coincidence as
    likely as by a tie; for a symmetric matrix, judged on its upper triangle),
    ``"symmetric"`` when ``later`` matches ``earlier`` both as a copy and as the transpose
    (``how`` is then ``"copy"``; the two ties make different entries share a parameter).
    Arrays with a single value (zeros, ones) are not reported.
    """
    names = list(arrays)
    fingerprint = {}
    for name in names:
        a = arrays[name]
        if a.size < 2 or a.min() == a.max():
            continue
        fingerprint.setdefault((a.size, float(a.min()), float(a.max())), []).append(name)
    pairs, taken = [], set()
    for group in fingerprint.values():
        for j, later in enumerate(group):
            if later in taken:
                continue
            b = arrays[later]
            for earlier in group[:j]:
                if earlier in taken:
                    continue
                a = arrays[earlier]
                copy = np.array_equal(a.ravel(), b.ravel())
                transpose = a.ndim == 2 and np.array_equal(a.T.ravel(), b.ravel())
                if not (copy or transpose):
                    continue
                how = "copy" if copy else "transpose"
                symmetric = copy and transpose and min(a.shape) > 1
                # a symmetric matrix holds its upper triangle once and the rest again
                values = a[np.triu_indices(a.shape[0])] if symmetric else a
                doubt = ("few values" if not distinctive(values) else
                         "symmetric" if symmetric else None)
                pairs.append((later, earlier, how, doubt))
                taken.add(later)
                break
    return pairs


def _what(arrays, later, earlier, how):
    if how == "transpose":
        return "the transpose"
    return "a copy" if arrays[later].shape == arrays[earlier].shape else "a reshaped copy"


def _doubt_warning(arrays, later, earlier, how, doubt, auto):
    if doubt == "few values":
        k = np.unique(arrays[earlier]).size
        return (f"initializer {later!r} is {_what(arrays, later, earlier, how)} of initializer "
                f"{earlier!r}, but it is made of {k} distinct values (like an identity "
                f"matrix, a one-hot or sign pattern), so the two may be equal by "
                f"coincidence: not tied{' automatically' if auto else ''}; if the model ties "
                f"them, pass tie_transposes={{{later!r}: ({earlier!r}, {how!r})}}")
    return (f"initializer {later!r} is both a copy and the transpose of initializer "
            f"{earlier!r} ({earlier!r} is symmetric), and the two ties make different "
            f"entries share a parameter: not tied{' automatically' if auto else ''}; say "
            f"which the model means with tie_transposes={{{later!r}: ({earlier!r}, 'copy')}} "
            f"or {{{later!r}: ({earlier!r}, 'transpose')}}")


def _check_tie(arrays, consts, name, entry):
    """``(source, how)`` of an explicit ``tie_transposes`` entry, or None; errors name it."""
    if not isinstance(name, str) or name not in arrays:
        if isinstance(name, str) and name in consts:
            raise ValueError(f"tie_transposes: {name!r} is not a parameter block (an integer "
                             f"initializer or a constant such as a BatchNorm statistic); only "
                             f"floating-point initializers read as weights can be tied")
        known = ", ".join(repr(n) for n in list(arrays)[:8])
        raise ValueError(f"tie_transposes: no floating-point initializer named {name!r} "
                         f"(they are: {known}{', ...' if len(arrays) > 8 else ''}; BatchNorm "
                         f"and Gemm alpha/beta folding rename what they change, see "
                         f"from_onnx's warnings or net.unpack)")
    if entry is None:
        return None
    if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
        raise ValueError(f"tie_transposes[{name!r}] = {entry!r}: expected a pair "
                         f"(source_initializer, 'copy' | 'transpose'), or None to leave "
                         f"{name!r} untied")
    source, how = entry
    if how not in ("copy", "transpose"):
        raise ValueError(f"tie_transposes[{name!r}] = {entry!r}: the second item must be "
                         f"'copy' or 'transpose', got {how!r}")
    if source == name:
        raise ValueError(f"tie_transposes[{name!r}] = {entry!r}: an initializer cannot be "
                         f"tied to itself")
    if not isinstance(source, str) or source not in arrays:
        _check_tie(arrays, consts, source, None)      # raises, naming the source
    a, b = arrays[source], arrays[name]
    if how == "transpose" and a.ndim != 2:
        raise ValueError(f"tie_transposes[{name!r}] = {entry!r}: {source!r} has shape "
                         f"{a.shape}; only a matrix has a transpose")
    if a.size != b.size:
        raise ValueError(f"tie_transposes[{name!r}] = {entry!r}: {name!r} has {b.size} "
                         f"elements {b.shape}, {source!r} has {a.size} {a.shape}")
    src = a.T if how == "transpose" else a
    if not np.array_equal(src.ravel(), b.ravel()):
        gap = float(np.max(np.abs(src.ravel() - b.ravel())))
        raise ValueError(f"tie_transposes[{name!r}] = {entry!r}: the values of {name!r} are "
                         f"not those of {source!r}{' transposed' if how == 'transpose' else ''}"
                         f" (largest difference {gap:.3g}); a tie makes them one set of "
                         f"parameters, which needs equal values")
    return source, how


def read_parameters(model, tie=False):
    """``(p, blocks, values, ties)`` of the model's floating-point initializers.

    ``tie``: False (report copies and transposes), True (tie those :func:`find_copies`
    finds without doubt) or a mapping ``{name: (source, "copy" | "transpose") or None}``
    (what True ties, with these entries added or overriding; None leaves ``name`` untied).

    ``blocks``: name -> (first index, shape) of each parameter block, in initializer
    order; ``values``: name -> ``_Params`` (indices) or a numpy array (constants);
    ``ties``: later name -> (earlier name, "copy" or "transpose") for the tied ones.
    """
    from onnx import numpy_helper
    g = model.graph
    stats = _constant_inits(g)
    arrays, values = {}, {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if np.issubdtype(arr.dtype, np.floating) and init.name not in stats:
            arrays[init.name] = np.asarray(arr, dtype=np.float64)
        else:
            values[init.name] = arr
    explicit = {}
    if not isinstance(tie, bool):
        for name, entry in tie.items():
            explicit[name] = _check_tie(arrays, values, name, entry)
    auto = tie is not False
    ties = {}
    for later, earlier, how, doubt in find_copies(arrays):
        if later in explicit:
            continue
        if doubt is None and auto:
            ties[later] = (earlier, how)
        elif doubt is None:
            warnings.warn(
                f"initializer {later!r} is {_what(arrays, later, earlier, how)} of initializer "
                f"{earlier!r}: if the model ties them (an exporter wrote W and W.t() as two "
                f"tensors), import it with from_onnx(..., tie_transposes=True) (or "
                f"tie_transposes={{{later!r}: ({earlier!r}, {how!r})}}) to make them one set "
                f"of parameters; as two independent sets, kappa2 misses the pairs of edges "
                f"that share a weight", stacklevel=3)
        else:
            warnings.warn(_doubt_warning(arrays, later, earlier, how, doubt, auto),
                          stacklevel=3)
    ties.update({name: e for name, e in explicit.items() if e is not None})
    for name in ties:                      # a chain of ties must end in a parameter block
        seen, at = [name], name
        while at in ties:
            at = ties[at][0]
            if at in seen:
                chain = " -> ".join(repr(n) for n in seen + [at])
                raise ValueError(f"tie_transposes: the ties {chain} form a cycle; tie each "
                                 f"of them to one initializer that stays a parameter block")
            seen.append(at)
    blocks, parts, offset = {}, [], 0
    for name, arr in arrays.items():
        if name in ties:
            continue
        values[name] = _Params(np.arange(offset, offset + arr.size,
                                         dtype=np.int64).reshape(arr.shape))
        blocks[name] = (offset, tuple(arr.shape))
        parts.append(arr.ravel())
        offset += arr.size

    def resolve(name):
        if not isinstance(values.get(name), _Params):
            earlier, how = ties[name]
            idx = resolve(earlier)
            values[name] = _Params((idx if how == "copy" else idx.T).reshape(
                arrays[name].shape).copy())
        return values[name].idx
    for name in ties:
        resolve(name)
    p = np.concatenate(parts) if parts else np.zeros(0)
    return p, blocks, values, ties
