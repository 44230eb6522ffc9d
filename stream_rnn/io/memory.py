"""In-memory source and sink: the runner's test doubles and the engine of in-process replay.

``MemorySource`` holds topics as lists of records per partition and behaves like a
consumer of one group: it tracks positions and commits, and can simulate rebalances.
``MemorySink`` appends what it is sent, and can be told to fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from stream_rnn.io.base import Partition, RebalanceRequest, Record, Sink, SinkError, Source

__all__ = ["MemorySource", "MemorySink"]


class MemorySource(Source):
    """Topics in memory, consumed as one group member that owns every partition.

    Examples
    --------
    >>> src = MemorySource()
    >>> src.append("events", 0, b"k", b'{"a": 1}')
    0
    >>> src.assign_all()
    >>> [r.offset for r in src.poll(0.0, 10)[Partition("events", 0)]]
    [0]
    """

    def __init__(self) -> None:
        self.topics: dict[Partition, list[Record]] = {}
        self.positions: dict[Partition, int] = {}
        self.committed: dict[Partition, int] = {}
        self.paused: set[Partition] = set()
        self._requests: list[RebalanceRequest] = []
        self.assigned: set[Partition] = set()

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
               timestamp_ms: int | None = None,
               headers: tuple[tuple[str, bytes], ...] = ()) -> int:
        """Add a record; returns its offset."""
        records = self.topics.setdefault(Partition(topic, partition), [])
        offset = len(records)
        records.append(Record(topic, partition, offset, key, value, timestamp_ms, headers))
        return offset

    def assign_all(self) -> None:
        """Assign every known partition now (and queue the request the runner handles)."""
        self.request("assigned", list(self.topics))

    def request(self, kind: str, partitions: Iterable[Partition]) -> RebalanceRequest:
        """Queue a rebalance request of ``kind`` for ``partitions``."""
        parts = tuple(partitions)
        req = RebalanceRequest(kind, parts)
        if kind == "assigned":
            for p in parts:
                self.assigned.add(p)
                self.positions.setdefault(p, self.committed.get(p, 0))
        else:
            self.assigned.difference_update(parts)
        self._requests.append(req)
        return req

    def poll(self, timeout_s: float, max_records: int) -> dict[Partition, list[Record]]:
        out: dict[Partition, list[Record]] = {}
        budget = max_records
        for p in sorted(self.assigned):
            if p in self.paused or budget <= 0:
                continue
            records = self.topics.get(p, [])
            pos = self.positions.get(p, 0)
            batch = records[pos : pos + budget]
            if batch:
                out[p] = batch
                self.positions[p] = pos + len(batch)
                budget -= len(batch)
        return out

    def rebalance_requests(self) -> list[RebalanceRequest]:
        pending, self._requests = self._requests, []
        return pending

    def seek(self, partition: Partition, offset: int) -> None:
        self.positions[partition] = offset

    def commit(self, offsets: dict[Partition, int]) -> None:
        self.committed.update(offsets)

    def pause(self, partitions: Iterable[Partition]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: Iterable[Partition]) -> None:
        self.paused.difference_update(partitions)

    def lag(self) -> dict[Partition, int]:
        return {p: len(self.topics.get(p, [])) - self.positions.get(p, 0)
                for p in self.assigned}

    def exhausted(self) -> bool:
        """True when every assigned, unpaused partition has been read to its end."""
        return all(self.positions.get(p, 0) >= len(self.topics.get(p, []))
                   for p in self.assigned if p not in self.paused)


class MemorySink(Sink):
    """Collects sent records per topic; ``fail_topics`` makes sends to them fail.

    A record counts as acknowledged (and appears in ``records``) only when :meth:`flush`
    runs, so a runner that does not flush leaves its outputs unacknowledged, as a broker
    that has not answered yet would. A failed record is reported by the next
    :meth:`check_delivery` or :meth:`flush`, whichever comes first. ``flushes`` counts the
    calls to :meth:`flush`.

    Examples
    --------
    >>> sink = MemorySink()
    >>> sink.send("scores", b"k", b"1")
    >>> sink.check_delivery(), sink.records
    (1, {})
    >>> sink.flush(1.0)
    >>> sink.check_delivery(), sink.records["scores"], sink.flushes
    (0, [(b'k', b'1', ())], 1)
    """

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[bytes | None, bytes, tuple]]] = {}
        self._pending: list[tuple[str, bytes | None, bytes, tuple]] = []
        self.fail_topics: set[str] = set()
        self.flushes = 0

    def send(self, topic: str, key: bytes | None, value: bytes,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self._pending.append((topic, key, value, tuple(headers)))

    def check_delivery(self) -> int:
        failed = [p for p in self._pending if p[0] in self.fail_topics]
        if failed:
            self._pending = [p for p in self._pending if p[0] not in self.fail_topics]
            raise _failure(failed)  # the others stay on their way
        return len(self._pending)

    def flush(self, timeout_s: float) -> None:
        self.flushes += 1
        pending, self._pending = self._pending, []
        failed = [p for p in pending if p[0] in self.fail_topics]
        for topic, key, value, headers in pending:
            if topic not in self.fail_topics:
                self.records.setdefault(topic, []).append((key, value, headers))
        if failed:
            raise _failure(failed)


def _failure(failed: list[tuple[str, bytes | None, bytes, tuple]]) -> SinkError:
    topics = sorted({f[0] for f in failed})
    return SinkError(f"{len(failed)} records to {topics} failed", failed_topics=topics)
