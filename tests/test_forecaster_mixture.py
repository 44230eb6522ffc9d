"""The seasonal-naive and direct linear forecasters and the online mixture: each learns
online and is measured against its members on synthetic series."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from river.checks import common as river_checks
from test_forecast_eval import Constant

from stream_rnn.evaluation.forecast import evaluate_forecaster
from stream_rnn.models import (
    DirectLinearForecaster,
    ForecastMixture,
    RNNForecaster,
    SeasonalNaive,
)


def seasonal_with_level_shift(n: int = 360, shift_at: int = 180, seed: int = 0) -> list[float]:
    """A noisy 12-step season whose level jumps by 8 once."""
    rng = random.Random(seed)
    return [10 + 3 * math.sin(2 * math.pi * t / 12) + (8 if t >= shift_at else 0)
            + rng.gauss(0, 0.3) for t in range(n)]


def test_seasonal_naive_repeats_last_season_and_adds_its_growth():
    model = SeasonalNaive(season=3, log=True, drift=True)
    for y in (1.0, 2.0, 4.0, 2.0, 4.0, 8.0):
        model.learn_one(y)
    # Each value doubled over the last season: the next season doubles again.
    assert model.forecast(4) == pytest.approx([4.0, 8.0, 16.0, 8.0])


def test_seasonal_naive_without_a_full_season_repeats_the_last_value():
    model = SeasonalNaive(season=12)
    assert model.forecast(2) == [0.0, 0.0]
    model.learn_one(5.0)
    assert model.forecast(2) == [5.0, 5.0]


def test_direct_heads_learn_what_the_naive_rule_misses():
    # An AR(1) in differences: naive misses the momentum, the heads learn it per horizon.
    rng = random.Random(1)
    ys, level, step = [], 100.0, 0.0
    for _ in range(600):
        step = 0.8 * step + rng.gauss(0, 1)
        level += step
        ys.append(level)
    linear = evaluate_forecaster(DirectLinearForecaster(lags=2, horizon=4), ys, horizon=4)
    naive = evaluate_forecaster(SeasonalNaive(), ys, horizon=4)
    for h in (1, 4):
        assert linear.at(h) < 0.8 * naive.at(h)


def test_robust_heads_shrug_off_an_outage():
    # A quiet AR series with two 10-step outages far outside its usual range.
    rng = random.Random(2)
    ys, value = [], 0.0
    for t in range(800):
        value = 0.7 * value + rng.gauss(0, 1)
        ys.append(-200.0 if t % 400 in range(300, 310) else value)
    quiet = [t for t in range(620, 700)]

    def quiet_mae(model):
        errors = []
        for t, y in enumerate(ys):
            if t in quiet:
                errors.append(abs(model.forecast(1)[0] - y))
            model.learn_one(y)
        return sum(errors) / len(errors)

    robust = quiet_mae(DirectLinearForecaster(lags=2, horizon=1, robust=2.0, level_memory=20))
    plain = quiet_mae(DirectLinearForecaster(lags=2, horizon=1, robust=0.0, level_memory=20,
                                             feature_clip=1e9))
    assert robust < plain


def test_period_lags_learn_a_daily_pattern_in_the_changes():
    # A random walk whose steps repeat yesterday's step (plus noise): the last few steps say
    # nothing about the next one, the step one period ago does.
    rng = random.Random(4)
    ys, steps, level = [], [], 100.0
    for t in range(1200):
        step = (0.6 * steps[t - 24] if t >= 24 else 0.0) + rng.gauss(0, 1)
        steps.append(step)
        level += step
        ys.append(level)
    plain = evaluate_forecaster(DirectLinearForecaster(lags=2, horizon=1), ys, horizon=1,
                                warmup=24)
    daily = evaluate_forecaster(DirectLinearForecaster(lags=2, horizon=1, period=24,
                                                       period_lags=1), ys, horizon=1,
                                warmup=24)
    assert daily.at(1) < 0.9 * plain.at(1)


def test_mixture_beats_each_member_on_a_seasonal_series_with_a_level_shift():
    ys = seasonal_with_level_shift()
    experts = [SeasonalNaive(season=12), SeasonalNaive(),
               DirectLinearForecaster(season=12, lags=2, horizon=3)]
    mixture = ForecastMixture(experts, horizon=3, memory=12, sharpness=5.0)
    scores = [evaluate_forecaster(model, ys, horizon=3, warmup=12)
              for model in [*experts, mixture]]
    best_member = min(score.at(1) for score in scores[:-1])
    assert scores[-1].at(1) < best_member


def test_mixture_weights_follow_the_recently_better_expert():
    ys = seasonal_with_level_shift(n=240, shift_at=1000)
    mixture = ForecastMixture([SeasonalNaive(season=12), SeasonalNaive()], horizon=2)
    assert mixture.weights(1) == [0.5, 0.5]
    for y in ys:
        mixture.learn_one(y)
    weights = mixture.weights(1)
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] > 0.9
    # Beyond the tracked horizons, the last one's weights apply.
    assert mixture.weights(5) == mixture.weights(2)


def test_hedge_weights_by_hand():
    # Errors of the two constants on 0.0, 1.0 are (0, 1) then (1, 0), then (0, 1) again:
    # cumulative (1, 2), squared ranges sum to 3, so eta = sqrt(8 ln 2 / 3).
    mixture = ForecastMixture([Constant(0.0), Constant(1.0)], horizon=1, weighting="hedge")
    assert mixture.weights(1) == [0.5, 0.5]
    for y in (0.0, 0.0, 1.0, 0.0):
        mixture.learn_one(y)
    eta = math.sqrt(8 * math.log(2) / 3)
    expected = 1 / (1 + math.exp(-eta))
    assert mixture.weights(1) == pytest.approx([expected, 1 - expected])


def test_hedge_settles_on_the_best_of_many_similar_experts():
    rng = random.Random(5)
    ys = [rng.gauss(10.0, 1.0) for _ in range(1000)]
    experts = [Constant(c) for c in (8.0, 9.0, 9.5, 10.0, 10.5, 11.0, 12.0)]
    hedge = ForecastMixture(experts, horizon=1, weighting="hedge")
    relative = ForecastMixture(experts, horizon=1)
    scores = [evaluate_forecaster(m, ys, horizon=1, warmup=1) for m in (hedge, relative)]
    assert hedge.weights(1)[3] > 0.9
    # The relative rule keeps weight on the near misses, Hedge learns they are worse.
    assert scores[0].at(1) < scores[1].at(1)


def test_error_clip_keeps_one_outage_from_deciding_the_weights():
    # Constant 0 is right on the usual values, constant 1 is off by 1; one outage of -1000
    # costs both about the same huge error, which without clipping swamps their difference.
    ys = [0.0] * 30 + [-1000.0] + [0.0] * 3
    weights = {}
    for clip in (0.0, 3.0):
        mixture = ForecastMixture([Constant(0.0), Constant(1.0)], horizon=1, memory=24,
                                  error_clip=clip)
        for y in ys:
            mixture.learn_one(y)
        weights[clip] = mixture.weights(1)[0]
    assert weights[3.0] > 0.9 > weights[0.0]


def test_mixture_with_no_sharpness_averages_its_experts():
    mixture = ForecastMixture([SeasonalNaive(season=2), SeasonalNaive()], horizon=2,
                              sharpness=0.0)
    for y in (1.0, 3.0, 1.0, 5.0):
        mixture.learn_one(y)
    # Season of 2 says 1, 5; the last value says 5, 5.
    assert mixture.forecast(2) == pytest.approx([3.0, 5.0])


def test_mixture_learns_copies_and_leaves_its_experts_untouched():
    naive = SeasonalNaive()
    mixture = ForecastMixture([naive], horizon=1)
    mixture.learn_one(3.0)
    assert naive.forecast(1) == [0.0]
    assert mixture.forecast(1) == [3.0]


def test_mixture_with_an_rnn_member_learns_online_and_pickles():
    ys = seasonal_with_level_shift(n=120)
    mixture = ForecastMixture([RNNForecaster(hidden_size=4, window=4, diff=1, seed=0),
                               SeasonalNaive(season=12)], horizon=4)
    score = evaluate_forecaster(mixture, ys, horizon=4, warmup=12)
    assert all(math.isfinite(v) for v in score.mae)
    restored = pickle.loads(pickle.dumps(mixture))
    assert restored.forecast(4) == mixture.forecast(4)


@pytest.mark.parametrize("model", [
    ForecastMixture([], horizon=2),
    ForecastMixture([SeasonalNaive()], horizon=0),
    ForecastMixture([SeasonalNaive()], memory=0),
    ForecastMixture([SeasonalNaive()], sharpness=-1.0),
    ForecastMixture([SeasonalNaive()], weighting="best"),
    ForecastMixture([SeasonalNaive()], error_clip=-1.0),
    DirectLinearForecaster(period=2, period_lags=3),
    DirectLinearForecaster(period=-1),
    DirectLinearForecaster(lags=0),
    DirectLinearForecaster(forgetting=1.5),
    DirectLinearForecaster(ridge=0.0),
    DirectLinearForecaster(season=-1),
    SeasonalNaive(season=-2),
])
def test_bad_settings_are_refused_at_the_first_value(model):
    with pytest.raises(ValueError):
        model.learn_one(1.0)


@pytest.mark.parametrize("model", [SeasonalNaive(log=True), DirectLinearForecaster(log=True)])
def test_log_refuses_non_positive_values(model):
    with pytest.raises(ValueError, match="positive"):
        model.learn_one(-1.0)
    assert model.forecast(1) == [0.0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, "high"])
def test_non_finite_values_are_refused(bad):
    for model in (SeasonalNaive(), DirectLinearForecaster(), ForecastMixture([SeasonalNaive()])):
        with pytest.raises(ValueError):
            model.learn_one(bad)


@pytest.mark.parametrize("cls", [SeasonalNaive, DirectLinearForecaster, ForecastMixture])
def test_river_clone_and_pickling_checks(cls):
    for params in cls._unit_test_params():
        model = cls(**params)
        river_checks.check_pickling_supports_roundtrip(model)
        for y in (2.0, 3.0, 5.0, 4.0):
            model.learn_one(y)
        restored = pickle.loads(pickle.dumps(model))
        assert restored.forecast(3) == model.forecast(3)
        clone = model.clone()
        assert clone.forecast(1) == [0.0]
        assert clone._get_params().keys() == model._get_params().keys()
