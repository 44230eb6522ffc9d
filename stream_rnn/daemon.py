"""The runner: poll -> parse -> score and learn per partition -> outputs, with checkpoints.

This is the only module that wires sources, sinks, task models, checkpoints and metrics
together. One loop, one thread: rebalance requests from the client's I/O thread are
queued and handled here between batches, so no model is ever touched concurrently.

Delivery, per partition (a "task", as in Kafka Streams):

1. outputs and dead letters of processed records are sent, then flushed and acknowledged;
2. the partition's checkpoint is written atomically (weights, optimizer, keyed state,
   scorer state and the next offset to read);
3. only then are offsets committed.

Sends are pipelined: the client delivers them in the background while the runner goes on
polling, and after each poll the runner only takes the outcomes known so far
(``Sink.check_delivery``). It waits for every acknowledgement (``Sink.flush``) only where
the order above needs it: before a checkpoint, on revocation and at a stop; and when more
than ``[limits] max_unacked_outputs`` writes are unanswered. A partition whose dead letter
could not be written is paused (and checkpointed no further) until it is written. A failed
output, or one whose fate is unknown, cannot be resent as it was (the model has moved on):
every partition goes back to its checkpoint and reads again from there, as after a crash,
so the output is scored again rather than lost.

On assignment a partition restores its checkpoint and seeks to its offset (or starts
fresh). On revocation it is checkpointed and committed before it is released. Lost
partitions are dropped without committing. After a crash, records since the last
checkpoint are processed again (at-least-once; each output names its ``src`` so
duplicates are detectable) and, because processing is deterministic, the state ends
where an uninterrupted run would. A clean stop checkpoints everything: no duplicates.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_rnn.config import Config
from stream_rnn.io.base import (
    CommitError,
    Partition,
    RebalanceRequest,
    Record,
    Sink,
    SinkError,
    Source,
)
from stream_rnn.io.events import (
    Event,
    InvalidEvent,
    dead_letter_headers,
    encode_score,
    parse_event,
    parse_label,
)
from stream_rnn.metrics import Metrics, observe_many
from stream_rnn.state.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from stream_rnn.tasks import NETWORK_FIELDS, TASKS, Scored, check_params, make_task

__all__ = ["Runner", "PartitionTask", "checkpoint_name", "freeze_startup_heap"]

log = logging.getLogger("stream_rnn.daemon")

#: Dead-letter reasons the runner adds to the parser's closed set.
UNKNOWN_FEATURE = "unknown_feature"


#: Whether this process has moved its start-up heap out of the collector's sight.
_heap_frozen = False

#: Net allocations of container objects between two collections of the youngest
#: generation once the start-up heap is frozen (Python's default is 700).
GC_YOUNG_THRESHOLD = 100_000


def freeze_startup_heap() -> bool:
    """Collect garbage, then exclude every object alive now from later collections
    (:func:`gc.freeze`); once per process. Returns False if it was done already.

    The daemon's heap after start-up is mostly modules and compiled kernels (NumPy, Numba,
    LLVM: some 200,000 objects that live as long as the process). Each full collection
    walks them all: about 100 ms on a small machine, a pause every in-flight event waits
    out, twice per 50,000 events. Frozen, a full collection takes a millisecond. Objects
    frozen here are still freed by reference counting when released; only a reference
    cycle among them would never be reclaimed, hence once, after the first batch (the
    kernels compile or load then), and after a collection.

    It also raises the youngest generation's threshold to :data:`GC_YOUNG_THRESHOLD`. A
    poll batch keeps a few objects per event alive until it is answered (records, events,
    outputs: some 20,000 for 2,000 events), so with the default threshold of 700 the
    collector runs dozens of times per batch, promoting them and walking them again in the
    older generations, together with whatever else the process holds. With a whole stream
    held in memory (an in-memory source of 50,000 records) that cost 2-4 us per event;
    against Kafka, where only the batch is alive, the best runs show no measurable
    difference (18.0 vs 18.1 us of CPU per event). These objects hold no reference cycles
    and are freed by reference counting when the batch is done, so the count falls back
    after each batch; a cycle made while serving is still collected, after 100,000 net
    allocations instead of 700.
    """
    global _heap_frozen
    if _heap_frozen:
        return False
    _heap_frozen = True
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), older, oldest)
    return True


def checkpoint_name(partition: Partition) -> str:
    """File stem of a partition's checkpoint (topics may contain dots and dashes)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in partition.topic)
    return f"{safe}-{partition.partition}"


