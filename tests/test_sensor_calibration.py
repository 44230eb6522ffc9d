"""The sensor calibration's warm-up in time, alarm margin, seasonal echoes, routine alarms
and optional slow memory: the compiled kernel against a plain NumPy reference, each
mechanism on synthetic streams, and the detector's warm-up in seasons, echo and routine
suppression."""

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


def _reference(slots, resets, valid, u, extra, apart, times, echo_slot, echo_ref, n_slots, B, W,
               warmup, warmup_time, long_memory, slow_memory, refractory, scale, alarm_margin,
               routine_count, routine_horizon, one_reading, held_back):
    """The calibration written out plainly, one stream dictionary per slot."""
    def fresh():
        return {"buf": [0.0] * W, "n": 0, "m": 0.0, "v": 0.0, "ms": 0.0, "vs": 0.0,
                "m1": 0.0, "v1": 0.0, "record": [0] * 32, "start": math.nan,
                "peak": [0.0, 0.0], "reported": [0.0, 0.0], "alarms": [],
                "echo": np.zeros(B, dtype=np.float32)}

    def tail(value, mean, var):
        return gaussian_tail_decades((value - mean) / max(math.sqrt(var), 0.01))

    def u_band(value):
        return min(int(value / 0.25), 31)

    def band(score):
        return min(int(score * 20), 19)

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
        x = own = 0.0
        if n > warmup:
            own = tail(a, st["m"], st["v"])
            if slow_memory:
                own = min(own, tail(a, st["ms"], st["vs"]))
            if one_reading:
                # The reading alone, no rarer than its record says (events since one as
                # surprising), with the tail probability doubled for the second test.
                record = math.log10(n - st["record"][u_band(u[i])])
                one = min(tail(u[i], st["m1"], st["v1"]), record)
                own = max(own, one - math.log10(2.0))
            own = max(own, extra[i])
            x = max(own, apart[i])
        if n > warmup and not young:
            explained = echo_ref[i] >= 0 and st["echo"][echo_ref[i]] >= x
            evidence = 0.0 if explained else x
            score = evidence / (evidence + scale)
            kind = 0 if own >= apart[i] else 1
            if score > st["peak"][kind] and score > st["reported"][kind] + alarm_margin:
                out[i] = score
                if routine_count and kind == 0 and not math.isnan(times[i]):
                    as_strong = [(t, m) for t, m, b in st["alarms"] if b >= band(score)]
                    if (len(as_strong) >= routine_count
                            and times[i] - as_strong[-routine_count][0] <= routine_horizon):
                        since = n - as_strong[-routine_count][1]
                        rate = math.log10(since / routine_count)
                        out[i] = min(score, rate / (rate + scale))
                    st["alarms"].append((times[i], n, band(score)))
                st["reported"][kind] = score
            else:
                out[i] = held_back * score
            for k, e in enumerate((own, apart[i])):
                e = 0.0 if explained else e
                st["peak"][k] = max(st["peak"][k] - 1.0 / refractory, e / (e + scale))
            st["reported"][0] = max(st["reported"][0] - 1.0 / refractory, 0.0)
            # An episode of apart evidence keeps its reported strength until it ends.
            if not apart[i] > 0:
                st["reported"][1] = 0.0
        if echo_slot[i] >= 0:
            st["echo"][echo_slot[i]] = x
        for mean, var, memory, value in (("m", "v", long_memory, a),
                                         ("ms", "vs", slow_memory, a),
                                         ("m1", "v1", long_memory if one_reading else 0, u[i])):
            if memory:
                alpha = max(1.0 / n, 1.0 / memory)
                d = value - st[mean]
                st[mean] += alpha * d
                st[var] = (1.0 - alpha) * (st[var] + alpha * d * d)
        if one_reading:
            for level in range(u_band(u[i]) + 1):
                st["record"][level] = n
    return out


@pytest.mark.parametrize("slow_memory,alarm_margin,routine_count,one_reading,held_back",
                         [(None, 0.0, 0, False, 0.0), (400, 0.1, 2, False, 0.0),
                          (None, 0.2, 0, True, 0.5), (None, 0.0, 3, True, 0.0),
                          (400, 0.1, 3, True, 0.3)])
