"""Stuck-sensor evidence and the one-reading surprise of the sensor detector: the stuck
kernel against a plain reference; a frozen sensor flagged on a key that rarely repeats
itself and not on one that often holds its value, once per run; a one-reading spike
flagged; held-back scores under the refractory rule; batch equals per-event and a state
round trip continues exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_rnn.cells.calibrate import gaussian_tail_decades
from stream_rnn.cells.stuck import STUCK_ARGS, stuck_evidence, stuck_rows, stuck_settings
from stream_rnn.models import SensorAnomalyDetector

STEP = 300.0


def _reference(slots, resets, valid, X, n_slots, memory, min_runs, min_spread):
    """The stuck view written out plainly, one dictionary per stream."""
    def fresh():
        return {"last": None, "run": 0, "lengths": [], "m": 0.0, "v": 0.0, "seen": 0.0,
                "record": [0.0] * 32}

    def band(r):
        return min(int(math.log(r) / 0.25), 31)

    state = [fresh() for _ in range(n_slots)]
    out = np.zeros(len(slots))
    for i, s in enumerate(slots):
        if resets[i]:
            state[s] = fresh()
        st = state[s]
        if not valid[i]:
            continue
        same = st["last"] is not None and bool(np.all(X[i] == st["last"]))
        if same:
            st["run"] += 1
        else:
            if st["run"]:
                r = st["run"]
                st["seen"] += r
                alpha = min(1.0, max(r / st["seen"], r / memory))
                d = math.log(r) - st["m"]
                st["m"] += alpha * d
                st["v"] = (1 - alpha) * (st["v"] + alpha * d * d)
                st["lengths"].append(r)
                for level in range(band(r) + 1):
                    st["record"][level] = st["seen"]
            st["run"] = 1
            st["last"] = X[i].copy()
        if same and len(st["lengths"]) >= min_runs:
            r = st["run"]
            z = (math.log(r) - st["m"]) / max(math.sqrt(st["v"]), min_spread)
            record = math.log10(max(st["seen"] + r - st["record"][band(r)], 1.0))
            out[i] = max(0.0, min(gaussian_tail_decades(z), record) - math.log10(2.0))
    return out


def _run(X, settings, slots=None, resets=None, valid=None, n_slots=1):
    n, D = X.shape
    slots = np.zeros(n, dtype=np.int64) if slots is None else slots
    resets = np.zeros(n, dtype=np.bool_) if resets is None else resets
    valid = np.ones(n, dtype=np.bool_) if valid is None else valid
    rows = {name: np.zeros((n_slots, *shape), dtype=dtype)
            for name, (shape, dtype) in stuck_rows(D).items()}
    out = np.zeros(n)
    stuck_evidence(slots, resets, valid, X, *(rows[name] for name in STUCK_ARGS), settings,
                   out)
    return out


def test_kernel_matches_the_plain_reference():
    rng = np.random.default_rng(0)
    n, n_slots = 6000, 3
    # Coarse two-feature readings: both repeat now and then, together less often; long
    # holds here and there.
    X = np.round(rng.normal(size=(n, 2)) * np.array([1.5, 3.0]))
    for begin in rng.integers(0, n - 200, 25):
        X[begin : begin + rng.integers(5, 150)] = X[begin]
    slots = rng.integers(0, n_slots, n)
    resets = rng.random(n) < 0.001
    valid = rng.random(n) > 0.01
    settings = stuck_settings(memory=400, min_runs=10, min_spread=0.3)
    out = _run(X, settings, slots, resets, valid, n_slots)
    expected = _reference(slots, resets, valid, X, n_slots, 400, 10, 0.3)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert (out > 2.0).sum() >= 10  # the comparison covered strong evidence


def _noisy(n, rng, resolution):
    return np.round((20.0 + rng.normal(size=n)) / resolution) * resolution


def test_a_frozen_reading_is_strong_evidence_only_where_the_sensor_rarely_repeats():
    rng = np.random.default_rng(1)
    n, freeze = 3000, slice(2500, 2560)
    fine = _noisy(n, rng, 0.001)  # never repeats
    fine[freeze] = fine[freeze.start]
    holding = np.repeat(_noisy(n // 30, rng, 0.001), 30)  # holds each value 30 readings
    holding[freeze] = holding[freeze.start]
    settings = stuck_settings()
    strong = _run(fine[:, None], settings)
    held = _run(holding[:, None], settings)
    assert not strong[: freeze.start].any()
    # Ten identical readings are already five decades by the yardstick on a sensor that
    # never repeats (its runs all had length 1: the spread is the floor's), but no run that
    # long in 2511 readings is only that rare: the record caps the evidence.
    assert gaussian_tail_decades(math.log(11) / 0.5) > 5.0
    cap = math.log10(2511) - math.log10(2.0)
    assert strong[freeze.start + 10] == pytest.approx(cap, rel=1e-12)
    assert strong[freeze.stop - 1] == pytest.approx(math.log10(2560 / 2.0), rel=1e-12)
    # Sixty readings of a key that holds its values for thirty: about a decade, hardly news.
    assert held[freeze].max() < 1.5


def test_a_flat_line_without_a_history_of_runs_is_not_evidence():
    assert not _run(np.full((2000, 1), 3.0), stuck_settings()).any()


@pytest.mark.parametrize("bad", [dict(memory=0), dict(min_runs=0), dict(min_spread=0.0)])
def test_stuck_settings_are_checked(bad):
    with pytest.raises(ValueError, match="stuck"):
        stuck_settings(**bad)


def _plant_like(n, rng, resolution, period=288):
    """A daily cycle with noise at the instrument's resolution, one reading per 5 min."""
    t = STEP * np.arange(n)
    x = 50.0 + 5.0 * np.sin(2 * np.pi * np.arange(n) / period) + rng.normal(size=n) * 0.4
    return t, np.round(x / resolution) * resolution


