"""Thread counts: chosen by the user (:func:`threads`) or per call by problem size.

Two pools run pathgeom's numbers: numpy's BLAS (matrix products of the structured RNN
passes and the dense feed-forward passes) and numba's (the parallel :math:`\\kappa^{(2)}`
tangent sweeps).  On a machine where another process holds a core -- a laptop, a CI
runner, a shared node -- a BLAS call on small matrices split over two threads waits for
the busy core at every product; the same call on one thread does not.  So the library's
passes lower both counts to one for problems too small to gain from a second thread
(:func:`for_size`), and restore them afterwards.  They only ever *lower* a count: never
more BLAS or numba threads than the caller set (through the environment,
``threadpoolctl.threadpool_limits``, ``numba.set_num_threads`` or :func:`threads`).

threadpoolctl is a runtime dependency; its controller (a scan of the loaded libraries) is
made once and reused.
"""

import contextlib
import numbers
import threading

__all__ = ["threads", "for_size", "SMALL_WORK"]

#: Below this many multiply-adds per BLAS product a call runs on one thread (products of
#: ``H x H`` matrices up to about H = 256; measured by ``benchmarks/bench_threads.py``).
SMALL_WORK = 256 ** 3

_lock = threading.Lock()
_controller = None


def _blas():
    """The BLAS libraries' controller (threadpoolctl), made once."""
    global _controller
    with _lock:
        if _controller is None:
            from threadpoolctl import ThreadpoolController
            _controller = ThreadpoolController().select(user_api="blas")
        return _controller


@contextlib.contextmanager
def _limit(n, lower_only):
    """At most ``n`` BLAS and numba threads inside the block (exactly ``n`` when not
    ``lower_only``, within what numba was started with); both restored afterwards."""
    import numba
    before = numba.get_num_threads()
    target = min(n, before) if lower_only else min(n, numba.config.NUMBA_NUM_THREADS)
    changed = []
    for lib in _blas().lib_controllers:     # each library's own get/set (no scan)
        now = lib.get_num_threads()
        if now is not None and (now > n if lower_only else now != n):
            changed.append((lib, now))
    if target != before:
        numba.set_num_threads(target)
    try:
        for lib, _ in changed:
            lib.set_num_threads(n)
        yield
    finally:
        for lib, now in changed:
            lib.set_num_threads(now)
        if target != before:
            numba.set_num_threads(before)


def threads(n):
    """A context manager: run pathgeom (and anything else) with ``n`` BLAS and numba threads.

    Inside the block the library's own per-call choice (one thread for small problems)
    still applies, below ``n``.  Both counts are restored on exit.  numba's count cannot
    exceed what it was started with (``NUMBA_NUM_THREADS``, every core by default).

    Parameters
    ----------
    n : int
        At least 1.

    Examples
    --------
    >>> import numba, pathgeom
    >>> with pathgeom.threads(1):
    ...     numba.get_num_threads()
    1
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    return _limit(int(n), lower_only=False)


def for_size(work):
    """The per-call choice: one BLAS and numba thread when ``work`` (multiply-adds of the
    largest single product) is below :data:`SMALL_WORK`, else the counts as they are."""
    if work < SMALL_WORK:
        return _limit(1, lower_only=True)
    return contextlib.nullcontext()
