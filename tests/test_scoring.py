"""Calibrated sensor scores: range, strict onlineness, scale invariance, warm-up, flag
rates on streams without anomalies, and detection on a labelled synthetic plant."""

from __future__ import annotations

import csv
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from river.checks import common

from stream_rnn.evaluation.metrics import roc_auc
from stream_rnn.models import SensorAnomalyDetector
from stream_rnn.scoring import (
    DEFAULT_THRESHOLD,
    ScoreThreshold,
    SurpriseCalibrator,
    flag_rate,
    flags,
)
from stream_rnn.synth.plant import plant_events

NAB = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"
STEP = 300.0  # seconds between readings of the synthetic streams
# Short synthetic streams: a short warm-up, in readings and in days.
SMALL = {"hidden_size": 8, "n_members": 2, "warmup": 100, "warmup_seasons": 1.0,
         "season_buffer": 512}


def _run(values, times=None, **params):
    """Scores of a univariate stream through the batch path (first row via learn_one)."""
    values = np.asarray(values, dtype=np.float64)
    times = STEP * np.arange(len(values)) if times is None else np.asarray(times)
    detector = SensorAnomalyDetector(**{**SMALL, **params})
    detector.learn_one({"value": values[0]}, t=times[0])
    return np.r_[0.0, detector.score_learn_many(values[1:, None], times=times[1:])]


def _daily(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, n)


# --------------------------------------------------------------------------- calibrator


def test_calibrator_warmup_scores_zero_then_flags_a_gross_surprise():
    calibrator = SurpriseCalibrator(warmup=50, refractory=0)
    rng = np.random.default_rng(1)
    scores = [calibrator.update(math.log1p(v * v)) for v in rng.normal(size=600)]
    assert scores[:50] == [0.0] * 50
    assert calibrator.n_seen == 600
    assert calibrator.update(math.log1p(40.0**2)) > DEFAULT_THRESHOLD


def test_calibrator_spikes_once_during_a_sustained_incident():
    calibrator = SurpriseCalibrator(short_window=1, warmup=50, refractory=100)
    rng = np.random.default_rng(2)
    for v in rng.normal(size=500):
        calibrator.update(math.log1p(v * v))
    incident = [calibrator.update(math.log1p(30.0**2)) for _ in range(20)]
    assert incident[0] > DEFAULT_THRESHOLD
    assert sum(s >= DEFAULT_THRESHOLD for s in incident) == 1


@pytest.mark.parametrize("bad", [{"short_window": 0}, {"long_memory": 0}, {"warmup": -1},
                                 {"refractory": -1}, {"scale": 0.0}])
def test_calibrator_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        SurpriseCalibrator(**bad)


# --------------------------------------------------------------------------- detector


def test_scores_are_in_unit_interval_including_wild_readings():
    values = _daily(2000)
    values[[700, 1200, 1201, 1500]] = [1e6, -1e6, 0.0, 3e3]
    scores = _run(values)
    assert np.isfinite(scores).all()
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert scores[700] > DEFAULT_THRESHOLD


def test_score_at_t_ignores_the_future():
    values = _daily(1400, seed=3)
    extended = np.r_[values, values[:300] * 5 + 100]  # wildly different future readings
    first = _run(values)
    again = _run(extended)
    np.testing.assert_array_equal(again[: len(values)], first)


def test_one_event_path_matches_the_batch_path():
    values = _daily(500, seed=4)
    values[450:453] += 30
    batch = _run(values, warmup=50)
    detector = SensorAnomalyDetector(**{**SMALL, "warmup": 50})
    single = []
    for i, v in enumerate(values):
        before = pickle.dumps(detector)
        score = detector.score_one({"value": v}, t=STEP * i)
        assert pickle.dumps(detector) == before  # scoring moves nothing
        detector.learn_one({"value": v}, t=STEP * i)
        single.append(score)
    np.testing.assert_allclose(single, batch, rtol=1e-6, atol=1e-9)
    assert batch[450:453].max() >= DEFAULT_THRESHOLD


@pytest.mark.parametrize("scale", [2.0**10, 2.0**-7])
def test_scores_do_not_depend_on_units_exactly_for_power_of_two_scales(scale):
    # Per-key standardization: a power-of-two scale changes no rounding anywhere, so the
    # networks see bit-identical inputs.
    values = _daily(1200, seed=5)
    np.testing.assert_array_equal(_run(values * scale), _run(values))


@pytest.mark.parametrize("scale,offset", [(1000.0, -7.0), (0.001, 1e4)])
def test_scores_are_comparable_across_units_and_offsets(scale, offset):
    # Other scales and offsets change the last bits of the standardized readings; online
    # learning amplifies them on single readings, but the scores stay the same in effect.
    values = _daily(1200, seed=5)
    values[1000:1003] += 25
    base, moved = _run(values), _run(values * scale + offset)
    assert np.mean(np.abs(moved - base)) < 0.02
    for scores in (base, moved):
        assert scores[1000:1003].max() >= DEFAULT_THRESHOLD
        assert flag_rate(scores[:990]) < 0.005


def test_warmup_scores_zero_and_first_reading_never_scores():
    values = _daily(600, seed=6)
    values[50] += 100  # a gross outlier inside the warm-up
    scores = _run(values, warmup=200)
    assert not scores[:201].any()
    detector = SensorAnomalyDetector(**SMALL)
    assert detector.score_one({"value": 1.0}) == 0.0  # before any learning


