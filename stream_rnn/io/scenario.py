"""Recorded scenarios: a folder with ``scenario.toml``, its events and its incidents.

``scenario.toml`` (every top-level field; anything else is an error)::

    name = "cards"                        # required
    description = "..."                   # how it was made (the exact generator call)
    task = "fraud"                        # required: sensor, fraud or forecast
    keys = ["key", "terminal"]            # entity key fields of each event (default ["key"])
    events = "events.jsonl.gz"            # the stream, relative to this file (the default);
                                          # may point at a dataset elsewhere, e.g.
                                          # "../../../shared/datasets/fraud/dev.jsonl.gz"
    incidents = "incidents.json"          # labelled windows: a JSON file (the default when
                                          # it exists) or inline [[incidents]] tables
    label_delay_seconds = 86400           # fraud: required, labels arrive this much later
    season_seconds = 86400                # forecast baselines' season (optional)
    threshold = 0.999                     # score above which an event is flagged (optional)

    [model]                               # the task model's arguments; forecast scenarios
    target = "demand"                     # name the feature(s) forecast: required
    [expect]                              # quality the replay must reach (see below)

The events are the daemon's input, one JSON object a line (gzipped when the name ends in
``.gz``): ``ts``, the key fields, a ``features`` object, optionally ``label`` and ``id``.
Fraud events need an ``id`` (delayed labels name it); forecast events need the target
among their features. Loading checks the first event for these, so a scenario pointed at
the wrong file fails at once.

An incident is ``{"kind", "keys", "start", "end"}``: the entity keys it touched and the
event times it covers, ``start`` and ``end`` both included (epoch seconds, or ISO 8601
with an offset).

``[expect]`` names metrics of the replay summary. Error, delay, loss and dead-letter
metrics (a name with a ``mae``, ``rmse``, ``mse``, ``mape``, ``delay``, ``loss`` or
``dead`` part, such as ``mae``, ``mean_detection_delay_seconds``,
``mae_ratio_vs_seasonal_naive``) are maximums; every other metric (``roc_auc``,
``average_precision``, ``precision``, ``recall``, ``incident_detection_rate``, ...) is a
minimum. :meth:`Scenario.check` lists the expectations a summary misses.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_rnn.io.events import InvalidEvent, parse_timestamp

__all__ = [
    "FIELDS",
    "TASKS",
    "Incident",
    "Scenario",
    "ScenarioError",
    "is_maximum",
    "load_scenario",
    "write_events",
    "write_incidents",
]

TASKS = ("sensor", "fraud", "forecast")

#: Every top-level field of ``scenario.toml`` and the TOML type it takes.
FIELDS: dict[str, str] = {
    "name": "string",
    "description": "string",
    "task": "string",
    "keys": "list of strings",
    "events": "string",
    "incidents": "string or array of tables",
    "label_delay_seconds": "number",
    "season_seconds": "number",
    "threshold": "number",
    "model": "table",
    "expect": "table",
}

# Name parts that make an expectation a maximum: errors, delays, losses, dead letters.
_MAXIMUM_PARTS = frozenset({"mae", "rmse", "mse", "mape", "delay", "loss", "dead"})
# Expectations on these metrics are fractions.
_FRACTIONS = frozenset({
    "roc_auc", "average_precision", "precision", "recall", "f1", "incident_detection_rate",
    "daily_roc_auc_mean", "daily_average_precision_mean", "card_precision_at_100_mean",
})
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class ScenarioError(ValueError):
    """A scenario that cannot be used: the message names the file and the field at fault."""


def is_maximum(metric: str) -> bool:
    """Whether an expectation on ``metric`` is an upper bound (errors, delays, losses).

    Examples
    --------
    >>> [is_maximum(m) for m in ("mae", "mean_detection_delay_seconds", "roc_auc")]
    [True, True, False]
    """
    return bool(_MAXIMUM_PARTS & set(metric.lower().split("_")))


@dataclass(frozen=True)
class Incident:
    """A labelled window: ``kind`` on ``keys`` from ``start`` to ``end`` (epoch seconds of
    its first and last labelled event, both included). Generators return them next to
    their events; recordings keep them in ``incidents.json``; replays shade them and time
    detection per incident.

    Examples
    --------
    >>> spike = Incident("spike", ("L1-pump1-pressure",), 1_704_067_200, 1_704_067_500)
    >>> spike.to_json()
    {'kind': 'spike', 'keys': ['L1-pump1-pressure'], 'start': 1704067200, 'end': 1704067500}
    >>> spike.covers("L1-pump1-pressure", 1_704_067_500)
    True
    >>> spike.covers("L1-pump1-flow", 1_704_067_500)
    False
    """

    kind: str
    keys: tuple[str, ...]
    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError(f"{self.kind} incident touches no key")
        if self.end < self.start:
            raise ValueError(f"{self.kind} incident ends ({self.end}) before it starts "
                             f"({self.start})")

    def covers(self, key: str, ts: float) -> bool:
        """Whether an event of ``key`` at time ``ts`` falls inside this incident."""
        return key in self.keys and self.start <= ts <= self.end

    def to_json(self) -> dict[str, Any]:
        """The incident as plain JSON values (the ``incidents.json`` record)."""
        return {"kind": self.kind, "keys": list(self.keys), "start": self.start,
                "end": self.end}


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated ``scenario.toml``: where its events are and what to expect."""

    name: str
    description: str
    task: str
    keys: tuple[str, ...]
    events_path: Path
    model: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, float] = field(default_factory=dict)
    label_delay_seconds: float = 0.0
    target: tuple[str, ...] = ()
    season_seconds: float | None = None
    threshold: float | None = None
    incidents: tuple[Incident, ...] = ()
    manifest_path: Path | None = None

    def events(self) -> Iterator[dict[str, Any]]:
        """The recorded events, in order."""
        for number, line in _lines(self.events_path):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScenarioError(f"{self.events_path}:{number}: not JSON: {exc}") from None

    def check(self, summary: Mapping[str, Any]) -> list[str]:
        """The expectations ``summary`` misses, each with what was measured and expected.

        A metric the summary lacks (or holds as None or NaN) fails: it was not measured.

        Examples
        --------
        >>> s = Scenario("s", "", "sensor", ("key",), Path("events.jsonl"),
        ...              expect={"roc_auc": 0.8, "mae": 2.0})
        >>> s.check({"roc_auc": 0.75, "mae": 1.5})
        ['roc_auc: measured 0.75, expected >= 0.8']
        >>> s.check({"roc_auc": 0.9})
        ['mae: not measured, expected <= 2']
        """
        failed = []
        for name, bound in self.expect.items():
            op = "<=" if is_maximum(name) else ">="
            value = summary.get(name)
            if (not isinstance(value, int | float) or isinstance(value, bool)
                    or math.isnan(value)):
                failed.append(f"{name}: not measured, expected {op} {bound:g}")
            elif (value > bound) if op == "<=" else (value < bound):
                failed.append(f"{name}: measured {value:.4g}, expected {op} {bound:g}")
        return failed


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield number, line


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Manifest:
    """Typed access to a parsed ``scenario.toml``, raising errors that name the file."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"{self.path}: {message}")

    def string(self, name: str, required: bool = False) -> str | None:
        if name not in self.data:
            if required:
                raise self.fail(f"missing required field {name!r}")
            return None
        value = self.data[name]
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(f"{name!r} must be a non-empty string, got {value!r}")
        return value

    def number(self, name: str, low: float, high: float = math.inf,
               low_open: bool = False) -> float | None:
        if name not in self.data:
            return None
        value = self.data[name]
        if not _is_number(value) or not math.isfinite(value):
            raise self.fail(f"{name!r} must be a number, got {value!r}")
        if value < low or value > high or (low_open and value == low):
            bounds = f"{'>' if low_open else '>='} {low:g}" + (
                f" and <= {high:g}" if math.isfinite(high) else "")
            raise self.fail(f"{name!r} must be {bounds}, got {value!r}")
        return float(value)

    def table(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(f"[{name}] must be a table, got {value!r}")
        return value


def _resolve(manifest: _Manifest, name: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else manifest.path.parent / path


def _incident(manifest: _Manifest, where: str, item: Any) -> Incident:
    if not isinstance(item, Mapping):
        raise manifest.fail(f"{where}: an incident must be an object with kind, keys, "
                            f"start and end, got {item!r}")
    missing = [k for k in ("kind", "keys", "start", "end") if k not in item]
    if missing:
        raise manifest.fail(f"{where}: incident lacks {', '.join(missing)}")
    extra = sorted(set(item) - {"kind", "keys", "start", "end"})
    if extra:
        raise manifest.fail(f"{where}: unknown incident field(s) {', '.join(extra)}")
    kind, keys = item["kind"], item["keys"]
    if not isinstance(kind, str) or not kind:
        raise manifest.fail(f"{where}: incident kind must be a non-empty string, got {kind!r}")
    if not (isinstance(keys, list) and keys and all(isinstance(k, str) and k for k in keys)):
        raise manifest.fail(f"{where}: incident keys must be a non-empty list of strings, "
                            f"got {keys!r}")
    times = []
    for end in ("start", "end"):
        try:
            times.append(parse_timestamp(item[end]))
        except InvalidEvent as exc:
            raise manifest.fail(f"{where}: incident {end}: {exc.detail}") from None
    if times[1] < times[0]:
        raise manifest.fail(f"{where}: incident ends before it starts ({item['start']!r} > "
                            f"{item['end']!r})")
    return Incident(kind, tuple(keys), times[0], times[1])


def _incidents(manifest: _Manifest) -> tuple[Incident, ...]:
    raw = manifest.data.get("incidents")
    if isinstance(raw, list):
        return tuple(_incident(manifest, f"incidents[{i}]", item)
                     for i, item in enumerate(raw))
    if raw is not None and not isinstance(raw, str):
        raise manifest.fail(f"'incidents' must be a file name or an array of tables, "
                            f"got {raw!r}")
    path = _resolve(manifest, "incidents", raw or "incidents.json")
    if not path.is_file():
        if raw is None:
            return ()
        raise manifest.fail(f"incidents file {path} does not exist (incidents = {raw!r}, "
                            f"relative to {manifest.path.parent})")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ScenarioError(f"{path}: must hold a JSON list of incidents")
    return tuple(_incident(manifest, f"{path.name}[{i}]", item)
                 for i, item in enumerate(items))


def _expectations(manifest: _Manifest) -> dict[str, float]:
    expect = {}
    for name, value in manifest.table("expect").items():
        if not _METRIC_NAME.match(name):
            raise manifest.fail(f"[expect] {name!r} is not a metric name (lower_snake_case)")
        if not _is_number(value) or not math.isfinite(value):
            raise manifest.fail(f"[expect] {name} must be a number, got {value!r}")
        if name in _FRACTIONS and not 0.0 <= value <= 1.0:
            raise manifest.fail(f"[expect] {name} is a fraction, must be in [0, 1], "
                                f"got {value!r}")
        if is_maximum(name) and value < 0:
            raise manifest.fail(f"[expect] {name} is an upper bound on a non-negative "
                                f"metric, got {value!r}")
        expect[name] = float(value)
    return expect


def _target(manifest: _Manifest, task: str, model: dict[str, Any]) -> tuple[str, ...]:
    """The forecast target(s): ``[model] target`` or ``[model.params] target``."""
    nested = model.get("params", {})
    if not isinstance(nested, dict):
        raise manifest.fail(f"[model.params] must be a table, got {nested!r}")
    raw = model.get("target", nested.get("target"))
    if raw is None:
        if task == "forecast":
            raise manifest.fail("a forecast scenario needs [model] target, the feature(s) "
                                "to forecast")
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n
                                                      for n in names)):
        raise manifest.fail(f"[model] target must be a feature name or a list of them, "
                            f"got {raw!r}")
    if task != "forecast":
        raise manifest.fail(f"[model] target only applies to forecast scenarios (task is "
                            f"{task!r})")
    return tuple(names)


def _check_first_event(manifest: _Manifest, events: Path, task: str, keys: tuple[str, ...],
                       target: tuple[str, ...]) -> None:
    """Fail early on a stream that cannot feed this task (the first event shows it)."""
    try:
        number, line = next(_lines(events))
    except StopIteration:
        raise ScenarioError(f"{events}: no events") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{events}: cannot read events: {exc}") from None
    where = f"{events}:{number}"
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{where}: not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise ScenarioError(f"{where}: an event must be a JSON object")
    for name in ("ts", "features", *keys):
        if name not in event:
            raise ScenarioError(f"{where}: event lacks {name!r} (keys = {list(keys)} in "
                                f"{manifest.path.name})")
    if not isinstance(event["features"], dict):
        raise ScenarioError(f"{where}: 'features' must be an object")
    if task == "fraud" and "id" not in event:
        raise ScenarioError(f"{where}: fraud events need an 'id' (delayed labels name it)")
    missing = [name for name in target if name not in event["features"]]
    if missing:
        raise ScenarioError(f"{where}: target {missing[0]!r} is not among the features "
                            f"{sorted(event['features'])}")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario folder (or its ``scenario.toml``).

    Raises :class:`ScenarioError` (a ValueError) naming the file and the field at fault:
    unknown or mistyped fields, a missing events or incidents file (with the path it
    resolved to), task requirements (fraud: ``label_delay_seconds`` and event ids;
    forecast: ``[model] target``), malformed incidents or expectations.

    Examples
    --------
    >>> from pathlib import Path
    >>> import stream_rnn
    >>> bundled = Path(stream_rnn.__file__).parents[1] / "scenarios"
    >>> s = load_scenario(bundled / "energy")
    >>> s.task, s.keys, s.target, s.incidents[0].kind
    ('forecast', ('key',), ('demand',), 'outage')
    """
    path = Path(path)
    manifest_path = path / "scenario.toml" if path.is_dir() else path
    if not manifest_path.is_file():
        raise ScenarioError(f"{manifest_path}: no scenario.toml here")
    try:
        data = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{manifest_path}: {exc}") from None
    m = _Manifest(manifest_path, data)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise m.fail(f"unknown field(s) {', '.join(map(repr, unknown))}; known: "
                     f"{', '.join(FIELDS)}")

    name = m.string("name", required=True)
    task = m.string("task", required=True)
    if task not in TASKS:
        raise m.fail(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    keys = data.get("keys", ["key"])
    if not (isinstance(keys, list) and keys and all(isinstance(k, str) and k for k in keys)):
        raise m.fail(f"'keys' must be a non-empty list of field names, got {keys!r}")
    if len(set(keys)) != len(keys):
        raise m.fail(f"'keys' names a field twice: {keys!r}")
    delay = m.number("label_delay_seconds", 0.0)
    if task == "fraud" and not delay:
        raise m.fail("a fraud scenario needs label_delay_seconds > 0 (how long after a "
                     "transaction its label arrives)")
    season = m.number("season_seconds", 0.0, low_open=True)
    threshold = m.number("threshold", 0.0, 1.0)
    model = m.table("model")
    target = _target(m, task, model)
    expect = _expectations(m)

    raw_events = m.string("events") or "events.jsonl.gz"
    events = _resolve(m, "events", raw_events)
    if not events.is_file():
        raise m.fail(f"events file {events} does not exist (events = {raw_events!r}, "
                     f"relative to {manifest_path.parent})")
    _check_first_event(m, events, task, tuple(keys), target)
    return Scenario(
        name=name or "",
        description=m.string("description") or "",
        task=task,
        keys=tuple(keys),
        events_path=events,
        model=model,
        expect=expect,
        label_delay_seconds=delay or 0.0,
        target=target,
        season_seconds=season,
        threshold=threshold,
        incidents=_incidents(m),
        manifest_path=manifest_path,
    )


def write_events(events: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write events as gzipped JSON lines, the same bytes for the same events."""
    count = 0
    # No time and no file name in the gzip header: the bytes depend on the events only.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                                mtime=0) as gz, \
            io.TextIOWrapper(gz, encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n")
            count += 1
    return count


def write_incidents(incidents: Iterable[Incident], path: str | Path) -> int:
    """Write incidents as a JSON list, one incident a line (``incidents.json``)."""
    records = [json.dumps(inc.to_json(), sort_keys=True) for inc in incidents]
    Path(path).write_text("[\n" + ",\n".join(records) + "\n]\n", encoding="utf-8")
    return len(records)

