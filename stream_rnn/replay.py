"""Replay a recorded scenario through a task model, in process, and measure it.

:func:`replay` reads a scenario's events exactly as ``stream-rnn serve`` reads its input
topic (the daemon's parser, the model's own feature check, dead letters counted by
reason), hands the valid ones to a task model built from the scenario's ``[model]`` (with
the caller's overrides) in batches, score then learn, and records every event's score,
flag, prediction and spread. Labels carried by events never reach the model with the
event: they wait ``label_delay_seconds`` of stream time, like labels from a labels topic.
:func:`summarize` turns a :class:`ReplayResult` into the numbers of ``summary.json``, and
:func:`check_expectations` compares them with the scenario's ``[expect]``.

The replay runs as fast as it can, or paced at the recorded rate times ``speed``. Nothing
here parses command lines or prints: ``stream-rnn replay`` and tuning loops call it.
"""

from __future__ import annotations

import dataclasses
import gzip
import heapq
import inspect
import json
import math
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_rnn.config import ModelConfig, ScoringConfig, StateConfig
from stream_rnn.evaluation.fraud import card_precision_daily, day_index
from stream_rnn.evaluation.metrics import average_precision, roc_auc
from stream_rnn.io.events import DEAD_LETTER_REASONS, InvalidEvent, parse_event
from stream_rnn.io.scenario import Incident, Scenario

__all__ = [
    "DEFAULT_THRESHOLD",
    "Incident",
    "ReplayError",
    "ReplayResult",
    "check_expectations",
    "incidents_of",
    "model_params",
    "parse_assignments",
    "replay",
    "summarize",
    "write_scores",
]

#: The daemon's default scoring threshold: a score above it raises a flag.
DEFAULT_THRESHOLD = ScoringConfig().threshold
#: Seconds in a season for the seasonal-naive baseline when the scenario names none.
DEFAULT_SEASON_SECONDS = 86_400.0
#: Cards ranked per day for card precision (the Fraud Detection Handbook's k).
CARD_PRECISION_K = 100
_DAY = 86_400.0
# Shared by every event without a prediction or spread; never mutated.
_EMPTY: dict[str, float] = {}
# The dead-letter reason of an event the task model refuses without saying why.
_UNKNOWN_FEATURE = "unknown_feature"


class ReplayError(ValueError):
    """A replay that cannot start: a bad override, an unknown model argument."""


