"""Per-entity running standardization for autoregressive models, compiled.

A sensor reading in kelvin and one in RPM must look alike to shared weights, so each
entity keeps its own running mean and variance. The statistics forget slowly (an
exponential average once ``count`` reaches ``memory``) so a drifting sensor is rescaled,
and scaled values are clipped so one wild reading cannot saturate every gate.

:func:`prepare_autoregressive` turns a batch of raw readings into network inputs (the
entity's previous reading) and targets (the current one), exactly as a per-event loop
would: each event is scaled with the statistics from before it, then folded in.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.cells._flags import jit

__all__ = [
    "autoregressive_step",
    "prepare_autoregressive",
    "reset_scaler_slot",
    "scale_row",
    "scale_targets",
    "location_scale",
    "gaussian_surprise",
]

_MIN_STD = 1e-6


@jit
def location_scale(mean, var, count, slot, k):
    """``(mean, std)`` used to scale dimension ``k`` of ``slot`` (std 1 before 2 readings)."""
    n = count[slot]
    if n == 0:
        return 0.0, 1.0
    if n == 1:
        return float(mean[slot, k]), 1.0
    std = math.sqrt(var[slot, k])
    # A flat signal has variance 0; a relative floor keeps its scaled values finite.
    floor = _MIN_STD * (1.0 + abs(mean[slot, k]))
    return float(mean[slot, k]), max(std, floor)


@jit
def scale_row(mean, var, count, slot, x, clip, out):
    """``out = clip((x - mean) / std)`` with ``slot``'s statistics."""
    for k in range(x.shape[0]):
        loc, sc = location_scale(mean, var, count, slot, k)
        z = (x[k] - loc) / sc if count[slot] > 0 else x[k] * 0.0
        if z > clip:
            z = clip
        elif z < -clip:
            z = -clip
        out[k] = z


@jit
def _fold_in(mean, var, count, slot, x, memory):
    n = count[slot] + 1
    count[slot] = n
    alpha = 1.0 / n
    if memory > 0 and alpha < 1.0 / memory:
        alpha = 1.0 / memory
    for k in range(x.shape[0]):
        d = x[k] - mean[slot, k]
        mean[slot, k] += alpha * d
        # Exponentially weighted variance; equals Welford's (population) update while alpha = 1/n.
        var[slot, k] = (1.0 - alpha) * (var[slot, k] + alpha * d * d)


@jit
def reset_scaler_slot(s, mean, var, count, last):
    """Empty statistics and no last reading for slot ``s`` (a new key took it)."""
    mean[s] = 0.0
    var[s] = 0.0
    count[s] = 0
    last[s] = 0.0


@jit
def autoregressive_step(i, s, X, mean, var, count, last, clip, memory, U, Y, valid):
    """Row ``i`` of :func:`prepare_autoregressive`, for slot ``s`` (already reset if
    needed)."""
    valid[i] = count[s] > 0
    scale_row(mean, var, count, s, last[s], clip, U[i])
    scale_row(mean, var, count, s, X[i], clip, Y[i])
    _fold_in(mean, var, count, s, X[i], memory)
    for k in range(X.shape[1]):
        last[s, k] = X[i, k]


@jit
def prepare_autoregressive(slots, resets, X, mean, var, count, last, clip, memory, U, Y, valid):
    """Inputs, targets and validity for a batch of readings ``X`` (raw, ``(N, D)``).

    For event ``i`` of entity ``slots[i]``: ``U[i]`` is the entity's previous reading and
    ``Y[i]`` the current one, both scaled with the statistics from before event ``i``;
    ``valid[i]`` is False for an entity's first reading (nothing to predict it from).
    Then the reading is folded into the statistics and becomes the entity's ``last``.
    ``resets[i]`` zeroes the entity's rows first (a new key took the slot).
    """
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            reset_scaler_slot(s, mean, var, count, last)
        autoregressive_step(i, s, X, mean, var, count, last, clip, memory, U, Y, valid)


@jit
def scale_targets(mean, var, count, Y, clip, memory, Y_scaled, loc, scale):
    """Scale a sequence of targets of one global scaler (slot 0), each with the statistics
    from before it, then fold it in; ``loc``/``scale`` record what each target was scaled by
    so predictions made at that moment can be mapped back."""
    for i in range(Y.shape[0]):
        for k in range(Y.shape[1]):
            a, b = location_scale(mean, var, count, 0, k)
            loc[i, k] = a
            scale[i, k] = b
        scale_row(mean, var, count, 0, Y[i], clip, Y_scaled[i])
        _fold_in(mean, var, count, 0, Y[i], memory)


@jit
def gaussian_surprise(outs, Y, z_out):
    """Standardized residuals ``(y - mean) / std`` under the Gaussian head; returns nothing.

    ``outs`` is ``(N, 2D)`` (means then log-variances), ``Y`` and ``z_out`` are ``(N, D)``.
    """
    D = Y.shape[1]
    for i in range(Y.shape[0]):
        for k in range(D):
            s = outs[i, D + k]
            if s < -12.0:
                s = -12.0
            elif s > 12.0:
                s = 12.0
            z_out[i, k] = (Y[i, k] - outs[i, k]) * np.exp(-0.5 * s)
