"""Event sources and sinks: recorded scenarios now, Kafka later; nothing here knows models."""

from __future__ import annotations

from stream_rnn.io.scenario import Scenario, load_scenario, write_events

__all__ = ["Scenario", "load_scenario", "write_events"]
