"""The task models behind ``stream-rnn serve``: sensor, forecast and fraud.

Every task: strictly online (an event's output does not depend on what follows it),
predictions made before learning, checkpoints that resume exactly (through the npz
format, never pickle), reasons for events it cannot take, non-finite detection. Then
what is particular to each: sensor and forecast predictions equal the models' own
forecasts called just before each event, fraud labels revealed late change only later
scores and are never read from the events.
"""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError

import numpy as np
import numpy.testing as npt
import pytest
from prometheus_client import CollectorRegistry
from test_fraud import synthetic_stream

from stream_rnn.config import ConfigError, load
from stream_rnn.daemon import Runner
from stream_rnn.io.events import Event, parse_timestamp
from stream_rnn.io.memory import MemorySink, MemorySource
from stream_rnn.metrics import Metrics
from stream_rnn.models import FraudDetector, RNNAnomalyDetector, RNNForecaster
from stream_rnn.state.checkpoint import read_checkpoint, write_checkpoint
from stream_rnn.tasks import (
    TASKS,
    Scored,
    UnknownFeature,
    _scored_many,
    check_params,
    make_task,
)

NET = {"hidden_size": 4, "window": 4, "update_every": 2, "seed": 1}
PARAMS = {
    "sensor": dict(NET),
    "forecast": {**NET, "params": {"target": "demand"}},
    "fraud": {**NET, "params": {"head_hidden": 4, "cold_start": 2.0, "max_pending": 3000}},
}
KEY_FIELDS = {"sensor": ("key",), "forecast": ("key",), "fraud": ("key", "terminal")}


