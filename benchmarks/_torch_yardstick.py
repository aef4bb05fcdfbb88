"""PyTorch yardstick for ResNet-18's path quantities (issue 23), and the model it is timed on.

The network: torchvision's ``resnet18()`` in eval mode, random weights from a fixed seed,
its BatchNorms given random running statistics and affine parameters (so that the folded
biases are not zero, as in a trained network) and folded into the convolutions with
``torch.nn.utils.fusion.fuse_conv_bn_eval``.  :func:`export_resnet18` writes that folded
network to ONNX (float32) for the library to import; :func:`torch_yardstick_seconds` times
PyTorch on its **squared twin** in float64 on one thread:

* every weight and bias squared, ReLU dropped (the twin's values are >= 0 on a >= 0 input),
* max-pooling replaced by an all-ones depthwise 3x3 convolution, stride 2, padding 1 (every
  path passes a max node),
* global average pooling's weight 1/n squared (the sum over positions times 1/n^2),

evaluated on the all-ones input ``1x3xSxS``: the sum of its outputs is gamma^2, and its
gradient with respect to the squared weights is kappa^(1).  The yardstick is one forward
plus that gradient (``torch.autograd.grad`` with respect to every squared weight and bias),
best of ``repeats`` after one warm-up call.  Every function imports torch inside and the
timing returns None when torch or torchvision is missing, as the other optional
yardsticks do (``pip install torch==2.13.0 torchvision==0.28.0``).

``python benchmarks/_torch_yardstick.py [SIZE ...]`` prints the rescaling group's dimension
and the yardstick at each size (default 224 and 16);
``python benchmarks/_torch_yardstick.py --export resnet18.onnx [SIZE]`` writes the folded
network and, beside it, ``resnet18_ref.npz`` (see :func:`resnet18_reference`).
"""

import sys
import time

SEED = 0


def _torch():
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError:
        return None
    return torch


def folded_resnet18(seed=SEED):
    """torchvision's ResNet-18 (eval, float32, random weights from ``seed``) with random
    BatchNorm statistics folded into its convolutions; the BatchNorms become Identity."""
    import torch
    import torchvision
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = torchvision.models.resnet18().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
    net.conv1 = fuse_conv_bn_eval(net.conv1, net.bn1)
    net.bn1 = nn.Identity()
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for blk in layer:
            blk.conv1 = fuse_conv_bn_eval(blk.conv1, blk.bn1)
            blk.conv2 = fuse_conv_bn_eval(blk.conv2, blk.bn2)
            blk.bn1 = blk.bn2 = nn.Identity()
            if blk.downsample is not None:
                blk.downsample = nn.Sequential(fuse_conv_bn_eval(blk.downsample[0],
                                                                 blk.downsample[1]))
    return net.eval()


def squared_twin(net, q=2):
    """The float64 twin of a folded ResNet: weights and biases ``|w|^q`` (leaf tensors that
    require grad, returned in ``named_parameters`` order), ReLU -> Identity, MaxPool -> an
    all-ones depthwise conv, global average pooling -> sum times (1/n)^q."""
    import copy

    import torch
    from torch import nn

    twin = copy.deepcopy(net).double().eval()
    for m in twin.modules():
        if hasattr(m, "relu"):
            m.relu = nn.Identity()
    c = twin.conv1.out_channels
    k, s, pad = twin.maxpool.kernel_size, twin.maxpool.stride, twin.maxpool.padding
    ones = nn.Conv2d(c, c, k, stride=s, padding=pad, groups=c, bias=False).double()
    with torch.no_grad():
        ones.weight.fill_(1.0)
    ones.weight.requires_grad_(False)
    twin.maxpool = ones

    class SumPool(nn.Module):
        def forward(self, h):
            n = h.shape[2] * h.shape[3]
            return h.sum(dim=(2, 3), keepdim=True) * (1.0 / n) ** q

    twin.avgpool = SumPool()
    params = []
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if name == "maxpool.weight":
                continue
            p.copy_(p.abs() ** q)
            p.requires_grad_(True)
            params.append((name, p))
    return twin, params


def gamma2_and_kappa1(twin, params, size):
    """gamma^2 (the twin's output sum on ones) and its gradient w.r.t. the squared weights."""
    import torch

    x = torch.ones(1, 3, size, size, dtype=torch.float64)
    out = twin(x).sum()
    grads = torch.autograd.grad(out, [p for _, p in params])
    return out, grads


def torch_yardstick_seconds(size=224, repeats=3, threads=1):
    """Best time of PyTorch's float64 forward + autograd gradient of ResNet-18's squared
    twin on the all-ones ``1x3xSxS`` input (``threads`` threads), warm-up excluded; None
    when torch or torchvision is not installed."""
    torch = _torch()
    if torch is None:
        return None
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        twin, params = squared_twin(folded_resnet18())
        gamma2_and_kappa1(twin, params, size)           # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            gamma2_and_kappa1(twin, params, size)
            best = min(best, time.perf_counter() - t0)
        return best
    finally:
        torch.set_num_threads(old)


def export_resnet18(path, size=224):
    """Write the folded ResNet-18 (float32, batch 1, input ``1x3xSxS``) to ONNX at ``path``
    with the TorchScript exporter (one self-contained file; the initializers keep the
    module names, e.g. ``layer1.0.conv1.weight`` and ``.bias``).  Returns the module."""
    import warnings

    import torch

    net = folded_resnet18()
    x = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)
    return net


