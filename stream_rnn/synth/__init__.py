"""Synthetic streams with known, labelled incidents."""

from __future__ import annotations

from stream_rnn.synth.plant import Incident, plant_events

__all__ = ["Incident", "plant_events"]
