"""Keyed store and checkpoints: bounded, exact round trips, atomic on disk."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from stream_rnn.models import RNNAnomalyDetector, RNNClassifier, RNNForecaster, RNNRegressor
from stream_rnn.state import KeyedState
from stream_rnn.state.checkpoint import CheckpointError, read_checkpoint, write_checkpoint


def test_store_grows_by_doubling_up_to_the_cap_and_keeps_rows():
    store = KeyedState({"h": np.zeros((1, 2))}, max_keys=10, initial_capacity=2)
    for i in range(7):
        slot, new = store.slot_for(f"k{i}")
        assert new
        store.arrays["h"][slot] = i
    assert store.capacity == 8
    for i in range(7):
        assert store.arrays["h"][store.get(f"k{i}")][0] == i
    for i in range(7, 15):
        store.slot_for(f"k{i}")
    assert len(store) == 10 and store.capacity == 10 and store.evictions == 5


def test_store_remove_frees_the_slot_for_reuse():
    store = KeyedState({"h": np.zeros((1, 1))}, max_keys=3)
    for k in "abc":
        store.slot_for(k)
    slot_b = store.get("b")
    assert store.remove("b") and not store.remove("b")
    assert store.slot_for("d") == (slot_b, True)
    assert store.evictions == 0


def test_store_export_load_round_trip_keeps_recency_order():
    store = KeyedState({"h": np.zeros((1, 2)), "n": np.zeros(1, np.int64)}, max_keys=5)
    for k in ["a", "b", "c", "a"]:
        slot, _ = store.slot_for(k)
        store.arrays["h"][slot] += 1
        store.arrays["n"][slot] += 1
    keys, rows = store.export()
    assert keys == ["b", "c", "a"]
    other = KeyedState({"h": np.zeros((1, 2)), "n": np.zeros(1, np.int64)}, max_keys=5)
    other.load(keys, rows)
    assert other.keys_by_slot() == keys
    assert other.arrays["n"][other.get("a")] == 2
    other.slot_for("d")
    other.slot_for("e")
    other.slot_for("f")  # evicts "b", the least recently used before export
    assert "b" not in other and "a" in other


def test_store_load_rejects_mismatched_rows():
    store = KeyedState({"h": np.zeros((1, 2))}, max_keys=5)
    with pytest.raises(ValueError, match="shape"):
        store.load(["a"], {"h": np.zeros((1, 3))})
    with pytest.raises(ValueError, match="match"):
        store.load(["a"], {"x": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="max_keys"):
        store.load(list("abcdef"), {"h": np.zeros((6, 2))})


def _train(model, n=200, keys=("s1", "s2", "s3")):
    rng = np.random.default_rng(0)
    for i in range(n):
        x = {"a": float(rng.normal()), "b": float(rng.normal())}
        key = keys[i % len(keys)]
        if isinstance(model, RNNAnomalyDetector):
            model.learn_one(x, key=key)
        elif isinstance(model, RNNForecaster):
            model.learn_one(x["a"], {"b": x["b"]}, key=key)
        elif isinstance(model, RNNClassifier):
            model.learn_one(x, x["a"] > 0, key=key)
        else:
            model.learn_one(x, x["a"] - x["b"], key=key)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier, RNNForecaster,
                                 RNNAnomalyDetector])
def test_model_state_round_trips_through_a_checkpoint(cls, tmp_path):
    a = cls(hidden_size=6, window=5, update_every=2, dropout=0.0, seed=3, max_keys=2)
    _train(a)
    meta, arrays = a.export_state()
    write_checkpoint(tmp_path, "task-0", {"model": meta}, arrays)
    manifest, loaded = read_checkpoint(tmp_path, "task-0")
    b = cls.from_state(manifest["model"], loaded)
    # Continuing both from here gives identical weights and per-key state.
    _train(a, n=60, keys=("s3", "s4"))
    _train(b, n=60, keys=("s3", "s4"))
    np.testing.assert_array_equal(a._net.theta, b._net.theta)
    assert a._store.keys_by_slot() == b._store.keys_by_slot()
    for key in a._store:
        for name in a._store.arrays:
            np.testing.assert_array_equal(a._store.arrays[name][a._store.get(key)],
                                          b._store.arrays[name][b._store.get(key)])
    assert a.n_evictions == b.n_evictions


def test_unfitted_model_round_trips():
    meta, arrays = RNNRegressor(hidden_size=3).export_state()
    restored = RNNRegressor.from_state(json.loads(json.dumps(meta)), arrays)
    assert restored._net is None and restored.hidden_size == 3


def test_from_state_refuses_another_class():
    meta, arrays = RNNRegressor().export_state()
    with pytest.raises(ValueError, match="RNNRegressor"):
        RNNClassifier.from_state(meta, arrays)


def test_checkpoint_replaces_generations_and_removes_the_old_arrays(tmp_path):
    for i in range(3):
        write_checkpoint(tmp_path, "p-1", {"offset": i}, {"x": np.full(2, i)})
    manifest, arrays = read_checkpoint(tmp_path, "p-1")
    assert manifest["offset"] == 2 and arrays["x"].tolist() == [2, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-1.2.npz", "p-1.json"]


def test_missing_checkpoint_reads_as_none(tmp_path):
    assert read_checkpoint(tmp_path, "nothing") is None


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    write_checkpoint(tmp_path, "p-2", {"offset": 1}, {"x": np.zeros(2)})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_checkpoint(tmp_path, "p-2", {"offset": 2}, {"x": np.ones(2)})
    monkeypatch.undo()
    manifest, arrays = read_checkpoint(tmp_path, "p-2")
    assert manifest["offset"] == 1 and arrays["x"].tolist() == [0.0, 0.0]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_damaged_checkpoints_raise_a_clear_error(tmp_path):
    write_checkpoint(tmp_path, "p-3", {"offset": 1}, {"x": np.zeros(2)})
    (tmp_path / "p-3.0.npz").write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="unreadable arrays"):
        read_checkpoint(tmp_path, "p-3")
    (tmp_path / "p-3.json").write_text("{")
    with pytest.raises(CheckpointError, match="manifest"):
        read_checkpoint(tmp_path, "p-3")


def test_checkpoints_never_hold_objects(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_checkpoint(tmp_path, "p-4", {}, {"x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="name"):
        write_checkpoint(tmp_path, "../escape", {}, {})


def test_slots_for_a_batch_equals_slot_for_each_key_in_turn():
    # Repeats, new keys, evictions (8 slots for 20 keys) and freed slots, in random batches.
    rng = np.random.default_rng(5)
    batch = KeyedState({"h": np.zeros((1, 1))}, max_keys=8, initial_capacity=2)
    in_turn = KeyedState({"h": np.zeros((1, 1))}, max_keys=8, initial_capacity=2)
    for step in range(300):
        pool = 6 if step % 3 else 20  # mostly batches of known keys: the fast path
        keys = [f"k{k}" for k in rng.integers(0, pool, size=int(rng.integers(0, 12)))]
        slots, fresh = batch.slots_for(keys)
        expected = [in_turn.slot_for(key) for key in keys]
        assert slots.dtype == np.int64 and fresh.dtype == np.bool_
        assert list(zip(slots.tolist(), fresh.tolist(), strict=True)) == expected
        assert list(batch) == list(in_turn)  # the same recency order: the same evictions
        assert (batch.evictions, batch.capacity) == (in_turn.evictions, in_turn.capacity)
        if step % 17 == 0 and keys:
            assert batch.remove(keys[0]) == in_turn.remove(keys[0])
