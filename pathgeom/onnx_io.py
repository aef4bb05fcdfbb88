"""The former home of the ONNX import and export, kept so that ``pathgeom.onnx_io`` and
``from pathgeom.onnx_io import from_onnx`` still work: everything now lives in the package
:mod:`pathgeom.interop.onnx`."""

from .interop.onnx import (_ADVICE, _GENERIC_ADVICE, EXPORT_OPSET, MIN_OPSET, OnnxNetwork,
                           _onnx, from_onnx, to_onnx)

__all__ = ["OnnxNetwork", "from_onnx", "to_onnx"]
