"""Files in and out: the one place that decides what pathgeom reads and how it writes.

Reading: :func:`check_input_file` refuses what is not a regular file (a directory, a FIFO,
a device such as ``/dev/zero``, whose read never ends) and files larger than a limit,
with a message that says which; :func:`read_npy` checks a ``.npy`` header (its shape
against what is expected, and that the file *is* a ``.npy``) before reading the data;
:func:`check_onnx_file` and :func:`check_onnx_external_data` are the ONNX importer's checks
(a truncated, text or garbage file, a directory, a symlink, external data outside the
model's directory: :class:`~pathgeom.GraphError` naming the file).

Writing: :func:`check_output_target` refuses a target that is a directory, a device or
anything but a regular file, or whose directory is missing or read-only;
:func:`atomic_write_bytes` writes through a temporary file and :func:`os.replace` (so a
reader or a crash never sees half a file) and turns a failure into :class:`OutputError`
(an :class:`OSError` that names the file; a full disk leaves the old file intact);
:func:`save_figure` renders a matplotlib figure in memory and writes it that way.
"""

import errno
import os
import stat

__all__ = ["OutputError", "check_input_file", "check_output_target", "atomic_write_bytes",
           "save_figure", "read_npy", "check_onnx_file", "check_onnx_external_data",
           "parse_onnx_file", "check_onnx_model",
           "DISK_ERRNOS"]

#: errnos of a disk that fails under a run (exit 1: the run may be resumed once fixed);
#: every other write error is a bad target (exit 2).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG})


