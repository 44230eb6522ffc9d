"""Small online forecasters that give :class:`ForecastMixture` a reliable floor.

``SeasonalNaive`` repeats last season (optionally with last year's growth), and
``DirectLinearForecaster`` learns, with one recursive-least-squares head per horizon, how
the series departs from that seasonal-naive forecast. Both learn from each value once, in
order, and need no warm-up beyond one season: on short series (a few hundred values) they
are what a recurrent network is measured against and what it is mixed with.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from river import time_series

from stream_rnn.models.base import check_target

__all__ = ["SeasonalNaive", "DirectLinearForecaster"]


def _seasonal_naive(zs: deque, horizon: int, season: int, drift: bool) -> list[float]:
    """Seasonal-naive forecasts of the next ``horizon`` values from ``zs`` (oldest first).

    ``z_{t+h}`` is the value one season before it (the last value when ``season`` is 0 or
    there is less than a season of history); with ``drift``, plus the change over the last
    season, once per season ahead: the forecast of SARIMA(0,1,0)(0,1,0).

    Examples
    --------
    >>> from collections import deque
    >>> _seasonal_naive(deque([1.0, 5.0, 2.0, 6.0]), 3, season=2, drift=False)
    [2.0, 6.0, 2.0]
    >>> _seasonal_naive(deque([1.0, 5.0, 2.0, 6.0]), 3, season=2, drift=True)
    [3.0, 7.0, 4.0]
    """
    n = len(zs)
    if season == 0 or n < season + (1 if drift else 0):
        return [zs[-1]] * horizon
    out = []
    growth = zs[-1] - zs[-1 - season] if drift else 0.0
    for h in range(1, horizon + 1):
        seasons_back = -(-h // season)
        out.append(zs[n - 1 + h - season * seasons_back] + growth * seasons_back)
    return out


class SeasonalNaive(time_series.base.Forecaster):
    """Forecast each value as the one a season before it (the last value with no season).

    Parameters
    ----------
    season
        Seasonal period in steps; ``0`` forecasts the last value at every horizon.
    log
        Work on ``log(y)`` (values must be positive): ``drift`` then extrapolates growth
        as a ratio.
    drift
        Add last season's change (``z_{t-1} - z_{t-1-season}``) per season ahead.

    Examples
    --------
    >>> from stream_rnn.models import SeasonalNaive
    >>> model = SeasonalNaive(season=4, drift=True)
    >>> for y in [10, 12, 14, 12, 11, 13, 15, 13]:
    ...     model.learn_one(y)
    >>> model.forecast(4)
    [12.0, 14.0, 16.0, 14.0]
    """

    def __init__(self, season: int = 0, log: bool = False, drift: bool = False) -> None:
        self.season = season
        self.log = log
        self.drift = drift
        self._zs: deque = deque(maxlen=max(1, season + 1))

    @classmethod
    def _unit_test_params(cls):
        yield {"season": 3, "drift": True}

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Remember ``y`` (``x`` is ignored: the forecast reads the series only)."""
        if not (isinstance(self.season, int | np.integer) and self.season >= 0):
            raise ValueError(f"season must be a non-negative integer, got {self.season!r}")
        value = check_target(y, "y")
        if self.log and not value > 0:
            raise ValueError(f"y must be positive with log=True, got {value!r}")
        self._zs.append(math.log(value) if self.log else value)

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """The next ``horizon`` values (0 before any value was learned)."""
        if not self._zs:
            return [0.0] * horizon
        zs = _seasonal_naive(self._zs, horizon, self.season, self.drift)
        return [math.exp(z) for z in zs] if self.log else zs


