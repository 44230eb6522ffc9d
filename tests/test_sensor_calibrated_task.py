"""The sensor task with ``detector = "calibrated"``: the daemon runs the detector the NAB
benchmark measures (:class:`~stream_rnn.models.SensorAnomalyDetector`) under the task
contract: the detector's own scores, forecasts made before each reading, batches equal to
single events, event times as the seasonal clock, checkpoints that resume exactly,
bounded keys, finiteness checks and parameters refused by name."""

from __future__ import annotations

import json
import math

import numpy as np
import numpy.testing as npt
import pytest
from test_runner import TOPIC, _config, _fill, _runner
from test_sensor_task import SENSORS, STEP, fleet

from stream_rnn.cells import kernels as K
from stream_rnn.config import ConfigError, load
from stream_rnn.daemon import checkpoint_name
from stream_rnn.io.base import Partition
from stream_rnn.io.events import Event
from stream_rnn.io.memory import MemorySink, MemorySource
from stream_rnn.models import SensorAnomalyDetector
from stream_rnn.state.checkpoint import read_checkpoint, write_checkpoint
from stream_rnn.tasks import SensorTask, check_params, make_task

NET = {"hidden_size": 8, "window": 8, "update_every": 2, "seed": 3}
# An hourly season so a few hundred 5-minute readings cover several of them.
OWN = {"detector": "calibrated", "n_members": 2, "season": 3600.0, "warmup": 40,
       "warmup_seasons": 1.0, "long_memory": 200, "refractory": 50}
PARAMS = {**NET, "params": OWN}


def calibrated(max_keys=1000, **own):
    return make_task("sensor", {**NET, "params": {**OWN, **own}}, max_keys)


def run(task, events, batch=100):
    out = []
    for i in range(0, len(events), batch):
        out.extend(task.process(events[i:i + batch]))
    return out


def machines(n_steps, seed=0, missing_every=0):
    """Two-feature readings of three machines every 5 minutes with an hourly cycle; with
    ``missing_every`` some events leave out a feature (it reads 0)."""
    rng = np.random.default_rng(seed)
    events = []
    for step in range(n_steps):
        phase = 2 * math.pi * step * STEP / 3600.0
        for m in range(3):
            features = {"temp": 40 + 5 * m + 3 * math.sin(phase + m) + 0.2 * rng.normal(),
                        "rpm": 1500 * (m + 1) + 50 * math.cos(phase) + 5 * rng.normal()}
            if missing_every and len(events) % missing_every == 5:
                del features["rpm"]
            events.append(Event(1.7e9 + STEP * step, (f"m{m}",), features, None, None,
                                f"in:0:{len(events)}"))
    return events


@pytest.fixture(scope="module")
def stream():
    return machines(400)


def test_scores_are_the_detectors_own_with_event_times_as_its_clock(stream):
    task = calibrated()
    out = run(task, stream, batch=64)
    reference = SensorAnomalyDetector(**NET, **{k: v for k, v in OWN.items()
                                                if k != "detector"})
    expected = []
    for e in stream:
        x = dict(e.features)
        expected.append(reference.score_one(x, key=e.keys[0], t=e.ts))
        reference.learn_one(x, key=e.keys[0], t=e.ts)
    npt.assert_array_equal([o.score for o in out], expected)
    scores = np.array(expected)
    assert 0.0 <= scores.min() and scores.max() < 1.0 and (scores > 0).sum() > 30


def test_a_batch_equals_its_events_one_at_a_time(stream):
    events = machines(150, seed=1, missing_every=7)
    one_by_one = run(calibrated(), events, batch=1)
    assert run(calibrated(), events, batch=len(events)) == one_by_one
    assert run(calibrated(), events, batch=13) == one_by_one


def test_predictions_are_the_forecasts_made_before_each_reading(stream):
    task = calibrated()
    run(task, stream[:600])
    for event in stream[600:660]:
        key = event.keys[0]
        before = task.detector.forecast_one(key, t=event.ts)
        (scored,) = task.process([event])
        assert scored.prediction == {name: mean for name, (mean, _) in before.items()}
        assert scored.spread == {name: std for name, (_, std) in before.items()}
        assert set(scored.prediction) == {"rpm", "temp"}
    # Regular readings: the live forecast is the next event's prediction.
    nxt = stream[660]
    assert task.forecast(nxt.keys[0]) == task.process([nxt])[0].prediction


def test_forecasts_follow_the_readings_and_their_spread_the_noise(stream):
    task = calibrated()
    out = run(task, stream)
    # Each key's first two readings only seed its statistics: nothing forecast yet.
    assert all(not o.prediction and not o.spread and o.score == 0.0 for o in out[:6])
    late = [(o, e) for o, e in zip(out[600:], stream[600:], strict=True)]
    errors = np.array([o.prediction["temp"] - e.features["temp"] for o, e in late])
    spreads = np.array([o.spread["temp"] for o, _ in late])
    # The hourly swing is 3 degrees and the noise 0.2: the forecast tracks the cycle.
    assert np.sqrt(np.mean(errors ** 2)) < 1.0
    assert np.all(spreads > 0) and np.median(spreads) < 2.0


