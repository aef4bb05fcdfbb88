"""Make the PyTorch-exported ONNX fixtures of tests/test_onnx.py (run by hand, not by the tests).

PyTorch is not a test dependency.  To remake the fixtures, in a throwaway environment::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 onnx
    /tmp/torchvenv/bin/python tests/data/onnx/make_fixtures.py

Each model is exported with ``torch.onnx.export(..., dynamo=False)`` (the TorchScript
exporter), opset 17, float32, a dynamic batch axis, in eval mode; beside each ``NAME.onnx``
goes ``NAME.npz`` holding a batch ``X`` (ONNX-shaped) and PyTorch's output ``Y`` on it.
"""

import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
OPSET = 17


def modules(torch, nn):
    """The three PyTorch modules (defined here so that importing this file needs no torch)."""

    class ReluRNN(nn.Module):
        """nn.RNN(nonlinearity="relu") over T steps, then a linear read-out of the last state."""

        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(input_size=2, hidden_size=4, nonlinearity="relu")
            self.out = nn.Linear(4, 1)

        def forward(self, x):            # x: (T, batch, 2)
            y, _ = self.rnn(x)
            return self.out(y[-1])

    class TiedMLP(nn.Module):
        """One hidden layer applied twice (tied weights), then a linear output layer."""

        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(3, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            h = torch.relu(self.hidden(x))
            h = torch.relu(self.hidden(h))
            return self.out(h)

    class SmallCNN(nn.Module):
        """Two 2-D convolutions (strides, padding), flatten, linear output."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, kernel_size=3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(2, 3, kernel_size=2)
            self.out = nn.Linear(3 * 3 * 3, 2)

        def forward(self, x):            # x: (batch, 1, 8, 8)
            h = torch.relu(self.conv1(x))
            h = torch.relu(self.conv2(h))
            return self.out(torch.flatten(h, 1))

    return ReluRNN, TiedMLP, SmallCNN


def export(torch, name, module, x, batch_axis):
    module.eval()
    path = HERE / f"{name}.onnx"
    torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {batch_axis: "batch"}, "y": {0: "batch"}},
                      opset_version=OPSET, dynamo=False)
    with torch.no_grad():
        y = module(x)
    np.savez(HERE / f"{name}.npz", X=x.numpy(), Y=y.numpy())
    print(f"wrote {path.name}")


def main():
    import torch
    from torch import nn

    ReluRNN, TiedMLP, SmallCNN = modules(torch, nn)
    torch.manual_seed(0)
    export(torch, "torch_rnn", ReluRNN(), torch.randn(6, 5, 2), batch_axis=1)
    export(torch, "torch_tied_mlp", TiedMLP(), torch.randn(5, 3), batch_axis=0)
    export(torch, "torch_cnn", SmallCNN(), torch.randn(5, 1, 8, 8), batch_axis=0)


if __name__ == "__main__":
    main()
