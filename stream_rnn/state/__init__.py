"""Per-entity state: a bounded key -> slot index over struct-of-arrays rows.

This package imports nothing but NumPy.
"""

from __future__ import annotations

from stream_rnn.state.store import KeyedState

__all__ = ["KeyedState"]
