"""``stream-rnn serve --task fraud`` against a real Kafka-protocol broker (Tansu).

Transactions keyed by card and terminal go in, every one comes out with its fraud
probability, and delayed labels sent afterwards on the labels topic reach the model that
scored their transactions (counted on ``/metrics``).
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from broker import free_port, produce
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_daemon_kafka import _read_all, _serve, _srcs, _stop, _topics
from test_tasks import fraud_events

from stream_rnn.config import load
from stream_rnn.daemon import Runner
from stream_rnn.io.memory import MemorySink, MemorySource
from stream_rnn.metrics import Metrics

pytestmark = pytest.mark.slow

FRAUD = {
    "STREAM_RNN_MODEL__TASK": "fraud",
    "STREAM_RNN_MODEL__PARAMS__HEAD_HIDDEN": "8",
    "STREAM_RNN_MODEL__PARAMS__COLD_START": "2",
    "STREAM_RNN_MODEL__PARAMS__MAX_PENDING": "5000",
}


def _transactions(n_days=2, per_day=150):
    """``(partition, card, value)`` records of a small card stream, and its events."""
    events = fraud_events(n_days=n_days, per_day=per_day)
    records = []
    for e in events:
        card, terminal = e.keys
        body = {"ts": e.ts, "key": card, "terminal": terminal, "features": e.features,
                "id": e.event_id}
        records.append((int(card[1:]) % 2, card.encode(), json.dumps(body).encode()))
    return records, events


def _metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


@pytest.fixture(scope="module", autouse=True)
def _compiled_fraud_kernels(tmp_path_factory):
    # Compile (and cache) the fraud kernels in-process so the daemon starts fast.
    records, _ = _transactions(n_days=1, per_day=40)
    source = MemorySource()
    for partition, key, value in records:
        source.append("warm", partition, key, value)
    source.assign_all()
    cfg = load(env=FRAUD, overrides={
        "kafka.input_topics": "warm", "events.key_fields": "key,terminal",
        "state.checkpoint_dir": str(tmp_path_factory.mktemp("warm"))})
    Runner(cfg, source, MemorySink(), Metrics.create(CollectorRegistry())).run(
        max_idle_polls=1)


def test_serve_scores_transactions_and_applies_late_labels(kafka_broker, new_topic,
                                                           tmp_path):
    topics = _topics(new_topic)
    labels_topic = new_topic(1)
    records, events = _transactions()
    produce(kafka_broker, topics["in"], records)
    port = free_port()
    proc = _serve(kafka_broker, topics, tmp_path, extra=(
        "--task", "fraud", "--key-field", "key", "--key-field", "terminal",
        "--labels-topic", labels_topic, "--metrics-addr", f"127.0.0.1:{port}"), env=FRAUD)
    applied = None
    try:
        out = _read_all(kafka_broker, topics["out"], 2, expect=len(records), timeout_s=120)
        # Labels arrive after their transactions were scored, as they do in practice.
        produce(kafka_broker, labels_topic, [
            (0, None, json.dumps({"id": e.event_id, "label": e.label}).encode())
            for e in events])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            applied = _metric(port, "stream_rnn_labels_applied_total")
            if applied == len(events):
                break
            time.sleep(0.5)
    finally:
        code = _stop(proc)
    assert code == 0
    assert applied == len(events)
    counts = {p: sum(1 for q, _, _ in records if q == p) for p in (0, 1)}
    assert set(_srcs(out)) == {f"{topics['in']}:{p}:{o}" for p in (0, 1)
                               for o in range(counts[p])}
    by_id = {e.event_id: e for e in events}
    for record in out:
        body = json.loads(record.value)
        assert body["prediction"] == {"fraud_probability": body["score"]}
        assert 0.0 <= body["score"] <= 1.0
        assert (body["key"], body["terminal"]) == by_id[body["id"]].keys
        assert "label" not in body
