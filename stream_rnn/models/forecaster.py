"""``RNNForecaster``: a univariate recurrent forecaster in River's forecaster shape."""

from __future__ import annotations

import math
from collections.abc import Hashable
from types import SimpleNamespace
from typing import Any

import numpy as np
from river import time_series

from stream_rnn.cells.scaling import location_scale, prepare_autoregressive
from stream_rnn.models.base import RNNBase, check_target

__all__ = ["RNNForecaster"]


def _difference_coefficients(diff: int, season: int, seasonal_diff: int) -> np.ndarray:
    """Coefficients ``c`` of the differencing ``(1 - B)^diff (1 - B^season)^seasonal_diff``.

    The differenced series is ``w_t = sum_j c[j] z_{t-j}`` (``c[0] = 1``).

    Examples
    --------
    >>> _difference_coefficients(1, 4, 1).tolist()
    [1.0, -1.0, 0.0, 0.0, -1.0, 1.0]
    """
    c = np.ones(1)
    for _ in range(diff):
        c = np.convolve(c, [1.0, -1.0])
    seasonal = np.zeros(season + 1)
    seasonal[0], seasonal[-1] = 1.0, -1.0
    for _ in range(seasonal_diff):
        c = np.convolve(c, seasonal)
    return c


def _unbounded(fn, x: float) -> float:
    """``fn(x)`` for an exponential-like ``fn``, infinite (with the sign) where it
    overflows: a diverged network's forecast reads as infinite rather than raising."""
    try:
        return fn(x)
    except OverflowError:
        return math.copysign(math.inf, x)


