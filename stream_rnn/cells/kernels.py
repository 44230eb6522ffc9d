"""Compiled kernels: one step, a window's forward and backward pass, the optimizer update,
and the keyed learn loop the estimators and the daemon call.

Everything here is a module-level compiled function over contiguous arrays; the layout of
``theta`` is described in :mod:`stream_rnn.cells.layout`. Integer settings travel in
``cfg`` and real-valued ones in ``hyper`` (same dtype as ``theta``), indexed by the
``C_*`` and ``H_*`` constants below. Nothing allocates inside the per-event loop: scratch
space is the workspace arrays the caller allocates once (see ``Network``).

Truncated BPTT(k1, k2) per entity: every ``k1`` learned events of an entity, its last
``k1`` losses are backpropagated through up to ``k2`` steps, starting from a snapshot of
the entity's state taken where its window begins. The snapshot is advanced with states the
window's own forward pass computed, so memory per entity is one snapshot plus ``k2``
inputs and targets, whatever ``k1`` is.

Speed notes, since much of the structure below exists for them. At the sizes this runs at
(a few thousand weights) the arithmetic is cheap and overheads dominate:

- Inner loops run over whole gate blocks and must vectorize. What stops LLVM from doing
  so costs 5-10x: a libm call (``np.exp``), a branch, Numba's zero-division check on
  ``/`` (an early exit), or an index Numba must wrap around because LLVM cannot prove it
  non-negative. Hence the polynomial ``exp``, the NumPy error model where denominators
  cannot be zero, ``< 0`` guards, and column *views* of ``theta`` rather than offset
  arithmetic (LLVM can then bound what each loop touches and keep it vectorized).
- Per-element arithmetic runs in ``theta``'s dtype (a Python float constant would
  silently promote float32 arithmetic to float64: half the SIMD width, plus conversions).
  sigmoid and tanh are within 2 ulp in either precision.
- Kernels compile without reference counting (``jit_noalloc``), so views are free.
- The backward pass sums weight gradients over the whole window at the end instead of
  adding an outer product per step, which touches ``grad`` a quarter as often.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from stream_rnn.cells._flags import FASTMATH, jit_noalloc
from stream_rnn.cells.scaling import scale_targets

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

# Results must not depend on where a kernel is called from: the per-event API, the batch
# kernels and estimators' own compiled loops must agree to the bit. With ``reassoc`` LLVM
# may evaluate the same source differently once a helper is inlined into a different
# caller, so code is compiled with a fixed evaluation order (``_exact``: no ``reassoc``,
# and no ``arcp``, which could turn divisions sharing a denominator into one rounded
# reciprocal). Only the reductions in ``_backprop`` and ``_sum_stats`` keep reassociation,
# which they need to vectorize; both are loops large enough that LLVM calls them rather
# than inlining, so every caller runs the one summation order chosen when they were
# compiled. (After editing this file, clear the Numba caches of modules whose compiled
# functions call into it, e.g. ``fraud_kernels``: a cached caller keeps the old code.)
_EXACT_MATH = set(FASTMATH - {"reassoc", "arcp"})
_exact = jit_noalloc(fastmath=_EXACT_MATH)
# Numba's default error model turns every float division into a zero test plus a raise,
# an early exit that keeps the surrounding loop scalar. Functions whose denominators are
# provably non-zero use the NumPy model instead.
_nozerocheck = jit_noalloc(fastmath=_EXACT_MATH, error_model="numpy")


# ---------------------------------------------------------------- scalar math
#
# exp(x) for x <= 0 as 2**k * (1 + expm1(r)), r = x - k ln2 in [-ln2/2, ln2/2]: Cody-Waite
# reduction, a Taylor polynomial (truncation < 0.1 ulp on that interval) and 2**k built
# from its bits. Branch-free and call-free, so gate loops vectorize, where np.exp is a
# libm call per element. One version per precision: float32 gates then run on twice the
# SIMD lanes and a shorter polynomial. (Constants are NumPy scalars of the right type: a
# Python float would promote float32 arithmetic to float64.)

_LOG2E = 1.4426950408889634
# ln 2 = _LN2_HI + _LN2_LO; _LN2_HI has 9 significant bits, so k * _LN2_HI is exact.
_LN2_HI = 0.693359375
_LN2_LO = -2.1219444005469058e-4
# log2(e), ln2 split, 2**52 + 1023 (added to an integer k in [-1022, 0] it leaves
# k + 1023 in the low bits, to become the exponent of 2**k), and the argument below which
# exp is subnormal: taken as 0 there, so a saturated gate's derivative is 0 rather than a
# tiny value that a huge upstream gradient could blow up (np.exp gave subnormals there).
_EXP64 = (_LOG2E, _LN2_HI, _LN2_LO, 4503599627371519.0, math.log(np.finfo(np.float64).tiny))
_EXP64_POLY = tuple(1.0 / math.factorial(n) for n in range(2, 14))
# The same for float32: 2**23 + 127, and degree 8.
_EXP32 = tuple(np.float32(c) for c in (_LOG2E, _LN2_HI, _LN2_LO, 8388735.0,
                                        math.log(np.finfo(np.float32).tiny)))
_EXP32_POLY = tuple(np.float32(1.0 / math.factorial(n)) for n in range(2, 9))


@_nozerocheck
def _exp_parts64(x):
    """``(s, q, k)`` with exp(x) = s * (1 + q), s = 2**k, q = expm1(x - k ln2), for
    float64 x <= 0 (s = 0 where exp(x) would be subnormal). NaN stays NaN (through q)."""
    log2e, ln2_hi, ln2_lo, shift, x_min = _EXP64
    c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = _EXP64_POLY
    xc = x_min if x < x_min else x  # written so that NaN is kept
    k = np.floor(xc * log2e + 0.5)
    r = (xc - k * ln2_hi) - k * ln2_lo
    q = r * (1.0 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (
        c7 + r * (c8 + r * (c9 + r * (c10 + r * (c11 + r * (c12 + r * c13))))))))))))
    s = np.int64(np.float64(k + shift).view(np.int64) << 52).view(np.float64)
    return (0.0 if x < x_min else s), q, k


@_nozerocheck
def _exp_parts32(x):
    """``_exp_parts64`` for float32 x."""
    log2e, ln2_hi, ln2_lo, shift, x_min = _EXP32
    c2, c3, c4, c5, c6, c7, c8 = _EXP32_POLY
    one = np.float32(1.0)
    xc = x_min if x < x_min else x
    k = np.floor(xc * log2e + np.float32(0.5))
    r = (xc - k * ln2_hi) - k * ln2_lo
    q = r * (one + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * c8)))))))
    s = np.int32(np.float32(k + shift).view(np.int32) << 23).view(np.float32)
    return (np.float32(0.0) if x < x_min else s), q, k


@_nozerocheck
def _sigmoid64(x):
    # exp(-|x|) never overflows, and e / (1 + e) keeps precision for very negative x.
    s, q, _ = _exp_parts64(-abs(x))
    e = s + s * q
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


@_nozerocheck
def _sigmoid32(x):
    one = np.float32(1.0)
    s, q, _ = _exp_parts32(-abs(x))
    e = s + s * q
    return (one if x >= np.float32(0.0) else e) / (one + e)


@_nozerocheck
def _tanh64(x):
    # tanh|x| = -m / (2 + m) with m = expm1(-2|x|): no cancellation near 0, where m = q.
    s, q, k = _exp_parts64(-2.0 * abs(x))
    m = q if k == 0.0 else (s - 1.0) + s * q
    t = -m / (2.0 + m)
    return t if x >= 0.0 else -t


@_nozerocheck
def _tanh32(x):
    s, q, k = _exp_parts32(np.float32(-2.0) * abs(x))
    m = q if k == np.float32(0.0) else (s - np.float32(1.0)) + s * q
    t = -m / (np.float32(2.0) + m)
    return t if x >= np.float32(0.0) else -t


def _sigmoid(x):
    """Logistic function in the precision of ``x``. Compiled code picks the version by
    type at compile time, through the overload below; this body only runs uncompiled
    (``NUMBA_DISABLE_JIT``)."""
    return _sigmoid32(x) if isinstance(x, np.float32) else _sigmoid64(float(x))


def _tanh(x):
    """tanh in the precision of ``x`` (see ``_sigmoid``)."""
    return _tanh32(x) if isinstance(x, np.float32) else _tanh64(float(x))


@overload(_sigmoid)
def _sigmoid_by_type(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    return lambda x: _sigmoid64(float(x))


@overload(_tanh)
def _tanh_by_type(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: _tanh64(float(x))


@_exact
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
#
# Helpers index per-column views (``theta[c:c + rows]``) by the loop counter alone. With
# ``theta[c + r]`` Numba must wrap a possibly negative index around, and LLVM cannot bound
# the ranges several such streams touch, so its run-time overlap test fails and the scalar
# fallback loop runs instead.


@_exact
def _gates_init(theta, b, rows, out):
    bias = theta[b:b + rows]
    for r in range(rows):
        out[r] = bias[r]


@_exact
def _accumulate(theta, w, n_in, rows, x, out):
    """out += W x for an input-major block at ``w`` (``n_in`` columns of ``rows``)."""
    # Four columns per pass over ``out``: each pass is a chain of loads and stores through
    # memory, so fewer passes is what makes this faster, not fewer multiplies.
    n4 = n_in - n_in % 4
    for j in range(0, n4, 4):
        c0 = w + j * rows
        c1 = c0 + rows
        c2 = c1 + rows
        c3 = c2 + rows
        w0 = theta[c0:c1]
        w1 = theta[c1:c2]
        w2 = theta[c2:c3]
        w3 = theta[c3:c3 + rows]
        x0 = x[j]
        x1 = x[j + 1]
        x2 = x[j + 2]
        x3 = x[j + 3]
        for r in range(rows):
            out[r] += (w0[r] * x0 + w1[r] * x1) + (w2[r] * x2 + w3[r] * x3)
    for j in range(n4, n_in):
        c0 = w + j * rows
        w0 = theta[c0:c0 + rows]
        x0 = x[j]
        for r in range(rows):
            out[r] += w0[r] * x0


@jit_noalloc
def _backprop(theta, w, n_in, rows, d, dx):
    """dx[j] += W[:, j] . d for an input-major block: the gradient reaching its input."""
    # Vectorized dot products, hence compiled with reassociation (see ``_exact``). Four
    # columns per pass, so each load of d serves four of them.
    zero = theta.dtype.type(0.0)
    n4 = n_in - n_in % 4
    for j in range(0, n4, 4):
        c0 = w + j * rows
        c1 = c0 + rows
        c2 = c1 + rows
        c3 = c2 + rows
        w0 = theta[c0:c1]
        w1 = theta[c1:c2]
        w2 = theta[c2:c3]
        w3 = theta[c3:c3 + rows]
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        for r in range(rows):
            dr = d[r]
            a0 += w0[r] * dr
            a1 += w1[r] * dr
            a2 += w2[r] * dr
            a3 += w3[r] * dr
        dx[j] += a0
        dx[j + 1] += a1
        dx[j + 2] += a2
        dx[j + 3] += a3
    for j in range(n4, n_in):
        c0 = w + j * rows
        w0 = theta[c0:c0 + rows]
        a0 = zero
        for r in range(rows):
            a0 += w0[r] * d[r]
        dx[j] += a0


@_exact
def _weight_grad(grad, w, n_in, rows, X, D, layer, n):
    """grad[W] += sum over t < n of X[t, layer, :n_in] D[t, layer, :rows]^T.

    The whole window at once, four steps per pass over each gradient column: that reads
    and writes ``grad`` a quarter as often as adding one outer product per step.
    """
    n4 = n - n % 4
    for t in range(0, n4, 4):
        d0 = D[t, layer]
        d1 = D[t + 1, layer]
        d2 = D[t + 2, layer]
        d3 = D[t + 3, layer]
        for j in range(n_in):
            c0 = w + j * rows
            g = grad[c0:c0 + rows]
            x0 = X[t, layer, j]
            x1 = X[t + 1, layer, j]
            x2 = X[t + 2, layer, j]
            x3 = X[t + 3, layer, j]
            for r in range(rows):
                g[r] += (d0[r] * x0 + d1[r] * x1) + (d2[r] * x2 + d3[r] * x3)
    for t in range(n4, n):
        d0 = D[t, layer]
        for j in range(n_in):
            c0 = w + j * rows
            g = grad[c0:c0 + rows]
            x0 = X[t, layer, j]
            for r in range(rows):
                g[r] += d0[r] * x0


@_exact
def _bias_grad(grad, b, rows, D, layer, n):
    """grad[b:b + rows] += sum over t < n of D[t, layer, :rows]."""
    g = grad[b:b + rows]
    for t in range(n):
        d = D[t, layer]
        for r in range(rows):
            g[r] += d[r]


@_exact
def _head(theta, v, c, O, H, h, out):
    """out = V h + c; the head is stored output-major ((O, H) row-major)."""
    # Four partial sums in a fixed order rather than a vectorized reduction, which would
    # need reassociation (see ``_exact``); H is small.
    zero = theta.dtype.type(0.0)
    H4 = H - H % 4
    for o in range(O):
        row = theta[v + o * H:v + (o + 1) * H]
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        for j in range(0, H4, 4):
            a0 += row[j] * h[j]
            a1 += row[j + 1] * h[j + 1]
            a2 += row[j + 2] * h[j + 2]
            a3 += row[j + 3] * h[j + 3]
        for j in range(H4, H):
            a0 += row[j] * h[j]
        out[o] = theta[c + o] + ((a0 + a1) + (a2 + a3))


@_exact
def _head_backward(theta, grad, v, c, O, H, dout, h, dh):
    for o in range(O):
        d = dout[o]
        grad[c + o] += d
        row = theta[v + o * H:v + (o + 1) * H]
        grow = grad[v + o * H:v + (o + 1) * H]
        for j in range(H):
            grow[j] += d * h[j]
            dh[j] += row[j] * d


# ---------------------------------------------------------------- one layer, one step
#
# Gate blocks are addressed as ``gates[2 * H + k]``; the ``H < 0`` guards let LLVM prove
# those indices non-negative (see dense helpers), which is all these loops need.


@_exact
def _lstm_gates(H, prev, new, gates, aux):
    if H < 0:
        return
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


@_exact
def _gru_gates(H, prev, new, gates, aux):
    if H < 0:
        return
    one = gates.dtype.type(1.0)
    for k in range(H):
        r = _sigmoid(gates[k] + aux[k])
        z = _sigmoid(gates[H + k] + aux[H + k])
        n = _tanh(gates[2 * H + k] + r * aux[2 * H + k])
        gates[k] = r
        gates[H + k] = z
        gates[2 * H + k] = n
        new[k] = (one - z) * n + z * prev[k]


@_exact
def _elman_act(act, H, new, gates):
    # One loop per activation, so each compiles without a branch inside.
    if act == 0:
        for k in range(H):
            a = _tanh(gates[k])
            gates[k] = a
            new[k] = a
    elif act == 1:
        zero = gates.dtype.type(0.0)
        for k in range(H):
            a = gates[k]
            a = a if a > zero else a * zero
            gates[k] = a
            new[k] = a
    else:
        for k in range(H):
            a = _sigmoid(gates[k])
            gates[k] = a
            new[k] = a


@_exact
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
        _lstm_gates(H, prev, new, gates, aux)
    elif cell == 2:  # GRU
        G = 3 * H
        _gates_init(theta, b, G, gates)
        _accumulate(theta, w, n_in, G, x, gates)
        # U h is kept apart because the reset gate multiplies its candidate block.
        for r in range(G):
            aux[r] = 0.0
        _accumulate(theta, u, H, G, prev, aux)
        _gru_gates(H, prev, new, gates, aux)
    else:  # Elman
        _gates_init(theta, b, H, gates)
        _accumulate(theta, w, n_in, H, x, gates)
        _accumulate(theta, u, H, H, prev, gates)
        _elman_act(act, H, new, gates)


# In the backward pass, once a step is done with its gate activations (and the LSTM's
# tanh(c) / the GRU's U h), they are replaced by the gradients of the pre-activations, and
# weight gradients are summed over the whole window at the end.


@_exact
def _lstm_dpre(H, prev, gates, aux, dnew, dprev, dpre):
    if H < 0:
        return
    one = gates.dtype.type(1.0)
    for k in range(H):
        i = gates[k]
        f = gates[H + k]
        g = gates[2 * H + k]
        o = gates[3 * H + k]
        tc = aux[k]
        dh = dnew[k]
        dc = dnew[H + k] + dh * o * (one - tc * tc)
        dpre[k] = dc * g * i * (one - i)
        dpre[H + k] = dc * prev[H + k] * f * (one - f)
        dpre[2 * H + k] = dc * i * (one - g * g)
        dpre[3 * H + k] = dh * tc * o * (one - o)
        dprev[H + k] = dc * f
        dprev[k] = 0.0


@_exact
def _gru_dpre(H, prev, gates, aux, dnew, dprev, dpre, dph):
    # Input-side and recurrent-side pre-activation gradients differ on the candidate
    # block, which the reset gate scales.
    if H < 0:
        return
    one = gates.dtype.type(1.0)
    for k in range(H):
        r = gates[k]
        z = gates[H + k]
        n = gates[2 * H + k]
        dh = dnew[k]
        dn_pre = dh * (one - z) * (one - n * n)
        dr_pre = dn_pre * aux[2 * H + k] * r * (one - r)
        dz_pre = dh * (prev[k] - n) * z * (one - z)
        dpre[k] = dr_pre
        dpre[H + k] = dz_pre
        dpre[2 * H + k] = dn_pre
        dph[k] = dr_pre
        dph[H + k] = dz_pre
        dph[2 * H + k] = dn_pre * r
        dprev[k] = dh * z


@_exact
def _elman_dpre(act, H, gates, dnew, dprev, dpre):
    zero = gates.dtype.type(0.0)
    one = gates.dtype.type(1.0)
    if act == 0:
        for k in range(H):
            a = gates[k]
            dpre[k] = dnew[k] * (one - a * a)
    elif act == 1:
        for k in range(H):
            dpre[k] = dnew[k] * (one if gates[k] > zero else zero)
    else:
        for k in range(H):
            a = gates[k]
            dpre[k] = dnew[k] * (a * (one - a))
    for k in range(H):
        dprev[k] = 0.0


@_exact
def _layer_backward(cell, act, theta, w, u, n_in, H, prev, gates, aux, dnew, dprev, dx, dpre,
                    dph, need_dx):
    """Backpropagate one layer-step through its gates (see above).

    ``dnew`` holds dL/d(new state) (h, then c); writes dL/d(prev state) into ``dprev`` and,
    if ``need_dx``, dL/dx into ``dx`` (both overwritten). ``gates`` (and for the GRU
    ``aux``) are left holding the pre-activation gradients for ``_weight_grad``.
    """
    if cell == 1:  # LSTM
        G = 4 * H
        _lstm_dpre(H, prev, gates, aux, dnew, dprev, dpre)
        _backprop(theta, u, H, G, dpre, dprev)
    elif cell == 2:  # GRU
        G = 3 * H
        _gru_dpre(H, prev, gates, aux, dnew, dprev, dpre, dph)
        _backprop(theta, u, H, G, dph, dprev)
        for r in range(G):
            aux[r] = dph[r]
    else:  # Elman
        G = H
        _elman_dpre(act, H, gates, dnew, dprev, dpre)
        _backprop(theta, u, H, G, dpre, dprev)
    if need_dx:
        for j in range(n_in):
            dx[j] = 0.0
        _backprop(theta, w, n_in, G, dpre, dx)
    # Computed into scratch first: in place, the loops above would not vectorize.
    for r in range(G):
        gates[r] = dpre[r]


# ---------------------------------------------------------------- whole network


@_exact
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


@_exact
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


@_exact
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


@_exact
def backward_window(cfg, offs, theta, Y, n, first_loss, grad,
                    ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp):
    """BPTT over the window cached by ``forward_window``; returns the mean loss.

    The loss is the mean of the per-step losses at steps ``first_loss .. n-1``; ``grad``
    is overwritten with its gradient. Consumes the cache: ``ws_g`` and ``ws_aux`` end up
    holding gradients, so run ``forward_window`` again before another backward pass.
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
            _layer_backward(cell, act, theta, offs[layer, 0], offs[layer, 1], offs[layer, 3],
                            H, ws_s[t, layer], ws_g[t, layer], ws_aux[t, layer], dnext[layer],
                            dprev[layer], dx, dpre, dph, layer > 0)
            if layer > 0:
                below = dnext[layer - 1]
                for j in range(H):
                    below[j] += dx[j] * ws_m[t, layer, j]
        cur = 1 - cur
    # ws_g[t] now holds dL/d(pre-activations) of step t, and for the GRU ws_aux[t] the
    # recurrent-side version; each weight block's gradient is a sum of outer products.
    G = (4 if cell == 1 else 3 if cell == 2 else 1) * H
    d_rec = ws_aux if cell == 2 else ws_g
    for layer in range(L):
        _weight_grad(grad, offs[layer, 0], offs[layer, 3], G, ws_x, ws_g, layer, n)
        _weight_grad(grad, offs[layer, 1], H, G, ws_s, d_rec, layer, n)
        _bias_grad(grad, offs[layer, 2], G, ws_g, layer, n)
    return total * scale


