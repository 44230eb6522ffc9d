"""``stream-rnn serve`` as a process against a real Kafka-protocol broker (Tansu).

Each test produces a recorded stream, runs the daemon as a subprocess (so kill -9 and
signals are real), reads the output and dead-letter topics back, and compares the final
checkpoints with an uninterrupted in-process run of the same partitions.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from broker import FAST_GROUP, produce
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from stream_rnn.config import load
from stream_rnn.daemon import Runner, checkpoint_name
from stream_rnn.io.base import Partition
from stream_rnn.io.memory import MemorySink, MemorySource
from stream_rnn.metrics import Metrics
from stream_rnn.state.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"model.hidden_size": "8", "model.window": "8", "model.update_every": "4"}


def _events(n_steps, sensors, seed=0):
    """(partition, key, value) of a small multi-sensor stream, sensors spread over 2."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n_steps):
        for s in range(sensors):
            value = 20 + s + 3 * math.sin(t / 9 + s) + 0.2 * rng.normal()
            body = {"ts": 1_700_000_000 + 60 * t, "key": f"s{s}", "features": {"v": value}}
            out.append((s % 2, f"s{s}".encode(), json.dumps(body).encode()))
    return out


def _serve(bootstrap, topics, workdir, extra=(), env=None):
    """Start ``stream-rnn serve`` as a subprocess; returns the Popen."""
    args = [sys.executable, "-m", "stream_rnn", "serve",
            "--bootstrap", bootstrap, "--input-topic", topics["in"],
            "--output-topic", topics["out"], "--dlq-topic", topics["dlq"],
            "--group", topics["group"], "--checkpoint-dir", str(workdir / "ckpt"),
            "--metrics-addr", "127.0.0.1:0", *extra]
    environment = dict(os.environ)
    environment.update({
        "STREAM_RNN_KAFKA__SESSION_TIMEOUT_MS": str(FAST_GROUP["session_timeout_ms"]),
        "STREAM_RNN_KAFKA__HEARTBEAT_INTERVAL_MS": str(FAST_GROUP["heartbeat_interval_ms"]),
        "STREAM_RNN_KAFKA__MAX_POLL_INTERVAL_MS": str(FAST_GROUP["max_poll_interval_ms"]),
        "STREAM_RNN_KAFKA__REQUEST_TIMEOUT_MS": str(FAST_GROUP["request_timeout_ms"]),
        "STREAM_RNN_STATE__CHECKPOINT_EVERY_EVENTS": "200",
        "STREAM_RNN_STATE__CHECKPOINT_EVERY_SECONDS": "1",
        "STREAM_RNN_LIMITS__MAX_POLL_RECORDS": "100",
    })
    for field, value in MODEL.items():
        section, name = field.split(".")
        environment[f"STREAM_RNN_{section.upper()}__{name.upper()}"] = value
    environment.update(env or {})
    log_path = workdir / f"serve-{time.monotonic_ns()}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env=environment)
    proc.log_path = log_path
    return proc


