r"""pathgeom: exact path geometry of neural networks with shared weights.

A network :math:`\mathcal{N}(G, \pi, p)` is a :class:`SharedGraph`; the functions
:func:`gamma2`, :func:`kappa1`, :func:`kappa2`, :func:`kappa` and :func:`path_quantities`
compute the path regularizer and the Path-SGD curvature of Lemma 1 on it, with
numba-compiled passes.  :func:`rnn`, :func:`cnn` and :func:`mlp` build the networks people
train; :func:`rescaling_group`, :func:`rescale`, :func:`verify_lemma1` and
:func:`verify_invariance` check Definition 2, Theorems 1-2 and Lemma 1;
:func:`path_sgd_step` / :class:`PathSGD` take the Path-SGD step of eq. (8).
:mod:`pathgeom.reference` holds the slow, exact definitions.
"""

from ._errors import GraphError, PathOverflowError
from .geometry import (PathQuantities, gamma2, kappa, kappa1, kappa2, kappa2_support,
                       path_quantities, squared_network)
from .graph import SharedGraph
from .invariance import (InvarianceReport, Lemma1Report, RescalingGroup, rescale,
                         rescaling_group, verify_invariance, verify_lemma1)
from .optim import SGD, PathSGD, path_sgd_step, sgd_step
from .constructors import CNN, MLP, RNN, Conv1d, Conv2d, Dense, cnn, mlp, rnn

__version__ = "0.1.0"

__all__ = [
    "CNN",
    "Conv1d",
    "Conv2d",
    "Dense",
    "GraphError",
    "InvarianceReport",
    "Lemma1Report",
    "MLP",
    "PathOverflowError",
    "PathQuantities",
    "PathSGD",
    "RescalingGroup",
    "RNN",
    "SGD",
    "SharedGraph",
    "cnn",
    "gamma2",
    "kappa",
    "kappa1",
    "kappa2",
    "kappa2_support",
    "mlp",
    "path_quantities",
    "path_sgd_step",
    "rescale",
    "rescaling_group",
    "rnn",
    "sgd_step",
    "squared_network",
    "verify_invariance",
    "verify_lemma1",
]