# ---------------------------------------------------------------- optimizer


@_exact
def _careful_update(kind, lr, b1, b2, eps, fmax, gscale, bc1, bc2, theta, grad, m, vv):
    """The update with every guard, for the rare case where the bound in ``apply_update``
    cannot rule out overflow (or ``eps <= 0``): a float64 check pass, so a step that would
    overflow leaves weights and moments as they were, then the commit. Returns False if
    the step was refused. Keeps Numba's zero-division checks on purpose."""
    P = theta.shape[0]
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
            return False
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
    return True


@_nozerocheck
def _commit_update(kind, lr, b1, b2, eps, gscale, bc1, bc2, theta, grad, m, vv):
    """The optimizer step in theta's dtype, once ``apply_update`` has ruled out overflow
    (which also means ``eps > 0``, so no denominator is zero)."""
    P = theta.shape[0]
    T = theta.dtype.type
    gs = T(gscale)
    if kind == 2:
        omb1 = T(1.0 - float(b1))
        omb2 = T(1.0 - float(b2))
        lr_bc1 = T(float(lr) / bc1)
        inv_sqrt_bc2 = T(1.0 / math.sqrt(bc2))
        for i in range(P):
            g = grad[i] * gs
            mi = b1 * m[i] + omb1 * g
            vi = b2 * vv[i] + omb2 * g * g
            m[i] = mi
            vv[i] = vi
            theta[i] -= lr_bc1 * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)
    elif kind == 1:
        omb2 = T(1.0 - float(b2))
        for i in range(P):
            g = grad[i] * gs
            vi = b2 * vv[i] + omb2 * g * g
            vv[i] = vi
            theta[i] -= lr * g / (np.sqrt(vi) + eps)
    else:
        for i in range(P):
            mi = b1 * m[i] + grad[i] * gs
            m[i] = mi
            theta[i] -= lr * mi