def test_kernel_matches_the_plain_reference(slow_memory, alarm_margin, routine_count,
                                            one_reading, held_back):
    rng = np.random.default_rng(0)
    n, n_slots, W, B = 3000, 3, 3, 16
    slots = rng.integers(0, n_slots, n)
    resets = rng.random(n) < 0.002
    valid = rng.random(n) > 0.01
    u = np.log1p(rng.standard_t(3, n) ** 2)
    u[rng.integers(0, n, 20)] += 8.0
    # Evidence from another test, now and then stronger than the surprise's own.
    extra = np.where(rng.random(n) < 0.02, rng.uniform(0.0, 12.0, n), 0.0)
    # ... and evidence that keeps its own refractory record.
    # Episodes of it: runs of growing evidence, as a stuck sensor gives.
    apart = np.zeros(n)
    for begin in rng.integers(0, n - 40, 30):
        apart[begin : begin + 30] = np.linspace(0.5, 15.0, 30)
    times = np.cumsum(rng.uniform(0, 600, n))
    times[rng.random(n) < 0.05] = np.nan
    echo_slot = np.where(rng.random(n) < 0.9, rng.integers(0, B, n), -1)
    echo_ref = np.where(rng.random(n) < 0.5, rng.integers(0, B, n), -1)
    args = dict(warmup=30, warmup_time=20_000.0, long_memory=100, slow_memory=slow_memory,
                refractory=50, scale=5.0, alarm_margin=alarm_margin,
                routine_count=routine_count, routine_horizon=60_000.0,
                one_reading=one_reading, held_back=held_back)
    rows = {name: np.zeros((n_slots, *shape), dtype=dtype)
            for name, (shape, dtype) in calibration_rows(W, routine_count).items()}
    echo = np.zeros((n_slots, B), dtype=np.float32)
    out = np.zeros(n)
    calibrate_many(slots, resets, valid, u, extra, apart, times, echo_slot, echo_ref, echo,
                   *(rows[name] for name in CALIBRATION_ARGS), calibration_settings(**args),
                   out)
    expected = _reference(slots, resets, valid, u, extra, apart, times, echo_slot, echo_ref,
                          n_slots, B, W, **args)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert (out > DEFAULT_THRESHOLD).sum() >= 5  # the comparison covered alarms
    if routine_count:
        without = np.zeros(n)
        rows = {name: np.zeros((n_slots, *shape), dtype=dtype)
                for name, (shape, dtype) in calibration_rows(W, 0).items()}
        calibrate_many(slots, resets, valid, u, extra, apart, times, echo_slot, echo_ref,
                       np.zeros((n_slots, B), dtype=np.float32),
                       *(rows[name] for name in CALIBRATION_ARGS),
                       calibration_settings(**{**args, "routine_count": 0}), without)
        assert (out < without).sum() >= 3  # ... and routine ones


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
        scores = _scores(values, season_echo=echo, routine_count=0)
        spike_scores[echo] = [scores[start : start + 4].max() for start in scored]
        assert scores[incident : incident + 3].max() >= DEFAULT_THRESHOLD
    assert sum(s > 0 for s in spike_scores[False]) == len(scored)
    assert sum(s > 0 for s in spike_scores[True]) <= len(scored) - 2


