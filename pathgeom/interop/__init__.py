"""Bringing networks in from other formats: :mod:`pathgeom.interop.onnx` (ONNX)."""