@jit_noalloc
def _sum_stats(theta, grad, m, vv):
    """Squared norm of ``grad``, and sums that bound every value an update can produce:
    sum |grad|, sum |m|, sum vv, sum |theta|. In float64, in one vectorized pass.

    Sums rather than maxima, because a NaN or an infinity anywhere poisons a sum.
    """
    sq = 0.0
    s_g = 0.0
    s_m = 0.0
    s_v = 0.0
    s_th = 0.0
    for i in range(theta.shape[0]):
        g = float(grad[i])
        sq += g * g
        s_g += abs(g)
        s_m += abs(float(m[i]))
        s_v += float(vv[i])
        s_th += abs(float(theta[i]))
    return sq, s_g, s_m, s_v, s_th


@_exact
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
    sq, s_g, s_m, s_v, s_th = _sum_stats(theta, grad, m, vv)
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
    # Every new first moment (and scaled gradient) is at most a_max in size, every new
    # second moment (and squared gradient) at most v_max. A step's denominator is at least
    # eps, so each step, and each partial product of it, is at most a_max * gain. If theta
    # plus that stays below the dtype's limit nothing can overflow, even in float32, and
    # the step runs in one vectorized pass; otherwise (rare) every weight is checked
    # exactly first.
    a_max = s_m + s_g * gscale
    v_max = s_v + sq * gscale * gscale
    inv_eps = 1.0 / float(eps) if eps > 0.0 else math.inf
    if kind == 2:
        gain = max(1.0, float(lr) / bc1) * max(1.0, inv_eps)
    elif kind == 1:
        gain = max(1.0, float(lr)) * max(1.0, inv_eps)
    else:
        gain = max(1.0, float(lr))
    # Headroom for the rounding differences between these bounds and the stored values.
    limit = float(fmax) * (1.0 - 1e-6)
    if a_max <= limit and v_max <= limit and s_th + a_max * gain <= limit:
        _commit_update(kind, lr, b1, b2, eps, gscale, bc1, bc2, theta, grad, m, vv)
    elif not _careful_update(kind, lr, b1, b2, eps, fmax, gscale, bc1, bc2, theta, grad, m,
                             vv):
        counters[K_SKIPPED] += 1
        return norm
    counters[K_STEP] = t
    counters[K_UPDATES] += 1
    return norm


