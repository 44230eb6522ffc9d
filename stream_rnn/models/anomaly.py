"""``RNNAnomalyDetector``: surprise of each reading under the entity's own forecast."""

from __future__ import annotations

import math
from collections.abc import Hashable
from types import SimpleNamespace
from typing import Any

import numpy as np
from river import base

from stream_rnn.cells._flags import jit
from stream_rnn.cells.scaling import (
    autoregressive_step,
    gaussian_surprise,
    location_scale,
    prepare_autoregressive,
    reset_scaler_slot,
)
from stream_rnn.models.base import RNNBase

__all__ = ["RNNAnomalyDetector"]


class RNNAnomalyDetector(RNNBase, base.AnomalyDetector):
    """Score each reading by how far it falls from the entity's forecast of it.

    For every key (a sensor), the network reads the key's previous reading and forecasts
    the current one as a Gaussian per feature (mean and log-variance heads). The score is
    the mean squared standardized residual ``mean_k ((x_k - mu_k) / sigma_k)^2``: about 1
    for a reading the model expected, large for a surprise. Readings are standardized per
    key with running statistics, so sensors in different units share one set of weights.

    ``score_one`` changes nothing; ``learn_one`` moves the key's state and statistics and
    learns. A key's first reading scores 0 (there is nothing to forecast it from).

    Parameters
    ----------
    cell, hidden_size, num_layers, window, update_every, optimizer, lr, clip_norm, seed
        As for :class:`~stream_rnn.models.RNNRegressor`.
    scale_memory
        Readings after which the per-key statistics become an exponential average (so a
        drifting sensor is rescaled); ``0`` keeps them cumulative.
    clip
        Standardized inputs and targets are clipped to ``[-clip, clip]``.
    activation, weight_decay, dropout, max_keys, input_size, dtype
        As for :class:`~stream_rnn.models.RNNRegressor`.

    Examples
    --------
    >>> import math
    >>> from stream_rnn.models import RNNAnomalyDetector
    >>> detector = RNNAnomalyDetector(hidden_size=8, window=8, seed=3)
    >>> scores = []
    >>> for t in range(2000):
    ...     x = {"temp": 20 + 5 * math.sin(t / 10) + (15 if t == 1900 else 0)}
    ...     scores.append(detector.score_one(x))
    ...     detector.learn_one(x)
    >>> typical = sorted(scores[1500:1899])[len(scores[1500:1899]) // 2]
    >>> print(f"spike {scores[1900]:.0f} vs typical {typical:.1f}")
    spike ... vs typical ...
    >>> scores[1900] > 50 * typical
    True
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
        return "gaussian"

    def _target_size(self) -> int:
        return self._n_inputs

    def _extra_rows_for(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        D = self._n_inputs
        return {
            "scale_mean": ((D,), np.float64),
            "scale_var": ((D,), np.float64),
            "scale_count": ((), np.int64),
            "last": ((D,), np.float64),
        }

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden_size": 4, "window": 4, "update_every": 2}
        yield {"cell": "elman", "hidden_size": 3, "input_size": 40}

    def _ensure_built(self, x: dict) -> None:
        if self._net is None:
            self._build(list(x))
            self._make_buffers()

    def _make_buffers(self) -> None:
        buf = self._buf = SimpleNamespace()
        D = self._n_inputs
        dt = self._net.dtype
        buf.x = np.zeros((1, D), dtype=np.float64)
        buf.U = np.zeros((1, D), dtype=dt)
        buf.Y = np.zeros((1, D), dtype=dt)
        buf.valid = np.zeros(1, dtype=np.bool_)
        buf.out = np.zeros(2 * D, dtype=dt)
        buf.z = np.zeros((1, D), dtype=np.float64)
        buf.slot1 = np.zeros(1, dtype=np.int64)
        buf.reset1 = np.zeros(1, dtype=np.bool_)

    def _prepare(self, slot: int, reset: bool, commit: bool) -> bool:
        """Scaled (previous, current) readings of one key into ``_U``/``_Y``; with
        ``commit`` also fold the reading into the key's statistics. Returns validity."""
        arrays = self._store.arrays
        self._buf.slot1[0] = slot
        self._buf.reset1[0] = reset
        if commit:
            mean, var, count, last = (arrays["scale_mean"], arrays["scale_var"],
                                      arrays["scale_count"], arrays["last"])
        else:
            # Scoring must not move the statistics: work on copies of this key's row.
            mean = arrays["scale_mean"][slot : slot + 1].copy()
            var = arrays["scale_var"][slot : slot + 1].copy()
            count = arrays["scale_count"][slot : slot + 1].copy()
            last = arrays["last"][slot : slot + 1].copy()
            self._buf.slot1[0] = 0
        buf = self._buf
        prepare_autoregressive(buf.slot1, buf.reset1, buf.x, mean, var, count, last, self.clip,
                               self.scale_memory, buf.U, buf.Y, buf.valid)
        return bool(self._buf.valid[0])

    def score_one(self, x: dict, key: Hashable | None = None, **kwargs: Any) -> float:
        if self._net is None:
            return 0.0
        self._vectorize(x, self._buf.x[0], learning=False)
        slot = self._store.get(self._key(key))
        if slot < 0 or not self._prepare(slot, reset=False, commit=False):
            return 0.0
        self._net.predict_bound(self._bound(), slot, self._buf.U[0], self._buf.out)
        gaussian_surprise(self._buf.out[None, :], self._buf.Y, self._buf.z)
        return float(np.mean(self._buf.z[0] ** 2))

    def forecast_one(self, key: Hashable | None = None) -> dict[Hashable, tuple[float, float]]:
        """The key's forecast of its next reading: feature -> ``(mean, std)`` in the
        reading's own units; empty before the key's first reading."""
        if self._net is None:
            return {}
        slot = self._store.get(self._key(key))
        arrays = self._store.arrays
        if slot < 0 or arrays["scale_count"][slot] == 0:
            return {}
        self._buf.x[0] = arrays["last"][slot]
        self._prepare(slot, reset=False, commit=False)
        self._net.predict(arrays, slot, self._buf.U[0], self._buf.out)
        D = self._n_inputs
        result = {}
        for name, k in self._features.items():
            loc, scale = location_scale(arrays["scale_mean"], arrays["scale_var"],
                                        arrays["scale_count"], slot, k)
            logvar = min(max(float(self._buf.out[D + k]), -12.0), 12.0)
            result[name] = (float(self._buf.out[k]) * scale + loc, math.exp(0.5 * logvar) * scale)
        return result

    def learn_one(self, x: dict, key: Hashable | None = None, **kwargs: Any) -> None:
        self._ensure_built(x)
        self._vectorize(x, self._buf.x[0], learning=True)
        slot, is_new = self._store.slot_for(self._key(key))
        if is_new:
            self._store.clear(slot)
        if self._prepare(slot, reset=False, commit=True):
            buf = self._buf
            self._net.learn_bound(self._bound(), slot, buf.U[0], buf.Y[0], buf.out)

    def score_learn_many(self, X: np.ndarray, keys: list[Hashable] | None = None,
                         return_forecast: bool = False
                         ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch path: score each row, then learn from it, in two compiled calls.

        ``X`` is ``(N, input_size)`` raw readings in feature-slot order (see
        ``feature_names``), ``keys`` one key per row (``None``: the global sequence).
        Identical to ``score_one`` then ``learn_one`` row by row. Returns the scores.

        With ``return_forecast`` also returns ``(means, stds)``, each ``(N, input_size)``:
        the forecast of each row made before seeing it, in raw units, the same numbers
        :meth:`forecast_one` gives just before the row is learned; NaN for a key's first
        reading (nothing to forecast it from). They come from the scoring pass itself.
        """
        if self._net is None:
            raise RuntimeError("learn at least one event with learn_one to fix the features")
        X = np.ascontiguousarray(X, dtype=np.float64)
        D = self._n_inputs
        if X.ndim != 2 or X.shape[1] != D:
            raise ValueError(f"X must be (N, {D}), got {X.shape}")
        bad = ~np.isfinite(X)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"feature {self.feature_names[col]!r} is not finite in row {row}")
        n = X.shape[0]
        keys = [None] * n if keys is None else keys
        slots, resets = self._assign_slots(keys)
        arrays = self._store.arrays
        dt = self._net.dtype
        U = np.empty((n, D), dtype=dt)
        Y = np.empty((n, D), dtype=dt)
        valid = np.empty(n, dtype=np.bool_)
        if return_forecast:
            loc = np.empty((n, D), dtype=np.float64)
            scale = np.empty((n, D), dtype=np.float64)
            _prepare_recording_scale(slots, resets, X, arrays["scale_mean"],
                                     arrays["scale_var"], arrays["scale_count"],
                                     arrays["last"], self.clip, self.scale_memory, U, Y, valid,
                                     loc, scale)
        else:
            prepare_autoregressive(slots, resets, X, arrays["scale_mean"], arrays["scale_var"],
                                   arrays["scale_count"], arrays["last"], self.clip,
                                   self.scale_memory, U, Y, valid)
        outs, _, _ = self._net.run_batch(arrays, slots, resets, U, Y, valid)
        z = np.empty((n, D), dtype=np.float64)
        gaussian_surprise(outs, Y, z)
        scores = np.mean(z**2, axis=1)
        scores[~valid] = 0.0
        if not return_forecast:
            return scores
        # The same arithmetic as forecast_one, row-wise: head outputs back to raw units.
        means = outs[:, :D].astype(np.float64) * scale + loc
        logvar = np.clip(outs[:, D:].astype(np.float64), -12.0, 12.0)
        stds = np.exp(0.5 * logvar) * scale
        means[~valid] = np.nan
        stds[~valid] = np.nan
        return scores, means, stds


@jit
def _prepare_recording_scale(slots, resets, X, mean, var, count, last, clip, memory, U, Y,
                             valid, loc, scale):
    """:func:`prepare_autoregressive`, also recording the location and scale each row's
    target was standardized with (the key's statistics just before the row), so the
    network's outputs for that row can be mapped back to raw units."""
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            reset_scaler_slot(s, mean, var, count, last)
        for k in range(X.shape[1]):
            a, b = location_scale(mean, var, count, s, k)
            loc[i, k] = a
            scale[i, k] = b
        autoregressive_step(i, s, X, mean, var, count, last, clip, memory, U, Y, valid)
