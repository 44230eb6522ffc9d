"""Compiled kernels: one step, a window's forward and backward pass, the optimizer update,
and the keyed learn loop the estimators and the daemon call.

Everything here is a module-level ``@jit`` function over contiguous arrays; the layout of
``theta`` is described in :mod:`stream_rnn.cells.layout`. Integer settings travel in
``cfg`` and real-valued ones in ``hyper`` (same dtype as ``theta``), indexed by the
``C_*`` and ``H_*`` constants below. Nothing allocates inside the per-event loop: scratch
space is the workspace arrays the caller allocates once (see ``Network``).

Truncated BPTT(k1, k2) per entity: every ``k1`` learned events of an entity, its last
``k1`` losses are backpropagated through up to ``k2`` steps, starting from a snapshot of
the entity's state taken where its window begins. The snapshot is advanced with states the
window's own forward pass computed, so memory per entity is one snapshot plus ``k2``
inputs and targets, whatever ``k1`` is.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.cells._flags import jit

# cfg (int64) slots
C_CELL, C_ACT, C_LOSS, C_OPT = 0, 1, 2, 3
C_LAYERS, C_IN, C_HID, C_OUT, C_TGT = 4, 5, 6, 7, 8
C_K1, C_K2, C_SW, C_MAXIN = 9, 10, 11, 12
N_CFG = 13

# hyper (theta's dtype) slots
H_LR, H_B1, H_B2, H_EPS, H_CLIP, H_WD, H_DROPOUT, H_FMAX = 0, 1, 2, 3, 4, 5, 6, 7
N_HYPER = 8

# counters (int64) slots
K_STEP, K_UPDATES, K_SKIPPED = 0, 1, 2
N_COUNTERS = 3

LOGVAR_MIN = -12.0
LOGVAR_MAX = 12.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@jit
def _sigmoid(x):
    # exp(-|x|) never overflows, and e / (1 + e) keeps precision for very negative x.
    e = np.exp(-abs(x))
    return (1.0 if x >= 0 else e) / (1.0 + e)


@jit
def _rand_uniform(rng):
    """xorshift64* in [0, 1): randomness from an explicit state, never a global seed."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return float((x * np.uint64(2685821657736338717)) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


# ---------------------------------------------------------------- dense helpers
#
# Input and recurrent weights are stored input-major ((in, G*H) row-major): the forward
# pass then adds one scaled contiguous column per input, which compiles to vertical SIMD
# multiply-adds instead of a horizontal reduction per gate row.


@jit
def _tanh(x):
    # Branch-free on purpose: gate values change sign unpredictably, and a mispredicted
    # branch per activation costs more than computing both forms and selecting one.
    ax = abs(x)
    e = np.exp(-2.0 * ax)
    t_exp = (1.0 - e) / (1.0 + e)
    # Near 0 the exp form loses relative precision; the series is exact to rounding there.
    x2 = ax * ax
    t_series = ax * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0 - x2 * (17.0 / 315.0))))
    t = t_series if ax < 0.02 else t_exp
    return t if x >= 0 else -t


@jit
def _gates_init(theta, b, rows, out):
    for r in range(rows):
        out[r] = theta[b + r]


@jit
def _accumulate(theta, w, n_in, rows, x, out):
    """out += W x for an input-major block at ``w`` (``n_in`` columns of ``rows``)."""
    for j in range(n_in):
        xj = x[j]
        base = w + j * rows
        for r in range(rows):
            out[r] += theta[base + r] * xj


@jit
def _grad_and_backprop(theta, grad, w, n_in, rows, d, x, dx):
    """grad[W] += x d^T and dx[j] += W[:, j] . d, for an input-major block."""
    for j in range(n_in):
        xj = x[j]
        base = w + j * rows
        acc = dx[j] * 0.0
        for r in range(rows):
            grad[base + r] += d[r] * xj
            acc += theta[base + r] * d[r]
        dx[j] += acc


@jit
def _head(theta, v, c, O, H, h, out):
    """out = V h + c; the head is stored output-major ((O, H) row-major)."""
    for o in range(O):
        acc = theta[c + o]
        base = v + o * H
        for j in range(H):
            acc += theta[base + j] * h[j]
        out[o] = acc


