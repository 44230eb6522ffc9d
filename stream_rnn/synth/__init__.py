"""Synthetic streams with known, labelled incidents: a process plant, card transactions
and regional energy demand. Deterministic from a seed; NumPy, and the scenario format
(:mod:`stream_rnn.io.scenario`) for the incidents they return."""

from __future__ import annotations

from stream_rnn.io.scenario import Incident
from stream_rnn.synth.plant import plant_events

__all__ = ["Incident", "plant_events"]
