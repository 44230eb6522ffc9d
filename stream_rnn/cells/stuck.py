"""Stuck-sensor evidence: a run of identical readings against the stream's own runs.

A sensor that freezes (a dead transmitter, a gateway repeating its last value, a
frozen register) reports the same reading over and over. Its forecaster is hardly
surprised: a constant is easy to forecast, and after a few readings it has learned the
new level. Whether a run of identical readings is odd depends on the stream: a noisy
analog sensor almost never repeats itself, a quantized one now and then for a reading
or two, and a setpoint, a counter or a key that holds its value (on/off states, a
configuration) repeats for hours. Each stream is therefore judged against its own past
runs:

1. A run is a maximal stretch of readings identical in every feature to the first; its
   length ``r`` counts the readings in it (1 for a reading that differs from the one
   before).
2. When a run ends, ``log r`` is folded into the stream's mean and variance of log run
   lengths, each run weighted by its length (the run length a reading typically belongs
   to), exponentially over about ``memory`` readings. Logarithms, because run lengths
   are heavy-tailed: a key that holds values for 10 to 1000 readings is as ordinary at
   either end. By length, because a stream that starts holding its values has changed
   after a few long runs, not after as many runs as it had single readings.
3. While a run lasts, each of its readings (from the second on) is judged by the Gaussian
   tail of ``log r`` against that mean and variance, the spread floored at
   ``min_spread``: the same yardstick, in decades, as the other evidences of
   :func:`~stream_rnn.cells.calibrate.calibrate_many`, but no stronger than the stream's
   record allows: a run longer than any in the ``m`` readings since the last as long
   (by bands of ``log r``) is at most ``log10(m)`` decades of evidence. The Gaussian
   tail extrapolates far beyond what a stream's history can show; the first long hold of
   a key that had never held its value (a key that starts idling at exactly 0) is
   one in ``m``, not one in a billion. The evidence grows with the run and is reported
   ``log10(2)`` decades weaker (a further test next to the forecaster's: Bonferroni
   over the two).
4. The view is silent until the stream has completed ``min_runs`` runs: a stream that
   has only ever been flat (a line that never moved) has no history of runs to be
   surprised against.

Everything at event ``t`` uses events ``<= t`` only. One row of a few numbers per stream,
as the other views keep.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.cells._flags import jit
from stream_rnn.cells.calibrate import gaussian_tail_decades

__all__ = ["STUCK_ARGS", "stuck_evidence", "stuck_rows", "stuck_settings"]

# Two tests compete for the score: each one's tail probability is doubled.
_MULTIPLICITY = math.log10(2.0)

#: Row names in the argument order of :func:`stuck_evidence`.
STUCK_ARGS = ("stk_last", "stk_run", "stk_mean", "stk_var", "stk_runs", "stk_seen",
              "stk_record_at")

# Runs are recorded in bands of ``log r`` this wide, up to this many bands: per band the
# reading count at the end of the last run reaching it.
_RECORD_BAND = 0.25
_RECORD_LEVELS = 32

# Positions in the settings array of :func:`stuck_evidence`.
_MEMORY, _MIN_RUNS, _MIN_SPREAD = range(3)

#: Readings the statistics of run lengths remember.
DEFAULT_MEMORY = 5000
#: Completed runs before the view speaks.
DEFAULT_MIN_RUNS = 20
#: Smallest spread of log run lengths judged with: a stream that never repeated would
#: otherwise call its first accidental repeat infinitely unlikely. With it, such a
#: stream reaches 5 decades after about ten identical readings.
DEFAULT_MIN_SPREAD = 0.5


def stuck_rows(n_features: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shapes and dtypes of one stream's stuck-sensor state: ``8 * (n_features + 37)`` bytes.

    Examples
    --------
    >>> sorted(stuck_rows(2))  # doctest: +NORMALIZE_WHITESPACE
    ['stk_last', 'stk_mean', 'stk_record_at', 'stk_run', 'stk_runs', 'stk_seen',
     'stk_var']
    """
    return {"stk_last": ((n_features,), np.float64), "stk_run": ((), np.int64),
            "stk_mean": ((), np.float64), "stk_var": ((), np.float64),
            "stk_runs": ((), np.int64), "stk_seen": ((), np.float64),
            "stk_record_at": ((_RECORD_LEVELS,), np.float64)}


def stuck_settings(memory: int = DEFAULT_MEMORY, min_runs: int = DEFAULT_MIN_RUNS,
                   min_spread: float = DEFAULT_MIN_SPREAD) -> np.ndarray:
    """The settings array of :func:`stuck_evidence`; raises ValueError naming the first
    unusable one."""
    if not memory >= 1:
        raise ValueError(f"stuck memory must be >= 1 run, got {memory!r}")
    if not min_runs >= 1:
        raise ValueError(f"stuck min_runs must be >= 1, got {min_runs!r}")
    if not min_spread > 0:
        raise ValueError(f"stuck min_spread must be > 0, got {min_spread!r}")
    return np.array([memory, min_runs, min_spread], dtype=np.float64)


@jit
def _band(r):
    return min(int(math.log(r) / _RECORD_BAND), _RECORD_LEVELS - 1)


@jit
def stuck_evidence(slots, resets, valid, X, last, run, mean, var, runs, seen, record_at,
                   settings, out):
    """Stuck-sensor evidence in decades for a batch of readings, in arrival order.

    ``X`` ``(N, D)`` are the raw readings of streams ``slots``. State, one row per stream
    (see :func:`stuck_rows`), is updated in place; ``resets[i]`` zeroes the stream's row
    first. Every valid reading extends or ends its stream's run; ``out[i]`` receives the
    evidence of reading ``i``, already reduced for multiplicity. Readings with
    ``valid[i]`` False (a key's first readings, which only seed its statistics) score 0
    and change nothing. See the module docstring.
    """
    D = X.shape[1]
    memory = settings[_MEMORY]
    min_runs = settings[_MIN_RUNS]
    min_spread = settings[_MIN_SPREAD]
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            last[s] = 0.0
            run[s] = 0
            mean[s] = 0.0
            var[s] = 0.0
            runs[s] = 0
            seen[s] = 0.0
            record_at[s] = 0.0
        out[i] = 0.0
        if not valid[i]:
            continue
        r = run[s]
        same = r > 0
        for k in range(D):
            if X[i, k] != last[s, k]:
                same = False
        if same:
            r += 1
        else:
            if r > 0:
                # The run just ended: fold its length in before judging the next one.
                seen[s] += r
                alpha = min(1.0, max(r / seen[s], r / memory))
                d = math.log(r) - mean[s]
                mean[s] += alpha * d
                var[s] = (1.0 - alpha) * (var[s] + alpha * d * d)
                runs[s] += 1
                for level in range(_band(r) + 1):
                    record_at[s, level] = seen[s]
            r = 1
            for k in range(D):
                last[s, k] = X[i, k]
        run[s] = r
        if same and runs[s] >= min_runs:
            z = (math.log(r) - mean[s]) / max(math.sqrt(var[s]), min_spread)
            # No rarer than the record says: no run this long in the readings since.
            record = math.log10(max(seen[s] + r - record_at[s, _band(r)], 1.0))
            out[i] = max(0.0, min(gaussian_tail_decades(z), record) - _MULTIPLICITY)
