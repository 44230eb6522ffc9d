"""The daemon's data contract: input events, label messages, output scores, dead letters.

Input message (one JSON object, UTF-8)::

    {"ts": "2024-01-01T00:00:00Z",          # ISO 8601 with an offset or Z, or epoch seconds
     "key": "sensor-07",                    # entity key field(s), configurable (default ["key"])
     "features": {"value": 61.3, "rpm": 1200},
     "label": 0,                            # optional, 0 or 1 (null = absent)
     "id": "evt-123"}                       # optional, string or integer (null = absent)

With a single key field that is absent from the object, the Kafka message key (UTF-8) is
used instead, so producers that already key their messages by entity need not repeat it.

Every rejection raises :class:`InvalidEvent` whose ``reason`` is one of the closed set
:data:`DEAD_LETTER_REASONS` (safe to use as a metric label value) and whose ``detail`` is a
short human-readable explanation (never a metric label: it can contain field names).

Label messages (``{"id": ..., "label": 0|1}``) are read by :func:`parse_label`; output
records are written by :func:`encode_score`; :func:`dead_letter_headers` describes a
rejected message for the dead-letter topic.

This module is pure: no Kafka, no models. It is on the hot path, so the checks are
written as straight-line type tests on the decoded JSON, and JSON goes through orjson (a
compiled codec, several times faster than the stdlib's both ways). The stdlib codec stays
the reference: every message orjson refuses and every event the checks reject is decoded
again by :mod:`json`, so dead-letter reasons and details are the stdlib's, and every output
orjson could not write exactly as strict JSON is written by :mod:`json`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson

__all__ = [
    "DEAD_LETTER_REASONS",
    "DEFAULT_KEY_FIELDS",
    "MAX_KEY_CHARS",
    "Event",
    "InvalidEvent",
    "dead_letter_headers",
    "encode_score",
    "parse_event",
    "parse_label",
    "parse_timestamp",
]

#: Every value :attr:`InvalidEvent.reason` can take, in a fixed order (metric label values).
DEAD_LETTER_REASONS: tuple[str, ...] = (
    "oversize",  # the message is longer than max_bytes
    "not_json",  # not UTF-8 JSON (or empty)
    "not_object",  # JSON, but not an object
    "missing_field",  # ts, features, an entity key (or label / id for label messages)
    "bad_timestamp",  # ts not ISO 8601 with an offset, nor epoch seconds in range
    "bad_key",  # entity key not a non-empty string or integer of at most MAX_KEY_CHARS
    "bad_features",  # features not an object
    "non_numeric",  # a feature value that is not a number (strings, booleans, null, ...)
    "non_finite",  # a feature value that is NaN, +-Infinity or too large for a float
    "bad_label",  # label not 0 or 1
    "bad_id",  # id not a non-empty string or integer of at most MAX_KEY_CHARS
    "unknown_feature",  # a feature the partition's model has no input slot for (runner)
)

DEFAULT_KEY_FIELDS: tuple[str, ...] = ("key",)

#: Longest entity key or event id accepted, in characters (keys index per-entity state).
MAX_KEY_CHARS = 256

# Epoch seconds accepted: 1970-01-01 .. 2100-01-01. A number above the upper bound is
# almost always epoch milliseconds sent by mistake, and is reported as such.
_TS_MAX = 4102444800.0

_loads = json.loads
_fast_loads = orjson.loads
_FastDecodeError = orjson.JSONDecodeError
_fast_dumps = orjson.dumps
# Types orjson would write its own way (datetimes, dataclasses, subclasses of str, int,
# dict, list) go to ``default``, which refuses them, so the stdlib decides as before.
_FAST_DUMPS_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                       | orjson.OPT_PASSTHROUGH_SUBCLASS)
_isfinite = math.isfinite
_fromiso = datetime.fromisoformat


class InvalidEvent(ValueError):
    """A message that breaks the contract; goes to the dead-letter topic.

    Parameters
    ----------
    reason
        One of :data:`DEAD_LETTER_REASONS`.
    detail
        What exactly was wrong, for people reading the dead-letter topic or the logs.

    Examples
    --------
    >>> err = InvalidEvent("bad_label", "label must be 0 or 1, got 2")
    >>> err.reason, str(err)
    ('bad_label', 'bad_label: label must be 0 or 1, got 2')
    """

    __slots__ = ("reason", "detail")

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in DEAD_LETTER_REASONS:
            raise ValueError(f"unknown dead-letter reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.detail))


@dataclass(frozen=True, slots=True)
class Event:
    """One valid input event.

    Attributes
    ----------
    ts
        Event time, epoch seconds (UTC).
    keys
        Entity key values, in the order of the configured key fields, as strings.
    features
        Feature name to finite float.
    label
        0 or 1 when the event carries its label, else None.
    event_id
        The producer's event id as a string (labels arriving later refer to it), or None.
    src
        Where it was read: ``"topic:partition:offset"``.

    Examples
    --------
    >>> Event(0.0, ("s1",), {"v": 1.0}, None, None, "in:0:0").keys
    ('s1',)
    """

    ts: float
    keys: tuple[str, ...]
    features: dict[str, float]
    label: int | None
    event_id: str | None
    src: str


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_timestamp(value: Any) -> float:
    """Epoch seconds from an ISO 8601 string with an offset (or ``Z``) or a number.

    Raises :class:`InvalidEvent` (``bad_timestamp``) for anything else: naive datetimes
    (no offset), booleans, non-finite numbers, and times outside 1970..2100 (epoch
    milliseconds sent as seconds land there).

    Examples
    --------
    >>> parse_timestamp("2024-01-01T00:00:00Z")
    1704067200.0
    >>> parse_timestamp("2024-01-01T01:00:00.5+01:00")
    1704067200.5
    >>> parse_timestamp(1704067200)
    1704067200.0
    >>> parse_timestamp("2024-01-01T00:00:00")
    Traceback (most recent call last):
    ...
    stream_rnn.io.events.InvalidEvent: bad_timestamp: ts has no UTC offset: '2024-01-01T00:00:00'
    """
    kind = type(value)
    if kind is str:
        try:
            moment = _fromiso(value)
        except ValueError:
            raise InvalidEvent("bad_timestamp", f"ts is not ISO 8601: {_short(value)}") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidEvent("bad_timestamp", f"ts has no UTC offset: {_short(value)}")
        ts = moment.timestamp()
    elif kind is int or kind is float:
        try:
            ts = float(value)
        except OverflowError:
            raise InvalidEvent("bad_timestamp", "ts is too large") from None
        if not _isfinite(ts):
            raise InvalidEvent("bad_timestamp", f"ts is not finite: {value!r}")
    else:
        raise InvalidEvent(
            "bad_timestamp", f"ts must be an ISO 8601 string or epoch seconds, got {kind.__name__}"
        )
    if not 0.0 <= ts < _TS_MAX:
        hint = " (epoch milliseconds? ts is in seconds)" if ts >= _TS_MAX * 10 else ""
        raise InvalidEvent("bad_timestamp", f"ts {ts!r} is outside 1970..2100{hint}")
    return ts


def _identifier(value: Any, reason: str, name: str) -> str:
    # Entity keys and ids: non-empty strings or integers (not booleans, not floats).
    kind = type(value)
    if kind is str:
        if not value:
            raise InvalidEvent(reason, f"{name} is empty")
        if len(value) > MAX_KEY_CHARS:
            raise InvalidEvent(reason, f"{name} is longer than {MAX_KEY_CHARS} characters")
        return cast(str, value)
    if kind is int:
        text = str(value)
        if len(text) > MAX_KEY_CHARS:
            raise InvalidEvent(reason, f"{name} is longer than {MAX_KEY_CHARS} characters")
        return text
    raise InvalidEvent(reason, f"{name} must be a string or an integer, got {kind.__name__}")


def _label(value: Any) -> int | None:
    kind = type(value)
    if value is None:
        return None
    if (kind is int or kind is float) and (value == 0 or value == 1):
        return int(value)
    shown = kind.__name__ if kind is not int and kind is not float else repr(value)
    raise InvalidEvent("bad_label", f"label must be 0 or 1, got {_short(shown)}")


def _as_bytes(value: bytes | bytearray | memoryview | str | None) -> bytes:
    if type(value) is bytes:
        return value
    if value is None:  # a tombstone, or a producer that sent no value
        raise InvalidEvent("not_json", "no message value (null)")
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _decode(value: bytes, max_bytes: int) -> Any:
    if len(value) > max_bytes:
        raise InvalidEvent("oversize", f"{len(value)} bytes > max {max_bytes}")
    try:
        return _loads(value)
    except UnicodeDecodeError:
        raise InvalidEvent("not_json", "not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent("not_json", f"{exc.msg} at char {exc.pos}") from None
    except ValueError as exc:  # an integer literal beyond sys.get_int_max_str_digits()
        raise InvalidEvent("non_finite", f"number too large: {_short(str(exc))}") from None
    except RecursionError:
        raise InvalidEvent("not_json", "nested too deeply") from None


def parse_event(
    value: bytes | bytearray | memoryview | str | None,
    *,
    message_key: bytes | None = None,
    key_fields: tuple[str, ...] = DEFAULT_KEY_FIELDS,
    max_bytes: int = 65536,
    src: str = "",
) -> Event:
    """Decode and validate one input message.

    Parameters
    ----------
    value
        The message value.
    message_key
        The Kafka message key; used as the entity key when ``key_fields`` has a single
        field and the object lacks it.
    key_fields
        Names of the entity key fields, in order.
    max_bytes
        Longer messages are rejected (``oversize``) before decoding.
    src
        ``"topic:partition:offset"``, kept on the event for tracing.

    Raises
    ------
    InvalidEvent
        With a ``reason`` from :data:`DEAD_LETTER_REASONS`.

    Examples
    --------
    >>> e = parse_event(b'{"ts": "2024-01-01T00:00:00Z", "key": "s1", '
    ...                 b'"features": {"v": 1.5, "n": 2}, "label": 1, "id": 7}', src="in:0:42")
    >>> e.ts, e.keys, e.features, e.label, e.event_id, e.src
    (1704067200.0, ('s1',), {'v': 1.5, 'n': 2.0}, 1, '7', 'in:0:42')
    >>> parse_event(b'{"ts": 0, "features": {}}', message_key=b"card-9").keys
    ('card-9',)
    >>> parse_event(b'{"ts": 0, "key": "a", "features": {"v": true}}')
    Traceback (most recent call last):
    ...
    stream_rnn.io.events.InvalidEvent: non_numeric: feature 'v' is bool, not a number
    """
    raw = _as_bytes(value)
    if len(raw) <= max_bytes:
        try:
            return _event(_fast_loads(raw), message_key, key_fields, src)
        except (_FastDecodeError, InvalidEvent):
            # orjson differs from the stdlib on rejected input only (it refuses NaN and
            # Infinity literals, lone surrogates, a BOM, UTF-16; it reads integers beyond
            # 64 bits as floats): decoding again with the stdlib keeps every reason and
            # detail as they were, at no cost to valid events.
            pass
    return _event(_decode(raw, max_bytes), message_key, key_fields, src)


def _event(obj: Any, message_key: bytes | None, key_fields: tuple[str, ...],
           src: str) -> Event:
    if type(obj) is not dict:
        raise InvalidEvent("not_object", f"expected a JSON object, got {type(obj).__name__}")

    try:
        raw_ts = obj["ts"]
    except KeyError:
        raise InvalidEvent("missing_field", "no 'ts'") from None
    ts = parse_timestamp(raw_ts)

    keys: tuple[str, ...]
    if len(key_fields) == 1:
        field = key_fields[0]
        raw_key = obj.get(field)
        if raw_key is None and field not in obj:
            if message_key is None:
                raise InvalidEvent("missing_field", f"no {field!r} and no message key")
            try:
                raw_key = message_key.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEvent("bad_key", "message key is not UTF-8") from None
        keys = (_identifier(raw_key, "bad_key", field),)
    else:
        parts = []
        for field in key_fields:
            if field not in obj:
                raise InvalidEvent("missing_field", f"no {field!r}")
            parts.append(_identifier(obj[field], "bad_key", field))
        keys = tuple(parts)

    try:
        raw_features = obj["features"]
    except KeyError:
        raise InvalidEvent("missing_field", "no 'features'") from None
    if type(raw_features) is not dict:
        raise InvalidEvent(
            "bad_features", f"features must be an object, got {type(raw_features).__name__}"
        )
    features: dict[str, float] = {}
    for name, number in raw_features.items():
        kind = type(number)
        if kind is float:
            if not _isfinite(number):
                raise InvalidEvent("non_finite", f"feature {_short(name)} is {number!r}")
            features[name] = number
        elif kind is int:
            try:
                features[name] = float(number)
            except OverflowError:
                raise InvalidEvent("non_finite", f"feature {_short(name)} is too large") from None
        else:
            raise InvalidEvent(
                "non_numeric", f"feature {_short(name)} is {kind.__name__}, not a number"
            )

    label = _label(obj.get("label"))
    raw_id = obj.get("id")
    event_id = None if raw_id is None else _identifier(raw_id, "bad_id", "id")
    return Event(ts, keys, features, label, event_id, src)


def parse_label(
    value: bytes | bytearray | memoryview | str | None, max_bytes: int = 4096
) -> tuple[str, int]:
    """Decode a labels-topic message ``{"id": ..., "label": 0|1}`` into ``(event_id, label)``.

    The id is returned as a string (integer ids as their decimal digits), matching
    :attr:`Event.event_id`. Raises :class:`InvalidEvent` like :func:`parse_event`.

    Examples
    --------
    >>> parse_label(b'{"id": "evt-1", "label": 1}')
    ('evt-1', 1)
    >>> parse_label(b'{"id": 12, "label": 0.0}')
    ('12', 0)
    >>> parse_label(b'{"id": 12}')
    Traceback (most recent call last):
    ...
    stream_rnn.io.events.InvalidEvent: missing_field: no 'label'
    """
    obj = _decode(_as_bytes(value), max_bytes)
    if type(obj) is not dict:
        raise InvalidEvent("not_object", f"expected a JSON object, got {type(obj).__name__}")
    if obj.get("id") is None:
        raise InvalidEvent("missing_field", "no 'id'")
    if obj.get("label") is None:
        raise InvalidEvent("missing_field", "no 'label'")
    event_id = _identifier(obj["id"], "bad_id", "id")
    return event_id, cast(int, _label(obj["label"]))  # None was rejected above


def _check_score(score: Any) -> None:
    if isinstance(score, (bool, str, bytes)) or not hasattr(score, "__float__"):
        raise ValueError(f"score must be a number, got {type(score).__name__}")
    if not 0.0 <= float(score) <= 1.0:  # also false for NaN
        raise ValueError(f"score must be in [0, 1], got {score!r}")


def _plain(value: Any) -> Any:
    # NumPy scalars and arrays (models compute in NumPy) as plain JSON values.
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_score(record: Mapping[str, Any]) -> bytes:
    """Serialize one output record as compact UTF-8 JSON.

    The daemon builds the record: ``src``, the entity key field(s) with their values,
    ``ts``, its prediction fields, ``score`` in [0, 1], ``flag`` and ``model_version``.
    ``score`` is checked (a number in [0, 1]) and NaN/Infinity anywhere is refused with
    ValueError, so consumers of the output topic always get strict JSON. NumPy scalars and
    arrays are written as plain numbers and lists.

    Examples
    --------
    >>> encode_score({"src": "in:0:42", "key": "s1", "ts": 1704067200.0,
    ...               "score": 0.25, "flag": False, "model_version": "v3"})
    b'{"src":"in:0:42","key":"s1","ts":1704067200.0,"score":0.25,"flag":false,"model_version":"v3"}'
    >>> encode_score({"score": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: score must be in [0, 1], got nan
    """
    score = record.get("score", 0.0)
    # A plain float in range, the usual case, needs no more than one comparison.
    if type(score) is not float or not 0.0 <= score <= 1.0:
        if "score" in record:
            _check_score(score)
    try:
        raw = _fast_dumps(record, _plain, _FAST_DUMPS_OPTIONS)  # positional: no kwargs parse
    except TypeError:  # orjson.JSONEncodeError: integers beyond 64 bits, non-string keys
        raw = None
    # orjson writes NaN and Infinity as null: any null sends the record to the stdlib
    # encoder, which refuses them (a real None, rare in outputs, is written the same).
    if raw is None or b"null" in raw:
        return json.dumps(
            record, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain
        ).encode("utf-8")
    return raw


def dead_letter_headers(error: InvalidEvent, src: str) -> list[tuple[str, bytes]]:
    """Kafka headers for a message sent to the dead-letter topic (the value is kept as is).

    Examples
    --------
    >>> dead_letter_headers(InvalidEvent("not_json", "Expecting value at char 0"), "in:3:17")
    [('dlq.reason', b'not_json'),
     ('dlq.detail', b'Expecting value at char 0'),
     ('dlq.src', b'in:3:17')]
    """
    return [
        ("dlq.reason", error.reason.encode("ascii")),
        ("dlq.detail", error.detail.encode("utf-8", "backslashreplace")),
        ("dlq.src", src.encode("utf-8", "backslashreplace")),
    ]
