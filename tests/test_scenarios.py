"""Bundled scenarios, their generators and the scenario format.

The bundled recordings must load, keep each key's events in time order, carry labels
exactly where their incident lists say, and be what their generators produce today, byte
for byte (the proof that anyone can rebuild them). Every way a ``scenario.toml`` can be
wrong has its own clear message.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import pytest

from stream_rnn.io.scenario import (
    FIELDS,
    Incident,
    Scenario,
    ScenarioError,
    is_maximum,
    load_scenario,
    write_events,
)
from stream_rnn.synth.cards import FRAUD_KINDS, card_events
from stream_rnn.synth.energy import energy_events
from stream_rnn.synth.plant import INCIDENT_KINDS, plant_events
from stream_rnn.synth.record import RECORDINGS, generator_call, main, record

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
BUNDLED = sorted(p.name for p in SCENARIOS.iterdir() if (p / "scenario.toml").is_file())


def _entity(scenario: Scenario, event: dict) -> str:
    # The models' name for an entity: the key fields joined with "|".
    return "|".join(str(event[k]) for k in scenario.keys)


@pytest.fixture(scope="module")
def loaded():
    out = {}
    for name in BUNDLED:
        scenario = load_scenario(SCENARIOS / name)
        out[name] = (scenario, list(scenario.events()))
    return out


# ----------------------------------------------------------------- bundled recordings


def test_the_three_bundled_scenarios_cover_every_task():
    assert set(BUNDLED) >= set(RECORDINGS)
    tasks = {load_scenario(SCENARIOS / name).task for name in RECORDINGS}
    assert tasks == {"sensor", "fraud", "forecast"}


def test_bundled_scenarios_stay_small():
    total = sum(f.stat().st_size for f in SCENARIOS.rglob("*") if f.is_file())
    assert total < 5_000_000, f"scenarios/ holds {total:,} bytes"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_scenario_loads_with_incidents_and_expectations(name, loaded):
    scenario, events = loaded[name]
    assert scenario.name == name
    assert scenario.incidents, "a bundled scenario lists its incidents"
    assert scenario.expect, "a bundled scenario states the quality a replay must reach"
    assert events and all(set(scenario.keys) <= set(e) for e in events)
    if scenario.task == "fraud":
        assert scenario.label_delay_seconds > 0
        assert all("id" in e for e in events)
        assert len({e["id"] for e in events}) == len(events)
    if scenario.task == "forecast":
        assert all(set(scenario.target) <= set(e["features"]) for e in events)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_events_are_in_time_order_per_key_and_overall(name, loaded):
    scenario, events = loaded[name]
    last: dict[str, float] = {}
    for n, event in enumerate(events):
        key = _entity(scenario, event)
        assert event["ts"] >= last.get(key, -math.inf), f"event {n} of {key} goes back in time"
        last[key] = event["ts"]
    times = [e["ts"] for e in events]
    assert times == sorted(times)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_labels_match_the_incident_list(name, loaded):
    scenario, events = loaded[name]
    covered = [0] * len(scenario.incidents)
    for event in events:
        key = _entity(scenario, event)
        inside = [i for i, inc in enumerate(scenario.incidents)
                  if key in inc.keys and inc.start <= event["ts"] <= inc.end]
        if event["label"] == 1:
            assert inside, f"labelled event of {key} at {event['ts']} is in no incident"
            for i in inside:
                covered[i] += 1
        elif scenario.task != "fraud":
            # Sensor and outage incidents label every reading of their keys in the window;
            # a fraud case leaves the owner's own purchases in its window unlabelled.
            assert not inside, f"unlabelled event of {key} at {event['ts']} inside an incident"
    assert all(covered), "every incident labels at least one event"


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_regenerating_gives_the_committed_files_byte_for_byte(name, tmp_path):
    record(tmp_path, [name])
    for file in ("events.jsonl.gz", "incidents.json"):
        fresh = (tmp_path / name / file).read_bytes()
        committed = (SCENARIOS / name / file).read_bytes()
        if file.endswith(".gz"):
            # The content first, so a difference shows as data rather than compression.
            assert gzip.decompress(fresh) == gzip.decompress(committed), f"{name}/{file}"
        assert fresh == committed, f"{name}/{file} differs from its regeneration"


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_description_quotes_the_generator_call(name):
    description = " ".join(load_scenario(SCENARIOS / name).description.split())
    assert generator_call(name) in description


def test_record_command_writes_a_scenario_and_rejects_unknown_names(tmp_path, capsys):
    assert main([str(tmp_path), "energy"]) == 0
    assert "52416 events" in capsys.readouterr().out
    assert (tmp_path / "energy" / "incidents.json").is_file()
    assert main([str(tmp_path), "nope"]) == 2
    assert "no generator for ['nope']" in capsys.readouterr().err


def test_the_same_events_give_the_same_bytes_whatever_the_file_name_and_time(tmp_path):
    events, _ = energy_events(n_regions=2, days=10, seed=3, outages=1)
    write_events(events, tmp_path / "a.jsonl.gz")
    time.sleep(1.1)  # the gzip header's time has a one-second resolution
    write_events(events, tmp_path / "another-name.jsonl.gz")
    first = (tmp_path / "a.jsonl.gz").read_bytes()
    assert first == (tmp_path / "another-name.jsonl.gz").read_bytes()
    assert gzip.decompress(first).decode("utf-8").count("\n") == len(events)


# ----------------------------------------------------------------- generators

SMALL = {
    "plant": lambda seed: plant_events(n_sensors=12, n_steps=1200, seed=seed),
    "cards": lambda seed: card_events(n_cards=150, n_terminals=40, days=14, seed=seed,
                                      card_testing=2, account_takeover=2,
                                      compromised_terminals=1),
    "energy": lambda seed: energy_events(n_regions=3, days=40, seed=seed, outages=2),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generators_are_deterministic_per_seed(name):
    first, incidents = SMALL[name](7)
    again, incidents_again = SMALL[name](7)
    other, _ = SMALL[name](8)
    assert json.dumps(first) == json.dumps(again)
    assert incidents == incidents_again
    assert json.dumps(first) != json.dumps(other)


def test_plant_has_every_incident_kind_labelled_on_its_sensors():
    events, incidents = plant_events(n_sensors=24, n_steps=2016, seed=5)
    assert {i.kind for i in incidents} == set(INCIDENT_KINDS)
    labelled = {(e["key"], e["ts"]) for e in events if e["label"] == 1}
    by_key = defaultdict(list)
    for e in events:
        by_key[e["key"]].append(e)
    expected = set()
    for inc in incidents:
        for key in inc.keys:
            window = [e for e in by_key[key] if inc.start <= e["ts"] <= inc.end]
            assert window, f"{inc.kind} on {key} covers no reading"
            expected |= {(key, e["ts"]) for e in window}
    assert labelled == expected
    # Correlated failures hit several sensors of one line; a line trip hits all of it.
    correlated = [i for i in incidents if i.kind == "correlated"]
    assert all(len(i.keys) >= 2 and len({k.split("-")[0] for k in i.keys}) == 1
               for i in correlated)
    assert any(len(i.keys) == 12 for i in correlated)


def test_plant_incidents_change_the_readings():
    def readings(events, key):
        return {e["ts"]: e["features"]["value"] for e in events if e["key"] == key}

    events, incidents = plant_events(n_sensors=24, n_steps=2016, seed=5)
    stuck = next(i for i in incidents if i.kind == "stuck")
    values = readings(events, stuck.keys[0])
    assert len({v for t, v in values.items() if stuck.start <= t <= stuck.end}) == 1
    spike = next(i for i in incidents if i.kind == "spike")
    values = readings(events, spike.keys[0])
    steps = sorted(values)
    jumps = [abs(values[b] - values[a]) for a, b in zip(steps, steps[1:], strict=False)]
    at = steps.index(spike.start)
    assert jumps[at - 1] > sorted(jumps)[int(0.99 * len(jumps))]


def test_plant_keeps_the_demo_signature():
    events, incidents = plant_events(n_sensors=12, n_steps=2016, seed=0)
    assert len(events) == 12 * 2016 and len({e["key"] for e in events}) == 12
    assert {i.kind for i in incidents} == set(INCIDENT_KINDS)


def test_cards_label_each_fraud_kind_on_its_card_and_terminal():
    events, incidents = SMALL["cards"](2)
    assert {i.kind for i in incidents} == set(FRAUD_KINDS)
    frauds = [e for e in events if e["label"] == 1]
    assert 0 < len(frauds) < 0.05 * len(events)
    for e in frauds:
        pair = f"{e['key']}|{e['terminal']}"
        assert any(i.covers(pair, e["ts"]) for i in incidents), pair
    for inc in incidents:
        assert any(e["label"] == 1 and inc.covers(f"{e['key']}|{e['terminal']}", e["ts"])
                   for e in events), inc
    testing = [i for i in incidents if i.kind == "card_testing"]
    assert all(i.end - i.start < 86_400 for i in testing), "card testing takes minutes-hours"
    ids = [e["id"] for e in events]
    assert ids == list(range(len(events)))


def test_card_testing_bursts_are_many_small_amounts():
    events, incidents = SMALL["cards"](2)
    for inc in (i for i in incidents if i.kind == "card_testing"):
        burst = [e["features"]["amount"] for e in events if e["label"] == 1
                 and inc.covers(f"{e['key']}|{e['terminal']}", e["ts"])]
        small = [a for a in burst if a < 5.0]
        assert len(small) >= 6


def test_energy_labels_outages_and_carries_temperature():
    events, incidents = SMALL["energy"](4)
    assert [i.kind for i in incidents] == ["outage", "outage"]
    for inc in incidents:
        window = [e for e in events if inc.covers(e["key"], e["ts"])]
        assert window and all(e["label"] == 1 for e in window)
    assert sum(e["label"] for e in events) == sum(
        (i.end - i.start) // 3600 + 1 for i in incidents)
    assert all(set(e["features"]) == {"demand", "temperature"} for e in events)


def test_generators_reject_sizes_they_cannot_fill():
    with pytest.raises(ValueError, match="n_sensors"):
        plant_events(n_sensors=0)
    with pytest.raises(ValueError, match="8 days"):
        card_events(days=3)
    with pytest.raises(ValueError, match="n_regions"):
        energy_events(n_regions=9)


def test_incident_rejects_an_empty_or_backwards_window():
    with pytest.raises(ValueError, match="touches no key"):
        Incident("spike", (), 1, 2)
    with pytest.raises(ValueError, match="before it starts"):
        Incident("spike", ("a",), 5, 2)


# ----------------------------------------------------------------- the format


def _scenario(tmp_path: Path, toml: str, events: list | str | None = None,
              name: str = "events.jsonl") -> Path:
    folder = tmp_path / "s"
    folder.mkdir(exist_ok=True)
    (folder / "scenario.toml").write_text(toml, encoding="utf-8")
    if events is None:
        events = [{"ts": 1_700_000_000, "key": "a", "id": 1,
                   "features": {"value": 1.0, "demand": 2.0}, "label": 0}]
    text = events if isinstance(events, str) else "".join(json.dumps(e) + "\n" for e in events)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


HEAD = 'name = "t"\nevents = "events.jsonl"\n'


def test_a_minimal_scenario_loads_with_defaults(tmp_path):
    scenario = load_scenario(_scenario(tmp_path, HEAD + 'task = "sensor"\n'))
    assert (scenario.keys, scenario.label_delay_seconds, scenario.incidents) == (
        ("key",), 0.0, ())
    assert scenario.threshold is None and scenario.target == ()
    assert next(scenario.events())["key"] == "a"


@pytest.mark.parametrize("toml,message", [
    ('task = "sensor"\n', "missing required field 'name'"),
    ('name = "t"\n', "missing required field 'task'"),
    (HEAD + 'task = "sensor"\ncolour = "red"\n', "unknown field(s) 'colour'; known: name"),
    (HEAD + 'task = "sensor"\ntarget = "value"\n', "unknown field(s) 'target'"),
    ('name = 3\ntask = "sensor"\n', "'name' must be a non-empty string, got 3"),
    (HEAD + 'task = "vision"\n', "task must be one of sensor, fraud, forecast; got 'vision'"),
    (HEAD + 'task = "sensor"\nkeys = "key"\n', "'keys' must be a non-empty list"),
    (HEAD + 'task = "sensor"\nkeys = []\n', "'keys' must be a non-empty list"),
    (HEAD + 'task = "sensor"\nkeys = ["key", "key"]\n', "'keys' names a field twice"),
    (HEAD + 'task = "sensor"\nlabel_delay_seconds = "1 day"\n',
     "'label_delay_seconds' must be a number, got '1 day'"),
    (HEAD + 'task = "sensor"\nlabel_delay_seconds = -5\n',
     "'label_delay_seconds' must be >= 0, got -5"),
    (HEAD + 'task = "sensor"\nthreshold = 2\n', "'threshold' must be >= 0 and <= 1, got 2"),
    (HEAD + 'task = "sensor"\nseason_seconds = 0\n', "'season_seconds' must be > 0, got 0"),
    (HEAD + 'task = "sensor"\nmodel = 3\n', "[model] must be a table, got 3"),
    (HEAD + 'task = "sensor"\nexpect = [1]\n', "[expect] must be a table"),
    (HEAD + 'task = "fraud"\n', "a fraud scenario needs label_delay_seconds > 0"),
    (HEAD + 'task = "fraud"\nlabel_delay_seconds = 0\n',
     "a fraud scenario needs label_delay_seconds > 0"),
    (HEAD + 'task = "forecast"\n', "a forecast scenario needs [model] target"),
    (HEAD + 'task = "forecast"\n[model]\ntarget = 3\n',
     "[model] target must be a feature name or a list of them, got 3"),
    (HEAD + 'task = "forecast"\n[model]\nparams = 3\n', "[model.params] must be a table"),
    (HEAD + 'task = "sensor"\n[model]\ntarget = "value"\n',
     "[model] target only applies to forecast scenarios (task is 'sensor')"),
    (HEAD + 'task = "sensor"\n[expect]\nroc_auc = "high"\n',
     "[expect] roc_auc must be a number, got 'high'"),
    (HEAD + 'task = "sensor"\n[expect]\nrecall = true\n',
     "[expect] recall must be a number, got True"),
    (HEAD + 'task = "sensor"\n[expect]\nroc_auc = 1.5\n',
     "[expect] roc_auc is a fraction, must be in [0, 1], got 1.5"),
    (HEAD + 'task = "sensor"\n[expect]\nmae = -1\n',
     "[expect] mae is an upper bound on a non-negative metric, got -1"),
    (HEAD + 'task = "sensor"\n[expect]\n"ROC AUC" = 0.5\n',
     "[expect] 'ROC AUC' is not a metric name"),
    (HEAD + 'task = "sensor"\nincidents = 3\n',
     "'incidents' must be a file name or an array of tables, got 3"),
])
def test_each_manifest_error_names_the_file_and_the_fault(tmp_path, toml, message):
    folder = _scenario(tmp_path, toml)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(folder)
    assert str(folder / "scenario.toml") in str(exc.value)
    assert message in str(exc.value)


def test_not_toml_and_no_manifest_are_clear_errors(tmp_path):
    with pytest.raises(ScenarioError, match="no scenario.toml here"):
        load_scenario(tmp_path)
    folder = _scenario(tmp_path, "name = \n")
    with pytest.raises(ScenarioError, match="scenario.toml: Invalid value"):
        load_scenario(folder)


def test_scenario_errors_are_value_errors():
    assert issubclass(ScenarioError, ValueError)


def test_every_documented_field_is_accepted(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "incidents.json").write_text("[]", encoding="utf-8")
    toml = "\n".join([
        'name = "t"', 'description = "all fields"', 'task = "forecast"', 'keys = ["key"]',
        'events = "events.jsonl"', 'incidents = "incidents.json"',
        "label_delay_seconds = 60", "season_seconds = 3600", "threshold = 0.9",
        "[model]", 'target = ["demand"]', "hidden_size = 4", "[expect]", "mae = 1.0", ""])
    scenario = load_scenario(_scenario(tmp_path, toml))
    assert {"name", "description", "task", "keys", "events", "incidents",
            "label_delay_seconds", "season_seconds", "threshold", "model",
            "expect"} == set(FIELDS)
    assert (scenario.target, scenario.season_seconds, scenario.threshold) == (
        ("demand",), 3600.0, 0.9)


def test_a_missing_events_file_names_the_resolved_path(tmp_path):
    toml = 'name = "t"\ntask = "sensor"\nevents = "../../data/stream.jsonl.gz"\n'
    folder = _scenario(tmp_path, toml)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(folder)
    resolved = folder / "../../data/stream.jsonl.gz"
    assert f"events file {resolved} does not exist" in str(exc.value)
    assert "'../../data/stream.jsonl.gz'" in str(exc.value)


def test_events_may_point_at_a_dataset_outside_the_folder(tmp_path):
    data = tmp_path / "datasets" / "fraud"
    data.mkdir(parents=True)
    write_events([{"ts": "2024-01-01T00:00:00Z", "key": "c", "terminal": "t", "id": 7,
                   "features": {"amount": 3.5}, "label": 0}], data / "dev.jsonl.gz")
    toml = ('name = "dev"\ntask = "fraud"\nkeys = ["key", "terminal"]\n'
            'label_delay_seconds = 86400\nevents = "../datasets/fraud/dev.jsonl.gz"\n')
    scenario = load_scenario(_scenario(tmp_path, toml))
    assert scenario.events_path.resolve() == (data / "dev.jsonl.gz").resolve()
    assert [e["id"] for e in scenario.events()] == [7]


@pytest.mark.parametrize("toml,events,message", [
    (HEAD + 'task = "sensor"\n', "", "no events"),
    (HEAD + 'task = "sensor"\n', "{not json\n", "events.jsonl:1: not JSON"),
    (HEAD + 'task = "sensor"\n', "\n[1, 2]\n", "events.jsonl:2: an event must be a JSON object"),
    (HEAD + 'task = "sensor"\nkeys = ["sensor"]\n',
     [{"ts": 1, "key": "a", "features": {}}], "event lacks 'sensor' (keys = ['sensor']"),
    (HEAD + 'task = "sensor"\n', [{"key": "a", "features": {}}], "event lacks 'ts'"),
    (HEAD + 'task = "sensor"\n', [{"ts": 1, "key": "a", "features": [1]}],
     "'features' must be an object"),
    (HEAD + 'task = "fraud"\nlabel_delay_seconds = 60\n',
     [{"ts": 1, "key": "a", "features": {"amount": 1}}], "fraud events need an 'id'"),
    (HEAD + 'task = "forecast"\n[model]\ntarget = "load"\n',
     [{"ts": 1, "key": "a", "features": {"demand": 1}}],
     "target 'load' is not among the features ['demand']"),
])
def test_a_stream_that_cannot_feed_the_task_fails_at_load(tmp_path, toml, events, message):
    with pytest.raises(ScenarioError, match="events.jsonl") as exc:
        load_scenario(_scenario(tmp_path, toml, events))
    assert message in str(exc.value)


def test_a_bad_line_later_in_the_stream_names_its_line(tmp_path):
    good = json.dumps({"ts": 1, "key": "a", "features": {"value": 1}})
    scenario = load_scenario(_scenario(tmp_path, HEAD + 'task = "sensor"\n',
                                       f"{good}\n{good}\noops\n"))
    with pytest.raises(ScenarioError, match=r"events.jsonl:3: not JSON"):
        list(scenario.events())


def test_incidents_load_from_a_file_or_inline_tables(tmp_path):
    folder = _scenario(tmp_path, HEAD + 'task = "sensor"\n')
    (folder / "incidents.json").write_text(json.dumps([
        {"kind": "spike", "keys": ["a"], "start": 1_700_000_000, "end": 1_700_000_000},
        {"kind": "drift", "keys": ["a", "b"], "start": "2024-01-01T00:00:00Z",
         "end": "2024-01-01T01:00:00+00:00"}]), encoding="utf-8")
    spike, drift = load_scenario(folder).incidents
    assert (spike.kind, spike.keys, spike.start, spike.end) == (
        "spike", ("a",), 1_700_000_000.0, 1_700_000_000.0)
    assert (drift.start, drift.end) == (1_704_067_200.0, 1_704_070_800.0)

    inline = HEAD + ('task = "sensor"\n[[incidents]]\nkind = "stuck"\nkeys = ["a"]\n'
                     'start = 10\nend = 20\n')
    (stuck,) = load_scenario(_scenario(tmp_path, inline)).incidents
    assert (stuck.kind, stuck.start, stuck.end) == ("stuck", 10.0, 20.0)


@pytest.mark.parametrize("content,message", [
    ("{oops", "incidents.json: not JSON"),
    ('{"kind": "spike"}', "incidents.json: must hold a JSON list of incidents"),
    ("[3]", "incidents.json[0]: an incident must be an object"),
    ('[{"kind": "spike", "keys": ["a"]}]', "incidents.json[0]: incident lacks start, end"),
    ('[{"kind": "spike", "keys": ["a"], "start": 1, "end": 2, "note": "x"}]',
     "unknown incident field(s) note"),
    ('[{"kind": "", "keys": ["a"], "start": 1, "end": 2}]',
     "incident kind must be a non-empty string"),
    ('[{"kind": "spike", "keys": "a", "start": 1, "end": 2}]',
     "incident keys must be a non-empty list of strings, got 'a'"),
    ('[{"kind": "spike", "keys": ["a"], "start": "noon", "end": 2}]',
     "incident start: ts is not ISO 8601"),
    ('[{"kind": "spike", "keys": ["a"], "start": 5, "end": 2}]',
     "incident ends before it starts (5 > 2)"),
])
def test_each_incident_error_is_named(tmp_path, content, message):
    folder = _scenario(tmp_path, HEAD + 'task = "sensor"\n')
    (folder / "incidents.json").write_text(content, encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(folder)
    assert message in str(exc.value)


def test_a_named_incidents_file_must_exist(tmp_path):
    folder = _scenario(tmp_path, HEAD + 'task = "sensor"\nincidents = "windows.json"\n')
    with pytest.raises(ScenarioError) as exc:
        load_scenario(folder)
    assert f"incidents file {folder / 'windows.json'} does not exist" in str(exc.value)


# ----------------------------------------------------------------- expectations


def test_errors_and_delays_are_maximums_everything_else_minimums():
    for name in ("mae", "rmse", "mae_ratio_vs_seasonal_naive", "mean_detection_delay_seconds",
                 "max_detection_delay_seconds", "dead_letter_total"):
        assert is_maximum(name), name
    for name in ("roc_auc", "average_precision", "precision", "recall",
                 "incident_detection_rate", "daily_roc_auc_mean", "card_precision_at_100_mean"):
        assert not is_maximum(name), name


def test_check_reports_each_missed_expectation_with_measured_and_expected():
    scenario = Scenario("s", "", "fraud", ("key",), Path("x"), expect={
        "roc_auc": 0.8, "recall": 0.5, "mae": 2.0, "mean_detection_delay_seconds": 600.0,
        "average_precision": 0.3, "precision": 0.2})
    failures = scenario.check({
        "roc_auc": 0.79, "recall": 0.5, "mae": 2.5, "mean_detection_delay_seconds": 300.0,
        "average_precision": None, "precision": float("nan")})
    assert failures == [
        "roc_auc: measured 0.79, expected >= 0.8",
        "mae: measured 2.5, expected <= 2",
        "average_precision: not measured, expected >= 0.3",
        "precision: not measured, expected >= 0.2",
    ]
    assert scenario.check({"roc_auc": 0.9, "recall": 0.6, "mae": 1.0,
                           "mean_detection_delay_seconds": 600.0, "average_precision": 0.3,
                           "precision": 0.2}) == []