@jit
def _head_backward(theta, grad, v, c, O, H, dout, h, dh):
    for o in range(O):
        d = dout[o]
        grad[c + o] += d
        base = v + o * H
        for j in range(H):
            grad[base + j] += d * h[j]
            dh[j] += theta[base + j] * d


# ---------------------------------------------------------------- one layer, one step


@jit
def _layer_forward(cell, act, theta, w, u, b, n_in, H, x, prev, new, gates, aux):
    """Advance one layer: ``prev``/``new`` are state rows (h, then c for the LSTM).

    ``gates`` receives post-activation gate values and ``aux`` what the backward pass
    needs besides them (tanh(c') for the LSTM, U h for the GRU).
    """
    if cell == 1:  # LSTM
        G = 4 * H
        _gates_init(theta, b, G, gates)
        _accumulate(theta, w, n_in, G, x, gates)
        _accumulate(theta, u, H, G, prev, gates)
        for k in range(H):
            i = _sigmoid(gates[k])
            f = _sigmoid(gates[H + k])
            g = _tanh(gates[2 * H + k])
            o = _sigmoid(gates[3 * H + k])
            gates[k] = i
            gates[H + k] = f
            gates[2 * H + k] = g
            gates[3 * H + k] = o
            c_new = f * prev[H + k] + i * g
            tc = _tanh(c_new)
            aux[k] = tc
            new[H + k] = c_new
            new[k] = o * tc
    elif cell == 2:  # GRU
        G = 3 * H
        _gates_init(theta, b, G, gates)
        _accumulate(theta, w, n_in, G, x, gates)
        # U h is kept apart because the reset gate multiplies its candidate block.
        for r in range(G):
            aux[r] = 0.0
        _accumulate(theta, u, H, G, prev, aux)
        for k in range(H):
            r = _sigmoid(gates[k] + aux[k])
            z = _sigmoid(gates[H + k] + aux[H + k])
            n = _tanh(gates[2 * H + k] + r * aux[2 * H + k])
            gates[k] = r
            gates[H + k] = z
            gates[2 * H + k] = n
            new[k] = (1.0 - z) * n + z * prev[k]
    else:  # Elman
        _gates_init(theta, b, H, gates)
        _accumulate(theta, w, n_in, H, x, gates)
        _accumulate(theta, u, H, H, prev, gates)
        for k in range(H):
            a = gates[k]
            if act == 0:
                a = _tanh(a)
            elif act == 1:
                a = a if a > 0.0 else a * 0.0
            else:
                a = _sigmoid(a)
            gates[k] = a
            new[k] = a


