"""``ForecastMixture``: forecasters combined per horizon by their recent accuracy."""

from __future__ import annotations

import copy
import math
from collections import deque

import numpy as np
from river import time_series

from stream_rnn.models.base import check_target

__all__ = ["ForecastMixture"]



def _combine(weights, forecasts) -> float:
    """The weighted forecast over the experts whose forecast is finite: one diverged
    expert (an infinite forecast) must not turn the mixture's forecast into NaN."""
    weights = np.asarray(weights, dtype=np.float64)
    finite = np.isfinite(forecasts)
    if finite.all():
        return float(np.dot(weights, forecasts))
    kept = weights * finite
    if not finite.any() or kept.sum() <= 0.0:
        return math.nan
    return float(np.dot(kept, np.where(finite, forecasts, 0.0)) / kept.sum())

class ForecastMixture(time_series.base.Forecaster):
    """An online mixture of forecasters, weighted per horizon by recent absolute error.

    Every expert learns every value. After each value, each expert forecasts ``horizon``
    steps; when a value arrives, the forecasts that targeted it (made ``h`` steps earlier)
    update each expert's exponentially weighted MAE at horizon ``h``. The mixture's ``h``-step
    forecast weights the experts by ``exp(-sharpness * mae / best_mae)`` at that horizon: a
    relative score, so the same ``sharpness`` suits any scale of series, and a member that
    is worse by a fraction of the best one's error still counts (averaging forecasts whose
    errors partly cancel beats picking one). Until a horizon has seen ``h`` values scored,
    the experts are averaged.

    With ``weighting="hedge"`` the weights are Hedge's instead: ``exp(-eta * L)`` where
    ``L`` is each expert's cumulative absolute error at that horizon (minus the best one's)
    and ``eta = sqrt(8 ln N / G)``, with ``G`` the running sum of squared ranges of the
    experts' errors: the anytime learning rate of the regret bound for losses of unknown
    range, so that there is nothing to tune and no scale to know. It suits many similar
    experts (a grid of settings of one method) whose best member should win in the long
    run; the relative rule suits a few different methods that take turns.

    A value far outside the series' usual behaviour (an outage) costs every expert a huge
    error that would decide the weights for a long time: with ``error_clip``, errors are
    clipped at that many times the best expert's recent MAE before they are averaged.

    Weights come from the forecasts made while learning, without future features; the
    mixture's own forecasts pass ``xs`` on to the experts.

    Parameters
    ----------
    experts
        Forecasters (``learn_one(y, x)``, ``forecast(horizon, xs)``), copied: the mixture
        learns its own copies.
    horizon
        Horizons whose errors are tracked; a longer forecast weighs its later steps as the
        last tracked horizon.
    memory
        Errors averaged (exponentially) into each expert's recent MAE.
    sharpness
        How strongly a relatively worse MAE lowers a weight; ``0`` averages the experts.
    weighting
        ``"relative"`` (recent MAE relative to the best one's) or ``"hedge"`` (cumulative
        error with Hedge's self-tuned learning rate; ``memory`` and ``sharpness`` unused).
    error_clip
        Clip errors at this many times the best expert's recent MAE (``0``: no clipping).

    Examples
    --------
    A series that is seasonal, then shifts level: repeating the last value is better
    right after the shift, repeating last season better elsewhere. The mixture follows
    whichever has been better recently, at each horizon: one step ahead it beats both; six
    steps ahead it pays for the six steps it needs to see the shift in its scores.

    >>> import math
    >>> from stream_rnn.evaluation.forecast import evaluate_forecaster
    >>> from stream_rnn.models import ForecastMixture, SeasonalNaive
    >>> series = [10 + 3 * math.sin(2 * math.pi * t / 12) + (8 if t > 150 else 0)
    ...           for t in range(300)]
    >>> experts = [SeasonalNaive(season=12), SeasonalNaive()]
    >>> mixture = ForecastMixture(experts, horizon=6, memory=6)
    >>> for model in [*experts, mixture]:
    ...     score = evaluate_forecaster(model, series, horizon=6, warmup=12)
    ...     print(f"MAE@1 {score.at(1):.3f}  MAE@6 {score.at(6):.3f}")
    MAE@1 0.339  MAE@6 0.339
    MAE@1 1.019  MAE@6 3.741
    MAE@1 0.132  MAE@6 0.446
    """

    def __init__(self, experts: list, horizon: int = 12, memory: int = 24,
                 sharpness: float = 5.0, weighting: str = "relative",
                 error_clip: float = 0.0) -> None:
        self.experts = experts
        self.horizon = horizon
        self.memory = memory
        self.sharpness = sharpness
        self.weighting = weighting
        self.error_clip = error_clip
        self._experts = [copy.deepcopy(expert) for expert in experts]
        self._mae = np.full((max(1, horizon), len(experts)), math.nan)
        # Hedge: cumulative errors per horizon and expert, and sums of squared error ranges.
        self._loss = np.zeros((max(1, horizon), len(experts)))
        self._range2 = np.zeros(max(1, horizon))
        self._scored = np.zeros(max(1, horizon), dtype=np.int64)
        # Expert forecasts (experts x horizon) made after each of the last `horizon` values.
        self._pending: deque = deque(maxlen=max(1, horizon))

    @classmethod
    def _unit_test_params(cls):
        from stream_rnn.models.seasonal import SeasonalNaive

        yield {"experts": [SeasonalNaive(season=3), SeasonalNaive()], "horizon": 3}
        yield {"experts": [SeasonalNaive(season=2), SeasonalNaive()], "horizon": 2,
               "weighting": "hedge", "error_clip": 3.0}

    def _validate(self) -> None:
        if not self.experts:
            raise ValueError("a mixture needs at least one expert")
        if not (isinstance(self.horizon, int | np.integer) and self.horizon >= 1):
            raise ValueError(f"horizon must be a positive integer, got {self.horizon!r}")
        if not self.memory >= 1:
            raise ValueError(f"memory must be >= 1, got {self.memory!r}")
        if not self.sharpness >= 0:
            raise ValueError(f"sharpness must be >= 0, got {self.sharpness!r}")
        if self.weighting not in ("relative", "hedge"):
            raise ValueError(
                f"weighting must be 'relative' or 'hedge', got {self.weighting!r}")
        if not self.error_clip >= 0:
            raise ValueError(f"error_clip must be >= 0, got {self.error_clip!r}")

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Score the forecasts that targeted ``y``, then let every expert learn it."""
        self._validate()
        value = check_target(y, "y")
        for h, forecasts in enumerate(reversed(self._pending), start=1):
            errors = np.abs(forecasts[:, h - 1] - value)
            mae = self._mae[h - 1]
            if self.error_clip and not np.isnan(mae).any():
                errors = np.minimum(errors, self.error_clip * float(mae.min()))
            self._loss[h - 1] += errors
            self._range2[h - 1] += float(errors.max() - errors.min()) ** 2
            n = self._scored[h - 1] = self._scored[h - 1] + 1
            rate = max(1.0 / n, 1.0 / self.memory)
            self._mae[h - 1] = np.where(np.isnan(mae), errors, mae + rate * (errors - mae))
        for expert in self._experts:
            expert.learn_one(value, x)
        self._pending.append(np.array([expert.forecast(self.horizon)
                                       for expert in self._experts], dtype=np.float64))

    def weights(self, h: int = 1) -> list[float]:
        """Current weights of the experts in the ``h``-steps-ahead forecast (they sum to 1)."""
        if h < 1:
            raise ValueError(f"h must be >= 1, got {h}")
        row = min(h, self.horizon) - 1
        if self.weighting == "hedge":
            return self._hedge_weights(row)
        mae = self._mae[row]
        if np.isnan(mae).any() or not np.all(np.isfinite(mae)):
            return [1.0 / len(self._experts)] * len(self._experts)
        best = float(mae.min())
        relative = mae / best if best > 0 else np.where(mae > 0, np.inf, 1.0)
        w = np.exp(-self.sharpness * (relative - 1.0))
        return (w / w.sum()).tolist()

    def _hedge_weights(self, row: int) -> list[float]:
        n = len(self._experts)
        if n == 1 or not self._range2[row] > 0:
            return [1.0 / n] * n
        eta = math.sqrt(8.0 * math.log(n) / self._range2[row])
        loss = self._loss[row]
        w = np.exp(-eta * (loss - loss.min()))
        return (w / w.sum()).tolist()

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """Weighted forecasts of the next ``horizon`` values."""
        if xs is None and self._pending and horizon <= self.horizon:
            # Exactly what the experts forecast after the last value: no need to ask again.
            forecasts = self._pending[-1][:, :horizon]
        else:
            forecasts = np.array([expert.forecast(horizon, xs) for expert in self._experts],
                                 dtype=np.float64)
        return [_combine(self.weights(h), forecasts[:, h - 1]) for h in range(1, horizon + 1)]
