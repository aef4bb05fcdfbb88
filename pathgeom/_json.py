"""JSON values from numpy results: one conversion for run files, reports and ``--json``."""

import math

import numpy as np

__all__ = ["jsonable"]


def jsonable(obj):
    """Arrays, numpy scalars and tuples as JSON values, non-finite floats as None (strict
    JSON has no nan or inf), anything else unknown as its ``str``.

    >>> import numpy as np
    >>> jsonable({"a": np.array([1.0, np.inf]), "b": (np.int64(2), np.bool_(True))})
    {'a': [1.0, None], 'b': [2, True]}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)
