"""Shared pieces of the ONNX import: the lazy ``onnx`` import, value types, advice texts."""

import numpy as np

_INSTALL = ("pathgeom's ONNX import and export need the optional onnx package, which is not "
            "installed; install the extra:\n    pip install 'pathgeom[onnx]'")

#: Lowest opset accepted: Squeeze/Unsqueeze take their axes as an input from opset 13 on.
MIN_OPSET = 13
#: Opset written by :func:`to_onnx`.
EXPORT_OPSET = 17

# node kinds during the import
_INPUT, _LINEAR, _RELU, _BIAS, _MAX = 0, 1, 2, 3, 4

_GENERIC_ADVICE = ("pathgeom computes the path geometry of DAG-ReLU networks (linear maps "
                   "with shared weights, biases, ReLU, identity and max-pooling units, fixed "
                   "weights such as residual sums and average pooling); rebuild this part of "
                   "the model with those, or cut the model before this node")
_ADVICE = {
    "Softmax": "export the logits: drop the final Softmax and apply it outside the network "
               "(pathgeom's outputs are linear)",
    "LogSoftmax": "export the logits: drop the final LogSoftmax and apply it outside the "
                  "network (pathgeom's outputs are linear)",
    "GlobalMaxPool": "a global max over all positions: use MaxPool with a kernel as large as "
                     "the input (kernel_shape = the spatial shape), which pathgeom reads as "
                     "max-pooling units",
    "LpPool": "Lp pooling is not positively homogeneous of degree one in each path; use "
              "MaxPool or AveragePool",
    "LSTM": "gated units are not ReLU networks; use the RNN operator with "
            "activations=['Relu'] (torch.nn.RNN(nonlinearity='relu'))",
    "GRU": "gated units are not ReLU networks; use the RNN operator with "
           "activations=['Relu'] (torch.nn.RNN(nonlinearity='relu'))",
    "Mul": "a product with a constant is a fixed weight and a product of two tensors is not a "
           "path network; fold constant scales into the weights before export",
    "Div": "a division is a fixed weight or not a path network; fold constant scales into "
           "the weights before export",
    "Sub": "a subtraction is a sum with fixed weights +1 and -1; write it as an Add of a "
           "negated weight (fold the sign into the preceding layer's initializer)",
    "Sum": "write the sum as a chain of two-input Add nodes, which pathgeom reads as "
           "fixed-weight-1 edges",
    "Pad": "explicit padding: use the pads attribute of the Conv or pooling node instead",
    "LayerNormalization": "a normalisation over features divides by a data-dependent "
                          "standard deviation, which is not a path network; only "
                          "BatchNormalization in evaluation mode (a fixed per-channel "
                          "affine map) is read",
    "InstanceNormalization": "a normalisation per example divides by a data-dependent "
                             "standard deviation, which is not a path network; use "
                             "BatchNormalization in evaluation mode",
}
for _op in ("Tanh", "Sigmoid", "LeakyRelu", "Elu", "Selu", "Gelu", "HardSigmoid", "Softplus",
            "PRelu", "Clip", "Abs", "Exp", "Log", "HardSwish", "Mish", "Celu", "ThresholdedRelu"):
    _ADVICE[_op] = ("only ReLU keeps a network a path network (positively homogeneous, "
                    "so gamma^2 and the rescaling symmetry are those of the paper); replace "
                    "this activation by Relu")
del _op


def _onnx():
    """The onnx module, or an ImportError saying how to install it."""
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return onnx


class _Units:
    """Activations: node ids in the tensor's full shape, the batch axis kept with size 1."""

    __slots__ = ("ids", "batch")

    def __init__(self, ids, batch):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.batch = int(batch)

    def per_example(self):
        """The ids with the batch axis removed."""
        return np.moveaxis(self.ids, self.batch, 0)[0]


class _Params:
    """Weights: parameter indices in the tensor's shape; -1 marks a constant zero."""

    __slots__ = ("idx",)

    def __init__(self, idx):
        self.idx = np.asarray(idx, dtype=np.int64)


def _describe(v):
    if isinstance(v, _Units):
        return "an activation tensor"
    if isinstance(v, _Params):
        return "a weight tensor (initializer)"
    return "a constant"


__all__ = ["MIN_OPSET", "EXPORT_OPSET"]
