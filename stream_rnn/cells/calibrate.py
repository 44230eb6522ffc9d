"""Surprise -> anomaly score in [0, 1], comparable across streams, strictly online.

A forecaster's raw surprise (how far a reading fell from its forecast) is not comparable
between sensors: a noisy sensor that the model never quite learns is surprised all day,
a clean one almost never. Each stream is therefore judged against its own past:

1. ``u_t`` is the surprise of event ``t``, e.g. ``(z^2)^(1/3)`` of its standardized
   residual ``z`` (:func:`cube_root_surprise`): for Gaussian residuals that is the
   Wilson-Hilferty transform of a chi-square, close to Gaussian itself, so the Gaussian
   yardstick of step 3 fits the quiet bulk, and one wild reading still cannot dominate the
   statistics the way ``z^2`` would.
2. The short-term surprise ``a_t`` is the mean of the last ``short_window`` values of
   ``u``, so a run of moderately surprising readings can add up to an alarm.
3. ``a_t`` is compared with the long-run distribution of ``a`` *before* ``t`` (an
   exponentially weighted mean and variance over about ``long_memory`` events): the
   Gaussian tail probability ``p_t = P(A >= a_t)`` is the evidence, and
   ``x_t = -log10 p_t`` its strength in decades. With ``slow_memory``, ``a_t`` is also
   compared with a second, slower distribution (about ``slow_memory`` events) and the
   weaker of the two tail probabilities counts: a reading must be rare against the
   recent past *and* the long run. The fast one follows changes of regime; the slow one
   keeps the stream's usual spread: after a calm spell the fast distribution narrows, and
   the return of the stream's ordinary noise (a busy period after a quiet night) would
   alarm against it alone.
4. The score is ``x_t / (x_t + scale)``: 0 for nothing unusual, 0.5 at ``p = 10^-scale``
   (``10^-5`` by default), approaching 1 for ever stronger evidence. The same threshold
   therefore means the same rarity on every stream. The Gaussian tail is a yardstick, not
   a literal probability: surprise is heavier-tailed than that, so quiet streams reach
   ``10^-5`` now and then, but equally often whatever their units or noise level.
5. Warm-up: the first ``warmup`` events of a stream score 0 (they still feed the
   statistics), because a tail probability against a handful of events means nothing;
   with ``warmup_time``, so do its events until that many seconds have passed since its
   first one (a forecaster with a daily seasonal input has not seen what a normal day
   looks like after a few hundred readings of one day).
6. Spike once (``refractory``): an alarm is reported when it first rises; while the
   score stays below the stream's recent peak score (which decays linearly, by
   ``1 / refractory`` per event) the score is 0. A sustained incident
   therefore gives one spike rather than a plateau of repeated alarms. With
   ``alarm_margin``, a further report also needs the score to beat the last *reported*
   one (decaying alike) by that margin: evidence that creeps up over a few readings (the
   short window filling with one incident's readings) is reported once, not at every
   step, while evidence that rises from nothing is reported as soon as it rises.
7. Echoes: the caller can name, per event, an earlier event whose evidence explains it
   (for a seasonal forecaster, the reading one season back); evidence no stronger than
   that event's scores 0. A surprise that recurs at the same time every season (a daily
   job the forecaster has not learned exactly) is then reported once, not daily, and so
   is an anomaly that comes back a season later through the seasonal input. The echo
   ring keeps the evidence of events held back by ``warmup_time`` too, so the first
   scored season has the one before it to compare with.
8. Routine alarms (``routine_count``, ``routine_horizon``): when the stream raised at
   least ``routine_count`` alarms as strong (in the same band of 0.05 of score or higher,
   reported or not) within the last ``routine_horizon`` seconds, an alarm is routine and
   its evidence is capped at the stream's own rate of such alarms: ``routine_count`` of
   them over the ``m`` events since the oldest is about one in ``m / routine_count``
   events, ``log10(m / routine_count)`` decades (a few, where the yardstick said dozens).
   A yardstick fitted to the quiet bulk calls every jump of a spiky stream a
   one-in-a-billion event; a stream that does it every few days shows by its own record
   that it is not (a CPU metric's load bursts, a counter's bursts of clicks). Each alarm
   still counts for the refractory period, so a routine burst cannot re-alarm through
   its own tail. Events without a time are never judged routine.

Everything at event ``t`` uses events ``<= t`` only. The per-stream state is a few plain
arrays (one row per stream) so a keyed model keeps it next to its other per-key state, and
:func:`calibrate_many` runs a batch of events in one compiled call.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.cells._flags import jit

__all__ = [
    "CALIBRATION_ARGS",
    "DEFAULT_ROUTINE_COUNT",
    "DEFAULT_ROUTINE_HORIZON",
    "DEFAULT_SCALE",
    "SurpriseCalibrator",
    "calibrate_many",
    "calibration_rows",
    "calibration_settings",
    "check_params",
    "cube_root_surprise",
    "gaussian_tail_decades",
    "log_surprise",
]

#: Decades of tail evidence mapped to a score of 0.5.
DEFAULT_SCALE = 5.0

#: Alarms as strong within the routine horizon that make a new one routine.
DEFAULT_ROUTINE_COUNT = 4

#: Seconds over which a stream's alarms count towards calling a new one routine.
DEFAULT_ROUTINE_HORIZON = 14 * 86_400.0

# Alarm strength is compared in bands of score this wide: per band the times of the last
# ``routine_count`` alarms reaching it (a bounded record, however often a stream alarms).
_ROUTINE_LEVELS = 20

# One-reading surprises are recorded in bands of ``u`` this wide, up to this many bands: per
# band the event count of the last surprise reaching it.
_RECORD_BAND = 0.25
_RECORD_LEVELS = 32

# The long-run spread never drops below this (in units of ``u``): a stream whose surprise
# has been constant (a flat line forecast perfectly) would otherwise turn the first tiny
# wobble into infinite evidence.
_MIN_SPREAD = 0.01

_LN10 = math.log(10.0)
_LN2_DECADES = math.log10(2.0)
_HALF_LN_2PI = 0.5 * math.log(2.0 * math.pi)


@jit
def gaussian_tail_decades(z):
    """``-log10 P(N(0, 1) >= z)``, accurate far into the tail (no underflow to ``inf``).

    Examples
    --------
    >>> print(f"{gaussian_tail_decades(0.0):.3f} {gaussian_tail_decades(3.0):.3f}")
    0.301 2.870
    >>> print(f"{gaussian_tail_decades(50.0):.1f}")
    545.0
    """
    if z < 5.0:
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    # Mills' ratio: P(N >= z) ~ phi(z) / z (1 - 1/z^2), with relative error < 0.4% here.
    return (0.5 * z * z + _HALF_LN_2PI + math.log(z) - math.log(1.0 - 1.0 / (z * z))) / _LN10


@jit
def cube_root_surprise(z_row):
    """``max_k (z_k^2)^(1/3)`` over one event's standardized residuals.

    The Wilson-Hilferty transform: for a Gaussian residual ``z^2`` is chi-square with one
    degree of freedom and its cube root is nearly Gaussian, which is what the tail
    yardstick of :func:`calibrate_many` assumes. The maximum, not the mean, so an incident
    on one channel of a many-channel sensor is not diluted by its quiet channels.

    Examples
    --------
    >>> print(f"{cube_root_surprise(np.array([0.0, -8.0])):.3f}")
    4.000
    """
    u = 0.0
    for k in range(z_row.shape[0]):
        v = (z_row[k] * z_row[k]) ** (1.0 / 3.0)
        if v > u:
            u = v
    return u


@jit
def log_surprise(z_row):
    """``max_k log(1 + z_k^2)`` over one event's standardized residuals.

    The maximum, not the mean, so an incident on one channel of a many-channel sensor is
    not diluted by its quiet channels.

    Examples
    --------
    >>> print(f"{log_surprise(np.array([0.0, 3.0])):.3f}")
    2.303
    """
    u = 0.0
    for k in range(z_row.shape[0]):
        v = math.log1p(z_row[k] * z_row[k])
        if v > u:
            u = v
    return u


def calibration_rows(short_window: int, routine_count: int = DEFAULT_ROUTINE_COUNT
                     ) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shapes and dtypes of one stream's calibration state, as keyed stores take them.

    ``8 * (short_window + 44 + 20 * (2 * max(routine_count, 1) + 1))`` bytes per stream
    (the echo ring of :func:`calibrate_many` is the caller's).

    Examples
    --------
    >>> sorted(calibration_rows(3))  # doctest: +NORMALIZE_WHITESPACE
    ['cal_buf', 'cal_count', 'cal_mean', 'cal_mean_one', 'cal_mean_slow', 'cal_peak',
     'cal_record_at', 'cal_reported', 'cal_routine_at', 'cal_routine_n', 'cal_routine_t',
     'cal_start', 'cal_var', 'cal_var_one', 'cal_var_slow']
    """
    return {
        "cal_buf": ((short_window,), np.float64),
        "cal_count": ((), np.int64),
        "cal_mean": ((), np.float64),
        "cal_var": ((), np.float64),
        "cal_mean_slow": ((), np.float64),
        "cal_mean_one": ((), np.float64),
        "cal_var_one": ((), np.float64),
        "cal_record_at": ((_RECORD_LEVELS,), np.int64),
        "cal_var_slow": ((), np.float64),
        "cal_start": ((), np.float64),
        "cal_peak": ((2,), np.float64),
        "cal_reported": ((2,), np.float64),
        "cal_routine_t": ((_ROUTINE_LEVELS, max(int(routine_count), 1)), np.float64),
        "cal_routine_at": ((_ROUTINE_LEVELS, max(int(routine_count), 1)), np.int64),
        "cal_routine_n": ((_ROUTINE_LEVELS,), np.int64),
    }


