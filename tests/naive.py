"""Plain NumPy reference for the recurrent cells, losses and optimizers: the test oracle.

Everything here is derived from the equations in ``stream_rnn/cells/layout.py`` and the
loss/optimizer definitions of the project spec, never from the Numba kernels, so that a
shared misreading cannot make both sides agree. It favours readability over speed: one
Python loop over time and layers, vectorized over units, float64 throughout, and a
hand-written backward pass (BPTT) checked against finite differences in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_rnn.cells.layout import Layout

__all__ = [
    "LOGVAR_CLIP",
    "unpack",
    "forward",
    "step_losses",
    "sequence_loss",
    "loss_and_grad",
    "weight_decay",
    "clip_by_global_norm",
    "sgd",
    "rmsprop",
    "adam",
]

LOGVAR_CLIP = 12.0
LOG_2PI = float(np.log(2.0 * np.pi))


# --------------------------------------------------------------------------- parameters


@dataclass
class LayerParams:
    W: np.ndarray  # (G*H, in_l)
    U: np.ndarray  # (G*H, H)
    b: np.ndarray  # (G*H,)


@dataclass
class Params:
    layers: list[LayerParams]
    V: np.ndarray  # (O, H)
    c: np.ndarray  # (O,)


def unpack(layout: Layout, flat: np.ndarray) -> Params:
    """Views of ``flat`` shaped as the layout's matrices.

    Returning views (not copies) lets the backward pass accumulate straight into a flat
    gradient vector with the very same unpacking, so weights and gradients cannot disagree
    on where a block lives.
    """
    gh = layout.gates * layout.hidden_size
    layers = []
    for layer, (w, u, b, end) in enumerate(layout.layer_offsets):
        in_l = layout.input_size if layer == 0 else layout.hidden_size
        layers.append(
            LayerParams(
                W=flat[w:u].reshape(in_l, gh).T,  # stored input-major
                U=flat[u:b].reshape(layout.hidden_size, gh).T,
                b=flat[b:end],
            )
        )
    v, c, end = layout.head_offsets
    return Params(
        layers=layers,
        V=flat[v:c].reshape(layout.output_size, layout.hidden_size),
        c=flat[c:end],
    )


# --------------------------------------------------------------------------- nonlinearities


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows, unlike 1 / (1 + exp(-x)) for very negative x.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _act(name: str, pre: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(pre)
    if name == "relu":
        return np.maximum(pre, 0.0)
    if name == "sigmoid":
        return _sigmoid(pre)
    raise ValueError(f"unknown activation {name!r}")


def _act_grad(name: str, pre: np.ndarray, out: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return 1.0 - out * out
    if name == "relu":
        # The kink at 0 gets slope 0; tests keep pre-activations away from it.
        return (pre > 0.0).astype(np.float64)
    if name == "sigmoid":
        return out * (1.0 - out)
    raise ValueError(f"unknown activation {name!r}")


# --------------------------------------------------------------------------- one cell step


def _cell_forward(
    cell: str, act: str, p: LayerParams, x: np.ndarray, h: np.ndarray, c: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """One step of one layer: new ``h``, new ``c`` (LSTM only) and what backward needs."""
    H = h.shape[0]
    if cell == "elman":
        pre = p.W @ x + p.U @ h + p.b
        h_new = _act(act, pre)
        return h_new, None, dict(x=x, h=h, pre=pre, h_new=h_new)
    if cell == "lstm":
        a = p.W @ x + p.U @ h + p.b
        i = _sigmoid(a[0:H])
        f = _sigmoid(a[H : 2 * H])
        g = np.tanh(a[2 * H : 3 * H])
        o = _sigmoid(a[3 * H : 4 * H])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        return h_new, c_new, dict(x=x, h=h, c=c, i=i, f=f, g=g, o=o, tc=tc)
    if cell == "gru":
        ax = p.W @ x + p.b  # every bias sits on the input side
        ah = p.U @ h  # no recurrent bias, so U_n h is what the reset gate scales
        r = _sigmoid(ax[0:H] + ah[0:H])
        z = _sigmoid(ax[H : 2 * H] + ah[H : 2 * H])
        n = np.tanh(ax[2 * H : 3 * H] + r * ah[2 * H : 3 * H])
        h_new = (1.0 - z) * n + z * h
        return h_new, None, dict(x=x, h=h, r=r, z=z, n=n, ahn=ah[2 * H : 3 * H])
    raise ValueError(f"unknown cell {cell!r}")


def _cell_backward(
    cell: str,
    act: str,
    p: LayerParams,
    dp: LayerParams,
    cache: dict,
    dh_new: np.ndarray,
    dc_new: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Accumulate this step's weight gradients into ``dp``; return ``(dx, dh, dc)``
    flowing to the layer input, the previous ``h`` and the previous ``c``."""
    x, h = cache["x"], cache["h"]
    if cell == "elman":
        da = dh_new * _act_grad(act, cache["pre"], cache["h_new"])
        dp.W += np.outer(da, x)
        dp.U += np.outer(da, h)
        dp.b += da
        return p.W.T @ da, p.U.T @ da, None
    if cell == "lstm":
        i, f, g, o, tc, c = (cache[k] for k in ("i", "f", "g", "o", "tc", "c"))
        do = dh_new * tc
        dc = dc_new + dh_new * o * (1.0 - tc * tc)
        da = np.concatenate(
            [
                dc * g * i * (1.0 - i),
                dc * c * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                do * o * (1.0 - o),
            ]
        )
        dp.W += np.outer(da, x)
        dp.U += np.outer(da, h)
        dp.b += da
        return p.W.T @ da, p.U.T @ da, dc * f
    if cell == "gru":
        r, z, n, ahn = (cache[k] for k in ("r", "z", "n", "ahn"))
        dn_pre = dh_new * (1.0 - z) * (1.0 - n * n)
        dr_pre = dn_pre * ahn * r * (1.0 - r)
        dz_pre = dh_new * (h - n) * z * (1.0 - z)
        # Input-side and recurrent-side pre-activations only differ on the candidate,
        # where the recurrent term is scaled by r.
        dax = np.concatenate([dr_pre, dz_pre, dn_pre])
        dah = np.concatenate([dr_pre, dz_pre, dn_pre * r])
        dp.W += np.outer(dax, x)
        dp.b += dax
        dp.U += np.outer(dah, h)
        return p.W.T @ dax, p.U.T @ dah + dh_new * z, None
    raise ValueError(f"unknown cell {cell!r}")


