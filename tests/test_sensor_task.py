"""The sensor task's scores: calibrated per key, so one threshold serves sensors in any
units and at any noise level; spikes, level shifts and stuck sensors flagged quickly;
the surprise kernels against plain NumPy references; state through a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import numpy.testing as npt
import pytest

from stream_rnn.cells.surprise import (
    calibrate_surprise,
    reading_rows,
    surprise_rows,
    track_readings,
)
from stream_rnn.io.events import Event
from stream_rnn.state.checkpoint import read_checkpoint, write_checkpoint
from stream_rnn.tasks import SensorTask, check_params, make_task

NET = {"hidden_size": 8, "window": 8, "update_every": 4, "seed": 0}
THRESHOLD = 0.999
START = 1.7e9
STEP = 300.0

# (level, daily swing, noise, decimals): bar, rpm, degrees, mm/s, percent.
SENSORS = {
    "pressure": (6.0, 1.5, 0.03, 2),
    "speed": (2960.0, 800.0, 3.0, 0),
    "temperature": (45.0, 8.0, 0.2, 1),
    "vibration": (2.0, 0.6, 0.1, 2),
    "level": (60.0, -15.0, 0.4, 1),
}


def fleet(n_steps, seed=0, incidents=()):
    """Readings of the sensors above every 5 minutes with a daily cycle, rounded to their
    resolution. ``incidents`` are ``(sensor, kind, first step, last step, size in noise
    deviations)`` with kind ``spike``, ``shift`` or ``stuck``; returns the events and a
    label per event."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps)
    day = 86_400 / STEP
    values = {}
    for j, (name, (level, swing, noise, _)) in enumerate(SENSORS.items()):
        load = 0.5 + 0.5 * np.sin(2 * math.pi * t / day + j)
        values[name] = level + swing * load + noise * rng.standard_normal(n_steps)
    labels = {name: np.zeros(n_steps, dtype=int) for name in SENSORS}
    for name, kind, first, last, size in incidents:
        noise = SENSORS[name][2]
        if kind == "stuck":
            values[name][first:last + 1] = values[name][first - 1]
        else:
            values[name][first:last + 1] += size * noise
        labels[name][first:last + 1] = 1
    events, y = [], []
    for step in range(n_steps):
        for name, (_, _, _, decimals) in SENSORS.items():
            events.append(Event(START + STEP * step, (name,),
                                {"value": round(float(values[name][step]), decimals)},
                                None, None, f"in:0:{len(events)}"))
            y.append(labels[name][step])
    return events, np.array(y)


def run(task, events, batch=200):
    out = []
    for i in range(0, len(events), batch):
        out.extend(task.process(events[i:i + batch]))
    return out


def sensor_task(**params):
    return make_task("sensor", {**NET, "params": params}, 1000)


@pytest.fixture(scope="module")
def normal_fleet():
    events, _ = fleet(2000, seed=1)
    out = run(sensor_task(), events)
    keys = [e.keys[0] for e in events]
    return keys, np.array([o.score for o in out])


def test_one_threshold_keeps_every_sensor_quiet_on_normal_data(normal_fleet):
    keys, scores = normal_fleet
    keys = np.array(keys)
    for name in SENSORS:
        mine = scores[keys == name]
        # Units span 0.03 bar to 3 rpm of noise; the flag rate is the same order on all.
        assert (mine > THRESHOLD).mean() < 0.005, name
    assert (scores > THRESHOLD).mean() < 0.003


def test_scores_are_roughly_calibrated_after_warm_up(normal_fleet):
    keys, scores = normal_fleet
    warm = scores[len(SENSORS) * 300:]
    # Scores are 1 - p for tail probabilities p: a reading scores above 1 - q about a
    # fraction q of the time (up to the three tests taking the strongest evidence, and
    # the exponential tail erring on the side of fewer alarms far out).
    for q, most in ((0.5, 0.65), (0.1, 0.3), (0.01, 0.03), (0.001, 0.003)):
        assert (warm > 1 - q).mean() < most, q
    assert (warm > 0.5).mean() > 0.2 and (warm > 0.9).mean() > 0.05  # not all quiet


def test_warm_up_scores_zero():
    events, _ = fleet(200)
    out = run(sensor_task(warmup=50), events)
    per_key = len(SENSORS)
    # First reading: nothing to difference; second: nothing to forecast the step from;
    # then 50 forecast readings feeding the statistics.
    assert all(o.score == 0.0 for o in out[:per_key * 52])
    assert any(o.score > 0.0 for o in out[per_key * 52:per_key * 53])


