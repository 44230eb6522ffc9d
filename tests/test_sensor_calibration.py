"""The sensor calibration's warm-up in time, alarm margin, seasonal echoes and optional slow
memory: the compiled kernel against a plain NumPy reference, each mechanism on synthetic
streams, and the detector's warm-up in seasons and echo suppression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_rnn.cells.calibrate import (
    CALIBRATION_ARGS,
    calibrate_many,
    calibration_rows,
    calibration_settings,
    cube_root_surprise,
    gaussian_tail_decades,
    log_surprise,
)
from stream_rnn.models import SensorAnomalyDetector
from stream_rnn.scoring import DEFAULT_THRESHOLD, SurpriseCalibrator

STEP = 300.0
DAY = 86_400.0


def _reference(slots, resets, valid, u, extra, times, echo_slot, echo_ref, n_slots, B, W, warmup,
               warmup_time, long_memory, slow_memory, refractory, scale, alarm_margin):
    """The calibration written out plainly, one stream dictionary per slot."""
    def fresh():
        return {"buf": [0.0] * W, "n": 0, "m": 0.0, "v": 0.0, "ms": 0.0, "vs": 0.0,
                "start": math.nan, "peak": 0.0, "reported": 0.0,
                "echo": np.zeros(B, dtype=np.float32)}

    state = [fresh() for _ in range(n_slots)]
    out = np.zeros(len(u))
    for i, s in enumerate(slots):
        if resets[i]:
            state[s] = fresh()
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
        x = 0.0
        if n > warmup and not young:
            x = gaussian_tail_decades((a - st["m"]) / max(math.sqrt(st["v"]), 0.01))
            if slow_memory:
                x = min(x, gaussian_tail_decades((a - st["ms"]) / max(math.sqrt(st["vs"]),
                                                                      0.01)))
            x = max(x, extra[i])
            explained = echo_ref[i] >= 0 and st["echo"][echo_ref[i]] >= x
            evidence = 0.0 if explained else x
            score = evidence / (evidence + scale)
            if score > st["peak"] and score > st["reported"] + alarm_margin:
                out[i] = score
                st["reported"] = score
            st["peak"] = max(st["peak"] - 1.0 / refractory, score)
            st["reported"] = max(st["reported"] - 1.0 / refractory, 0.0)
        if echo_slot[i] >= 0:
            st["echo"][echo_slot[i]] = x
        for mean, var, memory in (("m", "v", long_memory), ("ms", "vs", slow_memory)):
            if memory:
                alpha = max(1.0 / n, 1.0 / memory)
                d = a - st[mean]
                st[mean] += alpha * d
                st[var] = (1.0 - alpha) * (st[var] + alpha * d * d)
    return out


@pytest.mark.parametrize("slow_memory,alarm_margin", [(None, 0.0), (400, 0.1), (None, 0.2)])
def test_kernel_matches_the_plain_reference(slow_memory, alarm_margin):
    rng = np.random.default_rng(0)
    n, n_slots, W, B = 3000, 3, 3, 16
    slots = rng.integers(0, n_slots, n)
    resets = rng.random(n) < 0.002
    valid = rng.random(n) > 0.01
    u = np.log1p(rng.standard_t(3, n) ** 2)
    u[rng.integers(0, n, 20)] += 8.0
    # Evidence from another test, now and then stronger than the surprise's own.
    extra = np.where(rng.random(n) < 0.02, rng.uniform(0.0, 12.0, n), 0.0)
    times = np.cumsum(rng.uniform(0, 600, n))
    times[rng.random(n) < 0.05] = np.nan
    echo_slot = np.where(rng.random(n) < 0.9, rng.integers(0, B, n), -1)
    echo_ref = np.where(rng.random(n) < 0.5, rng.integers(0, B, n), -1)
    args = dict(warmup=30, warmup_time=20_000.0, long_memory=100, slow_memory=slow_memory,
                refractory=50, scale=5.0, alarm_margin=alarm_margin)
    rows = {name: np.zeros((n_slots, *shape), dtype=dtype)
            for name, (shape, dtype) in calibration_rows(W).items()}
    echo = np.zeros((n_slots, B), dtype=np.float32)
    out = np.zeros(n)
    calibrate_many(slots, resets, valid, u, extra, times, echo_slot, echo_ref, echo,
                   *(rows[name] for name in CALIBRATION_ARGS), calibration_settings(**args),
                   out)
    expected = _reference(slots, resets, valid, u, extra, times, echo_slot, echo_ref, n_slots,
                          B, W, **args)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert (out > DEFAULT_THRESHOLD).sum() >= 5  # the comparison covered alarms


def test_cube_root_surprise_is_the_largest_channel_and_nearly_gaussian_in_the_bulk():
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(20_000, 3))
    u = np.array([cube_root_surprise(row) for row in Z])
    np.testing.assert_allclose(u, np.max(np.abs(Z) ** (2.0 / 3.0), axis=1), rtol=1e-12)
    one = np.array([cube_root_surprise(row) for row in Z[:, :1]])
    logs = np.array([log_surprise(row) for row in Z[:, :1]])

    def skewness(v):
        return float(np.mean((v - v.mean()) ** 3) / v.std() ** 3)

    # The Gaussian yardstick fits the cube root far better than the log it replaced.
    assert abs(skewness(one)) < 0.5 < 1.0 < skewness(logs)


def test_alarm_margin_reports_creeping_evidence_once_and_a_far_stronger_incident():
    rng = np.random.default_rng(3)
    noise = np.log1p(rng.normal(size=1000) ** 2)
    # Readings that grow a little more surprising each step, a quiet stretch shorter than
    # the refractory period, then a far stronger incident.
    creeping = np.log1p(np.geomspace(8.0, 20.0, 5) ** 2)
    u = np.r_[noise, creeping, noise[:100], math.log1p(1e4**2)]
    alarms = {}
    for margin in (0.0, 0.1):
        calibrator = SurpriseCalibrator(short_window=1, warmup=100, alarm_margin=margin)
        scores = np.array([calibrator.update(v) for v in u])
        alarms[margin] = int((scores[1000:1005] >= DEFAULT_THRESHOLD).sum())
        assert scores[-1] >= DEFAULT_THRESHOLD
    assert alarms[0.0] == 5  # without a margin every step of the creep is an alarm
    assert alarms[0.1] == 1


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


@pytest.mark.parametrize("bad", [{"slow_memory": 0}, {"warmup_time": -1.0},
                                 {"alarm_margin": 1.5}])
def test_calibrator_rejects_bad_memory_warmup_time_and_margin(bad):
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
                                 {"slow_memory": 0}, {"alarm_margin": 1.0},
                                 {"alarm_margin": -0.1}])
def test_detector_rejects_bad_calibration_settings(bad):
    with pytest.raises(ValueError):
        SensorAnomalyDetector(**bad).learn_one({"value": 1.0})


def test_season_echo_quiets_surprises_that_recur_at_the_same_time_of_day():
    # A spike of random height at the same time every day: the small network never learns
    # its height, but a spike no worse than yesterday's is not news. A novel incident at
    # another time still alarms.
    rng = np.random.default_rng(3)
    n = 288 * 8
    values = _daily(n, seed=3)
    spikes = np.arange(100, n, 288)
    for start in spikes:
        values[start : start + 2] += rng.uniform(15, 45)
    incident = 6 * 288 + 200
    values[incident : incident + 3] += 40
    scored = [start for start in spikes if start > 3 * 288]
    spike_scores = {}
    for echo in (True, False):
        scores = _scores(values, season_echo=echo)
        spike_scores[echo] = [scores[start : start + 4].max() for start in scored]
        assert scores[incident : incident + 3].max() >= DEFAULT_THRESHOLD
    assert sum(s > 0 for s in spike_scores[False]) == len(scored)
    assert sum(s > 0 for s in spike_scores[True]) <= len(scored) - 2