# --------------------------------------------------------------------------- network


def _split_state(layout: Layout, row: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    H = layout.hidden_size
    if layout.cell == "lstm":
        return row[:H].copy(), row[H : 2 * H].copy()
    return row[:H].copy(), None


def _run(
    layout: Layout, theta: np.ndarray, state0: np.ndarray, U: np.ndarray, activation: str
) -> tuple[np.ndarray, np.ndarray, list[list[dict]], np.ndarray]:
    """Forward pass keeping per-step caches; returns outs, states, caches, top-layer h's."""
    theta = np.asarray(theta, dtype=np.float64)
    state0 = np.asarray(state0, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    p = unpack(layout, theta)
    L, H = layout.num_layers, layout.hidden_size
    T = U.shape[0]
    hs, cs = zip(*(_split_state(layout, state0[layer]) for layer in range(L)), strict=True)
    hs, cs = list(hs), list(cs)
    outs = np.empty((T, layout.output_size))
    states = np.empty((T, L, layout.state_width))
    tops = np.empty((T, H))
    caches: list[list[dict]] = []
    for t in range(T):
        x = U[t]
        step_caches = []
        for layer in range(L):
            hs[layer], cs[layer], cache = _cell_forward(
                layout.cell, activation, p.layers[layer], x, hs[layer], cs[layer]
            )
            step_caches.append(cache)
            states[t, layer, :H] = hs[layer]
            if cs[layer] is not None:
                states[t, layer, H:] = cs[layer]
            x = hs[layer]  # a stacked layer reads the new h of the layer below, same step
        caches.append(step_caches)
        tops[t] = hs[-1]
        outs[t] = p.V @ hs[-1] + p.c
    return outs, states, caches, tops


def forward(
    layout: Layout,
    theta: np.ndarray,
    state0: np.ndarray,
    U: np.ndarray,
    activation: str = "tanh",
) -> tuple[np.ndarray, np.ndarray]:
    """Head outputs ``(T, O)`` and the state after each step ``(T, L, SW)``."""
    outs, states, _, _ = _run(layout, theta, state0, U, activation)
    return outs, states


def step_losses(layout: Layout, outs: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-step losses ``(T,)`` and their gradients w.r.t. the head outputs ``(T, O)``."""
    outs = np.asarray(outs, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    D = layout.target_size
    if layout.loss == "mse":
        err = outs - Y
        return 0.5 * np.sum(err * err, axis=1), err
    if layout.loss == "gaussian":
        m, s_raw = outs[:, :D], outs[:, D:]
        s = np.clip(s_raw, -LOGVAR_CLIP, LOGVAR_CLIP)
        inv_var = np.exp(-s)
        sq = (Y - m) ** 2
        losses = 0.5 * np.sum(s + sq * inv_var + LOG_2PI, axis=1)
        dm = (m - Y) * inv_var
        # The clip is flat outside its range, so the log-variance gets no gradient there;
        # exactly on the bound nothing was clipped, so the gradient passes (as torch.clamp).
        inside = (s_raw >= -LOGVAR_CLIP) & (s_raw <= LOGVAR_CLIP)
        ds = 0.5 * (1.0 - sq * inv_var) * inside
        return losses, np.concatenate([dm, ds], axis=1)
    if layout.loss == "bce":
        losses = np.sum(_softplus(outs) - Y * outs, axis=1)
        return losses, _sigmoid(outs) - Y
    raise ValueError(f"unknown loss {layout.loss!r}")


def sequence_loss(
    layout: Layout,
    theta: np.ndarray,
    state0: np.ndarray,
    U: np.ndarray,
    Y: np.ndarray,
    first_loss: int = 0,
    activation: str = "tanh",
) -> float:
    """Loss only, for finite differences."""
    outs, _ = forward(layout, theta, state0, U, activation)
    losses, _ = step_losses(layout, outs, Y)
    return float(np.mean(losses[first_loss:]))


def loss_and_grad(
    layout: Layout,
    theta: np.ndarray,
    state0: np.ndarray,
    U: np.ndarray,
    Y: np.ndarray,
    first_loss: int = 0,
    activation: str = "tanh",
) -> tuple[float, np.ndarray]:
    """Mean loss over steps ``[first_loss, T)`` and its gradient w.r.t. ``theta``.

    Full BPTT over all ``T`` steps from ``state0``, which is treated as a constant.
    """
    T = np.asarray(U).shape[0]
    if not 0 <= first_loss < T:
        raise ValueError(f"first_loss must be in [0, {T}), got {first_loss}")
    theta = np.asarray(theta, dtype=np.float64)
    outs, _, caches, tops = _run(layout, theta, state0, U, activation)
    losses, douts = step_losses(layout, outs, Y)
    n_loss = T - first_loss
    douts[:first_loss] = 0.0  # warm-up steps move the state but are not scored
    douts /= n_loss

    grad = np.zeros_like(theta)
    p, dp = unpack(layout, theta), unpack(layout, grad)
    L, H = layout.num_layers, layout.hidden_size
    # Gradient arriving at each layer's h (and c) from the following time step.
    dh_next = [np.zeros(H) for _ in range(L)]
    dc_next = [np.zeros(H) if layout.cell == "lstm" else None for _ in range(L)]
    for t in range(T - 1, -1, -1):
        dp.V += np.outer(douts[t], tops[t])
        dp.c += douts[t]
        d_from_above = p.V.T @ douts[t]
        for layer in range(L - 1, -1, -1):
            dh = dh_next[layer] + d_from_above
            dx, dh_next[layer], dc_next[layer] = _cell_backward(
                layout.cell,
                activation,
                p.layers[layer],
                dp.layers[layer],
                caches[t][layer],
                dh,
                dc_next[layer],
            )
            d_from_above = dx  # the layer below produced this layer's input
    return float(np.mean(losses[first_loss:])), grad


# --------------------------------------------------------------------------- optimizers


def weight_decay(grad: np.ndarray, theta: np.ndarray, mask: np.ndarray, decay: float) -> np.ndarray:
    """L2 decay on weights only (``mask`` is ``layout.decay_mask()``)."""
    return grad + decay * theta * mask


def clip_by_global_norm(grad: np.ndarray, max_norm: float | None) -> np.ndarray:
    """Scale ``grad`` down so its L2 norm is at most ``max_norm``; ``None`` disables."""
    grad = np.asarray(grad, dtype=np.float64)
    if max_norm is None:
        return grad.copy()
    norm = float(np.sqrt(np.sum(grad * grad)))
    if norm <= max_norm:
        return grad.copy()
    return grad * (max_norm / norm)


def sgd(
    theta: np.ndarray, grad: np.ndarray, m: np.ndarray, lr: float, momentum: float
) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-ball SGD: ``m = momentum*m + g``; ``theta -= lr*m``. Returns ``(theta, m)``."""
    m = momentum * m + grad
    return theta - lr * m, m


def rmsprop(
    theta: np.ndarray,
    grad: np.ndarray,
    v: np.ndarray,
    lr: float,
    rho: float,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``v = rho*v + (1-rho)*g^2``; ``theta -= lr*g / (sqrt(v) + eps)``. Returns
    ``(theta, v)``."""
    v = rho * v + (1.0 - rho) * grad * grad
    return theta - lr * grad / (np.sqrt(v) + eps), v


def adam(
    theta: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    t: int,
    lr: float,
    b1: float,
    b2: float,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adam (Kingma & Ba) with bias correction; ``t`` is the 1-based index of this update.
    Returns ``(theta, m, v)``."""
    m = b1 * m + (1.0 - b1) * grad
    v = b2 * v + (1.0 - b2) * grad * grad
    m_hat = m / (1.0 - b1**t)
    v_hat = v / (1.0 - b2**t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v