# ---------------------------------------------------------------- keyed learning


@_exact
def _copy_state(src, dst):
    for layer in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[layer, j] = src[layer, j]


@_exact
def reset_slot(slot, st_state, st_snap, st_len, st_pending):
    """Zero one entity's state, snapshot and window (a new or evicted key)."""
    st_state[slot] = 0.0
    st_snap[slot] = 0.0
    st_len[slot] = 0
    st_pending[slot] = 0


@_exact
def _learn_committed(cfg, hyper, offs, theta, grad, opt, counters, rng,
                     ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                     st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                     slot, u, y, new_state):
    """Commit an already computed step for ``slot`` and learn when its window is due.

    Returns ``(1, loss, gradient norm)`` if an update ran, else ``(0, 0.0, 0.0)``.
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
        return 0, 0.0, 0.0
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
    return 1, loss, norm


@_exact
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


@_exact
def _learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
                ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                slot, u, y, out):
    """``learn_slot`` returning ``(updated, loss, gradient norm)`` instead of writing them."""
    # ws_d is reused by the backward pass; _learn_committed copies the state out first.
    new_state = ws_d[0]
    network_step(cfg, offs, theta, st_state[slot], u, new_state, out, ws_g[0, 0],
                 ws_aux[0, 0], ws_tmp[2])
    return _learn_committed(cfg, hyper, offs, theta, grad, opt, counters, rng,
                            ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                            st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                            slot, u, y, new_state)


@_exact
def learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
               ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
               st_state, st_snap, st_ru, st_ry, st_len, st_pending,
               slot, u, y, out, stats):
    """Step ``slot`` with ``u`` (its output before learning goes to ``out``), store
    ``(u, y)`` in its window, and run truncated BPTT when ``k1`` events are pending.

    Returns 1 if the weights were updated (or an update was attempted and skipped); its
    loss and gradient norm then go to ``stats[0]`` and ``stats[1]``.
    """
    did, loss, norm = _learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
                                  ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                                  st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                                  slot, u, y, out)
    if did:
        stats[0] = loss
        stats[1] = norm
    return did


@_exact
def run_batch(cfg, hyper, offs, theta, grad, opt, counters, rng,
              ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
              st_state, st_snap, st_ru, st_ry, st_len, st_pending,
              slots, resets, U, Y, learn, outs, losses, norms, stats):
    """A whole batch in arrival order: for each event, predict then (if ``learn[i]``)
    learn, exactly as the per-event calls would.

    ``resets[i]`` zeroes the slot first (a new key took it). ``outs[i]`` gets the
    prediction made before learning from event ``i``; ``losses[i]``/``norms[i]`` the loss
    and gradient norm of the update event ``i`` triggered, NaN when none ran (an update
    can also report a NaN loss, so ``stats`` gets the last update's loss and norm, as
    ``learn_slot`` would have left them). Returns the number of updates.
    """
    n_events = slots.shape[0]
    updates = 0
    for i in range(n_events):
        slot = slots[i]
        if resets[i]:
            reset_slot(slot, st_state, st_snap, st_len, st_pending)
        losses[i] = np.nan
        norms[i] = np.nan
        if learn[i]:
            did, loss, norm = _learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
                                          ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                                          st_state, st_snap, st_ru, st_ry, st_len,
                                          st_pending, slot, U[i], Y[i], outs[i])
            if did:
                updates += 1
                losses[i] = loss
                norms[i] = norm
                stats[0] = loss
                stats[1] = norm
        else:
            predict_slot(cfg, offs, theta, st_state, slot, U[i], outs[i], ws_g, ws_aux,
                         ws_tmp, ws_d)
    return updates


# ---------------------------------------------------------------- per-event entry points
#
# The per-event API binds every argument but the slot once (``functools.partial``), so
# these take the slot last. A prediction also keeps the step it computed, with what the
# step depended on: the input, the state it started from, and the optimizer's step count
# (the weights change only through an update, which advances it). Learning from the same
# input on a state with the same bits, before any update, commits that step instead of
# computing it again: the same numbers to the bit, one network step fewer per event.
# ``ev_meta[0]`` is 1 while the kept step is usable and ``ev_meta[1]`` the step count.


def _same_bits(a, b):
    """Whether 1-D arrays ``a`` and ``b`` (same dtype and length) hold the same bits
    (bits, not values: -0.0 and 0.0 are different states, and NaN must equal itself).
    Compiled code uses the overload below; this body only runs uncompiled."""
    ints = np.int32 if a.dtype == np.float32 else np.int64
    return bool(np.array_equal(a.view(ints), b.view(ints)))


@overload(_same_bits)
def _same_bits_by_type(a, b):
    ints = np.int32 if a.dtype == types.float32 else np.int64

    def same_bits(a, b):
        x = a.view(ints)
        y = b.view(ints)
        for i in range(x.shape[0]):
            if x[i] != y[i]:
                return False
        return True

    return same_bits


@_exact
def predict_event(cfg, offs, theta, counters, st_state, ws_g, ws_aux, ws_tmp,
                  ev_u, ev_prev, ev_state, ev_out, ev_meta, u, out, slot):
    """:func:`predict_slot` that keeps its step for :func:`learn_event` (see above)."""
    L = cfg[C_LAYERS]
    SW = cfg[C_SW]
    if slot >= 0:
        _copy_state(st_state[slot], ev_prev)
    else:
        for layer in range(L):
            for j in range(SW):
                ev_prev[layer, j] = 0.0
    network_step(cfg, offs, theta, ev_prev, u, ev_state, ev_out, ws_g[0, 0], ws_aux[0, 0],
                 ws_tmp[2])
    for j in range(out.shape[0]):
        out[j] = ev_out[j]
    for j in range(u.shape[0]):
        ev_u[j] = u[j]
    ev_meta[0] = 1
    ev_meta[1] = counters[K_STEP]


@_exact
def learn_event(cfg, hyper, offs, theta, grad, opt, counters, rng,
                ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                ev_u, ev_prev, ev_state, ev_out, ev_meta, u, y, out, stats, slot):
    """:func:`learn_slot`, committing the step :func:`predict_event` kept when it is the
    same step (see above)."""
    kept = ev_meta[0] == 1 and ev_meta[1] == counters[K_STEP] and _same_bits(u, ev_u)
    if kept:
        state = st_state[slot]
        for layer in range(cfg[C_LAYERS]):
            if not _same_bits(state[layer], ev_prev[layer]):
                kept = False
    # Whatever happens next, the kept step is spent: learning moves the state.
    ev_meta[0] = 0
    if kept:
        for j in range(out.shape[0]):
            out[j] = ev_out[j]
        did, loss, norm = _learn_committed(cfg, hyper, offs, theta, grad, opt, counters, rng,
                                           ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                                           st_state, st_snap, st_ru, st_ry, st_len,
                                           st_pending, slot, u, y, ev_state)
    else:
        did, loss, norm = _learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
                                      ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                                      st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                                      slot, u, y, out)
    if did:
        stats[0] = loss
        stats[1] = norm
    return did


@_exact
def learn_event_scaled(cfg, hyper, offs, theta, grad, opt, counters, rng,
                       ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                       st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                       ev_u, ev_prev, ev_state, ev_out, ev_meta, u, y, out, stats,
                       scale, clip, memory, y_mean, y_var, y_count, y_raw, y_scaled, y_loc,
                       y_scale, target, slot):
    """:func:`learn_event` on a one-dimensional ``target``, standardized first by
    :func:`~stream_rnn.cells.scaling.scale_targets` when ``scale`` (``y_raw``, ``y_loc``
    and ``y_scale`` are its ``(1, 1)`` buffers), in the same call; ``y`` is ``y_scaled[0]``.

    (This compiles ``scale_targets`` into this module's cache: after editing
    ``scaling.py``, clear this module's Numba cache too.)
    """
    if scale:
        y_raw[0, 0] = target
        scale_targets(y_mean, y_var, y_count, y_raw, clip, memory, y_scaled, y_loc, y_scale)
    else:
        y_scaled[0, 0] = target
    return learn_event(cfg, hyper, offs, theta, grad, opt, counters, rng,
                       ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                       st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                       ev_u, ev_prev, ev_state, ev_out, ev_meta, u, y, out, stats, slot)


# Strict IEEE arithmetic (no fastmath at all, so no fused multiply-add): the value must be
# the one NumPy computes for the batch path, ``out * scale + loc`` as two operations.
@jit_noalloc(fastmath=False)
def _unscaled(value, scale, y_mean, y_var, y_count):
    v = float(value)
    n = y_count[0]
    if not scale or n == 0:
        return v
    mean = y_mean[0, 0]
    if n == 1:
        return v + mean
    # The location and scale of scaling.location_scale.
    std = max(math.sqrt(y_var[0, 0]), 1e-6 * (1.0 + abs(mean)))
    return v * std + mean


@_exact
def predict_event_scaled(cfg, offs, theta, counters, st_state, ws_g, ws_aux, ws_tmp,
                         ev_u, ev_prev, ev_state, ev_out, ev_meta, u, out,
                         scale, y_mean, y_var, y_count, slot):
    """:func:`predict_event` for a one-dimensional target standardized by
    :func:`~stream_rnn.cells.scaling.scale_targets` (when ``scale``): returns the
    prediction in the target's units, with the statistics as they are now."""
    predict_event(cfg, offs, theta, counters, st_state, ws_g, ws_aux, ws_tmp,
                  ev_u, ev_prev, ev_state, ev_out, ev_meta, u, out, slot)
    return _unscaled(out[0], scale, y_mean, y_var, y_count)