@pytest.mark.parametrize("kind,size,within,sensors", [
    ("spike", 12.0, 1, ("speed", "temperature", "pressure")),
    ("shift", 8.0, 1, ("temperature", "pressure")),
    ("stuck", 0.0, 4, ("speed", "temperature", "pressure")),
])
def test_an_injected_incident_is_flagged_quickly(kind, size, within, sensors):
    # Sizes are in noise deviations. The speed sensor swings 800 rpm a day around 3 rpm of
    # noise: its forecast errors are several noise deviations, so it needs a bigger shift
    # than this to be 1 in 1000.
    first, last = 1200, 1200 if kind == "spike" else 1260
    for name in sensors:
        events, _ = fleet(1400, seed=2, incidents=[(name, kind, first, last, size)])
        scores = np.array([o.score for o in run(sensor_task(), events)])
        keys = np.array([e.keys[0] for e in events])
        mine = scores[keys == name]
        flagged = np.flatnonzero(mine[first:last + 1] > THRESHOLD)
        assert flagged.size and flagged[0] < within, (name, kind, mine[first:first + 4])
        # Ordinary readings of the same sensor before it stay quiet.
        assert (mine[400:first] > THRESHOLD).mean() < 0.005


def test_a_collapsed_spread_cannot_flag_forever():
    # A network whose predicted spread is far too small (here: a constant 1/5 of the
    # real noise) would flag every other reading on raw surprise; recalibrated against
    # the key's own long-run residual spread it flags about 1 in 1000.
    rng = np.random.default_rng(4)
    n = 4000
    z = 5.0 * rng.standard_normal((n, 1))
    slots = np.zeros(n, dtype=np.int64)
    state = {k: np.zeros((1, *shape), dtype) for k, (shape, dtype)
             in surprise_rows(1, 3).items()}
    factor = np.empty((n, 1))
    scores = np.empty(n)
    calibrate_surprise(slots, np.zeros(n, bool), np.ones(n, bool), z, np.empty((n, 0)),
                       np.zeros(n), *(state[k] for k in SURPRISE_ARGS), 100, 1000, factor,
                       scores)
    raw_tail = np.array([math.erfc(abs(v) / math.sqrt(2)) for v in z[100:, 0]])
    assert (raw_tail < 1 - THRESHOLD).mean() > 0.4  # taken at face value: alarms galore
    assert (scores[100:] > THRESHOLD).mean() < 0.003
    assert factor[-1, 0] == pytest.approx(5.0, rel=0.15)


# ----------------------------------------------------------------- parameters, state


