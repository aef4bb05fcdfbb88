"""Tasks for training RNNs: data generators and loaders with one interface.

Every task has ``name``, ``n_in``, ``n_out``, ``T``, ``outputs`` ("last" or "all"),
``loss`` ("mse" or "xent"), ``sample(rng, B) -> (X, Y)`` (a fresh training batch drawn
only from the ``np.random.Generator`` given), a fixed ``test`` set ``(X, Y)`` (the same
for the same seed), ``valid`` (``(X, Y)`` or None), ``describe()`` (one line for logs) and
``baseline`` (the loss of a trivial predictor).  ``X`` is float64 (B, T, n_in); ``Y`` is
float64 (B, n_out) / (B, T, n_out) for "mse", int64 class labels (B,) / (B, T) for "xent".

- :class:`AddingProblem` -- the adding problem (the paper's section 5.2);
- :class:`SequentialDigits` -- pixel-by-pixel digits (built-in 8x8 or MNIST IDX files);
- :class:`CharLM` -- next-character prediction (built-in grammar corpus or a directory).

Nothing is downloaded, ever.
"""

from .adding import AddingProblem
from .charlm import CharLM, load_corpus
from .digits import SequentialDigits, load_idx, load_mnist

__all__ = ["AddingProblem", "SequentialDigits", "CharLM", "make_task", "load_idx",
           "load_mnist", "load_corpus", "TASKS"]

#: The task names of :func:`make_task` and their classes.
TASKS = {"adding": AddingProblem, "digits": SequentialDigits, "charlm": CharLM}


def make_task(name, **kwargs):
    """The task called ``name`` ("adding", "digits" or "charlm"), built with ``kwargs``.

    Examples
    --------
    >>> from pathgeom.tasks import make_task
    >>> make_task("adding", T=50, seed=3)
    AddingProblem(T=50, n_test=1000, seed=3)
    >>> make_task("copy")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'copy'; choose one of 'adding', 'digits', 'charlm'
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of "
                         f"{', '.join(repr(k) for k in TASKS)}")
    return TASKS[name](**kwargs)
