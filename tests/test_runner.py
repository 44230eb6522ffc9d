"""The runner over in-memory sources and sinks: delivery order, checkpoints, restarts,
dead letters, rebalances and rollbacks, with no broker involved."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_rnn.config import load
from stream_rnn.daemon import Runner, checkpoint_name
from stream_rnn.io.base import Partition
from stream_rnn.io.memory import MemorySink, MemorySource
from stream_rnn.metrics import Metrics
from stream_rnn.state.checkpoint import read_checkpoint

TOPIC = "events"


def _config(tmp_path, **overrides):
    base = {
        "kafka.input_topics": TOPIC,
        "state.checkpoint_dir": str(tmp_path / "ckpt"),
        "state.checkpoint_every_events": 50,
        "model.hidden_size": 8,
        "model.window": 8,
        "model.update_every": 4,
    }
    base.update(overrides)
    return load(env={}, overrides=base)


def _event(t, sensor, value, event_id=None):
    body = {"ts": 1_700_000_000 + 60 * t, "key": sensor, "features": {"temp": value}}
    if event_id is not None:
        body["id"] = event_id
    return json.dumps(body).encode()


def _fill(source, n=300, partitions=2, sensors=6, seed=0):
    rng = np.random.default_rng(seed)
    for t in range(n):
        for s in range(sensors):
            value = 20 + s + math.sin(t / 7 + s) + 0.1 * rng.normal()
            source.append(TOPIC, s % partitions, f"s{s}".encode(), _event(t, f"s{s}", value))


def _runner(config, source, sink=None):
    registry = CollectorRegistry()
    runner = Runner(config, source, sink or MemorySink(), Metrics.create(registry))
    return runner, registry


def _outputs(sink, topic="scores"):
    return [json.loads(v) for _, v, _ in sink.records.get(topic, [])]


def test_every_valid_event_gets_one_score_in_unit_interval(tmp_path):
    source = MemorySource()
    _fill(source)
    source.assign_all()
    sink = MemorySink()
    runner, registry = _runner(_config(tmp_path), source, sink)
    runner.run(max_idle_polls=2)
    out = _outputs(sink)
    assert len(out) == 300 * 6
    assert len({o["src"] for o in out}) == len(out)
    assert all(0.0 <= o["score"] <= 1.0 and isinstance(o["flag"], bool) for o in out)
    assert {o["key"] for o in out} == {f"s{s}" for s in range(6)}
    assert registry.get_sample_value("stream_rnn_events_scored_total", {"topic": TOPIC}) == 1800
    # A clean stop checkpoints and commits everything.
    for p in (0, 1):
        assert source.committed[Partition(TOPIC, p)] == 900
        manifest, _ = read_checkpoint(tmp_path / "ckpt", checkpoint_name(Partition(TOPIC, p)))
        assert manifest["next_offset"] == 900


def test_outputs_are_flushed_before_checkpoints_before_commits(tmp_path):
    order = []

    class Recording(MemorySink):
        def flush(self, timeout_s):
            order.append("flush")
            super().flush(timeout_s)

    class RecordingSource(MemorySource):
        def commit(self, offsets):
            order.append("commit")
            super().commit(offsets)

    source = RecordingSource()
    _fill(source, n=30, partitions=1, sensors=2)
    source.assign_all()
    runner, _ = _runner(_config(tmp_path, **{"state.checkpoint_every_events": 10,
                                             "limits.max_poll_records": 10}),
                        source, Recording())
    import stream_rnn.daemon as daemon

    real_write = daemon.write_checkpoint

    def recording_write(*args, **kwargs):
        order.append("checkpoint")
        return real_write(*args, **kwargs)

    daemon.write_checkpoint = recording_write
    try:
        runner.run(max_idle_polls=1)
    finally:
        daemon.write_checkpoint = real_write
    assert "commit" in order
    for i, step in enumerate(order):
        if step == "commit":
            assert order[i - 1] == "checkpoint"
        if step == "checkpoint":
            assert "flush" in order[:i]


def _state_of(tmp_path, name):
    manifest, arrays = read_checkpoint(tmp_path, name)
    return manifest, arrays


def test_restart_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    # Reference: one uninterrupted run.
    ref_source = MemorySource()
    _fill(ref_source, n=200, partitions=1, sensors=4)
    ref_source.assign_all()
    ref_runner, _ = _runner(_config(tmp_path / "ref"), ref_source)
    ref_runner.run(max_idle_polls=2)

    # Crash after some batches: no shutdown, so only periodic checkpoints exist.
    source = MemorySource()
    _fill(source, n=200, partitions=1, sensors=4)
    source.assign_all()
    cfg = _config(tmp_path / "crash", **{"limits.max_poll_records": 37})
    crashed, _ = _runner(cfg, source)
    for _ in range(9):
        crashed.step()
    # Restart: a new runner and a new consumer position from the committed offset.
    source2 = MemorySource()
    source2.topics = source.topics
    source2.committed = dict(source.committed)
    source2.assign_all()
    sink2 = MemorySink()
    restarted, _ = _runner(cfg, source2, sink2)
    restarted.run(max_idle_polls=2)
    name = checkpoint_name(Partition(TOPIC, 0))
    ref_manifest, ref_arrays = _state_of(tmp_path / "ref" / "ckpt", name)
    manifest, arrays = _state_of(tmp_path / "crash" / "ckpt", name)
    assert manifest["next_offset"] == ref_manifest["next_offset"] == 800
    assert set(arrays) == set(ref_arrays)
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], ref_arrays[key], err_msg=key)
    # The restart reprocessed exactly the records after the last checkpoint.
    first = min(int(json.loads(v)["src"].rsplit(":", 1)[1]) for _, v, _ in
                sink2.records["scores"])
    assert first == source.committed[Partition(TOPIC, 0)]


def test_bad_records_go_to_the_dead_letter_topic_with_reason_and_bytes(tmp_path):
    source = MemorySource()
    good = [_event(t, "s1", 1.0 + t % 3) for t in range(20)]
    bad = [b"not json", b"[1, 2]", b'{"ts": 1, "key": "s1"}',
           b'{"ts": 1, "key": "s1", "features": {"temp": "hot"}}',
           b'{"ts": 1, "key": "s1", "features": {"temp": NaN}}',
           b'{"ts": "yesterday", "key": "s1", "features": {"temp": 1}}',
           b'{"ts": 1, "key": "s1", "features": {"pressure": 3.0}}',
           b"x" * 70_000]
    for i, value in enumerate(good):
        source.append(TOPIC, 0, b"s1", value)
        if i < len(bad):
            source.append(TOPIC, 0, b"s1", bad[i])
    source.assign_all()
    sink = MemorySink()
    runner, registry = _runner(_config(tmp_path), source, sink)
    runner.run(max_idle_polls=2)
    assert len(_outputs(sink)) == len(good)
    dlq = sink.records["dead-letters"]
    assert [v for _, v, _ in dlq] == bad
    reasons = [dict(h)["dlq.reason"].decode() for _, _, h in dlq]
    assert reasons[0] == "not_json" and reasons[-1] == "oversize"
    assert "unknown_feature" in reasons
    total = sum(registry.get_sample_value("stream_rnn_events_dead_lettered_total",
                                          {"reason": r}) for r in set(reasons))
    assert total == len(bad)


def test_failed_dead_letter_write_pauses_the_partition_and_holds_commits(tmp_path):
    source = MemorySource()
    for t in range(10):
        source.append(TOPIC, 0, b"s1", _event(t, "s1", float(t)))
    source.append(TOPIC, 0, b"s1", b"garbage")
    for t in range(10, 20):
        source.append(TOPIC, 0, b"s1", _event(t, "s1", float(t)))
    source.assign_all()
    sink = MemorySink()
    sink.fail_topics = {"dead-letters"}
    runner, _ = _runner(_config(tmp_path, **{"limits.max_poll_records": 5}), source, sink)
    for _ in range(6):
        runner.step()
    p = Partition(TOPIC, 0)
    assert p in source.paused
    assert source.committed.get(p, 0) <= 10  # nothing past the undelivered dead letter
    sink.fail_topics = set()
    runner._backoff = 0.0
    runner.run(max_idle_polls=2)
    assert p not in source.paused
    assert [v for _, v, _ in sink.records["dead-letters"]] == [b"garbage"]
    assert source.committed[p] == 21


def test_revoke_checkpoints_and_commits_before_release_and_assign_restores(tmp_path):
    source = MemorySource()
    _fill(source, n=50, partitions=2, sensors=4)
    source.assign_all()
    cfg = _config(tmp_path, **{"state.checkpoint_every_events": 10_000})
    runner, _ = _runner(cfg, source)
    runner.step()
    p1 = Partition(TOPIC, 1)
    request = source.request("revoked", [p1])
    runner.step()
    assert request.is_done and request.error is None
    assert p1 not in runner.tasks
    offset = source.committed[p1]
    manifest, _ = read_checkpoint(tmp_path / "ckpt", checkpoint_name(p1))
    assert manifest["next_offset"] == offset > 0
    # Another runner (instance) takes it over from exactly there.
    other_source = MemorySource()
    other_source.topics = source.topics
    other_source.committed = dict(source.committed)
    other_source.request("assigned", [p1])
    other, _ = _runner(cfg, other_source)
    other.step()
    assert other.tasks[p1].next_offset >= offset


def test_lost_partitions_are_dropped_without_commit(tmp_path):
    source = MemorySource()
    _fill(source, n=20, partitions=1, sensors=2)
    source.assign_all()
    runner, _ = _runner(_config(tmp_path, **{"state.checkpoint_every_events": 10_000}),
                        source)
    runner.step()
    p = Partition(TOPIC, 0)
    source.request("lost", [p])
    runner.step()
    assert p not in runner.tasks and p not in source.committed


def test_non_finite_model_is_rolled_back_and_counted(tmp_path):
    source = MemorySource()
    _fill(source, n=100, partitions=1, sensors=2)
    source.assign_all()
    runner, registry = _runner(_config(tmp_path, **{"limits.max_poll_records": 50,
                                                    "state.checkpoint_every_events": 50}),
                               source)
    for _ in range(3):
        runner.step()
    task = runner.tasks[Partition(TOPIC, 0)]
    task.model.detector._net.theta[:] = np.nan  # a fault the guards could not stop
    runner.step()
    assert registry.get_sample_value("stream_rnn_rollbacks_total") == 1
    assert np.isfinite(runner.tasks[Partition(TOPIC, 0)].model.detector._net.theta).all()


def test_live_gauges_only_for_allow_listed_keys(tmp_path):
    source = MemorySource()
    _fill(source, n=40, partitions=1, sensors=3)
    source.assign_all()
    runner, registry = _runner(_config(tmp_path, **{"metrics.live_keys": "s1"}), source)
    runner.run(max_idle_polls=2)
    assert registry.get_sample_value("stream_rnn_live_score", {"key": "s1"}) is not None
    assert registry.get_sample_value("stream_rnn_live_score", {"key": "s2"}) is None
    assert registry.get_sample_value("stream_rnn_live_prediction",
                                     {"key": "s1", "feature": "temp"}) is not None
    # The actual reading next to the forecast: the latest one the key sent.
    records = source.topics[Partition(TOPIC, 0)]
    last_s1 = [json.loads(r.value) for r in records if r.key == b"s1"][-1]["features"]["temp"]
    assert registry.get_sample_value("stream_rnn_live_actual",
                                     {"key": "s1", "feature": "temp"}) == last_s1
    assert registry.get_sample_value("stream_rnn_live_actual",
                                     {"key": "s2", "feature": "temp"}) is None


PARTITION_GAUGES = ("stream_rnn_consumer_lag", "stream_rnn_keys_in_state",
                    "stream_rnn_model_version", "stream_rnn_event_time_lag_seconds",
                    "stream_rnn_last_checkpoint_timestamp_seconds")


@pytest.mark.parametrize("kind", ["revoked", "lost"])
def test_a_released_partition_stops_exporting_its_series(tmp_path, kind):
    source = MemorySource()
    _fill(source, n=50, partitions=2, sensors=4)
    source.assign_all()
    runner, registry = _runner(_config(tmp_path, **{"state.checkpoint_every_events": 20}),
                               source)
    for _ in range(3):
        runner.step()
    kept, released = ({"topic": TOPIC, "partition": str(p)} for p in (0, 1))
    for name in PARTITION_GAUGES:
        assert registry.get_sample_value(name, released) is not None, name
    source.request(kind, [Partition(TOPIC, 1)])
    runner.step()
    for name in PARTITION_GAUGES:
        # Its new owner exports these now: a frozen copy here would mislead the dashboards.
        assert registry.get_sample_value(name, released) is None, name
        assert registry.get_sample_value(name, kept) is not None, name


def test_unknown_task_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        _runner(_config(tmp_path, **{"model.task": "weather"}), MemorySource())


def test_warm_start_takes_weights_but_not_keys(tmp_path):
    source = MemorySource()
    _fill(source, n=60, partitions=1, sensors=3)
    source.assign_all()
    runner, _ = _runner(_config(tmp_path), source)
    runner.run(max_idle_polls=2)
    trained = runner  # noqa: F841 - its checkpoint is the warm start
    manifest_path = tmp_path / "ckpt" / (checkpoint_name(Partition(TOPIC, 0)) + ".json")
    fresh_source = MemorySource()
    fresh_source.append("other", 0, b"s1", _event(0, "s1", 20.0))
    fresh_source.assign_all()
    cfg = _config(tmp_path / "new", **{"state.warm_start": str(manifest_path)})
    warm, _ = _runner(cfg, fresh_source)
    warm.step()
    task = warm.tasks[Partition("other", 0)].model
    _, arrays = read_checkpoint(tmp_path / "ckpt", checkpoint_name(Partition(TOPIC, 0)))
    # Weights start from the checkpoint (one event has been learned since: no update yet
    # with update_every=4), keys start empty apart from the one event seen.
    np.testing.assert_array_equal(task.detector._net.theta, arrays["net/theta"])
    assert task.stats()["keys"] == 1


def test_warm_start_from_a_missing_file_is_a_clear_error(tmp_path):
    source = MemorySource()
    source.append(TOPIC, 0, b"s1", _event(0, "s1", 1.0))
    source.assign_all()
    cfg = _config(tmp_path, **{"state.warm_start": str(tmp_path / "nope.json")})
    runner, _ = _runner(cfg, source)
    with pytest.raises(RuntimeError, match="warm-start"):
        runner.step()


def test_a_failed_commit_does_not_stop_the_runner(tmp_path):
    from stream_rnn.io.base import CommitError

    class Flaky(MemorySource):
        calls = 0

        def commit(self, offsets):
            Flaky.calls += 1
            if Flaky.calls <= 2:
                raise CommitError("coordinator moving", retriable=True)
            super().commit(offsets)

    source = Flaky()
    _fill(source, n=60, partitions=1, sensors=2)
    source.assign_all()
    sink = MemorySink()
    runner, _ = _runner(_config(tmp_path, **{"limits.max_poll_records": 20,
                                             "state.checkpoint_every_events": 20}),
                        source, sink)
    runner.run(max_idle_polls=2)
    assert len(_outputs(sink)) == 120
    assert source.committed[Partition(TOPIC, 0)] == 120


def test_the_start_up_heap_is_frozen_once_after_the_first_batch(tmp_path, monkeypatch,
                                                              request):
    import gc
    import weakref

    import stream_rnn.daemon as daemon

    class Cyclic:
        pass

    garbage = Cyclic()
    garbage.me = garbage  # a reference cycle: only the collector can free it
    gone = weakref.ref(garbage)
    del garbage
    monkeypatch.setattr(daemon, "_heap_frozen", False)
    frozen_before = gc.get_freeze_count()
    thresholds = gc.get_threshold()
    request.addfinalizer(lambda: gc.set_threshold(*thresholds))

    idle = _runner(_config(tmp_path), MemorySource())[0]
    idle.run(max_idle_polls=2)
    assert not daemon._heap_frozen  # nothing processed yet: kernels may still compile

    source = MemorySource()
    _fill(source, n=20)
    source.assign_all()
    _runner(_config(tmp_path), source)[0].run(max_idle_polls=2)
    assert daemon._heap_frozen
    assert gc.get_freeze_count() > frozen_before
    assert gone() is None  # collected before the freeze, not frozen for good
    assert daemon.freeze_startup_heap() is False  # once per process
    assert gc.get_threshold()[0] >= daemon.GC_YOUNG_THRESHOLD
    assert gc.get_threshold()[1:] == thresholds[1:]
    # Reference cycles made while serving are still collected, only less often.
    later = Cyclic()
    later.me = later
    gone_later = weakref.ref(later)
    del later
    # The count is of allocations net of frees: a growing heap triggers a collection.
    growth = [[] for _ in range(daemon.GC_YOUNG_THRESHOLD + 1000)]
    del growth
    assert gone_later() is None


# ---------------------------------------------------------------------- pipelined delivery


def _offsets_scored(sink, topic="scores"):
    """{partition: set of input offsets whose output the sink acknowledged}."""
    done = {}
    for o in _outputs(sink, topic):
        _, partition, offset = o["src"].rsplit(":", 2)
        done.setdefault(int(partition), set()).add(int(offset))
    return done


class _CommitChecking(MemorySource):
    """Checks at every commit that each output below the committed offsets was
    acknowledged by the sink already."""

    def __init__(self, sink, without_output=()):
        super().__init__()
        self.sink = sink
        self.without_output = set(without_output)  # (partition, offset) of bad records
        self.commits = 0
        self.polls = 0

    def poll(self, timeout_s, max_records):
        self.polls += 1
        return super().poll(timeout_s, max_records)

    def commit(self, offsets):
        scored = _offsets_scored(self.sink)
        for p, offset in offsets.items():
            missing = {o for o in range(offset) if (p.partition, o) not in
                       self.without_output} - scored.get(p.partition, set())
            assert not missing, f"committing {p} at {offset} before outputs {sorted(missing)[:5]}"
        self.commits += 1
        super().commit(offsets)


def test_outputs_are_not_waited_for_after_every_poll_but_before_every_commit(tmp_path):
    sink = MemorySink()
    source = _CommitChecking(sink)
    _fill(source, n=100, partitions=2, sensors=4)
    source.assign_all()
    runner, _ = _runner(_config(tmp_path, **{"state.checkpoint_every_events": 60,
                                             "limits.max_poll_records": 10}), source, sink)
    runner.run(max_idle_polls=2)
    assert source.commits >= 400 // 60  # the cadence, and the stop
    assert sink.flushes <= source.commits + 2 < source.polls // 4
    assert _offsets_scored(sink) == {0: set(range(200)), 1: set(range(200))}


def test_too_many_unacknowledged_outputs_force_a_flush(tmp_path):
    backlog_at_flush = []

    class Watching(MemorySink):
        def flush(self, timeout_s):
            backlog_at_flush.append(len(self._pending))
            super().flush(timeout_s)

    sink = Watching()
    source = MemorySource()
    _fill(source, n=60, partitions=1, sensors=2)
    source.assign_all()
    runner, _ = _runner(_config(tmp_path, **{"state.checkpoint_every_events": 1_000_000,
                                             "limits.max_poll_records": 10,
                                             "limits.max_unacked_outputs": 25}),
                        source, sink)
    for _ in range(12):
        runner.step()
    # No checkpoint is due: only the bound flushes, once more than 25 wait (after 3 polls).
    assert backlog_at_flush == [30, 30, 30, 30]
    assert source.committed == {}


def test_an_unacknowledged_backlog_bound_below_one_is_a_clear_error(tmp_path):
    from stream_rnn.config import ConfigError

    with pytest.raises(ConfigError, match="limits.max_unacked_outputs: must be >= 1"):
        _config(tmp_path, **{"limits.max_unacked_outputs": 0})


def _reference_state(tmp_path, records_fill):
    source = MemorySource()
    records_fill(source)
    source.assign_all()
    cfg = _config(tmp_path / "ref")
    _runner(cfg, source)[0].run(max_idle_polls=2)
    name = checkpoint_name(Partition(TOPIC, 0))
    return read_checkpoint(tmp_path / "ref" / "ckpt", name)[1]


@pytest.mark.parametrize("detected_by", ["check", "flush"])
def test_a_failed_output_is_scored_again_not_lost(tmp_path, detected_by):
    def fill(source):
        _fill(source, n=60, partitions=1, sensors=3)

    sink = MemorySink()
    source = _CommitChecking(sink)
    fill(source)
    source.assign_all()
    overrides = {"state.checkpoint_every_events": 40, "limits.max_poll_records": 10}
    if detected_by == "flush":
        # Failures then surface only when a checkpoint's flush finds them.
        class Late(MemorySink):
            def check_delivery(self):
                return len(self._pending)

        sink = source.sink = Late()
    runner, _ = _runner(_config(tmp_path, **overrides), source, sink)
    for _ in range(6):  # 60 records: one checkpoint at 40
        runner.step()
    p = Partition(TOPIC, 0)
    assert source.committed[p] == 40
    sink.fail_topics = {"scores"}
    for _ in range(4):  # 40 more records, whose outputs fail
        runner.step()
    assert source.committed[p] == 40
    assert p in source.paused  # back at its checkpoint, waiting out the backoff
    sink.fail_topics = set()
    runner._backoff = 0.0
    runner.run(max_idle_polls=3)
    assert source.committed[p] == 180
    # Every output arrived (those after the checkpoint possibly twice), and the state is
    # the uninterrupted run's.
    assert _offsets_scored(sink) == {0: set(range(180))}
    name = checkpoint_name(p)
    arrays = read_checkpoint(tmp_path / "ckpt", name)[1]
    reference = _reference_state(tmp_path, fill)
    assert set(arrays) == set(reference)
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], reference[key], err_msg=key)


def test_an_output_failure_then_a_good_flush_does_not_commit_past_the_lost_outputs(tmp_path):
    # The failure is reported once; the next flush succeeds. A checkpoint after it must
    # not cover the outputs that failed.
    sink = MemorySink()
    source = _CommitChecking(sink)
    _fill(source, n=50, partitions=1, sensors=2)
    source.assign_all()
    runner, _ = _runner(_config(tmp_path, **{"state.checkpoint_every_events": 15,
                                             "limits.max_poll_records": 10}), source, sink)
    sink.fail_topics = {"scores"}
    runner.step()  # the outputs of 0-9 fail
    sink.fail_topics = set()
    runner._backoff = 0.0
    runner.run(max_idle_polls=3)  # _CommitChecking fails the test on a commit past a gap
    assert source.committed[Partition(TOPIC, 0)] == 100
    assert _offsets_scored(sink) == {0: set(range(100))}


def test_a_dead_letter_failure_holds_its_partition_while_the_others_checkpoint(tmp_path):
    sink = MemorySink()
    source = _CommitChecking(sink, without_output=[(0, 6)])
    for t in range(30):
        for p in (0, 1):
            source.append(TOPIC, p, b"s1", _event(t, f"s{p}", float(t)))
            if p == 0 and t == 5:
                source.append(TOPIC, 0, b"s1", b"garbage")
    source.assign_all()
    runner, _ = _runner(_config(tmp_path, **{"state.checkpoint_every_events": 8,
                                             "limits.max_poll_records": 4}), source, sink)
    sink.fail_topics = {"dead-letters"}
    for _ in range(30):
        runner.step()
    p0, p1 = Partition(TOPIC, 0), Partition(TOPIC, 1)
    assert p0 in source.paused
    assert source.committed.get(p0, 0) <= 5  # not past the dead letter at offset 6
    assert source.committed[p1] == 24  # checkpoints (every 8) with flushes went on
    sink.fail_topics = set()
    runner._backoff = 0.0
    runner.run(max_idle_polls=3)
    assert p0 not in source.paused
    assert [v for _, v, _ in sink.records["dead-letters"]] == [b"garbage"]
    assert source.committed[p0] == 31


def test_a_failed_dead_letter_of_a_bad_label_is_kept_and_written_later(tmp_path):
    source = MemorySource()
    labels = Partition("labels", 0)
    for t in range(10):
        source.append(TOPIC, 0, b"s1", _event(t, "s1", float(t)))
    source.append("labels", 0, None, b"not a label")
    source.append("labels", 0, None, b'{"id": "e1"}')  # no label: a second bad one
    source.assign_all()
    sink = MemorySink()
    sink.fail_topics = {"dead-letters"}
    runner, _ = _runner(_config(tmp_path, **{"kafka.labels_topic": "labels"}), source, sink)
    runner.step()
    # Both letters failed: the labels partition waits, the events partition does not.
    assert labels in source.paused and Partition(TOPIC, 0) not in source.paused
    source.append("labels", 0, None, b"[]")
    source.append(TOPIC, 0, b"s1", _event(10, "s1", 10.0))
    for _ in range(3):
        runner.step()
    assert source.positions[labels] == 2  # nothing read past the kept letters
    assert source.positions[Partition(TOPIC, 0)] == 11
    assert "dead-letters" not in sink.records
    sink.fail_topics = set()
    runner._backoff = 0.0
    runner.run(max_idle_polls=3)
    assert labels not in source.paused
    letters = [(v, dict(h)["dlq.reason"]) for _, v, h in sink.records["dead-letters"]]
    assert letters == [(b"not a label", b"not_json"), (b'{"id": "e1"}', b"missing_field"),
                       (b"[]", b"not_object")]
    assert len(_outputs(sink)) == 11
