"""Prequential evaluation of a streaming fraud scorer with delayed labels.

:func:`replay` streams transactions in order through a model, test-then-train: each event
is scored before the model learns from it, and its label reaches the model (through the
model's reveal mechanism) only once the stream's clock has passed the event's time plus
the label delay. :func:`fraud_report` then computes, from the recorded scores, the ranking
metrics of the Fraud Detection Handbook (Le Borgne et al., 2022): ROC AUC, average
precision and the daily card precision at 100, overall, per week, on the later part of the
stream, and recall per fraud scenario.

Card precision at ``k`` (CP@k) follows the Handbook's ``card_precision_top_k``: each day,
cards are ranked by their highest score of the day and a card counts as fraudulent if any
of its transactions that day is; CP@k is the fraudulent share of the top ``k``. Cards found
(fraudulent and in a top ``k``) are removed from the rankings of the later days of the same
weekly block, as an investigator would have blocked them. Weeks are blocks of 7 days from
the first day of the stream (UTC days).

This module knows nothing about models: anything with ``score_learn_many(events,
reveals)`` (see :class:`stream_rnn.models.FraudDetector`) can be replayed.
"""

from __future__ import annotations

import gzip
import heapq
import io
import itertools
import json
import math
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream_rnn.evaluation.metrics import average_precision, roc_auc

__all__ = [
    "ReplayResult",
    "read_events",
    "event_times",
    "replay",
    "day_index",
    "card_precision_daily",
    "fraud_report",
    "format_report",
    "write_scores",
]

_DAY = 86400.0
# Characters of text read and parsed at a time.
_READ_BLOCK = 1 << 20
#: Days of the first part of a stream, left out of the "later part" metrics: eight weeks
#: in which the model sees its first labels (one delay after the start) and warms up.
LATER_FROM_DAY = 56


def read_events(paths: Sequence[str | Path], limit: int | None = None,
                loads: Callable[[str], Any] = json.loads) -> Iterator[dict]:
    r"""Events of JSON-lines files (``.gz`` or plain) in order, as one stream.

    Blank lines are skipped; a line that is not a JSON object raises ValueError naming
    the file and line. ``loads`` parses one line (text); a faster parser with the same
    contract (``orjson.loads``) can be passed in.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "a.jsonl")
    ...     with open(p, "w") as f:
    ...         _ = f.write('{"tx_id": 1}\n\n{"tx_id": 2}\n')
    ...     [e["tx_id"] for e in read_events([p])]
    [1, 2]
    """
    n = 0
    for path in paths:
        path = Path(path)
        # Text lines: the stdlib parser would otherwise sniff the encoding of every
        # bytes line; the decoding below happens in C, in large blocks.
        if path.suffix == ".gz":
            raw = io.BufferedReader(gzip.open(path, "rb"), buffer_size=1 << 20)
        else:
            raw = open(path, "rb", buffering=1 << 20)  # noqa: SIM115
        with io.TextIOWrapper(raw, encoding="utf-8") as stream:
            lineno = 0
            while lines := stream.readlines(_READ_BLOCK):
                if limit is not None and n >= limit:
                    return
                # A block of plain object lines is parsed in one map; a block with a blank
                # line or anything wrong goes line by line, to skip or name it.
                try:
                    events = list(map(loads, lines))
                except ValueError:
                    events = None
                wanted = None if limit is None else limit - n
                if events is None or set(map(type, events)) != {dict}:
                    events = list(itertools.islice(_parse_lines(lines, loads, path, lineno),
                                                   wanted))
                lineno += len(lines)
                if wanted is not None:
                    events = events[:wanted]
                n += len(events)
                yield from events


def _parse_lines(lines: list[str], loads: Callable[[str], Any], path: Path, before: int
                 ) -> Iterator[dict]:
    """Events of ``lines``, which follow line ``before`` of ``path``, one at a time."""
    for lineno, line in enumerate(lines, before + 1):
        if not line.strip():
            continue
        try:
            event = loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise ValueError(f"{path}:{lineno}: not a JSON object")
        yield event


def _ts_seconds(value: Any) -> float:
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"ts is not a time: {value!r}")
    t = float(value)
    if not math.isfinite(t):
        raise ValueError(f"ts is not finite: {value!r}")
    return t


