"""Shared machinery of the graph constructors: parameter layouts and the Network base.

A constructor returns a :class:`Network`: a :class:`~pathgeom.SharedGraph` (``.graph``)
plus a parameter layout that reads like the paper's matrices (``.pack`` / ``.unpack``), a
dense numpy implementation of the same function (``.forward``), and the path quantities
(by default from the generic engine; a constructor may override them with a structured
computation that gives the same numbers).
"""

import numpy as np

from .. import geometry
from .._validation import as_params, as_real_array

__all__ = ["Layout", "Network", "check_graph_size", "MAX_EDGES"]

#: The most edges a constructor builds: the compiled graph indexes edges with int32.
MAX_EDGES = 2 ** 31 - 1
#: Bytes a constructor needs per edge while it builds (the edge arrays, the sort, both
#: CSRs), the basis of the memory check in :func:`check_graph_size`.
BYTES_PER_EDGE = 96


def check_graph_size(n_nodes, n_edges, what):
    """Refuse (:class:`~pathgeom.GraphError`) a network too large to build, *before*
    anything is allocated: more than :data:`MAX_EDGES` edges or nodes, or an estimated
    ``BYTES_PER_EDGE * n_edges`` above the memory this machine has available."""
    from .._errors import GraphError
    if n_edges > MAX_EDGES or n_nodes > MAX_EDGES:
        raise GraphError(f"{what} would have {n_edges:,} edges and {n_nodes:,} nodes; "
                         f"graphs are limited to 2**31 - 1 of each (int32 indices): "
                         f"choose smaller sizes")
    from .._memory import MemoryLimitError, check_fits
    try:
        check_fits(BYTES_PER_EDGE * n_edges, f"{what} would have {n_edges:,} edges: building it",
                   "choose smaller sizes (--T, --hidden, ...)", fraction=1.0)
    except MemoryLimitError as exc:
        raise GraphError(str(exc)) from None


class Layout:
    """An ordered map from names to blocks of the flat parameter vector ``p``.

    Entries are ``(name, shape)`` for a single array or ``(name, index, shape)`` for the
    ``index``-th array of a per-layer list; blocks are row-major and consecutive.
    """

    def __init__(self, entries):
        self._entries = []
        offset = 0
        for entry in entries:
            name, index, shape = (entry[0], None, entry[1]) if len(entry) == 2 else entry
            shape = tuple(int(s) for s in shape)
            size = int(np.prod(shape))
            self._entries.append((name, index, shape, slice(offset, offset + size)))
            offset += size
        self.n_params = offset
        self._lists = {}
        for name, index, _, _ in self._entries:
            if index is not None:
                self._lists[name] = max(self._lists.get(name, -1), index) + 1

    @property
    def names(self):
        """The argument names of :meth:`pack`, in order."""
        seen = []
        for name, _, _, _ in self._entries:
            if name not in seen:
                seen.append(name)
        return seen

    @property
    def blocks(self):
        """``(name, index, shape, slice)`` of every block, in the order of ``p`` (``index``
        is the layer of a per-layer block, None otherwise)."""
        return list(self._entries)

    def param_names(self):
        """One readable name per entry of ``p``, e.g. ``"W_rec[0][1,2]"`` (layer 0, row 1,
        column 2) or ``"b_out[0]"``: what reports, tables and ``--json`` show instead of a
        bare index.

        >>> Layout([("W", 0, (2, 2)), ("v", (2,))]).param_names()
        ['W[0][0,0]', 'W[0][0,1]', 'W[0][1,0]', 'W[0][1,1]', 'v[0]', 'v[1]']
        """
        names = []
        for name, index, shape, _ in self._entries:
            head = name if index is None else f"{name}[{index}]"
            for pos in np.ndindex(*shape):
                names.append(f"{head}[{','.join(map(str, pos))}]")
        return names

    def slice(self, name, index=None):
        """The slice of ``p`` holding ``name`` (``name[index]`` for per-layer lists)."""
        for n, i, _, s in self._entries:
            if n == name and i == index:
                return s
        raise KeyError(f"no parameter block {name!r}" + ("" if index is None else f"[{index}]"))

    def shape(self, name, index=None):
        for n, i, shape, _ in self._entries:
            if n == name and i == index:
                return shape
        raise KeyError(name)

    def pack(self, **arrays):
        """Flatten named arrays into ``p`` (float64); every block must be given."""
        unknown = set(arrays) - set(self.names)
        if unknown:
            raise ValueError(f"unknown parameter block(s) {sorted(unknown)}; this network "
                             f"takes {self.names}")
        p = np.empty(self.n_params)
        for name, index, shape, s in self._entries:
            if name not in arrays:
                raise ValueError(f"missing parameter block {name!r}; pack takes {self.names}")
            value = arrays[name]
            if index is not None:
                if len(value) != self._lists[name]:
                    raise ValueError(f"{name} must be a list of {self._lists[name]} arrays, "
                                     f"got {len(value)}")
                value = value[index]
            where = name if index is None else f"{name}[{index}]"
            value = as_real_array(value, where)
            if value.shape != shape:
                where = name if index is None else f"{name}[{index}]"
                raise ValueError(f"{where} has shape {value.shape}, expected {shape}")
            p[s] = value.ravel()
        return p

    def unpack(self, p):
        """The named arrays (copies) of ``p``; per-layer blocks come back as lists."""
        p = as_params(p, self.n_params)
        out = {}
        for name, index, shape, s in self._entries:
            block = p[s].reshape(shape).copy()
            if index is None:
                out[name] = block
            else:
                out.setdefault(name, []).append(block)
        return out


class Network:
    """A constructed network: ``graph``, ``layout`` and the shared interface.

    Subclasses set ``self.graph`` (or provide it as a property, as :class:`FeedForward`
    does to build it lazily) and ``self.layout``, and implement ``forward`` (dense) and
    ``init``.
    """

    graph = None
    layout = None

    @property
    def n_params(self):
        """Length of ``p``."""
        return self.layout.n_params

    def pack(self, **arrays):
        """Flatten the named parameter arrays into ``p`` (see :attr:`layout`)."""
        return self.layout.pack(**arrays)

    def unpack(self, p):
        """Split ``p`` into the named parameter arrays."""
        return self.layout.unpack(p)

    def path_quantities(self, p, with_kappa2=True):
        """:func:`pathgeom.path_quantities` of the network (generic engine by default)."""
        return geometry.path_quantities(self.graph, p, with_kappa2=with_kappa2)

    def gamma2(self, p):
        r""":math:`\gamma^2(p)` (eqs. 2-3)."""
        return self.path_quantities(p, with_kappa2=False).gamma2

    def kappa1(self, p):
        r""":math:`\kappa^{(1)}` (eq. 9, Theorem 3)."""
        return self.path_quantities(p, with_kappa2=False).kappa1

    def kappa2(self, p):
        r"""The exact :math:`\kappa^{(2)}`."""
        return self.path_quantities(p).kappa2

    def kappa(self, p):
        r""":math:`\kappa = \tfrac12 \partial^2\gamma^2/\partial p^2 = \kappa^{(1)} + \kappa^{(2)}`."""
        return self.path_quantities(p).kappa