class OutputError(OSError):
    """A file pathgeom could not write (full disk, read-only file system, ...); the message
    names the file.  ``errno`` is the underlying error's."""

    def __str__(self):
        return str(self.strerror)


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_input_file(path, what="file", max_bytes=None):
    """Refuse ``path`` unless it is a regular file (after symlinks) of at most ``max_bytes``.

    Raises FileNotFoundError (missing) or ValueError (a directory, FIFO, device, socket, or
    too large), each naming ``what`` and the path.  Returns the size in bytes.

    >>> check_input_file("/dev/zero", "graph file")
    Traceback (most recent call last):
    ...
    ValueError: graph file '/dev/zero' is a character device, not a regular file
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path!r}: no such file") from None
    except NotADirectoryError:
        raise FileNotFoundError(f"{what} {path!r}: no such file (a part of the path is not "
                                f"a directory)") from None
    except OSError as exc:
        raise ValueError(f"{what} {path!r} cannot be read: {exc.strerror or exc}") from None
    kind = _kind(st.st_mode)
    if kind is not None:
        raise ValueError(f"{what} {path!r} is {kind}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ValueError(f"{what} {path!r} is {st.st_size:,} bytes, more than the "
                         f"{max_bytes:,} accepted")
    return st.st_size


def check_output_target(path, flag="the output file"):
    """Refuse (ValueError naming ``flag`` and the path) a target that exists and is not a
    regular file, or whose directory does not exist, is not a directory or is read-only.
    Returns the path as a string."""
    path = os.fspath(path)
    if path == "":
        raise ValueError(f"{flag} is empty: give a file name")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ValueError(f"{flag} {path!r} cannot be used: {exc.strerror or exc}") from None
    if st is not None:
        kind = _kind(st.st_mode)
        if kind is not None:
            raise ValueError(f"{flag} {path!r} is {kind}: pathgeom writes regular files only "
                             f"(choose a file name)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path!r}: the directory {parent!r} does not exist")
    if _read_only(parent):
        raise ValueError(f"{flag} {path!r}: the directory {parent!r} is read-only")
    return path


def _read_only(directory):
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except (OSError, AttributeError):
        pass
    return not os.access(directory, os.W_OK | os.X_OK)


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same directory, fsync and
    :func:`os.replace`.  A target that exists and is not a regular file (a device, a
    directory, a FIFO) is refused (ValueError) before anything is written; a failed write
    (a full disk, a read-only file system) removes the temporary file, leaves ``path`` as
    it was and raises :class:`OutputError` naming ``path``."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and _kind(st.st_mode) is not None:
        raise ValueError(f"{path!r} is {_kind(st.st_mode)}: pathgeom writes regular files "
                         f"only, and would replace it")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        code = exc.errno
        what = ("the disk is full" if code in (errno.ENOSPC, errno.EDQUOT)
                else exc.strerror or str(exc))
        raise OutputError(code, f"cannot write {path}: {what}"
                          + ("; the previous version of the file is intact"
                             if os.path.exists(path) else "")
                          + ("; a training run can be resumed (--resume) from its last "
                             "checkpoint once there is space" if code in DISK_ERRNOS
                             else "")) from None
    finally:
        if os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass


def save_figure(fig, path, **kwargs):
    """``fig.savefig`` into memory, then :func:`atomic_write_bytes` to ``path`` (so a
    device, a full disk or a read-only directory is reported, never silently lost)."""
    import io
    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    if "format" not in kwargs and ext:
        kwargs["format"] = ext
    buf = io.BytesIO()
    fig.savefig(buf, **kwargs)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_npy(path, n_expected, what="--params"):
    """The 1-D array in the ``.npy`` file ``path``, refused before its data is read when the
    file is not a ``.npy`` file (text named ``.npy``, say), holds a non-numeric or object
    dtype, or declares a shape other than ``(n_expected,)``."""
    import numpy as np
    from ._validation import real_dtype_problem
    check_input_file(path, what)
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
        except ValueError:
            raise ValueError(f"{what} {path}: not a .npy file (it does not start with the "
                             f".npy magic string); a text file of numbers needs another "
                             f"suffix, e.g. .txt") from None
        try:
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = reader(fh)
        except ValueError as exc:
            raise ValueError(f"{what} {path}: a damaged .npy header ({exc})") from None
        dtype = np.dtype(dtype)
        problem = real_dtype_problem(dtype)
        if problem is not None:
            raise ValueError(f"{what} {path}: {problem}")
        if tuple(shape) != (n_expected,):
            raise ValueError(f"{what} {path}: holds an array of shape {tuple(shape)}; the "
                             f"network has {n_expected} parameters")
    return np.load(path, allow_pickle=False)


# ---------------------------------------------------------------------------- ONNX files

#: The largest ONNX file read (protobuf's own limit is 2 GiB).
MAX_ONNX_BYTES = 2 << 30


def _onnx_errors():
    """GraphError subclasses that are also the OSError a caller may expect for a missing
    file or a directory."""
    from ._errors import GraphError

    class OnnxFileNotFound(GraphError, FileNotFoundError):
        """No ONNX file at the path (a GraphError and a FileNotFoundError)."""

    class OnnxIsADirectory(GraphError, IsADirectoryError):
        """A directory where an ONNX file was expected."""
    return GraphError, OnnxFileNotFound, OnnxIsADirectory


def check_onnx_file(path):
    """Refuse, before the ONNX parser sees it, a model path that is missing, a directory,
    not a regular file (a device, a FIFO), a symbolic link, empty, or larger than 2 GiB;
    returns the path.  The :class:`~pathgeom.GraphError` names the file and the reason
    (for a missing file it is also a FileNotFoundError, for a directory an
    IsADirectoryError)."""
    GraphError, NotFound, IsDir = _onnx_errors()
    path = os.fspath(path)
    if os.path.islink(path):
        raise GraphError(f"ONNX file {path!r} is a symbolic link; pass the model file itself "
                         f"(links are not followed, so nothing outside the model's "
                         f"directory is read)")
    if not os.path.exists(path):
        raise NotFound(f"no ONNX file at {path!r}")
    if os.path.isdir(path):
        raise IsDir(f"{path!r} is a directory; pass the .onnx file")
    try:
        size = check_input_file(path, "ONNX file", MAX_ONNX_BYTES)
    except (FileNotFoundError, ValueError) as exc:
        raise GraphError(str(exc)) from None
    if size == 0:
        raise GraphError(f"{path!r} is empty, not an ONNX model")
    return path


def parse_onnx_file(path):
    """``onnx.ModelProto`` of the file at ``path`` after :func:`check_onnx_file`, its
    external data checked by :func:`check_onnx_external_data` and then loaded; a file
    that does not parse (truncated, text, garbage) is a GraphError naming it."""
    import onnx
    GraphError = _onnx_errors()[0]
    path = check_onnx_file(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except Exception as exc:   # protobuf's DecodeError and friends
        raise GraphError(f"{path!r} is not a readable ONNX model ({type(exc).__name__}: "
                         f"{exc}); is it truncated or another kind of file? Export it again "
                         f"with torch.onnx.export or onnx.save") from None
    if not model.HasField("graph") or not (len(model.graph.node) or len(model.graph.output)):
        raise GraphError(f"{path!r} is not a readable ONNX model: it holds no graph (is it "
                         f"truncated or another kind of file?)")
    if not len(model.opset_import):   # written after the graph: a truncated file lacks it
        raise GraphError(f"{path!r} is not a readable ONNX model: it declares no opset (is "
                         f"it truncated?)")
    if check_onnx_external_data(model, path):
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
        except (OSError, ValueError) as exc:
            raise GraphError(f"ONNX file {path!r}: its external data cannot be read "
                             f"({exc})") from None
    return model


def check_onnx_external_data(model, path):
    """Refuse (GraphError naming the file) external-data tensors whose ``location`` lies
    outside the model's directory (an absolute path, ``..``, a symlink out of it) or is
    missing or not a regular file, before anything is read.  Returns whether the model
    has external data."""
    from ._errors import GraphError
    base = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    found = False
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
    for t in tensors:
        if t.data_location != 1:   # TensorProto.EXTERNAL
            continue
        found = True
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        target = os.path.realpath(os.path.join(base, loc))
        if not loc or os.path.isabs(loc) or os.path.commonpath([base, target]) != base:
            raise GraphError(f"ONNX file {path!r}: tensor {t.name!r} keeps its data in "
                             f"{loc!r}, outside the model's directory; external data must "
                             f"lie beside the model")
        try:
            size = check_input_file(target, f"external data of tensor {t.name!r} in ONNX "
                                            f"file {path!r}:")
        except (FileNotFoundError, ValueError) as exc:
            raise GraphError(str(exc)) from None
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else size - offset
        except ValueError:
            raise GraphError(f"ONNX file {path!r}: tensor {t.name!r} has a non-numeric "
                             f"external data offset or length") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise GraphError(f"ONNX file {path!r}: tensor {t.name!r} asks for bytes "
                             f"{offset}..{offset + length} of {loc!r}, which has {size}")
    return found


#: Bytes the importer holds per unit (node) of the network it builds, about.
ONNX_BYTES_PER_UNIT = 256


def check_onnx_model(model):
    """The importer's checks of a parsed model, before it allocates anything
    (:class:`~pathgeom.GraphError` naming the tensor or node):

    * two initializers of one name (the second would leave a dead parameter);
    * a node input that no initializer, graph input or node provides (a missing
      initializer);
    * declared input dimensions or ConstantOfShape sizes that cannot fit: more than
      2**31 - 1 units (graphs index nodes with int32) or more memory than the process may
      use (:func:`pathgeom._memory.check_fits`).

    Returns ``model``.
    """
    import math
    import numpy as np
    from ._errors import GraphError
    from ._memory import MemoryLimitError, check_fits
    g = model.graph
    inits = set()
    for t in g.initializer:
        if t.name in inits:
            raise GraphError(f"the ONNX model has two initializers named {t.name!r}; names "
                             f"must be unique (the second would be a parameter no edge "
                             f"uses): rename or remove one")
        inits.add(t.name)
    known = inits | {i.name for i in g.input} | {o for n in g.node for o in n.output}
    for node in g.node:
        for name in node.input:
            if name and name not in known:
                raise GraphError(f"ONNX node {node.name or node.op_type!r} ({node.op_type}) "
                                 f"reads {name!r}, which no initializer, graph input or node "
                                 f"provides: a missing initializer (or a truncated model)")
    for inp in g.input:
        if inp.name in inits or not inp.type.tensor_type.HasField("shape"):
            continue
        dims = [int(d.dim_value) if d.HasField("dim_value") else None
                for d in inp.type.tensor_type.shape.dim]
        fixed = [d for k, d in enumerate(dims) if d is not None and d >= 1 and k != 0]
        units = math.prod(fixed)
        if units > 2 ** 31 - 1:
            raise GraphError(f"ONNX input {inp.name!r} declares the shape {dims}: "
                             f"{units:,} units, more than the 2**31 - 1 nodes a graph can "
                             f"hold; export the model with smaller input dimensions")
        try:
            check_fits(ONNX_BYTES_PER_UNIT * units, f"ONNX input {inp.name!r} of shape "
                       f"{dims} ({units:,} units)", "export the model with smaller input "
                       f"dimensions")
        except MemoryLimitError as exc:
            raise GraphError(str(exc)) from None
    consts = {t.name: t for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    consts[node.output[0]] = a.t
    from onnx import numpy_helper
    for node in g.node:
        if node.op_type != "ConstantOfShape" or not node.input or node.input[0] not in consts:
            continue
        t = consts[node.input[0]]
        if math.prod(t.dims) > 64:   # a shape has a handful of entries
            continue
        try:
            shape = np.asarray(numpy_helper.to_array(t)).astype(np.int64).ravel().tolist()
        except (ValueError, TypeError):
            continue
        if any(d < 0 for d in shape):
            raise GraphError(f"ONNX node {node.name or node.op_type!r}: ConstantOfShape with "
                             f"the negative shape {shape}")
        n = math.prod(shape)
        try:
            check_fits(8 * n, f"ONNX node {node.name or node.op_type!r}: ConstantOfShape of "
                       f"shape {shape} ({n:,} values)", "the model is damaged or not a "
                       f"network pathgeom can import")
        except MemoryLimitError as exc:
            raise GraphError(str(exc)) from None
    return model
