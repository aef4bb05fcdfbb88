"""Compatibility module: the RNN's edge arrays are built in
:mod:`pathgeom.constructors._rnn_edges` (beside the constructor that uses them)."""

from .constructors._rnn_edges import rnn_arrays, rnn_param_blocks  # noqa: F401

__all__ = ["rnn_arrays", "rnn_param_blocks"]
