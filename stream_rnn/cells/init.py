"""Weight initialization from an explicit seed.

Input and head weights use Glorot/Xavier uniform or He normal, per gate block so every
gate starts on the same scale. Recurrent blocks may instead be orthogonal, which keeps
the recurrent map norm-preserving at the start and helps gradients survive long windows.
Biases start at zero, except the LSTM forget gate at 1 so cells remember by default.
"""

from __future__ import annotations

import numpy as np

from stream_rnn.cells.layout import Layout

__all__ = ["init_weights", "INIT_SCHEMES", "RECURRENT_INIT_SCHEMES"]

INIT_SCHEMES = ("xavier", "he")
RECURRENT_INIT_SCHEMES = ("orthogonal", "xavier", "he")


def _dense(rng: np.random.Generator, scheme: str, rows: int, cols: int) -> np.ndarray:
    if scheme == "xavier":
        limit = np.sqrt(6.0 / (rows + cols))
        return rng.uniform(-limit, limit, size=(rows, cols))
    if scheme == "he":
        return rng.normal(0.0, np.sqrt(2.0 / cols), size=(rows, cols))
    raise ValueError(f"unknown init scheme {scheme!r}; expected one of {INIT_SCHEMES}")


def _orthogonal(rng: np.random.Generator, size: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(size, size)))
    # Fixing the signs by diag(r) makes q uniformly distributed over orthogonal matrices.
    return q * np.sign(np.diag(r))


def init_weights(
    layout: Layout,
    seed: int,
    init: str = "xavier",
    recurrent_init: str = "orthogonal",
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """A fresh ``theta`` for ``layout``.

    Parameters
    ----------
    layout
        Shapes and offsets.
    seed
        Seed of the generator; the same seed gives the same weights.
    init
        ``'xavier'`` (Glorot uniform) or ``'he'`` (He normal) for input and head weights.
    recurrent_init
        ``'orthogonal'``, ``'xavier'`` or ``'he'`` for recurrent weights.
    dtype
        ``float32`` or ``float64``.

    Examples
    --------
    >>> lay = Layout("lstm", input_size=2, hidden_size=3)
    >>> theta = init_weights(lay, seed=7)
    >>> theta.shape, theta.dtype
    ((76,), dtype('float32'))
    >>> b = lay.layer_offsets[0][2]
    >>> theta[b + 3 : b + 6].tolist()  # forget-gate biases
    [1.0, 1.0, 1.0]
    """
    if init not in INIT_SCHEMES:
        raise ValueError(f"init must be one of {INIT_SCHEMES}, got {init!r}")
    if recurrent_init not in RECURRENT_INIT_SCHEMES:
        raise ValueError(
            f"recurrent_init must be one of {RECURRENT_INIT_SCHEMES}, got {recurrent_init!r}"
        )
    rng = np.random.default_rng(seed)
    theta = np.zeros(layout.n_params, dtype=np.float64)
    H = layout.hidden_size
    G = layout.gates
    for layer, (w, u, b, _) in enumerate(layout.layer_offsets):
        n_in = layout.input_size if layer == 0 else H
        W = np.concatenate([_dense(rng, init, H, n_in) for _ in range(G)])
        theta[w:u] = W.T.ravel()
        if recurrent_init == "orthogonal":
            U = np.concatenate([_orthogonal(rng, H) for _ in range(G)])
        else:
            U = np.concatenate([_dense(rng, recurrent_init, H, H) for _ in range(G)])
        theta[u:b] = U.T.ravel()
        if layout.cell == "lstm":
            theta[b + H : b + 2 * H] = 1.0
    v, c, _ = layout.head_offsets
    theta[v:c] = _dense(rng, init, layout.output_size, H).ravel()
    return theta.astype(dtype)
