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

__all__ = ["threads", "for_size", "SMALL_WORK", "SEQUENTIAL_WORK"]

#: Below this many multiply-adds in its largest product a call runs on one thread: on a
#: quiet machine two threads already halve a 128 x 128 product here, so only smaller ones
#: stay on one (the dense feed-forward passes, the generic kappa2 sweeps).
SMALL_WORK = 128 ** 3
#: The same bound for the structured RNN passes, whose time loops chain many small
#: products and element-wise kernels: measured on 2 cores, they were never faster on two
#: threads (exact kappa at T = 100, H = 512: 169 ms on two, 138 ms on one), so they run on
#: one thread up to H = 2048 (``benchmarks/bench_targets.py quiet busy``).
SEQUENTIAL_WORK = 2048 ** 3

_lock = threading.Lock()
_make_lock = threading.Lock()
_controller = None
#: [thread ident or None, nesting depth]: the Python thread whose blocks set the BLAS
#: counts now (they are process-wide; blocks in other threads then leave them alone)
_blas_owner = [None, 0]


def _blas():
    """The BLAS libraries' controller (threadpoolctl), made once."""
    global _controller
    with _make_lock:
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
    libs = _blas().lib_controllers
    me = threading.get_ident()
    changed = []
    with _lock:   # BLAS counts are process-wide: one Python thread changes them at a time
        owner, depth = _blas_owner
        if owner in (None, me):
            for lib in libs:                 # each library's own get/set (no scan)
                now = lib.get_num_threads()
                if now is not None and (now > n if lower_only else now != n):
                    changed.append((lib, now))
            for lib, _ in changed:
                lib.set_num_threads(n)
            _blas_owner[:] = [me, depth + 1]
            mine = True
        else:                                # another thread holds them: leave them be
            mine = False
    if target != before:                     # numba's count is per thread
        numba.set_num_threads(target)
    try:
        yield
    finally:
        if mine:
            with _lock:
                for lib, now in reversed(changed):
                    lib.set_num_threads(now)
                depth = _blas_owner[1] - 1
                _blas_owner[:] = [me if depth else None, depth]
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


def for_size(work, small=None):
    """The per-call choice: one BLAS and numba thread when ``work`` (multiply-adds of the
    largest single product) is below ``small`` (default :data:`SMALL_WORK`), else the
    counts as they are."""
    if work < (SMALL_WORK if small is None else small):
        return _limit(1, lower_only=True)
    return contextlib.nullcontext()
