"""ResNet-shaped ONNX models written with onnx.helper, and their power twins.

``resnet(...)``: stem Conv (+ optional BatchNorm) - Relu - MaxPool (padded) - stages of
basic residual blocks (conv3x3 - relu - conv3x3, plus the identity or a 1x1 strided
downsample conv, Add, Relu) - GlobalAveragePool - Flatten - Gemm.  ``resnet18()`` has the
layer shapes of torchvision's ResNet-18 (BatchNorms folded into the convolutions' biases).

``power_twin(model, q)``: the model whose summed output on the all-ones input is
``sum over paths of prod |w|^q`` (Gonon et al.'s recipe): every float initializer replaced
by ``|w|^q``, each MaxPool by an all-ones depthwise Conv with the same window, each
average by an all-ones depthwise Conv (or ReduceSum) followed by a product with the
``(1/n)^q`` of each position.  It runs on onnx's float64 reference evaluator.
"""

import copy

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def _tensor(name, value, dtype=np.float64):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


class Builder:
    """A little graph writer: nodes, float64 initializers, int64 constants."""

    def __init__(self, rng, scale=1.0):
        self.rng = rng
        self.nodes, self.inits = [], []
        self.k = 0
        self.scale = scale

    def name(self, stem):
        self.k += 1
        return f"{stem}_{self.k}"

    def weight(self, name, shape, fan_in):
        w = self.rng.normal(size=shape) * np.sqrt(2.0 / fan_in) * self.scale
        self.inits.append(_tensor(name, w))
        return name

    def conv(self, x, c_in, c_out, k, stride=1, pad=0, name=None, bias=True, weights=None):
        name = name or self.name("conv")
        W = weights[0] if weights else self.weight(f"{name}.weight", (c_out, c_in, k, k),
                                                   c_in * k * k)
        ins = [x, W]
        if bias:
            B = weights[1] if weights else self.weight(f"{name}.bias", (c_out,), 4.0)
            ins.append(B)
        out = self.name(name + ".out")
        self.nodes.append(helper.make_node("Conv", ins, [out], name=name, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[pad] * 4))
        return out

    def relu(self, x):
        out = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [out]))
        return out

    def add(self, a, b, name=None):
        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=name or out))
        return out

    def node(self, op, ins, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def model(self, x_shape, y, n_out, opset=17):
        graph = helper.make_graph(
            self.nodes, "resnet",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N"] + list(x_shape))],
            [helper.make_tensor_value_info(y, TensorProto.DOUBLE, ["N", n_out])],
            self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def basic_block(b, x, c_in, c_out, stride, name, weights=None):
    """conv3x3(stride) - relu - conv3x3 (+ 1x1 downsample when the shape changes), Add, Relu."""
    w = weights or {}
    h = b.relu(b.conv(x, c_in, c_out, 3, stride, 1, name=f"{name}.conv1",
                      weights=w.get("conv1")))
    z = b.conv(h, c_out, c_out, 3, 1, 1, name=f"{name}.conv2", weights=w.get("conv2"))
    if stride != 1 or c_in != c_out:
        x = b.conv(x, c_in, c_out, 1, stride, 0, name=f"{name}.downsample")
    return b.relu(b.add(z, x, name=f"{name}.add"))


def resnet(rng, size=16, widths=(4, 8), blocks=(1, 1), stem_k=3, stem_stride=1, n_out=3,
           in_ch=3, stem_bn=False, scale=1.0):
    """A ResNet-shaped model (see the module docstring)."""
    b = Builder(rng, scale)
    stem_bias = not stem_bn
    h = b.conv("x", in_ch, widths[0], stem_k, stem_stride, stem_k // 2, name="conv1",
               bias=stem_bias)
    if stem_bn:
        c = widths[0]
        for key, val in (("weight", rng.uniform(0.5, 1.5, c)), ("bias", rng.normal(size=c)),
                         ("running_mean", rng.normal(size=c)),
                         ("running_var", rng.uniform(0.5, 2.0, c))):
            b.inits.append(_tensor(f"bn1.{key}", val))
        h = b.node("BatchNormalization", [h, "bn1.weight", "bn1.bias", "bn1.running_mean",
                                          "bn1.running_var"], epsilon=1e-5)
    h = b.relu(h)
    h = b.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = widths[0]
    for s, (c, n) in enumerate(zip(widths, blocks)):
        for k in range(n):
            stride = 2 if (s > 0 and k == 0) else 1
            h = basic_block(b, h, c_in, c, stride, f"layer{s + 1}.{k}")
            c_in = c
    h = b.node("GlobalAveragePool", [h])
    h = b.node("Flatten", [h], axis=1)
    b.weight("fc.weight", (n_out, c_in), c_in)
    b.weight("fc.bias", (n_out,), 4.0)
    b.nodes.append(helper.make_node("Gemm", [h, "fc.weight", "fc.bias"], ["y"], transB=1,
                                    name="fc"))
    return b.model((in_ch, size, size), "y", n_out)


def resnet18(rng, size=224):
    """torchvision's ResNet-18 layer shapes (7x7/2 stem, widths 64-512, 2 blocks each)."""
    return resnet(rng, size=size, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem_k=7,
                  stem_stride=2, n_out=1000)


def tied_resnet(rng, size=8, width=3, repeats=3, scale=0.7):
    """A stem conv, then ONE residual block (the same initializers) applied ``repeats``
    times, GlobalAveragePool, Gemm: weights tied across layers."""
    b = Builder(rng, scale)
    h = b.relu(b.conv("x", 2, width, 3, 1, 1, name="stem"))
    shared = {"conv1": (b.weight("block.conv1.weight", (width, width, 3, 3), 9 * width),
                        b.weight("block.conv1.bias", (width,), 4.0)),
              "conv2": (b.weight("block.conv2.weight", (width, width, 3, 3), 9 * width),
                        b.weight("block.conv2.bias", (width,), 4.0))}
    for r in range(repeats):
        h = basic_block(b, h, width, width, 1, f"block{r}", weights=shared)
    h = b.node("GlobalAveragePool", [h])
    h = b.node("Flatten", [h], axis=1)
    b.weight("fc.weight", (2, width), width)
    b.nodes.append(helper.make_node("Gemm", [h, "fc.weight"], ["y"], transB=1, name="fc"))
    return b.model((2, size, size), "y", 2)


# --------------------------------------------------------------------------- the power twin


def power_twin(model, q, values=None):
    """The power-``q`` twin of ``model`` (see the module docstring).

    ``values``: optional ``{initializer: array}`` replacing initializers before the power.
    Unfolded BatchNormalization nodes become ``|a|^q x + |b|^q`` per channel.
    """
    m = copy.deepcopy(model)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    stats = {n for node in g.node if node.op_type == "BatchNormalization"
             for n in node.input[1:5]}
    new_inits = []
    for t in g.initializer:
        arr = inits[t.name]
        if np.issubdtype(arr.dtype, np.floating) and t.name not in stats:
            if values is not None and t.name in values:
                arr = values[t.name]
            arr = np.abs(np.asarray(arr, dtype=np.float64)) ** q
        new_inits.append(_tensor(t.name, arr, arr.dtype))
    channels = _channels(model)
    nodes = []
    for node in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("MaxPool", "AveragePool"):
            C = channels[node.input[0]]
            K = list(attrs["kernel_shape"])
            ones = f"{node.output[0]}.ones"
            new_inits.append(_tensor(ones, np.ones([C, 1] + K)))
            conv_attrs = {k: attrs[k] for k in ("strides", "pads", "dilations") if k in attrs}
            auto = attrs.get("auto_pad", b"NOTSET")
            if auto in (b"SAME_UPPER", b"SAME_LOWER"):
                conv_attrs["pads"] = _same_pads(_shape_of(model, node.input[0])[2:], K,
                                                conv_attrs, auto == b"SAME_UPPER")
            summed = node.output[0] + ".sum"
            nodes.append(helper.make_node("Conv", [node.input[0], ones],
                                          [summed if node.op_type == "AveragePool"
                                           else node.output[0]],
                                          group=C, kernel_shape=K, **conv_attrs))
            if node.op_type == "AveragePool":
                # 1/n per position: n from the same window summing ones (count_include_pad=0)
                if attrs.get("count_include_pad", 0):
                    w = np.array(float(np.prod(K))) ** -q
                else:
                    w = _window_counts(model, node, K, conv_attrs) ** -q
                new_inits.append(_tensor(node.output[0] + ".w", w))
                nodes.append(helper.make_node("Mul", [summed, node.output[0] + ".w"],
                                              [node.output[0]]))
        elif node.op_type in ("GlobalAveragePool", "ReduceMean"):
            n = _reduced_count(model, node)
            mean = node.output[0] + ".mean"
            nodes.append(helper.make_node(node.op_type, list(node.input), [mean],
                                          **attrs))
            new_inits.append(_tensor(node.output[0] + ".w", np.array(float(n) ** (1 - q))))
            nodes.append(helper.make_node("Mul", [mean, node.output[0] + ".w"],
                                          [node.output[0]]))
        elif node.op_type == "BatchNormalization":
            s, bb, mu, var = (inits[n].astype(np.float64) for n in node.input[1:5])
            a = s / np.sqrt(var + attrs.get("epsilon", 1e-5))
            shift = bb - a * mu
            names = [node.output[0] + suffix for suffix in (".a", ".b", ".ax")]
            tail = (1,) * (len(_shape_of(model, node.input[0])) - 2)
            new_inits.append(_tensor(names[0], (np.abs(a) ** q).reshape((-1,) + tail)))
            new_inits.append(_tensor(names[1], (np.abs(shift) ** q).reshape((-1,) + tail)))
            nodes.append(helper.make_node("Mul", [node.input[0], names[0]], [names[2]]))
            nodes.append(helper.make_node("Add", [names[2], names[1]], [node.output[0]]))
        else:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    return m


def _channels(model):
    """Channels of every tensor feeding a pooling node, from shape inference."""
    from onnx import shape_inference
    inferred = shape_inference.infer_shapes(model)
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = v.type.tensor_type.shape.dim
        if len(dims) > 1 and dims[1].HasField("dim_value"):
            out[v.name] = dims[1].dim_value
    return out


def _shape_of(model, name):
    from onnx import shape_inference
    inferred = shape_inference.infer_shapes(model)
    for v in list(inferred.graph.value_info) + list(inferred.graph.input):
        if v.name == name:
            return [d.dim_value for d in v.type.tensor_type.shape.dim]
    raise KeyError(name)


def _same_pads(S, K, attrs, upper):
    nsp = len(S)
    strides = attrs.get("strides", [1] * nsp)
    dil = attrs.get("dilations", [1] * nsp)
    lo, hi = [], []
    for a in range(nsp):
        out = -(-S[a] // strides[a])
        total = max(0, (out - 1) * strides[a] + dil[a] * (K[a] - 1) + 1 - S[a])
        small, big = total // 2, total - total // 2
        lo.append(small if upper else big)
        hi.append(big if upper else small)
    return lo + hi


def _window_counts(model, node, K, conv_attrs):
    """Number of non-padding positions in each window, per output position."""
    S = _shape_of(model, node.input[0])[2:]
    nsp = len(S)
    strides = conv_attrs.get("strides", [1] * nsp)
    pads = conv_attrs.get("pads", [0] * (2 * nsp))
    dil = conv_attrs.get("dilations", [1] * nsp)
    counts = np.ones(())
    for a in range(nsp):
        n_out = (S[a] + pads[a] + pads[a + nsp] - dil[a] * (K[a] - 1) - 1) // strides[a] + 1
        pos = np.arange(n_out)[:, None] * strides[a] + np.arange(K[a])[None, :] * dil[a] \
            - pads[a]
        counts = np.multiply.outer(counts, ((pos >= 0) & (pos < S[a])).sum(axis=1))
    return counts.astype(np.float64)


def _reduced_count(model, node):
    shape = _shape_of(model, node.input[0])
    if node.op_type == "GlobalAveragePool":
        return int(np.prod(shape[2:]))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1:
        for t in model.graph.initializer:
            if t.name == node.input[1]:
                axes = numpy_helper.to_array(t).tolist()
    return int(np.prod([shape[a] for a in axes]))
