"""Make the PyTorch-exported ONNX fixtures of issue 23 (run by hand, not by the tests).

PyTorch is not a test dependency: the tests only read the files this script writes.  To
remake them, in a throwaway environment outside the repository::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 torchvision==0.28.0 onnx onnxscript
    /tmp/torchvenv/bin/python tests/data/onnx/make_resnet_fixtures.py

(torchvision's PyPI wheel needs the CUDA build of torch to import, so install torch from
PyPI, not a ``+cpu`` wheel; no GPU is used.)  The fixtures were made with torch 2.13.0,
torchvision 0.28.0, onnx 1.23.2 and onnxscript 0.7.2.

Every module is exported twice, as a user would, in eval mode and without
``dynamic_axes``/``dynamic_shapes`` (the batch axis of the file is fixed at 1):

* ``NAME_ts.onnx``: ``torch.onnx.export(..., dynamo=False, opset_version=17)``, the
  TorchScript exporter (constant folding on, so eval-mode BatchNorm is folded into the Conv
  before it, and folded tensors get names like ``onnx::Conv_44``; a tensor used again is
  reached through ``Identity`` nodes);
* ``NAME_dynamo.onnx``: ``torch.onnx.export(...)`` with the default (dynamo) exporter, opset
  20.  Its optimiser folds a BatchNormalization into the Conv before it only when that Conv's
  weight has no other use (the folded weight keeps the name ``<conv>.weight``, its bias is
  ``<conv>.weight_bias``); otherwise the BatchNormalization stays in the file.  It writes
  large tensors to ``NAME_dynamo.onnx.data`` beside the file (external data, as a user's
  export of a ResNet gets it: load the file by its path so that onnx finds them).  The
  nodes' metadata (stack traces naming the exporting machine's files) is removed.

The fixtures (what each checks):

``resnet_ts``, ``resnet_dynamo``
    torchvision's ``ResNet`` and ``BasicBlock`` classes at widths 8/16/32/64, one block
    per stage, 10 classes, input 3x32x32: stem Conv 7x7/2 (+ folded BN), ReLU, MaxPool
    3x3/2 pad 1, a residual block without downsample, three with a 1x1/2 downsample (+ BN),
    residual ``Add``, then GlobalAveragePool and Flatten (ts), or ReduceMean with axes
    [-1, -2] (an int64 initializer, keepdims 1) and Reshape to the fixed shape [1, 64]
    (dynamo), then Gemm.  BatchNorm running statistics and affine parameters are random,
    so folding is not the identity.  Both files hold the folded weights as initializers.
``autoencoder_ts``, ``autoencoder_dynamo``
    The weight-tied autoencoder ``y = W^T relu(W x + b1) + b2`` (W: 3x4).  The TorchScript
    exporter reuses the initializer ``W`` (second Gemm without ``transB``: tied in the
    file); the dynamo exporter stores ``W.t()`` as a second initializer ``t`` (4x3, exact
    copy of the transpose): untied unless the importer ties transposes.
``rnn_ts``, ``rnn_dynamo``
    A plain ``nn.RNN(2, 3, nonlinearity="relu")`` over T = 5 steps, exported as is (two
    outputs: ``y`` of shape (T, 1, 3) and ``h_n`` of shape (1, 1, 3), equal to ``y[-1]``).
    TorchScript: one RNN operator whose zero initial state is ``Expand`` of a zero
    ``Constant`` to a shape built by Shape/Gather/Unsqueeze/Concat, ``B`` = [b_ih, b_hh]
    (1x6).  Dynamo: the loop unrolled into MatMul/Add/Relu with ``W_ih^T`` and ``W_hh^T``
    as initializers, Slice/Squeeze per step, Concat of the steps; the first step's
    ``h0 @ W_hh^T + b_hh`` is constant-folded into an initializer of shape (1, 1, 3) that
    is a copy of ``b_hh`` (so the first step's hidden bias is a separate initializer).
``tied_residual_ts``, ``tied_residual_dynamo``
    Stem Conv 3x3 (1 -> 4 channels) + ReLU, then ONE torchvision ``BasicBlock(4, 4)`` (with
    random eval BatchNorms) applied three times, global average pool, Linear(4, 2);
    input 1x5x5.  TorchScript folds the BNs into two Conv initializers and reaches them
    again through ``Identity`` nodes; dynamo cannot fold (the Conv weights are used three
    times), so each application has Conv (no bias) -> BatchNormalization.

Beside each ``NAME.onnx``, ``NAME.npz`` holds (all float64 unless said):

``X``, ``Y``
    a batch of inputs (float32, ONNX layout, batch axis 0, or 1 for the RNN: the file's
    batch axis is fixed at 1, so evaluate the file one example at a time) and PyTorch's
    float64 output on it (the module run in double precision; for the RNN ``Y`` is ``y``
    and ``Y_h`` is ``h_n``).
``gamma2``, ``pathnorm_q1``, ``pathnorm_q2``, ``pathnorm_q4``
    gamma^2 (the sum over input->output paths of the product of squared weights) and the
    path norms (sum over paths of prod |w|^q)^(1/q), biases being edges from an input
    that carries 1, computed in PyTorch float64 by the "squared twin": every weight and
    bias raised to |.|^q, ReLU dropped, MaxPool replaced by an all-ones depthwise conv of
    the same kernel/stride/padding (every path passes), average pooling's weight 1/n
    raised to the power q, evaluated on an all-ones input; the sum of its outputs.
    For the RNN these sum over both outputs (``y`` and ``h_n``, every output element of
    the model); ``*_y`` are the same over ``y`` alone.
``names``, ``shapes``, ``sources``
    The parameters the geometry is computed for, in order: the floating-point initializers
    of the file that carry a weight or bias (ONNX initializer names), except where the
    file keeps a BatchNormalization after a Conv (``tied_residual_dynamo``): there the
    parameters are the folded values W' = a W, b' = a (b - mu) + beta with
    a = gamma / sqrt(var + eps) (eps from the node), named ``<conv weight>|<bn scale>``
    and ``<bn bias>|<bn scale>``; ``sources[i]`` says which (``initializer`` or
    ``folded:<conv weight>,<bn scale>,<bn bias>,<bn mean>,<bn var>``).  Each parameter's
    values are the file's (float32 read as float64, folds in float64).
``kappa1``
    d gamma2 / d q of every element of every parameter (q = w^2), by autograd through the
    squared twin: one flat array, the parameters in ``names`` order, each in C order
    (``shapes`` gives their shapes).
``kappa`` (tied models: autoencoder, rnn, tied_residual)
    The diagonal of (1/2) d^2 gamma2 / dw_i^2 by double backward, for the same parameters
    (so a parameter the file repeats, such as the dynamo autoencoder's ``t``, is a
    separate parameter here); ``names_tied``, ``shapes_tied``, ``kappa1_tied`` and
    ``kappa_tied`` are the same with copies and transposes of one PyTorch parameter tied
    back into one parameter (named by the first initializer that holds it; what
    ``tie_transposes=True`` should give).
``kappa1_y``, ``kappa_y``, ``kappa1_tied_y``, ``kappa_tied_y`` (rnn only)
    The same over the output ``y`` alone.
"""