@jit
def _layer_backward(
    cell, act, theta, grad, w, u, b, n_in, H, x, prev, gates, aux, dnew, dprev, dx, dpre, dph
):
    """Backpropagate one layer-step.

    ``dnew`` holds dL/d(new state) (h, then c); writes dL/d(prev state) into ``dprev``
    (overwriting) and dL/dx into ``dx`` (overwriting), and accumulates weight gradients.
    """
    for j in range(n_in):
        dx[j] = 0.0
    if cell == 1:  # LSTM
        for k in range(H):
            i = gates[k]
            f = gates[H + k]
            g = gates[2 * H + k]
            o = gates[3 * H + k]
            tc = aux[k]
            dh = dnew[k]
            dc = dnew[H + k] + dh * o * (1.0 - tc * tc)
            dpre[k] = dc * g * i * (1.0 - i)
            dpre[H + k] = dc * prev[H + k] * f * (1.0 - f)
            dpre[2 * H + k] = dc * i * (1.0 - g * g)
            dpre[3 * H + k] = dh * tc * o * (1.0 - o)
            dprev[H + k] = dc * f
            dprev[k] = 0.0
        G = 4 * H
        _grad_and_backprop(theta, grad, w, n_in, G, dpre, x, dx)
        _grad_and_backprop(theta, grad, u, H, G, dpre, prev, dprev)
        for r in range(G):
            grad[b + r] += dpre[r]
    elif cell == 2:  # GRU
        for k in range(H):
            r = gates[k]
            z = gates[H + k]
            n = gates[2 * H + k]
            dh = dnew[k]
            dn_pre = dh * (1.0 - z) * (1.0 - n * n)
            dr_pre = dn_pre * aux[2 * H + k] * r * (1.0 - r)
            dz_pre = dh * (prev[k] - n) * z * (1.0 - z)
            dpre[k] = dr_pre
            dpre[H + k] = dz_pre
            dpre[2 * H + k] = dn_pre
            dph[k] = dr_pre
            dph[H + k] = dz_pre
            dph[2 * H + k] = dn_pre * r
            dprev[k] = dh * z
        G = 3 * H
        _grad_and_backprop(theta, grad, w, n_in, G, dpre, x, dx)
        _grad_and_backprop(theta, grad, u, H, G, dph, prev, dprev)
        for r in range(G):
            grad[b + r] += dpre[r]
    else:  # Elman
        for k in range(H):
            a = gates[k]
            if act == 0:
                d = 1.0 - a * a
            elif act == 1:
                d = 1.0 if a > 0.0 else 0.0
            else:
                d = a * (1.0 - a)
            dpre[k] = dnew[k] * d
            dprev[k] = 0.0
        _grad_and_backprop(theta, grad, w, n_in, H, dpre, x, dx)
        _grad_and_backprop(theta, grad, u, H, H, dpre, prev, dprev)
        for r in range(H):
            grad[b + r] += dpre[r]


# ---------------------------------------------------------------- whole network


@jit
def network_step(cfg, offs, theta, state, u, new_state, out, gates, aux, xbuf):
    """One inference step of the stacked network (no dropout).

    ``state`` and ``new_state`` are ``(L, SW)`` and must not alias; ``out`` gets the head.
    ``gates`` (``G*H``), ``aux`` (``G*H``) and ``xbuf`` (``max(I, H)``) are scratch.
    """
    cell = cfg[C_CELL]
    act = cfg[C_ACT]
    L = cfg[C_LAYERS]
    H = cfg[C_HID]
    for layer in range(L):
        w = offs[layer, 0]
        uo = offs[layer, 1]
        b = offs[layer, 2]
        n_in = offs[layer, 3]
        if layer == 0:
            for j in range(n_in):
                xbuf[j] = u[j]
        else:
            for j in range(H):
                xbuf[j] = new_state[layer - 1, j]
        _layer_forward(cell, act, theta, w, uo, b, n_in, H, xbuf, state[layer], new_state[layer],
                       gates, aux)
    _head(theta, offs[L, 0], offs[L, 1], offs[L, 2], H, new_state[L - 1], out)


@jit
def forward_window(cfg, hyper, offs, theta, state0, U, n, train, rng,
                   ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m):
    """Forward over ``U[:n]`` from ``state0``, caching what ``backward_window`` needs.

    With ``train`` and a dropout rate > 0, inputs of layers above the first are masked
    (inverted dropout, masks drawn from ``rng`` and kept in ``ws_m``).
    """
    cell = cfg[C_CELL]
    act = cfg[C_ACT]
    L = cfg[C_LAYERS]
    H = cfg[C_HID]
    SW = cfg[C_SW]
    p_drop = hyper[H_DROPOUT]
    use_drop = train and p_drop > 0.0 and L > 1
    keep_scale = 1.0 / (1.0 - p_drop) if use_drop else 1.0
    for layer in range(L):
        for j in range(SW):
            ws_s[0, layer, j] = state0[layer, j]
    v = offs[L, 0]
    c = offs[L, 1]
    O = offs[L, 2]
    for t in range(n):
        for layer in range(L):
            w = offs[layer, 0]
            uo = offs[layer, 1]
            b = offs[layer, 2]
            n_in = offs[layer, 3]
            x = ws_x[t, layer]
            if layer == 0:
                for j in range(n_in):
                    x[j] = U[t, j]
            else:
                below = ws_s[t + 1, layer - 1]
                if use_drop:
                    for j in range(H):
                        m = keep_scale if _rand_uniform(rng) >= p_drop else 0.0
                        ws_m[t, layer, j] = m
                        x[j] = below[j] * m
                else:
                    for j in range(H):
                        ws_m[t, layer, j] = 1.0
                        x[j] = below[j]
            _layer_forward(cell, act, theta, w, uo, b, n_in, H, x, ws_s[t, layer],
                           ws_s[t + 1, layer], ws_g[t, layer], ws_aux[t, layer])
        _head(theta, v, c, O, H, ws_s[t + 1, L - 1], ws_o[t])


