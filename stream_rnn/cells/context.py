"""Contextual evidence: a reading against the same time one cycle back, strictly online.

A one-step forecaster judges each reading by the readings just before it, so a change
that comes on smoothly and then holds (a holiday in a city's traffic, a day of low demand,
a server that stays half idle) surprises it for a step or two and is then learned away.
What such a change does do is differ from the same hours one cycle earlier (a week for
load driven by people), for hours on end. This view measures that, per stream:

1. ``r_t = x_t - x_{t-lag}`` per feature, with ``x_{t-lag}`` the stream's newest reading
   at or before ``t - lag`` (the caller looks it up in its buffer of past readings).
2. ``v_t = max_k (r_k^2 / m_k)^(1/3)``, with ``m_k`` the stream's long-run mean of
   ``r_k^2`` before ``t``: the cube root of a standardized square, nearly Gaussian in the
   quiet bulk as in :func:`~stream_rnn.cells.calibrate.cube_root_surprise`.
3. ``c_t`` is an exponential moving average of ``v`` with a time constant of ``span``
   seconds (a couple of hours), so a deviation must last to add up, whatever the sampling
   rate.
4. ``c_t`` is judged against its own long-run mean and variance before ``t`` (both
   remember about ``memory`` seconds): the Gaussian tail in decades, as the main test of
   :func:`~stream_rnn.cells.calibrate.calibrate_many`. Evidence no stronger than that of
   the reading one lag back scores 0: last cycle's anomaly must not come back as news
   when it becomes the reference.
5. The evidence is reported ``log10(2)`` decades weaker (the tail probability doubled): a
   second test next to the forecaster's may not raise the flag rate of quiet streams by
   itself (Bonferroni over the two).

The view is silent until ``warmup`` seconds have passed since the stream's first reading
(three cycles by default: the variance of ``c`` needs a few cycles of deviations), and
for readings without a reading one lag back or without a time. Everything at event ``t``
uses events ``<= t`` only.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.cells._flags import jit
from stream_rnn.cells.calibrate import gaussian_tail_decades

__all__ = ["CONTEXT_ARGS", "context_evidence", "context_rows", "context_settings"]

# The long-run spread of the moving average never drops below this (in units of ``v``).
_MIN_SPREAD = 0.01
# Relative floor of the long-run mean square difference: a stream that repeated itself
# exactly one lag apart would otherwise make any difference infinite.
_MIN_MS = 1e-12
# Two tests compete for the score: each one's tail probability is doubled.
_MULTIPLICITY = math.log10(2.0)

#: Row names in the argument order of :func:`context_evidence` (after ``echo``).
CONTEXT_ARGS = ("ctx_ms", "ctx_avg", "ctx_mean", "ctx_var", "ctx_count", "ctx_last_t",
                "ctx_start")

# Positions in the settings array of :func:`context_evidence`.
_SPAN, _MEMORY, _WARMUP = range(3)


def context_rows(n_features: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shapes and dtypes of one stream's context state (the echo ring is the caller's).

    ``8 * (n_features + 6)`` bytes per stream.

    Examples
    --------
    >>> sorted(context_rows(2))  # doctest: +NORMALIZE_WHITESPACE
    ['ctx_avg', 'ctx_count', 'ctx_last_t', 'ctx_mean', 'ctx_ms', 'ctx_start', 'ctx_var']
    """
    return {"ctx_ms": ((n_features,), np.float64), "ctx_avg": ((), np.float64),
            "ctx_mean": ((), np.float64), "ctx_var": ((), np.float64),
            "ctx_count": ((), np.int64), "ctx_last_t": ((), np.float64),
            "ctx_start": ((), np.float64)}


def context_settings(span: float, memory: float, warmup: float) -> np.ndarray:
    """The settings array of :func:`context_evidence`, all in seconds.

    Raises ValueError naming the first unusable one.
    """
    for name, value in (("span", span), ("memory", memory)):
        if not value > 0:
            raise ValueError(f"context {name} must be > 0 seconds, got {value!r}")
    if not warmup >= 0:
        raise ValueError(f"context warmup must be >= 0 seconds, got {warmup!r}")
    return np.array([span, memory, warmup], dtype=np.float64)


@jit
def _reset(s, ms, avg, mean, var, count, last_t, start, echo):
    ms[s] = 0.0
    avg[s] = 0.0
    mean[s] = 0.0
    var[s] = 0.0
    count[s] = 0
    last_t[s] = math.nan
    start[s] = math.nan
    echo[s] = 0.0


@jit
def context_evidence(slots, resets, valid, X, lag_X, times, echo_slot, echo_ref, echo, ms,
                     avg, mean, var, count, last_t, start, settings, out):
    """Contextual evidence in decades for a batch of readings, in arrival order.

    ``X`` ``(N, D)`` are the raw readings of streams ``slots``, ``lag_X`` ``(N, D)`` each
    stream's reading one lag earlier (NaN: none), ``times`` the readings' times in
    seconds. State, one row per stream (see :func:`context_rows`), is updated in place;
    ``resets[i]`` zeroes the stream's row first. ``echo`` ``(S, B)`` is a ring of each
    stream's evidence: event ``i`` stores its evidence at ``echo_slot[i]`` (``-1``:
    nowhere) and is explained, scoring 0, when the event at ``echo_ref[i]`` (the reading
    one lag back; ``-1``: none) had evidence at least as strong. ``out[i]`` receives the
    evidence in decades, already reduced for multiplicity (0: none). See the module
    docstring.
    """
    D = X.shape[1]
    span = settings[_SPAN]
    memory = settings[_MEMORY]
    warmup = settings[_WARMUP]
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            _reset(s, ms, avg, mean, var, count, last_t, start, echo)
        out[i] = 0.0
        t = times[i]
        if not valid[i] or math.isnan(t):
            continue
        if math.isnan(start[s]):
            start[s] = t
        evidence = 0.0
        if not math.isnan(lag_X[i, 0]):
            c = count[s]
            dt = t - last_t[s] if c > 0 else 0.0
            if not dt > 0.0:
                dt = 0.0
            last_t[s] = t
            v = 0.0
            for k in range(D):
                r2 = (X[i, k] - lag_X[i, k]) ** 2
                if c > 0:
                    floor = _MIN_MS * (1.0 + X[i, k] * X[i, k])
                    v = max(v, (r2 / max(ms[s, k], floor)) ** (1.0 / 3.0))
                # Fold in after measuring: the reading is judged against the past only.
                ms[s, k] += max(1.0 / (c + 1), min(1.0, dt / memory)) * (r2 - ms[s, k])
            if c > 0:
                if c == 1:
                    avg[s] = v
                else:
                    avg[s] += -math.expm1(-dt / span) * (v - avg[s])
                if c > 1 and t - start[s] >= warmup:
                    evidence = gaussian_tail_decades(
                        (avg[s] - mean[s]) / max(math.sqrt(var[s]), _MIN_SPREAD))
                alpha = max(1.0 / c, min(1.0, dt / memory))
                d = avg[s] - mean[s]
                mean[s] += alpha * d
                var[s] = (1.0 - alpha) * (var[s] + alpha * d * d)
            count[s] = c + 1
            explained = echo_ref[i] >= 0 and echo[s, echo_ref[i]] >= evidence
            if not explained:
                out[i] = max(0.0, evidence - _MULTIPLICITY)
        if echo_slot[i] >= 0:
            echo[s, echo_slot[i]] = evidence