class RNNForecaster(RNNBase, time_series.base.Forecaster):
    """Forecast the next values of a series (per key) from its past and optional features.

    At each step the network reads the previous value (standardized with the key's running
    statistics) and the current exogenous features, and predicts the current value.
    ``forecast`` rolls the network forward from the key's state, feeding each forecast back
    as the next step's previous value.

    A trending or seasonal series can be modelled through a transform, as ARIMA does: with
    ``log`` the model works on ``z = log(y)``; ``diff`` and ``seasonal_diff`` then make it
    learn ``w = (1 - B)^diff (1 - B^season)^seasonal_diff z`` (``B`` shifts back one step),
    and forecasts of ``w`` are integrated back into values of ``y``. A network that outputs
    its running mean then forecasts the naive (``diff=1``) or seasonal-naive-with-drift
    (``seasonal_diff=1``) value, so learning only has to find the corrections to it. The
    network also reads ``seasonal_lags`` past values ``w_{t-season}, w_{t-2 season}, ...``,
    which a short backpropagation ``window`` could not otherwise reach. The defaults leave
    the series as it is.

    Instead of differencing, ``level_smoothing`` takes each value relative to a level and
    season smoothed online, as the ES-RNN hybrid does: the smoothing only normalizes, and
    the network forecasts what is left (a growth rate, a cycle the season cannot hold).

    A short series gives the network few values to learn from, and the forecast it makes
    while still untrained is part of the score. ``zero_head`` starts its output at exactly
    zero (the running mean of ``w``), so that early forecasts are the transform's own rule
    and learning only corrects it. ``damped`` moves that starting point to a mean-reverting
    rule: the network then learns ``w`` minus ``phi`` times the previous ``w`` (both
    standardized), ``phi`` being the key's running lag-1 autocorrelation of ``w``; ``h``
    steps ahead the rule forecasts ``phi^h`` times the last standardized ``w``, and the
    network's correction for each step is added to it rather than fed through it, so a
    correction that is slightly off does not compound over the horizon.

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
    log
        Model ``log(y)`` (every ``y`` must then be positive): a multiplicative trend or
        seasonality becomes additive.
    diff
        Order of ordinary differencing (``d`` in ARIMA).
    season
        Seasonal period, in steps (``m``); needed by ``seasonal_diff`` and ``seasonal_lags``.
    seasonal_diff
        Order of seasonal differencing (``D`` in SARIMA).
    seasonal_lags
        Past values of the (differenced) series one, two, ... seasons back fed as extra
        inputs. Until a key has that much history they read as its running mean.
    level_input
        Also feed the previous undifferenced value ``z`` (standardized with its own running
        statistics), so that a model of changes can still see how far the series is from
        its usual level, for instance to learn that a sudden drop recovers.
    squash
        Model ``asinh(w / s)`` instead of ``w``, where ``s`` is the key's running mean
        absolute ``w`` (each value counting at most four times the current ``s``, so that
        a few huge values cannot inflate it). Ordinary changes stay nearly linear; rare huge
        ones (an outage) are compressed to a few units, so they no longer inflate the
        standardization through which the network sees the ordinary ones. Forecasts are
        mapped back with ``s * sinh``.
    damped
        Learn and forecast ``w`` as departures from a mean-reverting rule, ``phi`` times the
        previous standardized ``w``, with ``phi`` the key's running lag-1 autocorrelation of
        standardized ``w`` (clipped to [0, 1]; 0 until a key has two values of ``w``).
        Suits a differenced series whose changes persist for a while and then fade, such as
        a seasonal growth rate.
    zero_head
        Start the network's output layer at zero, so that the network forecasts the running
        mean (or, with ``damped``, the rule) until it has learned otherwise.
    level_smoothing
        Normalize the series by exponential smoothing, as ES-RNN does (``None``: off).
        Each key keeps a level ``l`` and, with a ``season``, one seasonal term ``s`` per
        phase (started once a season of values has been seen, as
        :class:`~stream_rnn.models.ExponentialSmoothing` starts). The network then models
        ``w_t = z_t - l_{t-1} - s_{t-season}``, the value relative to the smoothed level and
        season before it, and each ``w_t`` moves the level by ``level_smoothing`` times
        ``w_t`` and the season by ``season_smoothing`` of what is left (Holt-Winters'
        updates, without a trend: a trend is for the network to forecast). Forecasts
        roll the level and season forward with the network's own forecasts of ``w``. With
        ``log``, a multiplicative level and season become additive. Not combined with
        ``diff``, ``seasonal_diff`` or ``seasonal_lags``.
    season_smoothing
        Smoothing constant of the seasonal terms (in [0, 1]; used with
        ``level_smoothing`` and a ``season``).

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

    A growing seasonal series, learned on logs after removing last season's value:

    >>> model = RNNForecaster(hidden_size=8, lr=0.01, log=True, season=12, seasonal_diff=1,
    ...                       seed=2)
    >>> series = [100 * 1.01 ** t * (1.2 + math.sin(2 * math.pi * t / 12)) for t in range(240)]
    >>> for y in series[:228]:
    ...     model.learn_one(y)
    >>> forecast = model.forecast(horizon=12)
    >>> mape = sum(abs(f / y - 1) for f, y in zip(forecast, series[228:])) / 12
    >>> print(f"12-step MAPE {mape:.2f}")
    12-step MAPE 0.0...

    The same series relative to a smoothed level and season, the network forecasting the
    rest:

    >>> model = RNNForecaster(hidden_size=8, lr=0.01, log=True, season=12,
    ...                       level_smoothing=0.3, season_smoothing=0.3, zero_head=True, seed=2)
    >>> for y in series[:228]:
    ...     model.learn_one(y)
    >>> forecast = model.forecast(horizon=12)
    >>> mape = sum(abs(f / y - 1) for f, y in zip(forecast, series[228:])) / 12
    >>> print(f"12-step MAPE {mape:.3f}")
    12-step MAPE 0.000...
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
        log: bool = False,
        diff: int = 0,
        season: int = 0,
        seasonal_diff: int = 0,
        seasonal_lags: int = 0,
        level_input: bool = False,
        squash: bool = False,
        damped: bool = False,
        zero_head: bool = False,
        level_smoothing: float | None = None,
        season_smoothing: float = 0.1,
    ) -> None:
        self._init_common(
            cell=cell, hidden_size=hidden_size, num_layers=num_layers, window=window,
            update_every=update_every, optimizer=optimizer, lr=lr, clip_norm=clip_norm,
            seed=seed, activation=activation, weight_decay=weight_decay, dropout=dropout,
            max_keys=max_keys, input_size=input_size, dtype=dtype,
        )
        self.scale_memory = scale_memory
        self.clip = clip
        self.log = log
        self.diff = diff
        self.season = season
        self.seasonal_diff = seasonal_diff
        self.seasonal_lags = seasonal_lags
        self.level_input = level_input
        self.squash = squash
        self.damped = damped
        self.zero_head = zero_head
        self.level_smoothing = level_smoothing
        self.season_smoothing = season_smoothing
        self._coef = np.ones(1)

    @property
    def _loss(self) -> str:
        return "mse"

    def _target_size(self) -> int:
        return 1

    @property
    def _dims(self) -> int:
        """Values scaled per key: ``w``, and ``z`` itself when it is an input too."""
        return 2 if self.level_input else 1

    def _network_inputs(self) -> int:
        return self._dims + self.seasonal_lags + self._n_inputs

    @property
    def _history_size(self) -> int:
        """Past values of ``z`` a key keeps.

        Enough to difference the current value and the values ``seasonal_lags`` seasons back.
        """
        size = self._coef.size - 1 + self.seasonal_lags * self.season
        # Smoothing keeps the last value for forecasts made before it has started.
        return max(size, 1) if self._smoothing else size

    @property
    def _smoothing(self) -> bool:
        return self.level_smoothing is not None

    def _extra_rows_for(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        rows = {
            "scale_mean": ((self._dims,), np.float64),
            "scale_var": ((self._dims,), np.float64),
            "scale_count": ((), np.int64),
            "last": ((self._dims,), np.float64),
            # Most recent first; at least one column so that every row has a shape.
            "history": ((max(1, self._history_size),), np.float64),
            "history_len": ((), np.int64),
            # Running mean absolute w and values counted, for `squash`.
            "squash_scale": ((), np.float64),
            "squash_count": ((), np.int64),
        }
        if self.damped:
            # Running means of u * y and u * u (standardized previous and current w) and
            # the values counted. Only damped models have them, so that the state of a
            # model without the option loads as it did before the option existed.
            rows["damp_moments"] = ((2,), np.float64)
            rows["damp_count"] = ((), np.int64)
        if self._smoothing:
            # Level, seasonal terms by phase (holding the first season's values until they
            # start), and the values seen. Only smoothing models have them, for the same
            # reason.
            rows["smooth_level"] = ((), np.float64)
            rows["smooth_season"] = ((max(1, self.season),), np.float64)
            rows["smooth_count"] = ((), np.int64)
        return rows

    def _validate_transform(self) -> None:
        for name in ("diff", "season", "seasonal_diff", "seasonal_lags"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and value >= 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("damped", "zero_head"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if (self.seasonal_diff or self.seasonal_lags) and self.season < 1:
            raise ValueError("seasonal_diff and seasonal_lags need a season >= 1")
        if self._smoothing:
            alpha, gamma = self.level_smoothing, self.season_smoothing
            if isinstance(alpha, bool) or not (isinstance(alpha, int | float | np.number)
                                               and 0.0 < alpha <= 1.0):
                raise ValueError(f"level_smoothing must be None or in (0, 1], got {alpha!r}")
            if isinstance(gamma, bool) or not (isinstance(gamma, int | float | np.number)
                                               and 0.0 <= gamma <= 1.0):
                raise ValueError(f"season_smoothing must be in [0, 1], got {gamma!r}")
            if self.diff or self.seasonal_diff or self.seasonal_lags:
                raise ValueError("level_smoothing replaces differencing: it cannot be "
                                 "combined with diff, seasonal_diff or seasonal_lags")

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden_size": 4, "window": 4, "update_every": 2}
        yield {"cell": "gru", "hidden_size": 3}
        yield {"hidden_size": 4, "window": 4, "diff": 1, "season": 3, "seasonal_diff": 1,
               "seasonal_lags": 1}
        yield {"hidden_size": 4, "window": 4, "diff": 1, "season": 2, "seasonal_lags": 1,
               "squash": True}
        yield {"hidden_size": 3, "window": 4, "season": 3, "seasonal_diff": 1, "damped": True,
               "zero_head": True}
        yield {"hidden_size": 3, "window": 4, "season": 3, "level_smoothing": 0.3,
               "season_smoothing": 0.5, "zero_head": True}

    def _ensure_built(self, x: dict | None) -> None:
        if self._net is None:
            self._validate_transform()
            self._coef = _difference_coefficients(self.diff, self.season, self.seasonal_diff)
            self._build(list(x or {}))
            if self.zero_head:
                v, _, end = self._net.layout.head_offsets
                self._net.theta[v:end] = 0.0
            self._make_buffers()

    def _make_buffers(self) -> None:
        buf = self._buf = SimpleNamespace()
        dt = self._net.dtype
        buf.x = np.zeros(self._n_inputs, dtype=np.float64)
        buf.yraw = np.zeros((1, self._dims), dtype=np.float64)
        buf.U1 = np.zeros((1, self._dims), dtype=dt)
        buf.Y1 = np.zeros((1, self._dims), dtype=dt)
        buf.u = np.zeros(self._network_inputs(), dtype=dt)
        buf.valid = np.zeros(1, dtype=np.bool_)
        buf.slot1 = np.zeros(1, dtype=np.int64)
        buf.reset1 = np.zeros(1, dtype=np.bool_)
        buf.out = np.zeros(1, dtype=dt)
        buf.target = np.zeros(1, dtype=dt)

    def _lagged(self, zs: np.ndarray, n: int, lag: int) -> float:
        """``w`` at ``lag`` steps before the value about to arrive (NaN if out of reach).

        ``zs`` holds past values of ``z``, most recent first, ``n`` of them valid.
        """
        k = self._coef.size - 1
        if n < lag + k:
            return math.nan
        return float(self._coef @ zs[lag - 1 : lag + k])

    def _seasonal_inputs(self, zs: np.ndarray, n: int, loc: float, scale: float,
                         squash_scale: float, out: np.ndarray) -> None:
        for i in range(self.seasonal_lags):
            w = self._lagged(zs, n, (i + 1) * self.season)
            if self.squash:
                w = math.asinh(w / squash_scale)
            # A lag the key has not lived long enough to have reads as the running mean.
            out[i] = 0.0 if math.isnan(w) else min(max((w - loc) / scale, -self.clip), self.clip)

    def _squash_scale(self, arrays: dict[str, np.ndarray], slot: int) -> float:
        """``s`` of ``squash`` (1 until the key has seen a change)."""
        value = float(arrays["squash_scale"][slot])
        return value if value > 0 else 1.0

    def _fold_squash_scale(self, arrays: dict[str, np.ndarray], slot: int, w: float) -> None:
        count = arrays["squash_count"][slot] = arrays["squash_count"][slot] + 1
        old, size = float(arrays["squash_scale"][slot]), abs(w)
        memory = min(int(count), self.scale_memory) if self.scale_memory else int(count)
        # Until a nonzero change, the scale is the first size seen; then a huge value moves
        # it by at most four scales over the memory.
        arrays["squash_scale"][slot] = size if not old > 0 else (
            old + (min(size, 4.0 * old) - old) / memory)

    def _damping(self, arrays: dict[str, np.ndarray], slot: int) -> float:
        """``phi`` of ``damped``: the key's lag-1 autocorrelation of standardized ``w``."""
        uy, uu = arrays["damp_moments"][slot]
        return min(max(uy / uu, 0.0), 1.0) if uu > 0 else 0.0

    def _fold_damping(self, arrays: dict[str, np.ndarray], slot: int, previous: float,
                      current: float) -> None:
        count = arrays["damp_count"][slot] = arrays["damp_count"][slot] + 1
        memory = min(int(count), self.scale_memory) if self.scale_memory else int(count)
        moments = arrays["damp_moments"][slot]
        moments[0] += (previous * current - moments[0]) / memory
        moments[1] += (previous * previous - moments[1]) / memory

    def _fold_smoothing(self, arrays: dict[str, np.ndarray], slot: int, z: float) -> float:
        """``w`` of ``level_smoothing`` for the value ``z``, folded into the level and season
        (NaN while the first season is still being collected)."""
        count = int(arrays["smooth_count"][slot])
        arrays["smooth_count"][slot] = count + 1
        period = max(1, self.season)
        terms = arrays["smooth_season"][slot]
        if count < period:
            terms[count] = z
            if count == period - 1:
                level = arrays["smooth_level"][slot] = terms.mean()
                if self.season:
                    terms -= level
                else:
                    terms[:] = 0.0
            return math.nan
        phase = count % period
        level = float(arrays["smooth_level"][slot])
        w = z - level - float(terms[phase])
        alpha = float(self.level_smoothing)
        arrays["smooth_level"][slot] = level + alpha * w
        if self.season:
            # Winters' gamma * (z - new level) + (1 - gamma) * old term, written with w.
            terms[phase] += float(self.season_smoothing) * (1.0 - alpha) * w
        return w

    def learn_one(self, y: float, x: dict | None = None, key: Hashable | None = None,
                  **kwargs: Any) -> None:
        """Learn the next value ``y`` of ``key``'s series, with its features ``x``."""
        y_value = check_target(y, "y")
        if self.log and not y_value > 0:
            raise ValueError(f"y must be positive with log=True, got {y_value!r}")
        self._ensure_built(x)
        self._vectorize(x or {}, self._buf.x, learning=True)
        slot, is_new = self._store.slot_for(self._key(key))
        if is_new:
            self._store.clear(slot)
        arrays = self._store.arrays
        z = math.log(y_value) if self.log else y_value
        history = arrays["history"][slot]
        n_history = int(arrays["history_len"][slot])
        k = self._coef.size - 1
        if self._smoothing:
            # The value the network models: z relative to the smoothed level and season.
            w = self._fold_smoothing(arrays, slot, z)
        else:
            # The value the network models: z differenced with the history before it.
            w = z + float(self._coef[1:] @ history[:k]) if n_history >= k else math.nan
        if not math.isnan(w):
            squash_scale = 1.0
            if self.squash:
                self._fold_squash_scale(arrays, slot, w)
                squash_scale = self._squash_scale(arrays, slot)
                w = math.asinh(w / squash_scale)
            buf = self._buf
            dims, n_lags = self._dims, self.seasonal_lags
            if n_lags:
                loc, scale = location_scale(arrays["scale_mean"], arrays["scale_var"],
                                            arrays["scale_count"], slot, 0)
                self._seasonal_inputs(history, n_history, loc, scale, squash_scale,
                                      buf.u[dims : dims + n_lags])
            buf.slot1[0] = slot
            buf.yraw[0, 0] = w
            if dims == 2:
                buf.yraw[0, 1] = z
            # Inputs are the previous w (and z), targets the current ones; only w is learned.
            prepare_autoregressive(buf.slot1, buf.reset1, buf.yraw, arrays["scale_mean"],
                                   arrays["scale_var"], arrays["scale_count"], arrays["last"],
                                   self.clip, self.scale_memory, buf.U1, buf.Y1, buf.valid)
            if buf.valid[0]:
                buf.u[:dims] = buf.U1[0]
                buf.u[dims + n_lags :] = buf.x
                buf.target[0] = buf.Y1[0, 0]
                if self.damped:
                    previous, current = float(buf.U1[0, 0]), float(buf.Y1[0, 0])
                    # The rule's phi from the values before this one, then this pair joins it.
                    buf.target[0] = current - self._damping(arrays, slot) * previous
                    self._fold_damping(arrays, slot, previous, current)
                self._net.learn(arrays, slot, buf.u, buf.target, buf.out)
        if self._history_size:
            history[1:] = history[:-1]
            history[0] = z
            arrays["history_len"][slot] = min(n_history + 1, self._history_size)

    def _smoother(self, arrays: dict[str, np.ndarray], slot: int):
        """For a key whose smoothing has started, a function mapping each next forecast of
        ``w`` to the forecast of ``z``, rolling a copy of the level and season forward as
        :meth:`_fold_smoothing` would; None otherwise."""
        if not self._smoothing:
            return None
        count = int(arrays["smooth_count"][slot])
        period = max(1, self.season)
        if count < period:
            return None
        alpha = float(self.level_smoothing)
        season_step = float(self.season_smoothing) * (1.0 - alpha) if self.season else 0.0
        level = float(arrays["smooth_level"][slot])
        terms = arrays["smooth_season"][slot].astype(np.float64)
        phase = count % period

        def step(w: float) -> float:
            nonlocal level, phase
            z = level + float(terms[phase]) + w
            level += alpha * w
            terms[phase] += season_step * w
            phase = (phase + 1) % period
            return z

        return step

    def forecast(self, horizon: int, xs: list[dict] | None = None,
                 key: Hashable | None = None) -> list[float]:
        """The next ``horizon`` values of ``key``'s series (``xs``: their features, if any)."""
        if xs is not None and len(xs) != horizon:
            raise ValueError(f"xs has {len(xs)} entries for a horizon of {horizon}")
        if self._net is None:
            return [0.0] * horizon
        slot = self._store.get(self._key(key))
        if slot < 0:
            return [0.0] * horizon
        arrays = self._store.arrays
        n_history = int(arrays["history_len"][slot])
        smoother = self._smoother(arrays, slot)
        if arrays["scale_count"][slot] == 0:
            if smoother is not None:
                # The smoothing has just started: its own forecast, level plus season.
                zs = [smoother(0.0) for _ in range(horizon)]
                return [_unbounded(math.exp, z) for z in zs] if self.log else zs
            # Not one differenced value yet: the last value is all there is to go on.
            last = float(arrays["history"][slot, 0])
            return [math.exp(last) if self.log else last] * horizon
        loc, scale = location_scale(arrays["scale_mean"], arrays["scale_var"],
                                    arrays["scale_count"], slot, 0)
        state = arrays["state"][slot].copy()
        previous = float(arrays["last"][slot, 0])
        dims, n_lags = self._dims, self.seasonal_lags
        if dims == 2:
            level_loc, level_scale = location_scale(arrays["scale_mean"], arrays["scale_var"],
                                                    arrays["scale_count"], slot, 1)
            previous_z = float(arrays["last"][slot, 1])
        squash_scale = self._squash_scale(arrays, slot)
        damping = self._damping(arrays, slot) if self.damped else 0.0
        # The rule's own path, in standardized units: phi^h times the last w.
        rule = min(max((previous - loc) / scale, -self.clip), self.clip)
        k = self._coef.size - 1
        # Past values then forecasts, most recent first, for undoing the differencing.
        zs = np.concatenate([np.zeros(horizon), arrays["history"][slot, :n_history]])
        u = np.zeros(self._network_inputs(), dtype=self._net.dtype)
        exog = np.zeros(self._n_inputs, dtype=np.float64)
        out = []
        for h in range(horizon):
            known = zs[horizon - h :]
            self._vectorize(xs[h] if xs is not None else {}, exog, learning=False)
            u[0] = np.clip((previous - loc) / scale, -self.clip, self.clip)
            if dims == 2:
                u[1] = np.clip((previous_z - level_loc) / level_scale, -self.clip, self.clip)
            if n_lags:
                self._seasonal_inputs(known, n_history + h, loc, scale, squash_scale,
                                      u[dims : dims + n_lags])
            u[dims + n_lags :] = exog
            state, head = self._net.step(state, u)
            rule *= damping
            previous = (float(head[0]) + rule) * scale + loc
            w = squash_scale * _unbounded(math.sinh, previous) if self.squash else previous
            if smoother is not None:
                z = smoother(w)
            else:
                z = w - float(self._coef[1:] @ known[:k]) if k else w
            zs[horizon - h - 1] = previous_z = z
            out.append(_unbounded(math.exp, z) if self.log else z)
        return out