#: Row names in the argument order of :func:`calibrate_many`.
CALIBRATION_ARGS = ("cal_buf", "cal_count", "cal_mean", "cal_var", "cal_mean_slow",
                    "cal_var_slow", "cal_mean_one", "cal_var_one", "cal_record_at", "cal_start",
                    "cal_peak", "cal_reported", "cal_routine_t", "cal_routine_at",
                    "cal_routine_n")

# Positions in the settings array of :func:`calibrate_many`.
(_WARMUP, _WARMUP_TIME, _LONG, _SLOW, _REFRACTORY, _SCALE, _MARGIN, _ROUTINE_COUNT,
 _ROUTINE_HORIZON, _ONE_READING, _HELD_BACK) = range(11)


def calibration_settings(warmup: int, long_memory: int, refractory: int, scale: float,
                         slow_memory: int | None = None, warmup_time: float = 0.0,
                         alarm_margin: float = 0.0, routine_count: int = 0,
                         routine_horizon: float = DEFAULT_ROUTINE_HORIZON,
                         one_reading: bool = False, held_back: float = 0.0) -> np.ndarray:
    """The settings array :func:`calibrate_many` takes (``slow_memory`` None: unused;
    ``routine_count`` 0: no alarm is routine)."""
    return np.array([warmup, warmup_time, long_memory,
                     0 if slow_memory is None else slow_memory, refractory, scale,
                     alarm_margin, routine_count, routine_horizon, float(one_reading),
                     held_back], dtype=np.float64)


