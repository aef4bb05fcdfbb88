"""Exception types raised by pathgeom."""

__all__ = ["GraphError", "PathOverflowError", "PathUnderflowError"]


class GraphError(ValueError):
    """A graph that is not a valid network N(G, pi, p).

    Raised by every :class:`~pathgeom.SharedGraph` constructor with a message that names
    the offending node, edge or parameter index and says what to change.
    """


class PathOverflowError(OverflowError):
    """A path quantity (gamma^2, kappa, an output) does not fit in float64.

    The message names the first node or parameter where the value stopped being finite.
    Path sums grow like products of squared weights along paths (for an RNN roughly like
    rho(W_rec * W_rec)**T); scaling the weights down, or shortening the paths, brings them
    back into range.  A feasible node-wise rescaling does *not* help: it leaves every path
    product unchanged.
    """


class PathUnderflowError(PathOverflowError):
    """A path quantity lost to underflow: a value that is representable in float64 (or a
    non-zero value) came out 0 or imprecise because a factor of it is below the float64
    range.

    A subclass of :class:`PathOverflowError`, so code that catches range errors catches
    both.  The squared-network quantities (:func:`pathgeom.gamma2`, :func:`pathgeom.kappa`,
    ...) never raise it: they recompute on scaled values instead.  Raised where a
    computation cannot do that (the message says which and what to change); scaling the
    weights *up* (or by a feasible rescaling that balances them) brings them back in range.
    """
