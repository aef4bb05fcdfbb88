r"""The adding problem (Hochreiter & Schmidhuber 1997; the paper's section 5.2).

A sequence has two channels: values :math:`u_t \sim U[0, 1]` and a marker channel that is
1 at exactly two positions and 0 elsewhere.  The first marker :math:`i` is uniform over
the first half of the sequence and the second :math:`j` uniform over the second half,

.. math::

    i \sim U\{0, \dots, \lfloor T/2 \rfloor - 1\}, \qquad
    j \sim U\{\lfloor T/2 \rfloor, \dots, T - 1\}, \qquad
    y = u_i + u_j ,

so the network must carry :math:`u_i` across at least one and up to :math:`T - 1` steps.
Predicting the mean :math:`E[y] = 1` gives the mean squared error
:math:`\operatorname{Var}(u_i + u_j) = 2/12 = 1/6` (the paper's "16.7" in units of
:math:`10^{-2}`), the baseline a trained model must beat.

This module also holds the small argument checks the other task modules share.
"""


import numpy as np

from .._validation import check_int, check_rng

__all__ = ["AddingProblem"]


# the shared argument checks (other task modules import them from here)
_check_int = check_int
_check_rng = check_rng


def _fixed_rng(seed, stream):
    """The generator of a task's fixed data (test set, corpus) for ``seed``.

    It is derived from ``(seed, stream)``, so it never coincides with the training stream
    a user makes with ``np.random.default_rng(seed)``.
    """
    seed = _check_int(seed, "seed", 0)
    return np.random.default_rng([seed, 0x7A5C, stream])


def _readonly(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


class AddingProblem:
    r"""The adding problem of length ``T``: regress the sum of the two marked values.

    Parameters
    ----------
    T : int
        Sequence length, >= 2 (one position in each half).
    n_test : int
        Size of the fixed test set.
    seed : int
        Seed of the test and validation sets (the same seed always gives the same sets).
    n_valid : int
        Size of the fixed validation set (for choosing among runs without looking at the
        test set, as the IRNN protocol's "best of 10 initialisations" does).  Training
        batches come only from the ``rng`` given to :meth:`sample`.

    Attributes
    ----------
    name, n_in, n_out, T, outputs, loss
        ``"adding"``, 2, 1, ``T``, ``"last"``, ``"mse"``.
    test : (X, Y)
        The fixed test set: X (n_test, T, 2), Y (n_test, 1), float64, read-only.
    valid : (X, Y)
        The fixed validation set, ``n_valid`` sequences drawn independently of the test set.
    baseline : float
        1/6, the mean squared error of predicting the mean 1 (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from pathgeom.tasks.adding import AddingProblem
    >>> task = AddingProblem(T=6, n_test=100, seed=0)
    >>> X, Y = task.sample(np.random.default_rng(1), 2)
    >>> X.shape, Y.shape, X.dtype
    ((2, 6, 2), (2, 1), dtype('float64'))
    >>> X[0, :, 1]                    # one marker in positions 0-2, one in 3-5
    array([0., 1., 0., 0., 1., 0.])
    >>> bool(np.allclose(Y[:, 0], (X[..., 0] * X[..., 1]).sum(axis=1)))
    True
    """

    name = "adding"
    n_in = 2
    n_out = 1
    outputs = "last"
    loss = "mse"
    baseline = 1.0 / 6.0

    def __init__(self, T, n_test=1000, seed=0, n_valid=1000):
        self.T = _check_int(T, "T (the sequence length of the adding problem)", 2)
        self.n_test = _check_int(n_test, "n_test", 1)
        self.n_valid = _check_int(n_valid, "n_valid", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.test = _readonly(*self._generate(_fixed_rng(self.seed, 1), self.n_test))
        self._valid = None

    @property
    def valid(self):
        """The fixed validation set ``(X, Y)`` (made on first use)."""
        if self._valid is None:
            self._valid = _readonly(*self._generate(_fixed_rng(self.seed, 2), self.n_valid))
        return self._valid

    def _generate(self, rng, B):
        T, half = self.T, self.T // 2
        from .._memory import check_fits
        check_fits(B * T * 2 * 8 * 2, f"{B:,} adding-problem sequences of length T = {T:,}",
                   "choose a smaller T (--T) or batch (--batch)")
        X = np.zeros((B, T, 2))
        X[..., 0] = rng.random((B, T))
        rows = np.arange(B)
        first = rng.integers(0, half, size=B)
        second = rng.integers(half, T, size=B)
        X[rows, first, 1] = 1.0
        X[rows, second, 1] = 1.0
        Y = (X[rows, first, 0] + X[rows, second, 0])[:, None]
        return X, Y

    def sample(self, rng, B):
        """A fresh training batch ``(X, Y)``, X (B, T, 2), Y (B, 1), drawn from ``rng``."""
        return self._generate(_check_rng(rng), _check_int(B, "B (the batch size)", 1))

    def describe(self):
        return (f"adding problem: T={self.T}, markers in [0, {self.T // 2}) and "
                f"[{self.T // 2}, {self.T}), {self.n_test} test sequences (seed {self.seed}); "
                f"predicting 1 gives MSE 1/6")

    def __repr__(self):
        return f"AddingProblem(T={self.T}, n_test={self.n_test}, seed={self.seed})"
