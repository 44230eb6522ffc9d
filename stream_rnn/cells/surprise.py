"""Per-key sensor surprise -> anomaly score in [0, 1], calibrated on the key's own past.

A forecaster's standardized residual ``z`` is not comparable between sensors: the
predicted spread of one key may have collapsed below its real noise, another's model may
err with heavy tails around every change of load. Each key's surprise is therefore
judged against its own history, strictly online, in two compiled passes over a batch:

:func:`track_readings` (raw readings, before any model)
    Each key's previous reading, so a task can model first differences, and the evidence
    that the key is *stuck*: a run of ``r`` readings identical to the one before, against
    the key's long-run rate ``q`` of such repeats (a Laplace estimate over about
    ``memory`` readings), has probability ``q^r``; its ``log10`` is the evidence. A
    sensor quantized coarsely repeats often and needs a long run; one whose noise is far
    above its resolution almost never repeats.

:func:`calibrate_surprise` (forecast residuals)
    1. Spread recalibration: each feature's ``z^2`` is divided by the key's long-run mean
       of it (over about ``memory`` readings), so a spread that collapsed to a fifth of
       the real noise cannot raise endless alarms, and a spread too wide cannot hide
       them. The square root of that mean is the factor the reported spread needs.
    2. ``u = log(1 + max_k z_k^2)``: the largest recalibrated residual of the reading (the
       maximum, so one channel's incident is not diluted by quiet ones); ``a`` is its
       mean over the key's last ``short_window`` readings.
    3. Up to three tests: ``u`` alone (a spike), ``a`` (a burst of moderate surprises)
       and, when a second forecast of the readings themselves is given, that forecast's
       ``a`` (a level that stays off). Each is judged against the key's own tail of it:
       above ``tau = mean + sd`` (long-run, exponentially weighted) the tail is fitted as
       exponential (peaks over threshold: the long-run rate of exceeding ``tau`` and the
       mean excess), so ``P(X >= x) = rate * exp(-(x - tau) / excess)``; below ``tau``
       the evidence is log-linear from none at the mean to ``rate`` at ``tau``. On the
       log scale an exponential tail is a power-law tail of ``z``, which is what forecast
       errors have; for Gaussian residuals it errs on the side of fewer alarms.
    4. The score is ``1 - p`` with ``p`` the smallest of the tail probabilities (the
       surprise tests and the stuck evidence): a score above 0.999 is about a 1-in-1000
       event on every key, whatever its units, noise or forecast quality. A key's first
       ``warmup`` scored readings score 0 (they only feed the statistics).

Everything at event ``t`` uses events ``<= t`` only; per-key state is a few plain arrays
(one row per key), kept next to the task's other keyed state and checkpointed as such.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.cells._flags import jit

__all__ = ["calibrate_surprise", "reading_rows", "surprise_rows", "track_readings"]

# The long-run spread of ``a`` and the mean excess never drop below this (in units of
# ``u``): a key whose surprise has been constant would otherwise make any wobble infinite.
_MIN_SPREAD = 1e-3
# The mean squared residual never drops below this: a key forecast perfectly so far.
_MIN_Z2 = 1e-6
# Residuals folded into the long-run mean of z^2 are capped at this multiple of it, so
# one incident does not widen the key's spread for the next ``memory`` readings.
_Z2_CAP = 16.0
_LN10 = math.log(10.0)


def reading_rows(n_features: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shapes and dtypes of one key's :func:`track_readings` state.

    Examples
    --------
    >>> sorted(reading_rows(2))
    ['last', 'repeat_rate', 'run', 'seen']
    """
    D = n_features
    return {"last": ((D,), np.float64), "seen": ((), np.int64), "run": ((D,), np.int64),
            "repeat_rate": ((D,), np.float64)}


