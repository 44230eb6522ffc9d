"""``RNNClassifier``: a binary classifier over per-entity event sequences."""

from __future__ import annotations

import math
from collections.abc import Hashable
from types import SimpleNamespace
from typing import Any

import numpy as np
from river import base

from stream_rnn.models.base import GLOBAL_KEY, RNNBase

__all__ = ["RNNClassifier"]


class RNNClassifier(RNNBase, base.Classifier):
    """Probability that an event belongs to the positive class, given the entity's history.

    A binary classifier trained with cross-entropy on a logit head. Labels may be bools,
    0/1, or any two values: with ``True``/``1`` among them that is the positive class,
    otherwise the second label seen is. A third distinct label is refused.

    Parameters
    ----------
    cell, hidden_size, num_layers, window, update_every, optimizer, lr, clip_norm, seed
        As for :class:`~stream_rnn.models.RNNRegressor`.
    activation, weight_decay, dropout, max_keys, input_size, dtype
        As for :class:`~stream_rnn.models.RNNRegressor`.

    Examples
    --------
    The label is whether the entity's reading two events ago was positive: only a model
    that remembers can learn it.

    >>> import random
    >>> from stream_rnn.models import RNNClassifier
    >>> rng = random.Random(0)
    >>> model = RNNClassifier(cell="gru", hidden_size=8, window=6, lr=0.02, seed=0)
    >>> xs, hits = [], []
    >>> for t in range(3000):
    ...     xs.append(rng.uniform(-1, 1))
    ...     x, y = {"x": xs[-1]}, len(xs) > 2 and xs[-3] > 0
    ...     hits.append((model.predict_proba_one(x).get(True, 0.5) > 0.5) == y)
    ...     model.learn_one(x, y)
    >>> print(f"accuracy on the last 500: {sum(hits[-500:]) / 500:.2f}")
    accuracy on the last 500: 0.9...
    """

    def __init__(
        self,
        cell: str = "lstm",
        hidden_size: int = 32,
        num_layers: int = 1,
        window: int = 16,
        update_every: int = 1,
        optimizer: str = "adam",
        lr: float = 0.005,
        clip_norm: float | None = 1.0,
        seed: int = 0,
        activation: str = "tanh",
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        max_keys: int | None = 10_000,
        input_size: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self._init_common(
            cell=cell, hidden_size=hidden_size, num_layers=num_layers, window=window,
            update_every=update_every, optimizer=optimizer, lr=lr, clip_norm=clip_norm,
            seed=seed, activation=activation, weight_decay=weight_decay, dropout=dropout,
            max_keys=max_keys, input_size=input_size, dtype=dtype,
        )
        self._labels: list[Any] = []

    @property
    def _loss(self) -> str:
        return "bce"

    def _target_size(self) -> int:
        return 1

    @property
    def _multiclass(self) -> bool:
        return False

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden_size": 4, "window": 4, "update_every": 2}
        yield {"cell": "gru", "hidden_size": 3, "input_size": 40}

    def _positive(self) -> Any:
        for label in self._labels:
            if label is True or (not isinstance(label, bool) and label == 1):
                return label
        return self._labels[1] if len(self._labels) > 1 else None

    def _target_of(self, y: Any) -> float:
        if y not in self._labels:
            if len(self._labels) == 2:
                raise ValueError(
                    f"RNNClassifier is binary; it has seen {self._labels!r} and got {y!r}"
                )
            self._labels.append(y)
        positive = self._positive()
        return 1.0 if positive is not None and y == positive else 0.0

    def _ensure_built(self, x: dict) -> None:
        if self._net is None:
            self._build(list(x))
            self._make_buffers()

    def _make_buffers(self) -> None:
        buf = self._buf = SimpleNamespace()
        dt = self._net.dtype
        buf.u = np.zeros(self._net.layout.input_size, dtype=dt)
        buf.y = np.zeros(1, dtype=dt)
        buf.out = np.zeros(1, dtype=dt)
        self._bind_events()

    def _bind_events(self) -> None:
        buf = self._buf
        buf.predict, buf.learn = self._net.bind_events(self._store.arrays, buf.u, buf.y,
                                                       buf.out)
        buf.events_generation = self._store.generation

    def learn_one(self, x: dict, y: base.typing.ClfTarget, key: Hashable | None = None,
                  **kwargs: Any) -> None:
        if y is None or (isinstance(y, float) and math.isnan(y)):
            raise ValueError(f"label must be a class, got {y!r}")
        labels_before = list(self._labels)
        target = self._target_of(y)
        try:
            self._ensure_built(x)
            self._vectorize(x, self._buf.u, learning=True)
        except ValueError:
            self._labels = labels_before
            raise
        buf = self._buf
        buf.y[0] = target
        store = self._store
        slot, is_new = store.slot_for(GLOBAL_KEY if key is None else key)
        if is_new:
            store.clear(slot)
        # Taking a slot can reallocate the store's arrays.
        if buf.events_generation != store.generation:
            self._bind_events()
        buf.learn(slot)

    def predict_proba_one(self, x: dict, key: Hashable | None = None,
                          **kwargs: Any) -> dict[Any, float]:
        p = 0.5
        if self._net is not None:
            buf = self._buf
            self._vectorize(x, buf.u, learning=False)
            store = self._store
            if buf.events_generation != store.generation:
                self._bind_events()
            buf.predict(store.get(GLOBAL_KEY if key is None else key))
            logit = buf.out.item(0)
            p = 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (
                1.0 + math.exp(logit))
        if all(label in (0, 1) for label in self._labels):
            # Bool-like labels (River's binary convention) or none yet: False/True.
            return {False: 1.0 - p, True: p}
        positive = self._positive()
        if positive is None:
            return {self._labels[0]: 1.0 - p}
        negative = next(label for label in self._labels if label != positive)
        return {negative: 1.0 - p, positive: p}

    def predict_proba_learn_many(self, X: np.ndarray, y: np.ndarray,
                                 keys: list[Hashable] | None = None) -> np.ndarray:
        """Batch path: probability of the positive class for each row, then learn from it.

        ``y`` holds 0/1 targets (1 = positive class). Identical to the per-event loop.
        """
        if self._net is None:
            raise RuntimeError("learn at least one event with learn_one to fix the features")
        X = np.ascontiguousarray(X, dtype=self._net.dtype)
        y = np.asarray(y, dtype=self._net.dtype).reshape(-1, 1)
        if X.shape != (y.shape[0], self._net.layout.input_size):
            raise ValueError(f"X must be (N, {self._net.layout.input_size}), got {X.shape}")
        if not (np.isfinite(X).all() and np.isin(y, (0.0, 1.0)).all()):
            raise ValueError("X must be finite and y must be 0 or 1")
        n = X.shape[0]
        keys = [None] * n if keys is None else keys
        slots, resets = self._assign_slots(keys)
        outs, _, _ = self._net.run_batch(self._store.arrays, slots, resets, X, y,
                                         np.ones(n, dtype=bool))
        return 1.0 / (1.0 + np.exp(-outs[:, 0].astype(np.float64)))
