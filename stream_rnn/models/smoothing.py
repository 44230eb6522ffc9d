"""Online exponential smoothing: one Holt-Winters-style forecaster, and a bank of them whose
smoothing constants are chosen online instead of by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
from river import time_series

from stream_rnn.models.base import check_target
from stream_rnn.models.mixture import ForecastMixture

__all__ = ["ExponentialSmoothing", "SmoothingBank"]


class ExponentialSmoothing(time_series.base.Forecaster):
    """Additive level, trend and season smoothed online (Holt-Winters, ETS(A,A,A)).

    On ``z = y`` (or ``log(y)``, which makes a multiplicative season and trend additive):
    once a season of values has been seen, the level starts at their mean, the trend at
    their mean step-to-step change and each seasonal term at its value minus the level, as
    River's ``HoltWinters`` starts. Then every value moves the level by ``alpha`` of its
    one-step error, the trend by ``beta`` of the level's change minus the trend, and the
    current seasonal term by ``gamma`` of the value minus the new level minus that term
    (Winters' original form). Until then the forecast is the last value.

    Parameters
    ----------
    season
        Seasonal period in steps; ``0``: no season (level and trend only, started from the
        first two values).
    alpha, beta, gamma
        Smoothing constants of the level (in (0, 1]), trend and season (in [0, 1]);
        ``beta=0`` keeps the initial trend.
    log
        Smooth ``log(y)`` (values must be positive).

    Examples
    --------
    A seasonal series with a trend (the next four values are 50, 54, 52, 50): the
    smoother carries both forward.

    >>> from stream_rnn.models import ExponentialSmoothing
    >>> model = ExponentialSmoothing(season=4, alpha=0.5, beta=0.1, gamma=0.5)
    >>> for t in range(40):
    ...     model.learn_one(10 + t + [0, 3, 0, -3][t % 4])
    >>> [f"{v:.1f}" for v in model.forecast(4)]
    ['50.0', '53.9', '51.8', '49.9']
    """

    def __init__(self, season: int = 0, alpha: float = 0.5, beta: float = 0.0,
                 gamma: float = 0.0, log: bool = False) -> None:
        self.season = season
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.log = log
        self._first: list[float] = []
        self._level = math.nan
        self._trend = 0.0
        self._seasonal: list[float] = []
        self._phase = 0

    @classmethod
    def _unit_test_params(cls):
        yield {"season": 3, "alpha": 0.3, "beta": 0.1, "gamma": 0.3}
        yield {"alpha": 0.8, "beta": 0.1, "log": True}

    def _validate(self) -> None:
        if not (isinstance(self.season, int | np.integer) and self.season >= 0):
            raise ValueError(f"season must be a non-negative integer, got {self.season!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha!r}")
        for name in ("beta", "gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Smooth ``y`` into the level, trend and season (``x`` is ignored)."""
        value = check_target(y, "y")
        if self.log and not value > 0:
            raise ValueError(f"y must be positive with log=True, got {value!r}")
        z = math.log(value) if self.log else value
        if math.isnan(self._level):
            self._validate()
            self._first.append(z)
            if len(self._first) >= max(2, self.season):
                first = self._first
                self._level = float(np.mean(first))
                self._trend = float(np.mean(np.diff(first)))
                self._seasonal = [v - self._level for v in first] if self.season else []
                self._first = []
            return
        s = self._seasonal[self._phase] if self.season else 0.0
        previous = self._level
        self._level = self.alpha * (z - s) + (1 - self.alpha) * (previous + self._trend)
        self._trend = self.beta * (self._level - previous) + (1 - self.beta) * self._trend
        if self.season:
            self._seasonal[self._phase] = self.gamma * (z - self._level) + (1 - self.gamma) * s
            self._phase = (self._phase + 1) % self.season

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """The next ``horizon`` values (0 before any value was learned)."""
        if math.isnan(self._level):
            if not self._first:
                return [0.0] * horizon
            zs = [self._first[-1]] * horizon
        else:
            zs = [self._level + h * self._trend
                  + (self._seasonal[(self._phase + h - 1) % self.season] if self.season else 0.0)
                  for h in range(1, horizon + 1)]
        return [math.exp(z) for z in zs] if self.log else zs


class SmoothingBank(ForecastMixture):
    """Every combination of a grid of smoothing constants, weighted online by Hedge.

    One :class:`ExponentialSmoothing` per ``(alpha, beta, gamma)`` of the grid learns every
    value; per horizon, they are weighted by Hedge with its self-tuned learning rate (see
    :class:`ForecastMixture`), so the constants that have forecast best so far come to
    dominate without anyone choosing them on the data to be forecast. The default grid
    spans slow to instant levels, nearly fixed to fast trends and seasons.

    Parameters
    ----------
    season, log
        As for :class:`ExponentialSmoothing`, shared by the whole grid.
    alphas, betas, gammas
        Values of each smoothing constant in the grid.
    horizon
        Horizons whose errors are tracked (as for :class:`ForecastMixture`).

    Examples
    --------
    A seasonal series whose growth is multiplicative: the bank's forecast a season ahead
    stays within a few percent.

    >>> import math
    >>> from stream_rnn.models import SmoothingBank
    >>> series = [100 * 1.01 ** t * (1.2 + math.sin(2 * math.pi * t / 12)) for t in range(120)]
    >>> bank = SmoothingBank(season=12, log=True)
    >>> for y in series[:108]:
    ...     bank.learn_one(y)
    >>> forecast = bank.forecast(12)
    >>> mape = sum(abs(f / y - 1) for f, y in zip(forecast, series[108:])) / 12
    >>> print(f"{len(bank.experts)} smoothers, 12-step MAPE {mape:.2f}")
    24 smoothers, 12-step MAPE 0.0...
    """

    def __init__(self, season: int = 0, log: bool = False,
                 alphas: tuple[float, ...] = (0.2, 0.5, 0.8, 1.0),
                 betas: tuple[float, ...] = (0.01, 0.1),
                 gammas: tuple[float, ...] = (0.01, 0.1, 0.5),
                 horizon: int = 12) -> None:
        self.season = season
        self.log = log
        self.alphas = alphas
        self.betas = betas
        self.gammas = gammas
        grid = itertools.product(alphas, betas, gammas if season else (0.0,))
        super().__init__(
            [ExponentialSmoothing(season, a, b, g, log) for a, b, g in grid],
            horizon=horizon, weighting="hedge",
        )

    @classmethod
    def _unit_test_params(cls):
        yield {"season": 3, "alphas": (0.3, 0.9), "betas": (0.1,), "gammas": (0.2,),
               "horizon": 3}
