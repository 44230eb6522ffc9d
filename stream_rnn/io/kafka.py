"""Kafka adapter: the only code that talks to the broker.

:class:`KafkaSource` (a :class:`~stream_rnn.io.base.Source`) reads the input topics, and
optionally a labels topic, as a member of a consumer group; :class:`KafkaSink` (a
:class:`~stream_rnn.io.base.Sink`) writes outputs and dead letters and reports every write
the broker did not acknowledge. Both run over kafka-python 3 and use standard Kafka APIs
only, so they work the same against Apache Kafka and the test broker.

Rebalances and threads
----------------------
kafka-python 3 drives its network IO on a background thread, and a consumer's rebalance
listener runs on that thread, from inside ``KafkaConsumer.poll()``. The runner must flush its
outputs, checkpoint and commit *before* revoked partitions are released, and it cannot do
that from inside ``poll()``. So:

* ``KafkaConsumer.poll()`` runs on a *poller* thread owned by the source, one call at a
  time, each started by :meth:`KafkaSource.poll` (records are not read ahead);
* the listener is an ``AsyncConsumerRebalanceListener``: it queues a
  :class:`KafkaRebalance` request and awaits, on kafka-python's IO loop (so heartbeats keep
  flowing), until the runner calls ``request.done()`` or ``rebalance_timeout_s`` passes;
* :meth:`KafkaSource.poll` returns at once (no records) when a request arrives, and the
  runner takes it with :meth:`KafkaSource.rebalance_requests` at the top of its loop;
* while a group join is in flight the poller keeps calling ``KafkaConsumer.poll()`` even
  after the runner's :meth:`KafkaSource.poll` has timed out: kafka-python 3.0 discards a
  JoinGroup/SyncGroup round that completes while no ``poll()`` awaits it and starts another
  one, so short polls with work in between could rebalance round after round.

``revoked``
    The partitions are still ours while the request is pending: the group's next
    generation cannot start without this member. The runner flushes the sink, checkpoints
    and :meth:`~KafkaSource.commit`\\ s them, then calls ``done()``. If that takes longer than
    ``rebalance_timeout_s`` (kept below ``max_poll_interval_ms``, the broker's deadline for
    this member to rejoin), the listener stops waiting, the request is marked ``expired``,
    and a later commit fails with :class:`CommitError`: the next owner replays from the last
    committed offset (at-least-once, never a gap).
``assigned``
    The listener first pauses the new partitions inside the consumer, so nothing of them is
    fetched before the runner has restored its checkpoints and called
    :meth:`~KafkaSource.seek`; they are resumed once the request is done (unless the runner
    paused them). No record fetched before a seek is returned: kafka-python drops buffered
    data whose offset is not the partition's position, and this class drops and rewinds a
    result that raced with a seek or pause made while a fetch was running.
``lost``
    The group evicted this member (session expiry, fencing): the partitions may already
    belong to another member. The runner drops their in-flight state and commits nothing
    (:meth:`~KafkaSource.commit` refuses them).

Requests reach the runner in order, and :meth:`KafkaSource.poll` returns no records while
one is queued or not done, so no record of a partition is returned after its
``revoked``/``lost`` request nor before its ``assigned`` request is done. During
:meth:`KafkaSource.close` the listener does not wait (the runner's final checkpoint and
commit come before ``close()``).

Connectivity
------------
Neither class contacts the broker at construction. They connect on first use and retry with
exponential backoff (up to ``reconnect_backoff_max_s``) while the broker is unreachable;
``ready()`` reports the state. Once connected, kafka-python reconnects by itself.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka import errors as kafka_errors
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.net import KafkaNetClient, WakeupNotifier
from kafka.partitioner import DefaultPartitioner, Partitioner, murmur2
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import MemberState

from stream_rnn.io._client import (
    COMPRESSION_TYPES,
    SECURITY_OPTIONS,
    DeliveryError,
    FailedSend,
    GroupSource,
    KafkaRebalance,
    TrackedSink,
    _Job,
    client_options,
)
from stream_rnn.io.base import CommitError, Partition, Record

__all__ = [
    "COMPRESSION_TYPES",
    "SECURITY_OPTIONS",
    "CommitError",
    "DeliveryError",
    "FailedSend",
    "KafkaRebalance",
    "KafkaSink",
    "KafkaSource",
    "KeyHashPartitioner",
    "client_options",
]

log = logging.getLogger(__name__)

_ASSIGNOR_CLASSES = {
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "cooperative-sticky": CooperativeStickyAssignor,
}

_BACKOFF_START_S = 0.5
_LISTENER_TICK_S = 0.5  # the listener re-checks its deadline this often while waiting
# The sink reads its writes' outcomes once it keeps this many (or twice as many as were
# unanswered at the previous reading): reading costs a bounded amount per write, and
# answered writes are let go of soon.
_COLLECT_EVERY = 2048
# Keys whose partition hash the sink's partitioner remembers: the entity keys of the
# outputs repeat, and kafka-python's murmur2 is pure Python (about a sixth of a write).
_PARTITIONER_KEYS = 1 << 16


class TlsHandshakeError(kafka_errors.KafkaConnectionError):
    """No TLS handshake with a bootstrap broker within the connect budget."""


def _bootstrap_addresses(servers: str | Sequence[str]) -> list[tuple[str, int]]:
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    out = []
    for item in items:
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]") or "localhost", int(port or 9092)))
    return out


def tls_preflight(options: Mapping[str, Any], timeout_s: float) -> None:
    """Complete one TLS handshake with a bootstrap broker within ``timeout_s``, or raise
    :class:`TlsHandshakeError` saying why.

    kafka-python waits for a TLS handshake without a deadline: against a plaintext
    listener (a wrong ``security_protocol``) the broker never answers the ClientHello and
    the client would hang in its constructor, past any bootstrap timeout. Does nothing
    unless the protocol is ``SSL`` or ``SASL_SSL``.
    """
    if options.get("security_protocol") not in ("SSL", "SASL_SSL"):
        return
    context = ssl.create_default_context(cafile=options.get("ssl_cafile"))
    context.check_hostname = bool(options.get("ssl_check_hostname", True))
    if not context.check_hostname:
        context.verify_mode = ssl.CERT_NONE if options.get("ssl_cafile") is None \
            else ssl.CERT_REQUIRED
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"),
                                options.get("ssl_password"))
    problems = []
    for host, port in _bootstrap_addresses(options["bootstrap_servers"]):
        try:
            with socket.create_connection((host, port), timeout=timeout_s) as raw:
                raw.settimeout(timeout_s)
                with context.wrap_socket(raw, server_hostname=host):
                    return
        except (OSError, ssl.SSLError) as exc:
            reason = ("no answer (is the listener plaintext?)"
                      if isinstance(exc, TimeoutError | socket.timeout) else str(exc))
            problems.append(f"{host}:{port}: {reason}")
    raise TlsHandshakeError(f"TLS handshake failed within {timeout_s:g} s: "
                            + "; ".join(problems))


def _tp(partition: Partition | TopicPartition) -> TopicPartition:
    return TopicPartition(partition.topic, partition.partition)


class _Backoff:
    """Exponential backoff between connection attempts."""

    def __init__(self, maximum_s: float) -> None:
        self.maximum_s = maximum_s
        self.delay_s = 0.0
        self.next_at = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def wait_s(self) -> float:
        return max(0.0, self.next_at - time.monotonic())

    def failed(self) -> None:
        self.delay_s = min(self.maximum_s, max(_BACKOFF_START_S, self.delay_s * 2))
        self.next_at = time.monotonic() + self.delay_s

    def succeeded(self) -> None:
        self.delay_s = 0.0
        self.next_at = 0.0


def _client_factory(created: list[KafkaNetClient]) -> Callable[..., KafkaNetClient]:
    # kafka-python builds its network client through the ``kafka_client`` option. Keeping a
    # handle on it lets us stop the IO thread of a client whose constructor failed (it would
    # leak otherwise) and read the connection state for ready().
    def factory(**configs: Any) -> KafkaNetClient:
        client = KafkaNetClient(**configs)
        created.append(client)
        return client

    return factory


def _close_clients(created: list[KafkaNetClient]) -> None:
    for client in created:
        try:
            client.close()
        except Exception:  # noqa: BLE001 -- best effort on a half-built client
            log.debug("closing a half-built Kafka client failed", exc_info=True)
    created.clear()


def _open(client_cls: Callable[..., Any], options: dict[str, Any], budget_s: float,
          backoff: _Backoff, role: str) -> tuple[Any, KafkaNetClient | None] | None:
    """Build a ``KafkaConsumer`` or ``KafkaProducer`` within ``budget_s``, with its network
    client; None (logged, and the backoff moved on) while the broker cannot be reached.

    Raises ``KafkaConfigurationError`` for settings kafka-python rejects (never retried).
    """
    created: list[KafkaNetClient] = []
    try:
        tls_preflight(options, budget_s)
        built = client_cls(
            **options,
            bootstrap_timeout_ms=max(1, int(budget_s * 1000)),
            kafka_client=_client_factory(created),
        )
    except kafka_errors.KafkaConfigurationError:
        _close_clients(created)
        raise
    except (kafka_errors.KafkaError, OSError) as exc:
        _close_clients(created)
        backoff.failed()
        log.warning("Kafka %s cannot reach %s (%s); next attempt in %.1f s",
                    role, options["bootstrap_servers"], exc, backoff.delay_s)
        return None
    backoff.succeeded()
    return built, created[-1] if created else None


def _any_broker_connected(client: KafkaNetClient | None) -> bool:
    if client is None:
        return False
    try:
        return any(client.connected(broker.node_id) for broker in client.cluster.brokers())
    except Exception:  # noqa: BLE001 -- a state query only
        return False


def _joining(consumer: KafkaConsumer) -> bool:
    return bool(consumer.group_metadata().state == MemberState.REBALANCING)


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's IO loop; hands every step to the source and awaits it."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._source._hand_over("revoked", revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._source._hand_over("assigned", assigned)

    async def on_partitions_lost(self, lost: Any) -> None:
        await self._source._hand_over("lost", lost)


class KafkaSource(GroupSource):
    """Consumer-group reader of the input topics (and optionally a labels topic).

    Offsets are committed only by :meth:`commit` (auto-commit is off); a group with no
    committed offset starts at the earliest record. Rebalances are handed to the thread that
    calls :meth:`poll` (see the module docstring). Use it from one thread.

    Parameters
    ----------
    security
        TLS/SASL settings, see :func:`client_options`.
    consumer_options
        Other ``KafkaConsumer`` settings (``session_timeout_ms``, ``max_poll_interval_ms``,
        ``fetch_max_bytes``, ``partition_assignment_strategy``, ...). Auto-commit stays off.

    For the other parameters see :class:`~stream_rnn.io._client.GroupSource`.

    Examples
    --------
    Nothing is contacted before the first :meth:`poll`:

    >>> source = KafkaSource(["events"], bootstrap_servers="127.0.0.1:9", group_id="g")
    >>> source.ready(), source.assignment(), source.rebalance_requests()
    (False, frozenset(), [])
    >>> source.close()
    """

    _log = log
    _auto_commit_options = ("enable_auto_commit",)
    _client_errors = (kafka_errors.KafkaError,)
    # kafka-python fetches on its IO thread while a poll() runs: a seek or pause made then
    # may come after records of that poll were fetched. While the listener is parked, no
    # poll() returns records before the step is done and the runner has sought.
    _races_while_parked = False

    def _consumer_settings(self, options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        options.setdefault("partition_assignment_strategy", (_ASSIGNOR_CLASSES[self.assignor],))
        return options, options.get("max_poll_interval_ms", 300_000)

    def _configure(self, settings: dict[str, Any]) -> None:
        self._options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": self.group_id,
            "client_id": self.client_id,
            "auto_offset_reset": "earliest",
            **client_options(self.security or {}),
            **settings,
            "enable_auto_commit": False,
        }
        self._consumer: KafkaConsumer | None = None
        self._client: KafkaNetClient | None = None
        self._notifier: WakeupNotifier | None = None
        self._backoff = _Backoff(self.reconnect_backoff_max_s)
        self._poller: threading.Thread | None = None

    # -- connection ------------------------------------------------------------------

    def connect(self, timeout_s: float | None = None) -> bool:
        """Try to connect now, ignoring the backoff; returns whether the consumer exists.

        Raises ``KafkaConfigurationError`` for settings kafka-python rejects (never retried).
        """
        if self._consumer is not None:
            return True
        if self._closing:
            raise RuntimeError("KafkaSource is closed")
        budget = self.connect_timeout_s if timeout_s is None else timeout_s
        opened = _open(KafkaConsumer, self._options, budget, self._backoff, "consumer")
        if opened is None:
            return False
        consumer, self._client = opened
        # The listener must wait without blocking kafka-python's IO loop; WakeupNotifier is
        # that loop's thread-safe "sleep until notified or timed out" (kafka.net, public).
        self._notifier = WakeupNotifier(consumer._net)  # noqa: SLF001 -- the consumer's loop
        consumer.subscribe(self._subscription, listener=_Listener(self))
        self._consumer = consumer
        self._poller = threading.Thread(
            target=self._poll_forever, name=f"kafka-source-{self.group_id}", daemon=True
        )
        self._poller.start()
        log.info("Kafka consumer connected to %s (group %s)", self.bootstrap_servers,
                 self.group_id)
        return True

    def ready(self) -> bool:
        """True when the consumer exists and holds a live connection to a broker."""
        return self._consumer is not None and _any_broker_connected(self._client)

    # -- the poller thread ----------------------------------------------------------

    def _poll_forever(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        while True:
            with self._cond:
                while not self._closing and (self._job is None or self._job.done):
                    self._cond.wait()
                job = self._job
                if self._closing or job is None:
                    return
            result: dict[TopicPartition, list[Any]] | None = None
            error: BaseException | None = None
            timeout_ms = int(job.timeout_s * 1000)
            try:
                while True:
                    result = consumer.poll(timeout_ms=timeout_ms, max_records=job.max_records)
                    if result or self._closing or not _joining(consumer):
                        break
                    # A group join is in flight. Keep driving it: kafka-python discards a
                    # join that completes while no poll() awaits it and sends a new
                    # JoinGroup (with slow joins and short polls, round after round).
                    timeout_ms = max(timeout_ms, 100)
            except BaseException as exc:  # noqa: BLE001 -- handed to the runner's thread
                error = exc
            with self._cond:
                job.result, job.error, job.done = result, error, True
                self._cond.notify_all()

    # -- the rebalance listener (kafka-python's IO thread) ------------------------------

    async def _hand_over(self, kind: str, partitions: Iterable[TopicPartition]) -> None:
        parts = tuple(sorted(Partition(tp.topic, tp.partition) for tp in partitions))
        consumer = self._consumer
        if not parts or consumer is None or self._closing:
            return  # during close() the runner has made its final checkpoint already
        if kind == "assigned":
            consumer.pause(*map(_tp, parts))  # nothing is fetched before the runner seeks
        notifier = self._notifier
        # Awaited on kafka-python's IO loop, so heartbeats keep flowing meanwhile.
        with self._waiting_for_runner(
            kind, parts, notifier.notify if notifier is not None else None
        ) as request:
            while not request.is_done and not self._closing and notifier is not None:
                remaining = request.deadline - time.monotonic()
                if remaining <= 0:
                    break
                await notifier(min(remaining, _LISTENER_TICK_S))

    # -- the runner's API -----------------------------------------------------------

    def _assignment_done(self, request: KafkaRebalance, parts: set[Partition]) -> None:
        # The listener paused the partitions at assignment, whether or not it still waits.
        resume = [_tp(p) for p in parts if p not in self._paused]
        if resume and self._consumer is not None:
            self._consumer.resume(*resume)

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> dict[Partition, list[Record]]:
        """Records per partition, each list in offset order.

        Returns no records at once while a rebalance step is queued (take it with
        :meth:`rebalance_requests` first), on timeout, and while the broker cannot be
        reached (after waiting for the next connection attempt, up to ``timeout_s``; an
        attempt itself may take ``connect_timeout_s``). While a step taken is not done yet
        it still drives the consumer (the group may go on without this member once the
        step has expired) but returns no records.
        """
        if self._closing:
            raise RuntimeError("KafkaSource is closed")
        self._apply_done()
        if self._has_queued():
            return {}
        deadline = time.monotonic() + timeout_s
        if self._consumer is None:
            if not self._backoff.due():
                time.sleep(min(timeout_s, self._backoff.wait_s()))
            if not self._backoff.due() or not self.connect():
                return {}
        with self._cond:
            # The poller returns within timeout_s unless a group join is in flight: it
            # then drives the join to its end, and the job stays in flight for later polls.
            job = self._take_job(
                lambda: _Job(timeout_s=max(0.0, timeout_s), max_records=max_records), deadline)
        if job is None or self._job_failed(job):
            return {}
        return self._hand_out(job, ((Partition(tp.topic, tp.partition), batch)
                                    for tp, batch in (job.result or {}).items()))

    def _has_queued(self) -> bool:
        with self._cond:
            return bool(self._queued)

    def _retriable(self, error: BaseException) -> bool:
        return isinstance(error, kafka_errors.KafkaError) and bool(error.retriable)

    def _records(self, partition: Partition, batch: list[Any]) -> list[Record]:
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp,
                   tuple(r.headers) if r.headers else ())
            for r in batch
        ]

    def _drop(self, partition: Partition, batch: list[Any], why: str) -> None:
        rewind = self._rewind(partition, batch[0].offset, len(batch), why)
        try:
            self._seek(partition, rewind)
        except ValueError:
            pass  # no longer assigned to the consumer either: the next owner reads them

    def _seek(self, partition: Partition, offset: int) -> None:
        if self._consumer is None:
            raise RuntimeError("not connected to Kafka")
        self._note_change({partition})
        self._consumer.seek(_tp(partition), offset)

    def _pause_client(self, parts: set[Partition]) -> None:
        if self._consumer is not None and parts:
            self._consumer.pause(*map(_tp, parts))

    def _resume_client(self, live: list[Partition]) -> None:
        if self._consumer is not None:
            self._consumer.resume(*map(_tp, live))

    def _commit_refusal(self) -> CommitError | None:
        if self._consumer is None:
            return CommitError("not connected to Kafka", retriable=True)
        return None

    def _commit_offsets(self, offsets: Mapping[Partition, int], timeout_s: float) -> None:
        consumer = self._consumer
        if consumer is None:  # refused by _commit_refusal already
            raise CommitError("not connected to Kafka", retriable=True)
        payload = {_tp(p): OffsetAndMetadata(int(off), "", -1) for p, off in offsets.items()}
        try:
            consumer.commit(payload, timeout_ms=int(timeout_s * 1000))
        except kafka_errors.KafkaError as exc:
            raise CommitError(f"commit failed: {exc}", retriable=exc.retriable) from exc

    def committed(self, partition: Partition, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset for ``partition`` (None when there is none)."""
        if self._consumer is None:
            raise RuntimeError("not connected to Kafka")
        offset = self._consumer.committed(_tp(partition), timeout_ms=int(timeout_s * 1000))
        return None if offset is None else int(offset)

    def end_offsets(
        self, partitions: Iterable[Partition] | None = None, timeout_s: float = 5.0
    ) -> dict[Partition, int]:
        """Log-end offsets (the offset the next write gets), asked of the broker."""
        if self._consumer is None:
            raise RuntimeError("not connected to Kafka")
        parts = sorted(self._assigned if partitions is None else partitions)
        if not parts:
            return {}
        ends = self._consumer.end_offsets([_tp(p) for p in parts],
                                          timeout_ms=int(timeout_s * 1000))
        return {Partition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def _highwaters(self) -> dict[Partition, int | None]:
        return {p: self._highwater(p) for p in sorted(self._assigned)}

    def _highwater(self, partition: Partition) -> int | None:
        if self._consumer is None:
            return None
        try:
            high = self._consumer.highwater(_tp(partition))
        except kafka_errors.IllegalStateError:
            return None
        return None if high is None else int(high)

    def close(self, timeout_s: float = 10.0) -> None:
        """Leave the group and release the client; commits nothing. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._notifier is not None:
            self._notifier.notify()
        poller, consumer = self._poller, self._consumer
        if poller is not None:
            poller.join(timeout_s)
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
            except Exception:  # noqa: BLE001 -- closing must not fail the shutdown
                log.warning("closing the Kafka consumer failed", exc_info=True)
        if poller is not None:
            poller.join(timeout_s)
        self._consumer = self._client = self._poller = None
        self._forget()


def _close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    # KafkaProducer.close() gives up, leaving its sender thread running, when the flush it
    # starts with times out; then stop the sender without sending and close again.
    try:
        producer.close(timeout=timeout_s)
        return
    except kafka_errors.KafkaTimeoutError:
        pass
    except Exception:  # noqa: BLE001 -- closing must not fail the caller
        log.warning("closing the Kafka producer failed", exc_info=True)
        return
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(5.0)
    try:
        producer.close(timeout=0)
    except Exception:  # noqa: BLE001
        log.warning("closing the Kafka producer failed", exc_info=True)


class KeyHashPartitioner(Partitioner):  # type: ignore[misc]
    """kafka-python's default partitioner, remembering the hash of each key it has seen.

    A key goes to the partition the Java client and kafka-python pick: the positive murmur2
    hash of its bytes modulo the partition count, indexing the sorted partition ids (the
    hash is computed once per key rather than once per record, up to ``max_keys`` keys,
    after which the memory starts over). A record without a key goes to a random partition
    whose leader is known, as with :class:`kafka.partitioner.DefaultPartitioner`.
    """

    def __init__(self, max_keys: int = _PARTITIONER_KEYS) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}
        self._keyless = DefaultPartitioner()

    def partition(self, topic: str, key: Any, serialized_key: Any, value: Any,
                  serialized_value: Any, cluster: Any) -> int:
        if serialized_key is None:
            return int(self._keyless.partition(topic, key, serialized_key, value,
                                               serialized_value, cluster))
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        if type(serialized_key) is not bytes:  # bytearray, memoryview: not hashable
            return sorted(partitions)[(murmur2(serialized_key) & 0x7FFFFFFF) % len(partitions)]
        hashes = self._hashes
        positive = hashes.get(serialized_key)
        if positive is None:
            positive = murmur2(serialized_key) & 0x7FFFFFFF
            if len(hashes) >= self.max_keys:
                hashes.clear()
            hashes[serialized_key] = positive
        return sorted(partitions)[positive % len(partitions)]


class KafkaSink(TrackedSink):
    """Producer of outputs and dead letters; every write the broker does not acknowledge is
    reported.

    Writes wait for all in-sync replicas (``acks="all"``) and the producer is idempotent, so
    its retries neither lose nor duplicate records. :meth:`send` does not raise for broker
    trouble: a write that cannot be made becomes a :class:`FailedSend`, and :meth:`flush`
    raises :class:`DeliveryError` (a :class:`~stream_rnn.io.base.SinkError`) listing them, so
    the runner never commits past an output that was not acknowledged. :meth:`failures` shows
    them without raising.

    Each write's future is kept (with its context) and read at :meth:`flush`,
    :meth:`check_delivery`, :meth:`pending`, :meth:`failures` and :meth:`ready`, and every
    few thousand writes to let go of the answered ones: no callback per write runs on
    kafka-python's IO thread.
    Keys are partitioned by :class:`KeyHashPartitioner` (the partitions kafka-python's
    default picks) unless ``producer_options`` names another ``partitioner``.

    Parameters
    ----------
    producer_options
        Other ``KafkaProducer`` settings (``linger_ms``, ``batch_size``, ...).
    max_block_s
        Longest :meth:`send` may block (buffer full, topic metadata unknown).

    For the other parameters see :class:`~stream_rnn.io._client.TrackedSink`.

    Examples
    --------
    >>> sink = KafkaSink(bootstrap_servers="127.0.0.1:9", compression_type="zstd")
    >>> sink.ready(), sink.pending(), sink.failures()
    (False, 0, [])
    >>> sink.close()
    """

    _log = log
    _write_errors = (kafka_errors.KafkaError,)
    _replace_reason = "failed or stuck writes"

    def _configure(self, producer_options: dict[str, Any]) -> None:
        options = producer_options
        delivery_ms = int(self.delivery_timeout_s * 1000)
        linger_ms = int(options.pop("linger_ms", 5))
        self._options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "compression_type": self.compression_type,
            "linger_ms": linger_ms,
            # kafka-python requires delivery_timeout_ms >= linger_ms + request_timeout_ms.
            "request_timeout_ms": max(1, min(30_000, delivery_ms - linger_ms)),
            "partitioner": KeyHashPartitioner(),
            **client_options(self.security or {}),
            **options,
            "acks": "all",
            "enable_idempotence": True,
            "delivery_timeout_ms": delivery_ms,
            "max_block_ms": int(self.max_block_s * 1000),
        }
        self._producer: KafkaProducer | None = None
        self._client: KafkaNetClient | None = None
        self._backoff = _Backoff(self.reconnect_backoff_max_s)
        # (future, topic, key, context, monotonic time sent) of every write not yet read,
        # in the order sent: appended by send(), taken from the left by _collect().
        self._writes: deque[tuple[FutureRecordMetadata, str, bytes | None, Any, float]] = \
            deque()
        self._collect_at = _COLLECT_EVERY

    def connect(self, timeout_s: float | None = None) -> bool:
        """Try to connect now, ignoring the backoff; returns whether the producer exists.

        Raises ``KafkaConfigurationError`` for settings kafka-python rejects (never retried).
        """
        if self._producer is not None:
            return True
        if self._closed:
            raise RuntimeError("KafkaSink is closed")
        budget = self.connect_timeout_s if timeout_s is None else timeout_s
        opened = _open(KafkaProducer, self._options, budget, self._backoff, "producer")
        if opened is None:
            return False
        producer, self._client = opened
        self._producer = producer
        log.info("Kafka producer connected to %s", self.bootstrap_servers)
        return True

    def ready(self) -> bool:
        """True when the producer exists and its latest write outcome was an acknowledgement
        (or none failed yet), or it holds a live broker connection."""
        if self._producer is None:
            return False
        self._collect()
        with self._lock:
            healthy = self._last_ack > self._last_failure
        return healthy or _any_broker_connected(self._client)

    # The producer connects on first use (with backoff), so a write may find none.
    def _reconnect(self) -> KafkaProducer | None:
        if not (self._backoff.due() and self.connect()):
            return None
        producer = self._producer
        if producer is None:  # closed concurrently
            raise RuntimeError("KafkaSink is closed")
        return producer

    def _unreachable(self) -> BaseException:
        return kafka_errors.KafkaConnectionError("not connected")

    def _write(self, producer: KafkaProducer, topic: str, key: bytes | None, value: bytes,
               headers: Sequence[tuple[str, bytes]], context: Any) -> None:
        try:
            future = producer.send(topic, value=value, key=key, headers=list(headers))
        except self._write_errors as exc:
            self._fail(topic, key, context, exc)
            return
        writes = self._writes
        writes.append((future, topic, key, context, time.monotonic()))
        if len(writes) >= self._collect_at:
            self._collect()

    def _collect(self) -> None:
        failed: list[tuple[str, bytes | None, Any, BaseException]] = []
        latest_acked = False
        with self._lock:
            writes = self._writes
            unanswered = []
            # Taken from the left, so writes that send() appends meanwhile are kept.
            for _ in range(len(writes)):
                entry = writes.popleft()
                future = entry[0]
                if not future.is_done:
                    unanswered.append(entry)
                    continue
                error = future.exception
                latest_acked = error is None
                if error is not None:
                    failed.append((entry[1], entry[2], entry[3], error))
            writes.extendleft(reversed(unanswered))
            self._pending = len(writes)
            self._pending_since = writes[0][4] if writes else None
            self._collect_at = max(_COLLECT_EVERY, 2 * len(unanswered))
        for topic, key, context, error in failed:
            self._fail(topic, key, context, error)
        if latest_acked:  # the latest write answered (in the order sent) was acknowledged
            with self._lock:
                self._last_ack = time.monotonic()

    def _replace_producer(self) -> None:
        with self._lock:
            self._writes.clear()  # counted as unacknowledged by the flush that replaces it
        super()._replace_producer()

    def _flush_producer(self, producer: KafkaProducer, timeout_s: float) -> None:
        try:
            producer.flush(timeout=timeout_s)
        except kafka_errors.KafkaTimeoutError:
            pass  # what is left unanswered is counted by the caller

    def _must_replace(self, failures: list[FailedSend]) -> bool:
        # A transient failure (timeout, lost connection) is retriable: kafka-python gets
        # over it by itself.
        return any(not getattr(f.error, "retriable", False) for f in failures)

    def _discard_producer(self, producer: KafkaProducer) -> None:
        self._client = None
        _close_producer(producer, 0.0)

    def _release_producer(self, producer: KafkaProducer, timeout_s: float) -> None:
        self._client = None
        _close_producer(producer, timeout_s)