@jit
def _loss_and_dout(loss_kind, D, out, y, dout, scale):
    """Loss of one step; writes ``scale * dloss/dout`` into ``dout``."""
    total = 0.0
    if loss_kind == 1:  # Gaussian NLL: means then log-variances
        for k in range(D):
            m = out[k]
            s = out[D + k]
            clipped = s < LOGVAR_MIN or s > LOGVAR_MAX
            if s < LOGVAR_MIN:
                s = LOGVAR_MIN
            elif s > LOGVAR_MAX:
                s = LOGVAR_MAX
            inv_var = math.exp(-s)
            r = y[k] - m
            total += 0.5 * (s + r * r * inv_var) + _HALF_LOG_2PI
            dout[k] = -r * inv_var * scale
            dout[D + k] = 0.0 if clipped else 0.5 * (1.0 - r * r * inv_var) * scale
    elif loss_kind == 2:  # binary cross-entropy on logits
        for k in range(D):
            o = out[k]
            total += max(o, 0.0) - y[k] * o + math.log1p(math.exp(-abs(o)))
            dout[k] = (_sigmoid(o) - y[k]) * scale
    else:  # squared error
        for k in range(D):
            r = out[k] - y[k]
            total += 0.5 * r * r
            dout[k] = r * scale
    return total


@jit
def backward_window(cfg, offs, theta, Y, n, first_loss, grad,
                    ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp):
    """BPTT over the window cached by ``forward_window``; returns the mean loss.

    The loss is the mean of the per-step losses at steps ``first_loss .. n-1``; ``grad``
    is overwritten with its gradient.
    """
    cell = cfg[C_CELL]
    act = cfg[C_ACT]
    loss_kind = cfg[C_LOSS]
    L = cfg[C_LAYERS]
    H = cfg[C_HID]
    D = cfg[C_TGT]
    SW = cfg[C_SW]
    v = offs[L, 0]
    c = offs[L, 1]
    O = offs[L, 2]
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    dpre = ws_tmp[0]
    dph = ws_tmp[1]
    dx = ws_tmp[2]
    dout = ws_tmp[3]
    n_loss = n - first_loss
    scale = 1.0 / n_loss
    total = 0.0
    cur = 0
    for layer in range(L):
        for j in range(SW):
            ws_d[cur, layer, j] = 0.0
    for t in range(n - 1, -1, -1):
        dnext = ws_d[cur]
        dprev = ws_d[1 - cur]
        if t >= first_loss:
            total += _loss_and_dout(loss_kind, D, ws_o[t], Y[t], dout, scale)
            _head_backward(theta, grad, v, c, O, H, dout, ws_s[t + 1, L - 1], dnext[L - 1])
        for layer in range(L - 1, -1, -1):
            w = offs[layer, 0]
            uo = offs[layer, 1]
            b = offs[layer, 2]
            n_in = offs[layer, 3]
            _layer_backward(cell, act, theta, grad, w, uo, b, n_in, H, ws_x[t, layer],
                            ws_s[t, layer], ws_g[t, layer], ws_aux[t, layer], dnext[layer],
                            dprev[layer], dx, dpre, dph)
            if layer > 0:
                below = dnext[layer - 1]
                for j in range(H):
                    below[j] += dx[j] * ws_m[t, layer, j]
        cur = 1 - cur
    return total * scale


# ---------------------------------------------------------------- optimizer