def resnet18_reference(size=224, batch=2):
    """Float64 references for the folded ResNet-18 at ``3xSxS``, computed in PyTorch on its
    squared twin: ``gamma2``, ``pathnorm_q1/q2/q4``, ``names`` and ``shapes`` (the
    parameters in ``named_parameters`` order, which is the ONNX initializer order and
    naming of :func:`export_resnet18`), per parameter ``kappa1_sum``, ``kappa1_norm`` (L2),
    ``kappa1_max`` and ``kappa1_min``, every parameter's full ``kappa1[NAME]``, a batch
    ``X`` with the folded network's float64 outputs ``Y``, and ``rescaling_dim``."""
    import numpy as np
    import torch

    net = folded_resnet18()
    out = {}
    for q in (1, 2, 4):
        twin, params = squared_twin(net, q)
        with torch.no_grad():
            val = float(twin(torch.ones(1, 3, size, size, dtype=torch.float64)).sum())
        out[f"pathnorm_q{q}"] = val ** (1.0 / q)
    twin, params = squared_twin(net, 2)
    g2, grads = gamma2_and_kappa1(twin, params, size)
    out["gamma2"] = g2.item()
    out["names"] = np.array([n for n, _ in params])
    out["shapes"] = np.array([str(tuple(p.shape)) for _, p in params])
    k = [g.detach().numpy() for g in grads]
    out["kappa1_sum"] = np.array([a.sum() for a in k])
    out["kappa1_norm"] = np.array([np.sqrt((a * a).sum()) for a in k])
    out["kappa1_max"] = np.array([a.max() for a in k])
    out["kappa1_min"] = np.array([a.min() for a in k])
    for (n, _), a in zip(params, k):
        out[f"kappa1[{n}]"] = a
    gen = torch.Generator().manual_seed(SEED + 1)
    X = torch.randn(batch, 3, size, size, generator=gen)
    with torch.no_grad():
        out["Y"] = net.double()(X.double()).numpy()
    out["X"] = X.numpy()
    out["rescaling_dim"] = rescaling_dim_by_structure(net)
    return out


def rescaling_dim_by_structure(net):
    """The rescaling group's dimension of a folded torchvision ResNet counted from its
    modules: one beta per output channel of the stem conv (the first residual stream, which
    the max-pooling and every identity shortcut keep), of every downsample conv (a new
    stream) and of every block's inner conv (``conv1``).  The fc outputs are the network's
    outputs (beta = 1); biases come from an input (beta = 1) and constrain nothing."""
    dim = net.conv1.out_channels
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for blk in layer:
            dim += blk.conv1.out_channels
            if blk.downsample is not None:
                dim += blk.downsample[0].out_channels
    return dim


def rescaling_dim_by_tracing(net):
    """The same dimension by a union-find over the channels of the traced graph
    (``torch.fx``): each conv output channel is a new class; ReLU, Identity and Flatten keep
    the class; max-pooling and average pooling tie their output to their input channel
    (fixed weights 1 and 1/n); ``add`` ties the channels of its two operands; the Linear
    layer's outputs are the network's outputs.  Returns the number of classes that are
    neither an input channel nor an output."""
    import operator

    import torch
    from torch import fx, nn

    gm = fx.symbolic_trace(net)
    parent = {}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def new(n):
        ids = [(len(parent), c) for c in range(n)]
        for i in ids:
            parent[i] = i
        return ids

    chans, fixed = {}, set()
    mods = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            chans[node] = new(3)
            fixed.update(chans[node])
        elif node.op == "call_module":
            m = mods[node.target]
            src = chans[node.args[0]]
            if isinstance(m, nn.Conv2d):
                chans[node] = new(m.out_channels)
            elif isinstance(m, nn.Linear):
                chans[node] = new(m.out_features)
                fixed.update(chans[node])
            elif isinstance(m, (nn.ReLU, nn.Identity, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
                chans[node] = src
            else:
                raise TypeError(f"unexpected module {m}")
        elif node.op == "call_function":
            if node.target in (operator.add, operator.iadd, torch.add):
                a, b = chans[node.args[0]], chans[node.args[1]]
                for x, y in zip(a, b):
                    parent[find(x)] = find(y)
                chans[node] = a
            elif node.target is torch.flatten:
                chans[node] = chans[node.args[0]]
            else:
                raise TypeError(f"unexpected function {node.target}")
        elif node.op == "output":
            continue
    roots = {find(a) for a in parent}
    pinned = {find(a) for a in fixed}
    return len(roots - pinned)


def main(argv):
    torch = _torch()
    if torch is None:
        print("torch/torchvision not installed: no yardstick")
        return
    if argv[:1] == ["--export"]:        # --export PATH [SIZE]: PATH and PATH's _ref.npz
        import pathlib

        import numpy as np

        path = pathlib.Path(argv[1])
        size = int(argv[2]) if len(argv) > 2 else 224
        export_resnet18(path, size)
        ref = resnet18_reference(size)
        np.savez(path.with_name(path.stem + "_ref.npz"), **ref)
        print(f"wrote {path} and {path.stem}_ref.npz: gamma2 {ref['gamma2']!r}, path norms "
              f"{ref['pathnorm_q1']!r} {ref['pathnorm_q2']!r} {ref['pathnorm_q4']!r}, "
              f"rescaling dim {ref['rescaling_dim']}")
        return
    net = folded_resnet18()
    print(f"ResNet-18 (BatchNorms folded): rescaling group dimension "
          f"{rescaling_dim_by_structure(net)} by structure, "
          f"{rescaling_dim_by_tracing(net)} by tracing")
    sizes = [int(a) for a in argv] or [224, 16]
    print(f"torch {torch.__version__}: ResNet-18 squared twin, float64, one thread, "
          f"forward + gradient w.r.t. the squared weights (best of 3)")
    for s in sizes:
        print(f"  3x{s}x{s}: {torch_yardstick_seconds(s):.4f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
