"""The contracts between the runner and the outside world: sources of records, sinks for
outputs, and rebalance requests handed from a client's I/O thread to the runner.

The Kafka adapter, the scenario replay and the in-memory test doubles all implement these,
so the runner never knows which one it drives.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "CommitError",
    "Partition",
    "RebalanceRequest",
    "Record",
    "Sink",
    "SinkError",
    "Source",
]


class Partition(NamedTuple):
    """A topic partition, the unit of ownership and of checkpointing."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}"


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def src(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class RebalanceRequest:
    """Partitions assigned, revoked or lost, waiting for the runner to act.

    The client's I/O thread creates it and waits (without blocking its loop) until the
    runner calls :meth:`done`, so a revoked partition is checkpointed and committed before
    the group hands it to another instance.
    """

    kind: str  # "assigned" | "revoked" | "lost"
    partitions: tuple[Partition, ...]
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    error: BaseException | None = None

    def done(self, error: BaseException | None = None) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def is_done(self) -> bool:
        return self._done.is_set()


class SinkError(RuntimeError):
    """Records could not be delivered; nothing past them may be committed.

    ``failed_topics`` names the topics of the writes known to have failed and
    ``unacknowledged`` counts the writes whose outcome is still unknown (they may be lost
    too). An error that says neither means any write since the last successful
    :meth:`Sink.flush` may be lost.
    """

    def __init__(self, message: str, *, failed_topics: Iterable[str] = (),
                 unacknowledged: int = 0) -> None:
        super().__init__(message)
        self.failed_topics = frozenset(failed_topics)
        self.unacknowledged = unacknowledged


class CommitError(RuntimeError):
    """An offset commit was not confirmed; nothing may be assumed committed.

    ``retriable`` is True for transient causes (timeout, coordinator moving) and False when
    the group has moved on (another generation or member owns the partitions).
    """

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class Source(ABC):
    """Where records come from."""

    @abstractmethod
    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        """Records per partition, each list in offset order (may be empty)."""

    @abstractmethod
    def rebalance_requests(self) -> list[RebalanceRequest]:
        """Pending requests, oldest first; the runner calls ``done()`` on each."""

    @abstractmethod
    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on."""

    @abstractmethod
    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit the next offsets to read, synchronously."""

    @abstractmethod
    def pause(self, partitions: Iterable[Partition]) -> None:
        """Stop fetching from ``partitions`` until resumed."""

    @abstractmethod
    def resume(self, partitions: Iterable[Partition]) -> None:
        """Fetch from ``partitions`` again."""

    def lag(self) -> dict[Partition, int]:
        """Records left to read per assigned partition (empty when unknown)."""
        return {}

    def ready(self) -> bool:
        """True when connected and consuming."""
        return True

    def close(self) -> None:  # noqa: B027 -- in-memory sources hold nothing to release
        """Release the client."""


class Sink(ABC):
    """Where outputs go.

    Writes are pipelined: :meth:`send` queues, the client delivers in the background,
    :meth:`check_delivery` takes the outcomes known so far without waiting, and only
    :meth:`flush` waits for every write to be answered.
    """

    @abstractmethod
    def send(self, topic: str, key: bytes | None, value: bytes,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Queue one record."""

    @abstractmethod
    def check_delivery(self) -> int:
        """Without waiting: the number of queued records not acknowledged yet; raise
        SinkError (once) if any record failed since the last flush or check."""

    @abstractmethod
    def flush(self, timeout_s: float) -> None:
        """Block until every queued record is acknowledged; raise SinkError if any failed."""

    def close(self) -> None:  # noqa: B027 -- in-memory sinks hold nothing to release
        """Release the client."""
