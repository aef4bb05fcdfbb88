r"""Sequential digits: classify an image fed to the RNN one pixel per time step.

Pixels are read in row-major (scanline) order and scaled to [0, 1]; the network sees one
pixel per step (``n_in = 1``) and predicts the class after the last one (``outputs =
"last"``, softmax cross-entropy over 10 classes).

Two sources, one interface:

- ``"builtin"``: scikit-learn's bundled 8x8 digits (1797 images, values 0-16, so pixels
  are divided by 16) as 64-step sequences; no download, but it needs the optional extra
  ``pip install 'pathgeom[digits]'``.  A seeded permutation sets ``n_test`` images (297
  by default) aside as the test set; the other images are the training set.
- a directory holding the standard MNIST IDX files (:data:`MNIST_FILES`, each optionally
  gzipped ``.gz``) gives 784-step sequences, pixels divided by 255.  The official t10k
  files are the test set; with ``n_test`` a seeded subset of them.

:func:`load_idx` reads one IDX file (the format: two zero bytes, a type byte -- 0x08 for
unsigned bytes --, the number of dimensions, then each dimension as a big-endian uint32,
then the data, big-endian; MNIST images have magic number 0x00000803, labels 0x00000801).
"""

import functools
import gzip
import math
import os

import numpy as np

from .adding import _check_int, _check_rng, _fixed_rng, _readonly

__all__ = ["SequentialDigits", "load_idx", "load_mnist", "MNIST_FILES"]

#: The four MNIST files, by role; ``load_mnist`` also accepts ``.`` for the last ``-``
#: (``train-images.idx3-ubyte``, as some mirrors name them) and a ``.gz`` suffix.
MNIST_FILES = {"train_images": "train-images-idx3-ubyte",
               "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte",
               "test_labels": "t10k-labels-idx1-ubyte"}

_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def load_idx(path):
    """Read one IDX file (optionally gzipped) into an array of its dimensions.

    Parameters
    ----------
    path : str or os.PathLike
        The file; gzip compression is recognised by its leading bytes, whatever the name.

    Returns
    -------
    ndarray
        Native byte order: uint8 for MNIST (type 0x08), else int8, int16, int32, float32
        or float64 as the type byte says.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not IDX (bad magic number, unknown type, truncated header) or its
        data size disagrees with the dimensions in its header; the message names the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathgeom.tasks.digits import load_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
    >>> with open(path, "wb") as f:      # magic 0x00000801, 3 items, then the labels
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> load_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file {path!r} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"IDX file {path!r} looks gzipped but does not decompress: "
                             f"{exc}") from None
    if len(raw) < 4:
        raise ValueError(f"IDX file {path!r} is {len(raw)} bytes long, shorter than the "
                         f"4-byte magic number")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\0\0" or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"IDX file {path!r} has magic number 0x{magic:08X}; an IDX file "
                         f"starts with 0x0000TTDD (type TT in 08 09 0B 0C 0D 0E, DD >= 1 "
                         f"dimensions), e.g. 0x00000803 for MNIST images, 0x00000801 for "
                         f"labels")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path!r} is truncated: its header announces {ndim} "
                         f"dimensions ({header} bytes) but the file has {len(raw)} bytes")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    dtype = _IDX_TYPES[code]
    want = math.prod(shape) * dtype.itemsize
    if len(raw) - header != want:
        raise ValueError(f"IDX file {path!r}: the header gives shape {shape} of "
                         f"{dtype.itemsize}-byte items ({want} data bytes) but the file has "
                         f"{len(raw) - header} data bytes")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(directory, base):
    stem, _, tail = base.rpartition("-")
    for name in (base, f"{stem}.{tail}"):
        for suffix in ("", ".gz"):
            candidate = os.path.join(directory, name + suffix)
            if os.path.isfile(candidate):
                return candidate
    raise FileNotFoundError(f"MNIST directory {directory!r} has no {base!r} (nor "
                            f"{stem}.{tail}, nor either with .gz); it needs the four files "
                            f"{', '.join(MNIST_FILES.values())}")


def load_mnist(directory):
    """The four MNIST IDX files of ``directory`` as a dict of arrays.

    Returns ``{"train_images": (N, rows, cols) uint8, "train_labels": (N,) int64,
    "test_images", "test_labels"}``; file names as in :data:`MNIST_FILES` (``.gz``
    allowed).  Checks that images are 3-d, labels 1-d with one label per image in 0-9,
    and that train and test images have the same size.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"MNIST directory {directory!r} does not exist")
    out = {}
    for role, base in MNIST_FILES.items():
        path = _find(directory, base)
        a = load_idx(path)
        want = 3 if role.endswith("images") else 1
        if a.ndim != want or a.dtype != np.uint8:
            raise ValueError(f"{path!r} holds a {a.ndim}-d {a.dtype} array; MNIST "
                             f"{role.replace('_', ' ')} are a {want}-d uint8 array")
        out[role] = a if want == 3 else a.astype(np.int64)
    for split in ("train", "test"):
        n_img, n_lab = len(out[f"{split}_images"]), len(out[f"{split}_labels"])
        if n_img != n_lab or n_img == 0:
            raise ValueError(f"MNIST {split} split in {directory!r}: {n_img} images and "
                             f"{n_lab} labels; there must be one label per image, and some")
        labels = out[f"{split}_labels"]
        if labels.min() < 0 or labels.max() > 9:
            raise ValueError(f"MNIST {split} labels in {directory!r} range over "
                             f"{labels.min()}..{labels.max()}; digits are 0..9")
    if out["train_images"].shape[1:] != out["test_images"].shape[1:]:
        raise ValueError(f"MNIST images in {directory!r}: train images are "
                         f"{out['train_images'].shape[1:]}, test images "
                         f"{out['test_images'].shape[1:]}; they must be the same size")
    return out