def sensor_events(n=240, sensors=4, seed=0):
    rng = np.random.default_rng(seed)
    return [Event(1.7e9 + 60 * t, (f"s{s}",),
                  {"temp": 20 + s + 3 * math.sin(t / 7 + s) + 0.2 * rng.normal(),
                   "rpm": 1000 * (s + 1) + 10 * rng.normal()}, None, None, f"in:0:{t}")
            for t in range(n // sensors) for s in range(sensors)]


def forecast_events(n=240, regions=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n // regions):
        hour = t % 24
        for r in range(regions):
            demand = 100 * (r + 1) * (1.3 + math.sin(2 * math.pi * hour / 24)) + rng.normal()
            out.append(Event(1.7e9 + 3600 * t, (f"r{r}",),
                             {"demand": demand, "hour_sin": math.sin(2 * math.pi * hour / 24)},
                             None, None, f"in:0:{t}"))
    return out


def fraud_events(n_days=3, per_day=200, seed=1):
    out = []
    for i, tx in enumerate(synthetic_stream(n_days=n_days, n_cards=40, n_terminals=30,
                                            per_day=per_day, seed=seed)):
        out.append(Event(parse_timestamp(tx["ts"]), (tx["key"], tx["terminal"]),
                         dict(tx["features"]), tx["label"], str(tx["tx_id"]), f"in:0:{i}"))
    return out


EVENTS = {"sensor": sensor_events, "forecast": forecast_events, "fraud": fraud_events}


def _task(kind):
    return make_task(kind, PARAMS[kind], 1000, key_fields=KEY_FIELDS[kind])


def _run(task, events, batch=50):
    out = []
    for i in range(0, len(events), batch):
        out.extend(task.process(events[i:i + batch]))
    return out


def _same(a: list[Scored], b: list[Scored]):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x == y


def test_the_three_tasks_are_registered():
    assert set(TASKS) == {"sensor", "fraud", "forecast"}
    with pytest.raises(ValueError, match="unknown task"):
        make_task("weather", {}, 10)


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_an_event_output_does_not_depend_on_later_events(kind):
    events = EVENTS[kind]()
    cut = len(events) // 2
    alone = _run(_task(kind), events[:cut])
    followed = _task(kind).process(events)  # one batch: later events in the same call
    _same(alone, followed[:cut])
    assert all(0.0 <= s.score <= 1.0 for s in followed)


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_checkpoint_round_trip_resumes_exactly(kind, tmp_path):
    events = EVENTS[kind]()
    cut = len(events) // 2
    original = _task(kind)
    _run(original, events[:cut])
    if kind == "fraud":
        for e in events[:cut:3]:
            original.apply_label(e.event_id, e.label)
    meta, arrays = original.export_state()
    write_checkpoint(tmp_path, "p0", {"model": meta}, arrays)  # npz, allow_pickle=False
    manifest, loaded = read_checkpoint(tmp_path, "p0")
    restored = TASKS[kind].from_state(manifest["model"], loaded, PARAMS[kind], 1000,
                                      KEY_FIELDS[kind])
    _same(_run(original, events[cut:]), _run(restored, events[cut:]))
    assert original.stats() == restored.stats()
    if kind == "fraud":
        # Transactions still waiting for their label stay waiting across the restart.
        late = events[cut + 1]
        assert original.apply_label(late.event_id, 1) and restored.apply_label(late.event_id, 1)
        _same(original.process(events[:20]), restored.process(events[:20]))


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_stats_non_finite_detection_and_warm_start(kind):
    task = _task(kind)
    _run(task, EVENTS[kind]()[:120])
    stats = task.stats()
    for name in ("keys", "evictions", "version", "skipped", "loss", "grad_norm"):
        assert isinstance(stats[name], int | float), name
    assert stats["keys"] > 0 and stats["version"] > 0
    assert task.is_finite()
    task.forget_keys()
    assert task.stats()["keys"] == 0
    if kind == "sensor":
        task.detector._net.theta[0] = np.nan
    elif kind == "forecast":
        task.models[0]._net.theta[0] = np.inf
    else:
        task.detector._theta[0] = np.nan
    assert not task.is_finite()


@pytest.mark.parametrize("kind", ["sensor", "forecast", "fraud"])
def test_finiteness_covers_the_optimizer_state(kind):
    # Finite weights with a broken Adam moment would break the next update: the task must
    # roll back now, not after that update.
    task = _task(kind)
    _run(task, EVENTS[kind]()[:120])
    net = {"sensor": lambda: task.detector._net,
           "forecast": lambda: task.models[0]._net,
           "fraud": lambda: next(n for n in task.detector._nets if n is not None)}[kind]()
    assert task.is_finite()
    net.opt[1, 0] = np.inf
    assert np.isfinite(net.theta).all() and not task.is_finite()


def test_sensor_reads_features_in_any_order_and_missing_ones_as_zero():
    events = sensor_events(n=160)
    # The same readings with the features listed in the other order, and some without
    # "rpm" at all (it reads 0): both paths that build the input matrix.
    shuffled = [Event(e.ts, e.keys, dict(reversed(list(e.features.items()))), None, None,
                      e.src) for e in events]
    some_missing = [Event(e.ts, e.keys, {"temp": e.features["temp"]} if i % 7 == 3
                          else e.features, None, None, e.src) for i, e in enumerate(events)]
    as_zero = [Event(e.ts, e.keys, {"temp": e.features["temp"], "rpm": 0.0} if i % 7 == 3
                     else e.features, None, None, e.src) for i, e in enumerate(events)]
    _same(_run(_task("sensor"), events), _run(_task("sensor"), shuffled))
    _same(_run(_task("sensor"), some_missing), _run(_task("sensor"), as_zero))
    task = _task("sensor")
    _run(task, events)
    odd = Event(events[0].ts, ("s0",), {"temp": 1.0, "rpm": 2.0, "vibration": 3.0}, None,
                None, "")
    with pytest.raises(UnknownFeature, match="vibration"):
        task.process([odd])


def test_sensor_finiteness_check_covers_the_keys_each_batch_touched():
    task = make_task("sensor", PARAMS["sensor"], 5000)
    events = sensor_events(n=800, sensors=200)  # 200 keys: a check gathers their rows
    _run(task, events)
    assert task.is_finite()  # the first check scans every row
    batch = events[:3]  # s0, s1, s2
    task.process(batch)
    slot = task.detector._store.get("s1")
    task.detector._store.arrays["last"][slot] = np.nan  # as if the batch had broken it
    assert not task.is_finite()
    assert not task.is_finite()  # and it stays broken until the rows are fixed
    task.detector._store.arrays["last"][slot] = 0.0
    assert task.is_finite()
    # A model restored from a checkpoint is checked whole at first.
    meta, arrays = task.export_state()
    arrays = dict(arrays)
    arrays["store/last"] = arrays["store/last"].copy()
    arrays["store/last"][150] = np.inf
    restored = type(task).from_state(meta, arrays, PARAMS["sensor"], 5000)
    assert not restored.is_finite()


def test_checks_give_reasons():
    sensor = _task("sensor")
    first = sensor_events()[0]
    assert sensor.check(first) is None
    odd = Event(first.ts, first.keys, {**first.features, "vibration": 1.0}, None, None, "")
    problem = sensor.check(odd)
    assert "vibration" in problem and problem.reason == "unknown_feature"

    forecast = _task("forecast")
    event = forecast_events()[0]
    assert forecast.check(event) is None
    no_target = Event(event.ts, event.keys, {"hour_sin": 0.5}, None, None, "")
    problem = forecast.check(no_target)
    assert "demand" in problem and problem.reason == "missing_field"
    assert forecast.check(Event(event.ts, event.keys, {**event.features, "x": 1.0}, None,
                                None, "")).reason == "unknown_feature"
    logged = make_task("forecast", {**NET, "params": {"target": "demand", "log": True}}, 10)
    negative = Event(event.ts, event.keys, {"demand": -1.0}, None, None, "")
    assert logged.check(negative).reason == "bad_features"

    fraud = _task("fraud")
    tx = fraud_events(n_days=1, per_day=5)[0]
    assert fraud.check(tx) is None
    assert fraud.check(Event(tx.ts, tx.keys, {"fee": 1.0}, None, "1", "")).reason == (
        "missing_field")
    assert fraud.check(Event(tx.ts, tx.keys, {"amount": -5.0}, None, "1", "")).reason == (
        "bad_features")


@pytest.mark.parametrize("kind,params,message", [
    ("forecast", {"params": {"season": "daily"}}, "model.params.season: expected an integer"),
    ("forecast", {"params": {"seasonal_diff": 1}}, "season"),
    ("sensor", {"params": {"target": "x"}}, "not a parameter of the sensor task"),
    ("sensor", {"params": {"hidden_size": 8}}, "set it as model.hidden_size"),
    ("fraud", {"params": {"prior": 2.0}}, "prior"),
    ("fraud", {"params": {"windows_days": "week"}}, "list of numbers"),
    ("fraud", {"num_layers": 2}, "model.num_layers does not apply to the fraud task"),
    ("weather", {}, "unknown task"),
])
def test_bad_parameters_name_what_is_wrong(kind, params, message):
    with pytest.raises(ValueError, match=message):
        check_params(kind, params, ("key", "terminal"))


# --------------------------------------------------------------------------- sensor


def test_batch_forecasts_equal_forecast_one_before_each_reading():
    rng = np.random.default_rng(3)
    n = 300
    X = np.column_stack([20 + np.sin(np.arange(n) / 5) + rng.normal(0, 0.1, n),
                         900 + rng.normal(0, 5, n)])
    # Six keys through three slots: keys take slots afresh mid-batch (evictions).
    keys = [f"k{i % 6}" if i < 150 else f"k{i % 2}" for i in range(n)]

    def model():
        m = RNNAnomalyDetector(hidden_size=4, window=4, update_every=2, seed=1, max_keys=3)
        m.learn_one({"a": X[0, 0], "b": X[0, 1]}, key=keys[0])
        return m

    loop, batch = model(), model()
    expected_mean = np.full((n - 1, 2), np.nan)
    expected_std = np.full((n - 1, 2), np.nan)
    for i in range(1, n):
        for name, (mean, std) in loop.forecast_one(keys[i]).items():
            k = loop._features[name]
            expected_mean[i - 1, k], expected_std[i - 1, k] = mean, std
        loop.learn_one({"a": X[i, 0], "b": X[i, 1]}, key=keys[i])
    scores, means, stds = batch.score_learn_many(X[1:], keys[1:], return_forecast=True)
    npt.assert_allclose(means, expected_mean, rtol=1e-12)
    npt.assert_allclose(stds, expected_std, rtol=1e-12)
    assert np.isnan(means).any() and not np.isnan(means).all()
    # Asking for forecasts changes nothing else.
    npt.assert_array_equal(scores, model().score_learn_many(X[1:], keys[1:]))


def test_batch_scaling_that_records_its_scale_prepares_the_same_as_without():
    from stream_rnn.cells.scaling import location_scale, prepare_autoregressive
    from stream_rnn.models.anomaly import _prepare_recording_scale

    rng = np.random.default_rng(8)
    n, D, K = 400, 3, 16
    slots = rng.integers(0, K, n).astype(np.int64)
    resets = rng.random(n) < 0.05
    X = rng.normal(3.0, 2.0, (n, D))
    X[rng.random(n) < 0.1] = 7.0  # flat stretches: the variance floor
    start = [rng.normal(size=(K, D)), rng.random((K, D)), rng.integers(0, 4, K),
             rng.normal(size=(K, D))]
    results = []
    for record in (False, True):
        state = [a.copy() for a in start]
        U, Y = np.empty((n, D), np.float32), np.empty((n, D), np.float32)
        valid = np.empty(n, np.bool_)
        loc, scale = np.empty((n, D)), np.empty((n, D))
        if record:
            _prepare_recording_scale(slots, resets, X, *state, 5.0, 50, U, Y, valid, loc, scale)
        else:
            mean, var, count, _ = state
            for i in range(n):  # the scale of each row, read before the row is prepared
                for k in range(D):
                    loc[i, k], scale[i, k] = (0.0, 1.0) if resets[i] else location_scale(
                        mean, var, count, slots[i], k)
                prepare_autoregressive(slots[i:i + 1], resets[i:i + 1], X[i:i + 1], *state,
                                       5.0, 50, U[i:i + 1], Y[i:i + 1], valid[i:i + 1])
        results.append([*state, U, Y, valid, loc, scale])
    for plain, recorded in zip(*results, strict=True):
        npt.assert_array_equal(recorded, plain)
    assert results[1][6].any() and not results[1][6].all()


def test_sensor_prediction_is_the_forecast_made_before_the_reading():
    # The network forecasts each key's step from its previous reading: the prediction is
    # that reading plus the forecast step, the spread the forecast's standard deviation
    # recalibrated by the key's long-run residual spread, both as they stood before.
    events = sensor_events(n=160)
    task, reference = _task("sensor"), _task("sensor")
    out = _run(task, events, batch=25)
    seen: dict[str, int] = {}
    for event, scored in zip(events, out, strict=True):
        key = event.keys[0]
        if seen.get(key, 0) < 2:
            assert scored.prediction == {} and scored.spread == {} and scored.score == 0.0
        else:
            step = reference.detector.forecast_one(key)
            store = reference._store
            row = store.get(key)
            last = store.arrays["last"][row]
            z2_mean = store.arrays["z2_mean"][row]
            calibrated = store.arrays["u_count"][row] > 0
            assert set(scored.prediction) == {"temp", "rpm"} == set(scored.spread)
            assert scored.prediction == reference.forecast(key)
            for name, (mean, std) in step.items():
                k = reference._features[name]
                assert scored.prediction[name] == pytest.approx(last[k] + mean, rel=1e-12)
                factor = math.sqrt(max(z2_mean[k], 1e-6)) if calibrated else 1.0
                assert scored.spread[name] == pytest.approx(std * factor, rel=1e-12)
        seen[key] = seen.get(key, 0) + 1
        reference.process([event])


# --------------------------------------------------------------------------- forecast


def test_forecast_task_runs_the_smoothed_es_rnn_forecaster_and_checkpoints_it(tmp_path):
    params = {**NET, "params": {"target": "demand", "season": 24, "level_smoothing": 0.3,
                                "season_smoothing": 0.5, "zero_head": True}}
    events = forecast_events(n=600)
    task = make_task("forecast", params, 1000)
    cut = 450
    first = _run(task, events[:cut], batch=40)
    model = task.models[0]
    assert model.level_smoothing == 0.3 and model.season_smoothing == 0.5
    # After its first day each region is forecast from its smoothed level and season: the
    # daily cycle (amplitude 100-300, noise 1) is followed closely (about 1.1; the default
    # forecaster, with no season, is off by about 47).
    later = [abs(s.prediction["demand"] - e.features["demand"])
             for e, s in zip(events[3 * 48:cut], first[3 * 48:cut], strict=True)]
    assert np.mean(later) < 5.0
    meta, arrays = task.export_state()
    write_checkpoint(tmp_path, "p0", {"model": meta}, arrays)
    manifest, loaded = read_checkpoint(tmp_path, "p0")
    restored = TASKS["forecast"].from_state(manifest["model"], loaded, params, 1000, ("key",))
    _same(_run(task, events[cut:]), _run(restored, events[cut:]))


@pytest.mark.parametrize("params,message", [
    ({"level_smoothing": 1.5}, "level_smoothing must be None or in"),
    ({"level_smoothing": 0.3, "season": 24, "season_smoothing": -0.1}, "season_smoothing"),
    ({"level_smoothing": 0.3, "diff": 1}, "cannot be combined with diff"),
    ({"level_smoothing": "fast"}, "model.params.level_smoothing: expected a number"),
])
def test_forecast_task_refuses_bad_smoothing(params, message):
    with pytest.raises(ValueError, match=message):
        check_params("forecast", {"params": {"target": "demand", **params}})


def test_forecast_prediction_spread_and_score():
    events = forecast_events(n=360)
    task = _task("forecast")
    out = _run(task, events, batch=40)
    reference = RNNForecaster(max_keys=1000, **NET)
    errors: dict[str, list[float]] = {}
    for event, scored in zip(events, out, strict=True):
        key = event.keys[0]
        y = event.features["demand"]
        covariates = {"hour_sin": event.features["hour_sin"]}
        if key not in errors:
            assert scored.prediction == {} and scored.score == 0.0
            errors[key] = []
        else:
            mean = reference.forecast(1, [covariates], key=key)[0]
            assert scored.prediction == {"demand": pytest.approx(mean, rel=1e-12)}
            past = errors[key]
            if past:
                # Below spread_memory errors the spread is their root mean square.
                std = math.sqrt(sum(e * e for e in past) / len(past))
                assert scored.spread["demand"] == pytest.approx(std, rel=1e-9)
                assert scored.score == pytest.approx(math.erf(abs(y - mean) / std / 2**0.5),
                                                     abs=1e-12)
            else:
                assert scored.spread == {} and scored.score == 0.0
            past.append(y - mean)
        reference.learn_one(y, covariates, key=key)
    # Roughly calibrated: scores of ordinary values spread around the middle.
    assert 0.2 < np.mean([s.score for s in out[-120:]]) < 0.8


def test_forecast_without_target_forecasts_every_feature():
    task = make_task("forecast", NET, 100)
    events = sensor_events(n=80)
    out = _run(task, events)
    assert task.targets == ["rpm", "temp"]
    assert set(out[-1].prediction) == {"rpm", "temp"} == set(out[-1].spread)


# --------------------------------------------------------------------------- fraud


def test_fraud_output_is_the_probability_and_labels_are_never_read():
    events = fraud_events()
    task = _task("fraud")
    out = _run(task, events)
    for scored in out:
        assert scored.prediction == {"fraud_probability": scored.score} and scored.spread == {}
    flipped = [Event(e.ts, e.keys, e.features, 1 - e.label, e.event_id, e.src)
               for e in events]
    _same(out, _run(_task("fraud"), flipped))
    assert task.stats()["keys"] == sum(task.detector.n_keys.values())


def test_late_labels_change_later_scores_only():
    events = fraud_events(n_days=4)
    cut = len(events) // 2
    informed, blind = _task("fraud"), _task("fraud")
    before_informed = _run(informed, events[:cut])
    before_blind = _run(blind, events[:cut])
    applied = sum(informed.apply_label(e.event_id, e.label) for e in events[:cut])
    assert applied == cut
    # Already emitted outputs are what they were; the labels only reach later events.
    _same(before_informed, before_blind)
    after_informed = _run(informed, events[cut:])
    after_blind = _run(blind, events[cut:])
    assert any(a.score != b.score for a, b in zip(after_informed, after_blind, strict=True))
    # A label is applied once, and only to a transaction waiting for it.
    assert not informed.apply_label(events[0].event_id, 1)
    assert not informed.apply_label("no-such-id", 1)
    assert not _task("sensor").apply_label("1", 1)
    assert not _task("forecast").apply_label("1", 1)


def test_fraud_detector_state_round_trip_continues_bit_for_bit(tmp_path):
    stream = synthetic_stream(n_days=4, n_cards=60, n_terminals=40, per_day=300, seed=2)
    for tx in stream:
        del tx["label"], tx["scenario"]

    def model():
        return FraudDetector(hidden_size=4, head_hidden=4, window=4, update_every=2, seed=3,
                             max_keys=30, max_pending=500, cold_start=2)

    original = model()
    half = 600
    original.score_learn_many(stream[:half])
    for tx in range(0, half, 3):
        original.reveal_label(tx, tx % 7 == 0)
    meta, arrays = original.export_state()
    write_checkpoint(tmp_path, "fraud", {"model": meta}, arrays)
    manifest, loaded = read_checkpoint(tmp_path, "fraud")
    restored = FraudDetector.from_state(manifest["model"], loaded)
    npt.assert_array_equal(original.score_learn_many(stream[half:]),
                           restored.score_learn_many(stream[half:]))
    # Labels of transactions from before the export still land, on the right entities.
    for tx in range(1, len(stream), 2):
        assert original.reveal_label(tx, tx % 5 == 0) == restored.reveal_label(tx, tx % 5 == 0)
    assert original.n_evictions == restored.n_evictions
    assert original.n_stale_tallies == restored.n_stale_tallies > 0
    again = [dict(tx, tx_id=tx["tx_id"] + 10**6) for tx in stream[:300]]
    npt.assert_array_equal(original.score_learn_many(again), restored.score_learn_many(again))
    with pytest.raises(ValueError, match="not FraudDetector"):
        FraudDetector.from_state({**meta, "class": "RNNRegressor"}, arrays)


# --------------------------------------------------------------------------- in the runner


def _runner_for(tmp_path, overrides):
    base = {"kafka.input_topics": "tx", "state.checkpoint_dir": str(tmp_path / "ckpt"),
            "model.hidden_size": 4, "model.window": 4, "model.update_every": 2}
    config = load(env={}, overrides={**base, **overrides})
    registry = CollectorRegistry()
    sink = MemorySink()
    return config, registry, sink


def _body(event, key_fields):
    body = {"ts": event.ts, "features": event.features}
    body.update(zip(key_fields, event.keys, strict=True))
    if event.event_id is not None:
        body["id"] = event.event_id
    return json.dumps(body).encode()


def test_runner_serves_fraud_with_late_labels_across_a_restart(tmp_path):
    events = fraud_events(n_days=2, per_day=150)
    fields = ("key", "terminal")
    config, registry, sink = _runner_for(tmp_path, {
        "model.task": "fraud", "events.key_fields": "key,terminal",
        "kafka.labels_topic": "labels", "model.params.head_hidden": "4",
        "model.params.cold_start": "2"})
    source = MemorySource()
    for e in events:
        source.append("tx", 0, e.keys[0].encode(), _body(e, fields))
    source.append("tx", 0, b"c1", json.dumps({"ts": 1.7e9, "key": "c1", "terminal": "t1",
                                               "features": {"fee": 1.0}}).encode())
    source.append("labels", 0, None, json.dumps({"id": "no-such-id", "label": 1}).encode())
    source.assign_all()
    runner = Runner(config, source, sink, Metrics.create(registry))
    runner.run(max_idle_polls=2)
    outputs = [json.loads(v) for _, v, _ in sink.records["scores"]]
    assert len(outputs) == len(events)
    for out, event in zip(outputs, events, strict=True):
        assert out["prediction"] == {"fraud_probability": out["score"]}
        assert (out["key"], out["terminal"], out["id"]) == (*event.keys, event.event_id)
    (_, _, headers), = sink.records["dead-letters"]
    assert dict(headers)["dlq.reason"] == b"missing_field"
    half = len(events) // 2
    for e in events[:half]:
        source.append("labels", 0, None, json.dumps({"id": e.event_id, "label": e.label}).encode())
    runner = Runner(config, source, sink, Metrics.create(registry := CollectorRegistry()))
    source.assign_all()
    runner.run(max_idle_polls=2)
    assert registry.get_sample_value("stream_rnn_labels_applied_total") == half
    # A restart restores the transactions still waiting for a label: they still take it.
    for e in events[half:]:
        source.append("labels", 0, None, json.dumps({"id": e.event_id, "label": e.label}).encode())
    runner = Runner(config, source, sink, Metrics.create(registry := CollectorRegistry()))
    source.assign_all()
    runner.run(max_idle_polls=2)
    assert registry.get_sample_value("stream_rnn_labels_applied_total") == len(events) - half


def test_runner_writes_forecasts_and_spreads(tmp_path):
    events = forecast_events(n=90)
    config, registry, sink = _runner_for(tmp_path, {"model.task": "forecast",
                                                    "model.params.target": "demand"})
    source = MemorySource()
    for e in events:
        source.append("tx", 0, e.keys[0].encode(), _body(e, ("key",)))
    source.assign_all()
    Runner(config, source, sink, Metrics.create(registry)).run(max_idle_polls=2)
    outputs = [json.loads(v) for _, v, _ in sink.records["scores"]]
    assert len(outputs) == len(events)
    assert all("prediction" not in out for out in outputs[:3])  # each region's first event
    last = outputs[-1]
    assert set(last["prediction"]) == set(last["spread"]) == {"demand"}
    assert last["spread"]["demand"] > 0


@pytest.mark.parametrize("task", ["sensor", "forecast", "fraud"])
@pytest.mark.parametrize("bad,message", [
    ({"cell": "transformer"}, "cell must be one of"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ({"hidden_size": 0}, "hidden_size must be a positive integer"),
    ({"lr": -1.0}, "lr must be > 0"),
])
def test_bad_network_fields_are_refused_before_the_first_event(task, bad, message):
    params = dict(bad)
    if task == "forecast":
        params["target"] = "demand"
    with pytest.raises(ValueError, match=message):
        make_task(task, params, 100, key_fields=("key",))


def test_a_configuration_with_a_bad_cell_does_not_load(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[model]\ncell = "transformer"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="cell must be one of"):
        load(path)


def test_outputs_built_a_batch_at_a_time_are_ordinary_frozen_outputs():
    scores, predictions, spreads = [0.5, 0.0], [{"a": 1.0}, {}], [{"a": 0.1}, {}]
    built = _scored_many(scores, predictions, spreads)
    assert built == [Scored(0.5, {"a": 1.0}, {"a": 0.1}), Scored(0.0, {}, {})]
    assert all(type(out) is Scored for out in built)
    assert built[1].prediction is predictions[1] and built[1].spread is spreads[1]
    with pytest.raises(FrozenInstanceError):
        built[0].score = 1.0
    assert _scored_many([], [], []) == []
    with pytest.raises(ValueError, match="2 scores, 1 predictions and 2 spreads"):
        _scored_many(scores, predictions[:1], spreads)