@jit
def _routine_decades(routine_t, routine_at, routine_n, s, score, t, event, count, horizon):
    """The empirical evidence of an alarm of stream ``s`` (its ``event``-th event, at time
    ``t``) when it raised ``count`` alarms at least as strong as ``score`` (by band)
    within ``horizon`` seconds before, else ``inf``; then records this alarm in every band
    up to its own (each band's ring must hold at least ``count`` alarms)."""
    ring = routine_t.shape[2]
    band = min(int(score * _ROUTINE_LEVELS), _ROUTINE_LEVELS - 1)
    n = routine_n[s, band]
    decades = math.inf
    if n >= count and t - routine_t[s, band, (n - count) % ring] <= horizon:
        # ``count`` alarms in the events since the oldest of them.
        since = event - routine_at[s, band, (n - count) % ring]
        decades = math.log10(max(since / count, 1.0))
    for level in range(band + 1):
        routine_t[s, level, routine_n[s, level] % ring] = t
        routine_at[s, level, routine_n[s, level] % ring] = event
        routine_n[s, level] += 1
    return decades


@jit
def _record_decades(record_at, s, u, event):
    """Decades of empirical evidence for a surprise ``u`` at stream ``s``'s ``event``-th
    event: none of the ``m`` events since the last one as surprising (by band) was, an
    outcome of probability ``1 / (m + 1)`` among exchangeable surprises."""
    band = min(int(u / _RECORD_BAND), _RECORD_LEVELS - 1)
    return math.log10(event - record_at[s, band])


