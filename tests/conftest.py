"""Make the repository importable when pytest is run as ``pytest`` rather than
``python -m pytest`` (only the latter puts the working directory on ``sys.path``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# -- A real Kafka-compatible broker (tests/broker.py) ---------------------------------------

import broker as _broker  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def kafka_broker_process(tmp_path_factory):
    """The session's broker process (a :class:`broker.Broker`), started once."""
    proc = _broker.Broker(tmp_path_factory.mktemp("kafka")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def kafka_broker(kafka_broker_process):
    """Bootstrap string (``127.0.0.1:PORT``) of the session's broker."""
    return kafka_broker_process.bootstrap


@pytest.fixture
def new_topic(kafka_broker_process, request):
    """Factory: ``new_topic(partitions=1)`` creates a fresh, uniquely named topic."""

    def make(partitions: int = 1) -> str:
        return kafka_broker_process.create_topic(
            _broker.topic_name(request.node.name), partitions=partitions)

    return make


@pytest.fixture
def private_broker(tmp_path):
    """A broker of the test's own, free to freeze, kill or restart; stopped afterwards."""
    proc = _broker.Broker(tmp_path / "kafka")
    yield proc
    proc.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the broker logs to the report of a failing test that used a broker."""
    outcome = yield
    report = outcome.get_result()
    uses = {"kafka_broker", "kafka_broker_process", "new_topic", "private_broker"}
    if report.failed and uses & set(getattr(item, "fixturenames", ())):
        for proc in _broker.involved_since(call.start):
            report.sections.append((f"broker log {proc.bootstrap}", proc.log_tail(80)))