def test_each_key_is_judged_against_its_own_history():
    # Keys share weights but not statistics: a sensor a hundred times noisier than another
    # does not mask the other's incident, nor get flagged for its own noise.
    rng = np.random.default_rng(7)
    n = 1500
    quiet, noisy = _daily(n, seed=7), _daily(n, seed=8) + rng.normal(0, 100, n)
    quiet[1300:1303] += 40
    detector = SensorAnomalyDetector(**SMALL)
    X = np.empty((2 * n, 1))
    X[0::2, 0], X[1::2, 0] = quiet, noisy
    keys = ["quiet", "noisy"] * n
    times = np.repeat(STEP * np.arange(n), 2)
    detector.learn_one({"value": X[0, 0]}, key=keys[0], t=times[0])
    scores = np.r_[0.0, detector.score_learn_many(X[1:], keys=keys[1:], times=times[1:])]
    assert detector.n_keys == 2
    assert scores[2 * 1300 : 2 * 1303 : 2].max() >= DEFAULT_THRESHOLD
    assert flag_rate(scores[1::2]) < 0.005


def test_multivariate_stream():
    rng = np.random.default_rng(9)
    n = 1500
    X = np.column_stack([_daily(n, seed=9), rng.normal(0, 5, n) + 100])
    X[1300:1303, 1] += 200  # one channel only
    detector = SensorAnomalyDetector(**SMALL)
    detector.learn_one({"a": X[0, 0], "b": X[0, 1]}, t=0.0)
    scores = detector.score_learn_many(X[1:], times=STEP * np.arange(1, n))
    assert scores[1299:1302].max() >= DEFAULT_THRESHOLD
    assert flag_rate(scores[:1290]) < 0.01


def test_flag_rate_on_pure_noise_is_well_under_one_percent():
    rng = np.random.default_rng(10)
    for values in (rng.normal(0, 1, 5000), np.exp(rng.normal(0, 1, 5000))):
        scores = _run(values)
        assert flag_rate(scores) < 0.005


@pytest.mark.parametrize("name", ["art_noisy.csv", "art_daily_small_noise.csv",
                                  "art_flatline.csv"])
def test_flag_rate_on_nab_files_without_anomalies(name):
    with (NAB / "data" / "artificialNoAnomaly" / name).open() as handle:
        rows = list(csv.DictReader(handle))
    values = np.array([float(r["value"]) for r in rows])
    times = np.array([r["timestamp"] for r in rows], dtype="datetime64[s]")
    scores = _run(values, times=times, hidden_size=32, n_members=3, warmup=300,
                  season_buffer=2048)
    assert flag_rate(scores) < 0.005


def test_labelled_plant_reaches_the_stated_auc():
    # Incidents are judged by the strongest score over each incident (spike once means
    # later readings of an incident stay quiet) against every quiet reading.
    events, incidents = plant_events(n_sensors=4, n_steps=2016, seed=0)
    detector = SensorAnomalyDetector(**{**SMALL, "n_members": 3})
    first = events[0]
    detector.learn_one(first["features"], key=first["key"], t=first["ts"])
    rest = events[1:]
    X = np.array([[e["features"]["value"]] for e in rest])
    scores = np.r_[0.0, detector.score_learn_many(
        X, keys=[e["key"] for e in rest], times=[e["ts"] for e in rest])]
    keys = np.array([e["key"] for e in events])
    times = np.array([e["ts"] for e in events])
    labels = np.array([e["label"] for e in events])
    incident_scores = []
    for inc in incidents:
        for key in inc.keys:
            rows = np.flatnonzero((keys == key) & (times >= inc.start) & (times <= inc.end))
            incident_scores.append(scores[rows].max())
    quiet = scores[labels == 0]
    auc = roc_auc(np.r_[np.ones(len(incident_scores)), np.zeros(len(quiet))],
                  np.r_[incident_scores, quiet])
    assert auc >= 0.8


# --------------------------------------------------------------------------- thresholds


def test_flags_and_threshold_filter():
    assert flags([0.1, 0.5, 0.9]).tolist() == [False, True, True]
    assert flag_rate([]) == 0.0
    with pytest.raises(ValueError):
        flags([0.1], threshold=1.5)
    model = ScoreThreshold(SensorAnomalyDetector(**SMALL), threshold=0.6)
    assert model.classify(0.6) and not model.classify(0.59)
    model.learn_one({"value": 1.0}, key="k", t=0.0)
    assert model.anomaly_detector.n_keys == 1


# --------------------------------------------------------------------------- River citizen


@pytest.mark.parametrize("check", [common.check_learn_one, common.check_pickling,
                                   common.check_predict_one_pure,
                                   common.check_predict_one_before_any_learn,
                                   common.check_clone_is_independent,
                                   common.check_seeding_is_idempotent],
                         ids=lambda c: c.__name__)
def test_river_checks(check):
    rng = np.random.default_rng(11)
    data = [({"a": float(v), "b": float(w)}, 0) for v, w in rng.normal(size=(60, 2))]
    for params in SensorAnomalyDetector._unit_test_params():
        check(SensorAnomalyDetector(**params), data)


def test_bad_settings_are_rejected_on_first_event():
    for bad in ({"n_members": 0}, {"season": -1.0}, {"season_buffer": 0}, {"warmup": -1}):
        with pytest.raises(ValueError):
            SensorAnomalyDetector(**bad).learn_one({"value": 1.0})
