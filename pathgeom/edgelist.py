"""The edge-list file format of ``pathgeom ... --graph FILE``: reader and writer.

One item per line, tokens separated by whitespace::

    # a comment: from '#' to the end of the line is ignored, and so are blank lines
    inputs x1 x2        # the input nodes, in the order of the input vector
    outputs y           # the output nodes, in the order of the output vector
    x1 h 0              # an edge x1 -> h on parameter 0
    x2 h 0              # ... sharing parameter 0
    h y 1

- An edge line is ``u v param``: two node labels and a parameter index (an integer
  >= 0).  Repeated edge lines are parallel edges.  Parameters are numbered as in ``p``.
- ``inputs`` and ``outputs`` lines list node labels; each may be repeated (the labels
  accumulate) and may come anywhere.  Both are required, and ``outputs`` must name at
  least one node.
- Labels are any tokens without whitespace or ``#``, read as strings (``0`` is the label
  ``"0"``); the keywords ``inputs``, ``outputs``, ``params`` and ``kind`` cannot be labels.
- An optional ``params N`` line declares the length of ``p`` (for unused parameters at
  the end); by default it is one more than the largest index used.
- An edge of fixed weight (:func:`pathgeom.fixed`) is ``u v fixed=W`` with ``W`` a finite
  number (``x y fixed=1``, ``p q fixed=-0.25``); it is no parameter.
- ``kind KIND a b ...`` gives the listed internal nodes the kind ``KIND``: ``relu`` (the
  default), ``linear`` (an identity neuron) or ``max`` (a max-pooling neuron, whose
  incoming edges must be ``fixed=1``)::

      inputs x1 x2
      outputs y
      kind max m
      x1 m fixed=1
      x2 m fixed=1
      m y 0

A malformed line raises :class:`EdgeListError` (a ``ValueError``) naming the file and the
line, as does a graph that the validator rejects when the problem lies with one edge.
"""

import math
import re

from ._errors import GraphError
from .graph import NODE_KINDS, SharedGraph, fixed

__all__ = ["EdgeListError", "parse_edge_list", "read_edge_list", "format_edge_list",
           "write_edge_list", "dense_block"]


class EdgeListError(ValueError):
    """A malformed edge-list file; ``.source`` and ``.line`` (1-based, or None) say where."""

    def __init__(self, source, line, message):
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else f"{source}"
        super().__init__(f"{where}: {message}")


_KEYWORDS = ("inputs", "outputs", "params", "kind")

#: The largest edge-list file :func:`read_edge_list` reads (about 40 million edges).
MAX_EDGE_LIST_BYTES = 1 << 30


