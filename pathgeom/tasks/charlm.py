r"""Character-level language modelling: predict each next character.

Inputs are one-hot characters, ``n_in = n_out =`` the alphabet size, and the network
predicts at every step (``outputs = "all"``): ``Y[b, t]`` is the index of the character
that follows ``X[b, t]``.  The loss is the softmax cross-entropy in nats; bits per
character are :math:`\text{loss} / \ln 2` (:meth:`CharLM.bits_per_char`).

**Alphabet.**  Index 0 is always the reserved unknown symbol :data:`UNKNOWN` (U+FFFD);
indices 1.. are the distinct characters of the training split in code-point order.
Characters of the valid and test splits that never occur in training map to index 0
(their counts are in ``task.n_unknown``); the symbol never occurs in training data.

**Sequences.**  A training batch takes ``B`` windows of ``seq_len + 1`` consecutive
characters at offsets drawn uniformly by the ``rng`` (``X`` the first ``seq_len``,
``Y`` the last ``seq_len``).  The valid and test sets cut their split into consecutive
non-overlapping windows (the first ``n_test`` of them, or all); the RNN starts each window
from a zero state, so its bits per character are a little above those of a model carrying
its state across a whole split.

**Corpora.**  ``corpus="builtin"`` generates text with the seeded grammar of
:mod:`pathgeom.tasks._grammar` (nested groups of four bracket kinds whose closing bracket
must match the opening one, on average about 50 characters back, with words in between
that depend on the open group): ``n_chars = (100_000, 10_000, 10_000)`` train/valid/test
characters by default, in about 0.05 s.  Otherwise ``corpus`` is a directory in one of
these layouts (checked in this order):

- ``ptb.char.train.txt``, ``ptb.char.valid.txt``, ``ptb.char.test.txt`` (PTB-c: characters
  separated by spaces, ``_`` between words) -- decoded to plain text: the separating
  spaces dropped, ``_`` becomes a space, line breaks kept;
- ``train.txt``, ``valid.txt``, ``test.txt`` -- plain UTF-8 text, used as is;
- a single ``text8`` file -- split into the first 90%, next 5% and last 5% (for the
  100M-character text8 file, the standard 90M/5M/5M split).
"""

import functools
import math
import os

import numpy as np

from . import _grammar
from .adding import _check_int, _check_rng, _fixed_rng, _readonly

__all__ = ["CharLM", "load_corpus", "UNKNOWN", "CORPUS_LAYOUTS"]

UNKNOWN = "\ufffd"
#: The accepted corpus layouts: name -> the (train, valid, test) file names.
CORPUS_LAYOUTS = {"ptb-c": ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"),
                  "plain": ("train.txt", "valid.txt", "test.txt"),
                  "text8": ("text8",)}
_DEFAULT_CHARS = (100_000, 10_000, 10_000)


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"corpus file {path!r} is not UTF-8 text: {exc}") from None


def _ptb_char(text):
    return "".join("".join(line.split()).replace("_", " ") + "\n"
                   for line in text.splitlines())