# Character positions of ``YYYY-MM-DDTHH:MM:SSZ``, the layout of nearly every event time.
_ISO_WIDTH = 20
_ISO_SEPARATORS = ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "Z"))
_ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    # Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm): March
    # starts the counted year, so the leap day ends it.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def event_times(values: Sequence[Any]) -> np.ndarray:
    """POSIX seconds of event times, each exactly as :func:`replay` reads one.

    ISO 8601 text (naive means UTC), ``datetime`` or a finite number of seconds. Text in
    the layout ``YYYY-MM-DDTHH:MM:SSZ`` is decoded in whole-array operations; anything
    else, including every text that layout would misread, goes through
    ``datetime.fromisoformat``, which also raises the ValueError of a bad time.

    Examples
    --------
    >>> event_times(["2018-04-01T00:00:31Z", "2018-04-01T02:00:31+02:00", 5]).tolist()
    [1522540831.0, 1522540831.0, 5.0]
    """
    n = len(values)
    out = np.empty(n)
    ok = np.zeros(n, dtype=bool)
    if n and set(map(type, values)) == {str}:
        # One character more than the layout: a longer text shows a nonzero last column.
        codes = np.array(values, dtype=f"U{_ISO_WIDTH + 1}").view(np.uint32)
        codes = codes.reshape(n, _ISO_WIDTH + 1).astype(np.int64)
        ok = codes[:, _ISO_WIDTH] == 0
        for col, char in _ISO_SEPARATORS:
            ok &= codes[:, col] == ord(char)
        digits = codes[:, _ISO_DIGITS] - ord("0")
        ok &= ((digits >= 0) & (digits <= 9)).all(axis=1)
        d = digits.T
        year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
        month = d[4] * 10 + d[5]
        day = d[6] * 10 + d[7]
        hour = d[8] * 10 + d[9]
        minute = d[10] * 10 + d[11]
        second = d[12] * 10 + d[13]
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        ok &= (year >= 1) & (month >= 1) & (month <= 12)
        month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))
        ok &= (day >= 1) & (day <= month_days) & (hour <= 23) & (minute <= 59) & (second <= 59)
        seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60
        out[:] = seconds + second
    for i in np.flatnonzero(~ok).tolist():
        out[i] = _ts_seconds(values[i])
    return out


class _LabelQueue:
    """Labels waiting for their time: ``(due, tx_id, label)`` in the order they are due.

    While due times arrive in order (a constant delay on a time-ordered stream), the queue
    is first in, first out, and a whole batch finds its reveal positions by binary search;
    the first event earlier than one before it turns it into a heap, for good.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.last = -math.inf
        self.due = np.empty(0)
        self.tx: list[Any] = []
        self.label: list[Any] = []
        self.heap: list[tuple[float, int, Any, Any]] | None = None
        self.seq = 0

    def __len__(self) -> int:
        return len(self.heap) if self.heap is not None else len(self.tx)

    def batch(self, t: np.ndarray, tx_ids: list[Any], labels: list[Any]
              ) -> list[tuple[int, Any, Any]]:
        """Reveals ``(position, tx_id, label)`` of a batch of events at times ``t``:
        each queued label goes before the first later event at or past its due time.
        Then the batch's own labels (those with a transaction id) join the queue."""
        n = t.shape[0]
        if self.heap is None and n and (t[0] < self.last or bool((t[1:] < t[:-1]).any())):
            self.heap = [(d, k, tx, lab) for k, (d, tx, lab) in
                         enumerate(zip(self.due.tolist(), self.tx, self.label, strict=True))]
            self.seq = len(self.heap)
        if self.heap is not None:
            return self._batch_heap(self.heap, t, tx_ids, labels)
        if n:
            self.last = float(t[-1])
        new = [i for i, (tx, lab) in enumerate(zip(tx_ids, labels, strict=True))
               if tx is not None and lab is not None]
        due = np.concatenate([self.due, t[new] + self.delay])
        source = np.concatenate([np.full(len(self.tx), -1), np.asarray(new, dtype=np.int64)])
        self.tx.extend([tx_ids[i] for i in new])
        self.label.extend([labels[i] for i in new])
        # Due times and sources both rise along the queue, and so do the positions; only
        # labels due by the batch's last time can be revealed in it.
        ready = int(np.searchsorted(due, t[-1], side="right")) if n else 0
        pos = np.maximum(np.searchsorted(t, due[:ready], side="left"), source[:ready] + 1)
        m = int(np.searchsorted(pos, n, side="left"))
        out = list(zip(pos[:m].tolist(), self.tx[:m], self.label[:m], strict=True))
        self.due = due[m:]
        del self.tx[:m], self.label[:m]
        return out

    def _batch_heap(self, heap: list[tuple[float, int, Any, Any]], t: np.ndarray,
                    tx_ids: list[Any], labels: list[Any]) -> list[tuple[int, Any, Any]]:
        out = []
        for pos, (ti, tx, lab) in enumerate(zip(t.tolist(), tx_ids, labels, strict=True)):
            while heap and heap[0][0] <= ti:
                _, _, tx_due, lab_due = heapq.heappop(heap)
                out.append((pos, tx_due, lab_due))
            if lab is not None and tx is not None:
                heapq.heappush(heap, (ti + self.delay, self.seq, tx, lab))
                self.seq += 1
        return out


