"""The per-event API's fast paths give exactly what the plain paths give: the step a
prediction keeps for the learning call that follows, target scaling inside the learning
call, the dict-to-vector fast path, and the loss statistics the batch path leaves."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from stream_rnn.cells.network import Network
from stream_rnn.models import RNNClassifier, RNNRegressor


def _events(n, n_keys, seed, names=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(names)))
    y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(0, 0.1, n)
    keys = [f"k{k}" for k in rng.integers(0, n_keys, n)]
    return X, y, keys, list(names)


def _row(names, values):
    return dict(zip(names, values.tolist(), strict=True))


def _assert_same_model(a, b):
    np.testing.assert_array_equal(a._net.theta, b._net.theta)
    np.testing.assert_array_equal(a._net.opt, b._net.opt)
    ra, rb = a._store.arrays, b._store.arrays
    for name in ("state", "snapshot", "window_len", "pending"):
        np.testing.assert_array_equal(ra[name], rb[name], err_msg=name)
    # Window rows past a key's length are scratch (a batch does not zero them).
    for slot, n in enumerate(ra["window_len"]):
        for name in ("window_inputs", "window_targets"):
            np.testing.assert_array_equal(ra[name][slot, :n], rb[name][slot, :n])
    assert a.n_updates == b.n_updates
    assert a.n_evictions == b.n_evictions


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("update_every", [1, 4])
@pytest.mark.parametrize(("max_keys", "dtype"), [(100, "float32"), (3, "float32"),
                                                 (3, "float64")])
def test_per_event_loop_and_batch_agree_bit_for_bit(cell, update_every, max_keys, dtype):
    X, y, keys, names = _events(240, 7, seed=len(cell) + update_every)
    params = dict(cell=cell, hidden_size=6, window=6, update_every=update_every, seed=3,
                  max_keys=max_keys, dtype=dtype)
    loop, batch = RNNRegressor(**params), RNNRegressor(**params)
    first = _row(names, X[0])
    for m in (loop, batch):
        m.learn_one(first, y[0], key=keys[0])
    expected = []
    for i in range(1, len(y)):
        x = _row(names, X[i])
        expected.append(loop.predict_one(x, key=keys[i]))
        loop.learn_one(x, y[i], key=keys[i])
    got = batch.predict_learn_many(X[1:], y[1:], keys[1:])
    np.testing.assert_array_equal(got, expected)
    _assert_same_model(loop, batch)
    assert loop.n_updates > 0
    assert (batch.last_loss, batch.last_grad_norm) == (loop.last_loss, loop.last_grad_norm)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_kept_step_learns_exactly_what_a_fresh_step_learns(cell):
    """Predictions never move state, so a model that predicts in any pattern between its
    learning calls must end bit for bit where a model that only learns ends, whether or
    not a learning call could reuse the step of the prediction before it."""
    X, y, keys, names = _events(400, 5, seed=7)
    params = dict(cell=cell, hidden_size=5, window=5, update_every=2, seed=1, max_keys=4,
                  dtype="float32")
    predicting, learning_only = RNNRegressor(**params), RNNRegressor(**params)
    rng = random.Random(0)
    for i in range(len(y)):
        x = _row(names, X[i])
        roll = rng.random()
        if roll < 0.5:  # the usual pattern: predict, then learn the same event
            predicting.predict_one(x, key=keys[i])
        elif roll < 0.6:  # another key's prediction in between
            predicting.predict_one(x, key=keys[i])
            predicting.predict_one(x, key=rng.choice(keys))
        elif roll < 0.7:  # the same key, another input
            other = _row(names, X[rng.randrange(len(y))])
            predicting.predict_one(other, key=keys[i])
        elif roll < 0.8:  # predicted for a key, learned for another with the same state
            predicting.predict_one(x, key="never-learned")
        predicting.learn_one(x, y[i], key=keys[i])
        learning_only.learn_one(x, y[i], key=keys[i])
    _assert_same_model(predicting, learning_only)
    assert predicting.n_updates > 50
    probe = _row(names, X[0])
    for key in keys[-5:]:
        assert predicting.predict_one(probe, key=key) == learning_only.predict_one(probe,
                                                                                     key=key)


def test_kept_step_is_dropped_when_weights_change_in_between():
    X, y, keys, names = _events(60, 1, seed=2)
    params = dict(cell="lstm", hidden_size=4, window=4, update_every=1, seed=0,
                  dtype="float32")
    a, b = RNNRegressor(**params), RNNRegressor(**params)
    for i in range(30):
        x = _row(names, X[i])
        a.learn_one(x, y[i], key="k")
        b.learn_one(x, y[i], key="k")
    x = _row(names, X[30])
    a.predict_one(x, key="k")
    # Another key's update moves the weights after the prediction was made.
    other = _row(names, X[31])
    for m in (a, b):
        m.learn_one(other, y[31], key="other")
        m.learn_one(x, y[30], key="k")
    _assert_same_model(a, b)


def test_classifier_per_event_loop_and_batch_agree_with_loss_statistics():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    keys = [f"k{k}" for k in rng.integers(0, 4, 200)]
    params = dict(cell="gru", hidden_size=4, window=4, update_every=2, seed=0)
    loop, batch = RNNClassifier(**params), RNNClassifier(**params)
    for m in (loop, batch):
        m.learn_one({"a": float(X[0, 0]), "b": float(X[0, 1])}, 1, key=keys[0])
        m.learn_one({"a": float(X[0, 0]), "b": float(X[0, 1])}, 0, key=keys[0])
    expected = []
    for i in range(1, 200):
        x = {"a": float(X[i, 0]), "b": float(X[i, 1])}
        expected.append(loop.predict_proba_one(x, key=keys[i])[True])
        loop.learn_one(x, int(y[i]), key=keys[i])
    got = batch.predict_proba_learn_many(X[1:], y[1:], keys[1:])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    _assert_same_model(loop, batch)
    assert (batch.last_loss, batch.last_grad_norm) == (loop.last_loss, loop.last_grad_norm)


def test_batch_leaves_the_last_updates_loss_and_norm():
    net = Network("lstm", input_size=2, hidden_size=4, target_size=1, window=4,
                  update_every=2, lr=0.01, seed=0)
    keyed = net.keyed_arrays(2)
    rng = np.random.default_rng(0)
    U = rng.normal(size=(9, 2)).astype(np.float32)
    Y = rng.normal(size=(9, 1)).astype(np.float32)
    slots = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0])
    _, losses, norms = net.run_batch(keyed, slots, np.zeros(9, bool), U, Y, np.ones(9, bool))
    last = np.flatnonzero(~np.isnan(losses))[-1]
    assert last == 7
    assert net.stats[0] == losses[last] and net.stats[1] == norms[last]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vector_fast_path_gives_the_checked_paths_vector(dtype):
    model = RNNRegressor(hidden_size=3, window=3, seed=0, dtype=dtype)
    model.learn_one({"b": 1.0, "a": 2.0, "c": 3.0}, 0.0)
    ints = np.int32 if dtype == "float32" else np.int64
    checked = np.zeros(3, dtype=dtype)
    other = np.zeros(3, dtype=dtype)
    cases = [
        {"a": 0.1, "b": -0.2, "c": 0.3},
        {"c": 0.3, "a": 0.1, "b": -0.2},  # another order
        {"a": 1, "b": True, "c": np.float32(0.25)},  # ints, bools, NumPy scalars
        {"a": np.float64(1e308), "b": 1e308, "c": -0.0},  # finite, though the sum is not
        {"a": 16777217, "b": 2.0**60 + 1, "c": 3.4e39},  # rounded (float32: to inf)
        {"a": 0.5, "c": 1.5},  # a feature missing
    ]
    for x in cases:
        with np.errstate(over="ignore"):
            model._vectorize_checked(x, checked, learning=False)
            # The estimator's own input buffer (packed) and any other array (assigned).
            for out in (model._buf.u, other):
                out[:] = np.nan
                model._vectorize(x, out, learning=False)
                np.testing.assert_array_equal(out.view(ints), checked.view(ints),
                                              err_msg=repr(x))
    assert model._vector_plan[3] is model._buf.u
    for bad, name in (({"a": 0.1, "b": float("nan"), "c": 0.3}, "'b'"),
                      ({"a": 0.1, "b": 0.2, "c": float("inf")}, "'c'"),
                      ({"a": "x", "b": 0.2, "c": 0.3}, "'a'"),
                      ({"a": 0.1, "b": None, "c": 0.3}, "'b'")):
        with pytest.raises(ValueError, match=name):
            model._vectorize(bad, model._buf.u, learning=False)


def test_pickled_model_rebinds_its_per_event_calls():
    X, y, keys, names = _events(80, 3, seed=4)
    model = RNNRegressor(hidden_size=4, window=4, update_every=2, seed=0)
    for i in range(40):
        x = _row(names, X[i])
        model.predict_one(x, key=keys[i])
        model.learn_one(x, y[i], key=keys[i])
    copy = pickle.loads(pickle.dumps(model))
    for i in range(40, 80):
        x = _row(names, X[i])
        assert model.predict_one(x, key=keys[i]) == copy.predict_one(x, key=keys[i])
        model.learn_one(x, y[i], key=keys[i])
        copy.learn_one(x, y[i], key=keys[i])
    _assert_same_model(model, copy)
    assert model._y_count[0] == copy._y_count[0] == 80


def test_bound_buffers_must_be_what_the_kernels_take():
    net = Network("lstm", input_size=2, hidden_size=3, target_size=1, window=2)
    keyed = net.keyed_arrays(1)
    ok = np.zeros(2, np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32)
    net.bind_events(keyed, *ok)
    with pytest.raises(ValueError, match="u must be"):
        net.bind_events(keyed, np.zeros(2), ok[1], ok[2])
    with pytest.raises(ValueError, match="out must be"):
        net.bind_events(keyed, ok[0], ok[1], np.zeros(3, np.float32))


def test_anomaly_detector_batch_reports_the_per_event_loss_statistics():
    from stream_rnn.models import RNNAnomalyDetector

    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 2))
    keys = [f"k{i % 5}" for i in range(300)]
    per_event = RNNAnomalyDetector(hidden_size=6, window=6, update_every=3, seed=2)
    batch = RNNAnomalyDetector(hidden_size=6, window=6, update_every=3, seed=2)
    for detector in (per_event, batch):
        detector.learn_one({"a": X[0, 0], "b": X[0, 1]}, key=keys[0])
    for row, key in zip(X[1:], keys[1:], strict=True):
        per_event.score_one({"a": row[0], "b": row[1]}, key=key)
        per_event.learn_one({"a": row[0], "b": row[1]}, key=key)
    batch.score_learn_many(X[1:], keys[1:])
    assert np.isfinite(batch.last_loss) and batch.last_loss > 0
    assert (batch.last_loss, batch.last_grad_norm) == (per_event.last_loss,
                                                       per_event.last_grad_norm)
