"""Pipelined delivery against a real Kafka-protocol broker (Tansu), with both client stacks:
the runner does not wait for acknowledgements after every poll, yet every offset it
commits is covered by outputs already readable on the output topic.

The runner runs in-process on the real source and sink; at each commit a separate consumer
reads the output topic up to the high watermark its fetches report, before the commit is
sent to the broker.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from broker import FAST_GROUP, produce
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from test_daemon_kafka import MODEL, _events

from stream_rnn.config import load
from stream_rnn.daemon import Runner
from stream_rnn.io import kafka_classes
from stream_rnn.metrics import Metrics

pytestmark = pytest.mark.slow


class _OutputReader:
    """Reads an output topic from its start; :meth:`scored` returns the ``src`` of every
    output on the broker now (read up to the high watermark of the latest fetch)."""

    def __init__(self, bootstrap, topic, partitions):
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      fetch_max_wait_ms=20)
        self.parts = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)
        self.srcs: set[str] = set()

    def scored(self, timeout_s=20.0):
        deadline = time.monotonic() + timeout_s
        started = False
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=100).values():
                self.srcs.update(json.loads(r.value)["src"] for r in records)
            # A fetch that began before this call must come back first (its watermark
            # could predate outputs acknowledged just before the call).
            if not started:
                started = True
                continue
            marks = [self.consumer.highwater(tp) for tp in self.parts]
            if all(m is not None and self.consumer.position(tp) >= m
                   for tp, m in zip(self.parts, marks, strict=True)):
                return self.srcs
        raise AssertionError(f"the output topic was not read to its end in {timeout_s} s")

    def close(self):
        self.consumer.close()


@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
def test_commits_never_pass_outputs_missing_on_the_broker_without_a_flush_per_poll(
        kafka_broker, new_topic, tmp_path, client):
    topics = {"in": new_topic(2), "out": new_topic(2), "dlq": new_topic(1)}
    records = _events(300, 4, seed=7)
    produce(kafka_broker, topics["in"], records)
    config = load(env={}, overrides={
        "kafka.bootstrap": kafka_broker, "kafka.input_topics": topics["in"],
        "kafka.output_topic": topics["out"], "kafka.dlq_topic": topics["dlq"],
        "kafka.group": f"g-{random.randrange(1 << 30)}", "kafka.client": client,
        "state.checkpoint_dir": str(tmp_path / "ckpt"),
        "state.checkpoint_every_events": 150, "limits.max_poll_records": 40,
        **{f"kafka.{k}": str(v) for k, v in FAST_GROUP.items()}, **MODEL})
    source_cls, sink_cls = kafka_classes(client)
    reader = _OutputReader(kafka_broker, topics["out"], 2)
    counts = {"polls": 0, "flushes": 0, "commits": 0}

    class CheckedSource(source_cls):
        def poll(self, timeout_s=1.0, max_records=500):
            batches = super().poll(timeout_s, max_records)
            counts["polls"] += any(batches.values())
            return batches

        def commit(self, offsets, timeout_s=10.0):
            on_broker = reader.scored()
            for p, offset in offsets.items():
                missing = [o for o in range(offset) if f"{p}:{o}" not in on_broker]
                assert not missing, f"committing {p} at {offset} before outputs {missing[:5]}"
            counts["commits"] += 1
            super().commit(offsets, timeout_s)

    class CountingSink(sink_cls):
        def flush(self, timeout_s=10.0):
            counts["flushes"] += 1
            super().flush(timeout_s)

    k = config.kafka
    source = CheckedSource.from_config(k, consumer_options={
        **FAST_GROUP, "max_poll_records": 40, "fetch_max_wait_ms": 10})
    # Outputs nobody flushes linger for half a second: a commit not preceded by a flush
    # would find them missing on the broker.
    sink = CountingSink.from_config(k, producer_options={"linger_ms": 500})
    runner = Runner(config, source, sink, Metrics.create(CollectorRegistry()))
    deadline = time.monotonic() + 90
    try:
        runner.run(until=lambda: sum(t.next_offset for t in runner.tasks.values())
                   >= len(records) or time.monotonic() > deadline)
    finally:
        source.close()
        sink.close()
        on_broker = reader.scored()
        reader.close()
    assert on_broker == {f"{topics['in']}:{p}:{o}" for p in (0, 1) for o in range(600)}
    # Cadence checkpoints (every 150 events per partition) and the stop's.
    assert counts["commits"] >= 3
    assert counts["flushes"] <= counts["commits"] + 1 < counts["polls"] // 2


@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
def test_acknowledgements_and_failures_are_taken_without_a_flush(private_broker, client):
    from stream_rnn.io import DeliveryError

    broker = private_broker.start()
    topic = broker.create_topic(partitions=2)
    _, sink_cls = kafka_classes(client)
    sink = sink_cls(bootstrap_servers=broker.bootstrap, delivery_timeout_s=2.0,
                    max_block_s=1.0, connect_timeout_s=1.0, reconnect_backoff_max_s=1.0)
    try:
        assert sink.connect(10.0)
        for i in range(500):
            sink.send(topic, f"k{i % 20}".encode(), b"ok", context=("ok", i))
        assert 0 < sink.check_delivery() <= 500
        deadline = time.monotonic() + 20
        while sink.check_delivery():  # answered in the background
            assert time.monotonic() < deadline
            time.sleep(0.02)

        broker.kill()
        for i in range(300):
            sink.send(topic, f"k{i % 20}".encode(), b"lost", context=("lost", i))
        started = time.monotonic()
        failures = []
        with pytest.raises(DeliveryError) as info:
            while time.monotonic() - started < 20:
                sink.check_delivery()
                time.sleep(0.05)
        # Reported as they fail, possibly in more than one check: take them all.
        failures.extend(info.value.failures)
        while len(failures) < 300 and time.monotonic() - started < 20:
            try:
                sink.check_delivery()
            except DeliveryError as more:
                failures.extend(more.failures)
            time.sleep(0.05)
        assert sorted(f.context for f in failures) == [("lost", i) for i in range(300)]
        assert sink.check_delivery() == 0  # each failure is reported once
    finally:
        sink.close()
