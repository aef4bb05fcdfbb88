"""The one tolerance helper used by every test."""

import numpy as np


def assert_close(actual, desired, rtol=1e-12, scale=None, err_msg=""):
    """Elementwise ``|actual - desired| <= rtol * max(|desired|, scale)``.

    Relative by default; ``scale`` (a number or an array broadcast against ``desired``)
    sets the magnitude against which error is measured where cancellation makes
    ``|desired|`` itself a poor yardstick (e.g. the sum of ``|terms|``).
    """
    actual = np.asarray(actual, dtype=float)
    desired = np.asarray(desired, dtype=float)
    assert actual.shape == desired.shape, f"shape {actual.shape} != {desired.shape} {err_msg}"
    yard = np.abs(desired) if scale is None else np.maximum(np.abs(desired), scale)
    err = np.abs(actual - desired)
    bad = err > rtol * yard
    if np.any(bad):
        k = np.flatnonzero(np.ravel(bad))[0]
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} entries differ beyond rtol={rtol}; first at flat "
            f"index {k}: actual {np.ravel(actual)[k]!r}, desired {np.ravel(desired)[k]!r} "
            f"{err_msg}")


def as_floats(fractions):
    return np.array([float(f) for f in fractions])