def load_corpus(directory):
    """The (train, valid, test) texts of a corpus directory (layouts in the module doc)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"corpus directory {directory!r} does not exist")
    for layout, names in CORPUS_LAYOUTS.items():
        paths = [os.path.join(directory, n) for n in names]
        if not any(os.path.isfile(p) for p in paths):
            continue
        missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"corpus directory {directory!r} has {layout} files but "
                                    f"not {', '.join(missing)}")
        if layout == "text8":
            text = _read(paths[0])
            a, b = int(0.9 * len(text)), int(0.95 * len(text))
            return text[:a], text[a:b], text[b:]
        texts = [_read(p) for p in paths]
        return tuple(_ptb_char(t) for t in texts) if layout == "ptb-c" else tuple(texts)
    found = sorted(os.listdir(directory))[:10]
    accepted = "; ".join(", ".join(n) for n in CORPUS_LAYOUTS.values())
    raise FileNotFoundError(f"corpus directory {directory!r} holds none of the accepted "
                            f"layouts ({accepted}); it has {found}")


class CharLM:
    """Next-character prediction on a corpus (module docstring).

    Parameters
    ----------
    corpus : "builtin" or path
        The generated corpus, or a directory in one of :data:`CORPUS_LAYOUTS`.
    seq_len : int
        Length ``T`` of the training and evaluation windows, >= 1.
    seed : int
        Seed of the built-in corpus (the same seed always gives the same text).
    n_test : int or None
        Number of valid and of test windows (the first ones); None for all.
    n_chars : (int, int, int) or None
        Sizes of the built-in train/valid/test splits; default (100000, 10000, 10000).

    Attributes
    ----------
    name, n_in, n_out, T, outputs, loss
        ``"charlm"``, alphabet size, alphabet size, ``seq_len``, ``"all"``, ``"xent"``.
    alphabet : tuple of str
        ``alphabet[0]`` is :data:`UNKNOWN`.
    train_ids, valid_ids, test_ids : ndarray
        Each split as indices into the alphabet (read-only).
    test, valid : (X, Y)
        X (n, seq_len, n_in) float64 one-hot, Y (n, seq_len) int64 (built on first access).
    baseline : float
        Unigram entropy of the training split in nats: the cross-entropy of predicting
        the training character frequencies at every step.

    Examples
    --------
    >>> import numpy as np
    >>> from pathgeom.tasks.charlm import CharLM, UNKNOWN
    >>> task = CharLM("builtin", seq_len=8, seed=0, n_chars=(2000, 200, 200))
    >>> task.n_in, task.alphabet[0] == UNKNOWN, "".join(task.alphabet[3:])
    (31, True, '().<>[]abdefgiklmnoprstuvz{}')
    >>> X, Y = task.sample(np.random.default_rng(0), 2)
    >>> X.shape, Y.shape, Y.dtype
    ((2, 8, 31), (2, 8), dtype('int64'))
    >>> bool((X[:, 1:].argmax(axis=2) == Y[:, :-1]).all())      # Y is X shifted by one
    True
    """

    name = "charlm"
    outputs = "all"
    loss = "xent"

    def __init__(self, corpus="builtin", seq_len=50, seed=0, n_test=None, n_chars=None):
        self.T = self.seq_len = _check_int(seq_len, "seq_len", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.n_test = None if n_test is None else _check_int(n_test, "n_test", 1)
        if isinstance(corpus, str) and corpus == "builtin":
            sizes = _DEFAULT_CHARS if n_chars is None else n_chars
            if len(sizes) != 3:
                raise ValueError(f"n_chars must be three sizes (train, valid, test), got "
                                 f"{n_chars!r}")
            sizes = [_check_int(n, "each of n_chars", 1) for n in sizes]
            texts = [_grammar.generate(_fixed_rng(self.seed, 3 + k), n)
                     for k, n in enumerate(sizes)]
            self.source = "builtin"
        elif isinstance(corpus, (str, os.PathLike)):
            if n_chars is not None:
                raise ValueError("n_chars sets the size of the built-in corpus only; a corpus "
                                 "directory is used whole")
            texts = load_corpus(corpus)
            self.source = os.fspath(corpus)
        else:
            raise ValueError(f"corpus must be 'builtin' or the path of a corpus directory, got "
                             f"{corpus!r}")
        for split, text in zip(("train", "valid", "test"), texts):
            if len(text) < self.seq_len + 1:
                raise ValueError(f"the {split} split of corpus {self.source!r} has "
                                 f"{len(text)} characters; seq_len={self.seq_len} needs at "
                                 f"least {self.seq_len + 1}")
        train = texts[0]
        self.alphabet = (UNKNOWN,) + tuple(sorted(set(train) - {UNKNOWN}))
        self.n_in = self.n_out = len(self.alphabet)
        self._codes = np.array([ord(c) for c in self.alphabet[1:]], dtype=np.uint32)
        ids = [self._encode(t) for t in texts]
        self.train_ids, self.valid_ids, self.test_ids = _readonly(*ids)
        self.n_unknown = {"valid": int((ids[1] == 0).sum()), "test": int((ids[2] == 0).sum())}
        for split in ("valid", "test"):
            windows = (len(getattr(self, f"{split}_ids")) - 1) // self.seq_len
            if self.n_test is not None and self.n_test > windows:
                raise ValueError(f"n_test={self.n_test} but the {split} split has only "
                                 f"{windows} windows of seq_len={self.seq_len}")
        freq = np.bincount(self.train_ids, minlength=self.n_in) / len(self.train_ids)
        freq = freq[freq > 0]
        self.baseline = float(-(freq * np.log(freq)).sum())

    def _encode(self, text):
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        k = np.searchsorted(self._codes, points)
        hit = self._codes[np.minimum(k, len(self._codes) - 1)] == points
        ids = np.where(hit, k + 1, 0)
        return ids.astype(np.uint8 if self.n_in <= 256 else np.int32)

    def encode(self, text):
        """``text`` as int64 alphabet indices (unknown characters -> 0)."""
        return self._encode(str(text)).astype(np.int64)

    def decode(self, ids):
        """Alphabet indices back to a string (index 0 -> :data:`UNKNOWN`)."""
        return "".join(self.alphabet[i] for i in np.asarray(ids, dtype=np.int64).ravel())

    def _onehot(self, ids):
        """One-hot float64 rows for ``ids`` by one scatter: memory is the result only (no
        ``n_in x n_in`` identity, which for a 6,000-symbol alphabet alone is 288 MB)."""
        ids = np.asarray(ids)
        from .._memory import check_fits
        check_fits(8 * ids.size * self.n_in, f"{ids.size:,} one-hot characters over an "
                   f"alphabet of {self.n_in:,}", "choose a smaller batch (--batch), sequence "
                   "length (--T) or test set")
        out = np.zeros(ids.shape + (self.n_in,))
        flat = out.reshape(-1, self.n_in)
        flat[np.arange(flat.shape[0]), ids.reshape(-1)] = 1.0
        return out

    def _windows(self, ids):
        L = self.seq_len
        n = (len(ids) - 1) // L if self.n_test is None else self.n_test
        X = ids[:n * L].reshape(n, L)
        Y = ids[1:n * L + 1].reshape(n, L).astype(np.int64)
        return _readonly(self._onehot(X), Y)

    @functools.cached_property
    def test(self):
        return self._windows(self.test_ids)

    @functools.cached_property
    def valid(self):
        return self._windows(self.valid_ids)

    def sample(self, rng, B):
        """B training windows at uniform random offsets drawn by ``rng``."""
        B = _check_int(B, "B (the batch size)", 1)
        start = _check_rng(rng).integers(0, len(self.train_ids) - self.seq_len, size=B)
        ids = self.train_ids[start[:, None] + np.arange(self.seq_len + 1)]
        return self._onehot(ids[:, :-1]), ids[:, 1:].astype(np.int64)

    @staticmethod
    def bits_per_char(loss):
        """A cross-entropy in nats per character as bits per character: loss / ln 2."""
        return loss / math.log(2.0)

    def describe(self):
        return (f"character LM ({self.source} corpus, seed {self.seed}): {self.n_in} "
                f"symbols incl. unknown, seq_len={self.seq_len}, {len(self.train_ids)} / "
                f"{len(self.valid_ids)} / {len(self.test_ids)} train/valid/test chars; "
                f"unigram entropy {self.bits_per_char(self.baseline):.3f} bits/char")

    def __repr__(self):
        return (f"CharLM(corpus={self.source!r}, seq_len={self.seq_len}, seed={self.seed}, "
                f"n_test={self.n_test})")
