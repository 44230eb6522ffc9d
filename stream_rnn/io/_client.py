"""What the two Kafka client stacks share: settings checks, the report types, the runner's
side of a consumer-group source, and the bookkeeping of a sink that tracks every write until
the broker answers.

:mod:`stream_rnn.io.kafka` (kafka-python) and :mod:`stream_rnn.io.confluent` (librdkafka)
subclass these and add only what their client does differently: which thread calls the
consumer and how rebalance steps reach the runner, how a producer is built, how one write
is handed to it, and how it is released. The public names defined here are exported (and
documented) by :mod:`stream_rnn.io.kafka`.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from stream_rnn.io.base import (
    CommitError,
    Partition,
    RebalanceRequest,
    Record,
    Sink,
    SinkError,
    Source,
)

__all__ = [
    "COMPRESSION_TYPES",
    "SECURITY_OPTIONS",
    "DeliveryError",
    "FailedSend",
    "GroupSource",
    "KafkaRebalance",
    "TrackedSink",
    "ASSIGNORS",
    "client_options",
]

#: Partition assignors both client stacks offer, by their Kafka names. The cooperative one
#: moves only the partitions that change owner: the others keep flowing through a rebalance.
ASSIGNORS: tuple[str, ...] = ("range", "roundrobin", "cooperative-sticky")

#: Client settings passed through for TLS and SASL (see :func:`client_options`).
SECURITY_OPTIONS: tuple[str, ...] = (
    "security_protocol",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)
# Shorter names accepted for the same settings (as in the daemon's [kafka] section).
_ALIASES = {"sasl_plain_username": "sasl_username", "sasl_plain_password": "sasl_password"}
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")

#: Producer compression codecs. The consumer reads every one of them whatever this is.
COMPRESSION_TYPES: tuple[str | None, ...] = (None, "gzip", "snappy", "lz4", "zstd")


def client_options(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """TLS/SASL client settings from a mapping or an object with attributes.

    Takes the :data:`SECURITY_OPTIONS` (``sasl_username``/``sasl_password`` are accepted for
    the ``sasl_plain_*`` ones) and leaves out unset (None) values so the client defaults
    apply. The protocol and SASL mechanism are checked, so a typo fails at start-up rather
    than as a connection error.

    Examples
    --------
    >>> client_options({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
    ...                 "sasl_username": "svc", "ssl_cafile": None, "group": "g"})
    {'security_protocol': 'SASL_SSL', 'sasl_mechanism': 'SCRAM-SHA-512',
     'sasl_plain_username': 'svc'}
    >>> client_options({"security_protocol": "TLS"})
    Traceback (most recent call last):
    ...
    ValueError: security_protocol must be one of ('PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'), got 'TLS'
    """  # noqa: E501
    if isinstance(config, Mapping):
        get = config.get
    else:

        def get(name: str, default: Any = None) -> Any:
            return getattr(config, name, default)

    options: dict[str, Any] = {}
    for name in SECURITY_OPTIONS:
        value = get(name)
        if value is None and name in _ALIASES:
            value = get(_ALIASES[name])
        if value is not None:
            options[name] = value
    protocol = options.get("security_protocol")
    if protocol is not None and protocol not in _PROTOCOLS:
        raise ValueError(f"security_protocol must be one of {_PROTOCOLS}, got {protocol!r}")
    mechanism = options.get("sasl_mechanism")
    if mechanism is not None and mechanism not in _SASL_MECHANISMS:
        raise ValueError(f"sasl_mechanism must be one of {_SASL_MECHANISMS}, got {mechanism!r}")
    return options


@dataclass(frozen=True)
class FailedSend:
    """A write the broker did not acknowledge; ``context`` is what the caller passed to
    :meth:`KafkaSink.send`."""

    topic: str
    key: bytes | None
    context: Any
    error: BaseException


class DeliveryError(SinkError):
    """:meth:`KafkaSink.flush` could not confirm every write since the previous flush.

    ``failures`` lists the writes that failed; ``unacknowledged`` counts the writes still
    without an answer when the flush timed out. Commit nothing past these writes.

    Examples
    --------
    >>> from kafka.errors import KafkaTimeoutError
    >>> err = DeliveryError([FailedSend("dlq", b"k", ("in", 0, 42), KafkaTimeoutError())], 2)
    >>> print(err)
    1 write(s) failed (first: dlq: KafkaTimeoutError); 2 write(s) unacknowledged at the flush timeout
    >>> [f.context for f in err.failures]
    [('in', 0, 42)]
    """  # noqa: E501

    def __init__(self, failures: list[FailedSend], unacknowledged: int) -> None:
        parts = []
        if failures:
            first = failures[0]
            parts.append(f"{len(failures)} write(s) failed (first: {first.topic}: {first.error})")
        if unacknowledged:
            parts.append(f"{unacknowledged} write(s) unacknowledged at the flush timeout")
        super().__init__("; ".join(parts) or "delivery failed",
                         failed_topics=(f.topic for f in failures),
                         unacknowledged=unacknowledged)
        self.failures = failures


class TrackedSink(Sink):
    """A producer whose every write is counted until the broker acknowledges or fails it.

    :meth:`send` does not raise for broker trouble: a write that cannot be made becomes a
    :class:`FailedSend`, and :meth:`flush` raises :class:`DeliveryError` (a
    :class:`~stream_rnn.io.base.SinkError`) listing them, so the runner never commits past
    an output that was not acknowledged. :meth:`check_delivery` raises the same without
    waiting for writes still in flight (the runner calls it after every poll), and
    :meth:`failures` shows them without raising. A producer that is stuck or broken is
    replaced; reports of its writes that come later are ignored (they were counted as
    unacknowledged when it was replaced).

    A subclass builds its client's settings in :meth:`_configure` and provides
    :meth:`_reconnect`, :meth:`_flush_producer`, :meth:`_must_replace`,
    :meth:`_discard_producer` and :meth:`_release_producer`. How a write is followed
    depends on the client: one that calls back with every outcome (librdkafka) provides
    :meth:`_produce_raw` and reports each write with :meth:`_acked` or :meth:`_failed`; one
    that returns a handle per write (kafka-python's future) overrides :meth:`_write` to keep
    the handle and :meth:`_collect` to read the outcomes when they are asked for, which
    costs far less per write than a callback run on the client's thread.

    Parameters
    ----------
    bootstrap_servers
        ``"host:port[,host:port...]"`` or a list of them.
    client_id
        Client id shown in broker logs and quotas.
    compression_type
        One of :data:`COMPRESSION_TYPES`.
    security
        TLS/SASL settings, see :func:`client_options`.
    producer_options
        Other producer settings, by the names the subclass documents.
    delivery_timeout_s
        Longest a write may take, retries included, before it fails.
    max_block_s
        Longest :meth:`send` may block.
    connect_timeout_s
        Budget of one connection attempt.
    reconnect_backoff_max_s
        Longest pause between failed connection attempts.
    stuck_after_s
        Writes unanswered for this long mean the producer is stuck and is replaced (see
        :meth:`flush`); by default ``delivery_timeout_s`` plus half of it (at least 5 s).
    """

    #: The subclass module's logger, so log lines keep naming the client stack they concern.
    _log: ClassVar[logging.Logger]
    #: Exceptions of :meth:`_produce_raw` that mean the write failed (reported, not raised).
    _write_errors: ClassVar[tuple[type[BaseException], ...]]
    #: Why :meth:`flush` replaces a producer, as logged.
    _replace_reason: ClassVar[str]

    def __init__(
        self,
        *,
        bootstrap_servers: str | Sequence[str],
        client_id: str = "stream-rnn",
        compression_type: str | None = None,
        security: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        delivery_timeout_s: float = 30.0,
        max_block_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        reconnect_backoff_max_s: float = 30.0,
        stuck_after_s: float | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.compression_type = compression_type
        self.security = security
        self.producer_options = producer_options
        self.delivery_timeout_s = delivery_timeout_s
        self.max_block_s = max_block_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_backoff_max_s = reconnect_backoff_max_s
        self.stuck_after_s = stuck_after_s

        if compression_type not in COMPRESSION_TYPES:
            raise ValueError(f"compression_type must be one of {COMPRESSION_TYPES}")
        self._producer: Any = None
        # Delivery reports arrive on the client's own thread.
        self._lock = threading.Lock()
        self._failures: list[FailedSend] = []
        self._pending = 0
        self._pending_since: float | None = None  # when pending last went from 0 to 1
        self._generation = 0  # bumped when the producer is replaced; older reports ignored
        self._last_ack = 0.0
        self._last_failure = -1.0
        self._closed = False
        self._configure(dict(producer_options or {}))

    @classmethod
    def from_config(cls, kafka: Any, **kwargs: Any) -> Self:
        """Build from the daemon's ``[kafka]`` settings (any object with those attributes)."""
        return cls(
            bootstrap_servers=kafka.bootstrap,
            client_id=kafka.client_id,
            compression_type=kafka.compression,
            security=client_options(kafka),
            **kwargs,
        )

    # -- what each client does its own way -----------------------------------------------

    @abstractmethod
    def _configure(self, producer_options: dict[str, Any]) -> None:
        """Build the client's settings from the arguments (called last by ``__init__``)."""

    @abstractmethod
    def _reconnect(self) -> Any:
        """A producer to write with when there is none, or None while the broker cannot be
        reached (the write then fails with :meth:`_unreachable`)."""

    def _unreachable(self) -> BaseException:
        return ConnectionError("not connected")

    def _produce_raw(self, producer: Any, generation: int, topic: str, key: bytes | None,
                     value: bytes, headers: Sequence[tuple[str, bytes]], context: Any) -> None:
        """Hand one write to ``producer``, reporting its outcome to :meth:`_acked` or
        :meth:`_failed` with ``generation``; raise one of :attr:`_write_errors` when it
        cannot be queued. (Not needed by a subclass that overrides :meth:`_write`.)"""
        raise NotImplementedError(f"{type(self).__name__} writes with _write")

    @abstractmethod
    def _flush_producer(self, producer: Any, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the producer's queued writes to be answered."""

    @abstractmethod
    def _must_replace(self, failures: list[FailedSend]) -> bool:
        """Whether these failures leave the producer in a state it does not leave alone."""

    @abstractmethod
    def _discard_producer(self, producer: Any) -> None:
        """Release a replaced producer at once, dropping what it still holds."""

    @abstractmethod
    def _release_producer(self, producer: Any, timeout_s: float) -> None:
        """Release the producer at close, giving queued writes ``timeout_s`` to complete."""

    # -- writes and their reports ----------------------------------------------------------

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        context: Any = None,
    ) -> None:
        """Queue one write; if it fails, :meth:`failures` and :meth:`flush` say so.

        Raises only for programming errors (invalid topic name, value not bytes, ...).
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        producer = self._producer
        if producer is None:
            producer = self._reconnect()
            if producer is None:
                self._fail(topic, key, context, self._unreachable())
                return
        self._write(producer, topic, key, value, headers, context)

    def _write(self, producer: Any, topic: str, key: bytes | None, value: bytes,
               headers: Sequence[tuple[str, bytes]], context: Any) -> None:
        """Hand one write to ``producer`` and count it as pending until the client reports
        its outcome (:meth:`_produce_raw`)."""
        with self._lock:
            if self._pending == 0:
                self._pending_since = time.monotonic()
            self._pending += 1
            generation = self._generation
        try:
            self._produce_raw(producer, generation, topic, key, value, headers, context)
        except BaseException as exc:
            with self._lock:
                self._settled()
            if not isinstance(exc, self._write_errors):
                raise
            self._fail(topic, key, context, exc)

    def _settled(self) -> None:  # with self._lock held
        self._pending -= 1
        if self._pending == 0:
            self._pending_since = None

    def _acked(self, generation: int, _metadata: Any = None) -> None:
        with self._lock:
            if generation == self._generation:
                self._settled()
                self._last_ack = time.monotonic()

    def _failed(self, generation: int, topic: str, key: bytes | None, context: Any,
                error: BaseException) -> None:
        with self._lock:
            if generation != self._generation:
                return  # already reported when the producer was replaced
            self._settled()
        self._fail(topic, key, context, error)

    def _fail(self, topic: str, key: bytes | None, context: Any, error: BaseException) -> None:
        self._log.warning("Kafka write to %s failed: %s", topic, error)
        with self._lock:
            self._failures.append(FailedSend(topic, key, context, error))
            self._last_failure = time.monotonic()

    def _collect(self) -> None:
        """Bring the counts and failures up to date with the outcomes the client holds
        (nothing to do for a client that reports each one as it comes)."""

    def pending(self) -> int:
        """Writes sent and not yet acknowledged nor failed."""
        self._collect()
        with self._lock:
            return self._pending

    def failures(self) -> list[FailedSend]:
        """Writes that failed since the last :meth:`flush` (this call does not clear them)."""
        self._collect()
        with self._lock:
            return list(self._failures)

    def check_delivery(self) -> int:
        """Without waiting: take the outcomes the client holds and return the number of
        writes still unanswered.

        A producer that failed in a way it does not recover from is replaced, as by
        :meth:`flush`; a stuck one is left to the next :meth:`flush` to find.

        Raises
        ------
        DeliveryError
            If a write since the previous flush or check failed. Its ``unacknowledged``
            counts the writes dropped with a replaced producer; otherwise it is 0 and the
            writes still unanswered stay counted. Failures are reported once.
        """
        self._collect()
        with self._lock:
            failures, self._failures = self._failures, []
            unanswered = self._pending
        if failures:
            dropped = 0
            if self._must_replace(failures):
                self._replace_producer()
                dropped = unanswered  # their reports will be ignored: count them lost
            raise DeliveryError(failures, dropped)
        return unanswered

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every write so far is acknowledged.

        The producer is replaced by a new one (on the next :meth:`send`) when a write failed
        in a way the client does not recover from by itself (kafka-python: any reason but a
        transient one such as a timeout or a lost connection; librdkafka: a fatal error,
        its idempotence state is broken), or when writes stay unanswered well past
        ``delivery_timeout_s``: the idempotent producer can get stuck in states it does not
        leave by itself (seen with a broker that restarted and lost its producer ids).

        Raises
        ------
        DeliveryError
            If a write since the previous flush failed, or some are still unacknowledged at
            the timeout. Failures are reported once: the raise clears them.
        """
        if self._producer is not None:
            self._flush_producer(self._producer, timeout_s)
        self._collect()
        with self._lock:
            failures, self._failures = self._failures, []
            unacknowledged = self._pending
            since = self._pending_since
        if failures or unacknowledged:
            stuck = since is not None and time.monotonic() - since > self._stuck_after_s()
            if stuck or self._must_replace(failures):
                self._replace_producer()
            raise DeliveryError(failures, unacknowledged)

    def _stuck_after_s(self) -> float:
        # Both clients complete (ack or fail) every write within delivery_timeout_s; past
        # that plus a margin, the producer is not going to.
        if self.stuck_after_s is not None:
            return self.stuck_after_s
        return self.delivery_timeout_s + max(5.0, 0.5 * self.delivery_timeout_s)

    def _replace_producer(self) -> None:
        # Writes still in flight on the old producer count as unacknowledged now (the
        # caller is told by the DeliveryError being raised) and their reports are ignored.
        with self._lock:
            self._generation += 1
            self._pending = 0
            self._pending_since = None
        producer, self._producer = self._producer, None
        if producer is not None:
            self._log.warning("replacing the Kafka producer (%s)", self._replace_reason)
            self._discard_producer(producer)

    def close(self, timeout_s: float = 10.0) -> None:
        """Release the producer; queued writes get ``timeout_s`` to complete. Idempotent."""
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            self._release_producer(producer, timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class KafkaRebalance(RebalanceRequest):
    """A :class:`~stream_rnn.io.base.RebalanceRequest` with its timing.

    Attributes
    ----------
    created
        ``time.monotonic()`` when the consumer reported the step.
    deadline
        ``time.monotonic()`` after which the consumer stops waiting for ``done()``.
    completed
        ``time.monotonic()`` of ``done()``, else None.
    expired
        True when the consumer stopped waiting before ``done()``.

    Examples
    --------
    >>> r = KafkaRebalance("revoked", (Partition("in", 0),), created=1.0, deadline=31.0)
    >>> r.is_done, r.completed
    (False, None)
    >>> r.done()
    >>> r.is_done, r.completed is not None, r.error
    (True, True, None)
    """

    created: float = 0.0
    deadline: float = 0.0
    completed: float | None = None
    expired: bool = False
    _on_done: Callable[[], None] | None = field(default=None, repr=False)

    def done(self, error: BaseException | None = None) -> None:
        """Tell the consumer the runner has finished with this step."""
        if self.completed is None:
            self.completed = time.monotonic()
        super().done(error)
        if self._on_done is not None:
            self._on_done()


def _names(partitions: Iterable[Partition]) -> str:
    return ", ".join(str(p) for p in sorted(partitions)) or "-"


@dataclass(eq=False)
class _Job:
    """One poll of the consumer, made on the thread that drives it."""

    timeout_s: float
    max_records: int
    result: Any = None
    error: BaseException | None = None
    done: bool = False
    # Partitions sought or paused while this call was fetching: its records for them may
    # predate the change, so they are dropped and the partition rewound.
    dirty: set[Partition] = field(default_factory=set)


class GroupSource(Source):
    """The runner's side of a consumer-group source: rebalance steps handed over and
    applied in order, what is assigned, paused and where each partition stands, and the
    checks before a commit.

    A subclass owns the client: which thread calls the consumer, how a rebalance step is
    handed to the runner (with :meth:`_waiting_for_runner`) and how a poll is run (with
    :meth:`_take_job`). It builds its client in :meth:`_configure`.

    Parameters
    ----------
    topics
        Input topic names.
    bootstrap_servers
        ``"host:port[,host:port...]"`` or a list of them.
    group_id
        Consumer group.
    labels_topic
        Also read this topic; its records carry their topic, so the runner tells them apart.
    client_id
        Client id shown in broker logs and quotas.
    security
        TLS/SASL settings, see :func:`client_options`.
    consumer_options
        Other consumer settings, by the names the subclass documents. Auto-commit stays off.
    rebalance_timeout_s
        How long a rebalance step waits for ``done()``; below ``max_poll_interval_ms``.
    assignor
        Partition assignor, one of :data:`ASSIGNORS`. ``"cooperative-sticky"`` revokes only
        the partitions that move; ``"range"`` and ``"roundrobin"`` revoke everything at every
        rebalance. All members of a group must name the same one. An assignor given in
        ``consumer_options`` by the client's own name wins.
    connect_timeout_s
        Budget of one connection attempt.
    reconnect_backoff_max_s
        Longest pause between failed connection attempts.
    """

    #: The subclass module's logger, so log lines keep naming the client stack they concern.
    _log: ClassVar[logging.Logger]
    #: Option names that would turn auto-commit on (refused: the runner commits).
    _auto_commit_options: ClassVar[tuple[str, ...]]
    #: Exceptions of the client that :meth:`lag` logs rather than raises.
    _client_errors: ClassVar[tuple[type[BaseException], ...]]
    #: Whether a seek or pause races with the poll in flight while the consumer's thread
    #: waits in a rebalance step (True) or while it does not (False); see the subclasses.
    _races_while_parked: ClassVar[bool]

    def __init__(
        self,
        topics: Iterable[str],
        *,
        bootstrap_servers: str | Sequence[str],
        group_id: str,
        labels_topic: str | None = None,
        client_id: str = "stream-rnn",
        security: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        rebalance_timeout_s: float = 30.0,
        assignor: str = "range",
        connect_timeout_s: float = 5.0,
        reconnect_backoff_max_s: float = 30.0,
    ) -> None:
        self.topics = tuple(topics)
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.labels_topic = labels_topic
        self.client_id = client_id
        self.security = security
        self.consumer_options = consumer_options
        self.rebalance_timeout_s = rebalance_timeout_s
        self.assignor = assignor
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_backoff_max_s = reconnect_backoff_max_s

        if not self.topics:
            raise ValueError("at least one input topic is needed")
        if assignor not in ASSIGNORS:
            raise ValueError(f"unknown partition assignor {assignor!r}; known: "
                             f"{', '.join(ASSIGNORS)}")
        options = dict(consumer_options or {})
        for name in self._auto_commit_options:
            if options.pop(name, False):
                raise ValueError("enable_auto_commit cannot be used: the runner commits offsets")
        settings, max_poll_interval_ms = self._consumer_settings(options)
        if not 0 < rebalance_timeout_s * 1000 < max_poll_interval_ms:
            raise ValueError(
                f"rebalance_timeout_s ({rebalance_timeout_s}) must be positive and below "
                f"max_poll_interval_ms ({max_poll_interval_ms} ms)"
            )
        self._subscription = list(dict.fromkeys([*self.topics, *filter(None, [labels_topic])]))
        self._consumer: Any = None

        # Shared between the runner's thread and the client's, guarded by _cond. Never call
        # into the consumer while holding it: kafka-python's IO thread takes it from the
        # rebalance listener.
        self._cond = threading.Condition()
        self._queued: deque[KafkaRebalance] = deque()  # not yet given to the runner
        self._job: _Job | None = None
        self._parked = False  # the consumer's thread waits in a rebalance step
        self._closing = False

        # The runner's side (its thread only).
        self._outstanding: deque[KafkaRebalance] = deque()  # given out, not yet applied
        self._assigned: set[Partition] = set()
        self._paused: set[Partition] = set()
        self._next: dict[Partition, int] = {}
        self._configure(settings)

    @classmethod
    def from_config(cls, kafka: Any, **kwargs: Any) -> Self:
        """Build from the daemon's ``[kafka]`` settings (any object with those attributes)."""
        return cls(
            kafka.input_topics,
            bootstrap_servers=kafka.bootstrap,
            group_id=kafka.group,
            labels_topic=kafka.labels_topic,
            client_id=kafka.client_id,
            security=client_options(kafka),
            assignor=kafka.assignor,
            **kwargs,
        )

    # -- what each client does its own way -----------------------------------------------

    @abstractmethod
    def _consumer_settings(self, options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The client's settings from ``consumer_options`` (auto-commit taken out), and the
        ``max_poll_interval_ms`` they set."""

    @abstractmethod
    def _configure(self, settings: dict[str, Any]) -> None:
        """Build the client (or what it needs) from the settings (last in ``__init__``)."""

    @abstractmethod
    def _retriable(self, error: BaseException) -> bool:
        """Whether a failed poll is worth retrying (a transient client error)."""

    @abstractmethod
    def _records(self, partition: Partition, batch: list[Any]) -> list[Record]:
        """The client's messages of one partition as records."""

    @abstractmethod
    def _drop(self, partition: Partition, batch: list[Any], why: str) -> None:
        """Put the position of ``partition`` back before ``batch``, which is not handed out."""

    @abstractmethod
    def _seek(self, partition: Partition, offset: int) -> None:
        """Move the consumer's position, telling a poll it races with
        (:meth:`_note_change`)."""

    def _start_at(self, partition: Partition, offset: int) -> bool:
        """Whether the pending assignment of ``partition`` itself starts at ``offset``."""
        return False

    def _assignment_done(self, request: KafkaRebalance, parts: set[Partition]) -> None:
        """The runner has done an ``assigned`` step: let the consumer fetch its partitions."""

    def _released(self, parts: set[Partition]) -> None:
        """The runner has done a ``revoked`` or ``lost`` step for ``parts``."""

    @abstractmethod
    def _pause_client(self, parts: set[Partition]) -> None:
        """Stop the consumer fetching ``parts``."""

    @abstractmethod
    def _resume_client(self, live: list[Partition]) -> None:
        """Let the consumer fetch ``live`` (paused, still assigned) again."""

    @abstractmethod
    def _commit_refusal(self) -> CommitError | None:
        """Why no commit can be made now, if so."""

    @abstractmethod
    def _commit_offsets(self, offsets: Mapping[Partition, int], timeout_s: float) -> None:
        """Commit through the client; raise :class:`CommitError` when not confirmed."""

    @abstractmethod
    def _highwaters(self) -> Mapping[Partition, int | None]:
        """The latest known high watermark of each assigned partition."""

    @abstractmethod
    def end_offsets(
        self, partitions: Iterable[Partition] | None = None, timeout_s: float = 5.0
    ) -> dict[Partition, int]:
        """Log-end offsets (the offset the next write gets), asked of the broker."""

    # -- rebalance steps -------------------------------------------------------------------

    @contextmanager
    def _waiting_for_runner(self, kind: str, parts: tuple[Partition, ...],
                            on_done: Callable[[], None] | None) -> Iterator[KafkaRebalance]:
        """Queue a step for the runner; the body waits for it (up to its deadline) while
        the consumer's thread counts as parked."""
        now = time.monotonic()
        request = KafkaRebalance(kind, parts, created=now,
                                 deadline=now + self.rebalance_timeout_s, _on_done=on_done)
        with self._cond:
            self._queued.append(request)
            self._parked = True
            self._cond.notify_all()
        self._log.info("rebalance: %s %s; waiting for the runner", kind, _names(parts))
        try:
            yield request
        finally:
            with self._cond:
                self._parked = False
                request.expired = not request.is_done
        if request.expired and not self._closing:
            self._log.warning("rebalance: %s %s not done within %.1f s; the consumer goes "
                              "on without it", kind, _names(parts), self.rebalance_timeout_s)

    def rebalance_requests(self) -> list[RebalanceRequest]:
        """Rebalance steps not yet taken, oldest first; call ``done()`` on each when handled."""
        self._apply_done()
        with self._cond:
            taken = list(self._queued)
            self._queued.clear()
        self._outstanding.extend(taken)
        return list(taken)

    def _apply_done(self) -> None:
        # Apply the steps the runner has finished to its view, in order. A step is applied
        # only once done(), even if the consumer stopped waiting for it (commits of an
        # expired revoke are refused meanwhile, and an assignment stays paused until then).
        while self._outstanding and self._outstanding[0].is_done:
            request = self._outstanding.popleft()
            parts = set(request.partitions)
            if request.kind == "assigned":
                self._assigned |= parts
                self._assignment_done(request, parts)
            else:
                self._assigned -= parts
                self._paused -= parts
                for p in parts:
                    self._next.pop(p, None)
                self._released(parts)

    def _given_up(self) -> set[Partition]:
        gone: set[Partition] = set()
        for request in self._outstanding:
            if request.kind == "lost" or (request.kind == "revoked" and request.expired):
                gone.update(request.partitions)
        return gone

    def _being_assigned(self, partition: Partition) -> bool:
        return any(r.kind == "assigned" and partition in r.partitions for r in self._outstanding)

    # -- polls -----------------------------------------------------------------------------

    def _take_job(self, new_job: Callable[[], _Job], deadline: float) -> _Job | None:
        """With ``_cond`` held: start a poll unless one is in flight, and wait for it until
        ``deadline`` (plus a margin) or a rebalance step arrives. Returns the finished poll,
        or None (it then stays in flight for a later call)."""
        if self._job is None:
            self._job = new_job()
            self._cond.notify_all()
        job = self._job
        grace = deadline + 0.25
        while not job.done and not self._queued:
            remaining = grace - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        if self._queued or not job.done:
            return None
        self._job = None
        return job

    def _job_failed(self, job: _Job) -> bool:
        """True when the poll failed for a transient reason; raises its error otherwise."""
        if job.error is None:
            return False
        error = job.error
        if self._retriable(error):
            self._log.warning("Kafka poll failed, will retry: %s", error)
            return True
        raise error

    def _hand_out(self, job: _Job, batches: Iterable[tuple[Partition, list[Any]]]
                  ) -> dict[Partition, list[Record]]:
        out: dict[Partition, list[Record]] = {}
        for partition, batch in batches:
            if not batch:
                continue
            if self._outstanding:  # records come back after the runner's rebalance steps
                self._drop(partition, batch, "a rebalance step")
            elif partition not in self._assigned:
                self._drop(partition, batch, "not assigned")
            elif partition in self._paused or partition in job.dirty:
                self._drop(partition, batch, "paused or sought meanwhile")
            else:
                records = self._records(partition, batch)
                out[partition] = records
                self._next[partition] = records[-1].offset + 1
        return out

    def _rewind(self, partition: Partition, first_offset: int, count: int, why: str) -> int:
        # Fetched but not handed out: the consumer's position is past these records, so put
        # it back (to where the runner expects to continue) for them to be fetched again.
        rewind = self._next.get(partition, first_offset)
        self._log.debug("holding back %d records of %s (%s); position back to %d",
                        count, partition, why, rewind)
        return rewind

    def _note_change(self, parts: set[Partition]) -> None:
        with self._cond:
            job = self._job
            if job is not None and not job.done and self._parked == self._races_while_parked:
                job.dirty |= parts

    # -- the runner's API ------------------------------------------------------------------

    def assignment(self) -> frozenset[Partition]:
        """Partitions this member owns now, as far as the runner is concerned."""
        self._apply_done()
        return frozenset(self._assigned)

    def position(self, partition: Partition) -> int | None:
        """Offset of the next record :meth:`poll` returns for ``partition``, once known."""
        return self._next.get(partition)

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on (also while handling its ``assigned`` step)."""
        self._apply_done()
        partition = Partition(partition.topic, partition.partition)
        being_assigned = self._being_assigned(partition)
        if partition not in self._assigned and not being_assigned:
            raise ValueError(f"{partition} is not assigned")
        self._next[partition] = offset
        if being_assigned and self._start_at(partition, offset):
            return
        self._seek(partition, offset)

    def pause(self, partitions: Iterable[Partition]) -> None:
        """Return no records of ``partitions`` until resumed (the group is not told)."""
        self._apply_done()
        parts = {Partition(p.topic, p.partition) for p in partitions}
        self._paused |= parts
        self._note_change(parts)
        self._pause_client(parts)

    def resume(self, partitions: Iterable[Partition]) -> None:
        """Return records of ``partitions`` again, from where they stopped."""
        self._apply_done()
        parts = {Partition(p.topic, p.partition) for p in partitions} & self._paused
        self._paused -= parts
        live = [p for p in parts if p in self._assigned]
        if live:
            self._resume_client(live)

    def paused(self) -> frozenset[Partition]:
        """Partitions paused with :meth:`pause`."""
        return frozenset(self._paused)

    def commit(self, offsets: Mapping[Partition, int], timeout_s: float = 10.0) -> None:
        """Commit ``{partition: next offset to read}`` synchronously.

        Partitions of a ``revoked`` step can be committed until that step is done, unless
        the consumer stopped waiting for it (``expired``: another member may own them
        already, and Kafka would accept the commit anyway). Partitions of a ``lost`` step
        are never committed. (librdkafka bounds the wait by ``request_timeout_ms`` rather
        than ``timeout_s``.)

        Raises
        ------
        CommitError
            When the commit is not confirmed: broker unreachable, group rebalanced, or a
            partition this member does not own (or no longer may commit).
        """
        if not offsets:
            return
        refusal = self._commit_refusal()
        if refusal is not None:
            raise refusal
        self._apply_done()
        parts = {Partition(p.topic, p.partition) for p in offsets}
        foreign = parts - self._assigned
        if foreign:
            raise CommitError(f"not assigned here: {_names(foreign)}", retriable=False)
        gone = parts & self._given_up()
        if gone:
            raise CommitError(f"no longer ours (lost, or revoke timed out): {_names(gone)}",
                              retriable=False)
        self._commit_offsets(offsets, timeout_s)

    def lag(self, refresh: bool = False, timeout_s: float = 5.0) -> dict[Partition, int]:
        """Records between the position and the log end, per owned partition (when known).

        Uses the high watermark carried by fetch responses; ``refresh=True`` also asks the
        broker for the end offsets and keeps the larger of the two.
        """
        self._apply_done()
        ends: dict[Partition, int] = {}
        if refresh and self._consumer is not None and self._assigned:
            try:
                ends = self.end_offsets(timeout_s=timeout_s)
            except self._client_errors as exc:
                self._log.warning("end offsets unavailable: %s", exc)
        high = self._highwaters()
        out: dict[Partition, int] = {}
        for p in sorted(self._assigned):
            known = [v for v in (high.get(p), ends.get(p)) if v is not None]
            position = self._next.get(p)
            if known and position is not None:
                out[p] = max(0, max(known) - position)
        return out

    def _forget(self) -> None:
        # At close: nothing of the group is ours any more.
        self._assigned.clear()
        self._paused.clear()
        self._next.clear()
        self._outstanding.clear()
        with self._cond:
            self._queued.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Defined here so that both stacks share them, but documented and exported by
# stream_rnn.io.kafka, where they were first defined: keep that their module, so reprs,
# tracebacks and pickles name them as before.
for _public in (FailedSend, DeliveryError, KafkaRebalance):
    _public.__module__ = "stream_rnn.io.kafka"
del _public
