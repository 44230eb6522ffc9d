"""KafkaSource and KafkaSink against a real broker (Tansu, tests/broker.py); no mocks.

Group joins take about 3 s on Tansu with ``FAST_GROUP`` settings, so each test joins as few
times as it can.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import kafka.codec
import pytest
from broker import FAST_GROUP, free_port, produce, topic_name
from confluent_kafka import Producer as ConfluentProducer
from kafka import KafkaProducer

from stream_rnn.io.base import Partition
from stream_rnn.io.kafka import (
    CommitError,
    DeliveryError,
    KafkaRebalance,
    KafkaSink,
    KafkaSource,
    KeyHashPartitioner,
)

CODECS = ("gzip", "snappy", "lz4", "zstd")


def _source(bootstrap, topics, group, **kwargs):
    kwargs.setdefault("consumer_options", FAST_GROUP)
    return KafkaSource(topics, bootstrap_servers=bootstrap, group_id=group, **kwargs)


class Member:
    """A stand-in for the daemon's loop: takes rebalance steps, polls, commits each batch.

    ``checkpoint`` plays the part of the daemon's checkpoints: the next offset of every
    partition it processed, restored (sought) on assignment.
    """

    def __init__(self, source, revoke_work_s=0.0, commit=True):
        self.source = source
        self.revoke_work_s = revoke_work_s
        self.commit = commit
        self.records = []
        self.steps: list[KafkaRebalance] = []
        self.checkpoint: dict[Partition, int] = {}
        self.revoke_commits: dict[Partition, int] = {}
        self.error: BaseException | None = None

    def step(self, timeout_s=0.3):
        for request in self.source.rebalance_requests():
            if request.kind == "revoked":
                time.sleep(self.revoke_work_s)  # flush, checkpoint...
                owned = {p: self.checkpoint[p] for p in request.partitions if p in self.checkpoint}
                self.source.commit(owned)
                self.revoke_commits.update(owned)
            elif request.kind == "assigned":
                for p in request.partitions:
                    if p in self.checkpoint:
                        self.source.seek(p, self.checkpoint[p])
            self.steps.append(request)
            request.done()
        batches = self.source.poll(timeout_s, 500)
        for partition, records in batches.items():
            offsets = [r.offset for r in records]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
            assert {(r.topic, r.partition) for r in records} == {tuple(partition)}
            self.records.extend(records)
            self.checkpoint[partition] = records[-1].offset + 1
            if self.commit:
                self.source.commit({partition: records[-1].offset + 1})
        return batches

    def run_until(self, done, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"timed out; steps={self.kinds()}"
            self.step()

    def kinds(self):
        return [(s.kind, len(s.partitions)) for s in self.steps]

    def values(self):
        return [r.value for r in self.records]


def _in_thread(member, done, timeout_s):
    def run():
        try:
            member.run_until(done, timeout_s)
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            member.error = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_round_trip_keys_offsets_headers_labels_pause_and_seek(kafka_broker, new_topic):
    topic, labels = new_topic(2), new_topic(1)
    producer = KafkaProducer(bootstrap_servers=kafka_broker)
    for i in range(20):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2,
                      headers=[("h", str(i).encode())])
    producer.send(labels, value=b'{"id": "v3", "label": 1}')
    producer.flush()
    sent_at_ms = time.time() * 1000

    with _source(kafka_broker, [topic], "g-round", labels_topic=labels) as source:
        member = Member(source)
        member.run_until(lambda: len(member.records) >= 21, 30)
        assert member.kinds() == [("assigned", 3)]
        assert source.assignment() == {Partition(topic, 0), Partition(topic, 1),
                                       Partition(labels, 0)}
        by_partition = defaultdict(list)
        for r in member.records:
            by_partition[(r.topic, r.partition)].append(r)
        for p in (0, 1):
            records = by_partition[(topic, p)]
            assert [r.offset for r in records] == list(range(10))
            assert [r.value for r in records] == [f"v{i}".encode() for i in range(p, 20, 2)]
            assert [r.key for r in records] == [f"k{i}".encode() for i in range(p, 20, 2)]
            assert [r.headers for r in records] == [(("h", str(i).encode()),)
                                                    for i in range(p, 20, 2)]
            assert all(abs(r.timestamp_ms - sent_at_ms) < 60_000 for r in records)
            assert records[3].src == f"{topic}:{p}:3"
        assert [r.value for r in by_partition[(labels, 0)]] == [b'{"id": "v3", "label": 1}']
        p0, p1 = Partition(topic, 0), Partition(topic, 1)
        assert source.position(p0) == source.position(p1) == 10
        assert source.lag(refresh=True)[p0] == 0

        # Paused: nothing of p0 comes back, p1 goes on; resumed: p0 continues where it was.
        source.pause([p0])
        for i in range(20, 30):
            producer.send(topic, value=f"v{i}".encode(), partition=i % 2)
        producer.flush()
        before = len(member.records)
        member.run_until(lambda: len(member.records) >= before + 5, 20)
        time.sleep(0.5)
        member.step()
        new = member.records[before:]
        assert {r.partition for r in new} == {1} and len(new) == 5
        assert source.paused() == {p0}
        assert source.lag()[p1] == 0
        source.resume([p0])
        member.run_until(lambda: len(member.records) >= before + 10, 20)
        resumed = [r for r in member.records[before:] if r.partition == 0]
        assert [r.offset for r in resumed] == list(range(10, 15))

        # Seek back: the partition is read again from there, and only from there.
        source.seek(p1, 12)
        before = len(member.records)
        member.run_until(lambda: len(member.records) >= before + 3, 20)
        assert [(r.partition, r.offset) for r in member.records[before:]] == [
            (1, 12), (1, 13), (1, 14)]
        with pytest.raises(ValueError, match="not assigned"):
            source.seek(Partition(topic, 7), 0)
        with pytest.raises(CommitError, match="not assigned"):
            source.commit({Partition(topic, 7): 0})
    producer.close()


def test_every_codec_from_two_client_libraries_is_read(kafka_broker, new_topic):
    assert kafka.codec.has_gzip() and kafka.codec.has_snappy()
    assert kafka.codec.has_lz4() and kafka.codec.has_zstd()
    topic = new_topic(1)
    expected = []
    for codec in (None, *CODECS):
        # Several records per batch, so each batch really is compressed as a whole.
        producer = KafkaProducer(bootstrap_servers=kafka_broker, compression_type=codec,
                                 linger_ms=50)
        values = [f"kafka-python/{codec}/{i}/".encode() + b"x" * 300 for i in range(20)]
        for value in values:
            producer.send(topic, key=b"k", value=value)
        producer.flush()
        producer.close()
        expected += values
    for codec in ("none", *CODECS):
        producer = ConfluentProducer({"bootstrap.servers": kafka_broker,
                                      "compression.type": codec, "linger.ms": 50})
        values = [f"librdkafka/{codec}/{i}/".encode() + b"y" * 300 for i in range(20)]
        errors = []
        report = errors.append
        for value in values:
            producer.produce(topic, key=b"k", value=value,
                             on_delivery=lambda err, _msg, report=report: err and report(err))
        assert producer.flush(30) == 0 and not errors
        expected += values
    for codec in CODECS:  # and our own sink, compressing with each codec
        with KafkaSink(bootstrap_servers=kafka_broker, compression_type=codec) as sink:
            values = [f"sink/{codec}/{i}/".encode() + b"z" * 300 for i in range(20)]
            for value in values:
                sink.send(topic, b"k", value)
            sink.flush(10)
            expected += values

    with _source(kafka_broker, [topic], "g-codecs") as source:
        member = Member(source, commit=False)
        member.run_until(lambda: len(member.records) >= len(expected), 30)
        assert member.values() == expected
        assert [r.offset for r in member.records] == list(range(len(expected)))


def test_commit_then_restart_resumes_from_the_committed_offset(kafka_broker, new_topic):
    topic = new_topic(1)
    produce(kafka_broker, topic, [(0, None, f"v{i}".encode()) for i in range(20)])
    p = Partition(topic, 0)
    with _source(kafka_broker, [topic], "g-resume") as first:
        member = Member(first, commit=False)
        member.run_until(lambda: len(member.records) >= 20, 30)
        first.commit({p: 12})
        assert first.committed(p) == 12
    with _source(kafka_broker, [topic], "g-resume") as second:
        member = Member(second, commit=False)
        member.run_until(lambda: len(member.records) >= 8, 30)
        assert [r.offset for r in member.records] == list(range(12, 20))


def test_two_members_split_partitions_and_the_revoke_completes_first(kafka_broker, new_topic):
    topic = new_topic(4)
    produce(kafka_broker, topic, [(i % 4, None, f"a{i}".encode()) for i in range(40)])
    a = Member(_source(kafka_broker, [topic], "g-split"), revoke_work_s=0.5)
    b = Member(_source(kafka_broker, [topic], "g-split"))
    try:
        a.run_until(lambda: len(a.records) >= 40, 30)
        assert a.kinds() == [("assigned", 4)]

        def settled(member):
            return lambda: (len(member.steps) >= 1 and member.steps[-1].kind == "assigned"
                            and len(member.source.assignment()) == 2)

        thread_a = _in_thread(a, settled(a), 40)
        thread_b = _in_thread(b, settled(b), 40)
        thread_a.join(45)
        thread_b.join(45)
        assert a.error is None and b.error is None, (a.error, b.error)
        assert a.kinds() == [("assigned", 4), ("revoked", 4), ("assigned", 2)]
        assert b.kinds() == [("assigned", 2)]
        assert a.source.assignment().isdisjoint(b.source.assignment())
        assert a.source.assignment() | b.source.assignment() == {
            Partition(topic, i) for i in range(4)}

        revoke, b_assigned = a.steps[1], b.steps[0]
        # The revoking member finished (flush, checkpoint, commit: 0.5 s of work) before the
        # other member was even told about its assignment, and committed what it had read.
        assert revoke.completed is not None and not revoke.expired
        assert revoke.completed - revoke.created >= 0.5
        assert revoke.completed < b_assigned.created
        assert a.revoke_commits == {Partition(topic, i): 10 for i in range(4)}
        for p in b.source.assignment():
            assert b.source.committed(p) == 10

        # New records go to their owner exactly once, starting after the committed offsets.
        produce(kafka_broker, topic, [(i % 4, None, f"b{i}".encode()) for i in range(40)])
        done = lambda: len(a.records) + len(b.records) >= 80  # noqa: E731
        thread_a, thread_b = _in_thread(a, done, 30), _in_thread(b, done, 30)
        thread_a.join(35)
        thread_b.join(35)
        assert a.error is None and b.error is None, (a.error, b.error)
        late = [r for r in a.records + b.records if r.value.startswith(b"b")]
        assert sorted(r.value for r in late) == sorted(f"b{i}".encode() for i in range(40))
        assert {r.partition for r in b.records} == {p.partition for p in b.source.assignment()}
        assert all(r.offset >= 10 for r in b.records)
    finally:
        a.source.close()
        b.source.close()


def test_a_revoke_not_handled_in_time_expires_and_cannot_commit(kafka_broker, new_topic):
    topic = new_topic(2)
    produce(kafka_broker, topic, [(i % 2, None, f"a{i}".encode()) for i in range(10)])
    a = Member(_source(kafka_broker, [topic], "g-slow", rebalance_timeout_s=1.0))
    b = Member(_source(kafka_broker, [topic], "g-slow"))
    try:
        a.run_until(lambda: len(a.records) >= 10, 30)
        thread_b = _in_thread(b, lambda: len(b.source.assignment()) == 1, 30)
        # A keeps polling (the consumer must be driven) but leaves the rebalance alone.
        taken = []
        deadline = time.monotonic() + 30
        while not any(r.kind == "assigned" for r in taken):
            assert time.monotonic() < deadline, [r.kind for r in taken]
            assert a.source.poll(0.2, 100) == {}  # at once while a step is queued
            time.sleep(0.05)  # busy elsewhere
            if b.steps:
                taken += a.source.rebalance_requests()
        thread_b.join(30)
        assert b.error is None, b.error
        revoke, assigned = taken
        assert (revoke.kind, assigned.kind) == ("revoked", "assigned")
        assert revoke.expired and revoke.completed is None
        with pytest.raises(CommitError, match="no longer ours"):
            a.source.commit({p: 5 for p in revoke.partitions})
        revoke.done()
        assigned.done()  # late, but the partition is then read as usual
        # The group went on without A: B was told about its partition before A finished.
        assert b.steps[0].created < revoke.completed
        mine = a.source.assignment()
        assert len(mine) == 1 and mine.isdisjoint(b.source.assignment())
        produce(kafka_broker, topic, [(i % 2, None, f"b{i}".encode()) for i in range(10)])
        a.run_until(lambda: any(r.value.startswith(b"b") for r in a.records), 20)
        assert {r.partition for r in a.records if r.value.startswith(b"b")} == {
            p.partition for p in mine}
    finally:
        a.source.close()
        b.source.close()


def test_broker_frozen_mid_consume_loses_nothing(private_broker):
    broker = private_broker.start()
    topic = broker.create_topic(partitions=2)
    total = 240
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                             request_timeout_ms=5000, delivery_timeout_ms=60_000)
    sent = []

    def produce_slowly():
        for i in range(total):
            value = f"v{i}".encode()
            producer.send(topic, key=f"k{i % 7}".encode(), value=value)
            sent.append(value)
            time.sleep(0.03)
        producer.flush(60)

    with _source(broker.bootstrap, [topic], "g-freeze") as source:
        member = Member(source)
        writer = threading.Thread(target=produce_slowly, daemon=True)
        writer.start()
        member.run_until(lambda: len(member.records) >= 40, 30)
        with broker.frozen_for():
            frozen_at = len(member.records)
            deadline = time.monotonic() + 6  # longer than the 5 s request timeout
            while time.monotonic() < deadline:
                member.step()  # keeps polling: must neither raise nor hang
        assert len(member.records) - frozen_at <= 500  # at most what was already fetched
        member.run_until(lambda: not writer.is_alive() and len(set(member.values())) >= total,
                         60)
        writer.join()
    producer.close(5)
    assert set(member.values()) == set(sent) and len(sent) == total
    # Records are only read twice if the group took the partitions away ("lost") meanwhile.
    if not any(s.kind == "lost" for s in member.steps):
        assert len(member.values()) == total


def test_unreachable_broker_at_start_then_reachable(tmp_path, private_broker):
    broker = private_broker  # not started yet: nothing listens on its port
    source = _source(broker.bootstrap, ["later"], "g-late", connect_timeout_s=0.5,
                     reconnect_backoff_max_s=1.0)
    sink = KafkaSink(bootstrap_servers=broker.bootstrap, connect_timeout_s=0.5,
                     reconnect_backoff_max_s=1.0)
    try:
        started = time.monotonic()
        for _ in range(3):
            assert source.poll(0.3, 10) == {}
        assert not source.ready()
        sink.send("later", None, b"early", context="dead-letter:later:0:5")
        assert not sink.ready()
        with pytest.raises(DeliveryError) as info:
            sink.flush(1)
        assert [f.context for f in info.value.failures] == ["dead-letter:later:0:5"]
        assert time.monotonic() - started < 10

        broker.start()
        broker.create_topic("later", partitions=1)
        produce(broker.bootstrap, "later", [(0, None, b"hello")])
        member = Member(source)
        member.run_until(lambda: member.values() == [b"hello"], 30)
        assert source.ready()
        deadline = time.monotonic() + 10
        while True:  # the sink reconnects after its backoff
            sink.send("later", None, b"late")
            try:
                sink.flush(5)
                break
            except DeliveryError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        assert sink.ready()
    finally:
        source.close()
        sink.close()


def test_sink_flush_raises_when_the_broker_is_gone_and_recovers(private_broker):
    broker = private_broker.start()
    topic = broker.create_topic(partitions=1)
    sink = KafkaSink(bootstrap_servers=broker.bootstrap, delivery_timeout_s=2.0,
                     max_block_s=1.0, connect_timeout_s=1.0, reconnect_backoff_max_s=1.0)
    try:
        sink.send(topic, b"k", b"before")
        sink.flush(5)
        assert sink.ready() and sink.pending() == 0

        broker.kill()
        started = time.monotonic()
        for i in range(3):
            sink.send(topic, b"k", f"dlq{i}".encode(), context=("dlq", i))
        assert time.monotonic() - started < 2  # send does not block on a dead broker
        with pytest.raises(DeliveryError) as info:
            sink.flush(5)
        assert time.monotonic() - started < 8
        failed = info.value.failures
        assert sorted(f.context for f in failed) == [("dlq", 0), ("dlq", 1), ("dlq", 2)]
        assert {f.topic for f in failed} == {topic}
        assert not sink.ready()
        assert sink.failures() == []  # reported once

        # The broker comes back (empty: memory storage); the sink gets going again.
        broker.start()
        broker.create_topic(topic, partitions=1)
        deadline = time.monotonic() + 30  # a stuck producer is replaced after about 7 s
        while True:
            sink.send(topic, b"k", b"after")
            try:
                sink.flush(3)
                break
            except DeliveryError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        assert sink.ready()
    finally:
        sink.close()


def test_thousands_of_writes_between_flushes_report_exactly_the_failed_ones(private_broker):
    # More writes than the sink reads its futures every (2048), so outcomes are read while
    # writes are in flight, answered ones are let go, and the failures keep their context.
    broker = private_broker.start()
    topic = broker.create_topic(partitions=2)
    sink = KafkaSink(bootstrap_servers=broker.bootstrap, delivery_timeout_s=2.0,
                     max_block_s=1.0, connect_timeout_s=1.0, reconnect_backoff_max_s=1.0)
    try:
        for i in range(3000):
            sink.send(topic, f"k{i % 50}".encode(), b"ok", context=("ok", i))
        deadline = time.monotonic() + 30
        while sink.pending():  # answered without a flush
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert sink.failures() == [] and sink.ready()

        broker.kill()
        for i in range(2500):
            sink.send(topic, f"k{i % 50}".encode(), b"lost", context=("dlq", i))
        with pytest.raises(DeliveryError) as info:
            sink.flush(10)
        failed = sorted(f.context for f in info.value.failures)
        assert info.value.unacknowledged == 0
        assert failed == [("dlq", i) for i in range(2500)]
        assert sink.pending() == 0 and sink.failures() == []
    finally:
        sink.close()


def test_keys_go_to_the_java_clients_partition_when_the_hash_memory_starts_over(kafka_broker,
                                                                                new_topic):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.partitioner.default import murmur2

    partitions = 5
    topic = new_topic(partitions)
    keys = [f"card-{i}".encode() for i in range(40)]
    expected = {key: (murmur2(key) & 0x7FFFFFFF) % partitions for key in keys}
    partitioner = KeyHashPartitioner(max_keys=7)  # forgets its hashes every 7 keys
    sink = KafkaSink(bootstrap_servers=kafka_broker, producer_options={"partitioner": partitioner})
    try:
        for _ in range(2):
            for key in keys:
                sink.send(topic, key, b"{}")
        sink.send(topic, None, b"no key")  # a random partition, as kafka-python's default
        sink.flush(30)
    finally:
        sink.close()
    assert 0 < len(partitioner._hashes) <= 7
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    written: dict[bytes | None, set[int]] = defaultdict(set)
    for message in consumer:
        written[message.key].add(message.partition)
    consumer.close()
    assert {key: parts for key, parts in written.items() if key is not None} == {
        key: {partition} for key, partition in expected.items()}
    assert len(written[None]) == 1


def test_a_stuck_producer_is_replaced(private_broker):
    broker = private_broker.start()
    topic = broker.create_topic(partitions=1)
    # A long delivery timeout: writes to a frozen broker stay unanswered, as they do when
    # kafka-python's idempotent producer wedges.
    sink = KafkaSink(bootstrap_servers=broker.bootstrap, delivery_timeout_s=60.0,
                     stuck_after_s=2.0, max_block_s=1.0)
    try:
        sink.send(topic, b"k", b"before")
        sink.flush(5)
        with broker.frozen_for():
            sink.send(topic, b"k", b"stuck")
            with pytest.raises(DeliveryError) as info:
                sink.flush(1.0)
            assert info.value.unacknowledged == 1 and sink.pending() == 1
            time.sleep(1.5)
            started = time.monotonic()
            with pytest.raises(DeliveryError) as info:
                sink.flush(0.5)  # now stuck for longer than 2 s: replaced
            assert info.value.unacknowledged == 1
            assert time.monotonic() - started < 8  # discarding it did not hang
            assert sink.pending() == 0
        sink.send(topic, b"k", b"after")
        sink.flush(10)
    finally:
        sink.close()
    consumer_records = []
    with _source(broker.bootstrap, [topic], "g-stuck") as source:
        member = Member(source, commit=False)
        member.run_until(lambda: b"after" in member.values(), 30)
        consumer_records = member.values()
    assert consumer_records[0] == b"before" and consumer_records[-1] == b"after"


def test_options_are_checked_before_any_connection():
    with pytest.raises(ValueError, match="enable_auto_commit"):
        KafkaSource(["t"], bootstrap_servers="127.0.0.1:9", group_id="g",
                    consumer_options={"enable_auto_commit": True})
    with pytest.raises(ValueError, match="rebalance_timeout_s"):
        KafkaSource(["t"], bootstrap_servers="127.0.0.1:9", group_id="g",
                    rebalance_timeout_s=10, consumer_options={"max_poll_interval_ms": 5000})
    with pytest.raises(ValueError, match="compression_type"):
        KafkaSink(bootstrap_servers="127.0.0.1:9", compression_type="brotli")
    with pytest.raises(ValueError, match="sasl_mechanism"):
        KafkaSink(bootstrap_servers="127.0.0.1:9", security={"sasl_mechanism": "MD5"})
    with pytest.raises(ValueError, match="max_keys"):
        KeyHashPartitioner(max_keys=0)
    assert topic_name("a b/c").startswith("a-b-c-")
    assert free_port() > 0
