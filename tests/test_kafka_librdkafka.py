"""The daemon's guarantees with the librdkafka client stack (``--kafka-client librdkafka``)
against a real Kafka-protocol broker (Tansu): every event scored once, a clean stop leaves
no duplicates, kill -9 ends in the state of an uninterrupted run, compressed input is read,
two instances hand partitions over, a frozen broker loses nothing, a missing broker is
logged and reported as not ready.

The daemon runs as a subprocess; the helpers are those of ``test_daemon_kafka.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from broker import FAST_GROUP, free_port, produce
from prometheus_client import CollectorRegistry
from test_daemon_kafka import (
    MODEL,
    _assert_same_state,
    _events,
    _read_all,
    _reference_checkpoints,
    _serve,
    _srcs,
    _stop,
    _topics,
    _wait_for_offsets,
)

from stream_rnn.cli import main
from stream_rnn.config import ConfigError, load
from stream_rnn.daemon import Runner
from stream_rnn.io import CommitError, DeliveryError
from stream_rnn.io.base import Partition
from stream_rnn.io.confluent import ConfluentSink, ConfluentSource
from stream_rnn.io.memory import MemorySink, MemorySource
from stream_rnn.metrics import Metrics

pytestmark = pytest.mark.slow

CODECS = ("gzip", "snappy", "lz4", "zstd")


def _serve_rd(bootstrap, topics, workdir, extra=()):
    return _serve(bootstrap, topics, workdir, extra=("--kafka-client", "librdkafka", *extra))


def _all_srcs(topic, records):
    per_partition = Counter(partition for partition, _, _ in records)
    return {f"{topic}:{p}:{o}" for p, n in per_partition.items() for o in range(n)}


def _logs(workdir):
    return "".join(p.read_text(errors="replace") for p in sorted(workdir.glob("serve-*.log")))


@pytest.fixture(scope="module", autouse=True)
def _compiled_kernels(tmp_path_factory):
    # Compile (and cache) the kernels once in-process so daemon subprocesses start fast.
    source = MemorySource()
    for partition, key, value in _events(20, 2):
        source.append("warm", partition, key, value)
    source.assign_all()
    cfg = load(env={}, overrides={
        "kafka.input_topics": "warm",
        "state.checkpoint_dir": str(tmp_path_factory.mktemp("warm")), **MODEL})
    Runner(cfg, source, MemorySink(), Metrics.create(CollectorRegistry())).run(
        max_idle_polls=1)


def test_compressed_input_is_scored_once_and_a_restart_after_sigterm_repeats_nothing(
        kafka_broker, new_topic, tmp_path):
    topics = _topics(new_topic)
    records = _events(160, 4, seed=1)
    first, second = records[:400], records[400:]
    # Written by kafka-python, one codec per quarter of the first part.
    quarter = len(first) // len(CODECS)
    for i, codec in enumerate(CODECS):
        produce(kafka_broker, topics["in"], first[i * quarter:(i + 1) * quarter],
                compression_type=codec)
    proc = _serve_rd(kafka_broker, topics, tmp_path)
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(first))
    finally:
        assert _stop(proc) == 0
    srcs = _srcs(out)
    assert sorted(srcs) == sorted(_all_srcs(topics["in"], first))  # each exactly once
    assert "Kafka client: librdkafka" in _logs(tmp_path)

    produce(kafka_broker, topics["in"], second)
    proc = _serve_rd(kafka_broker, topics, tmp_path)
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records))
    finally:
        assert _stop(proc) == 0
    srcs = _srcs(out)
    assert len(srcs) == len(set(srcs)) == len(records)
    assert set(srcs) == _all_srcs(topics["in"], records)
    _assert_same_state(tmp_path, topics["in"],
                       _reference_checkpoints(records, topics["in"], tmp_path))


def test_kill_9_then_restart_ends_in_the_state_of_an_uninterrupted_run(
        kafka_broker, new_topic, tmp_path):
    topics = _topics(new_topic)
    records = _events(300, 4, seed=2)
    half = len(records) // 2
    produce(kafka_broker, topics["in"], records[:half])
    proc = _serve_rd(kafka_broker, topics, tmp_path)
    try:
        _read_all(kafka_broker, topics["out"], 2, expect=half)
        produce(kafka_broker, topics["in"], records[half:])
        # Killed while the second half is being answered, between checkpoints.
        _read_all(kafka_broker, topics["out"], 2, expect=half + 50, idle_s=0.1)
    finally:
        proc.kill()
        proc.wait()
    proc = _serve_rd(kafka_broker, topics, tmp_path)
    try:
        _wait_for_offsets(tmp_path, topics["in"], {0: 600, 1: 600}, timeout_s=60)
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records))
    finally:
        assert _stop(proc) == 0
    assert set(_srcs(out)) == _all_srcs(topics["in"], records)
    _assert_same_state(tmp_path, topics["in"],
                       _reference_checkpoints(records, topics["in"], tmp_path))


def test_two_instances_hand_partitions_over_with_their_state(kafka_broker, new_topic,
                                                             tmp_path):
    topics = _topics(new_topic)
    records = _events(300, 4, seed=3)
    half = len(records) // 2
    produce(kafka_broker, topics["in"], records[:half])
    a = _serve_rd(kafka_broker, topics, tmp_path)
    _read_all(kafka_broker, topics["out"], 2, expect=half // 2, timeout_s=60)
    b = _serve_rd(kafka_broker, topics, tmp_path)
    time.sleep(8)  # let the group rebalance onto both
    produce(kafka_broker, topics["in"], records[half:])
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records), timeout_s=90)
    finally:
        assert _stop(b) == 0
        assert _stop(a) == 0
    srcs = _srcs(out)
    assert set(srcs) == _all_srcs(topics["in"], records)
    # A revoked partition is checkpointed and committed before it is released, so its new
    # owner answers nothing twice.
    assert len(srcs) == len(set(srcs))
    logs = _logs(tmp_path)
    assert "rebalance: revoked" in logs and "rebalance: assigned" in logs
    _assert_same_state(tmp_path, topics["in"],
                       _reference_checkpoints(records, topics["in"], tmp_path))


def test_broker_frozen_mid_run_then_resumed_loses_nothing(private_broker, tmp_path):
    broker = private_broker.start()
    topics = {"in": broker.create_topic(partitions=2), "out": broker.create_topic(partitions=2),
              "dlq": broker.create_topic(), "group": "g-frozen"}
    records = _events(300, 4, seed=6)
    produce(broker.bootstrap, topics["in"], records[:300])
    proc = _serve_rd(broker.bootstrap, topics, tmp_path)
    try:
        _read_all(broker.bootstrap, topics["out"], 2, expect=100, timeout_s=60)
        with broker.frozen_for():
            time.sleep(4)
        produce(broker.bootstrap, topics["in"], records[300:])
        out = _read_all(broker.bootstrap, topics["out"], 2, expect=len(records), timeout_s=90)
        assert proc.poll() is None
    finally:
        assert _stop(proc) == 0
    assert set(_srcs(out)) == _all_srcs(topics["in"], records)


def test_no_broker_is_logged_and_reported_not_ready_and_sigterm_still_stops(tmp_path):
    bootstrap = f"127.0.0.1:{free_port()}"  # nobody listens there
    topics = {"in": "events", "out": "scores", "dlq": "dead", "group": "g-none"}
    proc = _serve_rd(bootstrap, topics, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while "cannot reach" not in _logs(tmp_path):
            assert proc.poll() is None, _logs(tmp_path)
            assert time.monotonic() < deadline, _logs(tmp_path)
            time.sleep(0.2)
        logs = _logs(tmp_path)
        assert f"Kafka consumer cannot reach {bootstrap}" in logs
        port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", logs).group(1)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert re.search(rb"^stream_rnn_ready 0\.0$", body, re.MULTILINE), body[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    assert "Traceback" not in _logs(tmp_path)


def _poll_until(source, done, timeout_s=30.0, on_request=None):
    """Poll like the runner (taking rebalance steps first) until ``done(records)``."""
    records = []
    deadline = time.monotonic() + timeout_s
    while not done(records):
        assert time.monotonic() < deadline, f"got {[(r.partition, r.offset) for r in records]}"
        for request in source.rebalance_requests():
            if on_request is not None:
                on_request(request)
            request.done()
        for batch in source.poll(0.2, 500).values():
            records.extend(batch)
    return records


def test_source_seeks_at_assignment_pauses_resumes_reports_lag_and_commits(kafka_broker,
                                                                           new_topic):
    topic = new_topic(2)
    p0, p1 = Partition(topic, 0), Partition(topic, 1)
    produce(kafka_broker, topic, [(p, None, b"%d" % i) for p in (0, 1) for i in range(10)])
    source = ConfluentSource([topic], bootstrap_servers=kafka_broker,
                             group_id=f"g-src-{time.monotonic_ns()}",
                             consumer_options=FAST_GROUP, rebalance_timeout_s=5.0)
    try:
        def restore(request):  # as the runner does with its checkpoints
            if request.kind == "assigned":
                source.seek(p1, 3)

        got = _poll_until(source, lambda rs: len(rs) == 17, on_request=restore)
        assert sorted((r.partition, r.offset) for r in got) == (
            [(0, o) for o in range(10)] + [(1, o) for o in range(3, 10)])
        assert source.ready()
        assert source.lag() == {p0: 0, p1: 0}

        source.pause([p0])
        produce(kafka_broker, topic, [(p, None, b"late") for p in (0, 1) for _ in range(5)])
        got = _poll_until(source, lambda rs: len(rs) == 5)
        assert [(r.partition, r.offset) for r in got] == [(1, o) for o in range(10, 15)]
        time.sleep(0.5)
        assert source.poll(0.3, 500) == {}  # still paused
        assert source.lag()[p1] == 0

        source.resume([p0])
        got = _poll_until(source, lambda rs: len(rs) == 5)
        assert [(r.partition, r.offset) for r in got] == [(0, o) for o in range(10, 15)]

        source.seek(p1, 12)
        got = _poll_until(source, lambda rs: len(rs) == 3)
        assert [(r.partition, r.offset) for r in got] == [(1, 12), (1, 13), (1, 14)]

        source.commit({p0: 15, p1: 15})
        assert source.committed(p0) == 15 and source.committed(p1) == 15
        with pytest.raises(CommitError, match="not assigned here") as info:
            source.commit({Partition(topic, 7): 1})
        assert not info.value.retriable
    finally:
        source.close()


def test_a_revoke_not_done_in_time_expires_and_its_commit_is_refused(kafka_broker,
                                                                     new_topic):
    topic = new_topic(2)
    group = f"g-expire-{time.monotonic_ns()}"

    def member():
        return ConfluentSource([topic], bootstrap_servers=kafka_broker, group_id=group,
                               consumer_options=FAST_GROUP, rebalance_timeout_s=1.0)

    a, b = member(), member()
    stop = threading.Event()
    joiner = None
    try:
        _poll_until(a, lambda rs: len(a.assignment()) == 2)

        def run_b():
            while not stop.is_set():
                for request in b.rebalance_requests():
                    request.done()
                b.poll(0.2, 500)

        joiner = threading.Thread(target=run_b, daemon=True)
        joiner.start()
        deadline = time.monotonic() + 30
        revoke = None
        while revoke is None:
            assert time.monotonic() < deadline, "no revoke came"
            a.poll(0.2, 500)
            revoke = next((r for r in a.rebalance_requests() if r.kind == "revoked"), None)
        time.sleep(1.5)  # the runner is slow: the consumer goes on without it
        assert revoke.expired
        with pytest.raises(CommitError, match="no longer ours") as info:
            a.commit({p: 1 for p in revoke.partitions})
        assert not info.value.retriable
        revoke.done()
        assert a.assignment().isdisjoint(revoke.partitions)
    finally:
        stop.set()
        a.close()
        if joiner is not None:
            joiner.join(5)
        b.close()


def test_a_write_that_cannot_be_made_is_reported_by_flush_with_its_context():
    sink = ConfluentSink(bootstrap_servers=f"127.0.0.1:{free_port()}", delivery_timeout_s=1.0,
                         connect_timeout_s=1.0)
    try:
        started = time.monotonic()
        sink.send("events", b"k", b"lost", context=("dead-letter", 0, 5))
        assert sink.pending() == 1
        with pytest.raises(DeliveryError) as info:
            sink.flush(5)
        assert time.monotonic() - started < 5
        assert [f.context for f in info.value.failures] == [("dead-letter", 0, 5)]
        assert [f.topic for f in info.value.failures] == ["events"]
        assert not sink.ready()
        assert sink.failures() == [] and sink.pending() == 0  # reported once
    finally:
        sink.close()


def test_an_unknown_client_or_a_refused_setting_stops_serve_with_a_clear_error(tmp_path,
                                                                             capsys):
    with pytest.raises(ConfigError, match=r"kafka\.client: unknown client 'rdkafka'"):
        load(env={}, overrides={"kafka.client": "rdkafka"})
    args = ["serve", "--bootstrap", "127.0.0.1:9", "--checkpoint-dir", str(tmp_path),
            "--metrics-addr", "127.0.0.1:0"]
    assert main([*args, "--kafka-client", "rdkafka"]) == 2
    assert "kafka.client: unknown client 'rdkafka'" in capsys.readouterr().err
    config = tmp_path / "tls.toml"
    missing = tmp_path / "no-such-ca.pem"
    config.write_text(f'[kafka]\nsecurity_protocol = "SSL"\nssl_cafile = "{missing}"\n')
    assert main([*args, "--kafka-client", "librdkafka", "--config", str(config)]) == 2
    assert f"ssl_cafile: no such file: {missing}" in capsys.readouterr().err


def test_serve_without_the_confluent_kafka_package_names_the_extra(monkeypatch, tmp_path,
                                                                   capsys):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "stream_rnn.io.confluent")
    assert main(["serve", "--bootstrap", "127.0.0.1:9", "--checkpoint-dir", str(tmp_path),
                 "--metrics-addr", "127.0.0.1:0", "--kafka-client", "librdkafka"]) == 2
    err = capsys.readouterr().err
    assert "the librdkafka client needs the confluent-kafka package" in err
    assert "pip install 'stream-rnn[librdkafka]'" in err


def test_client_flag_names_its_environment_variable():
    out = subprocess.run([sys.executable, "-m", "stream_rnn", "serve", "--help"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "200"},
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert re.search(r"--kafka-client KAFKA\.CLIENT\s+Kafka client library: kafka-python \|"
                     r"\s+librdkafka \[env: STREAM_RNN_KAFKA__CLIENT\]", out), out


def test_both_stacks_write_a_key_to_the_partition_the_java_client_picks(kafka_broker,
                                                                        new_topic):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.partitioner.default import murmur2

    from stream_rnn.io.kafka import KafkaSink

    partitions = 5
    keys = [f"card-{i}".encode() for i in range(60)]
    expected = {key: (murmur2(key) & 0x7FFFFFFF) % partitions for key in keys}
    for sink_cls in (KafkaSink, ConfluentSink):
        topic = new_topic(partitions)
        sink = sink_cls(bootstrap_servers=kafka_broker)
        try:
            for key in keys:
                sink.send(topic, key, b"{}")
            sink.flush(30)
        finally:
            sink.close()
        consumer = KafkaConsumer(bootstrap_servers=kafka_broker, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=3000)
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        written = {message.key: message.partition for message in consumer}
        consumer.close()
        assert written == expected, sink_cls.__name__
