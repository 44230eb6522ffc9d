"""Rolling (progressive) evaluation of online forecasters at several horizons.

The protocol, for a series ``y_0 .. y_{N-1}`` with optional features ``x_0 .. x_{N-1}``:
at every time ``t`` the forecaster, which has learned ``y_0 .. y_{t-1}`` and nothing
else, is asked for ``horizon`` values. Once the first ``warmup`` values have been
learned, and as long as all ``horizon`` targets exist, the absolute error of its
``h``-th forecast against the value that actually arrives is recorded for every ``h``.
Only then does it learn ``y_t``. Each horizon's MAE averages over the same evaluated
steps, so horizons are comparable. No value is ever learned twice: the model sees the
stream once, in order, as it would live.

This is the loop of River's ``evaluate.iter_evaluate`` (``time_series.iter_evaluate`` in
older releases) with one difference, kept as an option: River asks for the forecast at
``t`` before learning ``y_t`` but scores it against ``y_{t+1} .. y_{t+horizon}``, so its
``+1`` column is a two-steps-ahead forecast. ``river_alignment=True`` reproduces River's
numbers exactly (with ``warmup=horizon``); the default scores ``h = 1`` against the first
unseen value ``y_t``.

The module only calls ``learn_one(y, x=...)`` and ``forecast(horizon, xs=...)``, so it
evaluates River forecasters, :class:`~stream_rnn.models.RNNForecaster` and plain test
doubles alike, without importing any of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ForecastScore", "rolling_forecast_errors", "evaluate_forecaster"]


@dataclass(frozen=True)
class ForecastScore:
    """Per-horizon MAE of one rolling evaluation.

    Attributes
    ----------
    mae
        ``mae[h - 1]`` is the mean absolute error of the ``h``-steps-ahead forecasts.
    n_steps
        Evaluated steps (forecasts per horizon).
    seconds
        Wall time of the whole run, learning included.
    """

    mae: tuple[float, ...]
    n_steps: int
    seconds: float

    def at(self, h: int) -> float:
        """MAE of the ``h``-steps-ahead forecasts (``h`` counts from 1)."""
        if not 1 <= h <= len(self.mae):
            raise ValueError(f"h must be in [1, {len(self.mae)}], got {h}")
        return self.mae[h - 1]


def rolling_forecast_errors(
    model: Any,
    ys: Sequence[float],
    xs: Sequence[dict | None] | None = None,
    horizon: int = 12,
    warmup: int = 12,
    river_alignment: bool = False,
) -> np.ndarray:
    """Absolute errors of a rolling evaluation, ``(n_steps, horizon)``.

    Row ``i`` holds the errors of the forecasts made at the ``i``-th evaluated step, column
    ``h - 1`` the ``h``-steps-ahead one (see the module docstring for the protocol).

    Parameters
    ----------
    model
        Anything with ``learn_one(y, x=None)`` and ``forecast(horizon, xs=None)``; it is
        mutated (it learns every value of ``ys``).
    ys
        The series, in time order.
    xs
        Features per time step (``None`` entries or no ``xs``: the model gets ``x=None``
        and ``xs=None``).
    horizon
        Steps forecast at every evaluated time.
    warmup
        Values learned before the first evaluated forecast (at least 1).
    river_alignment
        Score the forecasts made at ``t`` against ``y_{t+1} .. y_{t+horizon}`` as River's
        ``evaluate.iter_evaluate`` does, instead of ``y_t .. y_{t+horizon-1}``.

    Examples
    --------
    A forecaster that always says 10, on ``0, 2, 4, ..., 14`` with one value of warm-up:
    steps ``t = 1 .. 6`` are evaluated (``t = 7`` has no second target); at ``t`` the
    targets are ``y_t = 2t`` and ``y_{t+1} = 2t + 2``.

    >>> class Ten:
    ...     def learn_one(self, y, x=None):
    ...         pass
    ...     def forecast(self, horizon, xs=None):
    ...         return [10.0] * horizon
    >>> errors = rolling_forecast_errors(Ten(), [0, 2, 4, 6, 8, 10, 12, 14], horizon=2,
    ...                                  warmup=1)
    >>> errors.tolist()
    [[8.0, 6.0], [6.0, 4.0], [4.0, 2.0], [2.0, 0.0], [0.0, 2.0], [2.0, 4.0]]
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")
    y = np.asarray(ys, dtype=np.float64)
    n = y.shape[0]
    if xs is not None and len(xs) != n:
        raise ValueError(f"xs has {len(xs)} entries for {n} values")
    lead = 1 if river_alignment else 0
    rows: list[np.ndarray] = []
    for t in range(n):
        first = t + lead
        if t >= warmup and first + horizon <= n:
            future = None if xs is None else list(xs[first : first + horizon])
            if future is not None and all(f is None for f in future):
                future = None
            predicted = np.asarray(model.forecast(horizon, xs=future), dtype=np.float64)
            if predicted.shape != (horizon,):
                raise ValueError(
                    f"forecast returned shape {predicted.shape} for a horizon of {horizon}"
                )
            rows.append(np.abs(predicted - y[first : first + horizon]))
        model.learn_one(float(y[t]), x=None if xs is None else xs[t])
    if not rows:
        return np.zeros((0, horizon), dtype=np.float64)
    return np.vstack(rows)


def evaluate_forecaster(
    model: Any,
    ys: Sequence[float],
    xs: Sequence[dict | None] | None = None,
    horizon: int = 12,
    warmup: int = 12,
    river_alignment: bool = False,
) -> ForecastScore:
    """Per-horizon MAE of a rolling evaluation (see :func:`rolling_forecast_errors`).

    Examples
    --------
    The forecaster that always says 10 again: at ``h = 1`` the errors are
    ``8, 6, 4, 2, 0, 2`` (one per evaluated step), at ``h = 2`` they are ``6, 4, 2, 0, 2, 4``.

    >>> class Ten:
    ...     def learn_one(self, y, x=None):
    ...         pass
    ...     def forecast(self, horizon, xs=None):
    ...         return [10.0] * horizon
    >>> score = evaluate_forecaster(Ten(), [0, 2, 4, 6, 8, 10, 12, 14], horizon=2, warmup=1)
    >>> print(score.n_steps, f"{score.at(1):.3f}", f"{score.at(2):.3f}")
    6 3.667 3.000
    """
    start = time.perf_counter()
    errors = rolling_forecast_errors(model, ys, xs, horizon=horizon, warmup=warmup,
                                     river_alignment=river_alignment)
    seconds = time.perf_counter() - start
    if errors.shape[0] == 0:
        raise ValueError(
            f"no step to evaluate: {len(ys)} values leave none after a warm-up of {warmup} "
            f"with a horizon of {horizon}"
        )
    return ForecastScore(mae=tuple(float(v) for v in errors.mean(axis=0)),
                         n_steps=int(errors.shape[0]), seconds=seconds)
