"""Exception types raised by pathgeom."""

__all__ = ["GraphError", "PathOverflowError"]


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
