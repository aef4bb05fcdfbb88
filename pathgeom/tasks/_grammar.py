"""The seeded probabilistic grammar behind the built-in character corpus.

A sentence is a run of items separated by single spaces and ended by ``" .\\n"``; an
item is a word or a *group*: an opening bracket of one of four kinds ``( [ { <``, a
nested run of items, and the matching closing bracket ``) ] } >``.  Groups nest up to
:data:`MAX_DEPTH` deep.  Two long-range dependencies follow from this:

- the closing bracket must match the opening one, which may lie dozens of characters (and
  several inner groups) back;
- inside a group of kind k, a word comes from kind k's own vocabulary with probability
  :data:`P_OWN` (otherwise from the shared vocabulary), so the words themselves reveal
  which group is open.

The vocabularies (made-up words of consonant-vowel syllables) are fixed: they come from a
constant internal seed, so every corpus speaks the same language; the text depends on the
generator passed to :func:`generate`.  Nothing is copied from any existing text.
"""

import bisect
import itertools

import numpy as np

BRACKETS = ("()", "[]", "{}", "<>")
MAX_DEPTH = 4
#: probability that an item at depth d (0 = outside all groups) is a group
P_GROUP = (0.35, 0.3, 0.25, 0.2)
#: probability that another item follows (the number of items is 2 + Geometric)
P_MORE = 0.7
P_OWN = 0.6
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _vocabularies():
    rng = np.random.default_rng(0x5EED)
    seen, words = set(), []
    while len(words) < 16 + 8 * len(BRACKETS):
        n_syl = 1 + int(rng.integers(0, 3))
        w = "".join(_CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(5)]
                    for _ in range(n_syl))
        if w not in seen:
            seen.add(w)
            words.append(w)
    shared = words[:16]
    own = [words[16 + 8 * k: 24 + 8 * k] for k in range(len(BRACKETS))]
    return shared, own


SHARED, OWN = _vocabularies()


def _zipf_cdf(n):
    w = 1.0 / np.arange(1, n + 1)
    return list(np.cumsum(w / w.sum()))


def generate(rng, n_chars):
    """At least ``n_chars`` characters of whole sentences drawn with ``rng``, cut to exactly
    ``n_chars``."""
    buffer, pos = [], 0

    def u():
        nonlocal buffer, pos
        if pos == len(buffer):
            buffer, pos = rng.random(4096).tolist(), 0
        pos += 1
        return buffer[pos - 1]

    cdf_shared, cdf_own = _zipf_cdf(len(SHARED)), _zipf_cdf(len(OWN[0]))

    def word(kind):
        if kind is not None and u() < P_OWN:
            return OWN[kind][min(bisect.bisect(cdf_own, u()), len(OWN[kind]) - 1)]
        return SHARED[min(bisect.bisect(cdf_shared, u()), len(SHARED) - 1)]

    def items(kind, depth, out):
        for k in itertools.count():
            if k >= 2 and u() >= P_MORE:
                return
            if k:
                out.append(" ")
            if depth < MAX_DEPTH and u() < P_GROUP[depth]:
                inner = int(u() * len(BRACKETS))
                out.append(BRACKETS[inner][0])
                items(inner, depth + 1, out)
                out.append(BRACKETS[inner][1])
            else:
                out.append(word(kind))

    out, total = [], 0
    while total < n_chars:
        sentence = []
        items(None, 0, sentence)
        sentence.append(" .\n")
        text = "".join(sentence)
        out.append(text)
        total += len(text)
    return "".join(out)[:n_chars]


def bracket_spans(text):
    """Distances (in characters) from each opening bracket to its matching closing one,
    for the complete groups in ``text``; raises ValueError on a mismatched bracket."""
    opening = {b[0]: b[1] for b in BRACKETS}
    closing = {b[1] for b in BRACKETS}
    stack, spans = [], []
    for i, c in enumerate(text):
        if c in opening:
            stack.append((opening[c], i))
        elif c in closing:
            if not stack or stack[-1][0] != c:
                raise ValueError(f"mismatched {c!r} at position {i}")
            spans.append(i - stack.pop()[1])
    return np.array(spans, dtype=np.int64)
