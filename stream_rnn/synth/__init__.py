"""Synthetic streams with known, labelled incidents: a process plant, card transactions
and regional energy demand. Deterministic from a seed; NumPy only."""

from __future__ import annotations

from stream_rnn.synth.incidents import Incident
from stream_rnn.synth.plant import plant_events

__all__ = ["Incident", "plant_events"]
