"""Offline evaluation of detector outputs against labelled benchmarks.

:mod:`stream_rnn.evaluation.nab` scores anomaly detectors with the Numenta Anomaly
Benchmark (NAB v1.1) rules: probationary period, windowed scaled-sigmoid rewards, one
threshold per cost profile optimised over the whole corpus, and normalisation between the
null and the perfect detector.
"""

from __future__ import annotations

from stream_rnn.evaluation.nab import (
    PROBATION_PERCENT,
    MissingResultsError,
    NabFile,
    NabInputError,
    ThresholdSweep,
    format_table,
    load_corpus,
    load_profiles,
    load_windows,
    probation_length,
    read_results,
    scaled_sigmoid,
    score_at_threshold,
    score_by_threshold,
    score_corpus,
    score_detector,
    sweep_scores,
    window_indices,
)

__all__ = [
    "PROBATION_PERCENT",
    "MissingResultsError",
    "NabFile",
    "NabInputError",
    "ThresholdSweep",
    "format_table",
    "load_corpus",
    "load_profiles",
    "load_windows",
    "probation_length",
    "read_results",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_by_threshold",
    "score_corpus",
    "score_detector",
    "sweep_scores",
    "window_indices",
]