def test_parameters_are_checked_by_name():
    assert check_params("sensor", {"params": {"short_window": 1, "views": "step"}}) == {
        "short_window": 1, "views": "step"}
    for params, message in [
        ({"short_window": 0}, "short_window must be >= 1"),
        ({"calibration_memory": 0}, "calibration_memory must be >= 1"),
        ({"warmup": -1}, "warmup must be >= 0"),
        ({"stuck": "yes"}, "model.params.stuck: expected true or false"),
        ({"views": "both"}, "views must be one of step\\+level, step, level; got 'both'"),
        ({"views": 2}, "model.params.views: expected a string"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_params("sensor", {"params": params})


@pytest.mark.parametrize("views,networks,first_forecast", [
    ("step+level", 2, 2), ("step", 1, 2), ("level", 1, 1)])
def test_views_choose_the_networks(views, networks, first_forecast):
    events, _ = fleet(400, incidents=[("speed", "spike", 350, 350, 12.0)])
    task = sensor_task(views=views)
    out = run(task, events)
    per_key = len(SENSORS)
    assert len(task._detectors) == networks
    # The step view forecasts from a key's third reading on, the level view its second.
    assert not out[per_key * first_forecast - 1].prediction
    assert out[per_key * first_forecast].prediction
    assert task.stats()["version"] == sum(d.n_updates for d in task._detectors) > 0
    speed = np.array([o.score for o, e in zip(out, events, strict=True)
                      if e.keys[0] == "speed"])
    assert speed[350] > THRESHOLD or views == "level"


def test_state_round_trip_resumes_exactly(tmp_path):
    events, _ = fleet(600, incidents=[("speed", "stuck", 420, 470, 0.0)])
    cut = len(events) // 2
    original = sensor_task(warmup=30)
    run(original, events[:cut])
    meta, arrays = original.export_state()
    write_checkpoint(tmp_path, "p0", {"model": meta}, arrays)
    manifest, loaded = read_checkpoint(tmp_path, "p0")
    restored = SensorTask.from_state(manifest["model"], loaded, {**NET, "warmup": 30}, 1000)
    assert run(original, events[cut:]) == run(restored, events[cut:])
    assert original.stats() == restored.stats()
    assert math.isfinite(original.stats()["loss"])
    # A checkpoint of other views or another short window cannot be resumed.
    with pytest.raises(ValueError, match="short_window 3, the configuration 5"):
        SensorTask.from_state(manifest["model"], loaded, {**NET, "short_window": 5}, 1000)
    with pytest.raises(ValueError, match="views 'step\\+level', the configuration 'step'"):
        SensorTask.from_state(manifest["model"], loaded, {**NET, "views": "step"}, 1000)


# ----------------------------------------------------------------- kernels vs NumPy

SURPRISE_ARGS = ("z2_mean", "u_buf", "u_count", "u_mean", "u_var", "u_rate", "u_excess")


def reference_readings(slots, X, memory):
    """:func:`track_readings` written plainly, one dictionary of state per key."""
    state = {}
    diffs, has_prev, stuck = np.zeros_like(X), np.zeros(len(X), bool), np.zeros(len(X))
    for i, s in enumerate(slots):
        st = state.setdefault(s, {"last": None, "n": 0, "run": np.zeros(X.shape[1]),
                                  "rate": np.zeros(X.shape[1])})
        if st["n"]:
            has_prev[i] = True
            diffs[i] = X[i] - st["last"]
            m = min(st["n"] - 1, memory)
            repeated = diffs[i] == 0.0
            st["run"] = np.where(repeated, st["run"] + 1, 0)
            q = (st["rate"] * m + 1) / (m + 2)
            stuck[i] = min(0.0, np.min(np.where(repeated, st["run"] * np.log10(q), 0.0)))
            st["rate"] += (repeated - st["rate"]) / min(st["n"], memory)
        st["last"], st["n"] = X[i].copy(), st["n"] + 1
    return diffs, has_prev, stuck


def reference_scores(slots, valid, Z, Z_level, stuck, W, warmup, memory):
    """:func:`calibrate_surprise` written plainly."""
    D, D2 = Z.shape[1], Z_level.shape[1]
    state, scores, factors = {}, np.zeros(len(Z)), np.ones((len(Z), D + D2))

    def fresh_test():
        return {"mean": 0.0, "var": 0.0, "rate": 0.0, "excess": 0.0}

    def tail(test, x, alpha):
        spread = max(math.sqrt(test["var"]), 1e-3)
        tau = test["mean"] + spread
        at_tau = math.log10(max(test["rate"], 1 / memory))
        if x > tau:
            decades = at_tau - (x - tau) / max(test["excess"], 1e-3) / math.log(10)
        else:
            decades = at_tau * max(0.0, (x - test["mean"]) / spread)
        test["rate"] += alpha * ((x > tau) - test["rate"])
        if x > tau:
            test["excess"] += min(1, alpha / max(test["rate"], alpha)) * (
                x - tau - test["excess"])
        d = x - test["mean"]
        test["mean"] += alpha * d
        test["var"] = (1 - alpha) * (test["var"] + alpha * d * d)
        return min(0.0, decades)

    for i, s in enumerate(slots):
        if not valid[i]:
            continue
        st = state.setdefault(s, {"z2": np.zeros(D + D2), "windows": ([], []), "n": 0,
                                  "tests": [fresh_test() for _ in range(3)]})
        z = np.concatenate([Z[i], Z_level[i]])
        z2 = z ** 2
        if st["n"]:
            factors[i] = np.sqrt(np.maximum(st["z2"], 1e-6))
            z2 = z2 / np.maximum(st["z2"], 1e-6)
        st["n"] += 1
        n = st["n"]
        alpha = max(1 / n, 1 / memory)
        u = math.log1p(z2[:D].max())
        evidence = min(0.0, stuck[i], tail(st["tests"][0], u, alpha))
        if W > 1:
            st["windows"][0].append(u)
            evidence = min(evidence, tail(st["tests"][1], np.mean(st["windows"][0][-W:]),
                                          alpha))
        if D2:
            st["windows"][1].append(math.log1p(z2[D:].max()))
            evidence = min(evidence, tail(st["tests"][2], np.mean(st["windows"][1][-W:]),
                                          alpha))
        if n > warmup:
            scores[i] = 1 - 10.0 ** evidence
        raw = z ** 2
        if n > 1:
            raw = np.minimum(raw, 16 * np.maximum(st["z2"], 1e-6))
        st["z2"] += alpha * (raw - st["z2"])
    return scores, factors


def test_surprise_kernels_match_plain_references():
    rng = np.random.default_rng(5)
    n, D, S = 3000, 2, 4
    slots = rng.integers(0, S, n)
    # Coarse readings repeat now and then; one key gets stuck for a while.
    X = np.round(rng.normal(0, 1, (n, D)) * [1.0, 5.0], 0)
    X[(slots == 2) & (np.arange(n) > 2000)] = 7.0
    rows = {k: np.zeros((S, *shape), dtype) for k, (shape, dtype) in reading_rows(D).items()}
    diffs, has_prev, stuck = np.empty((n, D)), np.empty(n, bool), np.empty(n)
    track_readings(slots, np.zeros(n, bool), X, rows["last"], rows["seen"], rows["run"],
                   rows["repeat_rate"], 50, diffs, has_prev, stuck)
    want = reference_readings(slots, X, 50)
    for got, expected in zip((diffs, has_prev, stuck), want, strict=True):
        npt.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert stuck.min() < -10  # the stuck key's long run is very unlikely

    Z = rng.standard_t(4, (n, D))
    Z[rng.random(n) < 0.01] *= 8
    for Z_level, W in ((np.empty((n, 0)), 3), (rng.standard_t(3, (n, D)), 4),
                       (np.empty((n, 0)), 1)):
        D2 = Z_level.shape[1]
        state = {k: np.zeros((S, *shape), dtype) for k, (shape, dtype)
                 in surprise_rows(D + D2, W).items()}
        factor, scores = np.empty((n, D + D2)), np.empty(n)
        calibrate_surprise(slots, np.zeros(n, bool), has_prev, Z, Z_level, stuck,
                           *(state[k] for k in SURPRISE_ARGS), 40, 200, factor, scores)
        expected_scores, expected_factor = reference_scores(slots, has_prev, Z, Z_level,
                                                            stuck, W, 40, 200)
        npt.assert_allclose(scores, expected_scores, rtol=1e-9, atol=1e-12)
        npt.assert_allclose(factor, expected_factor, rtol=1e-9)
        assert (scores > THRESHOLD).any() and (scores == 0).any()


def test_a_slot_taken_by_a_new_key_starts_afresh():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 1))
    rows = {k: np.zeros((1, *shape), dtype) for k, (shape, dtype) in reading_rows(1).items()}
    out = np.empty((20, 1)), np.empty(20, bool), np.empty(20)
    resets = np.zeros(20, bool)
    resets[10] = True
    track_readings(np.zeros(20, np.int64), resets, X, rows["last"], rows["seen"],
                   rows["run"], rows["repeat_rate"], 100, *out)
    assert not out[1][10] and out[1][11] and rows["seen"][0] == 10


