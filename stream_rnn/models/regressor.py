"""``RNNRegressor``: a recurrent regressor over per-entity event sequences."""

from __future__ import annotations

from collections.abc import Hashable
from types import SimpleNamespace
from typing import Any

import numpy as np
from river import base

from stream_rnn.cells.scaling import scale_targets
from stream_rnn.models.base import GLOBAL_KEY, RNNBase, check_target

__all__ = ["RNNRegressor"]

# Target standardization: scaled targets are clipped to +-_TARGET_CLIP, and the running
# statistics forget at the pace of an average over _TARGET_MEMORY events.
_TARGET_CLIP = 10.0
_TARGET_MEMORY = 100_000


class RNNRegressor(RNNBase, base.Regressor):
    """Predict a number from each event, using what the same entity did before.

    Each key (entity) carries its own hidden state through the shared weights; learning
    from ``(x, y)`` steps that key's state and every ``update_every`` events of the key
    backpropagates its last losses through its last ``window`` steps.

    Parameters
    ----------
    cell
        ``'lstm'``, ``'gru'`` or ``'elman'``.
    hidden_size
        Units per recurrent layer.
    num_layers
        Stacked recurrent layers.
    window
        Truncated BPTT reach ``k2`` (steps).
    update_every
        Learn every ``k1`` events of a key (``1 <= k1 <= window``).
    optimizer
        ``'adam'``, ``'rmsprop'`` or ``'sgd'``.
    lr
        Learning rate.
    clip_norm
        Gradient clipping by global norm; ``None`` turns it off.
    seed
        Seeds weights and dropout.
    loss
        ``'mse'`` or ``'gaussian'`` (also learns a variance; predictions are the mean).
    scale_target
        Standardize the target with running statistics before learning and map
        predictions back, so the learning rate does not depend on the target's units.
    activation
        Elman's nonlinearity (``'tanh'``, ``'relu'``, ``'sigmoid'``).
    weight_decay
        L2 penalty on weight matrices.
    dropout
        Dropout between stacked layers while learning.
    max_keys
        Most entities holding state at once; the least recently learned is evicted.
    input_size
        Input slots; ``None`` fixes them to the first event's features. A larger value
        leaves free slots that features appearing later take, in order of appearance.
    dtype
        ``'float32'`` or ``'float64'``.

    Examples
    --------
    >>> from stream_rnn.models import RNNRegressor
    >>> import math
    >>> model = RNNRegressor(hidden_size=8, window=8, lr=0.02, seed=1)
    >>> errors = []
    >>> for t in range(1500):
    ...     x = {"u": math.sin(0.2 * t)}
    ...     y = math.sin(0.2 * (t + 1))
    ...     errors.append(abs(model.predict_one(x) - y))
    ...     model.learn_one(x, y)
    >>> print(f"{sum(errors[:100]) / 100:.2f} -> {sum(errors[-100:]) / 100:.2f}")
    0.... -> 0.0...
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
        loss: str = "mse",
        scale_target: bool = True,
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
        self.loss = loss
        self.scale_target = scale_target
        if loss not in ("mse", "gaussian"):
            raise ValueError(f"loss must be 'mse' or 'gaussian', got {loss!r}")
        self._y_mean = np.zeros((1, 1))
        self._y_var = np.zeros((1, 1))
        self._y_count = np.zeros(1, dtype=np.int64)

    @property
    def _loss(self) -> str:
        return self.loss

    def _target_size(self) -> int:
        return 1

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden_size": 4, "window": 4, "update_every": 2}
        yield {"cell": "gru", "hidden_size": 3, "loss": "gaussian", "input_size": 12}

    def _ensure_built(self, x: dict) -> None:
        if self._net is None:
            self._build(list(x))
            self._make_buffers()

    def _make_buffers(self) -> None:
        buf = self._buf = SimpleNamespace()
        dt = self._net.dtype
        buf.u = np.zeros(self._net.layout.input_size, dtype=dt)
        buf.y = np.zeros((1, 1), dtype=np.float64)
        buf.y_scaled = np.zeros((1, 1), dtype=dt)
        buf.loc = np.zeros((1, 1))
        buf.scale = np.ones((1, 1))
        buf.out = np.zeros(self._net.layout.output_size, dtype=dt)
        self._bind_events()

    def _bind_events(self) -> None:
        # Target scaling runs in the learning call itself (one compiled call per event).
        buf = self._buf
        scaled_target = (bool(self.scale_target), _TARGET_CLIP, _TARGET_MEMORY, self._y_mean,
                         self._y_var, self._y_count, buf.y, buf.y_scaled, buf.loc, buf.scale)
        buf.predict, buf.learn = self._net.bind_events(
            self._store.arrays, buf.u, buf.y_scaled[0], buf.out, scaled_target)
        buf.events_generation = self._store.generation

    # The per-event methods below run once per event in a consumer loop: every attribute
    # read and call here shows in the throughput, hence the plain inline code.

    def learn_one(self, x: dict, y: base.typing.RegTarget, key: Hashable | None = None,
                  **kwargs: Any) -> None:
        y_value = check_target(y)
        if self._net is None:
            self._ensure_built(x)
        buf = self._buf
        self._vectorize(x, buf.u, learning=True)
        store = self._store
        slot, is_new = store.slot_for(GLOBAL_KEY if key is None else key)
        if is_new:
            store.clear(slot)
        # Taking a slot can reallocate the store's arrays.
        if buf.events_generation != store.generation:
            self._bind_events()
        buf.learn(y_value, slot)

    def predict_one(self, x: dict, key: Hashable | None = None, **kwargs: Any) -> float:
        if self._net is None:
            return 0.0
        buf = self._buf
        self._vectorize(x, buf.u, learning=False)
        store = self._store
        if buf.events_generation != store.generation:
            self._bind_events()
        # In the target's units: the arithmetic of cells.scaling.location_scale and of
        # predict_learn_many, in the same compiled call.
        return buf.predict(store.get(GLOBAL_KEY if key is None else key))

    def predict_learn_many(self, X: np.ndarray, y: np.ndarray, keys: list[Hashable] | None = None
                           ) -> np.ndarray:
        """Batch path: predict each row, then learn from it, in one compiled call.

        ``X`` is ``(N, input_size)`` in feature-slot order (see ``feature_names``), ``y``
        ``(N,)``, ``keys`` one key per row (``None``: the global sequence). Identical to
        calling ``predict_one`` then ``learn_one`` row by row. Returns the predictions.
        """
        if self._net is None:
            raise RuntimeError("learn at least one event with learn_one to fix the features")
        X = np.ascontiguousarray(X, dtype=self._net.dtype)
        y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
        if X.shape != (y.shape[0], self._net.layout.input_size):
            raise ValueError(f"X must be (N, {self._net.layout.input_size}), got {X.shape}")
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise ValueError("X and y must be finite")
        n = X.shape[0]
        keys = [None] * n if keys is None else keys
        slots, resets = self._assign_slots(keys)
        if self.scale_target:
            y_scaled = np.empty((n, 1), dtype=self._net.dtype)
            loc = np.empty((n, 1))
            sc = np.empty((n, 1))
            scale_targets(self._y_mean, self._y_var, self._y_count, y, _TARGET_CLIP,
                          _TARGET_MEMORY, y_scaled, loc, sc)
        else:
            y_scaled, loc, sc = y.astype(self._net.dtype), np.zeros((n, 1)), np.ones((n, 1))
        outs, _, _ = self._net.run_batch(self._store.arrays, slots, resets, X, y_scaled,
                                         np.ones(n, dtype=bool))
        return outs[:, 0] * sc[:, 0] + loc[:, 0]