@jit
def _fold(mean, var, s, a, alpha):
    d = a - mean[s]
    mean[s] += alpha * d
    var[s] = (1.0 - alpha) * (var[s] + alpha * d * d)


@jit
def _tail_decades(a, mean, var):
    return gaussian_tail_decades((a - mean) / max(math.sqrt(var), _MIN_SPREAD))


@jit
def calibrate_many(slots, resets, valid, u, extra, apart, times, echo_slot, echo_ref, echo, buf,
                   count, mean, var, mean_slow, var_slow, mean_one, var_one, record_at, start,
                   peak, reported, routine_t, routine_at, routine_n, settings, out):
    """Scores for a batch of surprises ``u`` of streams ``slots``, in arrival order.

    State, one row per stream, updated in place: ``buf`` ``(S, W)`` the last ``W``
    surprises (``W`` is the short window); ``count``, ``mean``/``var``,
    ``mean_slow``/``var_slow``, ``start``, ``peak`` and ``reported`` ``(S,)`` the event
    count, the long-run mean and variance of the short-term surprise over ``long_memory``
    and over ``slow_memory`` events (``slow_memory`` 0: not used), the time of the first
    event (NaN until one has a time), the recent score peak and the last reported score
    (both decaying by ``1 / refractory`` per event); ``routine_t`` and ``routine_at``
    ``(S, 20, K)`` and ``routine_n`` ``(S, 20)`` the times and event counts of the last
    ``K >= routine_count`` alarms reaching each band of score and how many did.
    ``settings`` comes from :func:`calibration_settings`.

    ``times[i]`` is the event's time in seconds (NaN: unknown, which never holds the
    warm-up). ``echo`` ``(S, B)`` is a ring of each stream's tail evidence: event ``i``
    stores its evidence at ``echo_slot[i]`` (``-1``: nowhere), and when
    ``echo_ref[i] >= 0`` names the slot of an earlier event whose evidence was at least
    as strong, event ``i`` scores 0, explained by it (a seasonal model's input replays
    an anomaly one season later). ``resets[i]`` zeroes the stream's state first (a new
    stream took the slot). Events with ``valid[i]`` False (a stream's first reading, with
    nothing to forecast it from) score 0 and change nothing. ``extra[i]`` is evidence in
    decades from other tests of event ``i`` (for instance
    :func:`~stream_rnn.cells.context.context_evidence`; 0: none): the stronger of it and
    the surprise's own evidence counts, before echoes and the refractory rule. ``out[i]``
    receives the score of event ``i``.
    """
    W = buf.shape[1]
    warmup = settings[_WARMUP]
    warmup_time = settings[_WARMUP_TIME]
    long_memory = settings[_LONG]
    slow_memory = settings[_SLOW]
    refractory = settings[_REFRACTORY]
    scale = settings[_SCALE]
    margin = settings[_MARGIN]
    routine_count = int(settings[_ROUTINE_COUNT])
    routine_horizon = settings[_ROUTINE_HORIZON]
    one_reading = settings[_ONE_READING] > 0.0
    held_back = settings[_HELD_BACK]
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            buf[s] = 0.0
            count[s] = 0
            mean[s] = 0.0
            var[s] = 0.0
            mean_slow[s] = 0.0
            var_slow[s] = 0.0
            mean_one[s] = 0.0
            var_one[s] = 0.0
            record_at[s] = 0
            start[s] = math.nan
            peak[s] = 0.0
            reported[s] = 0.0
            routine_t[s] = 0.0
            routine_at[s] = 0
            routine_n[s] = 0
            echo[s] = 0.0
        out[i] = 0.0
        if not valid[i]:
            continue
        t = times[i]
        n = count[s]
        # A fresh slot may hold zeros rather than NaN: the first event sets the start.
        if n == 0 or (math.isnan(start[s]) and not math.isnan(t)):
            start[s] = t
        buf[s, n % W] = u[i]
        n += 1
        total = 0.0
        for j in range(min(n, W)):
            total += buf[s, j]
        a = total / min(n, W)
        # An event without a time cannot tell how long the stream has run: only the
        # event count holds it back then.
        young = warmup_time > 0.0 and not math.isnan(t) and t - start[s] < warmup_time
        x = 0.0
        x_own = 0.0
        if n > warmup:
            x_own = _tail_decades(a, mean[s], var[s])
            if slow_memory > 0:
                x_own = min(x_own, _tail_decades(a, mean_slow[s], var_slow[s]))
            if one_reading:
                # A second test of the same surprise: its tail probability is doubled.
                x_one = min(_tail_decades(u[i], mean_one[s], var_one[s]),
                            _record_decades(record_at, s, u[i], n))
                x_own = max(x_own, x_one - _LN2_DECADES)
            x_own = max(x_own, extra[i])
            x = max(x_own, apart[i])
        if n > warmup and not young:
            explained = echo_ref[i] >= 0 and echo[s, echo_ref[i]] >= x
            evidence = 0.0 if explained else x
            score = evidence / (evidence + scale)
            if refractory > 0:
                # Evidence ``apart`` keeps its own refractory record: an alarm of one kind
                # does not silence the other.
                kind = 0 if x_own >= apart[i] else 1
                if score > peak[s, kind] and score > reported[s, kind] + margin:
                    out[i] = score
                    # The routine record is the surprise's: runs of the ``apart`` evidence
                    # report once each already.
                    if routine_count > 0 and kind == 0 and not math.isnan(t):
                        rate = _routine_decades(routine_t, routine_at, routine_n, s, score, t,
                                                n, routine_count, routine_horizon)
                        if rate < evidence:
                            out[i] = rate / (rate + scale)
                    reported[s, kind] = score
                else:
                    out[i] = held_back * score
                for k in range(2):
                    e = 0.0 if explained else (x_own if k == 0 else apart[i])
                    peak[s, k] = max(peak[s, k] - 1.0 / refractory, e / (e + scale))
                reported[s, 0] = max(reported[s, 0] - 1.0 / refractory, 0.0)
                # An episode of ``apart`` evidence (a stuck run) is reported as it grows
                # by the margin, never again at the same strength however long it lasts;
                # the next episode starts afresh.
                if not apart[i] > 0.0:
                    reported[s, 1] = 0.0
            else:
                out[i] = score
        if echo_slot[i] >= 0:
            echo[s, echo_slot[i]] = x
        # Fold in after scoring: the event is judged against the past only.
        _fold(mean, var, s, a, max(1.0 / n, 1.0 / long_memory))
        if slow_memory > 0:
            _fold(mean_slow, var_slow, s, a, max(1.0 / n, 1.0 / slow_memory))
        if one_reading:
            _fold(mean_one, var_one, s, u[i], max(1.0 / n, 1.0 / long_memory))
            for level in range(min(int(u[i] / _RECORD_BAND), _RECORD_LEVELS - 1) + 1):
                record_at[s, level] = n
        count[s] = n