def test_live_forecast_is_the_next_prediction_and_empty_once_evicted():
    events, _ = fleet(60)
    by_key = {name: [e for e in events if e.keys[0] == name] for name in SENSORS}
    task = make_task("sensor", NET, max_keys=3)
    history = [e for pair in zip(by_key["pressure"][:50], by_key["speed"][:50], strict=True)
               for e in pair]
    # Two newcomers fill the third slot in turn: the second evicts pressure, the least
    # recently seen.
    run(task, history + [by_key["temperature"][0], by_key["vibration"][0]])
    assert task.forecast("pressure") == {} and task.stats()["evictions"] == 1
    live = task.forecast("speed")
    assert set(live) == {"value"}
    assert task.process([by_key["speed"][50]])[0].prediction == pytest.approx(live, rel=1e-12)


def test_a_batch_equals_its_events_one_at_a_time_with_missing_features():
    # Two key fields, keys recurring at random, and some events lacking a feature (they
    # read 0): whole batches of complete events and batches with gaps take different
    # paths to the input matrix and the outputs, with the same results as single events.
    rng = np.random.default_rng(11)
    events = []
    for i in range(600):
        site, unit = f"s{rng.integers(0, 3)}", f"u{rng.integers(0, 4)}"
        features = {"a": round(float(rng.normal(5.0, 1.0)), 3),
                    "b": round(float(rng.normal(-2.0, 0.5)), 3)}
        if i > 0 and rng.random() < 0.02:
            del features["b"]
        events.append(Event(START + i, (site, unit), features, None, None, f"in:0:{i}"))
    task = make_task("sensor", NET, 1000, key_fields=("site", "unit"))
    single = make_task("sensor", NET, 1000, key_fields=("site", "unit"))
    batched, i = [], 0
    while i < len(events):
        size = int(rng.integers(1, 120))
        batched.extend(task.process(events[i:i + size]))
        i += size
    one_by_one = [out for event in events for out in single.process([event])]
    assert batched == one_by_one
    assert sum(1 for out in batched if out.prediction) > 500