def test_an_injected_spike_is_flagged_and_quiet_readings_are_not():
    events, labels = fleet(900, seed=2, incidents=[("pressure", "spike", 820, 821, 40.0)])
    task = make_task("sensor", {**NET, "params": {"detector": "calibrated", "season": 0,
                                                  "warmup": 100, "n_members": 2}}, 1000)
    scores = np.array([o.score for o in run(task, events)])
    assert scores[labels == 1].max() > 0.5
    assert scores[labels == 0][len(SENSORS) * 400:].max() < scores[labels == 1].max()
    assert (scores[labels == 0] > 0.5).mean() < 0.002


def test_checkpoint_round_trip_continues_bit_identically(stream, tmp_path):
    cut = 600
    original = calibrated()
    run(original, stream[:cut])
    meta, arrays = original.export_state()
    write_checkpoint(tmp_path, "p0", {"model": meta}, arrays)  # npz, allow_pickle=False
    manifest, loaded = read_checkpoint(tmp_path, "p0")
    restored = SensorTask.from_state(manifest["model"], loaded, PARAMS, 1000)
    assert run(original, stream[cut:]) == run(restored, stream[cut:])
    assert original.stats() == restored.stats()
    assert original.forecast("m1") == restored.forecast("m1")
    # Another detector, or a setting that shapes the state, cannot resume it.
    with pytest.raises(ValueError, match="runs the 'calibrated' detector, the configuration "
                                         "'views'"):
        SensorTask.from_state(manifest["model"], loaded, NET, 1000)
    with pytest.raises(ValueError, match="n_members 2, the configuration 3"):
        SensorTask.from_state(manifest["model"], loaded,
                              {**NET, "params": {**OWN, "n_members": 3}}, 1000)
    views = make_task("sensor", NET, 1000)
    run(views, stream[:30])
    views_meta, views_arrays = views.export_state()
    with pytest.raises(ValueError, match="runs the 'views' detector, the configuration "
                                         "'calibrated'"):
        SensorTask.from_state(views_meta, views_arrays, PARAMS, 1000)


def test_a_restored_model_takes_the_configured_settings_that_fit_its_state(stream, tmp_path):
    task = calibrated()
    run(task, stream[:300])
    meta, arrays = task.export_state()
    restored = SensorTask.from_state(meta, arrays, {**PARAMS, "lr": 0.01}, 1000)
    assert restored.detector.lr == 0.01
    assert all(net.hyper[K.H_LR] == np.float32(0.01) for net in restored.detector._nets)
    fresh = SensorTask.from_state(*calibrated().export_state(), PARAMS, 1000)
    assert run(fresh, stream[:200]) == run(calibrated(), stream[:200])


def test_stats_report_the_members_losses_and_evictions_are_counted(stream):
    task = calibrated(max_keys=2)
    # Two machines learn; then a third takes the place of the one seen least recently.
    run(task, [e for e in stream[:600] if e.keys[0] != "m2"])
    run(task, [e for e in stream[600:] if e.keys[0] == "m2"])
    stats = task.stats()
    det = task.detector
    assert stats["keys"] == 2 and stats["evictions"] == 1
    assert sorted(det._store) == ["m1", "m2"]
    assert stats["version"] == sum(net.n_updates for net in det._nets) > 0
    assert stats["skipped"] == 0
    assert stats["loss"] == pytest.approx(np.mean([net.stats[0] for net in det._nets]))
    assert math.isfinite(stats["loss"]) and math.isfinite(stats["grad_norm"])
    task.forget_keys()
    assert task.stats()["keys"] == 0 and task.stats()["evictions"] == 0


def test_non_finite_weights_or_rows_are_detected(stream):
    task = calibrated()
    run(task, stream[:300])
    assert task.is_finite()  # NaN marks unset times in the calibration rows: not a fault
    slot = task.detector._store.get("m1")
    task.process(stream[300:303])  # m0, m1, m2: the next check gathers their rows
    task.detector._store.arrays["scale_var"][slot] = np.inf
    assert not task.is_finite()
    task.detector._store.arrays["scale_var"][slot] = 1.0
    assert task.is_finite()
    task.detector._nets[1].theta[0] = np.nan
    assert not task.is_finite()
    task.detector._nets[1].theta[0] = 0.0
    assert task.is_finite()
    task.detector._nets[0].opt[0, 0] = np.inf  # an Adam moment: the next update breaks
    assert not task.is_finite()


def test_unknown_features_are_refused_and_missing_ones_read_zero():
    task = calibrated()
    events = machines(20)
    assert task.check(events[0]) is None
    run(task, events)
    odd = Event(events[-1].ts + STEP, ("m0",), {"temp": 1.0, "vibration": 2.0}, None, None, "")
    assert task.check(odd).reason == "unknown_feature"
    partial = Event(events[-1].ts + STEP, ("m0",), {"temp": 41.0}, None, None, "")
    zero = Event(partial.ts, ("m0",), {"temp": 41.0, "rpm": 0.0}, None, None, "")
    twin = calibrated()
    run(twin, events)
    assert task.process([partial]) == twin.process([zero])