class SurpriseCalibrator:
    """Turn one stream's surprises into calibrated anomaly scores in [0, 1].

    A single-stream front end to :func:`calibrate_many` (see the module docstring for the
    method), without echoes. Keyed models keep the same state per key in their own
    arrays.

    Parameters
    ----------
    short_window
        Surprises averaged into the short-term surprise.
    long_memory
        Events the long-run statistics of the short-term surprise remember (an exponential
        average once that many events have been seen).
    slow_memory
        Events a second, slower set of long-run statistics remembers; a score then needs
        the short-term surprise to be rare against both (``None``: the first only).
    warmup
        Events that score 0 while the statistics settle.
    warmup_time
        Seconds from the first event during which events score 0 too (``0``: none).
    refractory
        Events over which a reported alarm peak decays; while the evidence stays under
        it the score is 0 (``0`` reports every event's score).
    alarm_margin
        Score by which a report must beat the last reported score (decaying alike).
    scale
        Decades of tail evidence that map to a score of 0.5.
    routine_count, routine_horizon
        An alarm is routine when at least ``routine_count`` alarms as strong came within
        the last ``routine_horizon`` seconds (``0``: never; needs event times): its
        evidence is capped at the stream's rate of such alarms.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> calibrator = SurpriseCalibrator(warmup=100)
    >>> z = rng.normal(size=3000)
    >>> z[2500:2502] = 12.0  # two readings twelve standard deviations off their forecast
    >>> scores = [calibrator.update(np.log1p(v * v)) for v in z]
    >>> quiet = np.quantile(scores[100:2500], 0.99)
    >>> print(f"warm-up {max(scores[:100]):.2f}, quiet {quiet:.2f}, "
    ...       f"incident {max(scores[2500:2503]):.2f}")
    warm-up 0.00, quiet 0..., incident 0...
    >>> bool(max(scores[2500:2503]) > 0.5 > quiet)
    True
    """

    def __init__(
        self,
        short_window: int = 3,
        long_memory: int = 500,
        slow_memory: int | None = None,
        warmup: int = 300,
        warmup_time: float = 0.0,
        refractory: int = 300,
        alarm_margin: float = 0.1,
        scale: float = DEFAULT_SCALE,
        routine_count: int = DEFAULT_ROUTINE_COUNT,
        routine_horizon: float = DEFAULT_ROUTINE_HORIZON,
    ) -> None:
        self.short_window = short_window
        self.long_memory = long_memory
        self.slow_memory = slow_memory
        self.warmup = warmup
        self.warmup_time = warmup_time
        self.refractory = refractory
        self.alarm_margin = alarm_margin
        self.scale = scale
        self.routine_count = routine_count
        self.routine_horizon = routine_horizon
        check_params(short_window, long_memory, warmup, refractory, scale, slow_memory,
                     warmup_time, alarm_margin, routine_count, routine_horizon)
        self._state = {name: np.zeros((1, *shape), dtype=dtype) for name, (shape, dtype)
                       in calibration_rows(short_window, routine_count).items()}
        self._settings = calibration_settings(warmup, long_memory, refractory, scale,
                                              slow_memory, warmup_time, alarm_margin,
                                              routine_count, routine_horizon)
        self._slot = np.zeros(1, dtype=np.int64)
        self._reset = np.zeros(1, dtype=np.bool_)
        self._valid = np.ones(1, dtype=np.bool_)
        self._time = np.zeros(1, dtype=np.float64)
        self._no_extra = np.zeros(1, dtype=np.float64)
        self._no_echo = np.full(1, -1, dtype=np.int64)
        self._echo = np.zeros((1, 1), dtype=np.float32)
        self._out = np.zeros(1, dtype=np.float64)

    def update(self, surprise: float, t: float | None = None) -> float:
        """Score of ``surprise`` at time ``t`` (seconds) against the past, then fold it in."""
        self._time[0] = math.nan if t is None else float(t)
        calibrate_many(self._slot, self._reset, self._valid,
                       np.array([surprise], dtype=np.float64), self._no_extra, self._no_extra,
                       self._time,
                       self._no_echo, self._no_echo, self._echo,
                       *(self._state[name] for name in CALIBRATION_ARGS), self._settings,
                       self._out)
        return float(self._out[0])

    @property
    def n_seen(self) -> int:
        """Surprises folded in so far."""
        return int(self._state["cal_count"][0])