@dataclass
class PartitionTask:
    """One owned input partition: its model and where it stands."""

    partition: Partition
    model: Any
    next_offset: int = 0
    events_since_checkpoint: int = 0
    last_checkpoint: float = field(default_factory=time.monotonic)
    #: Dead letters sent since the last successful flush: no checkpoint may cover them
    #: before they are acknowledged.
    undelivered: list[tuple[str, bytes | None, bytes, tuple]] = field(default_factory=list)
    #: A dead letter failed: the partition is paused until ``undelivered`` is written again.
    held: bool = False


class Runner:
    """Drives a source through per-partition task models into a sink.

    Parameters
    ----------
    config
        The daemon's configuration.
    source, sink
        Where records come from and outputs go (Kafka, a replay, or in-memory doubles).
    metrics
        Metrics to update (see :class:`~stream_rnn.metrics.Metrics`).
    clock
        Wall clock in seconds (injectable for tests of event-time lag).
    """

    def __init__(self, config: Config, source: Source, sink: Sink, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.source = source
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.tasks: dict[Partition, PartitionTask] = {}
        self._stop = False
        self._params = self._model_params()
        # Which partition saw an event id recently, so a delayed label finds its model.
        self._event_owner: OrderedDict[str, Partition] = OrderedDict()
        self._live_keys = set(config.metrics.live_keys)
        self._backoff = 0.0  # monotonic time before which a failed write is not retried
        self._failures_in_row = 0
        # Partitions paused after going back to their checkpoint, until the backoff ends.
        self._rewound: set[Partition] = set()
        # Dead letters of bad labels sent since the last successful flush, and whether one
        # failed: then the labels partitions pause until they are written. (Labels have no
        # checkpoint to go back to: the letters themselves are kept.)
        self._label_letters: list[tuple[str, bytes | None, bytes, tuple]] = []
        self._labels_held = False
        self._labels_owned: set[Partition] = set()

    # ------------------------------------------------------------------ lifecycle

    def _model_params(self) -> dict[str, Any]:
        """The task model's arguments: the network fields of ``[model]`` and the task's
        own parameters (``[model.params]``), checked now rather than at the first
        assignment."""
        m = self.config.model
        params = {name: getattr(m, name) for name in NETWORK_FIELDS}
        params["params"] = dict(m.params)
        check_params(m.task, params, self.config.events.key_fields)
        return params

    def stop(self) -> None:
        """Ask the loop to finish its batch, checkpoint, commit and return."""
        self._stop = True

    def run(self, max_idle_polls: int | None = None, until: Callable[[], bool] | None = None
            ) -> None:
        """Loop until :meth:`stop`, ``until()`` is true, or ``max_idle_polls`` empty polls
        in a row; then checkpoint every partition and commit."""
        idle = 0
        try:
            while not self._stop and not (until is not None and until()):
                worked = self.step()
                if worked and not _heap_frozen:
                    freeze_startup_heap()
                idle = 0 if worked else idle + 1
                if max_idle_polls is not None and idle >= max_idle_polls:
                    break
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Flush, checkpoint and commit every partition (the clean-stop path)."""
        for request in self.source.rebalance_requests():
            self._handle_rebalance(request)
        try:
            self._flush()
            self._checkpoint_and_commit(list(self.tasks.values()))
        except SinkError as exc:
            log.error("final flush failed, not committing: %s", exc)

    # ------------------------------------------------------------------ one iteration

    def step(self) -> bool:
        """Handle rebalances, poll once, process, maybe checkpoint. Returns True if any
        record was processed."""
        for request in self.source.rebalance_requests():
            self._handle_rebalance(request)
        self._retry_dead_letters()
        self._resume_rewound()
        self.metrics.ready.set(1.0 if self.source.ready() else 0.0)
        batches = self.source.poll(self.config.limits.poll_timeout_seconds,
                                   self.config.limits.max_poll_records)
        polled_at = time.monotonic()
        n = 0
        labels_topic = self.config.kafka.labels_topic
        labels: list[Record] = []
        for partition, records in batches.items():
            if not records:
                continue
            n += len(records)
            if labels_topic is not None and partition.topic == labels_topic:
                labels.extend(records)
                continue
            task = self.tasks.get(partition)
            if task is None:
                # Records of a partition we no longer own: the new owner will read them.
                continue
            self._process(task, records, polled_at)
        if labels:
            # After the events of the same poll: a label may follow its event closely.
            self._apply_labels(labels)
        # Also when idle: outcomes arrive after the poll that sent the writes.
        if not self._check_delivery():
            return n > 0
        # Also when idle: the time cadence must cover the tail of a quiet stream.
        self._maybe_checkpoint()
        self._update_lag()
        return n > 0

    # ------------------------------------------------------------------ processing

    def _process(self, task: PartitionTask, records: list[Record], polled_at: float) -> None:
        cfg = self.config
        m = self.metrics
        topic = task.partition.topic
        m.events_consumed.labels(topic).inc(len(records))
        key_fields = cfg.events.key_fields
        max_bytes = cfg.events.max_bytes
        check = getattr(task.model, "check", None)
        next_offset = task.next_offset
        valid: list[tuple[Record, Event]] = []
        for record in records:
            if record.offset < next_offset:
                continue  # already covered by the restored checkpoint
            try:
                event = parse_event(record.value, message_key=record.key,
                                    key_fields=key_fields, max_bytes=max_bytes,
                                    src=record.src)
            except InvalidEvent as exc:
                self._dead_letter(task, record, exc)
                continue
            problem = check(event) if check is not None else None
            if problem is not None:
                reason = getattr(problem, "reason", UNKNOWN_FEATURE)
                self._dead_letter(task, record, InvalidEvent(reason, str(problem)))
                continue
            valid.append((record, event))
        if valid:
            events = [e for _, e in valid]
            scored = task.model.process(events)
            if not task.model.is_finite():
                # The batch was answered by a broken model: answer it again from the last
                # good one (which then learns it), rather than emit garbage.
                self._rollback(task)
                scored = task.model.process(events)
                if not task.model.is_finite():
                    self._rollback(task)
                scored = [out if math.isfinite(out.score) else Scored(0.0, {})
                          for out in scored]
            self._emit(task, valid, scored)
        task.next_offset = records[-1].offset + 1
        task.events_since_checkpoint += len(records)
        latency = time.monotonic() - polled_at
        m.processing_latency.observe(latency)

    def _emit(self, task: PartitionTask, valid: list[tuple[Record, Event]],
              scored: list[Scored]) -> None:
        """Send one output record per scored event and account for them."""
        cfg = self.config
        m = self.metrics
        topic = task.partition.topic
        threshold = cfg.scoring.threshold
        stats = task.model.stats()
        version = int(stats.get("version", 0))
        output_topic = cfg.kafka.output_topic
        send = self.sink.send
        key_fields = cfg.events.key_fields
        # The usual layout, one key field, skips the per-event loop over the key fields.
        single_key = key_fields[0] if len(key_fields) == 1 else None
        scores = [out.score for out in scored]
        flags = 0
        for (record, event), out, score in zip(valid, scored, scores, strict=True):
            flag = score > threshold
            flags += flag
            body = {"src": event.src, "ts": event.ts, "score": score, "flag": flag,
                    "model_version": version}
            if single_key is not None:
                body[single_key] = event.keys[0]
            else:
                for name, value in zip(key_fields, event.keys, strict=True):
                    body[name] = value
            if event.event_id is not None:
                body["id"] = event.event_id
                self._remember_owner(event.event_id, task.partition)
            if out.prediction:
                body["prediction"] = out.prediction
            if out.spread:
                body["spread"] = out.spread
            send(output_topic, record.key, encode_score(body))
        observe_many(m.score, scores)
        if self._live_keys:
            self._publish_live_scores(valid, scores)
        m.flags.inc(flags)
        m.events_scored.labels(topic).inc(len(valid))
        last = valid[-1][1]
        m.event_time_lag.labels(topic, str(task.partition.partition)).set(
            max(0.0, self.clock() - last.ts))
        self._publish_model_stats(task, stats)
        self._publish_live_predictions(task)

    def _publish_live_scores(self, valid: list[tuple[Record, Event]],
                             scores: list[float]) -> None:
        m = self.metrics
        live = self._live_keys
        for (_, event), score in zip(valid, scores, strict=True):
            key = "|".join(event.keys)
            if key in live:
                m.live_score.labels(key).set(score)
                for feature, value in event.features.items():
                    m.live_actual.labels(key, feature).set(value)

    def _publish_model_stats(self, task: PartitionTask, stats: dict[str, float]) -> None:
        p = task.partition
        labels = (p.topic, str(p.partition))
        m = self.metrics
        m.keys_in_state.labels(*labels).set(stats["keys"])
        m.model_version.labels(*labels).set(stats["version"])
        if math.isfinite(stats["loss"]):
            m.training_loss.labels(*labels).set(stats["loss"])
        if math.isfinite(stats["grad_norm"]):
            m.gradient_norm.labels(*labels).set(stats["grad_norm"])
        seen_evictions = getattr(task, "_evictions_seen", 0)
        if stats["evictions"] > seen_evictions:
            m.evictions.inc(stats["evictions"] - seen_evictions)
        task._evictions_seen = stats["evictions"]
        seen_skips = getattr(task, "_skips_seen", 0)
        if stats["skipped"] > seen_skips:
            m.skipped_updates.inc(stats["skipped"] - seen_skips)
        task._skips_seen = stats["skipped"]

    def _publish_live_predictions(self, task: PartitionTask) -> None:
        if not self._live_keys or not hasattr(task.model, "forecast"):
            return
        for key in self._live_keys:
            for feature, value in task.model.forecast(key).items():
                self.metrics.live_prediction.labels(key, feature).set(value)

    def _remember_owner(self, event_id: str, partition: Partition) -> None:
        owners = self._event_owner
        owners[event_id] = partition
        if len(owners) > self.config.state.max_keys_per_partition:
            owners.popitem(last=False)

    def _apply_labels(self, records: list[Record]) -> None:
        cfg = self.config
        for record in records:
            try:
                event_id, label = parse_label(record.value, max_bytes=cfg.events.max_bytes)
            except InvalidEvent as exc:
                item = (cfg.kafka.dlq_topic, record.key, record.value or b"",
                        tuple(dead_letter_headers(exc, record.src)))
                self._label_letters.append(item)
                self.sink.send(*item)
                self.metrics.events_dead_lettered.labels(exc.reason).inc()
                continue
            owner = self._event_owner.get(event_id)
            task = self.tasks.get(owner) if owner is not None else None
            if task is not None:
                applied = task.model.apply_label(event_id, label)
            else:
                # The id is older than the owner index, or its event was scored before a
                # restart or rebalance: whichever partition's model still waits for it.
                applied = any(t.model.apply_label(event_id, label)
                              for t in self.tasks.values())
            if applied:
                self.metrics.labels_applied.inc()

    # ------------------------------------------------------------------ dead letters

    def _dead_letter(self, task: PartitionTask, record: Record, error: InvalidEvent) -> None:
        item = (self.config.kafka.dlq_topic, record.key, record.value or b"",
                tuple(dead_letter_headers(error, record.src)))
        task.undelivered.append(item)
        self.sink.send(*item)
        self.metrics.events_dead_lettered.labels(error.reason).inc()

    def _retry_dead_letters(self) -> None:
        held = [t for t in self.tasks.values() if t.held]
        labels_held = self._labels_held
        if not (held or labels_held) or time.monotonic() < self._backoff:
            return
        for task in held:
            for item in task.undelivered:
                self.sink.send(*item)
        letters = list(self._label_letters) if labels_held else []
        for item in letters:
            self.sink.send(*item)
        try:
            self._flush()
        except SinkError as exc:
            self._on_sink_failure(exc)
            return
        for task in held:
            task.undelivered.clear()
            task.held = False
        resumed = [t.partition for t in held]
        if labels_held:
            self._label_letters.clear()
            self._labels_held = False
            resumed += self._labels_partitions()
        self.source.resume(resumed)

    def _labels_partitions(self) -> list[Partition]:
        return sorted(self._labels_owned)

    # ------------------------------------------------------------------ delivery

    def _check_delivery(self) -> bool:
        """Take the write outcomes known now, and wait for all of them if too many are
        unanswered. Returns False after a failure (handled: nothing is committed now)."""
        try:
            if self.sink.check_delivery() > self.config.limits.max_unacked_outputs:
                self._flush()
        except SinkError as exc:
            self._on_sink_failure(exc)
            return False
        return True

    def _flush(self) -> None:
        """Wait until every write so far is acknowledged (raises SinkError otherwise)."""
        self.sink.flush(self.config.limits.shutdown_timeout_seconds)
        self._failures_in_row = 0
        for task in self.tasks.values():
            if not task.held:  # its failed dead letters are not among the acknowledged
                task.undelivered.clear()
        if not self._labels_held:
            self._label_letters.clear()

    def _on_sink_failure(self, exc: SinkError) -> None:
        """Writes failed: commit nothing past them, and wait a backoff before trying again.

        Failed dead letters are kept by their partitions: those with any are paused until
        they are written. Any other write that failed or may be lost is an output: every
        partition goes back to its checkpoint (see :meth:`_rewind`).
        """
        log.warning("writes not acknowledged: %s", exc)
        self.metrics.ready.set(0.0)
        self._failures_in_row += 1
        delay = min(self.config.limits.max_backoff_seconds,
                    0.5 * 2.0 ** min(self._failures_in_row - 1, 16))
        self._backoff = time.monotonic() + delay
        if self._label_letters and not self._labels_held:
            # Whichever write failed, these may be among the lost: keep them, and read no
            # further labels (whose letters could pile up behind them) until they are in.
            self._labels_held = True
            self.source.pause(self._labels_partitions())
        dlq = self.config.kafka.dlq_topic
        if exc.failed_topics and exc.failed_topics <= {dlq} and not exc.unacknowledged:
            held = [t for t in self.tasks.values() if t.undelivered and not t.held]
            for task in held:
                task.held = True
            if held:
                self.source.pause([t.partition for t in held])
            return
        self._rewind()

    def _rewind(self) -> None:
        """Some output may be lost: go back to every partition's checkpoint (its outputs
        were all acknowledged), pause until the backoff ends, then read again from there.
        Outputs after the checkpoint are sent again: duplicates, never gaps."""
        tasks = list(self.tasks.values())
        if not tasks:
            return
        log.error("outputs may be lost; going back to the last checkpoint of %s",
                  ", ".join(str(t.partition) for t in tasks))
        for task in tasks:
            restored = self._restore(task.partition)
            task.model = restored.model
            task.next_offset = restored.next_offset
            task.events_since_checkpoint = 0
            task.undelivered.clear()  # reading again writes them again
            task.held = False
            self.source.seek(task.partition, task.next_offset)
        parts = [t.partition for t in tasks]
        self.source.pause(parts)
        self._rewound.update(parts)

    def _resume_rewound(self) -> None:
        if not self._rewound or time.monotonic() < self._backoff:
            return
        live = [p for p in self._rewound if p in self.tasks]
        self._rewound.clear()
        if live:
            self.source.resume(live)

    # ------------------------------------------------------------------ checkpoints

    def _maybe_checkpoint(self) -> None:
        st = self.config.state
        now = time.monotonic()
        due = [t for t in self.tasks.values()
               if not t.held and t.events_since_checkpoint > 0
               and (t.events_since_checkpoint >= st.checkpoint_every_events
                    or now - t.last_checkpoint >= st.checkpoint_every_seconds)]
        if not due:
            return
        try:
            self._flush()
        except SinkError as exc:
            self._on_sink_failure(exc)
            return
        self._checkpoint_and_commit(due)

    def _checkpoint_and_commit(self, tasks: list[PartitionTask]) -> None:
        """Checkpoint ``tasks`` (outputs already flushed), then commit their offsets."""
        offsets = {}
        for task in tasks:
            if task.held or task.undelivered:
                continue
            self._write_checkpoint(task)
            offsets[task.partition] = task.next_offset
        if offsets:
            try:
                self.source.commit(offsets)
            except CommitError as exc:
                # The checkpoints stand; restarts seek to them, not to committed offsets,
                # so a missed commit costs nothing but consumer-lag accuracy. Retriable
                # failures are retried at the next cadence.
                log.warning("offset commit failed (%s): %s",
                            "will retry" if exc.retriable else "partitions moved on", exc)

    def _write_checkpoint(self, task: PartitionTask) -> None:
        started = time.perf_counter()
        meta, arrays = task.model.export_state()
        manifest = {
            "topic": task.partition.topic,
            "partition": task.partition.partition,
            "next_offset": task.next_offset,
            "task": self.config.model.task,
            "model": meta,
            "written_at": self.clock(),
        }
        write_checkpoint(self.config.state.checkpoint_dir, checkpoint_name(task.partition),
                         manifest, arrays)
        task.events_since_checkpoint = 0
        task.last_checkpoint = time.monotonic()
        p = task.partition
        self.metrics.checkpoint_duration.observe(time.perf_counter() - started)
        self.metrics.last_checkpoint.labels(p.topic, str(p.partition)).set(self.clock())

    def _restore(self, partition: Partition) -> PartitionTask:
        cfg = self.config
        max_keys = cfg.state.max_keys_per_partition
        try:
            found = read_checkpoint(cfg.state.checkpoint_dir, checkpoint_name(partition))
        except CheckpointError as exc:
            # A damaged checkpoint must not be trusted, nor silently replaced by a fresh
            # model that would then overwrite it: stop and let an operator decide.
            raise RuntimeError(f"cannot restore {partition}: {exc}") from exc
        task_cls = TASKS[cfg.model.task]
        if found is None:
            if cfg.state.warm_start:
                model = self._warm_start(task_cls, max_keys)
            else:
                model = make_task(cfg.model.task, self._params, max_keys,
                                  key_fields=cfg.events.key_fields)
            return PartitionTask(partition, model, next_offset=0)
        manifest, arrays = found
        try:
            model = task_cls.from_state(manifest["model"], arrays, self._params, max_keys,
                                        cfg.events.key_fields)
        except (KeyError, ValueError) as exc:
            # A checkpoint of another task or key layout must not be silently replaced.
            raise RuntimeError(f"cannot restore {partition} as a {cfg.model.task} task: "
                               f"{exc}") from exc
        return PartitionTask(partition, model, next_offset=int(manifest["next_offset"]))

    def _warm_start(self, task_cls: Any, max_keys: int) -> Any:
        """Weights (not per-key state) from a checkpoint manifest named by ``warm_start``."""
        path = Path(self.config.state.warm_start)
        try:
            found = read_checkpoint(path.parent, path.name.removesuffix(".json"))
        except CheckpointError as exc:
            raise RuntimeError(f"cannot warm-start from {path}: {exc}") from exc
        if found is None:
            raise RuntimeError(f"cannot warm-start: no checkpoint manifest at {path}")
        manifest, arrays = found
        try:
            model = task_cls.from_state(manifest["model"], arrays, self._params, max_keys,
                                        self.config.events.key_fields)
        except (KeyError, ValueError) as exc:
            raise RuntimeError(f"cannot warm-start from {path}: {exc}") from exc
        model.forget_keys()
        return model

    def _rollback(self, task: PartitionTask) -> None:
        """The model turned non-finite: go back to the last checkpoint's model (keeping
        the current position: those events were already answered) and count it."""
        log.error("model of %s turned non-finite; rolling back", task.partition)
        restored = self._restore(task.partition)
        task.model = restored.model
        self.metrics.rollbacks.inc()

    # ------------------------------------------------------------------ rebalances

    def _handle_rebalance(self, request: RebalanceRequest) -> None:
        kind = request.kind
        try:
            self.metrics.rebalances.labels(kind).inc()
            if kind == "assigned":
                for partition in request.partitions:
                    if partition.topic == self.config.kafka.labels_topic:
                        self._labels_owned.add(partition)
                        if self._labels_held:
                            self.source.pause([partition])
                        continue
                    if partition in self.tasks:
                        continue
                    task = self._restore(partition)
                    self.tasks[partition] = task
                    self.source.seek(partition, task.next_offset)
            elif kind == "revoked":
                self._labels_owned.difference_update(request.partitions)
                owned = [self.tasks[p] for p in request.partitions if p in self.tasks]
                failure = None
                try:
                    self._flush()
                    self._checkpoint_and_commit(owned)
                except SinkError as exc:
                    log.warning("revoking %s without a final checkpoint: %s",
                                request.partitions, exc)
                    failure = exc
                for task in owned:
                    del self.tasks[task.partition]
                    self._rewound.discard(task.partition)
                    self._forget_partition_series(task.partition)
                if failure is not None:
                    # The partitions kept may have lost outputs too.
                    self._on_sink_failure(failure)
            elif kind == "lost":
                self._labels_owned.difference_update(request.partitions)
                for partition in request.partitions:
                    self._rewound.discard(partition)
                    if self.tasks.pop(partition, None) is not None:
                        self._forget_partition_series(partition)
            self.metrics.assigned_partitions.set(len(self.tasks))
            request.done()
        except BaseException as exc:
            request.done(exc)
            raise

    def _forget_partition_series(self, partition: Partition) -> None:
        # The partition's new owner exports these now; a frozen copy here would show a
        # stale lag, checkpoint age or loss on the dashboards and confuse the alerts.
        m = self.metrics
        labels = (partition.topic, str(partition.partition))
        for gauge in (m.event_time_lag, m.consumer_lag, m.training_loss, m.gradient_norm,
                      m.keys_in_state, m.last_checkpoint, m.model_version):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def _update_lag(self) -> None:
        for partition, lag in self.source.lag().items():
            self.metrics.consumer_lag.labels(partition.topic, str(partition.partition)).set(
                lag)
