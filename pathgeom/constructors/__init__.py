"""Graph constructors: networks people train, built as SharedGraphs with readable layouts."""

from ._base import Layout, Network
from .cnn import CNN, Conv1d, Conv2d, Dense, FeedForward, cnn
from .mlp import MLP, mlp
from .rnn import RNN, rnn

__all__ = ["CNN", "Conv1d", "Conv2d", "Dense", "FeedForward", "Layout", "MLP", "Network",
           "RNN", "cnn", "mlp", "rnn"]