def surprise_rows(n_residuals: int, short_window: int
                  ) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shapes and dtypes of one key's :func:`calibrate_surprise` state, for
    ``n_residuals`` residuals per event (``D + D2``).

    ``8 * (n_residuals + 2 * short_window + 13)`` bytes per key.

    Examples
    --------
    >>> sorted(surprise_rows(1, 2))
    ['u_buf', 'u_count', 'u_excess', 'u_mean', 'u_rate', 'u_var', 'z2_mean']
    """
    return {"z2_mean": ((n_residuals,), np.float64),
            "u_buf": ((2, short_window), np.float64), "u_count": ((), np.int64),
            "u_mean": ((3,), np.float64), "u_var": ((3,), np.float64),
            "u_rate": ((3,), np.float64), "u_excess": ((3,), np.float64)}


@jit
def track_readings(slots, resets, X, last, seen, run, repeat_rate, memory, diffs, has_prev,
                   stuck_decades):
    """Differences from each key's previous reading and the evidence that it is stuck.

    For event ``i`` of key slot ``slots[i]`` with raw readings ``X[i]`` ``(D,)``:
    ``has_prev[i]`` says whether the key had a reading before; if so ``diffs[i]`` is
    ``X[i]`` minus it (else 0). ``stuck_decades[i]`` is ``log10`` of the probability of
    the longest current run of repeated readings among the features (``<= 0``; 0: no
    repeat). Then the reading is folded in: ``last``, ``seen`` (readings so far),
    ``run`` and ``repeat_rate`` (per feature) are updated in place, over about ``memory``
    readings. ``resets[i]`` zeroes the key's row first (a new key took the slot).
    """
    D = X.shape[1]
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            seen[s] = 0
            for k in range(D):
                last[s, k] = 0.0
                run[s, k] = 0
                repeat_rate[s, k] = 0.0
        n = seen[s]
        evidence = 0.0
        has_prev[i] = n > 0
        if n > 0:
            # Transitions seen before this one, as an effective sample size.
            m = min(n - 1, memory)
            alpha = 1.0 / min(n, memory)
            for k in range(D):
                d = X[i, k] - last[s, k]
                diffs[i, k] = d
                repeated = d == 0.0
                if repeated:
                    run[s, k] += 1
                    q = (repeat_rate[s, k] * m + 1.0) / (m + 2.0)
                    evidence = min(evidence, run[s, k] * math.log10(q))
                else:
                    run[s, k] = 0
                repeat_rate[s, k] += alpha * ((1.0 if repeated else 0.0) - repeat_rate[s, k])
        else:
            for k in range(D):
                diffs[i, k] = 0.0
        stuck_decades[i] = evidence
        for k in range(D):
            last[s, k] = X[i, k]
        seen[s] = n + 1


@jit
def _tail_fold(x, j, s, mean, var, rate, excess, alpha, memory):
    """``log10 P(X >= x)`` under test ``j`` of slot ``s`` (its exponential tail above
    ``tau = mean + sd``; log-linear from 1 at the mean to the tail's rate at ``tau``), then
    ``x`` folded into that test's long-run statistics."""
    spread = max(math.sqrt(var[s, j]), _MIN_SPREAD)
    tau = mean[s, j] + spread
    at_tau = math.log10(max(rate[s, j], 1.0 / memory))
    if x > tau:
        decades = at_tau - (x - tau) / (max(excess[s, j], _MIN_SPREAD) * _LN10)
    else:
        # Below the tail the exponential fit says nothing: the evidence grows log-linearly
        # from none at the mean to the tail's rate at ``tau``.
        decades = at_tau * max(0.0, (x - mean[s, j]) / spread)
    # Fold in after scoring: the event is judged against the past only.
    exceeded = x > tau
    rate[s, j] += alpha * ((1.0 if exceeded else 0.0) - rate[s, j])
    if exceeded:
        # Mean excess over about ``memory * rate`` exceedances.
        excess[s, j] += min(1.0, alpha / max(rate[s, j], alpha)) * (x - tau - excess[s, j])
    d = x - mean[s, j]
    mean[s, j] += alpha * d
    var[s, j] = (1.0 - alpha) * (var[s, j] + alpha * d * d)
    return min(0.0, decades)


@jit
def _log_surprise(Z, i, z2_mean, s, offset, c, factor):
    """``log(1 + max_k z_k^2)`` of row ``i`` of ``Z`` with each ``z_k^2`` divided by the
    key's long-run mean of it (columns ``offset + k`` of ``z2_mean`` and ``factor``)."""
    biggest = 0.0
    for k in range(Z.shape[1]):
        z2 = Z[i, k] * Z[i, k]
        if c > 0:
            m2 = max(z2_mean[s, offset + k], _MIN_Z2)
            factor[i, offset + k] = math.sqrt(m2)
            z2 = z2 / m2
        else:
            factor[i, offset + k] = 1.0
        biggest = max(biggest, z2)
    return math.log1p(biggest)


@jit
def _fold_z2(Z, i, z2_mean, s, offset, c, alpha):
    for k in range(Z.shape[1]):
        z2 = Z[i, k] * Z[i, k]
        if c > 1:
            z2 = min(z2, _Z2_CAP * max(z2_mean[s, offset + k], _MIN_Z2))
        z2_mean[s, offset + k] += alpha * (z2 - z2_mean[s, offset + k])


@jit
def _window_mean(u_buf, s, v, c, u):
    """Put ``u`` in view ``v``'s window of slot ``s`` (its ``c``-th value) and return the
    window's mean."""
    W = u_buf.shape[2]
    u_buf[s, v, (c - 1) % W] = u
    used = min(c, W)
    total = 0.0
    for j in range(used):
        total += u_buf[s, v, j]
    return total / used


@jit
def calibrate_surprise(slots, resets, valid, Z, Z_level, stuck_decades, z2_mean, u_buf,
                       u_count, u_mean, u_var, u_rate, u_excess, warmup, memory, factor,
                       out):
    """Calibrated scores of a batch of standardized residuals, in arrival order.

    ``Z`` ``(N, D)`` are the residuals of the main forecast (a key's step, or its reading);
    ``Z_level`` ``(N, D2)`` those of a second forecast of the readings themselves
    (``D2 = 0``: none). Tests: the main residuals of the reading alone, their mean over the
    window (``u_buf.shape[2]`` readings; not with a window of 1) and, with a second
    forecast, its residuals' mean over the window (a level that stays off). ``valid[i]``
    False (no forecast for the event: a key's first reading) gives score 0, factor 1 and
    changes nothing. ``stuck_decades[i]`` is the stuck evidence from
    :func:`track_readings`. The per-key rows (see :func:`surprise_rows`) are updated in
    place; ``resets[i]`` zeroes the key's row first. ``factor[i]`` ``(D + D2,)`` receives
    the spread corrections in force for event ``i`` (multiply the predicted spreads by
    them), ``out[i]`` the score in [0, 1]. See the module docstring.
    """
    D = Z.shape[1]
    W = u_buf.shape[2]
    levels = Z_level.shape[1] > 0
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            for k in range(z2_mean.shape[1]):
                z2_mean[s, k] = 0.0
            u_buf[s] = 0.0
            u_count[s] = 0
            for j in range(u_mean.shape[1]):
                u_mean[s, j] = 0.0
                u_var[s, j] = 0.0
                u_rate[s, j] = 0.0
                u_excess[s, j] = 0.0
        out[i] = 0.0
        if not valid[i]:
            for k in range(factor.shape[1]):
                factor[i, k] = 1.0
            continue
        c = u_count[s]
        u = _log_surprise(Z, i, z2_mean, s, 0, c, factor)
        c += 1
        alpha = max(1.0 / c, 1.0 / memory)
        # The stronger evidence of the tests counts.
        decades = min(0.0, stuck_decades[i])
        decades = min(decades, _tail_fold(u, 0, s, u_mean, u_var, u_rate, u_excess, alpha,
                                          memory))
        if W > 1:
            a = _window_mean(u_buf, s, 0, c, u)
            decades = min(decades, _tail_fold(a, 1, s, u_mean, u_var, u_rate, u_excess,
                                              alpha, memory))
        if levels:
            u_level = _log_surprise(Z_level, i, z2_mean, s, D, c - 1, factor)
            a = _window_mean(u_buf, s, 1, c, u_level)
            decades = min(decades, _tail_fold(a, 2, s, u_mean, u_var, u_rate, u_excess,
                                              alpha, memory))
        if c > warmup:
            out[i] = -math.expm1(decades * _LN10)
        # Fold in after scoring: the event is judged against the past only.
        _fold_z2(Z, i, z2_mean, s, 0, c, alpha)
        if levels:
            _fold_z2(Z_level, i, z2_mean, s, D, c, alpha)
        u_count[s] = c
