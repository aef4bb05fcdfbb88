"""Validation and conversion of numeric inputs (done once, in the public wrappers)."""

import numpy as np

__all__ = ["as_params", "as_batch", "first_nonfinite_row"]


def _as_float_array(a, name):
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)
                                   or arr.dtype == bool):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_params(p, n_params, name="p"):
    """``p`` as a C-contiguous float64 vector of length ``n_params`` with finite entries."""
    arr = _as_float_array(p, name)
    if arr.shape != (n_params,):
        raise ValueError(f"{name} has shape {arr.shape} but the graph has {n_params} "
                         f"parameters; pass a 1-D array of length n_params = {n_params}")
    if not np.isfinite(arr).all():
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
