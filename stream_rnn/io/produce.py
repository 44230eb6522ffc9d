"""Writing a recorded stream into Kafka, paced like the recording.

:func:`schedule` turns events (``load_scenario(path).events()``) into the messages to
write, in order, each with the stream time at which it is due: the event itself (JSON, the
daemon's input contract, keyed by its entity key so one key's events stay in one
partition, in order), and, for streams with delayed labels, a ``{"id", "label"}``
message for the labels topic that becomes due once stream time has passed the event's
time plus the delay (the label is then stripped from the event).

:func:`produce` writes those messages with an idempotent, ``acks=all`` producer, either as
fast as possible or paced: a message due at stream time ``t`` is sent ``(t - t0) / speed``
seconds after the first one. It sends every message that is due, then sleeps until the next
one is due, so a fast recording goes out in small batches rather than a busy loop.

Topics are never created implicitly: a missing topic is an error unless
``create_partitions`` is given (a broker's automatic creation would pick its own partition
count, and some brokers have it switched off).
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient, NewTopic

from stream_rnn.io.events import InvalidEvent, parse_timestamp
from stream_rnn.io.kafka import _close_producer as close_producer

__all__ = ["EVENTS", "LABELS", "BrokerUnreachable", "DeliveryFailed", "Message", "MissingTopic",
           "ProduceError", "ProduceReport", "ensure_topics", "produce", "schedule"]

#: :attr:`Message.kind` of an input event and of a delayed label.
EVENTS = "events"
LABELS = "labels"

# Messages due within this much of now go out in the same batch (no sleep between them).
_BATCH_S = 0.005
# Flushing waits in slices this long, so an abandon request is seen promptly.
_FLUSH_SLICE_S = 0.25
# Unpaced runs never sleep, so progress is also reported every this many messages.
_PROGRESS_EVERY = 1000


class ProduceError(RuntimeError):
    """Writing failed; the subclasses say why."""


class BrokerUnreachable(ProduceError):
    """No broker answered at the bootstrap address."""


class MissingTopic(ProduceError):
    """A topic to write to does not exist (and was not to be created)."""


class DeliveryFailed(ProduceError):
    """Writes were refused or not acknowledged in time."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message to write: ``kind`` is :data:`EVENTS` or :data:`LABELS`, ``due`` the
    stream time (epoch seconds) at which it is sent, ``index`` the position in the input
    of the event it carries or labels."""

    kind: str
    due: float
    key: bytes | None
    value: bytes
    index: int = -1


@dataclass(frozen=True)
class ProduceReport:
    """What :func:`produce` wrote: events, labels, wall seconds, whether it was stopped."""

    events: int
    labels: int
    seconds: float
    stopped: bool = False

    @property
    def events_per_second(self) -> float:
        """Events acknowledged per wall-clock second."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def _encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _stream_time(event: Mapping[str, Any], previous: float | None) -> float | None:
    # A record the daemon will dead-letter (no or bad ts) still goes out, at the current
    # stream time: scenarios may carry such records on purpose.
    try:
        return parse_timestamp(event.get("ts"))
    except InvalidEvent:
        return previous


