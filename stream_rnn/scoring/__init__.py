"""From a detector's surprise to a decision.

:mod:`~stream_rnn.cells.calibrate` turns raw surprise into an anomaly score in [0, 1]
that means the same rarity on every stream; :mod:`~stream_rnn.scoring.thresholds` turns
scores into flags with one threshold for many sensors.
"""

from __future__ import annotations

from stream_rnn.cells.calibrate import SurpriseCalibrator, calibrate_many
from stream_rnn.scoring.thresholds import DEFAULT_THRESHOLD, ScoreThreshold, flag_rate, flags

__all__ = [
    "DEFAULT_THRESHOLD",
    "ScoreThreshold",
    "SurpriseCalibrator",
    "calibrate_many",
    "flag_rate",
    "flags",
]
