"""Kafka adapter over librdkafka (the ``confluent-kafka`` package): the daemon's compiled
client stack, with the same semantics as :mod:`stream_rnn.io.kafka`.

:class:`ConfluentSource` and :class:`ConfluentSink` are drop-in replacements for
:class:`~stream_rnn.io.kafka.KafkaSource` and :class:`~stream_rnn.io.kafka.KafkaSink`:
offsets are committed only when the runner says so, rebalance steps reach the runner as
:class:`~stream_rnn.io.kafka.KafkaRebalance` requests, writes are idempotent and wait for
every in-sync replica, and a write that is not acknowledged is reported by ``flush()`` as a
:class:`~stream_rnn.io.kafka.DeliveryError`. librdkafka reads every compression codec
(gzip, snappy, lz4, zstd) natively.

Threads
-------
librdkafka serves rebalance callbacks inside ``Consumer.consume()``, on the calling thread,
and releases revoked partitions as soon as the callback returns. The runner must flush,
checkpoint and commit *before* that, which it cannot do from inside a call it made. And a
consumer must not be used from a second thread while ``consume()`` runs (``pause()`` from
another thread deadlocks). So one *owner* thread, started by the source, makes every call
on the consumer:

* :meth:`ConfluentSource.poll` hands the owner one ``consume()`` at a time (records are not
  read ahead by this class; librdkafka prefetches on its own threads) and waits for it;
* a rebalance callback queues a :class:`~stream_rnn.io.kafka.KafkaRebalance` and waits for
  the runner's ``done()`` (heartbeats go on: librdkafka sends them from its own threads),
  up to ``rebalance_timeout_s``; :meth:`~ConfluentSource.poll` returns at once meanwhile;
* every other call the runner makes (:meth:`~ConfluentSource.commit`, ``seek``, ``pause``,
  ``resume``, ...) is run by the owner: between two ``consume()`` calls, or while a
  callback waits for the runner (a revoke's final commit happens exactly there, before the
  partitions are released).

``assigned``
    The callback waits for the runner before assigning, then assigns each partition at the
    offset the runner sought (its checkpoint), or at the group's committed offset (earliest
    when none): nothing is fetched before the runner has restored its state.
``revoked``
    The partitions are ours until the callback returns: the runner checkpoints and commits
    them. If that takes longer than ``rebalance_timeout_s`` the request is marked
    ``expired`` and later commits of those partitions are refused with
    :class:`~stream_rnn.io.base.CommitError`.
``lost``
    The group evicted this member; the runner drops the partitions and commits nothing.

Connectivity
------------
librdkafka connects in the background and reconnects with exponential backoff (up to
``reconnect_backoff_max_s``); neither class fails while the broker is down. Outages are
logged once when they start (with librdkafka's reason) and once when they end; ``ready()``
follows the broker connection state that librdkafka reports every second.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    OFFSET_STORED,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from stream_rnn.io._client import (
    FailedSend,
    GroupSource,
    KafkaRebalance,
    TrackedSink,
    _Job,
    client_options,
)
from stream_rnn.io.base import CommitError, Partition, Record

__all__ = [
    "CONSUMER_OPTION_NAMES",
    "PRODUCER_OPTION_NAMES",
    "ConfluentSink",
    "ConfluentSource",
    "librdkafka_security",
]

log = logging.getLogger(__name__)
# librdkafka's own log lines (its connection errors also come through error_cb).
_rdkafka_log = logging.getLogger("stream_rnn.io.librdkafka")

#: kafka-python consumer option names (as ``stream-rnn serve`` and the kafka-python stack
#: use them) -> librdkafka names. ``max_poll_records`` is taken per :meth:`poll` call.
CONSUMER_OPTION_NAMES: dict[str, str | None] = {
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "request_timeout_ms": "socket.timeout.ms",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "auto_offset_reset": "auto.offset.reset",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "max_poll_records": None,
}

#: kafka-python producer option names -> librdkafka names.
PRODUCER_OPTION_NAMES: dict[str, str] = {
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "max_request_size": "message.max.bytes",
    "request_timeout_ms": "request.timeout.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
}

# client_options() names -> librdkafka names.
_SECURITY_NAMES = {
    "security_protocol": "security.protocol",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
}

_STATS_INTERVAL_MS = 1000
_CALLBACK_TICK_S = 0.5  # a waiting rebalance callback re-checks its deadline this often
_SEEK_RETRY_S = 2.0  # a partition just assigned may refuse a seek until its fetcher starts
_LOG_REPEAT_S = 30.0  # an outage is logged again this often while it lasts


def librdkafka_security(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """TLS/SASL settings of the daemon's ``[kafka]`` section as librdkafka settings.

    Takes what :func:`~stream_rnn.io.kafka.client_options` takes (and checks the protocol
    and SASL mechanism the same way).

    Examples
    --------
    >>> librdkafka_security({"security_protocol": "SASL_SSL", "ssl_cafile": "/ca.pem",
    ...                      "ssl_check_hostname": False, "sasl_mechanism": "PLAIN",
    ...                      "sasl_username": "svc", "sasl_password": "pw"})
    {'security.protocol': 'SASL_SSL', 'ssl.ca.location': '/ca.pem',
     'ssl.endpoint.identification.algorithm': 'none', 'sasl.mechanism': 'PLAIN',
     'sasl.username': 'svc', 'sasl.password': 'pw'}
    >>> librdkafka_security({"sasl_mechanism": "NTLM"})
    Traceback (most recent call last):
    ...
    ValueError: sasl_mechanism must be one of ('PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'OAUTHBEARER', 'GSSAPI'), got 'NTLM'
    """  # noqa: E501
    out: dict[str, Any] = {}
    for name, value in client_options(config).items():
        if name == "ssl_check_hostname":
            out["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        else:
            out[_SECURITY_NAMES[name]] = value
    return out


def _translate(options: Mapping[str, Any], names: Mapping[str, str | None], what: str
               ) -> dict[str, Any]:
    # kafka-python names are translated; dotted names are librdkafka's own, passed through.
    out: dict[str, Any] = {}
    for name, value in options.items():
        if "." in name:
            out[name] = value
        elif name in names:
            target = names[name]
            if target is not None:
                out[target] = value
        else:
            raise ValueError(f"{what} option {name!r} has no librdkafka equivalent; known: "
                             f"{', '.join(sorted(names))} (or a librdkafka name such as "
                             f"'fetch.wait.max.ms')")
    return out


def _client(factory: Callable[[dict[str, Any]], Any], conf: dict[str, Any], what: str) -> Any:
    # librdkafka names a missing TLS file only in its own log; say which setting it is.
    for name, setting in (("ssl_cafile", "ssl.ca.location"),
                          ("ssl_certfile", "ssl.certificate.location"),
                          ("ssl_keyfile", "ssl.key.location")):
        path = conf.get(setting)
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{name}: no such file: {path}")
    try:
        return factory(conf)
    except KafkaException as exc:
        raise ValueError(f"librdkafka refuses the {what} settings: {exc.args[0].str()}"
                         ) from None


class _Health:
    """Broker connectivity as librdkafka reports it (error and statistics callbacks)."""

    def __init__(self, role: str, bootstrap: Any, backoff_max_s: float) -> None:
        self.role = role
        self.bootstrap = bootstrap
        self.backoff_max_s = backoff_max_s
        self.up = False
        self.fatal: KafkaError | None = None
        self._down_since: float | None = None
        self._last_logged = 0.0

    def on_error(self, error: KafkaError) -> None:
        code = error.code()
        if error.fatal():
            self.fatal = error
            log.error("Kafka %s: fatal error: %s", self.role, error.str())
            return
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
                    KafkaError._RESOLVE, KafkaError._SSL, KafkaError._AUTHENTICATION):
            if code == KafkaError._ALL_BROKERS_DOWN:
                self.up = False
            self._log_down(error.str())
            return
        log.warning("Kafka %s: %s", self.role, error.str())

    def _log_down(self, reason: str) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._last_logged = now
            log.warning("Kafka %s cannot reach %s (%s); retrying with backoff up to %.0f s",
                        self.role, self.bootstrap, reason, self.backoff_max_s)
        elif now - self._last_logged > _LOG_REPEAT_S:
            self._last_logged = now
            log.warning("Kafka %s still cannot reach %s after %.0f s (%s)", self.role,
                        self.bootstrap, now - self._down_since, reason)

    def on_stats(self, text: str) -> None:
        try:
            brokers = json.loads(text).get("brokers", {})
        except ValueError:
            return
        self.set_up(any(b.get("state") == "UP" for b in brokers.values()))

    def set_up(self, up: bool) -> None:
        if up and self._down_since is not None:
            log.info("Kafka %s connected to %s after %.1f s", self.role, self.bootstrap,
                     time.monotonic() - self._down_since)
            self._down_since = None
        elif up and not self.up:
            log.info("Kafka %s connected to %s", self.role, self.bootstrap)
        self.up = up


def _common_conf(bootstrap_servers: str | Sequence[str], client_id: str, health: _Health,
                 connect_timeout_s: float, reconnect_backoff_max_s: float,
                 security: Mapping[str, Any] | None) -> dict[str, Any]:
    servers = (bootstrap_servers if isinstance(bootstrap_servers, str)
               else ",".join(bootstrap_servers))
    return {
        "bootstrap.servers": servers,
        "client.id": client_id,
        "socket.connection.setup.timeout.ms": max(1000, int(connect_timeout_s * 1000)),
        "reconnect.backoff.max.ms": max(10, int(reconnect_backoff_max_s * 1000)),
        # Small requests (a flush per poll) must not wait for Nagle and delayed ACKs.
        "socket.nagle.disable": True,
        "statistics.interval.ms": _STATS_INTERVAL_MS,
        "error_cb": health.on_error,
        "stats_cb": health.on_stats,
        "logger": _rdkafka_log,
        # Connection errors reach error_cb (logged once per outage); librdkafka's own log
        # would repeat each of them.
        "log_level": 2,
        **librdkafka_security(security or {}),
    }


def _tp(partition: Partition, offset: int | None = None) -> TopicPartition:
    if offset is None:
        return TopicPartition(partition.topic, partition.partition)
    return TopicPartition(partition.topic, partition.partition, offset)


@dataclass(eq=False)
class _Op:
    """A call on the consumer made for the runner's thread."""

    fn: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = False


class ConfluentSource(GroupSource):
    """Consumer-group reader of the input topics (and optionally a labels topic), over
    librdkafka.

    Same contract and parameters as :class:`~stream_rnn.io.kafka.KafkaSource`. Offsets are
    committed only by :meth:`commit`; a group with no committed offset starts at the
    earliest record. Use it from one thread.

    Parameters
    ----------
    security
        TLS/SASL settings, see :func:`librdkafka_security`.
    consumer_options
        Consumer settings by their kafka-python names (see :data:`CONSUMER_OPTION_NAMES`)
        or librdkafka names (``"fetch.wait.max.ms"``). Auto-commit stays off.

    For the other parameters see :class:`~stream_rnn.io._client.GroupSource`.

    Examples
    --------
    Nothing is contacted before the first :meth:`poll`:

    >>> source = ConfluentSource(["events"], bootstrap_servers="127.0.0.1:9", group_id="g")
    >>> source.ready(), source.assignment(), source.rebalance_requests()
    (False, frozenset(), [])
    >>> source.close()
    """

    _log = log
    _auto_commit_options = ("enable_auto_commit", "enable.auto.commit")
    _client_errors = (KafkaException,)
    # Every call on the consumer runs on the owner thread between two consume() calls,
    # except while a rebalance callback waits for the runner: the consume() that serves it
    # is then in flight and may return records fetched before a seek or pause.
    _races_while_parked = True

    def _consumer_settings(self, options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        conf = _translate(options, CONSUMER_OPTION_NAMES, "consumer")
        # librdkafka knows the assignors by their Kafka names.
        conf.setdefault("partition.assignment.strategy", self.assignor)
        return conf, int(conf.get("max.poll.interval.ms", 300_000))

    def _configure(self, settings: dict[str, Any]) -> None:
        conf = settings
        self._health = _Health("consumer", self.bootstrap_servers, self.reconnect_backoff_max_s)
        self._conf: dict[str, Any] = {
            **_common_conf(self.bootstrap_servers, self.client_id, self._health,
                           self.connect_timeout_s, self.reconnect_backoff_max_s, self.security),
            "group.id": self.group_id,
            "auto.offset.reset": "earliest",
            # librdkafka counts an empty fetch at a new log end as an error (partition EOF)
            # and holds that partition's next fetch back this long: 500 ms by default, which
            # a record arriving meanwhile waits out. No longer than a fetch may wait.
            "fetch.error.backoff.ms": min(100, max(10, int(conf.get("fetch.wait.max.ms",
                                                                     100)))),
            **conf,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        # The cooperative assignor hands over partition increments, the others everything.
        self._cooperative = "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        # Built now: librdkafka contacts nothing until subscribed, and refuses bad settings
        # (a missing CA file, an unknown option) here, at start-up.
        self._consumer = _client(Consumer, self._conf, "consumer")

        # Shared between the runner's thread and the owner thread, guarded by _cond.
        self._ops: deque[_Op] = deque()
        self._start: dict[Partition, int] = {}  # offsets sought before the assignment
        self._high: dict[Partition, int] = {}  # high watermarks after the latest consume
        self._owner: threading.Thread | None = None

    def connect(self, timeout_s: float | None = None) -> bool:
        """Join the group (in the background); librdkafka connects and reconnects by
        itself, so this always succeeds. ``timeout_s`` is accepted for the kafka-python
        stack's signature."""
        if self._closing:
            raise RuntimeError("ConfluentSource is closed")
        if self._owner is None:
            self._consumer.subscribe(self._subscription, on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_lost)
            self._owner = threading.Thread(target=self._own, daemon=True,
                                           name=f"rdkafka-source-{self.group_id}")
            self._owner.start()
        return True

    def ready(self) -> bool:
        """True when librdkafka holds a live connection to a broker."""
        return self._owner is not None and self._health.up

    # -- the owner thread -----------------------------------------------------------------

    def _own(self) -> None:
        consumer = self._consumer
        while True:
            with self._cond:
                while not (self._closing or self._ops
                           or (self._job is not None and not self._job.done)):
                    self._cond.wait()
                if self._closing:
                    self._fail_ops()
                    return
                job = self._job if self._job is not None and not self._job.done else None
            self._serve_ops()
            if job is None:
                continue
            messages: list[Any] | None = None
            error: BaseException | None = None
            try:
                # consume(n, timeout) would wait for n records or the whole timeout; the
                # runner wants what has arrived: wait for one, then take what is fetched.
                first = consumer.poll(job.timeout_s)
                messages = [] if first is None else [first]
                if first is not None and job.max_records > 1:
                    messages += consumer.consume(job.max_records - 1, 0)
                self._note_watermarks(bool(messages))
            except BaseException as exc:  # noqa: BLE001 -- handed to the runner's thread
                error = exc
            with self._cond:
                job.result, job.error, job.done = messages, error, True
                self._cond.notify_all()

    def _note_watermarks(self, got_records: bool) -> None:
        # Cached values: the high watermark of each partition's latest fetch response.
        if got_records:
            self._health.set_up(True)
        high = {}
        for tp in self._consumer.assignment():
            _low, end = self._consumer.get_watermark_offsets(tp, cached=True)
            if end is not None and end >= 0:
                high[Partition(tp.topic, tp.partition)] = int(end)
        with self._cond:
            self._high.update(high)

    def _serve_ops(self) -> None:
        while True:
            with self._cond:
                if not self._ops:
                    return
                op = self._ops.popleft()
            try:
                op.result = op.fn()
            except BaseException as exc:  # noqa: BLE001 -- raised on the caller's thread
                op.error = exc
            with self._cond:
                op.done = True
                self._cond.notify_all()

    def _fail_ops(self) -> None:  # with self._cond held
        for op in self._ops:
            op.error, op.done = RuntimeError("ConfluentSource is closed"), True
        self._ops.clear()
        self._cond.notify_all()

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the owner thread (directly when there is none yet)."""
        owner = self._owner
        if owner is None or threading.current_thread() is owner:
            return fn()
        op = _Op(fn)
        with self._cond:
            if self._closing:
                raise RuntimeError("ConfluentSource is closed")
            self._ops.append(op)
            self._cond.notify_all()
            while not op.done:
                self._cond.wait()
        if op.error is not None:
            raise op.error
        return op.result

    # -- rebalance callbacks (the owner thread, inside consume()) -------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        request = self._hand_over("assigned", partitions)
        parts = [Partition(tp.topic, tp.partition) for tp in partitions]
        with self._cond:
            start = {p: self._start.pop(p) for p in parts if p in self._start}
            paused = set(self._paused)
        tps = [_tp(p, start.get(p, OFFSET_STORED)) for p in parts]
        if self._cooperative:
            consumer.incremental_assign(tps)
        else:
            consumer.assign(tps)
        # An assignment whose step expired stays paused until the runner has done it.
        held = [_tp(p) for p in parts
                if p in paused or (request is not None and request.expired)]
        if held:
            consumer.pause(held)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._hand_over("revoked", partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._hand_over("lost", partitions)

    def _hand_over(self, kind: str, partitions: list[TopicPartition]
                   ) -> KafkaRebalance | None:
        parts = tuple(sorted(Partition(tp.topic, tp.partition) for tp in partitions))
        if not parts or self._closing:
            return None  # during close() the runner has made its final checkpoint already
        # librdkafka releases the partitions when this callback returns, so it waits here,
        # on the owner thread, and meanwhile serves the runner's calls for this step.
        with self._waiting_for_runner(kind, parts, self._wake) as request:
            while True:
                self._serve_ops()  # the runner's commits and seeks for this step
                with self._cond:
                    remaining = request.deadline - time.monotonic()
                    if request.is_done or self._closing or remaining <= 0:
                        break
                    if not self._ops:
                        self._cond.wait(min(remaining, _CALLBACK_TICK_S))
            self._serve_ops()
        return request

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- the runner's API -------------------------------------------------------------------

    def _assignment_done(self, request: KafkaRebalance, parts: set[Partition]) -> None:
        if request.expired:
            # Assigned paused by the callback meanwhile: seek (done already) and resume
            # what the runner has not paused itself.
            resume = [_tp(p) for p in parts if p not in self._paused]
            if resume:
                self._call(lambda tps=resume: self._consumer.resume(tps))

    def _released(self, parts: set[Partition]) -> None:
        with self._cond:
            for p in parts:
                self._high.pop(p, None)

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> dict[Partition, list[Record]]:
        """Records per partition, each list in offset order.

        Returns no records at once while a rebalance step is queued (take it with
        :meth:`rebalance_requests` first) and on timeout. While a step taken is not done
        yet it returns no records.
        """
        if self._closing:
            raise RuntimeError("ConfluentSource is closed")
        self._apply_done()
        self.connect()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._queued:
                return {}
            job = self._take_job(
                lambda: _Job(timeout_s=max(0.0, timeout_s), max_records=max_records), deadline)
        if job is None or self._job_failed(job):
            return {}
        self._apply_done()
        return self._hand_out(job, self._by_partition(job.result or ()).items())

    def _by_partition(self, messages: Iterable[Any]) -> dict[Partition, list[Any]]:
        grouped: dict[Partition, list[Any]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self._health.on_error(error)
                continue
            partition = Partition(message.topic(), message.partition())
            batch = grouped.get(partition)
            if batch is None:
                grouped[partition] = [message]
            else:
                batch.append(message)
        return grouped

    def _retriable(self, error: BaseException) -> bool:
        return isinstance(error, KafkaException) and bool(error.args[0].retriable())

    def _records(self, partition: Partition, batch: list[Any]) -> list[Record]:
        records = []
        for m in batch:
            kind, ts = m.timestamp()
            headers = m.headers()
            records.append(Record(partition.topic, partition.partition, m.offset(),
                                  m.key(), m.value(),
                                  None if kind == TIMESTAMP_NOT_AVAILABLE else ts,
                                  tuple(headers) if headers else ()))
        return records

    def _drop(self, partition: Partition, batch: list[Any], why: str) -> None:
        if partition not in self._assigned:
            return  # the partition has gone: its next owner reads these records
        self._seek(partition, self._rewind(partition, batch[0].offset(), len(batch), why))

    def _seek(self, partition: Partition, offset: int) -> None:
        def seek() -> None:
            deadline = time.monotonic() + _SEEK_RETRY_S
            while True:
                try:
                    self._consumer.seek(_tp(partition, offset))
                    return
                except KafkaException as exc:
                    if time.monotonic() > deadline:
                        raise ValueError(f"cannot seek {partition} to {offset}: "
                                         f"{exc.args[0].str()}") from None
                    time.sleep(0.05)

        self._note_change({partition})
        self._call(seek)

    def _start_at(self, partition: Partition, offset: int) -> bool:
        with self._cond:
            if self._parked:  # the callback assigns it at this offset
                self._start[partition] = offset
                return True
        return False

    def _being_assigned(self, partition: Partition) -> bool:
        # Only a step not done yet still assigns at the offset sought (see _start_at); the
        # partition of one done but queued behind another is assigned already.
        return any(r.kind == "assigned" and partition in r.partitions and not r.is_done
                   for r in self._outstanding)

    def _pause_client(self, parts: set[Partition]) -> None:
        live = [_tp(p) for p in parts if p in self._assigned]
        if live:
            self._call(lambda: self._consumer.pause(live))

    def _resume_client(self, live: list[Partition]) -> None:
        def resume() -> None:
            # librdkafka dropped what it had prefetched at the pause; continue exactly
            # where the runner stands.
            for p in live:
                if p in self._next:
                    self._consumer.seek(_tp(p, self._next[p]))
            self._consumer.resume([_tp(p) for p in live])

        self._call(resume)

    def _commit_refusal(self) -> CommitError | None:
        if self._closing:
            return CommitError("the source is closed", retriable=False)
        return None

    def _commit_offsets(self, offsets: Mapping[Partition, int], timeout_s: float) -> None:
        # librdkafka bounds the wait by request_timeout_ms; timeout_s is not used.
        tps = [_tp(p, int(off)) for p, off in offsets.items()]
        try:
            result = self._call(lambda: self._consumer.commit(offsets=tps, asynchronous=False))
        except KafkaException as exc:
            error = exc.args[0]
            raise CommitError(f"commit failed: {error.str()}",
                              retriable=bool(error.retriable())) from None
        except RuntimeError as exc:  # closed meanwhile
            raise CommitError(str(exc), retriable=False) from None
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            error = failed[0].error
            raise CommitError(f"commit of {failed[0].topic}:{failed[0].partition} failed: "
                              f"{error.str()}", retriable=bool(error.retriable()))

    def committed(self, partition: Partition, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset for ``partition`` (None when there is none)."""
        found = self._call(lambda: self._consumer.committed([_tp(partition)],
                                                            timeout=timeout_s))
        offset = found[0].offset if found else OFFSET_INVALID
        return None if offset < 0 else int(offset)

    def end_offsets(
        self, partitions: Iterable[Partition] | None = None, timeout_s: float = 5.0
    ) -> dict[Partition, int]:
        """Log-end offsets (the offset the next write gets), asked of the broker."""
        parts = sorted(self._assigned if partitions is None else partitions)

        def ask() -> dict[Partition, int]:
            out = {}
            for p in parts:
                _low, high = self._consumer.get_watermark_offsets(_tp(p), timeout=timeout_s)
                out[p] = int(high)
            return out

        return self._call(ask) if parts else {}

    def _highwaters(self) -> dict[Partition, int]:
        with self._cond:
            return dict(self._high)

    def close(self, timeout_s: float = 10.0) -> None:
        """Leave the group and release the client; commits nothing. Idempotent."""
        with self._cond:
            if self._closing and self._consumer is None:
                return
            self._closing = True
            self._cond.notify_all()
        owner = self._owner
        if owner is not None:
            owner.join(timeout_s)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            if owner is not None and owner.is_alive():
                # Closing a consumer another thread still calls would crash the process.
                log.warning("the Kafka consumer is busy; leaving it to the process exit")
            else:
                try:
                    consumer.close()
                except Exception:  # noqa: BLE001 -- closing must not fail the shutdown
                    log.warning("closing the Kafka consumer failed", exc_info=True)
        self._owner = None
        self._forget()


class ConfluentSink(TrackedSink):
    """Producer of outputs and dead letters over librdkafka; every write the broker does
    not acknowledge is reported.

    Same contract and parameters as :class:`~stream_rnn.io.kafka.KafkaSink`: writes wait
    for all in-sync replicas and the producer is idempotent; :meth:`send` does not raise
    for broker trouble, :meth:`flush` raises :class:`~stream_rnn.io.kafka.DeliveryError`
    for every write that failed or is still unacknowledged.

    Parameters
    ----------
    security
        TLS/SASL settings, see :func:`librdkafka_security`.
    producer_options
        Producer settings by kafka-python name (see :data:`PRODUCER_OPTION_NAMES`) or
        librdkafka name (``"linger.ms"``).
    max_block_s
        Longest :meth:`send` may block while the local queue is full.

    For the other parameters see :class:`~stream_rnn.io._client.TrackedSink`.

    Examples
    --------
    >>> sink = ConfluentSink(bootstrap_servers="127.0.0.1:9", compression_type="zstd")
    >>> sink.ready(), sink.pending(), sink.failures()
    (False, 0, [])
    >>> sink.close()
    """

    _log = log
    _write_errors = (KafkaException, BufferError)
    _replace_reason = "fatal error or stuck writes"

    def _configure(self, producer_options: dict[str, Any]) -> None:
        options = _translate(producer_options, PRODUCER_OPTION_NAMES, "producer")
        delivery_ms = max(1, int(self.delivery_timeout_s * 1000))
        linger_ms = int(options.pop("linger.ms", 5))
        self._health = _Health("producer", self.bootstrap_servers,
                               self.reconnect_backoff_max_s)
        self._conf: dict[str, Any] = {
            **_common_conf(self.bootstrap_servers, self.client_id, self._health,
                           self.connect_timeout_s, self.reconnect_backoff_max_s, self.security),
            "compression.type": self.compression_type or "none",
            # librdkafka requires linger.ms below the delivery timeout.
            "linger.ms": min(linger_ms, max(0, delivery_ms - 1)),
            "request.timeout.ms": max(1, min(30_000, delivery_ms)),
            # Keys go to the partitions the Java client and kafka-python pick (murmur2),
            # not librdkafka's own CRC32 default: outputs keyed like the input stay
            # co-partitioned with what other producers write for the same keys.
            "partitioner": "murmur2_random",
            **options,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": delivery_ms,
        }
        self._producer: Producer | None = self._new_producer()

    def _new_producer(self) -> Producer:
        self._health.fatal = None
        conf = {**self._conf, "on_delivery": functools.partial(self._delivered,
                                                               self._generation, None)}
        return _client(Producer, conf, "producer")

    def connect(self, timeout_s: float | None = None) -> bool:
        """True when the producer exists (librdkafka connects in the background)."""
        if self._closed:
            raise RuntimeError("ConfluentSink is closed")
        if self._producer is None:
            self._producer = self._new_producer()
        return True

    def topic_partitions(self, topic: str, timeout_s: float = 10.0) -> int:
        """Fetch ``topic``'s metadata now (its first write would wait for it); returns its
        partition count."""
        self.connect()
        producer = self._producer
        if producer is None:
            raise RuntimeError("ConfluentSink has no producer")
        metadata = producer.list_topics(topic, timeout=timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise RuntimeError(f"topic {topic!r} unavailable: "
                               f"{found.error if found is not None else 'no metadata'}")
        self._health.set_up(True)
        return len(found.partitions)

    def ready(self) -> bool:
        """True when the latest write outcome was an acknowledgement, or when none failed
        yet and a broker connection is up."""
        producer = self._producer
        if producer is None:
            return False
        producer.poll(0)  # take the latest statistics and delivery reports
        with self._lock:
            healthy = self._last_ack > self._last_failure
        return healthy and (self._last_ack > 0 or self._health.up)

    # librdkafka connects in the background: a replaced producer is rebuilt at once.
    def _reconnect(self) -> Producer:
        producer = self._producer = self._new_producer()
        return producer

    def _produce_raw(self, producer: Producer, generation: int, topic: str,
                     key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]],
                     context: Any) -> None:
        kwargs: dict[str, Any] = {}
        if headers:
            kwargs["headers"] = list(headers)
        if context is not None:
            kwargs["on_delivery"] = functools.partial(self._delivered, generation, context)
        deadline: float | None = None
        while True:
            try:
                producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_block_s
                full = now >= deadline
                if not full:
                    producer.poll(min(0.1, deadline - now))
            if full:
                raise BufferError(f"local queue full for {self.max_block_s} s")

    def _delivered(self, generation: int, context: Any, error: KafkaError | None,
                   message: Any) -> None:
        if error is None:
            self._acked(generation)
        else:
            self._failed(generation, message.topic(), message.key(), context,
                         KafkaException(error))

    def _collect(self) -> None:
        producer = self._producer
        if producer is not None:
            producer.poll(0)  # delivery reports are served by poll(), on this thread

    def _flush_producer(self, producer: Producer, timeout_s: float) -> None:
        producer.flush(timeout_s)

    def _must_replace(self, failures: list[FailedSend]) -> bool:
        # librdkafka retries everything else by itself; a fatal error breaks its
        # idempotence state for good.
        return self._health.fatal is not None or any(
            isinstance(f.error, KafkaException) and f.error.args[0].fatal()
            for f in failures)

    def _discard_producer(self, producer: Producer) -> None:
        _discard(producer)

    def _release_producer(self, producer: Producer, timeout_s: float) -> None:
        remaining = producer.flush(timeout_s)
        if remaining:
            log.warning("closing the Kafka producer with %d write(s) unacknowledged",
                        remaining)
        _discard(producer)


def _discard(producer: Producer) -> None:
    # Drop whatever is queued so destroying the client does not wait for it.
    try:
        producer.purge()
        producer.flush(0)
    except Exception:  # noqa: BLE001 -- closing must not fail the caller
        log.warning("purging the Kafka producer failed", exc_info=True)