def _upsample28(images8):
    """8x8 images (N, 64), values 0..16, to 28x28 (N, 784) by bilinear interpolation of the
    pixel centres (scipy.ndimage.zoom, order 1), clipped back to 0..16: the built-in
    stand-in for sequential MNIST's 784-step sequences."""
    from scipy.ndimage import zoom
    imgs = images8.reshape(-1, 8, 8).astype(np.float64)
    up = zoom(imgs, (1, 3.5, 3.5), order=1, mode="nearest", grid_mode=True)
    return np.clip(up, 0.0, 16.0).reshape(len(imgs), 28 * 28)


def _builtin_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the built-in digits come from scikit-learn, which is not "
                          "installed: pip install 'pathgeom[digits]' (or pass the "
                          "directory of the MNIST IDX files as source)") from None
    d = load_digits()
    return d.images.reshape(len(d.images), -1), d.target.astype(np.int64)


class SequentialDigits:
    """Pixel-by-pixel digit classification (module docstring).

    Parameters
    ----------
    source : "builtin", "builtin28" or path
        ``"builtin"`` for scikit-learn's 8x8 digits (T = 64); ``"builtin28"`` for the same
        images upsampled to 28x28 (T = 784; bilinear, :func:`scipy.ndimage.zoom`), a
        stand-in for sequential MNIST on a machine that cannot download it; or the
        directory of the MNIST IDX files (T = 784).
    n_test : int or None
        Test-set size: default 297 of the 1797 built-in images, or all 10,000 MNIST
        t10k images; an int picks a seeded subset.
    seed : int
        Fixes the train/test split (built-in) or the test subset (MNIST).

    Attributes
    ----------
    name, n_in, n_out, T, outputs, loss
        ``"digits"``, 1, 10, 64 or 784, ``"last"``, ``"xent"``.
    test : (X, Y)
        X (n_test, T, 1) float64 in [0, 1], Y (n_test,) int64 (built on first access).
    valid : None
    baseline : float
        Entropy (nats) of the training class frequencies: the cross-entropy of predicting
        them, about ln 10 = 2.303.

    Examples
    --------
    With the MNIST files in ``directory``::

        task = SequentialDigits(directory)           # T = 784
        X, Y = task.sample(np.random.default_rng(0), 64)   # (64, 784, 1), (64,)
    """

    name = "digits"
    n_in = 1
    n_out = 10
    outputs = "last"
    loss = "xent"
    valid = None

    def __init__(self, source="builtin", n_test=None, seed=0):
        self.seed = _check_int(seed, "seed", 0)
        if n_test is not None:
            n_test = _check_int(n_test, "n_test", 1)
        rng = _fixed_rng(self.seed, 2)
        if isinstance(source, str) and source in ("builtin", "builtin28"):
            images, labels = _builtin_digits()
            if source == "builtin28":
                images = _upsample28(images)
            n_test = 297 if n_test is None else n_test
            if n_test >= len(images):
                raise ValueError(f"n_test={n_test} leaves no training images: the built-in "
                                 f"digits have {len(images)}")
            order = rng.permutation(len(images))
            test, train = order[:n_test], order[n_test:]
            self._train = (images[train], labels[train])
            self._test = (images[test], labels[test])
            self._scale, self.source = 16.0, source
        elif isinstance(source, (str, os.PathLike)):
            d = load_mnist(source)
            images, labels = d["test_images"], d["test_labels"]
            if n_test is not None:
                if n_test > len(images):
                    raise ValueError(f"n_test={n_test} but the MNIST test files hold "
                                     f"{len(images)} images")
                keep = np.sort(rng.choice(len(images), n_test, replace=False))
                images, labels = images[keep], labels[keep]
            train_images = d["train_images"]
            self._train = (train_images.reshape(len(train_images), -1), d["train_labels"])
            self._test = (images.reshape(len(images), -1), labels)
            self._scale, self.source = 255.0, os.fspath(source)
        else:
            raise ValueError(f"source must be 'builtin', 'builtin28' or the path of a directory "
                             f"with the MNIST IDX files, got {source!r}")
        self.T = self._train[0].shape[1]
        self.n_train, self.n_test = len(self._train[1]), len(self._test[1])
        freq = np.bincount(self._train[1], minlength=10) / self.n_train
        freq = freq[freq > 0]
        self.baseline = float(-(freq * np.log(freq)).sum())

    def _batch(self, images, labels):
        X = (images.astype(np.float64) / self._scale)[:, :, None]
        return X, labels.astype(np.int64)

    @functools.cached_property
    def test(self):
        return _readonly(*self._batch(*self._test))

    def sample(self, rng, B):
        """A training batch: B images drawn uniformly (with replacement) by ``rng``."""
        B = _check_int(B, "B (the batch size)", 1)
        from .._memory import check_fits
        check_fits(8 * B * (self.T + 1), f"a batch of {B:,} images of {self.T:,} pixels",
                   "choose a smaller batch (--batch)")
        idx = _check_rng(rng).integers(0, self.n_train, size=B)
        return self._batch(self._train[0][idx], self._train[1][idx])

    def describe(self):
        what = {"builtin": "built-in 8x8 digits",
                "builtin28": "built-in digits upsampled to 28x28 (a stand-in for MNIST)"}.get(
            self.source, f"MNIST {self.source}")
        return (f"sequential digits ({what}): T={self.T} pixels, {self.n_train} training / "
                f"{self.n_test} test images (seed {self.seed})")

    def __repr__(self):
        return f"SequentialDigits(source={self.source!r}, n_test={self.n_test}, seed={self.seed})"
