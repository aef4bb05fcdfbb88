"""Thread counts: pathgeom.threads(n), and the per-call choice that only ever lowers them."""

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import pathgeom
from pathgeom import _threads

from helpers import assert_close


def _blas():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    """Run the test with two numba and BLAS threads (the machine default here), restored."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("these tests need numba to start with at least 2 threads")
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        yield
    numba.set_num_threads(before)


def test_threads_sets_and_restores(two_threads):
    with pathgeom.threads(1):
        assert numba.get_num_threads() == 1
        assert set(_blas()) == {1}
    assert numba.get_num_threads() == 2 and set(_blas()) == {2}


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_threads_refuses(bad):
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        pathgeom.threads(bad)


def test_small_work_runs_on_one_thread_and_restores(two_threads):
    with _threads.for_size(10):
        assert numba.get_num_threads() == 1 and set(_blas()) == {1}
    assert numba.get_num_threads() == 2 and set(_blas()) == {2}
    with _threads.for_size(_threads.SMALL_WORK):
        assert numba.get_num_threads() == 2 and set(_blas()) == {2}


def test_never_more_than_the_caller_set(two_threads):
    with threadpool_limits(limits=1, user_api="blas"):
        with _threads.for_size(10 ** 15):
            assert set(_blas()) == {1}
    numba.set_num_threads(1)
    with _threads.for_size(10 ** 15):
        assert numba.get_num_threads() == 1
    with pathgeom.threads(1):
        with _threads.for_size(10 ** 15):
            assert numba.get_num_threads() == 1 and set(_blas()) == {1}


def test_restored_after_an_error(two_threads):
    with pytest.raises(RuntimeError):
        with _threads.for_size(10):
            raise RuntimeError("inside")
    assert numba.get_num_threads() == 2 and set(_blas()) == {2}


def test_library_calls_leave_counts_and_results_alone(two_threads):
    """The structured RNN passes, the generic engine and the dense CNN choose their threads
    per call; afterwards the counts are the caller's, and the numbers do not depend on it."""
    rng = np.random.default_rng(0)
    net = pathgeom.rnn(2, 8, 1, 6)
    p = net.init(rng, "irnn")
    X = rng.standard_normal((3, 6, 2))
    cnn = pathgeom.cnn((1, 6, 6), [pathgeom.Conv2d(2, 3)], n_out=2)
    pc = cnn.init(rng)
    Xc = rng.standard_normal((2, 1, 6, 6))
    calls = [lambda: net.path_quantities(p).kappa, lambda: net.forward(p, X),
             lambda: net.backward(p, X, np.ones((3, 1))),
             lambda: pathgeom.kappa(net.graph, p), lambda: cnn.backward(pc, Xc, np.ones((2, 2)))]
    first = [f() for f in calls]
    assert numba.get_num_threads() == 2 and set(_blas()) == {2}
    with pathgeom.threads(1):
        again = [f() for f in calls]
    for a, b in zip(first, again):
        assert_close(a, b, rtol=1e-13, scale=1e-300)


def test_blocks_in_two_python_threads_leave_the_counts_as_they_were(two_threads):
    """BLAS counts are process-wide: overlapping blocks in two threads (A lowers, B enters,
    A leaves, B leaves) must end with the counts of before."""
    import threading
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def thread_a():
        with _threads.for_size(1):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def thread_b():
        a_in.wait(10)
        with pathgeom.threads(2):
            b_in.set()
            a_out.wait(10)

    ts = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert set(_blas()) == {2} and numba.get_num_threads() == 2