def check_params(short_window: int, long_memory: int, warmup: int, refractory: int,
                 scale: float, slow_memory: int | None = None, warmup_time: float = 0.0,
                 alarm_margin: float = 0.0, routine_count: int = 0,
                 routine_horizon: float = DEFAULT_ROUTINE_HORIZON) -> None:
    """Raise ValueError naming the first unusable calibration setting."""
    if not (isinstance(short_window, int | np.integer) and short_window >= 1):
        raise ValueError(f"short_window must be a positive integer, got {short_window!r}")
    if not long_memory >= 1:
        raise ValueError(f"long_memory must be >= 1, got {long_memory!r}")
    if slow_memory is not None and not slow_memory >= 1:
        raise ValueError(f"slow_memory must be >= 1 or None, got {slow_memory!r}")
    if not warmup >= 0:
        raise ValueError(f"warmup must be >= 0, got {warmup!r}")
    if not warmup_time >= 0:
        raise ValueError(f"warmup_time must be >= 0 seconds, got {warmup_time!r}")
    if not refractory >= 0:
        raise ValueError(f"refractory must be >= 0, got {refractory!r}")
    if not 0 <= alarm_margin < 1:
        raise ValueError(f"alarm_margin must be in [0, 1), got {alarm_margin!r}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if not (isinstance(routine_count, int | np.integer) and not isinstance(routine_count, bool)
            and routine_count >= 0):
        raise ValueError(f"routine_count must be an integer >= 0, got {routine_count!r}")
    if not (isinstance(routine_horizon, int | float) and not isinstance(routine_horizon, bool)
            and routine_horizon > 0):
        raise ValueError(f"routine_horizon must be > 0 seconds, got {routine_horizon!r}")
