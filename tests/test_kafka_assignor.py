"""The partition assignor (``[kafka] assignor``, ``--assignor``) on both client stacks.

With ``cooperative-sticky`` a joining instance takes over only the partitions that move:
the first instance keeps its other partitions flowing through the rebalance, and the
moved partition arrives at its new owner with its state (nothing lost, nothing answered
twice). Runs ``stream-rnn serve`` subprocesses against the test broker.
"""

from __future__ import annotations

import re
import time

import pytest
from broker import produce
from test_daemon_kafka import (
    _assert_same_state,
    _events,
    _read_all,
    _reference_checkpoints,
    _serve,
    _srcs,
    _stop,
    _topics,
)

from stream_rnn.cli import main
from stream_rnn.config import KAFKA_ASSIGNORS, ConfigError, load
from stream_rnn.io._client import ASSIGNORS
from stream_rnn.io.confluent import ConfluentSource
from stream_rnn.io.kafka import KafkaSource

CLIENTS = ("kafka-python", "librdkafka")


def test_the_configuration_offers_the_assignors_both_client_stacks_know():
    assert KAFKA_ASSIGNORS == ASSIGNORS
    assert load(env={}).kafka.assignor == "range"
    env = {"STREAM_RNN_KAFKA__ASSIGNOR": "roundrobin"}
    assert load(env=env).kafka.assignor == "roundrobin"
    assert load(env=env, overrides={"kafka.assignor": "cooperative-sticky"}).kafka.assignor \
        == "cooperative-sticky"


def test_each_stack_asks_its_client_for_the_named_assignor():
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor

    common = {"bootstrap_servers": "127.0.0.1:9", "group_id": "g"}
    plain = KafkaSource(["t"], **common)
    cooperative = KafkaSource(["t"], assignor="cooperative-sticky", **common)
    try:
        assert plain._options["partition_assignment_strategy"] == (RangePartitionAssignor,)
        assert cooperative._options["partition_assignment_strategy"] == (
            CooperativeStickyAssignor,)
    finally:
        plain.close()
        cooperative.close()
    rd = ConfluentSource(["t"], assignor="cooperative-sticky", **common)
    try:
        assert rd._conf["partition.assignment.strategy"] == "cooperative-sticky"
        assert rd._cooperative
    finally:
        rd.close()
    # The client's own setting, given explicitly, is left alone.
    own = ConfluentSource(["t"], consumer_options={"partition.assignment.strategy":
                                                   "roundrobin"}, **common)
    try:
        assert own._conf["partition.assignment.strategy"] == "roundrobin"
        assert not own._cooperative
    finally:
        own.close()


def test_an_unknown_assignor_is_refused_with_the_known_ones(tmp_path, capsys):
    for source_cls in (KafkaSource, ConfluentSource):
        with pytest.raises(ValueError, match="unknown partition assignor 'sticky'.*"
                                             "cooperative-sticky"):
            source_cls(["t"], bootstrap_servers="127.0.0.1:9", group_id="g",
                       assignor="sticky")
    with pytest.raises(ConfigError, match=r"kafka\.assignor: unknown assignor 'sticky'"):
        load(env={}, overrides={"kafka.assignor": "sticky"})
    assert main(["serve", "--bootstrap", "127.0.0.1:9", "--checkpoint-dir", str(tmp_path),
                 "--metrics-addr", "127.0.0.1:0", "--assignor", "sticky"]) == 2
    assert "kafka.assignor: unknown assignor 'sticky'" in capsys.readouterr().err


def _rebalances(log_path, kind):
    """The partitions named by each ``rebalance: <kind>`` line of a serve log."""
    text = log_path.read_text(errors="replace")
    return [set(names.split(", "))
            for names in re.findall(rf"rebalance: {kind} (.+?); waiting", text)]


def _wait_for_line(proc, pattern, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if re.search(pattern, proc.log_path.read_text(errors="replace")):
            return
        assert proc.poll() is None, proc.log_path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout_s} s:\n"
                         + proc.log_path.read_text(errors="replace")[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS)
def test_a_cooperative_rebalance_moves_one_partition_and_keeps_the_other_flowing(
        client, kafka_broker, new_topic, tmp_path):
    topics = _topics(new_topic)
    records = _events(300, 4, seed=5)
    half = len(records) // 2
    flags = ("--kafka-client", client, "--assignor", "cooperative-sticky")
    produce(kafka_broker, topics["in"], records[:half])
    a = _serve(kafka_broker, topics, tmp_path, extra=flags)
    b = None
    try:
        _read_all(kafka_broker, topics["out"], 2, expect=half, timeout_s=60)
        b = _serve(kafka_broker, topics, tmp_path, extra=flags)
        _wait_for_line(b, r"rebalance: assigned", timeout_s=60)
        produce(kafka_broker, topics["in"], records[half:])
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records), timeout_s=90)
    finally:
        codes = [_stop(p) for p in (b, a) if p is not None]
    assert codes == [0] * len(codes)

    srcs = _srcs(out)
    assert len(srcs) == len(set(srcs)) == len(records)
    both = {f"{topics['in']}:0", f"{topics['in']}:1"}
    assigned_a = _rebalances(a.log_path, "assigned")
    revoked_a = _rebalances(a.log_path, "revoked")
    assigned_b = _rebalances(b.log_path, "assigned")
    assert assigned_a[0] == both
    # Cooperative: the first instance gave up one partition, never both, and the joining
    # one received exactly that partition.
    moved = [r for r in revoked_a if r != both]
    assert moved and all(len(r) == 1 for r in moved), revoked_a
    assert assigned_b[0] == moved[0]
    # A final SIGTERM revokes what each still owns; before that, nothing else moved.
    assert revoked_a.count(both) == 0
    _assert_same_state(tmp_path, topics["in"],
                       _reference_checkpoints(records, topics["in"], tmp_path))
