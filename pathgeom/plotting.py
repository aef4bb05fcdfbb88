"""Learning-curve figures (the optional ``[plot]`` extra: matplotlib, imported only here and
only when a figure is drawn)."""

import numpy as np

__all__ = ["plot_histories", "draw_graph"]


def plot_histories(histories, path, err, title="", baseline=None):
    """Test-loss curves of ``histories`` (label -> history rows) into the PNG ``path``, on a
    log scale, with the ``baseline`` as a dashed line; returns ``path``, or None (with a
    message on ``err``) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install 'pathgeom[plot]')", file=err)
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, history in histories.items():
        rows = [h for h in history if h.get("test_loss") is not None
                and np.isfinite(h["test_loss"])]
        ax.plot([h["step"] for h in rows], [h["test_loss"] for h in rows], label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="predict the mean")
    ax.set_xlabel("step")
    ax.set_ylabel("test loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        from ._files import save_figure
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------- graphs


def _layout(g):
    """Node coordinates: x = depth, y = position among the nodes of that column (centred).

    A node with no incoming edge (an input) is moved right, to one column before its
    earliest successor, so an unrolled RNN's x_t stands beside h_t rather than at depth 0.
    """
    depth = np.array(g.depth, dtype=np.int64)
    src, dst, _ = g.edges()
    first = np.full(g.n_nodes, np.iinfo(np.int64).max)
    np.minimum.at(first, src, depth[dst])
    sources = (np.bincount(dst, minlength=g.n_nodes) == 0) & (first < np.iinfo(np.int64).max)
    depth[sources] = first[sources] - 1
    xy = np.zeros((g.n_nodes, 2))
    for d in np.unique(depth):
        members = np.flatnonzero(depth == d)
        xy[members, 0] = d
        xy[members, 1] = (members.size - 1) / 2.0 - np.arange(members.size)
    return xy


def _draw_panel(ax, g, p, xy, colours, title, beta=None):
    src, dst, par = g.edges()
    fw = g.fixed_weights()
    kinds = g.kinds
    relu = np.array([k in ("relu", "linear", "max") for k in kinds])   # internal nodes
    labelled = g.n_edges <= 80
    seen = {}
    for u, v, i, w in zip(src.tolist(), dst.tolist(), par.tolist(), fw.tolist()):
        k = seen.get((u, v), 0)
        seen[(u, v)] = k + 1
        rad = 0.0 if k == 0 else 0.25 * (1 + k // 2) * (1 if k % 2 else -1)
        colour = colours[i] if i >= 0 else "dimgray"   # a fixed weight: grey, dashed
        ax.annotate("", xy=xy[v], xytext=xy[u],
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.3,
                                    ls="-" if i >= 0 else "--",
                                    shrinkA=5, shrinkB=5, connectionstyle=f"arc3,rad={rad}"))
        if labelled:   # at 40 % of the way, so crossing edges keep their labels apart
            d = xy[v] - xy[u]
            at = xy[u] + 0.4 * d + rad / 2.0 * np.array([d[1], -d[0]])
            ax.text(at[0], at[1], f"{p[i] if i >= 0 else w:.3g}", fontsize=7, color=colour,
                    ha="center", va="center", zorder=5, parse_math=False,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85))
    marker = {"max": "s", "linear": "D"}   # max-pooling and identity neurons stand out
    for kind in ("input", "relu", "output", "linear", "max"):
        at = [k for k, x in enumerate(kinds) if x == kind]
        if at:
            ax.scatter(xy[at, 0], xy[at, 1], s=30, c="white", edgecolors="black", zorder=3,
                       marker=marker.get(kind, "o"))
    if g.n_nodes <= 80:
        for k, label in enumerate(g.nodes):
            # labels are drawn as written: '$' in a label is not mathtext
            ax.text(xy[k, 0], xy[k, 1] + 0.12, str(label), fontsize=6, ha="center",
                    va="bottom", zorder=4, parse_math=False)
            if beta is not None and relu[k]:
                ax.text(xy[k, 0], xy[k, 1] - 0.12, f"β={beta[k]:.3g}", fontsize=6,
                        ha="center", va="top", color="dimgray", zorder=4)
    ax.set_title(title, fontsize=9, parse_math=False)
    ax.set_axis_off()
    ax.set_xlim(xy[:, 0].min() - 0.4, xy[:, 0].max() + 0.4)
    ax.set_ylim(xy[:, 1].min() - 0.6, xy[:, 1].max() + 0.6)



def draw_graph(g, p, beta=None, title="", path=None, dpi=120):
    r"""A figure of the network: nodes laid out by depth, edges coloured by their shared
    parameter and labelled with its value (fixed weights grey and dashed; identity
    neurons drawn as diamonds, max-pooling neurons as squares); with ``beta`` (a feasible node-wise rescaling,
    e.g. from :meth:`pathgeom.RescalingGroup.sample`) a second panel shows
    :math:`T_\beta(p)`, :math:`w \leftarrow w\, \beta_v / \beta_u`, with each
    internal node's :math:`\beta` (the paper's Figure 1).  Needs matplotlib (``[plot]``).

    Returns the :class:`matplotlib.figure.Figure`; with ``path`` it is also saved there
    (the format from the suffix).

    Examples
    --------
    >>> import numpy as np, pathgeom
    >>> from pathgeom.plotting import draw_graph
    >>> g = pathgeom.SharedGraph.from_edges([("x", "a", 0), ("a", "b", 1), ("b", "y", 1)],
    ...                                     ["x"], ["y"])
    >>> fig = draw_graph(g, [0.5, -2.0], title="a chain")
    >>> len(fig.axes)
    1
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from ._memory import check_fits
    from .rescaling import rescale

    panels = 1 if beta is None else 2
    check_fits(BYTES_PER_DRAWN_EDGE * g.n_edges * panels, f"drawing {g.n_edges:,} edges "
               f"(matplotlib keeps several objects per edge)", "draw a smaller network "
               "(--T, --hidden, ...)")
    p = np.asarray(p, dtype=np.float64)
    used = np.flatnonzero(g.param_edge_counts() > 0)
    cmap = colormaps["tab10" if used.size <= 10 else "tab20" if used.size <= 20 else "viridis"]
    colours = {}
    for k, i in enumerate(used.tolist()):
        colours[i] = cmap(k % cmap.N if cmap.N < 256 else k / max(used.size - 1, 1))
    xy = _layout(g)
    width = 1.0 + 1.3 * (np.ptp(xy[:, 0]) + 1)
    height = 2.8 + 0.8 * (np.ptp(xy[:, 1]) + 1)
    fig = Figure(figsize=(min(width * panels, 30), min(height, 20)), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _draw_panel(axes[0], g, p, xy, colours, "p" if panels == 1 else "before: p")
    if beta is not None:
        beta = np.asarray(beta, dtype=np.float64)
        trivial = bool(np.all(beta == 1.0))
        _draw_panel(axes[1], g, rescale(g, p, beta), xy, colours,
                    "after a feasible rescaling: T_β(p), w ← w β_v / β_u"
                    + (" (β = 1)" if trivial else ""), beta=beta)
    if used.size <= 12:
        handles = [Line2D([], [], color=colours[i], lw=2, label=f"p[{i}]") for i in used]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(used.size, 6),
                   fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=8, parse_math=False)
    if path is not None:
        from ._files import save_figure
        check_raster(fig, dpi)
        save_figure(fig, path, dpi=dpi)
    return fig


#: Memory matplotlib holds per drawn edge (a line, a label, their transforms), measured:
#: about 13 KB per edge for an unrolled RNN's graph.
BYTES_PER_DRAWN_EDGE = 16 << 10


def check_raster(fig, dpi):
    """Refuse (:class:`pathgeom._memory.MemoryLimitError`) saving ``fig`` at ``dpi`` when
    its pixels (4 bytes each, about three copies while rendering) do not fit in memory."""
    from ._memory import check_fits
    w, h = fig.get_size_inches()
    pixels = int(w * dpi) * int(h * dpi)
    check_fits(12 * pixels, f"a {int(w * dpi):,} x {int(h * dpi):,} pixel image "
               f"(dpi {dpi:,})", "choose a smaller --dpi")