@dataclass
class ReplayResult:
    """What a replay recorded, one entry per event in stream order."""

    tx_id: list = field(default_factory=list)
    card: list = field(default_factory=list)
    ts_text: list = field(default_factory=list)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0))
    score: np.ndarray = field(default_factory=lambda: np.empty(0))
    label: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    scenario: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    seconds: float = 0.0
    n_reveals: int = 0

    @property
    def n_events(self) -> int:
        """Events replayed."""
        return int(self.score.shape[0])

    @property
    def events_per_second(self) -> float:
        """Replay throughput: events over the seconds spent reading, scoring, learning."""
        return self.n_events / self.seconds if self.seconds > 0 else float("nan")


def replay(
    model: Any,
    events: Iterable[Mapping[str, Any]],
    label_delay_seconds: float = 7 * _DAY,
    chunk: int = 4096,
    card_field: str = "key",
    time_field: str = "ts",
    id_field: str = "tx_id",
    label_field: str = "label",
    scenario_field: str = "scenario",
) -> ReplayResult:
    """Test-then-train replay with labels revealed ``label_delay_seconds`` after each event.

    Events go to ``model.score_learn_many(batch, reveals)`` in batches of ``chunk``; the
    label of an event with time ``t`` is handed over (as ``(position, tx_id, label)``) just
    before the first later event with time ``>= t + delay``. The model gets a copy of each
    event without its label and scenario fields, so it cannot read them, and with its
    time already in POSIX seconds (read once, here, by :func:`event_times`). Events
    without a label are scored and learned but never revealed. The timer covers reading,
    parsing, scoring and learning.

    Examples
    --------
    >>> class Echo:  # a stand-in model: scores 1 once any label has been revealed
    ...     seen = 0
    ...     def score_learn_many(self, events, reveals):
    ...         out = []
    ...         reveals = list(reveals)
    ...         for i, e in enumerate(events):
    ...             self.seen += sum(1 for p, _, _ in reveals if p == i)
    ...             out.append(float(self.seen > 0))
    ...         self.seen += sum(1 for p, _, _ in reveals if p == len(events))
    ...         return out
    >>> evs = [{"ts": t, "key": "c", "tx_id": t, "label": 1} for t in (0, 5, 10, 20)]
    >>> replay(Echo(), evs, label_delay_seconds=10, chunk=2).score.tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    if not label_delay_seconds >= 0:
        raise ValueError(f"label delay must be >= 0, got {label_delay_seconds!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    result = ReplayResult()
    times: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    scenarios: list[np.ndarray] = []
    queue = _LabelQueue(float(label_delay_seconds))
    n_reveals = 0
    start = time.perf_counter()
    source = iter(events)
    while batch := [dict(event) for event in itertools.islice(source, chunk)]:
        batch_labels = [event.pop(label_field, None) for event in batch]
        batch_scenarios = [event.pop(scenario_field, 0) for event in batch]
        texts = [event[time_field] for event in batch]
        tx_ids = [event.get(id_field) for event in batch]
        cards = [event.get(card_field) for event in batch]
        t = event_times(texts)
        for event, seconds in zip(batch, t.tolist(), strict=True):
            event[time_field] = seconds
        reveals = queue.batch(t, tx_ids, batch_labels)
        n_reveals += len(reveals)
        scores.append(np.asarray(model.score_learn_many(batch, reveals), dtype=np.float64))
        result.tx_id.extend(tx_ids)
        result.card.extend(cards)
        result.ts_text.extend(texts)
        times.append(t)
        labels.append(np.asarray([-1 if lab is None else int(lab) for lab in batch_labels],
                                 dtype=np.int8))
        scenarios.append(np.asarray([0 if s is None else int(s) for s in batch_scenarios],
                                    dtype=np.int64))
    result.seconds = time.perf_counter() - start
    result.n_reveals = n_reveals
    result.ts = np.concatenate(times) if times else np.empty(0)
    result.score = np.concatenate(scores) if scores else np.empty(0)
    if times:
        result.label = np.concatenate(labels)
        result.scenario = np.concatenate(scenarios)
    return result


def write_scores(result: ReplayResult, path: str | Path) -> None:
    """Write ``tx_id,key,ts,score,label`` per event (label empty when unknown)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("tx_id,key,ts,score,label\n")
        lines = []
        for i in range(result.n_events):
            lab = int(result.label[i])
            lines.append(f"{result.tx_id[i]},{result.card[i]},{result.ts_text[i]},"
                         f"{result.score[i]:.6g},{'' if lab < 0 else lab}\n")
            if len(lines) >= 65536:
                f.writelines(lines)
                lines.clear()
        f.writelines(lines)


