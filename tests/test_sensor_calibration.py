"""Two long-run memories and the time warm-up of the sensor calibration: the compiled kernel
against a plain NumPy reference, recurring surprises against novel ones, and the warm-up
in seasons of the detector."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_rnn.cells.calibrate import (
    CALIBRATION_ARGS,
    calibrate_many,
    calibration_rows,
    gaussian_tail_decades,
)
from stream_rnn.models import SensorAnomalyDetector
from stream_rnn.scoring import DEFAULT_THRESHOLD, SurpriseCalibrator

STEP = 300.0
DAY = 86_400.0


def _reference(slots, resets, valid, u, times, n_slots, W, warmup, warmup_time, long_memory,
               slow_memory, refractory, scale):
    """The calibration written out plainly, one stream dictionary per slot."""
    fresh = {"buf": [0.0] * W, "n": 0, "m": 0.0, "v": 0.0, "ms": 0.0, "vs": 0.0,
             "start": math.nan, "peak": 0.0}
    state = [dict(fresh, buf=[0.0] * W) for _ in range(n_slots)]
    out = np.zeros(len(u))
    for i, s in enumerate(slots):
        if resets[i]:
            state[s] = dict(fresh, buf=[0.0] * W)
        if not valid[i]:
            continue
        st = state[s]
        if st["n"] == 0 or (math.isnan(st["start"]) and not math.isnan(times[i])):
            st["start"] = times[i]
        st["buf"][st["n"] % W] = u[i]
        n = st["n"] = st["n"] + 1
        a = float(np.mean(st["buf"][: min(n, W)]))
        young = (warmup_time > 0 and not math.isnan(times[i])
                 and times[i] - st["start"] < warmup_time)
        if n > warmup and not young:
            x = gaussian_tail_decades((a - st["m"]) / max(math.sqrt(st["v"]), 0.01))
            if slow_memory:
                x = min(x, gaussian_tail_decades((a - st["ms"]) / max(math.sqrt(st["vs"]),
                                                                      0.01)))
            score = x / (x + scale)
            if score > st["peak"]:
                out[i] = score
            st["peak"] = max(st["peak"] - 1.0 / refractory, score)
        for mean, var, memory in (("m", "v", long_memory), ("ms", "vs", slow_memory)):
            if memory:
                alpha = max(1.0 / n, 1.0 / memory)
                d = a - st[mean]
                st[mean] += alpha * d
                st[var] = (1.0 - alpha) * (st[var] + alpha * d * d)
    return out


@pytest.mark.parametrize("slow_memory", [0, 400])
def test_kernel_matches_the_plain_reference(slow_memory):
    rng = np.random.default_rng(0)
    n, n_slots, W = 3000, 3, 3
    slots = rng.integers(0, n_slots, n)
    resets = rng.random(n) < 0.002
    valid = rng.random(n) > 0.01
    u = np.log1p(rng.standard_t(3, n) ** 2)
    u[rng.integers(0, n, 20)] += 8.0
    times = np.cumsum(rng.uniform(0, 600, n))
    times[rng.random(n) < 0.05] = np.nan
    args = dict(warmup=30, warmup_time=20_000.0, long_memory=100, slow_memory=slow_memory,
                refractory=50, scale=5.0)
    rows = {name: np.zeros((n_slots, *shape), dtype=dtype)
            for name, (shape, dtype) in calibration_rows(W).items()}
    out = np.zeros(n)
    calibrate_many(slots, resets, valid, u, times, *(rows[name] for name in CALIBRATION_ARGS),
                   args["warmup"], args["warmup_time"], args["long_memory"],
                   args["slow_memory"], args["refractory"], args["scale"], out)
    expected = _reference(slots, resets, valid, u, times, n_slots, W, **args)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert (out > DEFAULT_THRESHOLD).sum() >= 5  # the comparison covered alarms


def test_slow_memory_keeps_the_usual_spread_after_a_calm_spell():
    # Residuals shrink to a third for 1200 events now and then; when they come back, the
    # fast distribution alone has narrowed and calls the stream's ordinary noise rare.
    rng = np.random.default_rng(1)
    z = rng.normal(size=9000)
    calm_starts = (1500, 4000)
    for start in calm_starts:
        z[start : start + 1200] *= 0.3
    z[8700:8703] = 40.0  # a novel incident
    u = np.log1p(z * z)
    results = {}
    for slow_memory in (None, 5000):
        calibrator = SurpriseCalibrator(slow_memory=slow_memory, warmup=100)
        scores = np.array([calibrator.update(v) for v in u])
        results[slow_memory] = (
            [scores[start + 1200 : start + 1300].max() for start in calm_starts],
            scores[8700:8703].max(),
        )
    fast_only, both = results[None], results[5000]
    assert min(fast_only[0]) > DEFAULT_THRESHOLD
    assert max(both[0]) < DEFAULT_THRESHOLD
    assert both[1] > DEFAULT_THRESHOLD and fast_only[1] > DEFAULT_THRESHOLD


def test_warmup_time_holds_back_events_until_it_has_passed():
    calibrator = SurpriseCalibrator(warmup=10, warmup_time=1000 * STEP, refractory=0)
    rng = np.random.default_rng(2)
    scores = [calibrator.update(math.log1p(v * v), t=STEP * i)
              for i, v in enumerate(rng.normal(size=1200))]
    assert not any(scores[:1000]) and any(scores[1000:])
    untimed = SurpriseCalibrator(warmup=10, warmup_time=1000 * STEP, refractory=0)
    scores = [untimed.update(math.log1p(v * v)) for v in rng.normal(size=200)]
    assert any(scores[10:])  # without times only the event count holds back


@pytest.mark.parametrize("bad", [{"slow_memory": 0}, {"warmup_time": -1.0}])
def test_calibrator_rejects_bad_memory_and_warmup_time(bad):
    with pytest.raises(ValueError):
        SurpriseCalibrator(**bad)


# --------------------------------------------------------------------------- detector


def _daily(n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, n)


def _scores(values, **params):
    times = STEP * np.arange(len(values))
    detector = SensorAnomalyDetector(hidden_size=8, n_members=2, warmup=100,
                                     season_buffer=512, **params)
    detector.learn_one({"value": values[0]}, t=times[0])
    return np.r_[0.0, detector.score_learn_many(values[1:, None], times=times[1:])]


def test_detector_scores_nothing_in_its_first_seasons_then_flags_an_incident():
    values = _daily(1400, seed=3)
    values[500:503] += 60  # day two: held back
    values[1200:1203] += 40  # day five: flagged
    scores = _scores(values, warmup_seasons=3.0)
    first_scored = 2 + int(3 * DAY / STEP)  # the first two readings are never scored
    assert not scores[:first_scored].any()
    assert scores[1200:1203].max() >= DEFAULT_THRESHOLD
    early = _scores(values, warmup_seasons=0.0)
    assert early[500:503].max() >= DEFAULT_THRESHOLD  # the same model with no time warm-up


def test_detector_without_season_ignores_warmup_seasons():
    values = _daily(600, seed=4)
    values[400:403] += 40
    scores = _scores(values, season=None, warmup_seasons=3.0)
    assert scores[400:403].max() >= DEFAULT_THRESHOLD


@pytest.mark.parametrize("bad", [{"warmup_seasons": -1.0}, {"warmup_seasons": "3"},
                                 {"slow_memory": 0}])
def test_detector_rejects_bad_warmup_seasons_and_slow_memory(bad):
    with pytest.raises(ValueError):
        SensorAnomalyDetector(**bad).learn_one({"value": 1.0})
