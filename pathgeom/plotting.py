"""Learning-curve figures (the optional ``[plot]`` extra: matplotlib, imported only here and
only when a figure is drawn)."""

import numpy as np

__all__ = ["plot_histories"]


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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