def _scores(t, x, **params):
    detector = SensorAnomalyDetector(hidden_size=8, n_members=1, season=None, warmup=200,
                                     seed=0, **params)
    detector.learn_one({"v": float(x[0])}, t=float(t[0]))
    return np.concatenate([[0.0], detector.score_learn_many(x[1:, None], times=t[1:])])


def test_detector_flags_a_stuck_sensor_once_and_only_with_the_stuck_view():
    rng = np.random.default_rng(2)
    t, x = _plant_like(1600, rng, 0.01)
    x[1300:1400] = x[1300]
    with_view = _scores(t, x)
    without = _scores(t, x, stuck=False)
    run = with_view[1300:1400]
    # The forecaster soon takes the frozen value for the new normal; the stuck view
    # reaches what the key's record of 1300 readings allows, log10(1300 / 2) decades.
    assert without[1300:1400].max() < 0.05
    record = math.log10(1300 / 2.0)
    assert run.max() == pytest.approx(record / (record + 5.0), abs=0.02)
    # Reported as it grows, once at full strength; the rest of the run held back at 0.4 of
    # its score.
    assert (run > 0.3).sum() == 1
    assert (run[10:] > 0.12).all()


def test_detector_does_not_flag_a_key_that_holds_its_values():
    rng = np.random.default_rng(3)
    n = 1600
    lengths = rng.integers(1, 120, n)
    values = rng.normal(size=n).round(2)
    x = np.repeat(values, lengths)[:n]
    t = STEP * np.arange(n)
    # The longest hold after the warm-up, as long as the key's long ones.
    start = 1300
    x[start : start + 110] = x[start]
    scores = _scores(t, x)
    without = _scores(t, x, stuck=False)
    assert scores[start : start + 110].max() < 0.15
    assert without[start : start + 110].max() < 0.05


def test_a_one_reading_spike_is_flagged_by_the_one_reading_surprise():
    rng = np.random.default_rng(4)
    t, x = _plant_like(2000, rng, 0.01)
    x[1800] -= 2.0  # five times the noise, for one reading
    with_one = _scores(t, x, one_reading=True)
    without = _scores(t, x)
    # The three-reading mean dilutes the spike: it never reaches 0.3 and hardly registers
    # at the spike itself. Alone, the reading is as surprising as anything in the key's
    # record: 0.3 at once (and no more than its record of 1800 readings allows).
    assert without[1800] < 0.1 and without[1800:1803].max() < 0.3
    assert 0.3 < with_one[1800] < np.log10(1800) / (np.log10(1800) + 5.0)
    assert with_one[1800] > without[1800:1803].max() + 0.05


def test_held_back_scores_keep_an_ongoing_incident_visible_below_the_threshold():
    rng = np.random.default_rng(5)
    t, x = _plant_like(1600, rng, 0.01)
    x[1300:1340] += np.linspace(3.0, 12.0, 40)
    held = _scores(t, x, stuck=False)
    silent = _scores(t, x, stuck=False, held_back=0.0)
    reported = silent > 0
    np.testing.assert_allclose(held[reported], silent[reported], rtol=1e-12)
    assert silent[1300:1340].max() > 0.5
    # What the refractory rule silenced shows at 0.4 of its score, never reaching 0.5.
    assert (held[1300:1340][~reported[1300:1340]] > 0.1).sum() >= 10
    assert held[~reported].max() < 0.5


def test_detector_batch_equals_per_event_and_a_state_round_trip_continues_exactly():
    rng = np.random.default_rng(6)
    t, x = _plant_like(1200, rng, 0.01)
    x[900:960] = x[900]
    x[600] += 2.0
    batch = _scores(t, x, one_reading=True)
    detector = SensorAnomalyDetector(hidden_size=8, n_members=1, season=None, warmup=200,
                                     seed=0, one_reading=True)
    one = []
    for i, (ti, xi) in enumerate(zip(t, x, strict=True)):
        if i == 700:
            detector = SensorAnomalyDetector.from_state(*detector.export_state())
        before = detector.score_one({"v": float(xi)}, t=float(ti))
        one.append(detector.score_learn_one({"v": float(xi)}, t=float(ti)))
        assert before == one[-1]
    np.testing.assert_allclose(one, batch, rtol=1e-12, atol=1e-12)
    # Both new views took part: the stuck run and the one-reading spike.
    assert max(one[900:960]) > 0.3 and one[600] > 0.2


@pytest.mark.parametrize("bad,message", [
    (dict(held_back=1.0), "held_back must be a number in \\[0, 1\\)"),
    (dict(held_back=True), "held_back must be a number in \\[0, 1\\)"),
    (dict(one_reading="yes"), "one_reading must be true or false"),
    (dict(stuck=1), "stuck must be true or false"),
])
def test_detector_rejects_bad_settings(bad, message):
    detector = SensorAnomalyDetector(**bad)
    with pytest.raises(ValueError, match=message):
        detector.learn_one({"v": 1.0})