def _read_all(bootstrap, topic, partitions, expect=None, timeout_s=60.0, idle_s=3.0):
    """Every record of ``topic`` (all partitions), waiting until ``expect`` distinct
    values of ``src`` arrived (or, without ``expect``, until ``idle_s`` passes quietly)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    records = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            got = False
            for message in consumer:
                records.append(message)
                got = True
            if got:
                last_new = time.monotonic()
            if expect is not None:
                if len({json.loads(r.value)["src"] for r in records
                        if r.value.startswith(b"{")}) >= expect:
                    break
            elif time.monotonic() - last_new > idle_s:
                break
    finally:
        consumer.close()
    return records


def _srcs(records):
    return [json.loads(r.value)["src"] for r in records]


def _topics(new_topic, partitions=2):
    return {"in": new_topic(partitions), "out": new_topic(partitions), "dlq": new_topic(1),
            "group": f"g-{random.randrange(1 << 30)}"}


def _stop(proc, timeout_s=30.0):
    # A SIGTERM before serve has installed its handlers would kill it outright (exit -15):
    # wait for the line saying that it now drains instead.
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        log_path = getattr(proc, "log_path", None)
        if log_path is None or b"SIGTERM or SIGINT stops cleanly" in log_path.read_bytes():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _wait_for_offsets(workdir, topic, offsets, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = True
        for p, offset in offsets.items():
            try:
                found = read_checkpoint(workdir / "ckpt", checkpoint_name(Partition(topic, p)))
            except Exception:  # noqa: BLE001 - mid-write; look again
                found = None
            if found is None or found[0]["next_offset"] < offset:
                done = False
        if done:
            return
        time.sleep(0.2)
    raise AssertionError(f"checkpoints did not reach {offsets} in {timeout_s} s")


def _reference_checkpoints(records, topic, tmp_path):
    """Final checkpoint arrays of an uninterrupted in-process run over the same records."""
    cfg = load(env={}, overrides={
        "kafka.input_topics": topic, "state.checkpoint_dir": str(tmp_path / "ref"),
        **MODEL})
    source = MemorySource()
    for partition, key, value in records:
        source.append(topic, partition, key, value)
    source.assign_all()
    Runner(cfg, source, MemorySink(), Metrics.create(CollectorRegistry())).run(
        max_idle_polls=2)
    return {p: read_checkpoint(tmp_path / "ref", checkpoint_name(Partition(topic, p)))[1]
            for p in (0, 1)}


def _assert_same_state(workdir, topic, reference):
    for p, arrays in reference.items():
        found = read_checkpoint(workdir / "ckpt", checkpoint_name(Partition(topic, p)))
        assert found is not None, f"no checkpoint for partition {p}"
        manifest, got = found
        assert set(got) == set(arrays)
        for name in arrays:
            np.testing.assert_array_equal(got[name], arrays[name], err_msg=f"{p}:{name}")


@pytest.fixture(scope="module", autouse=True)
def _compiled_kernels(tmp_path_factory):
    # Compile (and cache) the kernels once in-process so daemon subprocesses start fast.
    source = MemorySource()
    for partition, key, value in _events(20, 2):
        source.append("warm", partition, key, value)
    source.assign_all()
    cfg = load(env={}, overrides={"kafka.input_topics": "warm",
                                  "state.checkpoint_dir": str(tmp_path_factory.mktemp("warm")),
                                  **MODEL})
    Runner(cfg, source, MemorySink(), Metrics.create(CollectorRegistry())).run(
        max_idle_polls=1)


def test_serve_scores_every_event_and_stops_cleanly(kafka_broker, new_topic, tmp_path):
    topics = _topics(new_topic)
    records = _events(150, 4)
    produce(kafka_broker, topics["in"], records)
    proc = _serve(kafka_broker, topics, tmp_path)
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records))
    finally:
        code = _stop(proc)
    assert code == 0
    srcs = _srcs(out)
    assert set(srcs) == {f"{topics['in']}:{p}:{o}" for p in (0, 1) for o in range(300)}
    body = json.loads(out[0].value)
    assert {"src", "key", "ts", "score", "flag", "model_version"} <= set(body)
    assert all(0.0 <= json.loads(r.value)["score"] <= 1.0 for r in out)
    # Output records are keyed like the input.
    assert {r.key for r in out} == {f"s{s}".encode() for s in range(4)}
    _assert_same_state(tmp_path, topics["in"], _reference_checkpoints(records, topics["in"],
                                                                      tmp_path))


def test_sigterm_then_restart_gives_no_duplicates(kafka_broker, new_topic, tmp_path):
    topics = _topics(new_topic)
    first = _events(100, 4, seed=1)
    produce(kafka_broker, topics["in"], first)
    proc = _serve(kafka_broker, topics, tmp_path)
    _read_all(kafka_broker, topics["out"], 2, expect=len(first))
    assert _stop(proc) == 0
    second = _events(160, 4, seed=1)[len(first):]
    produce(kafka_broker, topics["in"], second)
    proc = _serve(kafka_broker, topics, tmp_path)
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(first) + len(second))
    finally:
        assert _stop(proc) == 0
    srcs = _srcs(out)
    assert len(srcs) == len(set(srcs)) == len(first) + len(second)


def test_kill_9_at_random_points_loses_nothing_and_state_matches(kafka_broker, new_topic,
                                                                   tmp_path):
    topics = _topics(new_topic)
    records = _events(400, 4, seed=2)
    produce(kafka_broker, topics["in"], records)
    rng = random.Random(5)
    for _ in range(3):
        proc = _serve(kafka_broker, topics, tmp_path)
        time.sleep(rng.uniform(5.0, 9.0))
        proc.kill()
        proc.wait()
    proc = _serve(kafka_broker, topics, tmp_path)
    try:
        # Earlier lives may have answered everything already: wait for this one to finish
        # the partitions (its checkpoints reach the end) before stopping it.
        _wait_for_offsets(tmp_path, topics["in"], {0: 800, 1: 800})
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records), timeout_s=120)
    finally:
        assert _stop(proc) == 0
    srcs = set(_srcs(out))
    assert srcs == {f"{topics['in']}:{p}:{o}" for p in (0, 1) for o in range(800)}
    _assert_same_state(tmp_path, topics["in"], _reference_checkpoints(records, topics["in"],
                                                                      tmp_path))


def test_two_instances_split_partitions_and_hand_state_over(kafka_broker, new_topic,
                                                            tmp_path):
    topics = _topics(new_topic)
    records = _events(300, 4, seed=3)
    half = len(records) // 2
    produce(kafka_broker, topics["in"], records[:half])
    a = _serve(kafka_broker, topics, tmp_path)
    _read_all(kafka_broker, topics["out"], 2, expect=half // 2, timeout_s=60)
    b = _serve(kafka_broker, topics, tmp_path)
    time.sleep(8)  # let the group rebalance onto both
    produce(kafka_broker, topics["in"], records[half:])
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records), timeout_s=120)
    finally:
        assert _stop(b) == 0
        assert _stop(a) == 0
    assert set(_srcs(out)) == {f"{topics['in']}:{p}:{o}" for p in (0, 1) for o in range(600)}
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("serve-*.log"))
    assert "revok" in logs.lower() or "assign" in logs.lower()
    _assert_same_state(tmp_path, topics["in"], _reference_checkpoints(records, topics["in"],
                                                                      tmp_path))


def _poison(rng):
    choices = [
        lambda: b"",
        lambda: b"{not json",
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
        lambda: b"[]",
        lambda: json.dumps({"ts": 1, "key": "s0"}).encode(),
        lambda: json.dumps({"ts": "soon", "key": "s0", "features": {"v": 1}}).encode(),
        lambda: json.dumps({"ts": 1, "key": "s0", "features": {"v": "x"}}).encode(),
        lambda: b'{"ts": 1, "key": "s0", "features": {"v": Infinity}}',
        lambda: json.dumps({"ts": 1, "key": "s0", "features": {"w": 2.0}}).encode(),
        lambda: json.dumps({"ts": 1, "key": "s0", "features": []}).encode(),
        lambda: b"{" + b'"a":' * 10 + b"}",
        lambda: b"x" * 70_000,
    ]
    return rng.choice(choices)()


def test_poison_messages_are_dead_lettered_and_valid_events_scored(kafka_broker, new_topic,
                                                                  tmp_path):
    topics = _topics(new_topic)
    rng = random.Random(11)
    valid = _events(150, 4, seed=4)
    mixed = []
    poison_count = 0
    for item in valid:
        mixed.append(item)
        if rng.random() < 0.6:
            mixed.append((item[0], item[1], _poison(rng)))
            poison_count += 1
    assert poison_count > 300
    produce(kafka_broker, topics["in"], mixed, max_request_size=2_000_000)
    proc = _serve(kafka_broker, topics, tmp_path)
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(valid), timeout_s=90)
        dlq = _read_all(kafka_broker, topics["dlq"], 1, idle_s=3)
        assert proc.poll() is None  # alive
    finally:
        assert _stop(proc) == 0
    assert len(set(_srcs(out))) == len(valid)
    assert len(dlq) == poison_count
    poison_values = sorted(v for _, _, v in mixed if v not in {x[2] for x in valid})
    assert sorted(r.value or b"" for r in dlq) == poison_values
    reasons = {dict(r.headers)["dlq.reason"].decode() for r in dlq}
    assert {"not_json", "oversize", "non_finite", "unknown_feature"} <= reasons


def test_broker_frozen_mid_run_resumes_with_nothing_lost(private_broker, tmp_path):
    broker = private_broker.start()
    topics = {"in": broker.create_topic(partitions=2), "out": broker.create_topic(partitions=2),
              "dlq": broker.create_topic(), "group": "g-frozen"}
    records = _events(300, 4, seed=6)
    produce(broker.bootstrap, topics["in"], records[:300])
    proc = _serve(broker.bootstrap, topics, tmp_path)
    try:
        _read_all(broker.bootstrap, topics["out"], 2, expect=100, timeout_s=60)
        with broker.frozen_for():
            time.sleep(4)
        produce(broker.bootstrap, topics["in"], records[300:])
        out = _read_all(broker.bootstrap, topics["out"], 2, expect=len(records), timeout_s=120)
        assert proc.poll() is None
    finally:
        assert _stop(proc) == 0
    assert set(_srcs(out)) == {f"{topics['in']}:{p}:{o}" for p in (0, 1) for o in range(600)}
