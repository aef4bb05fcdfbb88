"""Graph constructors: networks people train, built as SharedGraphs with readable layouts."""

from ._base import Layout, Network
from .rnn import RNN, rnn

__all__ = ["Layout", "Network", "RNN", "rnn"]
