"""Validation and conversion of numeric inputs (done once, in the public wrappers)."""

import numpy as np

__all__ = ["check_int", "check_real", "check_rng", "as_params", "as_batch", "as_real_array", "check_scale", "first_nonfinite_row",
           "real_dtype_problem", "check_bool"]


def real_dtype_problem(dtype):
    """None if ``dtype`` is a real number type pathgeom accepts, else why not (one rule).

    Accepted: floating, integer and bool.  Refused: complex (even with a zero imaginary
    part: silently dropping it would change the numbers), object, strings, dates and
    time spans, structured and void types.
    """
    if np.issubdtype(dtype, np.complexfloating):
        return (f"dtype {dtype} is complex; pathgeom works in real numbers only (pass the "
                f"real part explicitly, e.g. a.real, if that is what you mean)")
    if dtype.kind in "mM":
        return f"dtype {dtype} holds dates or time spans, not numbers"
    if dtype == object or not (np.issubdtype(dtype, np.floating)
                               or np.issubdtype(dtype, np.integer) or dtype == bool):
        return f"got dtype {dtype}, not a real numeric type (float, int or bool)"
    return None


def _as_float_array(a, name):
    """``a`` as a C-contiguous float64 array; complex, object and other odd dtypes refused."""
    if isinstance(a, (str, bytes)):
        raise ValueError(f"{name} must be a real numeric array, got the string {a!r}")
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:   # ragged nesting, unconvertible objects
        raise ValueError(f"{name} must be a rectangular real numeric array: {exc}") from None
    problem = real_dtype_problem(arr.dtype)
    if problem is not None:
        raise ValueError(f"{name} must be a real numeric array: {problem}")
    with np.errstate(over="ignore"):         # float128 beyond float64: inf, caught by callers
        return np.ascontiguousarray(arr, dtype=np.float64)


def as_real_array(a, name):
    """Public form of the dtype rule: ``a`` as float64, refusing complex/object/odd dtypes."""
    return _as_float_array(a, name)


def check_scale(value, name, allow_zero=True):
    """A finite real number >= 0 (> 0 when ``allow_zero`` is False), as a float."""
    import numbers
    if (not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_))
            or not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, "
                         f"got {value!r}")
    return float(value)


def as_params(p, n_params, name="p", finite=True):
    """``p`` as a C-contiguous float64 vector of length ``n_params`` with finite entries
    (``finite=False``: the caller checks finiteness itself, e.g. from a reduction it needs
    anyway, and calls this again with ``finite=True`` for the message)."""
    arr = _as_float_array(p, name)
    if arr.shape != (n_params,):
        raise ValueError(f"{name} has shape {arr.shape} but the graph has {n_params} "
                         f"parameters; pass a 1-D array of length n_params = {n_params}")
    if finite and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name}[{bad}] = {arr[bad]} is not finite; every parameter must be "
                         f"a finite number")
    return arr


def as_batch(X, width, name, width_name):
    """``X`` as a C-contiguous float64 (B, width) array; also whether it was 1-D."""
    arr = _as_float_array(X, name)
    squeeze = arr.ndim == 1
    if squeeze:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} has shape {np.shape(X)}; expected ({width_name},) or "
                         f"(B, {width_name}) with {width_name} = {width}")
    if not np.isfinite(arr).all():
        r, c = np.argwhere(~np.isfinite(arr))[0]
        where = f"[{c}]" if squeeze else f"[{r}, {c}]"
        raise ValueError(f"{name}{where} = {arr[r, c]} is not finite; inputs must be finite")
    return arr, squeeze


def first_nonfinite_row(H):
    """Index of the first row of ``H`` (1-D or 2-D) holding a non-finite value."""
    bad = ~np.isfinite(H)
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    return int(np.argmax(bad))


def check_int(value, name, minimum=0):
    """``value`` as an int >= ``minimum`` (bools refused), or a ValueError naming ``name``.

    >>> check_int(3, "T", 1)
    3
    >>> check_int(0, "T", 1)
    Traceback (most recent call last):
    ...
    ValueError: T must be an integer >= 1, got 0
    """
    import numbers
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(value, name, low=0.0, strict=True, allow_none=False):
    """``value`` as a finite float ``> low`` (``>= low`` when not ``strict``; None passes
    when ``allow_none``), or a ValueError naming ``name``.

    >>> check_real(1e-3, "lr")
    0.001
    >>> check_real(float("nan"), "lr")
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number > 0, got nan
    """
    import numbers
    if value is None and allow_none:
        return None
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value < low or (strict and value == low)):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, "
                         f"got {value!r}")
    return float(value)


def check_rng(rng, name="rng"):
    """``rng`` if it is a :class:`numpy.random.Generator`, else a TypeError that says how to
    make one."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name} must be a numpy.random.Generator (np.random.default_rng(seed)),"
                        f" got {type(rng).__name__}")
    return rng


def check_bool(value, name):
    """``value`` if it is a bool (Python or numpy), else a TypeError naming ``name``.

    Arguments that mean yes or no take bools only: the truthiness of anything else (the
    string ``"False"`` is true) would silently mean the opposite of what was written.

    >>> check_bool(True, "bias")
    True
    >>> check_bool("False", "bias")
    Traceback (most recent call last):
    ...
    TypeError: bias must be True or False, got the str 'False'
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got the {type(value).__name__} {value!r}")
