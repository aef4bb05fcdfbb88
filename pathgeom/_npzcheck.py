"""Size checks of ``.npz`` files before loading them (for ``load_params`` / ``evaluate``).

``numpy.load`` allocates whatever shape a file's header declares, so a crafted
``params.npz`` of a few hundred bytes can ask for tens of gigabytes.  :func:`npz_shapes`
reads only the headers; :func:`check_npz` refuses a member that is not a real numeric
array, whose declared size exceeds a limit, or that is not the expected length.
"""

import math
import zipfile

import numpy as np

from ._validation import real_dtype_problem

__all__ = ["npz_shapes", "check_npz"]


def npz_shapes(path):
    """``{name: (shape, dtype)}`` of every array in the ``.npz`` at ``path``, headers only.

    Raises
    ------
    ValueError
        Not a zip file, or a member that is not a ``.npy`` array (the message names it).
    """
    out = {}
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not an .npz file ({exc})") from None
    with zf:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with zf.open(info) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = reader(fh)
                except ValueError as exc:
                    raise ValueError(f"{path}: member {name!r} is not a .npy array "
                                     f"({exc})") from None
            out[name] = (tuple(shape), np.dtype(dtype))
    return out


def check_npz(path, key, n_expected=None, max_bytes=1 << 30):
    """Refuse (ValueError) the array ``key`` of ``path`` before it is loaded when it is
    missing, not a real numeric 1-D array, not of length ``n_expected`` or larger than
    ``max_bytes``; returns its ``(shape, dtype)``.

    Examples
    --------
    >>> import io, numpy as np, tempfile, os
    >>> from pathgeom._npzcheck import check_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "p.npz")
    >>> np.savez(path, p=np.zeros(3))
    >>> check_npz(path, "p", n_expected=3)
    ((3,), dtype('float64'))
    >>> check_npz(path, "p", n_expected=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...p.npz: 'p' has shape (3,) but the network has 4 parameters
    """
    shapes = npz_shapes(path)
    if key not in shapes:
        raise ValueError(f"{path}: no array {key!r} (it holds {sorted(shapes)})")
    shape, dtype = shapes[key]
    problem = real_dtype_problem(dtype)
    if problem is not None:
        raise ValueError(f"{path}: {key!r} {problem}")
    size = math.prod(shape) * dtype.itemsize
    if n_expected is not None and shape != (n_expected,):
        raise ValueError(f"{path}: {key!r} has shape {shape} but the network has "
                         f"{n_expected} parameters")
    if size > max_bytes:
        raise ValueError(f"{path}: {key!r} declares shape {shape} ({size:,} bytes), more "
                         f"than the {max_bytes:,} allowed; the file is damaged or not a "
                         f"parameter file")
    return shape, dtype
