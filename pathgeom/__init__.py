r"""pathgeom: exact path geometry of neural networks with shared weights.

A network :math:`\mathcal{N}(G, \pi, p)` is a :class:`SharedGraph`; the functions
:func:`gamma2`, :func:`kappa1`, :func:`kappa2`, :func:`kappa` and :func:`path_quantities`
compute the path regularizer and the Path-SGD curvature of Lemma 1 on it, with
numba-compiled passes.  :func:`rnn`, :func:`cnn` and :func:`mlp` build the networks people
train; :func:`rescaling_group`, :func:`rescale`, :func:`verify_lemma1` and
:func:`verify_invariance` check Definition 2, Theorems 1-2 and Lemma 1;
:func:`path_sgd_step` / :class:`PathSGD` take the Path-SGD step of eq. (8), and
:func:`train` runs SGD, Path-SGD or path-Adam on the paper's tasks (:mod:`pathgeom.tasks`).
:func:`from_onnx` / :func:`to_onnx` read and write ONNX models (optional ``[onnx]`` extra).
:mod:`pathgeom.reference` holds the slow, exact definitions.
"""

from . import _launch  # noqa: F401  (a quiet Ctrl-C while the command line starts)
from ._errors import GraphError, PathOverflowError, PathUnderflowError
from ._threads import threads
from .geometry import (PathQuantities, gamma2, kappa, kappa1, kappa2, kappa2_support,
                       path_norm, path_quantities, squared_network, squared_values)
from .graph import KIND_CODES, NODE_KINDS, Fixed, SharedGraph, fixed
from .edgelist import EdgeListError, dense_block, read_edge_list, write_edge_list
from .rescaling import RescalingGroup, rescale, rescaling_group
from .verify import InvarianceReport, Lemma1Report, verify_invariance, verify_lemma1
from .optim import SGD, PathSGD, path_sgd_step, sgd_step
from .constructors import CNN, MLP, RNN, Conv1d, Conv2d, Dense, cnn, mlp, rnn
from .plotting import draw_graph
from .interop.onnx import OnnxNetwork, from_onnx, to_onnx
from .tasks import AddingProblem, CharLM, SequentialDigits, make_task
from .training import (PathAdam, TrainResult, accuracy, bits_per_char, evaluate, load_params,
                    make_optimizer, mse_loss, save_params, softmax_cross_entropy, train)

# ``pathgeom.train`` is the training function; the module that holds it is
# ``pathgeom.training``.  Code written when the module was called ``pathgeom.train``
# (``from pathgeom.train import mse_loss``) still imports: the old module path names the
# same module object.
import sys as _sys
from . import training as _training

_sys.modules.setdefault(__name__ + ".train", _training)
del _sys

__version__ = "0.1.0"

__all__ = [
    "AddingProblem",
    "CharLM",
    "CNN",
    "Conv1d",
    "Conv2d",
    "Dense",
    "EdgeListError",
    "Fixed",
    "KIND_CODES",
    "NODE_KINDS",
    "dense_block",
    "GraphError",
    "InvarianceReport",
    "Lemma1Report",
    "MLP",
    "OnnxNetwork",
    "PathAdam",
    "PathOverflowError",
    "PathUnderflowError",
    "PathQuantities",
    "PathSGD",
    "RescalingGroup",
    "RNN",
    "SequentialDigits",
    "SGD",
    "SharedGraph",
    "TrainResult",
    "accuracy",
    "bits_per_char",
    "cnn",
    "draw_graph",
    "evaluate",
    "fixed",
    "from_onnx",
    "gamma2",
    "kappa",
    "kappa1",
    "kappa2",
    "kappa2_support",
    "load_params",
    "make_optimizer",
    "make_task",
    "mlp",
    "mse_loss",
    "path_norm",
    "path_quantities",
    "path_sgd_step",
    "read_edge_list",
    "rescale",
    "rescaling_group",
    "rnn",
    "save_params",
    "sgd_step",
    "softmax_cross_entropy",
    "squared_network",
    "squared_values",
    "threads",
    "to_onnx",
    "train",
    "verify_invariance",
    "verify_lemma1",
    "write_edge_list",
]