def parse_edge_list(text, source="<string>"):
    """A :class:`~pathgeom.SharedGraph` from edge-list text (see the module docstring).

    Parameters
    ----------
    text : str
    source : str
        The name used in error messages (the file name).

    Raises
    ------
    EdgeListError
        With ``source:line:`` and what is wrong.

    Examples
    --------
    >>> from pathgeom.edgelist import parse_edge_list
    >>> g = parse_edge_list('''
    ... inputs x
    ... outputs y
    ... x a 0
    ... a y 0     # shares parameter 0 with x -> a
    ... ''')
    >>> g, g.nodes
    (SharedGraph(n_nodes=3, n_edges=2, n_params=1, n_inputs=1, n_outputs=1), ('x', 'a', 'y'))
    >>> parse_edge_list("inputs x\\noutputs y\\nx y zero", source="net.txt")
    Traceback (most recent call last):
    ...
    pathgeom.edgelist.EdgeListError: net.txt:3: parameter 'zero' is not an integer; an edge line is 'u v param' with param an integer index >= 0
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_edge_list takes the text of an edge list (a str), got "
                        f"{type(text).__name__}; for a file use read_edge_list(path)")
    if text.startswith("\ufeff"):   # a UTF-8 byte-order mark, as some editors write
        text = text[1:]
    inputs, outputs = [], []
    seen = {"inputs": None, "outputs": None}
    edges, edge_lines = [], []
    kinds, kind_lines = {}, {}
    n_params = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        head = tokens[0]
        labels = (tokens[1:] if head in ("inputs", "outputs")
                  else tokens[1:2] if head not in _KEYWORDS and len(tokens) == 3 else [])
        clash = [t for t in labels if t in _KEYWORDS]
        if clash:
            raise EdgeListError(source, lineno, f"{clash[0]!r} is a keyword and cannot be a "
                                f"node label; rename the node")
        if head in ("inputs", "outputs"):
            (inputs if head == "inputs" else outputs).extend(tokens[1:])
            seen[head] = seen[head] or lineno
        elif head == "kind":
            if len(tokens) < 3 or tokens[1] not in NODE_KINDS:
                raise EdgeListError(source, lineno, f"expected 'kind KIND node ...' with KIND "
                                    f"one of {', '.join(NODE_KINDS)}, got {raw.strip()!r}")
            for label in tokens[2:]:
                if label in _KEYWORDS:
                    raise EdgeListError(source, lineno, f"{label!r} is a keyword and cannot "
                                        f"be a node label; rename the node")
                kinds[label] = tokens[1]
                kind_lines.setdefault(label, lineno)
        elif head == "params":
            if len(tokens) != 2 or not re.fullmatch(r"\d+", tokens[1]):
                raise EdgeListError(source, lineno, f"expected 'params N' with N an integer "
                                    f">= 0, got {raw.strip()!r}")
            n_params = int(tokens[1])
        elif len(tokens) != 3:
            raise EdgeListError(source, lineno, f"expected 'u v param' (3 tokens) or an "
                                f"'inputs' / 'outputs' / 'params' line, got {len(tokens)} "
                                f"token(s): {raw.strip()!r}")
        else:
            u, v, i = tokens
            edges.append((u, v, _edge_weight(i, source, lineno)))
            edge_lines.append(lineno)
            if u == v:
                raise EdgeListError(source, lineno, f"edge {u} -> {v} is a self-loop; a "
                                    f"network must be a DAG")
    for key in ("inputs", "outputs"):
        if seen[key] is None:
            raise EdgeListError(source, None, f"no {key!r} line; list the {key} as "
                                f"'{key} a b ...'")
    if not outputs:
        raise EdgeListError(source, seen["outputs"], "the 'outputs' line names no node")
    indexed = [k for k, e in enumerate(edges) if isinstance(e[2], int)]
    if n_params is not None and indexed and n_params <= max(edges[k][2] for k in indexed):
        k = max(indexed, key=lambda k: edges[k][2])
        raise EdgeListError(source, edge_lines[k], f"parameter index {edges[k][2]} is out of "
                            f"range for 'params {n_params}'")
    try:
        return SharedGraph.from_edges(edges, inputs, outputs, n_params=n_params,
                                      node_kinds=kinds)
    except GraphError as exc:
        m = re.search(r"edge #(\d+)", str(exc))
        line = edge_lines[int(m.group(1))] if m and int(m.group(1)) < len(edge_lines) else None
        if line is None:   # a kind line's node
            named = [kind_lines[x] for x in kinds if repr(x) in str(exc).split(";")[0]]
            line = min(named) if named else None
        if line is None:   # a problem with the inputs / outputs lines: the first one named
            hits = [(str(exc).find(word), key) for word, key in
                    (("input", "inputs"), ("output", "outputs")) if word in str(exc)]
            line = seen[min(hits)[1]] if hits else None
        raise EdgeListError(source, line, str(exc)) from None


def _edge_weight(token, source, lineno):
    """An edge line's third token: a parameter index (int >= 0) or ``fixed=W``."""
    if token.startswith("fixed="):
        try:
            w = float(token[len("fixed="):])
        except ValueError:
            w = math.nan
        if not math.isfinite(w):
            raise EdgeListError(source, lineno, f"{token!r} is not a finite fixed weight; "
                                f"write 'u v fixed=W' with W a finite number")
        return fixed(w)
    if not re.fullmatch(r"[+-]?\d+", token):
        raise EdgeListError(source, lineno, f"parameter {token!r} is not an integer; an "
                            f"edge line is 'u v param' with param an integer index >= 0")
    if int(token) < 0:
        raise EdgeListError(source, lineno, f"parameter index {token} is negative; indices "
                            f"start at 0")
    return int(token)


