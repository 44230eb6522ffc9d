"""``RNNForecaster``: a univariate recurrent forecaster in River's forecaster shape."""

from __future__ import annotations

from collections.abc import Hashable
from types import SimpleNamespace
from typing import Any

import numpy as np
from river import time_series

from stream_rnn.cells.scaling import location_scale, prepare_autoregressive
from stream_rnn.models.base import RNNBase, check_target

__all__ = ["RNNForecaster"]


class RNNForecaster(RNNBase, time_series.base.Forecaster):
    """Forecast the next values of a series (per key) from its past and optional features.

    At each step the network reads the previous value (standardized with the key's running
    statistics) and the current exogenous features, and predicts the current value.
    ``forecast`` rolls the network forward from the key's state, feeding each forecast back
    as the next step's previous value.

    Parameters
    ----------
    cell, hidden_size, num_layers, window, update_every, optimizer, lr, clip_norm, seed
        As for :class:`~stream_rnn.models.RNNRegressor`.
    scale_memory
        Values after which the running statistics become an exponential average; ``0``
        keeps them cumulative.
    clip
        Standardized values are clipped to ``[-clip, clip]``.
    activation, weight_decay, dropout, max_keys, input_size, dtype
        As for :class:`~stream_rnn.models.RNNRegressor`; ``input_size`` counts exogenous
        features only.

    Examples
    --------
    >>> import math
    >>> from stream_rnn.models import RNNForecaster
    >>> model = RNNForecaster(hidden_size=16, window=12, update_every=4, lr=0.01, seed=2)
    >>> series = [10 + 3 * math.sin(2 * math.pi * t / 12) for t in range(1200)]
    >>> for y in series[:1188]:
    ...     model.learn_one(y)
    >>> forecast = model.forecast(horizon=12)
    >>> mae = sum(abs(f - y) for f, y in zip(forecast, series[1188:])) / 12
    >>> print(f"12-step MAE {mae:.2f}")
    12-step MAE 0.0...
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
        scale_memory: int = 10_000,
        clip: float = 10.0,
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
        self.scale_memory = scale_memory
        self.clip = clip

    @property
    def _loss(self) -> str:
        return "mse"

    def _target_size(self) -> int:
        return 1

    def _network_inputs(self) -> int:
        return 1 + self._n_inputs

    def _extra_rows_for(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {
            "scale_mean": ((1,), np.float64),
            "scale_var": ((1,), np.float64),
            "scale_count": ((), np.int64),
            "last": ((1,), np.float64),
        }

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden_size": 4, "window": 4, "update_every": 2}
        yield {"cell": "gru", "hidden_size": 3}

    def _ensure_built(self, x: dict | None) -> None:
        if self._net is None:
            self._build(list(x or {}))
            self._make_buffers()

    def _make_buffers(self) -> None:
        buf = self._buf = SimpleNamespace()
        dt = self._net.dtype
        buf.x = np.zeros(self._n_inputs, dtype=np.float64)
        buf.yraw = np.zeros((1, 1), dtype=np.float64)
        buf.U1 = np.zeros((1, 1), dtype=dt)
        buf.Y1 = np.zeros((1, 1), dtype=dt)
        buf.u = np.zeros(1 + self._n_inputs, dtype=dt)
        buf.valid = np.zeros(1, dtype=np.bool_)
        buf.slot1 = np.zeros(1, dtype=np.int64)
        buf.reset1 = np.zeros(1, dtype=np.bool_)
        buf.out = np.zeros(1, dtype=dt)

    def learn_one(self, y: float, x: dict | None = None, key: Hashable | None = None,
                  **kwargs: Any) -> None:
        y_value = check_target(y, "y")
        self._ensure_built(x)
        self._vectorize(x or {}, self._buf.x, learning=True)
        slot, is_new = self._store.slot_for(self._key(key))
        if is_new:
            self._store.clear(slot)
        arrays = self._store.arrays
        self._buf.slot1[0] = slot
        self._buf.yraw[0, 0] = y_value
        prepare_autoregressive(self._buf.slot1, self._buf.reset1, self._buf.yraw, arrays["scale_mean"],
                               arrays["scale_var"], arrays["scale_count"], arrays["last"],
                               self.clip, self.scale_memory, self._buf.U1, self._buf.Y1, self._buf.valid)
        if self._buf.valid[0]:
            self._buf.u[0] = self._buf.U1[0, 0]
            self._buf.u[1:] = self._buf.x
            self._net.learn(arrays, slot, self._buf.u, self._buf.Y1[0], self._buf.out)

    def forecast(self, horizon: int, xs: list[dict] | None = None,
                 key: Hashable | None = None) -> list[float]:
        if xs is not None and len(xs) != horizon:
            raise ValueError(f"xs has {len(xs)} entries for a horizon of {horizon}")
        if self._net is None:
            return [0.0] * horizon
        slot = self._store.get(self._key(key))
        if slot < 0:
            return [0.0] * horizon
        arrays = self._store.arrays
        loc, scale = location_scale(arrays["scale_mean"], arrays["scale_var"],
                                    arrays["scale_count"], slot, 0)
        state = arrays["state"][slot].copy()
        previous = float(arrays["last"][slot, 0])
        u = np.zeros(1 + self._n_inputs, dtype=self._net.dtype)
        exog = np.zeros(self._n_inputs, dtype=np.float64)
        out = []
        for h in range(horizon):
            self._vectorize(xs[h] if xs is not None else {}, exog, learning=False)
            u[0] = np.clip((previous - loc) / scale, -self.clip, self.clip)
            u[1:] = exog
            state, head = self._net.step(state, u)
            previous = float(head[0]) * scale + loc
            out.append(previous)
        return out