def schedule(
    events: Iterable[Mapping[str, Any]],
    key_field: str = "key",
    label_delay_seconds: float = 0.0,
    delayed_labels: bool = False,
    limit: int | None = None,
) -> Iterator[Message]:
    """The messages for ``events``, in the order and at the stream times they are due.

    Each event becomes one :data:`EVENTS` message keyed by its ``key_field`` value (UTF-8;
    None when absent). With ``delayed_labels`` and a positive ``label_delay_seconds``, an
    event's ``label`` is removed and a :data:`LABELS` message ``{"id", "label"}`` follows
    once stream time (the latest event time so far) has passed the event's time plus the
    delay; labels still pending when the events end come last, at their due times. Labels
    of events without an ``id`` cannot be named and are dropped. ``limit`` caps the events.

    Examples
    --------
    >>> events = [{"ts": t, "key": "card-1", "id": f"tx-{t}", "features": {"amount": 1.0},
    ...            "label": t % 2} for t in (100, 101, 105, 110)]
    >>> for m in schedule(events, "key", label_delay_seconds=4, delayed_labels=True):
    ...     print(m.kind, m.due, m.value.decode())
    events 100.0 {"ts":100,"key":"card-1","id":"tx-100","features":{"amount":1.0}}
    events 101.0 {"ts":101,"key":"card-1","id":"tx-101","features":{"amount":1.0}}
    labels 104.0 {"id":"tx-100","label":0}
    events 105.0 {"ts":105,"key":"card-1","id":"tx-105","features":{"amount":1.0}}
    labels 105.0 {"id":"tx-101","label":1}
    labels 109.0 {"id":"tx-105","label":1}
    events 110.0 {"ts":110,"key":"card-1","id":"tx-110","features":{"amount":1.0}}
    labels 114.0 {"id":"tx-110","label":0}
    """
    delay = float(label_delay_seconds)
    split_labels = delayed_labels and delay > 0
    pending: list[tuple[float, int, bytes | None, bytes]] = []
    now: float | None = None
    for count, event in enumerate(events):
        if limit is not None and count >= limit:
            break
        ts = _stream_time(event, now)
        if ts is not None:
            now = ts if now is None else max(now, ts)
        # Labels whose time has passed go out before the event that moved time past them.
        while pending and now is not None and pending[0][0] < now:
            due, index, key, value = heapq.heappop(pending)
            yield Message(LABELS, due, key, value, index)
        raw_key = event.get(key_field)
        key = None if raw_key is None else str(raw_key).encode("utf-8")
        body = dict(event)
        if split_labels and "label" in body:
            label = body.pop("label")
            if body.get("id") is not None and label is not None and ts is not None:
                value = _encode({"id": body["id"], "label": label})
                heapq.heappush(pending, (ts + delay, count, key, value))
        yield Message(EVENTS, now if now is not None else 0.0, key, _encode(body), count)
    while pending:
        due, index, key, value = heapq.heappop(pending)
        yield Message(LABELS, due, key, value, index)


def _admin(bootstrap: str, timeout_s: float, security: Mapping[str, Any]) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="stream-rnn-produce",
                                bootstrap_timeout_ms=int(timeout_s * 1000),
                                request_timeout_ms=int(max(timeout_s, 1.0) * 1000),
                                **security)
    except (kafka_errors.KafkaError, OSError) as exc:
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap}: {exc}") from None


