"""Task models: what one partition runs over its events, behind one small interface.

The runner hands each partition's valid events, in offset order, to its task model, which
scores every event and then learns from it, and returns one :class:`Scored` per event.
Task models also apply delayed labels, export and restore their state as plain arrays,
and say whether they are still finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stream_rnn.io.events import Event
from stream_rnn.models import RNNAnomalyDetector

__all__ = ["Scored", "TaskModel", "SensorTask", "UnknownFeature", "make_task", "TASKS"]


class UnknownFeature(ValueError):
    """An event carries a feature the partition's model has no input slot for."""


@dataclass(frozen=True, slots=True)
class Scored:
    """One event's output: its score in [0, 1] and what the model predicted for it."""

    score: float
    prediction: dict[str, float]


class TaskModel(Protocol):
    """What the runner needs from a partition's model."""

    def process(self, events: list[Event]) -> list[Scored]: ...

    def apply_label(self, event_id: str, label: int) -> bool: ...

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    def forget_keys(self) -> None: ...

    def is_finite(self) -> bool: ...

    def stats(self) -> dict[str, float]: ...


def _chi2_tail_score(mean_z2: np.ndarray, dims: int) -> np.ndarray:
    """P(chi2_dims <= dims * mean_z2): how unusual the squared residuals are, in [0, 1].

    Wilson-Hilferty's cube-root normal approximation, accurate to ~1e-3 for these uses
    and exact in the limit; keeps scores comparable across streams with any number of
    features.
    """
    x = np.maximum(dims * np.asarray(mean_z2, dtype=np.float64), 0.0)
    k = float(dims)
    z = ((x / k) ** (1.0 / 3.0) - (1.0 - 2.0 / (9.0 * k))) / math.sqrt(2.0 / (9.0 * k))
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


class SensorTask:
    """Per-key forecasting surprise for sensor readings (all features are readings).

    Keys are the event's entity keys joined with ``|``. Scores are the probability that
    the reading's squared standardized residuals are below what was observed, under the
    key's own Gaussian forecast: 0.5 is ordinary, 0.999 is a 1-in-1000 surprise.
    """

    def __init__(self, params: dict[str, Any] | None = None, max_keys: int = 100_000,
                 detector: RNNAnomalyDetector | None = None) -> None:
        self.params = dict(params or {})
        self.max_keys = max_keys
        self.detector = detector or RNNAnomalyDetector(max_keys=max_keys, **self.params)
        self._schema: frozenset[str] | None = None

    def _matrix(self, events: list[Event]) -> np.ndarray:
        det = self.detector
        if det._net is None:
            # Slots come from the first event's features: learning it fixes them.
            det.learn_one(dict(events[0].features), key="|".join(events[0].keys))
        X = np.zeros((len(events), det._n_inputs))
        slots = det._features
        for i, event in enumerate(events):
            for name, value in event.features.items():
                idx = slots.get(name)
                if idx is None:
                    raise UnknownFeature(name)
                X[i, idx] = value
        return X

    def check(self, event: Event) -> str | None:
        """The reason ``event`` cannot be processed, or None.

        The first event a fresh model sees fixes its features; later events may omit
        features (they read 0) but not bring new ones.
        """
        det = self.detector
        if det._net is not None:
            known = det._features
        else:
            if self._schema is None:
                self._schema = frozenset(event.features)
            known = self._schema
        unknown = [name for name in event.features if name not in known]
        return f"unknown feature {unknown[0]!r}" if unknown else None

    def process(self, events: list[Event]) -> list[Scored]:
        if not events:
            return []
        det = self.detector
        fresh = det._net is None
        X = self._matrix(events)
        keys = ["|".join(e.keys) for e in events]
        if fresh:
            # The first event fixed the feature slots and was learned by learn_one; it
            # has no history, so its score is the neutral 0.
            raw = np.concatenate([[0.0], det.score_learn_many(X[1:], keys[1:])])
        else:
            raw = det.score_learn_many(X, keys)
        dims = max(1, det._n_inputs)
        scores = _chi2_tail_score(raw, dims)
        scores[raw == 0.0] = 0.0
        return [Scored(float(s), {}) for s in scores]

    def forecast(self, key: str) -> dict[str, float]:
        """Live forecast (mean) per feature for ``key``."""
        return {str(name): mean for name, (mean, _) in self.detector.forecast_one(key).items()}

    def apply_label(self, event_id: str, label: int) -> bool:
        # Sensor models learn without labels; labels only feed evaluation downstream.
        return False

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = self.detector.export_state()
        return {"task": "sensor", "detector": meta}, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   params: dict[str, Any], max_keys: int) -> SensorTask:
        detector = RNNAnomalyDetector.from_state(meta["detector"], arrays)
        return cls(params, max_keys, detector=detector)

    def forget_keys(self) -> None:
        """Drop every key's state, keeping the weights (a warm start)."""
        store = self.detector._store
        if store is not None:
            for key in list(store):
                store.remove(key)
            store.evictions = 0

    def is_finite(self) -> bool:
        det = self.detector
        if det._net is None:
            return True
        if not np.isfinite(det._net.theta).all():
            return False
        return all(np.isfinite(arr).all() for arr in det._store.arrays.values()
                   if arr.dtype.kind == "f")

    def stats(self) -> dict[str, float]:
        det = self.detector
        return {
            "keys": det.n_keys,
            "evictions": det.n_evictions,
            "version": det.n_updates,
            "skipped": det.n_skipped_updates,
            "loss": det.last_loss,
            "grad_norm": det.last_grad_norm,
        }


TASKS = {"sensor": SensorTask}


def make_task(task: str, params: dict[str, Any], max_keys: int) -> SensorTask:
    """A fresh task model of kind ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    return TASKS[task](params, max_keys)