class DirectLinearForecaster(time_series.base.Forecaster):
    """Seasonal-naive forecasts corrected by one online linear model per horizon.

    At every step the model reads the last ``lags`` one-step surprises of the seasonal-naive
    rule (``w_t = z_t - naive_{t-1}(1)``, scaled by their running mean magnitude), and,
    with ``level_memory``, how far the last value is from its exponential average. The
    ``h``-steps-ahead head predicts how far ``z_{t+h}`` will be from the seasonal-naive
    forecast made now; it learns when that value arrives, ``h`` steps later, by
    recursive least squares with forgetting (no iterated one-step forecasts, so errors do
    not compound). Heads start at zero, that is, at the seasonal-naive forecast.

    A few huge surprises (an outage in a flow series) would otherwise dominate least
    squares: inputs are clipped to ``feature_clip`` scaled units and a head's error to
    ``robust`` times its running mean absolute error.

    Parameters
    ----------
    season, log, drift
        The seasonal-naive rule corrected (see :class:`SeasonalNaive`).
    lags
        Past surprises read (at least 1).
    horizon
        Heads, one per step ahead; a longer forecast uses the last head beyond it.
    forgetting
        RLS forgetting factor in (0, 1]: ``1`` weighs all the past alike.
    ridge
        Prior precision of the coefficients (shrinks them towards the seasonal-naive rule).
    level_memory
        Values averaged (exponentially) into the level that the last value is compared
        with; ``0`` leaves that input out.
    robust
        Clip each head's error at this many running mean absolute errors (``0``: no clip).
    feature_clip
        Scaled inputs are clipped to ``[-feature_clip, feature_clip]``.
    period
        A calendar period (a day of hourly values) whose repeating pattern the surprises
        may follow even when the naive rule has no season.
    period_lags
        Also read the surprises one ``period`` before each of the next ``period_lags``
        values (at most ``period``; ``0``: none).

    Examples
    --------
    A seasonal series whose season grows a little every year: the heads learn the growth
    that plain seasonal naive misses.

    >>> import math
    >>> from stream_rnn.models import DirectLinearForecaster, SeasonalNaive
    >>> series = [(10 + 0.1 * t) * (2 + math.sin(2 * math.pi * t / 12)) for t in range(240)]
    >>> linear, naive = DirectLinearForecaster(season=12, lags=2), SeasonalNaive(season=12)
    >>> for y in series[:228]:
    ...     linear.learn_one(y)
    ...     naive.learn_one(y)
    >>> for model in (naive, linear):
    ...     mae = sum(abs(f - y) for f, y in zip(model.forecast(12), series[228:])) / 12
    ...     print(f"{type(model).__name__} 12-step MAE {mae:.2f}")
    SeasonalNaive 12-step MAE 2.40
    DirectLinearForecaster 12-step MAE 0.58
    """

    def __init__(
        self,
        season: int = 0,
        log: bool = False,
        drift: bool = False,
        lags: int = 2,
        horizon: int = 12,
        forgetting: float = 0.995,
        ridge: float = 10.0,
        level_memory: int = 0,
        robust: float = 2.0,
        feature_clip: float = 4.0,
        period: int = 0,
        period_lags: int = 0,
    ) -> None:
        self.season = season
        self.log = log
        self.drift = drift
        self.lags = lags
        self.horizon = horizon
        self.forgetting = forgetting
        self.ridge = ridge
        self.level_memory = level_memory
        self.robust = robust
        self.feature_clip = feature_clip
        self.period = period
        self.period_lags = period_lags
        self._zs: deque = deque(maxlen=season + 1)
        self._surprises: deque = deque(maxlen=max(1, lags, period))
        self._scale = math.nan
        self._level = math.nan
        self._n = 0
        self._theta: np.ndarray | None = None
        self._P: np.ndarray | None = None
        self._error_scale = np.full(max(1, horizon), math.nan)
        # (inputs, seasonal-naive forecasts) made after each of the last `horizon` values.
        self._pending: deque = deque(maxlen=max(1, horizon))

    @classmethod
    def _unit_test_params(cls):
        yield {"season": 3, "lags": 1, "horizon": 3}
        yield {"lags": 2, "horizon": 2, "level_memory": 5}
        yield {"lags": 1, "horizon": 2, "period": 3, "period_lags": 1}

    @property
    def _n_features(self) -> int:
        return 1 + self.lags + (1 if self.level_memory else 0) + self.period_lags

    def _validate(self) -> None:
        for name in ("season", "lags", "horizon", "level_memory", "period", "period_lags"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and value >= 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.lags < 1 or self.horizon < 1:
            raise ValueError(f"lags and horizon must be >= 1, got {self.lags}, {self.horizon}")
        if not 0.0 < self.forgetting <= 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {self.forgetting!r}")
        if not self.ridge > 0:
            raise ValueError(f"ridge must be positive, got {self.ridge!r}")
        if self.robust < 0 or not self.feature_clip > 0:
            raise ValueError("robust must be >= 0 and feature_clip positive")
        if self.period_lags > self.period:
            raise ValueError(f"period_lags ({self.period_lags}) cannot exceed period "
                             f"({self.period})")

    def _features(self) -> np.ndarray | None:
        needed = max(self.lags, self.period if self.period_lags else 0)
        if len(self._surprises) < needed or not self._scale > 0:
            return None
        c, s = self.feature_clip, self._scale
        recent = list(self._surprises)[::-1]
        values = [1.0] + [min(max(w / s, -c), c) for w in recent[: self.lags]]
        if self.level_memory:
            values.append(min(max((self._zs[-1] - self._level) / s, -c), c))
        # The surprises one period before each of the next `period_lags` values.
        values.extend(min(max(recent[self.period - j] / s, -c), c)
                      for j in range(1, self.period_lags + 1))
        return np.array(values)

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Learn ``y``: update every head whose target it is, then move the inputs on."""
        value = check_target(y, "y")
        if self.log and not value > 0:
            raise ValueError(f"y must be positive with log=True, got {value!r}")
        if self._theta is None:
            self._validate()
            d = self._n_features
            self._theta = np.zeros((self.horizon, d))
            self._P = np.repeat(np.eye(d)[None] / self.ridge, self.horizon, axis=0)
        z = math.log(value) if self.log else value
        # The entry made h steps ago holds the inputs and naive forecast whose h-th value
        # is this one (the newest entry is one step ago).
        for h, entry in enumerate(reversed(self._pending), start=1):
            if entry is not None:
                self._update_head(h - 1, entry[0], z - entry[1][h - 1])
        if self._zs:
            surprise = z - _seasonal_naive(self._zs, 1, self.season, self.drift)[0]
            self._surprises.append(surprise)
            size = abs(surprise)
            if math.isnan(self._scale):
                self._scale = size
            else:
                # Outliers move the scale by a bounded amount (4 scales at most).
                self._scale += 0.02 * (min(size, 4.0 * self._scale) - self._scale)
        if self.level_memory:
            self._level = z if math.isnan(self._level) else (
                self._level + (z - self._level) / self.level_memory)
        self._zs.append(z)
        self._n += 1
        features = self._features()
        self._pending.append(None if features is None else (
            features, _seasonal_naive(self._zs, self.horizon, self.season, self.drift)))

    def _update_head(self, head: int, features: np.ndarray, target: float) -> None:
        theta, P = self._theta[head], self._P[head]
        error = target - float(theta @ features)
        scale = self._error_scale[head]
        if math.isnan(scale):
            self._error_scale[head] = abs(error)
        else:
            if self.robust:
                bound = self.robust * scale
                error = min(max(error, -bound), bound)
            self._error_scale[head] = scale + 0.05 * (abs(error) - scale)
        Pf = P @ features
        gain = Pf / (self.forgetting + float(features @ Pf))
        theta += gain * error
        P -= np.outer(gain, Pf)
        P /= self.forgetting

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """The next ``horizon`` values (0 before any value was learned)."""
        if not self._zs:
            return [0.0] * horizon
        zs = _seasonal_naive(self._zs, horizon, self.season, self.drift)
        features = self._features()
        if features is not None and self._theta is not None:
            for h in range(horizon):
                zs[h] += float(self._theta[min(h, self.horizon - 1)] @ features)
        return [math.exp(z) for z in zs] if self.log else zs