def day_index(ts: np.ndarray, origin: float | None = None) -> np.ndarray:
    """UTC day of each time, counted from the day of ``origin`` (default: the first time).

    Examples
    --------
    >>> day_index(np.array([86399.0, 86400.0, 3 * 86400.0 + 5])).tolist()
    [0, 1, 3]
    """
    ts = np.asarray(ts, dtype=np.float64)
    if ts.size == 0:
        return np.empty(0, dtype=np.int64)
    first = ts[0] if origin is None else origin
    return (np.floor(ts / _DAY) - math.floor(first / _DAY)).astype(np.int64)


def card_precision_daily(
    days: np.ndarray,
    cards: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    k: int = 100,
    block_days: int = 7,
) -> tuple[dict[int, float], np.ndarray]:
    """Card precision at ``k`` for every day, removing found cards within weekly blocks.

    ``cards`` are integer card codes. Returns ``(precision per day, caught)`` where
    ``caught[i]`` tells whether event ``i``'s card was in its day's top ``k`` or had been
    found earlier in the block. Ties in a card's top score are broken by card code.

    Examples
    --------
    Day 0: cards 1 (fraud, top score), 2 and 3; day 1: card 1 is found already, so card 3
    (fraud) and card 2 fill the top 2.

    >>> days = np.array([0, 0, 0, 1, 1, 1])
    >>> cards = np.array([1, 2, 3, 1, 2, 3])
    >>> scores = np.array([0.9, 0.5, 0.1, 0.99, 0.2, 0.3])
    >>> labels = np.array([1, 0, 1, 1, 0, 1])
    >>> cp, caught = card_precision_daily(days, cards, scores, labels, k=2)
    >>> cp
    {0: 0.5, 1: 0.5}
    >>> caught.tolist()
    [True, True, False, True, True, True]
    """
    days = np.asarray(days, dtype=np.int64)
    cards = np.asarray(cards, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) > 0
    caught = np.zeros(days.shape[0], dtype=bool)
    result: dict[int, float] = {}
    if days.size == 0:
        return result, caught
    order = np.argsort(days, kind="stable")
    bounds = np.flatnonzero(np.diff(days[order])) + 1
    found: set[int] = set()
    block = None
    for idx in np.split(order, bounds):
        day = int(days[idx[0]])
        if block != day // block_days:
            block = day // block_days
            found = set()
        c = cards[idx]
        already = np.fromiter((int(v) in found for v in c), dtype=bool, count=c.size)
        caught[idx[already & labels[idx]]] = True
        keep = idx[~already]
        uniq, inv = np.unique(cards[keep], return_inverse=True)
        top = np.full(uniq.size, -np.inf)
        np.maximum.at(top, inv, scores[keep])
        fraud = np.zeros(uniq.size, dtype=bool)
        np.logical_or.at(fraud, inv, labels[keep])
        rank = np.argsort(-top, kind="stable")[:k]
        hits = rank[fraud[rank]]
        result[day] = float(hits.size) / k
        in_top = np.zeros(uniq.size, dtype=bool)
        in_top[rank] = True
        caught[keep[in_top[inv]]] = True
        found.update(int(v) for v in uniq[hits])
    return result, caught


def _ranking(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | int]:
    ok = labels >= 0
    y, s = labels[ok], scores[ok]
    return {
        "n_events": int(y.size),
        "n_frauds": int(y.sum()),
        "roc_auc": roc_auc(y, s) if y.size else float("nan"),
        "average_precision": average_precision(y, s) if y.size else float("nan"),
    }


def _part(mask: np.ndarray, days: np.ndarray, labels: np.ndarray, scores: np.ndarray,
          cp: dict[int, float]) -> dict[str, Any]:
    out: dict[str, Any] = _ranking(labels[mask], scores[mask])
    part_days = sorted(set(np.unique(days[mask]).tolist()))
    values = [cp[d] for d in part_days if d in cp]
    out["days"] = [part_days[0], part_days[-1]] if part_days else []
    out["card_precision_at_k"] = float(np.mean(values)) if values else float("nan")
    return out


