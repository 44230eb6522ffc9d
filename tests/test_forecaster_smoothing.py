"""Exponential smoothing and the bank of smoothers: each learns online and is measured
against seasonal naive on synthetic series."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from river.checks import common as river_checks

from stream_rnn.evaluation.forecast import evaluate_forecaster
from stream_rnn.models import ExponentialSmoothing, SeasonalNaive, SmoothingBank


def noisy_trend_and_season(n: int = 240, seed: int = 0) -> list[float]:
    """A linear trend plus a fixed 12-step season plus Gaussian noise (sd 1)."""
    rng = random.Random(seed)
    return [50 + 0.3 * t + 6 * math.sin(2 * math.pi * t / 12) + rng.gauss(0, 1)
            for t in range(n)]


def test_smoothing_beats_seasonal_naive_on_a_noisy_trend_and_season():
    ys = noisy_trend_and_season()
    smooth = evaluate_forecaster(ExponentialSmoothing(12, 0.2, 0.05, 0.1), ys, warmup=24)
    naive = evaluate_forecaster(SeasonalNaive(season=12, drift=True), ys, warmup=24)
    # Naive repeats last season's noise (and twice over with its drift); smoothing averages it.
    for h in (1, 12):
        assert smooth.at(h) < 0.7 * naive.at(h)


def test_smoothing_without_a_season_follows_a_line():
    model = ExponentialSmoothing(alpha=0.5, beta=0.5)
    for t in range(40):
        model.learn_one(3.0 + 2.0 * t)
    assert model.forecast(3) == pytest.approx([83.0, 85.0, 87.0])


def test_smoothing_on_logs_carries_a_growth_rate():
    model = ExponentialSmoothing(alpha=0.5, beta=0.5, log=True)
    for t in range(40):
        model.learn_one(2.0 * 1.05**t)
    assert model.forecast(2) == pytest.approx([2.0 * 1.05**40, 2.0 * 1.05**41], rel=1e-6)


def test_before_a_season_the_forecast_is_the_last_value():
    model = ExponentialSmoothing(season=4, alpha=0.5, beta=0.1, gamma=0.1)
    assert model.forecast(2) == [0.0, 0.0]
    for y in (5.0, 7.0, 6.0):
        model.learn_one(y)
    assert model.forecast(2) == [6.0, 6.0]


def test_bank_puts_its_weight_on_the_constants_that_suit_the_series():
    # A random walk: only a level that follows every value (alpha = 1) forecasts it well.
    rng = random.Random(3)
    ys, level = [], 100.0
    for _ in range(400):
        level += rng.gauss(0, 1)
        ys.append(level)
    bank = SmoothingBank(alphas=(0.1, 0.3, 1.0), betas=(0.01,), horizon=2)
    score = evaluate_forecaster(bank, ys, horizon=2, warmup=2)
    weights = bank.weights(1)
    assert weights[2] > 0.9
    slow = evaluate_forecaster(ExponentialSmoothing(alpha=0.1, beta=0.01), ys, horizon=2,
                               warmup=2)
    assert score.at(1) < 0.6 * slow.at(1)


def test_bank_grid_has_one_smoother_per_combination():
    assert len(SmoothingBank(season=12).experts) == 4 * 2 * 3
    # Without a season there is no seasonal constant to vary.
    assert len(SmoothingBank(season=0).experts) == 4 * 2


@pytest.mark.parametrize("model", [
    ExponentialSmoothing(alpha=0.0),
    ExponentialSmoothing(alpha=1.5),
    ExponentialSmoothing(beta=-0.1),
    ExponentialSmoothing(season=4, gamma=2.0),
    ExponentialSmoothing(season=-1),
    SmoothingBank(alphas=()),
    SmoothingBank(alphas=(0.0,)),
])
def test_bad_settings_are_refused(model):
    with pytest.raises(ValueError):
        for y in (1.0, 2.0, 3.0):
            model.learn_one(y)


@pytest.mark.parametrize("model", [ExponentialSmoothing(log=True), SmoothingBank(log=True)])
def test_log_refuses_non_positive_values(model):
    with pytest.raises(ValueError, match="positive"):
        model.learn_one(0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "high"])
def test_non_finite_values_are_refused(bad):
    for model in (ExponentialSmoothing(), SmoothingBank()):
        with pytest.raises(ValueError):
            model.learn_one(bad)


@pytest.mark.parametrize("cls", [ExponentialSmoothing, SmoothingBank])
def test_river_clone_and_pickling_checks(cls):
    for params in cls._unit_test_params():
        model = cls(**params)
        river_checks.check_pickling_supports_roundtrip(model)
        for y in (2.0, 3.0, 5.0, 4.0, 6.0, 7.0):
            model.learn_one(y)
        restored = pickle.loads(pickle.dumps(model))
        assert restored.forecast(3) == model.forecast(3)
        clone = model.clone()
        assert clone.forecast(1) == [0.0]
        assert clone._get_params().keys() == model._get_params().keys()