def read_edge_list(path):
    """A :class:`~pathgeom.SharedGraph` from an edge-list file (see :func:`parse_edge_list`)."""
    path = str(path)
    try:
        from ._files import check_input_file
        try:
            check_input_file(path, "edge-list file", MAX_EDGE_LIST_BYTES)
        except (FileNotFoundError, ValueError) as exc:
            reason = (str(exc).replace(f"edge-list file {path!r}: ", "")
                      .replace(f"edge-list file {path!r} ", "it "))
            raise EdgeListError(path, None, f"cannot read the file: {reason}") from None
        with open(path, encoding="utf-8-sig") as fh:   # accepts a leading BOM
            text = fh.read()
    except OSError as exc:
        raise EdgeListError(path, None, f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EdgeListError(path, None, f"not a UTF-8 text file ({exc.reason})") from None
    return parse_edge_list(text, source=path)


def _token(label):
    s = str(label)
    if not s or re.search(r"\s|#", s) or s in _KEYWORDS:
        raise ValueError(f"node label {label!r} cannot be written as an edge-list token "
                         f"(it is empty, holds whitespace or '#', or is a keyword); relabel "
                         f"the graph")
    return s


def format_edge_list(g):
    """Edge-list text for ``g`` (labels written with ``str``); parses back to an equal graph
    when the labels are strings.

    Examples
    --------
    >>> import pathgeom
    >>> from pathgeom.edgelist import format_edge_list
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "y", 0)], ["x"], ["y"])
    >>> print(format_edge_list(g))
    inputs x
    outputs y
    params 1
    x a 0
    a y 0
    """
    nodes = [_token(x) for x in g.nodes]
    if len(set(nodes)) != len(nodes):
        raise ValueError("two node labels have the same string form; relabel the graph")
    src, dst, par = g.edges()
    fw = g.fixed_weights()
    lines = ["inputs " + " ".join(nodes[g.index(x)] for x in g.inputs),
             "outputs " + " ".join(nodes[g.index(x)] for x in g.outputs),
             f"params {g.n_params}"]
    for kind in ("linear", "max"):
        members = [nodes[k] for k, x in enumerate(g.kinds) if x == kind]
        if members:
            lines.append(f"kind {kind} " + " ".join(members))
    lines += [f"{nodes[u]} {nodes[v]} {i if i >= 0 else f'fixed={w!r}'}"
              for u, v, i, w in zip(src.tolist(), dst.tolist(), par.tolist(), fw.tolist())]
    isolated = set(range(g.n_nodes)) - set(src.tolist()) - set(dst.tolist())
    isolated -= set(g.compiled.inputs.tolist()) | set(g.compiled.outputs.tolist())
    if isolated:
        raise ValueError(f"node {g.nodes[min(isolated)]!r} touches no edge and is not an "
                         f"input or output; the edge-list format cannot hold it")
    return "\n".join(lines)


def write_edge_list(g, path):
    """Write ``g`` to ``path`` in the edge-list format (see :func:`format_edge_list`)."""
    from ._files import atomic_write_bytes
    text = format_edge_list(g)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def dense_block(sources, targets, first_param=0):
    r"""The edges of a dense block of parameters: every ``sources[c] -> targets[r]`` on
    parameter ``first_param + r * len(sources) + c`` (the matrix :math:`W[r, c]`,
    row-major), ready for :meth:`SharedGraph.from_edges`.

    Calling it again with the same ``first_param`` on other nodes *ties* the two blocks:
    their edges share parameters, which is weight sharing (the same matrix applied twice,
    as in an unrolled RNN or a tied autoencoder).

    Returns
    -------
    edges : list of (source, target, param)
    next_param : int
        ``first_param + len(sources) * len(targets)``: where the next block may start.

    Examples
    --------
    Two layers applying the same 2 x 2 matrix, then a readout:

    >>> import pathgeom
    >>> e1, k = pathgeom.dense_block(["x0", "x1"], ["a0", "a1"])
    >>> e2, _ = pathgeom.dense_block(["a0", "a1"], ["b0", "b1"], first_param=0)   # tied
    >>> e3, k = pathgeom.dense_block(["b0", "b1"], ["y"], first_param=k)
    >>> g = pathgeom.SharedGraph.from_edges(e1 + e2 + e3, ["x0", "x1"], ["y"])
    >>> g.n_params, e1[1], e2[1]
    (6, ('x1', 'a0', 1), ('a1', 'b0', 1))
    """
    sources, targets = list(sources), list(targets)
    if isinstance(first_param, bool) or not isinstance(first_param, int) or first_param < 0:
        raise ValueError(f"first_param must be an integer >= 0, got {first_param!r}")
    n = len(sources)
    edges = [(u, v, first_param + r * n + c) for r, v in enumerate(targets)
             for c, u in enumerate(sources)]
    return edges, first_param + n * len(targets)
