r"""pathgeom: exact path geometry of neural networks with shared weights.

A network :math:`\mathcal{N}(G, \pi, p)` is a :class:`SharedGraph`; the functions
:func:`gamma2`, :func:`kappa1`, :func:`kappa2`, :func:`kappa` and :func:`path_quantities`
compute the path regularizer and the Path-SGD curvature of Lemma 1 on it, with
numba-compiled passes.  :mod:`pathgeom.reference` holds the slow, exact definitions.
"""

from ._errors import GraphError, PathOverflowError
from .geometry import (PathQuantities, gamma2, kappa, kappa1, kappa2, kappa2_support,
                       path_quantities, squared_network)
from .graph import SharedGraph
from .constructors import CNN, MLP, RNN, Conv1d, Conv2d, Dense, cnn, mlp, rnn

__version__ = "0.1.0"

__all__ = [
    "CNN",
    "Conv1d",
    "Conv2d",
    "Dense",
    "MLP",
    "GraphError",
    "PathOverflowError",
    "PathQuantities",
    "RNN",
    "SharedGraph",
    "gamma2",
    "kappa",
    "kappa1",
    "kappa2",
    "kappa2_support",
    "cnn",
    "mlp",
    "path_quantities",
    "rnn",
    "squared_network",
]
