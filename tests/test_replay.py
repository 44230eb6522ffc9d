"""``stream-rnn replay``: the engine, its summary numbers (recomputed here independently),
delayed labels, pacing, ``--check`` and the command's errors."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from replay_support import (
    INVALID_LINES,
    START,
    STEP,
    STEPS_PER_DAY,
    Output,
    RunningMeanTask,
    sensor_events,
    tiny_scenario,
    write_scenario,
)
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from stream_rnn.cli import main
from stream_rnn.commands.replay import _Progress
from stream_rnn.io.scenario import load_scenario
from stream_rnn.replay import (
    DEFAULT_THRESHOLD,
    ReplayError,
    check_expectations,
    model_params,
    parse_assignments,
    replay,
    summarize,
)

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tiny(tmp_path):
    return tiny_scenario(tmp_path / "tiny")


# ----------------------------------------------------------------------------- the engine


def test_summary_numbers_match_an_independent_computation(tiny, tmp_path):
    threshold = 0.99
    model = RunningMeanTask()
    result = replay(tiny, threshold=threshold, task_factory=lambda params: model,
                    batch_size=64)
    summary = summarize(result)
    events, incidents = sensor_events()

    # Every valid record scored once, in order; each bad record counted under its reason.
    assert summary["events"] == len(events) == result.n_events
    assert summary["records_read"] == len(events) + len(INVALID_LINES) + 1
    expected_dead = {reason: 1 for _, reason in INVALID_LINES} | {"not_json": 1}
    assert summary["dead_letters"] == dict(sorted(expected_dead.items()))
    assert [("|".join(k), t) for k, t in zip(result.keys, result.ts.tolist(), strict=True)] == [
        (e["key"], float(e["ts"])) for e in events]

    y = np.array([e["label"] for e in events])
    s = result.score
    flags = s > threshold
    assert summary["flags"] == int(flags.sum()) > 0
    assert summary["flag_rate"] == pytest.approx(flags.mean())
    assert summary["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert summary["average_precision"] == pytest.approx(average_precision_score(y, s))
    p, r, f, _ = precision_recall_fscore_support(y, flags, average="binary")
    assert (summary["precision"], summary["recall"], summary["f1"]) == pytest.approx((p, r, f))

    # Incidents come from the labelled runs; delay = first flag in the window - start.
    assert summary["incident_source"] == "labels"
    assert summary["incidents"] == len(incidents)
    delays = []
    for key, first, last in incidents:
        start, end = START + first * STEP, START + last * STEP
        hits = [e["ts"] for e, score in zip(events, s, strict=True)
                if e["key"] == key and start <= e["ts"] <= end and score > threshold]
        delays.append(hits[0] - start if hits else None)
    listed = [inc["delay_seconds"] for inc in summary["incident_list"]]
    assert listed == delays
    found = [d for d in delays if d is not None]
    assert summary["incidents_detected"] == len(found) >= 1
    assert summary["incident_detection_rate"] == pytest.approx(len(found) / len(delays))
    assert summary["mean_detection_delay_seconds"] == pytest.approx(np.mean(found))

    # Forecast errors from the recorded predictions, and the seasonal-naive baseline
    # straight from the generated values (one day earlier, same sensor).
    errors = [e["features"]["value"] - pred["value"]
              for e, pred in zip(events, result.prediction, strict=True) if pred]
    assert summary["forecast_points"] == len(errors)
    assert summary["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert summary["rmse"] == pytest.approx(math.sqrt(np.mean(np.square(errors))))
    by_key: dict[str, list[float]] = {}
    for e in events:
        by_key.setdefault(e["key"], []).append(e["features"]["value"])
    naive = [v[t] - v[t - STEPS_PER_DAY] for v in by_key.values()
             for t in range(STEPS_PER_DAY, len(v))]
    assert summary["seasonal_naive_mae"] == pytest.approx(np.mean(np.abs(naive)))
    assert summary["seasonal_naive_rmse"] == pytest.approx(math.sqrt(np.mean(np.square(naive))))
    # The running mean ignores the daily cycle, so last day's reading beats it.
    assert summary["mae_ratio_vs_seasonal_naive"] > 1.0

    # Training statistics were sampled after every batch.
    assert [sample["events"] for sample in result.loss] == [
        float(min(len(events), 64 * (i + 1))) for i in range(len(result.loss))]


def test_the_sensor_model_replays_like_serve(tmp_path):
    # The real task model: its own feature check turns an unknown feature into a dead
    # letter, and the scores still rank the incidents.
    events, _ = sensor_events(days=1.0)
    odd = {"ts": START + 7 * STEP, "key": "a", "features": {"value": 1.0, "pressure": 2.0}}
    scenario = load_scenario(write_scenario(tmp_path / "s", events[:30] + [odd] + events[30:]))
    result = replay(scenario)
    summary = summarize(result)
    assert summary["dead_letters"] == {"unknown_feature": 1}
    assert summary["events"] == len(events)
    y = np.array([e["label"] for e in events])
    assert summary["roc_auc"] == pytest.approx(roc_auc_score(y, result.score))
    assert summary["roc_auc"] > 0.8
    assert summary["threshold"] == DEFAULT_THRESHOLD == 0.999
    assert summary["config"]["model"]["hidden_size"] == 8
    assert summary["model_stats"]["keys"] == 3


def test_limit_reads_only_a_prefix_and_overrides_reach_the_model(tiny):
    seen = {}

    def build(params):
        seen.update(params)
        return RunningMeanTask(params)

    result = replay(tiny, limit=100, overrides={"hidden_size": 4}, task_factory=build)
    assert result.records_read == 100 and result.n_events == 100
    assert seen["hidden_size"] == 4 and seen["window"] == 8  # override, then the scenario
    assert seen["optimizer"] == "adam"  # serve's default for what neither names
    assert model_params(tiny, {"lr": 0.1})["lr"] == 0.1


def test_unknown_model_argument_is_a_replay_error(tiny):
    with pytest.raises(ReplayError, match="hiden_size"):
        replay(tiny, overrides={"hiden_size": 4}, limit=10)


@pytest.mark.parametrize("bad", [{"speed": 0.0}, {"batch_size": 0}, {"limit": -1},
                                 {"threshold": 1.5}])
def test_bad_replay_arguments_are_refused(tiny, bad):
    with pytest.raises(ReplayError):
        replay(tiny, task_factory=RunningMeanTask, **bad)


# ----------------------------------------------------------------------------- labels


class CardMemory:
    """Scores 1 for a card once a fraud label of that card has been applied, else 0:
    any label used before its time shows up in a score."""

    def __init__(self) -> None:
        self.card_of: dict[str, str] = {}
        self.known_fraud: set[str] = set()
        self.seen_labels: list[int | None] = []

    def process(self, events):
        out = []
        for event in events:
            self.seen_labels.append(event.label)
            self.card_of[event.event_id] = event.keys[0]
            out.append(Output(1.0 if event.keys[0] in self.known_fraud else 0.0))
        return out

    def apply_label(self, event_id, label):
        if label == 1:
            self.known_fraud.add(self.card_of[event_id])
        return True


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 100])
def test_labels_reach_the_model_only_after_their_delay(tmp_path, batch_size):
    delay = 50.0
    times = [0, 10, 20, 45, 49, 50, 60, 100, 200]
    events = [{"ts": START + t, "key": "card-1", "id": f"tx-{t}", "features": {"amount": 1.0},
               "label": 1 if t == 0 else 0} for t in times]
    folder = write_scenario(tmp_path / "cards", events, task="fraud",
                            extra=f"label_delay_seconds = {delay}")
    model = CardMemory()
    result = replay(load_scenario(folder), task_factory=lambda params: model,
                    batch_size=batch_size)
    # The model never saw a label with an event.
    assert model.seen_labels == [None] * len(times)
    scores = dict(zip(times, result.score.tolist(), strict=True))
    # Before the fraud label is due, no score may know about it.
    assert all(scores[t] == 0.0 for t in times if t < delay)
    # It arrives at the first batch that starts once stream time has reached it: with one
    # event per batch exactly on time, otherwise at most one batch late.
    starts = times[::batch_size]
    known_from = next((t for t in starts if t >= delay), math.inf)
    assert result.score.tolist() == [float(t >= known_from) for t in times]
    if batch_size == 1:
        assert [scores[t] for t in times if t >= delay] == [1.0] * 4
    # Every label whose time came was applied; the last one never came due.
    assert result.labels_applied + result.labels_pending == len(times)
    assert result.labels_pending == sum(1 for t in times if t + delay > times[-1])


# ----------------------------------------------------------------------------- pacing


def _paced_scenario(tmp_path, seconds: float, n: int):
    events = [{"ts": START + i * seconds / (n - 1), "key": "k", "features": {"v": float(i)}}
              for i in range(n)]
    return load_scenario(write_scenario(tmp_path / "paced", events))


def test_paced_replay_waits_for_each_event_on_an_injected_clock(tmp_path):
    scenario = _paced_scenario(tmp_path, seconds=19.0, n=20)
    now = [100.0]
    process_times = []

    class Clocked(RunningMeanTask):
        def process(self, events):
            process_times.extend([now[0]] * len(events))
            return super().process(events)

    def sleep(seconds):
        now[0] += seconds

    result = replay(scenario, speed=4.0, task_factory=Clocked, clock=lambda: now[0],
                    sleep=sleep)
    due = [100.0 + (t - START) / 4.0 for t in result.ts.tolist()]
    assert all(at >= d - 1e-9 for at, d in zip(process_times, due, strict=True))
    assert result.paced_sleep_seconds == pytest.approx(19.0 / 4.0)
    assert result.seconds == pytest.approx(19.0 / 4.0)


def test_paced_replay_honors_speed_in_wall_time(tmp_path):
    scenario = _paced_scenario(tmp_path, seconds=3.0, n=31)
    result = replay(scenario, speed=10.0, task_factory=RunningMeanTask)  # 0.3 s of wall time
    assert 0.25 <= result.seconds < 3.0
    fast = replay(scenario, task_factory=RunningMeanTask)
    assert fast.seconds < 0.25 and fast.paced_sleep_seconds == 0.0


# ----------------------------------------------------------------------------- expectations


def test_expectations_bound_errors_and_delays_from_above():
    summary = {"roc_auc": 0.8, "mae": 2.5, "mean_detection_delay_seconds": 900.0,
               "recall": None}
    assert check_expectations({"roc_auc": 0.75, "mae": 3.0}, summary) == []
    assert check_expectations(
        {"roc_auc": 0.9, "mae": 2.0, "mean_detection_delay_seconds": 600, "recall": 0.5,
         "f1": 0.1},
        summary) == [
        "roc_auc: measured 0.8, expected >= 0.9",
        "mae: measured 2.5, expected <= 2",
        "mean_detection_delay_seconds: measured 900, expected <= 600",
        "recall: not measured, expected >= 0.5",
        "f1: not measured, expected >= 0.1",
    ]


def test_parse_assignments_reads_toml_values():
    assert parse_assignments(["model.lr=1e-3", "model.clip_norm=false", "model.cell = gru"]) == {
        "model": {"lr": 0.001, "clip_norm": False, "cell": "gru"}}
    assert parse_assignments(["model.params.season=24", "model.hidden_size=8"]) == {
        "model": {"params": {"season": 24}, "hidden_size": 8}}
    for bad in (["model=3"], ["model.=3"], [".lr=3"], ["model..lr=1"],
                ["model.params=3", "model.params.season=24"]):
        with pytest.raises(ReplayError):
            parse_assignments(bad)


# ----------------------------------------------------------------------------- the command


def _tiny_folder(tmp_path, expect):
    events, _ = sensor_events(days=1.0)
    return write_scenario(tmp_path / "tiny", events, expect=expect)


def test_replay_command_writes_scores_summary_and_report(tmp_path, capsys):
    folder = _tiny_folder(tmp_path, {"roc_auc": 0.5})
    out = tmp_path / "out"
    assert main(["replay", str(folder), "--out", str(out), "--set", "model.hidden_size=4",
                 "--threshold", "0.99", "--keys", "b,nope"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = _records(out / "scores.jsonl")
    assert summary["events"] == len(records) == 3 * STEPS_PER_DAY
    assert summary["config"]["model"]["hidden_size"] == 4
    assert summary["flags"] == sum(r["flag"] for r in records)
    assert all(r["flag"] == (r["score"] > 0.99) for r in records)
    assert records[0]["src"] == "tiny:0:0" and records[0]["key"] == "a"
    assert summary["roc_auc"] == pytest.approx(
        roc_auc_score([r["label"] for r in records], [r["score"] for r in records]))
    html = (out / "report.html").read_text()
    assert 'data-key="b"' in html and "Not in this replay: nope" in html
    captured = capsys.readouterr()
    assert "3 expectation" not in captured.out and "wrote" in captured.out
    assert "not in this replay: nope" in captured.err
    # Not a terminal: plain progress lines.
    assert "replay: " in captured.err and "\r" not in captured.err


def test_check_passes_when_every_expectation_is_met(tmp_path, capsys):
    folder = _tiny_folder(tmp_path, {"roc_auc": 0.6, "max_detection_delay_seconds": 86400})
    assert main(["replay", str(folder), "--out", str(tmp_path / "o"), "--check"]) == 0
    assert "check passed: 2 expectation(s) met" in capsys.readouterr().out


def test_check_fails_listing_each_missed_expectation(tmp_path, capsys):
    events, _ = sensor_events(days=1.0)
    folder = write_scenario(tmp_path / "tiny", events, raw_lines=[b"[1, 2]"], expect={
        "roc_auc": 0.6, "flags": 1e9, "dead_letter_total": 0, "mae_of_nothing": 1})
    assert main(["replay", str(folder), "--out", str(tmp_path / "o"), "--check"]) == 1
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "check failed: 3 expectation(s) not met" in out
    assert f"flags: measured {summary['flags']:.4g}, expected >= 1e+09" in out
    assert "dead_letter_total: measured 1, expected <= 0" in out
    assert "mae_of_nothing: not measured, expected <= 1" in out
    assert "roc_auc" not in out.split("check failed")[1]
    assert len(summary["expect_failures"]) == 3
    # Without --check the same replay succeeds.
    assert main(["replay", str(folder), "--out", str(tmp_path / "o")]) == 0


def test_missing_scenario_exits_2(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["replay", "no-such-bundled-scenario"]) == 2
    assert "neither a folder here nor a bundled scenario" in capsys.readouterr().err


def test_broken_scenario_exits_2(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "scenario.toml").write_text('name = "x"\ntask = "sensor"\n')
    assert main(["replay", str(folder)]) == 2
    assert "events" in capsys.readouterr().err


@pytest.mark.parametrize("assignment,message", [
    ("hidden_size=4", "expected SECTION.FIELD=VALUE"),
    ("kafka.bootstrap=x", "unknown setting 'kafka'"),
    ("scoring.window=3", "unknown setting 'scoring.window'"),
    ("scoring.threshold=high", "scoring.threshold must be a number"),
    ("model.hiden_size=4", "hiden_size"),
])
def test_bad_set_exits_2(tmp_path, capsys, assignment, message):
    folder = _tiny_folder(tmp_path, {})
    code = main(["replay", str(folder), "--out", str(tmp_path / "o"), "--limit", "50",
                 "--set", assignment])
    assert code == 2
    assert message in capsys.readouterr().err


def test_unwritable_out_dir_exits_2(tmp_path, capsys):
    folder = _tiny_folder(tmp_path, {})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["replay", str(folder), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to output directory" in err and "a-file" in err


@pytest.mark.parametrize("flag", [["--speed", "0"], ["--limit", "0"], ["--threshold", "2"],
                                  ["--top-keys", "x"]])
def test_bad_numbers_are_usage_errors(tmp_path, flag):
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(_tiny_folder(tmp_path, {})), *flag])
    assert exc.value.code == 2


def test_progress_redraws_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    progress = _Progress(term)
    progress(1000, 3, 0.5)
    progress(2000, 4, 1.0)
    progress.close()
    text = term.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "2,000 events  2,000 events/s  4 flags" in text
    plain = io.StringIO()
    lines = _Progress(plain, every_seconds=5.0)
    for second in range(12):
        lines(second * 100, 0, float(second))
    assert plain.getvalue().count("\n") == 3  # at 0, 5 and 10 s
    assert "\r" not in plain.getvalue()


# ----------------------------------------------------------------------------- bundled


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.iterdir()
                                        if (p / "scenario.toml").is_file()))
def test_bundled_scenario_meets_its_expectations(name, tmp_path, capsys):
    code = main(["replay", str(SCENARIOS / name), "--out", str(tmp_path), "--check"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "check passed" in out
    assert (tmp_path / "report.html").stat().st_size > 10_000


def _card_stream(seed: int = 0, days: int = 8) -> list[dict]:
    # Thirty cards; from day 2, three of them are used for large fraudulent purchases.
    rng = np.random.default_rng(seed)
    events = []
    for step in range(days * 24):
        for card in rng.choice(30, size=8, replace=False).tolist():
            fraud = card < 3 and step >= 48
            amount = float(rng.lognormal(6.0 if fraud else 3.0, 0.5))
            ts = START + step * 3600 + int(rng.integers(3600))
            events.append({"ts": ts, "key": f"card-{card}", "id": f"tx-{len(events)}",
                           "features": {"amount": round(amount, 2)}, "label": int(fraud)})
    events.sort(key=lambda e: e["ts"])
    return events


def test_the_fraud_model_sees_no_label_before_its_delay(tmp_path):
    # Labels change the real fraud model's scores, so a label used too early would show:
    # the scores up to any time must not depend on labels that were not due by then.
    delay = 86_400.0
    events = _card_stream()
    model = {"hidden_size": 4, "window": 8, "update_every": 4, "seed": 0}

    def run(name, stream):
        folder = write_scenario(tmp_path / name, stream, task="fraud", model=model,
                                extra=f"label_delay_seconds = {delay}")
        return replay(load_scenario(folder), batch_size=64)

    full = run("all", events)
    ts = full.ts
    unlabelled = run("none", [{k: v for k, v in e.items() if k != "label"} for e in events])
    first_due = events[0]["ts"] + delay
    before = ts < first_due
    assert np.array_equal(full.score[before], unlabelled.score[before])
    assert not np.allclose(full.score[~before], unlabelled.score[~before])  # labels matter
    for cut in (START + 3 * 86_400, START + 5 * 86_400 + 7_200):
        due_by_cut = [e if e["ts"] + delay <= cut else {k: v for k, v in e.items() if k != "label"}
                      for e in events]
        partial = run(f"cut-{cut}", due_by_cut)
        upto = ts <= cut
        assert np.array_equal(full.score[upto], partial.score[upto])
        assert not np.array_equal(full.score, partial.score)
    summary = summarize(full)
    assert summary["labels_applied"] == full.labels_applied > 0
    assert [d["day"] for d in summary["daily"]] == list(range(8))
    assert summary["daily_roc_auc_mean"] is not None
