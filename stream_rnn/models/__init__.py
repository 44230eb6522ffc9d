"""River estimators around the compiled recurrent cells.

Each estimator keeps per-entity hidden state (pass ``key=`` to ``learn_one`` and
``predict_one``/``score_one``/``forecast``; ``None`` is one global sequence) over shared
weights, and learns with truncated BPTT.
"""

from __future__ import annotations

from stream_rnn.models.anomaly import RNNAnomalyDetector
from stream_rnn.models.classifier import RNNClassifier
from stream_rnn.models.forecaster import RNNForecaster
from stream_rnn.models.fraud import FraudDetector
from stream_rnn.models.mixture import ForecastMixture
from stream_rnn.models.regressor import RNNRegressor
from stream_rnn.models.seasonal import DirectLinearForecaster, SeasonalNaive
from stream_rnn.models.sensor import SensorAnomalyDetector
from stream_rnn.models.smoothing import ExponentialSmoothing, SmoothingBank

__all__ = [
    "DirectLinearForecaster",
    "ExponentialSmoothing",
    "ForecastMixture",
    "FraudDetector",
    "RNNAnomalyDetector",
    "RNNClassifier",
    "RNNForecaster",
    "RNNRegressor",
    "SeasonalNaive",
    "SensorAnomalyDetector",
    "SmoothingBank",
]
