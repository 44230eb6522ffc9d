"""Sources and sinks: recorded scenarios, the event contract, Kafka; nothing here knows models.

Two Kafka client stacks with the same semantics: :mod:`stream_rnn.io.kafka` (kafka-python)
and :mod:`stream_rnn.io.confluent` (librdkafka); :func:`kafka_classes` picks one by the
``[kafka] client`` name. The Kafka names are imported on first use, so code that only
replays scenarios loads neither client.
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

_CONFLUENT_NAMES = ("ConfluentSink", "ConfluentSource")

__all__ = [
    "kafka_classes",
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
    *_CONFLUENT_NAMES,
]


def kafka_classes(client: str) -> tuple[type, type]:
    """The ``(Source, Sink)`` classes of a Kafka client stack: ``"kafka-python"`` or
    ``"librdkafka"``.

    Examples
    --------
    >>> [cls.__name__ for cls in kafka_classes("librdkafka")]
    ['ConfluentSource', 'ConfluentSink']
    >>> kafka_classes("rdkafka")
    Traceback (most recent call last):
    ...
    ValueError: unknown Kafka client 'rdkafka'; known: kafka-python, librdkafka
    """
    if client == "kafka-python":
        from stream_rnn.io.kafka import KafkaSink, KafkaSource

        return KafkaSource, KafkaSink
    if client == "librdkafka":
        try:
            from stream_rnn.io.confluent import ConfluentSink, ConfluentSource
        except ImportError as exc:
            raise ValueError(f"the librdkafka client needs the confluent-kafka package "
                             f"({exc}): pip install 'stream-rnn[librdkafka]'") from None
        return ConfluentSource, ConfluentSink
    raise ValueError(f"unknown Kafka client {client!r}; known: kafka-python, librdkafka")


def __getattr__(name: str) -> Any:
    if name in _KAFKA_NAMES:
        from stream_rnn.io import kafka

        return getattr(kafka, name)
    if name in _CONFLUENT_NAMES:
        from stream_rnn.io import confluent

        return getattr(confluent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
