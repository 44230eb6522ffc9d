"""Anomaly flags from calibrated scores: one threshold for many sensors.

Scores from :class:`~stream_rnn.models.SensorAnomalyDetector` are tail evidence mapped to
[0, 1] the same way on every stream, so one threshold serves every sensor. The default,
0.5, flags short-term surprise at a Gaussian tail probability of ``10^-5`` against the
stream's own history; on streams without anomalies (noise, NAB's artificialNoAnomaly
files) it flags at most about 0.3 % of readings.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
from river import anomaly, base

__all__ = ["DEFAULT_THRESHOLD", "ScoreThreshold", "flag_rate", "flags"]

#: A calibrated score at or above this flags an anomaly.
DEFAULT_THRESHOLD = 0.5


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")


def flags(scores: Any, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Boolean flags: ``scores >= threshold``.

    Examples
    --------
    >>> flags([0.0, 0.2, 0.7], threshold=0.5)
    array([False, False,  True])
    """
    _check_threshold(threshold)
    return np.asarray(scores, dtype=np.float64) >= threshold


def flag_rate(scores: Any, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of scores flagged at ``threshold`` (0 for no scores).

    Examples
    --------
    >>> print(f"{flag_rate([0.0, 0.2, 0.7, 0.9], threshold=0.5):.2f}")
    0.50
    """
    flagged = flags(scores, threshold)
    return float(flagged.mean()) if flagged.size else 0.0


class ScoreThreshold(anomaly.ThresholdFilter):
    """River anomaly filter over a keyed detector: flag scores ``>= threshold``.

    Like :class:`river.anomaly.ThresholdFilter`, and passes ``key`` (and any other keyword,
    such as the reading's time ``t``) through to the detector.

    Parameters
    ----------
    anomaly_detector
        A detector whose scores are calibrated to [0, 1].
    threshold
        Scores at or above it are anomalies.
    protect_anomaly_detector
        Skip learning from readings classified as anomalies.

    Examples
    --------
    >>> import math
    >>> from stream_rnn.models import SensorAnomalyDetector
    >>> model = ScoreThreshold(SensorAnomalyDetector(hidden_size=4, n_members=1, season=None,
    ...                                              warmup=50), threshold=0.5)
    >>> n_flags = 0
    >>> for t in range(600):
    ...     x = {"v": math.sin(t / 7) + (8.0 if t == 550 else 0.0)}
    ...     n_flags += model.classify(model.score_one(x, key="pump"))
    ...     model.learn_one(x, key="pump")
    >>> n_flags >= 1, model.classify(0.4)
    (True, False)
    """

    def __init__(
        self,
        anomaly_detector: base.AnomalyDetector,
        threshold: float = DEFAULT_THRESHOLD,
        protect_anomaly_detector: bool = True,
    ) -> None:
        _check_threshold(threshold)
        super().__init__(anomaly_detector, threshold, protect_anomaly_detector)

    def score_one(self, x: dict, key: Hashable | None = None, **kwargs: Any) -> float:
        """Return the detector's score of ``x`` for ``key``."""
        return self.anomaly_detector.score_one(x, key=key, **kwargs)

    def classify(self, score: float) -> bool:
        """Whether ``score`` is an anomaly."""
        return score >= self.threshold

    def learn_one(self, x: dict, key: Hashable | None = None, **kwargs: Any) -> None:
        """Learn ``x`` for ``key``, unless protected and ``x`` is classified an anomaly."""
        if self.protect_anomaly_detector and self.classify(self.score_one(x, key, **kwargs)):
            return
        self.anomaly_detector.learn_one(x, key=key, **kwargs)