import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
OPSET_TS = 17
SEED = 0


# --------------------------------------------------------------------------- modules

def modules(torch, nn, F, resnet):
    """The PyTorch modules (defined here so that importing this file needs no torch)."""

    class NarrowResNet(resnet.ResNet):
        """torchvision's ResNet with BasicBlocks at widths ``widths`` (torchvision's own
        ``_make_layer``, ``forward`` and initialisation; only the widths differ)."""

        def __init__(self, widths=(8, 16, 32, 64), layers=(1, 1, 1, 1), num_classes=10):
            nn.Module.__init__(self)
            self._norm_layer = nn.BatchNorm2d
            self.inplanes = widths[0]
            self.dilation = 1
            self.groups = 1
            self.base_width = 64
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(resnet.BasicBlock, widths[0], layers[0])
            self.layer2 = self._make_layer(resnet.BasicBlock, widths[1], layers[1], stride=2)
            self.layer3 = self._make_layer(resnet.BasicBlock, widths[2], layers[2], stride=2)
            self.layer4 = self._make_layer(resnet.BasicBlock, widths[3], layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(widths[3], num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    class TiedAutoencoder(nn.Module):
        """y = W^T relu(W x + b1) + b2: the decoder uses the encoder's weight transposed."""

        def __init__(self, n_in=4, n_hidden=3):
            super().__init__()
            self.W = nn.Parameter(torch.randn(n_hidden, n_in) / n_in ** 0.5)
            self.b1 = nn.Parameter(0.1 * torch.randn(n_hidden))
            self.b2 = nn.Parameter(0.1 * torch.randn(n_in))

        def forward(self, x):
            return F.linear(torch.relu(F.linear(x, self.W, self.b1)), self.W.t(), self.b2)

    class TiedResidual(nn.Module):
        """Stem conv, one torchvision BasicBlock applied three times, pool, linear."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, kernel_size=3, padding=1)
            self.block = resnet.BasicBlock(4, 4)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            for _ in range(3):
                h = self.block(h)
            return self.fc(torch.flatten(self.pool(h), 1))

    return NarrowResNet, TiedAutoencoder, TiedResidual


def randomise_batchnorms(torch, module, gen):
    """Random running statistics and affine parameters, so that folding is not trivial."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))


def fold(torch, conv, bn):
    """(weight, bias) of ``bn(conv(x))`` as one conv, by hand, float64:
    W' = a W, b' = a (b - mu) + beta, a = gamma / sqrt(var + eps)."""
    a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv.weight.double() * a.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(a)
    return (w.detach(), (a * (b - bn.running_mean.double()) + bn.bias.double()).detach())


# --------------------------------------------------------------------------- squared twins
# A twin takes ``S`` (site name -> float64 tensor of |w|^q, already powered) and ``q`` (for
# average pooling's weight 1/n) and returns a float64 vector: the sum of each output of the
# squared network on the all-ones input (one entry per model output).

def resnet_sites(torch, net):
    """Site name -> folded float64 value; site names are the torch module names."""
    S = {}
    convs = [("conv1", net.conv1, net.bn1)]
    for lname in ("layer1", "layer2", "layer3", "layer4"):
        for i, blk in enumerate(getattr(net, lname)):
            convs += [(f"{lname}.{i}.conv1", blk.conv1, blk.bn1),
                      (f"{lname}.{i}.conv2", blk.conv2, blk.bn2)]
            if blk.downsample is not None:
                convs.append((f"{lname}.{i}.downsample.0", blk.downsample[0], blk.downsample[1]))
    for name, conv, bn in convs:
        S[f"{name}.weight"], S[f"{name}.bias"] = fold(torch, conv, bn)
    S["fc.weight"] = net.fc.weight.double().detach()
    S["fc.bias"] = net.fc.bias.double().detach()
    return S


def resnet_twin(torch, F, net, size):
    def conv(h, S, name, module):
        return F.conv2d(h, S[f"{name}.weight"], S[f"{name}.bias"], stride=module.stride,
                        padding=module.padding)

    def twin(S, q):
        h = torch.ones(1, 3, size, size, dtype=torch.float64)
        h = conv(h, S, "conv1", net.conv1)
        c = h.shape[1]
        mp = net.maxpool
        h = F.conv2d(h, torch.ones(c, 1, mp.kernel_size, mp.kernel_size, dtype=torch.float64),
                     stride=mp.stride, padding=mp.padding, groups=c)
        for lname in ("layer1", "layer2", "layer3", "layer4"):
            for i, blk in enumerate(getattr(net, lname)):
                out = conv(h, S, f"{lname}.{i}.conv1", blk.conv1)
                out = conv(out, S, f"{lname}.{i}.conv2", blk.conv2)
                if blk.downsample is not None:
                    h = conv(h, S, f"{lname}.{i}.downsample.0", blk.downsample[0])
                h = out + h
        n = h.shape[2] * h.shape[3]
        h = h.sum(dim=(2, 3)) * (1.0 / n) ** q
        return (h @ S["fc.weight"].T + S["fc.bias"]).sum().reshape(1)
    return twin


def tied_residual_sites(torch, net):
    S = {"stem.weight": net.stem.weight.double().detach(),
         "stem.bias": net.stem.bias.double().detach(),
         "fc.weight": net.fc.weight.double().detach(),
         "fc.bias": net.fc.bias.double().detach()}
    w1, b1 = fold(torch, net.block.conv1, net.block.bn1)
    w2, b2 = fold(torch, net.block.conv2, net.block.bn2)
    for k in range(3):      # one site per application: the layouts tie them
        S[f"block{k}.conv1.weight"], S[f"block{k}.conv1.bias"] = w1, b1
        S[f"block{k}.conv2.weight"], S[f"block{k}.conv2.bias"] = w2, b2
    return S


def tied_residual_twin(torch, F, size):
    def twin(S, q):
        h = torch.ones(1, 1, size, size, dtype=torch.float64)
        h = F.conv2d(h, S["stem.weight"], S["stem.bias"], padding=1)
        for k in range(3):
            out = F.conv2d(h, S[f"block{k}.conv1.weight"], S[f"block{k}.conv1.bias"], padding=1)
            out = F.conv2d(out, S[f"block{k}.conv2.weight"], S[f"block{k}.conv2.bias"], padding=1)
            h = out + h
        h = h.sum(dim=(2, 3)) * (1.0 / (size * size)) ** q
        return (h @ S["fc.weight"].T + S["fc.bias"]).sum().reshape(1)
    return twin


def autoencoder_sites(net):
    W = net.W.double().detach()
    return {"enc.weight": W, "enc.bias": net.b1.double().detach(),
            "dec.weight": W.t().contiguous(), "dec.bias": net.b2.double().detach()}


def autoencoder_twin(torch, n_in):
    def twin(S, q):
        x = torch.ones(1, n_in, dtype=torch.float64)
        h = x @ S["enc.weight"].T + S["enc.bias"]
        return (h @ S["dec.weight"].T + S["dec.bias"]).sum().reshape(1)
    return twin


def rnn_sites(rnn):
    b_hh = rnn.bias_hh_l0.double().detach()
    return {"W_ih": rnn.weight_ih_l0.double().detach(), "W_hh": rnn.weight_hh_l0.double().detach(),
            "b_ih": rnn.bias_ih_l0.double().detach(), "b_hh_first": b_hh, "b_hh": b_hh}


def rnn_twin(torch, T, n_in):
    def twin(S, q):
        x = torch.ones(n_in, dtype=torch.float64)
        total, h = 0.0, None
        for t in range(T):
            pre = S["W_ih"] @ x + S["b_ih"]
            h = pre + S["b_hh_first"] if t == 0 else pre + S["W_hh"] @ h + S["b_hh"]
            total = total + h.sum()
        return torch.stack([total, h.sum()])      # outputs y (every step) and h_n
    return twin


# --------------------------------------------------------------------------- layouts

def initializers(path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return model, {i.name: numpy_helper.to_array(i).astype(np.float64)
                   for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}


def match(inits, value, transforms=("id", "T", "reshape")):
    """The initializer holding ``value`` (torch float64) up to float32 rounding: the first
    by ``transforms`` preference, then by file order; returns (name, transform) or None."""
    v = value.numpy()
    tol = 1e-5 * max(np.abs(v).max(), 1e-30)
    for how in transforms:
        for name, a in inits.items():
            if how == "id" and a.shape == v.shape:
                b = a
            elif how == "T" and a.ndim == 2 and a.T.shape == v.shape:
                b = a.T
            elif how == "reshape" and a.size == v.size and a.shape != v.shape:
                b = a.reshape(v.shape)
            else:
                continue
            if np.abs(b - v).max() <= tol:
                return name, how
    return None


def apply(how, leaf, shape):
    """A site's value from its parameter: "id", "T" (transpose), "reshape", or "half0" /
    "half1" (the first / second half of the flattened parameter, as the RNN operator's
    ``B`` = [b_ih, b_hh])."""
    if how == "id":
        return leaf
    if how == "T":
        return leaf.T
    if how == "half0":
        return leaf.reshape(-1)[:leaf.numel() // 2].reshape(shape)
    if how == "half1":
        return leaf.reshape(-1)[leaf.numel() // 2:].reshape(shape)
    return leaf.reshape(shape)


def file_layout(model, inits, sites, overrides=None):
    """Map every site to a parameter of the file: ``{site: (param, transform)}`` and the
    parameters' float64 values ``{param: array}`` (file order), their ``sources``.
    ``overrides[site]`` is ``(param, transform)`` or a list of the transforms :func:`match`
    tries."""
    overrides = overrides or {}
    site_map, params, sources = {}, {}, {}
    bn_after = bn_after_conv(model)
    for site, value in sites.items():
        if isinstance(overrides.get(site), tuple):
            name, how = overrides[site]
        else:
            found = match(inits, value, overrides.get(site, ("id", "T", "reshape")))
            if found is None:
                name, how = fold_from_file(site, inits, bn_after, params, sources), "id"
            else:
                name, how = found
        site_map[site] = (name, how)
        if name not in params:
            params[name] = inits[name]
            sources[name] = "initializer"
    order = [n for n in inits if n in params] + [n for n in params if n not in inits]
    return site_map, {n: params[n] for n in order}, {n: sources[n] for n in order}


def bn_after_conv(model):
    """Conv weight initializer -> (BN scale, bias, mean, var names, eps) for Conv -> BN."""
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for n in model.graph.node:
        if n.op_type != "BatchNormalization":
            continue
        conv = producer.get(n.input[0])
        if conv is None or conv.op_type != "Conv":
            continue
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        bias = conv.input[2] if len(conv.input) > 2 else ""
        out[conv.input[1]] = (tuple(n.input[1:5]), float(eps), bias)
    return out


def fold_from_file(site, inits, bn_after, params, sources):
    """A folded parameter computed from the file's Conv weight and BatchNormalization
    (for the sites of the tied residual's ``block``, whose Conv has no bias in the file)."""
    conv_w = site.split("block", 1)[-1]      # "block0.conv1.weight" -> "0.conv1.weight"
    conv_w = "block." + conv_w.split(".", 1)[1].rsplit(".", 1)[0] + ".weight"
    (scale, beta, mean, var), eps, bias = bn_after[conv_w]
    a = inits[scale] / np.sqrt(inits[var] + eps)
    src = f"folded:{conv_w},{scale},{beta},{mean},{var}"
    if site.endswith(".weight"):
        name = f"{conv_w}|{scale}"
        w = inits[conv_w]
        value = w * a.reshape(-1, *([1] * (w.ndim - 1)))
    else:
        name = f"{beta}|{scale}"
        b = inits[bias] if bias else 0.0
        value = a * (b - inits[mean]) + inits[beta]
    params[name], sources[name] = value, src
    return name


def tied_layout(file_map, groups, sites):
    """Tie the file's parameters that hold one PyTorch parameter.  ``groups`` lists, per
    PyTorch parameter, its sites as ``(site, rel)`` with ``rel`` "id" or "T" (the site is
    the first site's value, or its transpose); the first site's file parameter represents
    the group.  Returns ``{site: (param, transform, shape, rel)}``."""
    out = {}
    for group in groups:
        first = group[0][0]
        name, how = file_map[first]
        for site, rel in group:
            out[site] = (name, how, tuple(sites[first].shape), rel)
    return out


# --------------------------------------------------------------------------- references

def site_values(site_map, powered):
    """Sites as functions of the (powered) parameters: ``site_map[site]`` is
    ``(param, transform, shape, rel)``."""
    S = {}
    for site, (name, how, shape, rel) in site_map.items():
        v = apply(how, powered[name], shape)
        S[site] = v.T if rel == "T" else v
    return S


def references(torch, twin, site_map, params, want_kappa, output_weights):
    """gamma2, path norms, kappa1 (and kappa) w.r.t. ``params`` by autograd in float64."""
    names = list(params)
    base = {n: torch.tensor(params[n], dtype=torch.float64) for n in names}
    wts = torch.tensor(output_weights, dtype=torch.float64)

    def g(powered, q):
        return (twin(site_values(site_map, powered), q) * wts).sum()

    out = {}
    for q in (1, 2, 4):
        out[f"pathnorm_q{q}"] = float(g({n: v.abs() ** q for n, v in base.items()}, q)) ** (1 / q)
    Q = {n: (v ** 2).requires_grad_(True) for n, v in base.items()}
    val = g(Q, 2)
    out["gamma2"] = float(val)
    grads = torch.autograd.grad(val, [Q[n] for n in names], allow_unused=True)
    out["kappa1"] = np.concatenate([(gr if gr is not None else torch.zeros_like(Q[n]))
                                    .detach().numpy().ravel() for gr, n in zip(grads, names)])
    if want_kappa:
        P = {n: v.clone().requires_grad_(True) for n, v in base.items()}
        leaves = [P[n] for n in names]
        gam = g({n: v ** 2 for n, v in P.items()}, 2)
        first = torch.cat([d.reshape(-1) for d in
                           torch.autograd.grad(gam, leaves, create_graph=True)])
        diag = np.empty(first.numel())
        for i in range(first.numel()):
            second = torch.autograd.grad(first[i], leaves, retain_graph=True, allow_unused=True)
            flat = torch.cat([(s if s is not None else torch.zeros_like(v)).reshape(-1)
                              for s, v in zip(second, leaves)])
            diag[i] = float(flat[i])
        out["kappa"] = 0.5 * diag
    return out


def save(name, X, Y, file_map, params, sources, sites, twin, groups=None, output_sets=None):
    """Write NAME.npz (see the module docstring for its keys)."""
    import torch

    output_sets = output_sets or {"": [1.0]}
    data = {"X": X, **Y}
    data["names"] = np.array(list(params))
    data["shapes"] = np.array([str(tuple(params[n].shape)) for n in params])
    data["sources"] = np.array([sources[n] for n in params])
    smap = {s: (n, how, tuple(sites[s].shape), "id") for s, (n, how) in file_map.items()}
    tmap = tied_params = None
    if groups is not None:
        tmap = tied_layout(file_map, groups, sites)
        used = {n for (n, _, _, _) in tmap.values()}
        tied_params = {n: params[n] for n in params if n in used}
        data["names_tied"] = np.array(list(tied_params))
        data["shapes_tied"] = np.array([str(tuple(v.shape)) for v in tied_params.values()])
    for suffix, weights in output_sets.items():
        ref = references(torch, twin, smap, params, groups is not None, weights)
        for k, v in ref.items():
            data[k + suffix] = v
        if groups is not None:
            ref = references(torch, twin, tmap, tied_params, True, weights)
            data["kappa1_tied" + suffix] = ref["kappa1"]
            data["kappa_tied" + suffix] = ref["kappa"]
            for k in ("gamma2", "pathnorm_q1", "pathnorm_q2", "pathnorm_q4"):
                assert abs(ref[k] - data[k + suffix]) <= 1e-12 * abs(ref[k]), (name, k)
    np.savez_compressed(HERE / f"{name}.npz", **data)
    print(f"wrote {name}.npz: {', '.join(sorted(data))}")


# --------------------------------------------------------------------------- main

def export(torch, module, x, name, exporter):
    """Export ``module`` at the example input ``x`` (batch 1) the way a user would."""
    path = HERE / f"{name}_{exporter}.onnx"
    if exporter == "ts":
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=OPSET_TS)
    else:
        torch.onnx.export(module, (x,), str(path))
        data = path.with_name(path.name + ".data")     # tensors the exporter wrote apart
        if data.exists() and data.stat().st_size == 0:
            data.unlink()
        strip_metadata(path)
    print(f"wrote {path.name} ({path.stat().st_size} bytes)")
    return path


def strip_metadata(path):
    """Drop the nodes' metadata (stack traces naming the exporting machine's files); the
    graph, its initializers and their external-data references are kept as exported."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    stack = [model.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            del n.metadata_props[:]
            n.doc_string = ""
            stack.extend(a.g for a in n.attribute if a.HasField("g"))
    onnx.save(model, str(path))


def outputs(torch, module, X):
    """PyTorch's float64 outputs on X (the module run in double precision)."""
    import copy
    m = copy.deepcopy(module).double().eval()
    with torch.no_grad():
        return m(torch.tensor(X, dtype=torch.float64))


def main():
    import warnings

    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision.models import resnet

    warnings.filterwarnings("ignore")
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    NarrowResNet, TiedAutoencoder, TiedResidual = modules(torch, nn, F, resnet)

    # ResNet: no tying, kappa1 only
    net = NarrowResNet().eval()
    randomise_batchnorms(torch, net, gen)
    X = torch.randn(3, 3, 32, 32, generator=gen)
    Y = outputs(torch, net, X).numpy()
    sites = resnet_sites(torch, net)
    twin = resnet_twin(torch, F, net, 32)
    for exporter in ("ts", "dynamo"):
        path = export(torch, net, X[:1], "resnet", exporter)
        model, inits = initializers(path)
        fmap, params, sources = file_layout(model, inits, sites)
        save(path.stem, X.numpy(), {"Y": Y}, fmap, params, sources, sites, twin)

    # the weight-tied autoencoder
    ae = TiedAutoencoder().eval()
    X = torch.randn(5, 4, generator=gen)
    Y = outputs(torch, ae, X).numpy()
    sites = autoencoder_sites(ae)
    groups = [[("enc.weight", "id"), ("dec.weight", "T")], [("enc.bias", "id")],
              [("dec.bias", "id")]]
    for exporter in ("ts", "dynamo"):
        path = export(torch, ae, X[:1], "autoencoder", exporter)
        model, inits = initializers(path)
        fmap, params, sources = file_layout(model, inits, sites)
        save(path.stem, X.numpy(), {"Y": Y}, fmap, params, sources, sites,
             autoencoder_twin(torch, 4), groups=groups)

    # nn.RNN as is: outputs y and h_n
    rnn = nn.RNN(input_size=2, hidden_size=3, nonlinearity="relu").eval()
    T = 5
    X = torch.randn(T, 4, 2, generator=gen)
    y, h_n = outputs(torch, rnn, X)
    sites = rnn_sites(rnn)
    groups = [[("W_ih", "id")], [("W_hh", "id")], [("b_ih", "id")],
              [("b_hh", "id"), ("b_hh_first", "id")]]
    for exporter in ("ts", "dynamo"):
        path = export(torch, rnn, X[:, :1], "rnn", exporter)
        model, inits = initializers(path)
        if exporter == "ts":
            B = next(n for n, a in inits.items() if a.shape == (1, 6))
            over = {"b_ih": (B, "half0"), "b_hh": (B, "half1"), "b_hh_first": (B, "half1")}
        else:       # the first step's hidden bias: the (1, 1, 3) copy of b_hh
            over = {"b_hh_first": ["reshape"]}
        fmap, params, sources = file_layout(model, inits, sites, over)
        save(path.stem, X.numpy(), {"Y": y.numpy(), "Y_h": h_n.numpy()}, fmap, params,
             sources, sites, rnn_twin(torch, T, 2), groups=groups,
             output_sets={"": [1.0, 1.0], "_y": [1.0, 0.0]})

    # one residual block applied three times
    tied = TiedResidual().eval()
    randomise_batchnorms(torch, tied, gen)
    X = torch.randn(4, 1, 5, 5, generator=gen)
    Y = outputs(torch, tied, X).numpy()
    sites = tied_residual_sites(torch, tied)
    groups = [[("stem.weight", "id")], [("stem.bias", "id")], [("fc.weight", "id")],
              [("fc.bias", "id")]]
    groups += [[(f"block{k}.{c}.{w}", "id") for k in range(3)]
               for c in ("conv1", "conv2") for w in ("weight", "bias")]
    for exporter in ("ts", "dynamo"):
        path = export(torch, tied, X[:1], "tied_residual", exporter)
        model, inits = initializers(path)
        fmap, params, sources = file_layout(model, inits, sites)
        save(path.stem, X.numpy(), {"Y": Y}, fmap, params, sources, sites,
             tied_residual_twin(torch, F, 5), groups=groups)


if __name__ == "__main__":
    main()