def _bursty(seed):
    """Surprises of a stream that bursts every 1.7 days or so, at no fixed time of day,
    then meets a far stronger incident on day 29: burst rows and the incident's row."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=288 * 30)
    bursts = np.arange(1000, 288 * 28, 480) + rng.integers(-100, 100, 15)
    for start in bursts:
        z[start : start + 2] = rng.uniform(25.0, 30.0)
    incident = 288 * 29
    z[incident : incident + 3] = 200.0
    return np.abs(z) ** (2.0 / 3.0), bursts, incident


@pytest.mark.parametrize("routine_count,routine_horizon,most_alarms",
                         [(0, 14 * DAY, 15), (4, 14 * DAY, 6), (4, DAY, 15)])
def test_alarms_a_stream_raises_every_few_days_become_routine(routine_count, routine_horizon,
                                                              most_alarms):
    u, bursts, incident = _bursty(seed=5)
    calibrator = SurpriseCalibrator(warmup=300, routine_count=routine_count,
                                    routine_horizon=routine_horizon)
    scores = np.array([calibrator.update(v, t=STEP * i) for i, v in enumerate(u)])
    alarms = [scores[start : start + 3].max() >= DEFAULT_THRESHOLD for start in bursts]
    # The first bursts are news; once four as strong came within the horizon the rest are
    # the stream's routine, scored by its own rate of them: four in the last 2000 readings
    # or so is one in 500, under 3 decades and far under the threshold (a one-day horizon
    # never holds four of them).
    assert all(alarms[:routine_count or None])
    assert routine_count <= sum(alarms) <= most_alarms
    if most_alarms == 15:
        assert all(alarms)
    assert scores[incident : incident + 3].max() >= DEFAULT_THRESHOLD
    routine = [scores[start : start + 3].max() for start, alarm in zip(bursts, alarms,
                                                                         strict=True)
               if not alarm]
    assert all(0.2 < score < 0.4 for score in routine)  # ranked, not erased


def test_alarms_without_times_are_never_routine():
    u, bursts, incident = _bursty(seed=6)
    calibrator = SurpriseCalibrator(warmup=300, routine_count=4)
    scores = np.array([calibrator.update(v) for v in u])
    assert all(scores[start : start + 3].max() >= DEFAULT_THRESHOLD for start in bursts)


def test_echoes_reach_back_into_the_time_warm_up():
    # Two streams with the same time warm-up (1000 events) and a seasonal echo 200 events
    # back. Stream 0 spikes at the same phase of every season; stream 1 only once, just
    # after its warm-up. The spike before stream 0's first scored one came while it was
    # still held back, and still explains it (the same noise every season, the spikes
    # shrinking a little).
    rng = np.random.default_rng(7)
    n, season, W = 1400, 200, 3
    u = np.tile(np.abs(rng.normal(size=season)) ** (2.0 / 3.0), (2, n // season))
    u[0, 50::season] = 30.0 * 0.9 ** np.arange(7)
    u[1, 1050] = 30.0 * 0.9**5
    slots = np.repeat(np.arange(2), n)
    steps = np.tile(np.arange(n), 2)
    rows = {name: np.zeros((2, *shape), dtype=dtype)
            for name, (shape, dtype) in calibration_rows(W, 0).items()}
    out = np.zeros(2 * n)
    calibrate_many(slots, np.zeros(2 * n, dtype=np.bool_), np.ones(2 * n, dtype=np.bool_),
                   u.ravel(), np.zeros(2 * n), np.zeros(2 * n), STEP * steps.astype(np.float64),
                   steps % season,
                   np.where(steps >= season, (steps - season) % season, -1),
                   np.zeros((2, season), dtype=np.float32),
                   *(rows[name] for name in CALIBRATION_ARGS),
                   calibration_settings(warmup=30, long_memory=500, refractory=50, scale=5.0,
                                        warmup_time=1000 * STEP), out)
    spiky, once = out[:n], out[n:]
    assert not spiky[:1000].any() and not once[:1000].any()
    assert once[1050:1053].max() >= DEFAULT_THRESHOLD
    assert spiky[1050:1053].max() == 0.0


@pytest.mark.parametrize("bad", [{"routine_count": -1}, {"routine_count": 1.5},
                                 {"routine_count": True}, {"routine_horizon": 0.0},
                                 {"routine_horizon": math.nan}, {"routine_horizon": "1d"}])
def test_routine_settings_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SurpriseCalibrator(**bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        SensorAnomalyDetector(**bad).learn_one({"value": 1.0})


def test_detector_stops_reporting_the_bursts_a_sensor_makes_every_few_days():
    # Load bursts the networks cannot foresee (every 1.7 days or so, at no fixed time of
    # day), then an outage far outside anything seen before.
    rng = np.random.default_rng(8)
    n = 288 * 20
    values = _daily(n, seed=8)
    bursts = np.arange(3 * 288 + 100, 288 * 18, 480) + rng.integers(-100, 100, 9)
    for start in bursts:
        values[start : start + 6] += 40.0
    outage = 288 * 19
    values[outage : outage + 3] -= 200.0
    alarms = {}
    for routine_count in (0, 4):
        scores = _scores(values, routine_count=routine_count)
        alarms[routine_count] = [scores[start : start + 8].max() >= DEFAULT_THRESHOLD
                                 for start in bursts]
        assert scores[outage : outage + 3].max() >= DEFAULT_THRESHOLD
    assert sum(alarms[0]) >= len(bursts) - 1
    assert sum(alarms[4]) <= sum(alarms[0]) - 3
