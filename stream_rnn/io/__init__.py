"""Sources and sinks: recorded scenarios, the event contract, Kafka; nothing here knows models.

The Kafka names are imported on first use, so code that only replays scenarios does not load
kafka-python.
"""

from __future__ import annotations

from typing import Any

from stream_rnn.io.events import (
    DEAD_LETTER_REASONS,
    Event,
    InvalidEvent,
    dead_letter_headers,
    encode_score,
    parse_event,
    parse_label,
)
from stream_rnn.io.scenario import Scenario, load_scenario, write_events

_KAFKA_NAMES = (
    "CommitError",
    "DeliveryError",
    "FailedSend",
    "KafkaRebalance",
    "KafkaSink",
    "KafkaSource",
    "client_options",
)

__all__ = [
    "Scenario",
    "load_scenario",
    "write_events",
    "DEAD_LETTER_REASONS",
    "Event",
    "InvalidEvent",
    "dead_letter_headers",
    "encode_score",
    "parse_event",
    "parse_label",
    *_KAFKA_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _KAFKA_NAMES:
        from stream_rnn.io import kafka

        return getattr(kafka, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