def ensure_topics(bootstrap: str, topics: Iterable[str], create_partitions: int | None = None,
                  timeout_s: float = 10.0, security: Mapping[str, Any] | None = None
                  ) -> list[str]:
    """Check that ``topics`` exist; create the missing ones with ``create_partitions``
    partitions when given, else raise :class:`ProduceError` naming them. Returns the
    topics created. Listing topics never triggers a broker's automatic creation."""
    admin = _admin(bootstrap, timeout_s, security or {})
    try:
        existing = set(admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return []
        if create_partitions is None:
            raise MissingTopic(
                f"topic(s) {', '.join(missing)} do not exist on {bootstrap}: create them "
                "first, or let this command create them (--create-topics PARTITIONS)")
        try:
            admin.create_topics([NewTopic(t, create_partitions, 1) for t in missing])
        except kafka_errors.TopicAlreadyExistsError:
            pass  # created concurrently: fine
        except kafka_errors.KafkaError as exc:
            raise MissingTopic(f"cannot create topic(s) {', '.join(missing)} on "
                               f"{bootstrap}: {exc}") from None
        deadline = time.monotonic() + timeout_s
        while set(missing) - set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise MissingTopic(f"topic(s) {', '.join(missing)} not in the metadata of "
                                   f"{bootstrap} {timeout_s:g} s after creating them")
            time.sleep(0.05)
        return missing
    finally:
        admin.close()


#: ``on_ack(message, topic, partition, offset)``: where an acknowledged message landed.
AckCallback = Callable[[Message, str, int, int], None]


class _Acks:
    """Counts acknowledged and failed writes (callbacks run on the producer's thread)."""

    def __init__(self, on_ack: AckCallback | None) -> None:
        self.lock = threading.Lock()
        self.acked = {EVENTS: 0, LABELS: 0}
        self.failures: list[str] = []
        self.on_ack = on_ack

    def ok(self, message: Message, metadata: Any) -> None:
        with self.lock:
            self.acked[message.kind] += 1
        if self.on_ack is not None:
            self.on_ack(message, metadata.topic, metadata.partition, metadata.offset)

    def failed(self, topic: str, error: BaseException) -> None:
        with self.lock:
            self.failures.append(f"{topic}: {error!r}")


def produce(
    messages: Iterable[Message],
    *,
    bootstrap: str,
    topic: str,
    labels_topic: str | None = None,
    speed: float | None = None,
    stop: threading.Event | None = None,
    abandon: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_ack: AckCallback | None = None,
    connect_timeout_s: float = 10.0,
    flush_timeout_s: float = 30.0,
    security: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ProduceReport:
    """Write ``messages`` (from :func:`schedule`) and wait until the broker acknowledged
    them all.

    Parameters
    ----------
    messages
        What to write, in order.
    bootstrap
        ``host:port[,host:port]``.
    topic, labels_topic
        Where :data:`EVENTS` and :data:`LABELS` messages go. Both must exist. Label
        messages with no ``labels_topic`` are an error.
    speed
        Pace: stream seconds per wall second (10 replays ten times faster than recorded);
        None sends as fast as possible.
    stop
        Set it to stop early: what was sent is flushed and the report says ``stopped``.
    abandon
        Set it to stop waiting for acknowledgements (the broker is known to be gone): the
        writes still unacknowledged are reported at once rather than after the timeout.
    progress
        Called with ``(events, labels)`` sent so far after each batch.
    on_ack
        Called with each acknowledged message and the topic, partition and offset it
        landed at (on the producer's I/O thread): the daemon's outputs name their input as
        ``src = "topic:partition:offset"``.
    connect_timeout_s, flush_timeout_s
        Budgets for reaching the broker and for the final acknowledgements.
    security
        TLS/SASL client settings (see :func:`stream_rnn.io.kafka.client_options`).
    clock
        Monotonic seconds (injectable for tests).

    Raises
    ------
    BrokerUnreachable, MissingTopic, DeliveryFailed
        (all :class:`ProduceError`) as their names say.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be positive, got {speed!r}")
    stop = stop or threading.Event()
    security = dict(security or {})
    ensure_topics(bootstrap, [t for t in (topic, labels_topic) if t is not None],
                  timeout_s=connect_timeout_s, security=security)
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id="stream-rnn-produce",
            acks="all", enable_idempotence=True, linger_ms=5,
            bootstrap_timeout_ms=int(connect_timeout_s * 1000),
            max_block_ms=int(max(connect_timeout_s, 1.0) * 1000), **security)
    except (kafka_errors.KafkaError, OSError) as exc:
        raise BrokerUnreachable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    acks = _Acks(on_ack)
    sent = {EVENTS: 0, LABELS: 0}
    started = clock()
    first_due: float | None = None
    stopped = False
    try:
        for message in messages:
            if speed is not None:
                if first_due is None:
                    first_due = message.due
                wait = started + (message.due - first_due) / speed - clock()
                if wait > _BATCH_S:
                    if progress is not None:
                        progress(sent[EVENTS], sent[LABELS])
                    if stop.wait(wait):
                        stopped = True
                        break
            if stop.is_set():
                stopped = True
                break
            target = topic if message.kind == EVENTS else labels_topic
            if target is None:
                raise ValueError("a label message needs labels_topic")
            try:
                future = producer.send(target, key=message.key, value=message.value)
            except kafka_errors.KafkaError as exc:
                raise DeliveryFailed(f"cannot write to {target} on {bootstrap}: {exc}") from None
            future.add_callback(acks.ok, message)
            future.add_errback(acks.failed, target)
            sent[message.kind] += 1
            if progress is not None and sum(sent.values()) % _PROGRESS_EVERY == 0:
                progress(sent[EVENTS], sent[LABELS])
        flush_deadline = clock() + flush_timeout_s
        while True:
            try:
                producer.flush(timeout=_FLUSH_SLICE_S)
                break
            except kafka_errors.KafkaTimeoutError:  # the rest is counted as unacknowledged
                if clock() >= flush_deadline or (abandon is not None and abandon.is_set()):
                    break
        with acks.lock:
            acked = dict(acks.acked)
            failures = list(acks.failures)
        missing = sum(sent.values()) - sum(acked.values()) - len(failures)
        if failures or missing:
            detail = f"; first: {failures[0]}" if failures else ""
            raise DeliveryFailed(f"{len(failures)} write(s) failed and {missing} unacknowledged "
                               f"after {flush_timeout_s:g} s on {bootstrap}{detail}")
    finally:
        abandoned = abandon is not None and abandon.is_set()
        close_producer(producer, 0.0 if abandoned else min(5.0, flush_timeout_s))
    if progress is not None:
        progress(sent[EVENTS], sent[LABELS])
    return ProduceReport(acked[EVENTS], acked[LABELS], clock() - started, stopped)