def fraud_report(result: ReplayResult, k: int = 100, later_from_day: int = LATER_FROM_DAY,
                 block_days: int = 7) -> dict[str, Any]:
    """Metrics of a replay: overall, per week, on the later part (days ``>=
    later_from_day``), and per fraud scenario.

    Each part has ROC AUC and average precision over its transactions and the mean of its
    days' CP@k. Per scenario: ``recall_at_k``, the share of the scenario's fraudulent
    transactions whose card was in its day's top ``k`` (or had been found earlier in the
    week), and the AUC of those frauds against all legitimate transactions. Events without
    a label are left out of the ranking metrics and count as legitimate for CP@k.
    """
    days = day_index(result.ts)
    codes: dict[Hashable, int] = {}
    cards = np.fromiter((codes.setdefault(c, len(codes)) for c in result.card),
                        dtype=np.int64, count=result.n_events)
    labels = result.label.astype(np.int64)
    scores = result.score
    cp, caught = card_precision_daily(days, cards, scores, np.maximum(labels, 0), k, block_days)
    later = days >= later_from_day
    report: dict[str, Any] = {
        "k": k,
        "later_from_day": later_from_day,
        "n_events": result.n_events,
        "seconds": result.seconds,
        "events_per_second": result.events_per_second,
        "n_days": int(days.max()) + 1 if days.size else 0,
        "overall": _part(np.ones_like(later), days, labels, scores, cp),
        "later": _part(later, days, labels, scores, cp) if later.any() else None,
        "weeks": [],
        "daily_card_precision": {str(d): v for d, v in sorted(cp.items())},
    }
    for w in range(int(days.max()) // block_days + 1 if days.size else 0):
        mask = (days // block_days) == w
        if mask.any():
            report["weeks"].append({"week": w, **_part(mask, days, labels, scores, cp)})
    scen: dict[str, Any] = {}
    legit = labels == 0
    for part, mask in (("overall", np.ones_like(later)), ("later", later)):
        for s in sorted(set(result.scenario[(labels > 0) & mask].tolist())):
            pos = (labels > 0) & (result.scenario == s) & mask
            y = np.r_[np.ones(pos.sum()), np.zeros((legit & mask).sum())]
            sc = np.r_[scores[pos], scores[legit & mask]]
            scen.setdefault(str(s), {})[part] = {
                "n_frauds": int(pos.sum()),
                "recall_at_k": float(caught[pos].mean()),
                "roc_auc": roc_auc(y, sc),
            }
    report["scenarios"] = scen
    return report


def _f(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def format_report(report: Mapping[str, Any]) -> str:
    """Format the report as a plain-text table."""
    k = report["k"]
    head = f"{'part':<14}{'days':>9}{'events':>10}{'frauds':>8}{'AUC':>8}{'AP':>8}" \
           f"{f'CP@{k}':>9}"
    lines = [head, "-" * len(head)]

    def row(name: str, part: Mapping[str, Any] | None) -> None:
        if part is None:
            lines.append(f"{name:<14}{'(empty)':>9}")
            return
        d = part["days"]
        span = f"{d[0]}-{d[1]}" if d else "-"
        lines.append(f"{name:<14}{span:>9}{part['n_events']:>10}{part['n_frauds']:>8}"
                     f"{_f(part['roc_auc']):>8}{_f(part['average_precision']):>8}"
                     f"{_f(part['card_precision_at_k']):>9}")

    row("overall", report["overall"])
    row(f"later (d>={report['later_from_day']})", report["later"])
    lines.append("")
    for w in report["weeks"]:
        row(f"week {w['week']}", w)
    lines.append("")
    lines.append(f"{'scenario':<10}{'frauds':>8}{f'recall@{k}':>11}{'AUC':>8}"
                 f"{'frauds':>9}{f'recall@{k}':>11}{'AUC':>8}   (overall | later)")
    for s, parts in report["scenarios"].items():
        o = parts.get("overall", {})
        la = parts.get("later", {})
        lines.append(f"{s:<10}{o.get('n_frauds', 0):>8}{_f(o.get('recall_at_k')):>11}"
                     f"{_f(o.get('roc_auc')):>8}{la.get('n_frauds', 0):>9}"
                     f"{_f(la.get('recall_at_k')):>11}{_f(la.get('roc_auc')):>8}")
    lines.append("")
    lines.append(f"{report['n_events']} events in {report['seconds']:.1f} s: "
                 f"{report['events_per_second']:,.0f} events/s (read, parse, score, learn)")
    return "\n".join(lines) + "\n"
