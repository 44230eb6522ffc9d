"""What the two Kafka client stacks share: settings checks, the delivery report types, and the
bookkeeping of a sink that tracks every write until the broker answers.

:mod:`stream_rnn.io.kafka` (kafka-python) and :mod:`stream_rnn.io.confluent` (librdkafka)
subclass these and add only what their client does differently: how a producer is built,
how one write is handed to it, and how it is released. The public names defined here are
exported (and documented) by :mod:`stream_rnn.io.kafka`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from stream_rnn.io.base import Sink, SinkError

__all__ = [
    "COMPRESSION_TYPES",
    "SECURITY_OPTIONS",
    "DeliveryError",
    "FailedSend",
    "TrackedSink",
    "client_options",
]

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
        super().__init__("; ".join(parts) or "delivery failed")
        self.failures = failures
        self.unacknowledged = unacknowledged


class TrackedSink(Sink):
    """A producer whose every write is counted until the broker acknowledges or fails it.

    :meth:`send` does not raise for broker trouble: a write that cannot be made becomes a
    :class:`FailedSend`, and :meth:`flush` raises :class:`DeliveryError` (a
    :class:`~stream_rnn.io.base.SinkError`) listing them, so the runner never commits past
    an output that was not acknowledged. :meth:`failures` shows them without raising. A
    producer that is stuck or broken is replaced; reports of its writes that come later are
    ignored (they were counted as unacknowledged when it was replaced).

    A subclass builds its client's settings in :meth:`_configure` and provides
    :meth:`_reconnect`, :meth:`_produce_raw`, :meth:`_flush_producer`,
    :meth:`_must_replace`, :meth:`_discard_producer` and :meth:`_release_producer`; its
    client reports each write with :meth:`_acked` or :meth:`_failed`.

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

    def _configure(self, producer_options: dict[str, Any]) -> None:
        """Build the client's settings from the arguments (called last by ``__init__``)."""
        raise NotImplementedError

    def _reconnect(self) -> Any:
        """A producer to write with when there is none, or None while the broker cannot be
        reached (the write then fails with :meth:`_unreachable`)."""
        raise NotImplementedError

    def _unreachable(self) -> BaseException:
        return ConnectionError("not connected")

    def _produce_raw(self, producer: Any, generation: int, topic: str, key: bytes | None,
                     value: bytes, headers: Sequence[tuple[str, bytes]], context: Any) -> None:
        """Hand one write to ``producer``, reporting its outcome to :meth:`_acked` or
        :meth:`_failed` with ``generation``; raise one of :attr:`_write_errors` when it
        cannot be queued."""
        raise NotImplementedError

    def _flush_producer(self, producer: Any, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the producer's queued writes to be answered."""
        raise NotImplementedError

    def _must_replace(self, failures: list[FailedSend]) -> bool:
        """Whether these failures leave the producer in a state it does not leave alone."""
        raise NotImplementedError

    def _discard_producer(self, producer: Any) -> None:
        """Release a replaced producer at once, dropping what it still holds."""
        raise NotImplementedError

    def _release_producer(self, producer: Any, timeout_s: float) -> None:
        """Release the producer at close, giving queued writes ``timeout_s`` to complete."""
        raise NotImplementedError

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

    def pending(self) -> int:
        """Writes sent and not yet acknowledged nor failed."""
        with self._lock:
            return self._pending

    def failures(self) -> list[FailedSend]:
        """Writes that failed since the last :meth:`flush` (this call does not clear them)."""
        with self._lock:
            return list(self._failures)

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


# Defined here so that both stacks share them, but documented and exported by
# stream_rnn.io.kafka, where they were first defined: keep that their module, so reprs,
# tracebacks and pickles name them as before.
for _public in (FailedSend, DeliveryError):
    _public.__module__ = "stream_rnn.io.kafka"
del _public
