"""The estimators as River citizens, and the keyed-state contract they add.

River's own checks run here: the dataset-free ones straight from ``yield_checks``, and
the dataset checks on small synthetic streams kept in this file (River's default datasets
would download).
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
import random

import numpy as np
import pytest
from river import checks, datasets, evaluate, linear_model, metrics, preprocessing
from river.checks import anomaly as anomaly_checks
from river.checks import clf as clf_checks
from river.checks import common
from river.checks import time_series as ts_checks

from stream_rnn.models import RNNAnomalyDetector, RNNClassifier, RNNForecaster, RNNRegressor

ALL = [RNNRegressor, RNNClassifier, RNNForecaster, RNNAnomalyDetector]


def _features(rng: random.Random, n: int) -> dict[str, float]:
    return {f"f{i}": rng.gauss(0, 1) for i in range(n)}


def regression_stream(n=60, n_features=8, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        x = _features(rng, n_features)
        yield x, 2.0 * x["f0"] - x["f1"] + 0.1 * rng.gauss(0, 1)


def classification_stream(n=60, n_features=8, seed=0):
    for x, y in regression_stream(n, n_features, seed):
        yield x, y > 0


def anomaly_stream(n=300, seed=0):
    """A smooth two-feature signal with a few gross outliers labelled 1."""
    rng = random.Random(seed)
    for t in range(n):
        outlier = t > 100 and t % 37 == 0
        x = {
            "a": math.sin(t / 5) + (8.0 if outlier else 0.0) + 0.05 * rng.gauss(0, 1),
            "b": math.cos(t / 5) + 0.05 * rng.gauss(0, 1),
        }
        yield x, int(outlier)


def forecast_stream(n=60):
    # River's forecast check passes exogenous features named "time" and "period".
    for t in range(n):
        yield {"time": float(t), "period": float(t % 12)}, 10 + math.sin(t / 2)


def _small(cls, **extra):
    params = dict(next(iter(cls._unit_test_params())))
    params.update(extra)
    return cls(**params)


def _dataset_for(model):
    if isinstance(model, RNNForecaster):
        return list(forecast_stream())
    if isinstance(model, RNNAnomalyDetector):
        return list(anomaly_stream(80))
    if isinstance(model, RNNClassifier):
        return list(classification_stream())
    return list(regression_stream())


# --------------------------------------------------------------------------- River checks


def _dataset_free_checks():
    for cls in ALL:
        for params in cls._unit_test_params():
            model = cls(**params)
            for check in checks.yield_checks(model):
                keywords = check.keywords if isinstance(check, functools.partial) else {}
                if "dataset" in keywords:
                    continue  # run below on offline synthetic streams
                name = getattr(check, "__name__", getattr(check, "func", check).__name__)
                yield pytest.param(model, check, id=f"{cls.__name__}-{name}-{len(params)}")


@pytest.mark.parametrize("model,check", list(_dataset_free_checks()))
def test_river_dataset_free_checks(model, check):
    check(model.clone())


DATASET_CHECKS = [
    common.check_learn_one,
    common.check_pickling,
    common.check_shuffle_features_no_impact,
    common.check_disappearing_features,
    common.check_predict_one_pure,
    common.check_predict_one_before_any_learn,
    common.check_no_state_aliasing_with_input,
    common.check_clone_is_independent,
    common.check_seeding_is_idempotent,
]


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier, RNNAnomalyDetector])
@pytest.mark.parametrize("check", DATASET_CHECKS, ids=lambda c: c.__name__)
def test_river_dataset_checks(cls, check):
    model = _small(cls)
    check(model.clone(), _dataset_for(model))


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_river_emerging_features_with_free_slots(cls):
    # River's check drops 3 of 8 features from the first learned event; the growth rule
    # needs free input slots for them, which input_size provides.
    model = _small(cls, input_size=8)
    common.check_emerging_features(model, _dataset_for(model))


def test_river_bounded_memory():
    for cls in (RNNRegressor, RNNClassifier, RNNAnomalyDetector):
        model = _small(cls)
        data = _dataset_for(model) * 10
        common.check_bounded_memory_growth(model, data)


def test_river_classifier_checks():
    model = _small(RNNClassifier)
    data = list(classification_stream())
    clf_checks.check_predict_proba_one(model.clone(), data)
    clf_checks.check_predict_proba_one_binary(model.clone(), data)
    clf_checks.check_classifier_tracks_seen_labels(model.clone(), data)


def test_river_anomaly_roc_auc():
    anomaly_checks.check_roc_auc(RNNAnomalyDetector(hidden_size=8, window=8, seed=0),
                                 list(anomaly_stream()))


def test_river_forecaster_checks():
    for params in RNNForecaster._unit_test_params():
        data = list(forecast_stream())
        ts_checks.check_learn_one(RNNForecaster(**params), data)
        ts_checks.check_forecast(RNNForecaster(**params), data)


def test_progressive_val_score_in_a_pipeline_beats_linear_regression():
    rnn = preprocessing.StandardScaler() | RNNRegressor(hidden_size=8, window=8, seed=0)
    linear = preprocessing.StandardScaler() | linear_model.LinearRegression()
    mae_rnn = evaluate.progressive_val_score(datasets.TrumpApproval(), rnn, metrics.MAE())
    mae_lin = evaluate.progressive_val_score(datasets.TrumpApproval(), linear, metrics.MAE())
    assert mae_rnn.get() < 0.7 * mae_lin.get()


def test_key_passes_through_a_pipeline():
    model = preprocessing.StandardScaler() | RNNRegressor(hidden_size=4, window=4, seed=0)
    for t in range(20):
        model.learn_one({"a": float(t)}, float(t), key=f"k{t % 3}")
    assert model["RNNRegressor"].n_keys == 3


# --------------------------------------------------------------------------- keyed state


def _learned(cls, n=40, keys=("a", "b", "c"), **params):
    model = _small(cls, **params)
    data = _dataset_for(model)
    for i in range(n):
        x, y = data[i % len(data)]
        _learn(model, x, y, key=keys[i % len(keys)])
    return model, data


def _learn(model, x, y, key=None):
    if isinstance(model, RNNForecaster):
        model.learn_one(y, x, key=key)
    elif isinstance(model, RNNAnomalyDetector):
        model.learn_one(x, key=key)
    else:
        model.learn_one(x, y, key=key)


def _infer(model, x, key=None):
    if isinstance(model, RNNForecaster):
        return model.forecast(3, [x] * 3, key=key)
    if isinstance(model, RNNAnomalyDetector):
        return model.score_one(x, key=key)
    if isinstance(model, RNNClassifier):
        return model.predict_proba_one(x, key=key)
    return model.predict_one(x, key=key)


@pytest.mark.parametrize("cls", ALL)
def test_inference_never_moves_state(cls):
    model, data = _learned(cls)
    before = pickle.dumps(model)
    for key in ("a", "b", "never-seen", None):
        for x, _ in data[:5]:
            _infer(model, x, key=key)
    assert pickle.dumps(model) == before


@pytest.mark.parametrize("cls", ALL)
def test_each_key_has_its_own_state(cls):
    model, data = _learned(cls)
    store = model._store
    slot_b = store.get("b")
    row_b = {name: arr[slot_b].copy() for name, arr in store.arrays.items()}
    x, y = data[0]
    _learn(model, x, y, key="a")
    for name, arr in store.arrays.items():
        np.testing.assert_array_equal(arr[store.get("b")], row_b[name], err_msg=name)
    # The same input reads differently under two keys with different histories.
    assert _infer(model, x, key="a") != _infer(model, x, key="b")


@pytest.mark.parametrize("cls", ALL)
def test_keys_are_bounded_with_lru_eviction_counted(cls):
    model, data = _learned(cls, n=10, keys=[f"k{i}" for i in range(10)], max_keys=4)
    assert model.n_keys == 4
    assert model.n_evictions == 6
    # The four most recently learned keys survive.
    assert set(model._store) == {"k6", "k7", "k8", "k9"}


def test_state_memory_per_key_target():
    # The yardstick: LSTM, hidden 32, 4 inputs, window 16, float32 -> <= 1 KiB/key.
    model = RNNRegressor(cell="lstm", hidden_size=32, window=16, dtype="float32")
    model.learn_one({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, 1.0)
    assert model.bytes_per_key <= 1024
    # And it is what the arrays really hold once many keys exist.
    for k in range(2000):
        model.learn_one({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, 1.0, key=k)
    assert model._store.nbytes <= model._store.capacity * model.bytes_per_key


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "12a", None])
def test_bad_feature_value_raises_naming_it_and_changes_nothing(cls, bad):
    model, data = _learned(cls)
    before = pickle.dumps(model)
    x = dict(data[0][0])
    name = next(iter(x))
    x[name] = bad
    with pytest.raises(ValueError, match=repr(name)):
        _learn(model, x, data[0][1], key="a")
    if not isinstance(model, RNNForecaster):
        with pytest.raises(ValueError, match=repr(name)):
            _infer(model, x, key="a")
    assert pickle.dumps(model) == before


@pytest.mark.parametrize("cls", [RNNRegressor, RNNForecaster])
def test_bad_target_raises_and_changes_nothing(cls):
    model, data = _learned(cls)
    before = pickle.dumps(model)
    for bad in (float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError):
            _learn(model, data[0][0], bad, key="a")
    assert pickle.dumps(model) == before


def test_classifier_refuses_a_third_label_and_changes_nothing():
    model, data = _learned(RNNClassifier)
    before = pickle.dumps(model)
    with pytest.raises(ValueError, match="binary"):
        model.learn_one(data[0][0], "third", key="a")
    assert pickle.dumps(model) == before


@pytest.mark.parametrize("cls", ALL)
def test_new_feature_without_free_slot_is_a_clear_error(cls):
    model, data = _learned(cls)
    before = pickle.dumps(model)
    x = dict(data[0][0], brand_new=1.0)
    with pytest.raises(ValueError, match="brand_new"):
        _learn(model, x, data[0][1])
    assert pickle.dumps(model) == before


def test_new_feature_takes_a_free_slot_when_learned():
    model = RNNRegressor(hidden_size=4, window=4, input_size=3, seed=0)
    model.learn_one({"a": 1.0}, 1.0)
    assert model.feature_names == ["a"]
    # Predicting with an unseen feature ignores it and gives it no slot.
    assert model.predict_one({"a": 1.0, "b": 5.0}) == model.predict_one({"a": 1.0})
    assert model.feature_names == ["a"]
    model.learn_one({"a": 1.0, "c": 2.0, "b": 3.0}, 1.0)
    assert model.feature_names == ["a", "c", "b"]
    with pytest.raises(ValueError, match="d"):
        model.learn_one({"d": 1.0}, 1.0)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier, RNNAnomalyDetector])
def test_missing_feature_reads_zero(cls):
    model, data = _learned(cls)
    x = dict(data[3][0])
    name = sorted(x)[-1]
    with_zero = dict(x, **{name: 0.0})
    del x[name]
    assert _infer(model, x, key="a") == _infer(model, with_zero, key="a")


# --------------------------------------------------------------------------- batch path


def _keys(n, n_keys, seed):
    rng = random.Random(seed)
    return [f"k{rng.randrange(n_keys)}" for _ in range(n)]


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("max_keys", [100, 3])
def test_regressor_batch_matches_per_event_loop(cell, max_keys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = X[:, 0] - X[:, 1] + rng.normal(0, 0.1, 300)
    keys = _keys(300, 6, seed=2)
    params = dict(cell=cell, hidden_size=5, window=6, update_every=3, seed=4,
                  max_keys=max_keys, dtype="float64")
    loop, batch = RNNRegressor(**params), RNNRegressor(**params)
    first = {"a": X[0, 0], "b": X[0, 1], "c": X[0, 2]}
    for m in (loop, batch):
        m.learn_one(first, y[0], key="k0")
    expected = []
    for i in range(1, 300):
        x = dict(zip(["a", "b", "c"], X[i], strict=True))
        expected.append(loop.predict_one(x, key=keys[i]))
        loop.learn_one(x, y[i], key=keys[i])
    got = batch.predict_learn_many(X[1:], y[1:], keys[1:])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(batch._net.theta, loop._net.theta)
    assert batch.n_evictions == loop.n_evictions


@pytest.mark.parametrize("max_keys", [100, 4])
def test_detector_batch_matches_per_event_loop(max_keys):
    rng = np.random.default_rng(5)
    n = 400
    X = np.cumsum(rng.normal(size=(n, 2)), axis=0)
    keys = _keys(n, 7, seed=3)
    params = dict(hidden_size=6, window=5, update_every=2, seed=1, max_keys=max_keys,
                  dtype="float64")
    loop, batch = RNNAnomalyDetector(**params), RNNAnomalyDetector(**params)
    expected = []
    for i in range(n):
        x = {"p": X[i, 0], "q": X[i, 1]}
        expected.append(loop.score_one(x, key=keys[i]))
        loop.learn_one(x, key=keys[i])
    batch.learn_one({"p": X[0, 0], "q": X[0, 1]}, key=keys[0])
    got = [expected[0]] + list(batch.score_learn_many(X[1:], keys[1:]))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(batch._net.theta, loop._net.theta)


def test_classifier_batch_matches_per_event_loop():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    keys = _keys(200, 5, seed=9)
    params = dict(hidden_size=4, window=4, seed=2, dtype="float64")
    loop, batch = RNNClassifier(**params), RNNClassifier(**params)
    for m in (loop, batch):
        m.learn_one({"a": X[0, 0], "b": X[0, 1]}, 1, key=keys[0])
        m.learn_one({"a": X[0, 0], "b": X[0, 1]}, 0, key=keys[0])
    expected = []
    for i in range(200):
        x = {"a": X[i, 0], "b": X[i, 1]}
        expected.append(loop.predict_proba_one(x, key=keys[i])[1])
        loop.learn_one(x, int(y[i]), key=keys[i])
    got = batch.predict_proba_learn_many(X, y, keys)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_batch_rejects_non_finite_rows_and_changes_nothing():
    model, _ = _learned(RNNRegressor, dtype="float64")
    before = pickle.dumps(model)
    X = np.zeros((3, model._net.layout.input_size))
    X[1, 0] = np.nan
    with pytest.raises(ValueError):
        model.predict_learn_many(X, np.zeros(3), ["a", "b", "c"])
    assert pickle.dumps(model) == before


def test_clone_resets_learned_state():
    model, data = _learned(RNNRegressor)
    fresh = model.clone()
    assert fresh.n_keys == 0 and fresh._net is None
    assert copy.deepcopy(model).n_keys == model.n_keys