@dataclass
class ReplayResult:
    """What a replay saw and produced, one entry per valid event in stream order.

    ``index`` is the event's position among the scenario's non-blank lines (its offset in
    ``src``), ``label`` is -1 where the event carried none, and ``loss`` holds the model's
    training statistics sampled after each batch with the count of events seen so far.
    """

    scenario: Scenario
    params: dict[str, Any]
    threshold: float
    speed: float | None
    limit: int | None
    batch_size: int
    index: list[int] = field(default_factory=list)
    keys: list[tuple[str, ...]] = field(default_factory=list)
    event_ids: list[str | None] = field(default_factory=list)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0))
    score: np.ndarray = field(default_factory=lambda: np.empty(0))
    label: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    features: list[dict[str, float]] = field(default_factory=list)
    prediction: list[dict[str, float]] = field(default_factory=list)
    spread: list[dict[str, float]] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    loss: list[dict[str, float]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    records_read: int = 0
    labels_applied: int = 0
    labels_accepted: int = 0
    labels_pending: int = 0
    seconds: float = 0.0
    paced_sleep_seconds: float = 0.0

    @property
    def n_events(self) -> int:
        """Valid events scored."""
        return int(self.score.shape[0])

    @property
    def flags(self) -> np.ndarray:
        """Whether each event's score is above the threshold."""
        return self.score > self.threshold

    @property
    def key_names(self) -> list[str]:
        """Each event's entity key, its key fields joined with ``|`` (the models' key)."""
        return ["|".join(k) for k in self.keys]

    def src(self, i: int) -> str:
        """Where event ``i`` was read, in the daemon's ``topic:partition:offset`` form."""
        return f"{self.scenario.name}:0:{self.index[i]}"


# --------------------------------------------------------------------------- configuration


def parse_assignments(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``section.field=value`` strings as ``{section: {field: value}}``.

    Values are read as TOML values (``16``, ``0.01``, ``true``, ``"gru"``); anything that
    is not a TOML value is kept as a plain string, so ``model.cell=gru`` works unquoted.

    Examples
    --------
    >>> parse_assignments(["model.hidden_size=16", "model.cell=gru", "scoring.threshold=0.99"])
    {'model': {'hidden_size': 16, 'cell': 'gru'}, 'scoring': {'threshold': 0.99}}
    >>> parse_assignments(["model.params.season=24"])
    {'model': {'params': {'season': 24}}}
    >>> parse_assignments(["hidden_size=16"])
    Traceback (most recent call last):
    ...
    stream_rnn.replay.ReplayError: 'hidden_size=16': expected SECTION.FIELD=VALUE
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        path = [part.strip() for part in name.split(".")]
        if not sep or len(path) < 2 or not all(path):
            raise ReplayError(f"{item!r}: expected SECTION.FIELD=VALUE")
        text = text.strip()
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        table: dict[str, Any] = out
        for part in path[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ReplayError(f"{item!r}: {part!r} is set to a value, not a table")
        table[path[-1]] = value
    return out


def model_params(scenario: Scenario, overrides: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The task model's arguments: serve's defaults < the scenario's ``[model]`` < overrides,
    flat (``[model.params]`` entries merged in).

    Serve hands every ``[model]`` field of its configuration to the task model, so a replay
    starts from the same defaults and a scenario tested here runs the same model live.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name != "task"}
    params = {**_flat(defaults), **_flat(scenario.model), **_flat(overrides or {})}
    params.pop("task", None)
    return params


def _flat(model: Mapping[str, Any]) -> dict[str, Any]:
    # The task's own parameters may sit in a nested ``params`` table ([model.params]); the
    # task models take them flat too, and flat they override one another predictably.
    flat = dict(model)
    nested = flat.pop("params", None)
    if isinstance(nested, Mapping):
        flat.update(nested)
    elif nested is not None:
        flat["params"] = nested  # let the task model reject it with its own message
    return flat


def _build_task(scenario: Scenario, params: dict[str, Any]) -> Any:
    from stream_rnn.tasks import make_task

    params = dict(params)
    max_keys = int(params.pop("max_keys", StateConfig().max_keys_per_partition))
    kwargs: dict[str, Any] = {}
    if "key_fields" in inspect.signature(make_task).parameters:
        kwargs["key_fields"] = tuple(scenario.keys)
    try:
        return make_task(scenario.task, params, max_keys, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ReplayError(f"cannot build the {scenario.task} model from {params}: {exc}") from None


# --------------------------------------------------------------------------- replay


def _records(scenario: Scenario) -> Iterator[bytes]:
    # Raw lines, so that a line that is not JSON is a dead letter like on the topic.
    path = Path(scenario.events_path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def replay(
    scenario: Scenario,
    *,
    overrides: Mapping[str, Any] | None = None,
    threshold: float | None = None,
    limit: int | None = None,
    speed: float | None = None,
    batch_size: int = 256,
    task_factory: Callable[[dict[str, Any]], Any] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Replay ``scenario`` through a fresh task model and record what it scored.

    Parameters
    ----------
    scenario
        A loaded scenario (:func:`stream_rnn.io.scenario.load_scenario`).
    overrides
        Model arguments replacing the scenario's ``[model]`` ones (see :func:`model_params`).
    threshold
        Flag threshold; default the scenario's, else the daemon's default 0.999.
    limit
        Read only the first ``limit`` records (valid or not): a cheap prefix for tuning.
    speed
        None replays as fast as possible; a positive number paces the replay at the
        recorded rate times ``speed`` (2.0: a recorded hour takes half an hour).
    batch_size
        Valid events handed to the model at once (the daemon's poll batch).
    task_factory
        Builds the task model from its arguments instead of ``stream_rnn.tasks.make_task``.
    progress
        Called after each batch with ``(events scored, flags so far, wall seconds)``.
    clock, sleep
        Wall clock and sleep used for pacing and timing (injectable for tests).

    Delayed labels: an event's label reaches the model, through
    ``apply_label(event_id, label)``, at the first batch boundary where stream time (the
    time of the next event to score) has reached the event's time plus the scenario's
    ``label_delay_seconds``; never earlier, and at most one batch later. Events are handed
    to the model without their label, so it cannot peek.

    Raises
    ------
    ReplayError
        For model arguments the task model rejects or bad replay arguments.
    """
    if batch_size < 1:
        raise ReplayError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ReplayError(f"limit must be >= 0, got {limit}")
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ReplayError(f"speed must be a positive number, got {speed!r}")
    if threshold is None:
        threshold = getattr(scenario, "threshold", None)
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ReplayError(f"threshold must be in [0, 1], got {threshold!r}")
    params = model_params(scenario, overrides)
    model = task_factory(dict(params)) if task_factory else _build_task(scenario, params)
    delay = float(scenario.label_delay_seconds)
    key_fields = tuple(scenario.keys)
    has_check = hasattr(model, "check")
    has_stats = hasattr(model, "stats")

    result = ReplayResult(scenario, params, threshold, speed, limit, batch_size)
    ts: list[float] = []
    scores: list[float] = []
    labels: list[int] = []
    pending: list[tuple[float, int, str, int]] = []  # (due, order, event id, label)
    batch: list[tuple[int, Any]] = []
    flags = 0
    started = clock()
    stream_origin: float | None = None

    def flush() -> None:
        nonlocal flags
        if not batch:
            return
        now_stream = batch[0][1].ts
        while pending and pending[0][0] <= now_stream:
            _, _, event_id, label = heapq.heappop(pending)
            result.labels_applied += 1
            result.labels_accepted += bool(model.apply_label(event_id, label))
        events = [e if e.label is None else dataclasses.replace(e, label=None)
                  for _, e in batch]
        outputs = model.process(events)
        for (index, event), out in zip(batch, outputs, strict=True):
            score = float(out.score)
            if not math.isfinite(score):
                score = 0.0  # as serve answers a broken model: never a NaN flag
            flags += score > threshold
            result.index.append(index)
            result.keys.append(event.keys)
            result.event_ids.append(event.event_id)
            result.features.append(event.features)
            # Kept by reference (task models return fresh dicts): long replays hold
            # millions of them.
            result.prediction.append(out.prediction or _EMPTY)
            result.spread.append(getattr(out, "spread", None) or _EMPTY)
            ts.append(event.ts)
            scores.append(score)
            labels.append(-1 if event.label is None else event.label)
            if event.label is not None and event.event_id is not None:
                heapq.heappush(pending, (event.ts + delay, len(ts), event.event_id,
                                         event.label))
        if has_stats:
            sample = {"events": float(len(ts)), "ts": batch[-1][1].ts}
            sample.update({k: float(v) for k, v in model.stats().items()
                           if isinstance(v, int | float)})
            result.loss.append(sample)
        batch.clear()
        if progress is not None:
            progress(len(ts), flags, clock() - started)

    for index, record in enumerate(_records(scenario)):
        if limit is not None and index >= limit:
            break
        result.records_read += 1
        try:
            event = parse_event(record, key_fields=key_fields, src=f"{scenario.name}:0:{index}")
        except InvalidEvent as exc:
            result.dead_letters[exc.reason] += 1
            continue
        problem = model.check(event) if has_check else None
        if problem is not None:
            reason = getattr(problem, "reason", _UNKNOWN_FEATURE)
            result.dead_letters[reason if reason in DEAD_LETTER_REASONS else _UNKNOWN_FEATURE] += 1
            continue
        if speed is not None:
            if stream_origin is None:
                stream_origin = event.ts
            due = started + max(0.0, event.ts - stream_origin) / speed
            wait = due - clock()
            if wait > 0:
                flush()
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
                    result.paced_sleep_seconds += wait
        batch.append((index, event))
        if len(batch) >= batch_size:
            flush()
    flush()
    if ts:
        # Labels due by the end of the stream still reach the model (its final state and
        # statistics include them); only those the stream never reached stay pending.
        while pending and pending[0][0] <= ts[-1]:
            _, _, event_id, label = heapq.heappop(pending)
            result.labels_applied += 1
            result.labels_accepted += bool(model.apply_label(event_id, label))
    result.seconds = clock() - started
    result.labels_pending = len(pending)
    result.ts = np.asarray(ts, dtype=np.float64)
    result.score = np.asarray(scores, dtype=np.float64)
    result.label = np.asarray(labels, dtype=np.int8)
    if has_stats:
        result.stats = {k: v for k, v in model.stats().items() if isinstance(v, int | float)}
    return result


# --------------------------------------------------------------------------- metrics


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _scenario_incidents(scenario: Scenario) -> list[Incident] | None:
    return list(scenario.incidents) or None


def incidents_of(result: ReplayResult) -> tuple[list[Incident], str]:
    """The scenario's incidents, else contiguous labelled runs per key, and which it was.

    A run of a key's events labelled 1 is one incident from its first to its last event;
    an event labelled 0 ends it (unlabelled events neither extend nor end it).
    """
    listed = _scenario_incidents(result.scenario)
    if listed is not None:
        return listed, "scenario"
    runs: dict[str, list[float]] = {}
    found: list[tuple[float, Incident]] = []
    for key, t, lab in zip(result.key_names, result.ts.tolist(), result.label.tolist(),
                           strict=True):
        if lab == 1:
            run = runs.setdefault(key, [t, t])
            run[1] = t
        elif lab == 0 and key in runs:
            start, end = runs.pop(key)
            found.append((start, Incident("labelled", (key,), start, end)))
    for key, (start, end) in runs.items():
        found.append((start, Incident("labelled", (key,), start, end)))
    found.sort(key=lambda pair: (pair[0], pair[1].keys))
    return [incident for _, incident in found], "labels"


def _detection(result: ReplayResult, incidents: list[Incident]) -> dict[str, Any]:
    flagged: dict[str, np.ndarray] = {}
    flags = result.flags
    names = np.asarray(result.key_names, dtype=object)
    for key in {k for inc in incidents for k in inc.keys}:
        mask = (names == key) & flags
        flagged[key] = np.sort(result.ts[mask])
    listing = []
    delays = []
    for inc in incidents:
        first = math.inf
        for key in inc.keys:
            times = flagged.get(key, np.empty(0))
            j = int(np.searchsorted(times, inc.start, side="left"))
            if j < times.size and times[j] <= inc.end:
                first = min(first, float(times[j]))
        detected = math.isfinite(first)
        delay = first - inc.start if detected else None
        if delay is not None:
            delays.append(delay)
        listing.append({"kind": inc.kind, "keys": list(inc.keys), "start": inc.start,
                        "end": inc.end, "detected": detected, "delay_seconds": delay})
    n = len(incidents)
    return {
        "incidents": n,
        "incidents_detected": len(delays),
        "incident_detection_rate": len(delays) / n if n else None,
        "mean_detection_delay_seconds": float(np.mean(delays)) if delays else None,
        "max_detection_delay_seconds": float(np.max(delays)) if delays else None,
        "incident_list": listing,
    }


def _forecast_errors(result: ReplayResult, season_seconds: float,
                     targets: frozenset[str]) -> dict[str, Any]:
    """MAE/RMSE of the model's forecasts and of a seasonal-naive forecast (each key's
    reading one season earlier), the ratio measured over the points both forecast; only
    the ``targets`` features when any are named, else every feature."""
    model_err: list[float] = []
    naive_err: list[float] = []
    both_model: list[float] = []
    both_naive: list[float] = []
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(result.key_names):
        by_key.setdefault(key, []).append(i)
    for rows in by_key.values():
        times = result.ts[rows]
        step = float(np.median(np.diff(times))) if len(rows) > 1 else 0.0
        tolerance = max(step / 2.0, 1e-6)
        back = np.searchsorted(times, times - season_seconds - tolerance, side="left")
        for pos, i in enumerate(rows):
            actual = result.features[i]
            pred = result.prediction[i]
            j = int(back[pos])
            past = None
            if j < pos and abs(times[j] - (times[pos] - season_seconds)) <= tolerance:
                past = result.features[rows[j]]
            for name, value in actual.items():
                if targets and name not in targets:
                    continue
                m = pred.get(name)
                n = past.get(name) if past is not None else None
                if m is not None:
                    model_err.append(value - m)
                if n is not None:
                    naive_err.append(value - n)
                if m is not None and n is not None:
                    both_model.append(abs(value - m))
                    both_naive.append(abs(value - n))
    out: dict[str, Any] = {"forecast_points": len(model_err),
                           "seasonal_naive_season_seconds": season_seconds}
    if model_err:
        e = np.asarray(model_err)
        out["mae"] = float(np.mean(np.abs(e)))
        out["rmse"] = float(np.sqrt(np.mean(e * e)))
    if naive_err:
        e = np.asarray(naive_err)
        out["seasonal_naive_mae"] = float(np.mean(np.abs(e)))
        out["seasonal_naive_rmse"] = float(np.sqrt(np.mean(e * e)))
    if both_model and np.sum(both_naive) > 0:
        out["mae_ratio_vs_seasonal_naive"] = float(np.sum(both_model) / np.sum(both_naive))
    return out


def _fraud_daily(result: ReplayResult) -> dict[str, Any]:
    days = day_index(result.ts)
    codes: dict[str, int] = {}
    cards = np.fromiter((codes.setdefault(k[0], len(codes)) for k in result.keys),
                        dtype=np.int64, count=result.n_events)
    labels = result.label.astype(np.int64)
    cp, _ = card_precision_daily(days, cards, result.score, np.maximum(labels, 0),
                                 k=CARD_PRECISION_K)
    daily = []
    for day in sorted(cp):
        mask = (days == day) & (labels >= 0)
        y, s = labels[mask], result.score[mask]
        daily.append({
            "day": int(day),
            "events": int(np.sum(days == day)),
            "frauds": int(y.sum()),
            "roc_auc": _finite_or_none(roc_auc(y, s)) if y.size else None,
            "average_precision": _finite_or_none(average_precision(y, s)) if y.size else None,
            "card_precision_at_100": cp[day],
        })

    def mean(name: str) -> float | None:
        values = [d[name] for d in daily if d[name] is not None]
        return float(np.mean(values)) if values else None

    return {
        "daily": daily,
        "daily_roc_auc_mean": mean("roc_auc"),
        "daily_average_precision_mean": mean("average_precision"),
        "card_precision_at_100_mean": mean("card_precision_at_100"),
    }


def summarize(result: ReplayResult) -> dict[str, Any]:
    """The replay's numbers, as written to ``summary.json`` (undefined metrics are None).

    Throughput and dead letters; flags; ROC AUC, average precision and precision, recall
    and F1 at the threshold against the events' labels; per incident whether and how soon
    it was flagged; forecast MAE/RMSE next to a seasonal-naive baseline (when the model
    forecasts); per-day ranking metrics and card precision@100 for fraud.
    """
    scenario = result.scenario
    n = result.n_events
    flags = result.flags
    labelled = result.label >= 0
    y = result.label[labelled].astype(bool)
    flagged = flags[labelled]
    tp = int(np.sum(flagged & y))
    precision = tp / int(flagged.sum()) if flagged.any() else None
    recall = tp / int(y.sum()) if y.any() else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "task": scenario.task,
        "events": n,
        "records_read": result.records_read,
        "seconds": result.seconds,
        "events_per_second": n / result.seconds if result.seconds > 0 else None,
        "dead_letters": dict(sorted(result.dead_letters.items())),
        "dead_letter_total": sum(result.dead_letters.values()),
        "threshold": result.threshold,
        "flags": int(flags.sum()),
        "flag_rate": float(flags.mean()) if n else None,
        "keys": len(set(result.keys)),
        "labelled_events": int(labelled.sum()),
        "positive_labels": int(y.sum()),
        "roc_auc": _finite_or_none(roc_auc(y, result.score[labelled])),
        "average_precision": (_finite_or_none(average_precision(y, result.score[labelled]))
                              if y.size else None),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "labels_applied": result.labels_applied,
        "labels_pending": result.labels_pending,
    }
    if y.any():
        incidents, source = incidents_of(result)
        summary["incident_source"] = source
        summary.update(_detection(result, incidents))
    if scenario.task in ("sensor", "forecast"):
        season = getattr(scenario, "season_seconds", None) or DEFAULT_SEASON_SECONDS
        target = getattr(scenario, "target", None) or ()
        targets = frozenset([target] if isinstance(target, str) else target)
        summary.update(_forecast_errors(result, float(season), targets))
    if scenario.task == "fraud" and n:
        summary.update(_fraud_daily(result))
    summary["model_stats"] = dict(result.stats)
    summary["config"] = {
        "task": scenario.task,
        "model": result.params,
        "threshold": result.threshold,
        "label_delay_seconds": scenario.label_delay_seconds,
        "speed": result.speed,
        "limit": result.limit,
        "batch_size": result.batch_size,
    }
    return summary


# Name parts of metrics bounded from above (errors, delays, losses, dead letters); every
# other expectation is a lower bound. The same rule as the scenario loader's.
_MAXIMUM_PARTS = frozenset({"mae", "rmse", "mse", "mape", "delay", "loss", "dead"})


def _is_maximum(name: str) -> bool:
    return bool(_MAXIMUM_PARTS & set(name.lower().split("_")))


def check_expectations(expect: Mapping[str, float], summary: Mapping[str, Any]) -> list[str]:
    """Each failed expectation as ``"name: measured X, expected >= Y"`` (empty: all met).

    Names are summary keys; a name with a ``mae``, ``rmse``, ``mse``, ``mape``, ``delay``,
    ``loss`` or ``dead`` part is a maximum, any other a minimum. A metric the replay could
    not measure fails.

    Examples
    --------
    >>> check_expectations({"roc_auc": 0.8, "mae": 2.0}, {"roc_auc": 0.75, "mae": 1.5})
    ['roc_auc: measured 0.75, expected >= 0.8']
    >>> check_expectations({"recall": 0.5}, {"recall": None})
    ['recall: not measured, expected >= 0.5']
    """
    failed = []
    for name, bound in expect.items():
        op = "<=" if _is_maximum(name) else ">="
        value = summary.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            failed.append(f"{name}: not measured, expected {op} {bound:g}")
        elif (value > bound) if op == "<=" else (value < bound):
            failed.append(f"{name}: measured {value:.4g}, expected {op} {bound:g}")
    return failed


def scenario_failures(scenario: Scenario, summary: Mapping[str, Any]) -> list[str]:
    """Failed expectations of ``scenario``: its own ``check`` when it has one."""
    check = getattr(scenario, "check", None)
    if callable(check):
        return list(check(summary))
    return check_expectations(scenario.expect, summary)


# --------------------------------------------------------------------------- output


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_scores(result: ReplayResult, path: str | Path) -> None:
    """Write one JSON object per scored event: ``src``, the key fields, ``ts``, ``score``,
    ``flag``, ``prediction``, ``spread``, ``features``, ``label`` and ``id``."""
    fields = tuple(result.scenario.keys)
    flags = result.flags.tolist()
    with open(path, "w", encoding="utf-8") as fh:
        lines = []
        for i in range(result.n_events):
            record: dict[str, Any] = {"src": result.src(i), "index": result.index[i]}
            record.update(zip(fields, result.keys[i], strict=True))
            label = int(result.label[i])
            record.update({
                "ts": float(result.ts[i]),
                "score": float(result.score[i]),
                "flag": flags[i],
                "prediction": {k: _json_value(v) for k, v in result.prediction[i].items()},
                "spread": {k: _json_value(v) for k, v in result.spread[i].items()},
                "features": result.features[i],
                "label": None if label < 0 else label,
                "id": result.event_ids[i],
            })
            lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            if len(lines) >= 8192:
                fh.writelines(lines)
                lines.clear()
        fh.writelines(lines)