@jit
def apply_update(cfg, hyper, theta, grad, opt, counters):
    """Weight decay, clipping by global norm, then one SGD / RMSProp / Adam step.

    ``opt`` rows: first moment (or momentum), second moment, L2 decay mask. If the
    gradient or any updated weight is not finite, nothing changes and the skip is
    counted. Returns the gradient's global norm (after decay, before clipping).
    """
    P = theta.shape[0]
    lr = hyper[H_LR]
    b1 = hyper[H_B1]
    b2 = hyper[H_B2]
    eps = hyper[H_EPS]
    clip = hyper[H_CLIP]
    wd = hyper[H_WD]
    kind = cfg[C_OPT]
    fmax = hyper[H_FMAX]
    m = opt[0]
    vv = opt[1]
    mask = opt[2]
    if wd > 0.0:
        for i in range(P):
            grad[i] += wd * mask[i] * theta[i]
    sq = 0.0
    for i in range(P):
        sq += float(grad[i]) * float(grad[i])
    norm = math.sqrt(sq)
    if not math.isfinite(norm):
        counters[K_SKIPPED] += 1
        return norm
    gscale = 1.0
    if clip > 0.0 and norm > clip:
        gscale = clip / norm
    t = counters[K_STEP] + 1
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    # Check pass first, so a step that would overflow leaves weights and moments as they were.
    ok = True
    for i in range(P):
        g = grad[i] * gscale
        # Evaluated in float64 and compared with the dtype's largest value, so a float32
        # overflow is caught even though the float64 value is finite.
        gf = float(g)
        mi = 0.0
        vi = 0.0
        if kind == 2:
            mi = float(b1) * float(m[i]) + (1.0 - float(b1)) * gf
            vi = float(b2) * float(vv[i]) + (1.0 - float(b2)) * gf * gf
            new = float(theta[i]) - float(lr) * (mi / bc1) / (math.sqrt(vi / bc2) + float(eps))
        elif kind == 1:
            vi = float(b2) * float(vv[i]) + (1.0 - float(b2)) * gf * gf
            new = float(theta[i]) - float(lr) * gf / (math.sqrt(vi) + float(eps))
        else:
            mi = float(b1) * float(m[i]) + gf
            new = float(theta[i]) - float(lr) * mi
        if not (abs(new) <= fmax and abs(mi) <= fmax and vi <= fmax):
            ok = False
            break
    if not ok:
        counters[K_SKIPPED] += 1
        return norm
    for i in range(P):
        g = grad[i] * gscale
        if kind == 2:
            m[i] = b1 * m[i] + (1.0 - b1) * g
            vv[i] = b2 * vv[i] + (1.0 - b2) * g * g
            theta[i] -= lr * (m[i] / bc1) / (math.sqrt(vv[i] / bc2) + eps)
        elif kind == 1:
            vv[i] = b2 * vv[i] + (1.0 - b2) * g * g
            theta[i] -= lr * g / (math.sqrt(vv[i]) + eps)
        else:
            m[i] = b1 * m[i] + g
            theta[i] -= lr * m[i]
    counters[K_STEP] = t
    counters[K_UPDATES] += 1
    return norm


# ---------------------------------------------------------------- keyed learning


@jit
def _copy_state(src, dst):
    for layer in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[layer, j] = src[layer, j]


@jit
def reset_slot(slot, st_state, st_snap, st_len, st_pending):
    """Zero one entity's state, snapshot and window (a new or evicted key)."""
    st_state[slot] = 0.0
    st_snap[slot] = 0.0
    st_len[slot] = 0
    st_pending[slot] = 0


