"""``stream-rnn produce``: every event arrives, keyed, in per-key order; delayed labels go
to their own topic only once stream time has passed them; pacing follows ``--speed``;
bad input and an unusable broker are clear errors."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import defaultdict

import pytest
from broker import free_port
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from stream_rnn.cli import main
from stream_rnn.io.produce import (
    EVENTS,
    LABELS,
    DeliveryFailed,
    MissingTopic,
    produce,
    schedule,
)
from stream_rnn.io.scenario import write_events

T0 = 1_704_067_200


def make_scenario(path, events, key="card", label_delay_seconds=0.0):
    path.mkdir(parents=True, exist_ok=True)
    write_events(events, path / "events.jsonl.gz")
    # Fraud scenarios are the ones with delayed labels; the producer does not care.
    task = "fraud" if label_delay_seconds > 0 else "sensor"
    (path / "scenario.toml").write_text(
        f'name = "{path.name}"\ntask = "{task}"\nkeys = ["{key}"]\n'
        f"label_delay_seconds = {label_delay_seconds}\n", encoding="utf-8")
    return path


def card_events(n, keys=7, step=1.0):
    # Irregular keys (i*i) so partitions get uneven, interleaved runs of each key.
    return [{"ts": T0 + i * step, "card": f"card-{(i * i) % keys}", "id": f"tx-{i}",
             "features": {"amount": float(i % 13)}, "label": int(i % 5 == 0)}
            for i in range(n)]


def consume_all(bootstrap, topic, expected, timeout_s=30.0):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p)
                         for p in sorted(consumer.partitions_for_topic(topic))])
        records = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # Anything beyond the expected count would be a duplicate: give it a chance to show.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def test_schedule_strips_labels_and_releases_each_once_stream_time_passes_it():
    events = card_events(60, step=3.0)
    events[7].pop("id")  # a label that names no event cannot be sent
    delay = 10.0
    messages = list(schedule(events, "card", label_delay_seconds=delay, delayed_labels=True))
    kinds = [m.kind for m in messages]
    assert kinds.count(EVENTS) == 60
    assert kinds.count(LABELS) == 59
    seen_ts = []
    for position, m in enumerate(messages):
        body = json.loads(m.value)
        if m.kind == EVENTS:
            assert "label" not in body
            assert m.key == body["card"].encode()
            seen_ts.append(body["ts"])
            continue
        source = events[m.index]
        assert body == {"id": source["id"], "label": source["label"]}
        due = source["ts"] + delay
        assert max(seen_ts) <= due  # not before stream time reached it...
        later = [json.loads(n.value)["ts"] for n in messages[position + 1:] if n.kind == EVENTS]
        assert not later or later[0] > due  # ...and right as it passed it


def test_schedule_keeps_labels_in_events_without_a_delay_and_honors_the_limit():
    events = card_events(30)
    messages = list(schedule(events, "card", label_delay_seconds=0, delayed_labels=True,
                             limit=12))
    assert [m.kind for m in messages] == [EVENTS] * 12
    assert [json.loads(m.value) for m in messages] == events[:12]


def test_every_event_arrives_once_keyed_and_in_per_key_order(kafka_broker, new_topic,
                                                             tmp_path, capsys):
    events = card_events(900)
    scenario = make_scenario(tmp_path / "cards", events)
    topic = new_topic(3)
    assert main(["produce", str(scenario), "--bootstrap", kafka_broker, "--topic", topic,
                 "--as-fast-as-possible"]) == 0
    assert f"sent 900 events to {topic}" in capsys.readouterr().out
    records = consume_all(kafka_broker, topic, len(events))
    assert len(records) == len(events)
    by_key = defaultdict(list)
    partitions_of_key = defaultdict(set)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = json.loads(record.value)
        assert record.key == event["card"].encode()
        by_key[event["card"]].append(event)
        partitions_of_key[event["card"]].add(record.partition)
    expected = defaultdict(list)
    for event in events:
        expected[event["card"]].append(event)
    assert by_key == expected
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len({p for ps in partitions_of_key.values() for p in ps}) > 1


def test_delayed_labels_reach_the_labels_topic_only_after_their_delay(kafka_broker, new_topic,
                                                                      tmp_path):
    # An event every 10 stream seconds, labels 35 s later, at 100x: events 100 ms apart,
    # each label due half-way between the events 30 and 40 stream seconds after its own.
    events = card_events(24, step=10.0)
    scenario = make_scenario(tmp_path / "delayed", events, label_delay_seconds=35)
    topic, labels_topic = new_topic(2), new_topic(1)
    assert main(["produce", str(scenario), "--bootstrap", kafka_broker, "--topic", topic,
                 "--labels-topic", labels_topic, "--speed", "100"]) == 0
    sent = {json.loads(r.value)["id"]: r for r in consume_all(kafka_broker, topic, 24)}
    labels = consume_all(kafka_broker, labels_topic, 24)
    assert len(sent) == 24 and len(labels) == 24
    assert not any("label" in json.loads(r.value) for r in sent.values())
    by_ts = {json.loads(r.value)["ts"]: r for r in sent.values()}
    last = by_ts[max(by_ts)]
    for record in labels:
        body = json.loads(record.value)
        i = int(body["id"].removeprefix("tx-"))
        assert body["label"] == events[i]["label"]
        due = events[i]["ts"] + 35
        # Labels due after the last event go out after it.
        before, after = by_ts.get(due - 5, last), by_ts.get(due + 5)
        assert record.timestamp >= before.timestamp
        if after is not None:
            assert record.timestamp <= after.timestamp


def test_pacing_follows_the_speed(kafka_broker, new_topic):
    # 20 stream seconds at 10x: about 2 s; unpaced: far less.
    events = card_events(101, step=0.2)
    topic = new_topic(1)
    paced = produce(schedule(events, "card"), bootstrap=kafka_broker, topic=topic, speed=10)
    assert paced.events == 101
    assert 1.8 <= paced.seconds <= 6.0
    fast = produce(schedule(events, "card"), bootstrap=kafka_broker, topic=topic)
    assert fast.events == 101
    assert fast.seconds < paced.seconds / 2


def test_stop_ends_a_paced_run_early_with_what_was_sent(kafka_broker, new_topic):
    events = card_events(200, step=1.0)  # 200 s at 10x: 20 s unless stopped
    topic = new_topic(1)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    report = produce(schedule(events, "card"), bootstrap=kafka_broker, topic=topic, speed=10,
                     stop=stop)
    assert report.stopped
    assert 0 < report.events < 200
    assert report.seconds < 5
    assert len(consume_all(kafka_broker, topic, report.events)) == report.events


def test_missing_topic_is_an_error_naming_it_and_nothing_is_created(kafka_broker, tmp_path,
                                                                   capsys):
    scenario = make_scenario(tmp_path / "s", card_events(10))
    topic = f"absent-{free_port()}"
    assert main(["produce", str(scenario), "--bootstrap", kafka_broker,
                 "--topic", topic]) == 2
    err = capsys.readouterr().err
    assert topic in err and "--create-topics" in err
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()
    with pytest.raises(MissingTopic):
        produce(schedule(card_events(3), "card"), bootstrap=kafka_broker, topic=topic)


def test_create_topics_makes_the_missing_topic_with_its_partitions(kafka_broker, tmp_path,
                                                                  capsys):
    scenario = make_scenario(tmp_path / "s", card_events(40))
    topic = f"created-{free_port()}"
    assert main(["produce", str(scenario), "--bootstrap", kafka_broker, "--topic", topic,
                 "--create-topics", "2", "--as-fast-as-possible"]) == 0
    assert f"created topic {topic} (2 partition(s))" in capsys.readouterr().out
    assert len(consume_all(kafka_broker, topic, 40)) == 40
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1}
    finally:
        consumer.close()


def test_unreachable_broker_exits_2_naming_it(tmp_path, capsys):
    scenario = make_scenario(tmp_path / "s", card_events(5))
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main(["produce", str(scenario), "--bootstrap", bootstrap, "--topic", "t",
                 "--connect-timeout", "1"]) == 2
    assert time.monotonic() - started < 10
    assert f"cannot reach Kafka at {bootstrap}" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["--speed", "0"], "--speed must be positive"),
    (["--limit", "-1"], "--limit must be >= 0"),
    (["--create-topics", "0"], "--create-topics must be >= 1"),
])
def test_bad_options_exit_2(tmp_path, capsys, argv, needle):
    scenario = make_scenario(tmp_path / "s", card_events(5))
    assert main(["produce", str(scenario), "--bootstrap", "127.0.0.1:1", "--topic", "t",
                 *argv]) == 2
    assert needle in capsys.readouterr().err


def test_missing_scenario_exits_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["produce", str(missing), "--bootstrap", "127.0.0.1:1", "--topic", "t"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_malformed_events_file_exits_2_naming_the_line(tmp_path, capsys, kafka_broker,
                                                       new_topic):
    scenario = make_scenario(tmp_path / "s", card_events(3))
    with gzip.open(scenario / "events.jsonl.gz", "at", encoding="utf-8") as fh:
        fh.write("{not json\n")
    assert main(["produce", str(scenario), "--bootstrap", kafka_broker, "--topic",
                 new_topic(1), "--as-fast-as-possible"]) == 2
    assert "events.jsonl.gz:4: not JSON" in capsys.readouterr().err


def test_abandon_reports_unacknowledged_writes_at_once_when_the_broker_is_gone(private_broker):
    private_broker.start()
    topic = private_broker.create_topic(partitions=1)
    stop, abandon = threading.Event(), threading.Event()
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            produce(schedule(card_events(400), "card"), bootstrap=private_broker.bootstrap,
                    topic=topic, speed=100, stop=stop, abandon=abandon, flush_timeout_s=60)
        except BaseException as exc:  # noqa: BLE001 -- examined below
            outcome["error"] = exc

    writer = threading.Thread(target=run)
    writer.start()
    time.sleep(1.0)
    private_broker.freeze()  # keeps its sockets, answers nothing: writes go unacknowledged
    time.sleep(0.5)
    stop.set()
    abandon.set()
    started = time.monotonic()
    writer.join(20)
    assert not writer.is_alive()
    assert time.monotonic() - started < 5  # not the 60 s flush timeout
    assert isinstance(outcome.get("error"), DeliveryFailed)
    assert "unacknowledged" in str(outcome["error"])