@pytest.mark.parametrize("own,message", [
    ({"views": "step"}, "model.params.views does not apply to the 'calibrated'"),
    ({"calibration_memory": 500},
     "model.params.calibration_memory does not apply to the 'calibrated'"),
    ({"stuck": "yes"}, "model.params.stuck: expected true or false"),
    ({"one_reading": 1}, "model.params.one_reading: expected true or false"),
    ({"held_back": 1.0}, "held_back must be a number in \\[0, 1\\)"),
    ({"held_back": -0.5}, "held_back must be a number in \\[0, 1\\)"),
    ({"detector": "ensemble"}, "detector must be one of views, calibrated; got 'ensemble'"),
    ({"season": -60.0}, "model.params.season must be >= 0 \\(0: none\\)"),
    ({"context_lag": "weekly"}, "model.params.context_lag: expected a number"),
    ({"n_members": 0}, "n_members must be a positive integer"),
    ({"min_spread": 1.0}, "min_spread must be a number in \\[0, 1\\)"),
    ({"warmup_seasons": -1.0}, "warmup_seasons must be a number >= 0"),
    ({"season_buffer": 0}, "season_buffer must be a positive integer"),
    ({"long_memory": 0}, "long_memory must be >= 1"),
    ({"alarm_margin": 1.5}, "alarm_margin must be in \\[0, 1\\)"),
    ({"score_scale": 0.0}, "scale must be > 0"),
    ({"routine_horizon": 0.0}, "routine_horizon must be > 0 seconds"),
    ({"clip": 0.0}, "model.params.clip must be > 0"),
])
def test_bad_calibrated_parameters_are_refused_by_name(own, message):
    with pytest.raises(ValueError, match=message):
        check_params("sensor", {"params": {"detector": "calibrated", **own}})


def test_calibrated_parameters_do_not_apply_to_the_views_detector():
    with pytest.raises(ValueError, match="model.params.season does not apply to the 'views'"):
        check_params("sensor", {"params": {"season": 3600.0}})


def test_zero_turns_the_seasonal_input_and_the_context_view_off():
    task = make_task("sensor", {"params": {"detector": "calibrated", "season": 0,
                                           "context_lag": 0, "slow_memory": 0}}, 10)
    det = task.detector
    assert det.season is None and det.context_lag is None and det.slow_memory is None
    defaults = make_task("sensor", {"params": {"detector": "calibrated"}}, 10).detector
    assert defaults.season == 86_400.0 and defaults.context_lag == 604_800.0


def test_a_configuration_with_a_bad_calibrated_value_does_not_load(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[model.params]\ndetector = "calibrated"\nseason_buffer = -3\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="season_buffer must be a positive integer"):
        load(path)


def test_the_daemon_resumes_the_calibrated_detector_from_its_checkpoint(tmp_path):
    """A crash after some batches and a restart from the last checkpoint write the same
    scores, forecasts and final state as one uninterrupted run."""
    own = {"model.params.detector": "calibrated", "model.params.season": "3600",
           "model.params.n_members": "2", "model.params.warmup": "20",
           "model.params.warmup_seasons": "1"}

    def filled():
        source = MemorySource()
        _fill(source, n=200, partitions=1, sensors=4)
        source.assign_all()
        return source

    reference_sink = MemorySink()
    reference, _ = _runner(_config(tmp_path / "ref", **own), filled(), reference_sink)
    reference.run(max_idle_polls=2)
    cfg = _config(tmp_path / "crash", **own, **{"limits.max_poll_records": 37})
    source = filled()
    crashed, _ = _runner(cfg, source)
    for _ in range(9):
        crashed.step()
    resumed_source = MemorySource()
    resumed_source.topics = source.topics
    resumed_source.committed = dict(source.committed)
    resumed_source.assign_all()
    resumed_sink = MemorySink()
    resumed, _ = _runner(cfg, resumed_source, resumed_sink)
    resumed.run(max_idle_polls=2)
    name = checkpoint_name(Partition(TOPIC, 0))
    ref_manifest, ref_arrays = read_checkpoint(tmp_path / "ref" / "ckpt", name)
    manifest, arrays = read_checkpoint(tmp_path / "crash" / "ckpt", name)
    assert manifest["model"]["detector_kind"] == "calibrated"
    assert set(arrays) == set(ref_arrays)
    for key in arrays:
        npt.assert_array_equal(arrays[key], ref_arrays[key], err_msg=key)
    outputs = [json.loads(v) for _, v, _ in resumed_sink.records["scores"]]
    expected = {out["src"]: out for out in (json.loads(v) for _, v, _ in
                                            reference_sink.records["scores"])}
    assert len(outputs) > 100
    for out in outputs:
        ref = expected[out["src"]]
        assert (out["score"], out.get("prediction"), out.get("spread")) == (
            ref["score"], ref.get("prediction"), ref.get("spread"))
    assert any(out.get("prediction") for out in outputs)