@jit
def _learn_committed(cfg, hyper, offs, theta, grad, opt, counters, rng,
                     ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                     st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                     slot, u, y, new_state, stats):
    """Commit an already computed step for ``slot`` and learn when its window is due.

    ``stats`` receives (loss, gradient norm) when an update ran; returns 1 if it did.
    """
    I = cfg[C_IN]
    D = cfg[C_TGT]
    k1 = cfg[C_K1]
    k2 = cfg[C_K2]
    _copy_state(new_state, st_state[slot])
    n = st_len[slot]
    for j in range(I):
        st_ru[slot, n, j] = u[j]
    for j in range(D):
        st_ry[slot, n, j] = y[j]
    n += 1
    st_len[slot] = n
    pending = st_pending[slot] + 1
    if pending < k1:
        st_pending[slot] = pending
        return 0
    st_pending[slot] = 0
    ru = st_ru[slot]
    ry = st_ry[slot]
    forward_window(cfg, hyper, offs, theta, st_snap[slot], ru, n, True, rng,
                   ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m)
    # Entries that fall out of the window before the next update start the next window.
    drop = n + k1 - k2
    no_dropout = hyper[H_DROPOUT] <= 0.0 or cfg[C_LAYERS] == 1
    if drop > 0 and no_dropout:
        _copy_state(ws_s[drop], st_snap[slot])
    loss = backward_window(cfg, offs, theta, ry, n, n - pending, grad,
                           ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp)
    norm = apply_update(cfg, hyper, theta, grad, opt, counters)
    stats[0] = loss
    stats[1] = norm
    if drop > 0:
        if not no_dropout:
            # The training pass saw dropout masks; the snapshot must be an inference state.
            snap = st_snap[slot]
            tmp = ws_d[0]
            for t in range(drop):
                network_step(cfg, offs, theta, snap, ru[t], tmp, ws_o[0], ws_g[0, 0],
                             ws_aux[0, 0], ws_tmp[2])
                _copy_state(tmp, snap)
        keep = n - drop
        for t in range(keep):
            for j in range(I):
                ru[t, j] = ru[t + drop, j]
            for j in range(D):
                ry[t, j] = ry[t + drop, j]
        st_len[slot] = keep
    return 1


@jit
def predict_slot(cfg, offs, theta, st_state, slot, u, out, ws_g, ws_aux, ws_tmp, ws_d):
    """Head output for input ``u`` from ``slot``'s state (``slot < 0``: a fresh entity).

    Leaves every state untouched.
    """
    state = ws_d[1]
    if slot >= 0:
        _copy_state(st_state[slot], state)
    else:
        state[:, :] = 0.0
    network_step(cfg, offs, theta, state, u, ws_d[0], out, ws_g[0, 0], ws_aux[0, 0],
                 ws_tmp[2])


@jit
def learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
               ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
               st_state, st_snap, st_ru, st_ry, st_len, st_pending,
               slot, u, y, out, stats):
    """Step ``slot`` with ``u`` (its output before learning goes to ``out``), store
    ``(u, y)`` in its window, and run truncated BPTT when ``k1`` events are pending.

    Returns 1 if the weights were updated (or an update was attempted and skipped).
    """
    # ws_d is reused by the backward pass; _learn_committed copies the state out first.
    new_state = ws_d[0]
    network_step(cfg, offs, theta, st_state[slot], u, new_state, out, ws_g[0, 0],
                 ws_aux[0, 0], ws_tmp[2])
    return _learn_committed(cfg, hyper, offs, theta, grad, opt, counters, rng,
                            ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                            st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                            slot, u, y, new_state, stats)


@jit
def run_batch(cfg, hyper, offs, theta, grad, opt, counters, rng,
              ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
              st_state, st_snap, st_ru, st_ry, st_len, st_pending,
              slots, resets, U, Y, learn, outs, losses, norms):
    """A whole batch in arrival order: for each event, predict then (if ``learn[i]``)
    learn, exactly as the per-event calls would.

    ``resets[i]`` zeroes the slot first (a new key took it). ``outs[i]`` gets the
    prediction made before learning from event ``i``; ``losses[i]``/``norms[i]`` the loss
    and gradient norm of the update event ``i`` triggered, NaN when none ran. Returns the
    number of updates.
    """
    n_events = slots.shape[0]
    stats = ws_tmp[3, :2].copy()
    updates = 0
    for i in range(n_events):
        slot = slots[i]
        if resets[i]:
            reset_slot(slot, st_state, st_snap, st_len, st_pending)
        losses[i] = np.nan
        norms[i] = np.nan
        if learn[i]:
            did = learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
                             ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                             st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                             slot, U[i], Y[i], outs[i], stats)
            if did:
                updates += 1
                losses[i] = stats[0]
                norms[i] = stats[1]
        else:
            predict_slot(cfg, offs, theta, st_state, slot, U[i], outs[i], ws_g, ws_aux,
                         ws_tmp, ws_d)
    return updates
