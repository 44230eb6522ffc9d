"""The context view: a reading against the same time one cycle back. The compiled kernel
against a plain reference, a smooth all-day departure from last week found (and its echo
a week later not), quiet weekly streams kept quiet, and the detector's use of it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_rnn.cells.calibrate import gaussian_tail_decades
from stream_rnn.cells.context import (
    CONTEXT_ARGS,
    context_evidence,
    context_rows,
    context_settings,
)
from stream_rnn.models import SensorAnomalyDetector

HOUR = 3_600.0
DAY = 24 * HOUR
WEEK = 7 * DAY


def _reference(slots, resets, valid, X, lag_X, times, echo_slot, echo_ref, n_slots, B, span,
               memory, warmup):
    """The context view written out plainly, one dictionary per stream."""
    D = X.shape[1]

    def fresh():
        return {"ms": np.zeros(D), "avg": 0.0, "m": 0.0, "v": 0.0, "c": 0,
                "last": math.nan, "start": math.nan, "echo": np.zeros(B, dtype=np.float32)}

    state = [fresh() for _ in range(n_slots)]
    out = np.zeros(len(slots))
    for i, s in enumerate(slots):
        if resets[i]:
            state[s] = fresh()
        st = state[s]
        t = times[i]
        if not valid[i] or math.isnan(t):
            continue
        if math.isnan(st["start"]):
            st["start"] = t
        evidence = 0.0
        if not math.isnan(lag_X[i, 0]):
            c = st["c"]
            dt = max(t - st["last"], 0.0) if c > 0 else 0.0
            st["last"] = t
            r2 = (X[i] - lag_X[i]) ** 2
            floor = 1e-12 * (1.0 + X[i] ** 2)
            v = float(np.max(np.cbrt(r2 / np.maximum(st["ms"], floor)))) if c > 0 else 0.0
            st["ms"] += max(1.0 / (c + 1), min(1.0, dt / memory)) * (r2 - st["ms"])
            if c > 0:
                st["avg"] = v if c == 1 else st["avg"] + (1 - math.exp(-dt / span)) * (
                    v - st["avg"])
                if c > 1 and t - st["start"] >= warmup:
                    evidence = gaussian_tail_decades(
                        (st["avg"] - st["m"]) / max(math.sqrt(st["v"]), 0.01))
                alpha = max(1.0 / c, min(1.0, dt / memory))
                d = st["avg"] - st["m"]
                st["m"] += alpha * d
                st["v"] = (1 - alpha) * (st["v"] + alpha * d * d)
            st["c"] = c + 1
            if not (echo_ref[i] >= 0 and st["echo"][echo_ref[i]] >= evidence):
                out[i] = max(0.0, evidence - math.log10(2.0))
        if echo_slot[i] >= 0:
            st["echo"][echo_slot[i]] = evidence
    return out


def _run(X, lag_X, times, settings, slots=None, resets=None, valid=None, echo_slot=None,
         echo_ref=None, n_slots=1, B=1):
    n, D = X.shape
    slots = np.zeros(n, dtype=np.int64) if slots is None else slots
    resets = np.zeros(n, dtype=np.bool_) if resets is None else resets
    valid = np.ones(n, dtype=np.bool_) if valid is None else valid
    echo_slot = np.full(n, -1) if echo_slot is None else echo_slot
    echo_ref = np.full(n, -1) if echo_ref is None else echo_ref
    rows = {name: np.zeros((n_slots, *shape), dtype=dtype)
            for name, (shape, dtype) in context_rows(D).items()}
    echo = np.zeros((n_slots, B), dtype=np.float32)
    out = np.zeros(n)
    context_evidence(slots, resets, valid, X, lag_X, times, echo_slot, echo_ref, echo,
                     *(rows[name] for name in CONTEXT_ARGS), settings, out)
    return out


def test_kernel_matches_the_plain_reference():
    rng = np.random.default_rng(0)
    n, n_slots, B, D = 4000, 3, 32, 2
    slots = rng.integers(0, n_slots, n)
    resets = rng.random(n) < 0.002
    valid = rng.random(n) > 0.01
    X = rng.standard_t(4, (n, D)) * [1.0, 50.0]
    lag_X = X + rng.normal(size=(n, D)) * [1.0, 50.0]
    lag_X[rng.random(n) < 0.05] = np.nan
    lag_X[2000:2060] += [8.0, 0.0]  # a sustained departure, so alarms are covered
    times = np.cumsum(rng.uniform(0, 1200, n))
    times[rng.random(n) < 0.02] = np.nan
    echo_slot = np.where(rng.random(n) < 0.9, rng.integers(0, B, n), -1)
    echo_ref = np.where(rng.random(n) < 0.5, rng.integers(0, B, n), -1)
    span, memory, warmup = 2 * HOUR, 5 * DAY, 2 * DAY
    out = _run(X, lag_X, times, context_settings(span, memory, warmup), slots, resets, valid,
               echo_slot, echo_ref, n_slots, B)
    expected = _reference(slots, resets, valid, X, lag_X, times, echo_slot, echo_ref, n_slots,
                          B, span, memory, warmup)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)
    assert (out > 5.0).sum() >= 5  # the comparison covered strong evidence


def _weekly_load(weeks, rng, holiday_day=None):
    """Hourly load with a daily and a weekly cycle (quiet weekends) and noise; on
    ``holiday_day`` the day's rise is missing, smoothly, all day long."""
    t = np.arange(weeks * 7 * 24) * HOUR
    hour, day = (t / HOUR) % 24, (t // DAY).astype(int)
    shape = np.clip(np.sin((hour - 6) / 24 * 2 * np.pi), 0, None)
    weekday = np.where(day % 7 < 5, 1.0, 0.4)
    if holiday_day is not None:
        weekday[day == holiday_day] = 0.5
    x = 100 + 60 * weekday * shape + rng.normal(0, 3, t.size)
    return t, x


def _lagged(t, x, lag):
    lag_x = np.full(x.size, np.nan)
    j = np.searchsorted(t, t - lag, side="right") - 1
    ok = (j >= 0) & (t - lag >= t[0])
    lag_x[ok] = x[j[ok]]
    return lag_x[:, None], np.where(ok, j, -1)


def test_a_smooth_day_long_departure_from_last_week_is_found_and_its_echo_is_not():
    rng = np.random.default_rng(1)
    holiday = 5 * 7 + 2  # a Wednesday of week 6
    t, x = _weekly_load(7, rng, holiday_day=holiday)
    lag_x, lag_slot = _lagged(t, x, WEEK)
    # Each reading's own index as its echo slot: the ring is as long as the stream.
    slots = np.arange(t.size)
    settings = context_settings(2 * HOUR, WEEK, 3 * WEEK)
    evidence = _run(x[:, None], lag_x, t, settings, echo_slot=slots, echo_ref=lag_slot,
                    B=t.size)
    day = (t // DAY).astype(int)
    normal = evidence[(day >= 21) & (day < holiday)]
    print(f"holiday {evidence[day == holiday].max():.1f} decades, normal days "
          f"{normal.max():.1f}, a week later {evidence[day == holiday + 7].max():.1f}")
    assert evidence[day < 21].max() == 0.0  # three weeks of warm-up
    assert evidence[day == holiday].max() > 6.0 > 3.0 > normal.max()
    # A week later the holiday is the reference: the difference is as large, but explained.
    assert evidence[day == holiday + 7].max() < 3.0


def test_quiet_weekly_streams_stay_quiet():
    rng = np.random.default_rng(2)
    settings = context_settings(2 * HOUR, WEEK, 3 * WEEK)
    strongest = []
    for _ in range(10):
        t, x = _weekly_load(8, rng)
        lag_x, lag_slot = _lagged(t, x, WEEK)
        slots = np.arange(t.size)
        evidence = _run(x[:, None], lag_x, t, settings, echo_slot=slots, echo_ref=lag_slot,
                        B=t.size)
        strongest.append(evidence.max())
    # Five decades is a score of 0.5 with the default scale: far below any sane threshold.
    assert max(strongest) < 5.0


@pytest.mark.parametrize("span,memory,warmup", [(0.0, WEEK, 0.0), (HOUR, -1.0, 0.0),
                                                (HOUR, WEEK, -1.0), (math.nan, WEEK, 0.0)])
def test_settings_are_checked(span, memory, warmup):
    with pytest.raises(ValueError, match="context"):
        context_settings(span, memory, warmup)


@pytest.mark.parametrize("bad", [{"context_lag": 0.0}, {"context_lag": -WEEK},
                                 {"context_span": 0.0}])
def test_detector_rejects_bad_context_settings(bad):
    detector = SensorAnomalyDetector(hidden_size=4, n_members=1, **bad)
    with pytest.raises(ValueError, match="context"):
        detector.learn_one({"load": 1.0}, t=0.0)


def _detector_scores(t, x, **params):
    detector = SensorAnomalyDetector(hidden_size=8, n_members=1, season_buffer=400, seed=0,
                                     **params)
    detector.learn_one({"load": x[0]}, t=t[0])
    return np.r_[0.0, detector.score_learn_many(x[1:, None], times=t[1:])]


def test_detector_finds_the_holiday_only_with_its_context_view():
    rng = np.random.default_rng(3)
    holiday = 5 * 7 + 2
    t, x = _weekly_load(6, rng, holiday_day=holiday)
    day = (t // DAY).astype(int)
    with_context = _detector_scores(t, x)
    without = _detector_scores(t, x, context_lag=None)
    quiet = (day >= 21) & (day < holiday)
    print(f"holiday: with context {with_context[day == holiday].max():.2f}, without "
          f"{without[day == holiday].max():.2f}; ordinary days {with_context[quiet].max():.2f}"
          f" (without {without[quiet].max():.2f})")
    # Without the view the holiday scores nothing; with it, more than any ordinary day
    # (whose highest scores are the forecasters' own, on Monday mornings, unchanged).
    assert without[day == holiday].max() < 0.3
    assert with_context[day == holiday].max() > with_context[quiet].max() + 0.03
    assert with_context[quiet].max() == pytest.approx(without[quiet].max(), abs=0.01)
    # Before three weeks of history the view is silent: both agree exactly.
    np.testing.assert_array_equal(with_context[day < 21], without[day < 21])


def test_detector_score_one_moves_nothing_and_matches_the_batch_path():
    rng = np.random.default_rng(4)
    t, x = _weekly_load(4, rng, holiday_day=3 * 7 + 1)
    batch = _detector_scores(t, x)
    detector = SensorAnomalyDetector(hidden_size=8, n_members=1, season_buffer=400, seed=0)
    one = []
    for ti, xi in zip(t, x, strict=True):
        before = detector.score_one({"load": xi}, t=ti)
        one.append(detector.score_learn_one({"load": xi}, t=ti))
        assert before == one[-1]
    np.testing.assert_allclose(one, batch, rtol=1e-12, atol=1e-12)
