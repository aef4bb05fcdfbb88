"""Vectorised edge arrays for small standard graphs (used by the demo, tests, benchmarks).

:func:`rnn_arrays` unrolls a one-layer ReLU RNN (paper Table 1, outputs at the last step,
no time-0 nodes).  Parameter layout: ``W_in`` (H, n_in), then ``W_rec`` (H, H), then
``W_out`` (n_out, H), each row-major.
"""

import numpy as np

__all__ = ["rnn_arrays"]


def rnn_arrays(n_in, H, n_out, T):
    """``dict(src, dst, param, inputs, outputs, n_nodes, n_params, rec)`` for the unrolled RNN.

    Node ids: ``x_t[i] = t*n_in + i``, ``h_t[j] = T*n_in + t*H + j``, ``y[o] = T*n_in + T*H + o``
    (t = 0..T-1).  ``rec`` is the slice of ``W_rec`` in ``p``.
    """
    base_h = T * n_in
    base_y = base_h + T * H
    off_rec = H * n_in
    off_out = off_rec + H * H
    t, j, i = np.meshgrid(np.arange(T), np.arange(H), np.arange(n_in), indexing="ij")
    parts = [(t * n_in + i, base_h + t * H + j, j * n_in + i)]
    t, j, k = np.meshgrid(np.arange(1, T), np.arange(H), np.arange(H), indexing="ij")
    parts.append((base_h + (t - 1) * H + k, base_h + t * H + j, off_rec + j * H + k))
    o, k = np.meshgrid(np.arange(n_out), np.arange(H), indexing="ij")
    parts.append((base_h + (T - 1) * H + k, base_y + o, off_out + o * H + k))
    src, dst, par = (np.concatenate([np.ravel(p[c]) for p in parts]).astype(np.int64)
                     for c in range(3))
    return dict(src=src, dst=dst, param=par, inputs=np.arange(T * n_in),
                outputs=base_y + np.arange(n_out), n_nodes=base_y + n_out,
                n_params=off_out + n_out * H, rec=slice(off_rec, off_out))
