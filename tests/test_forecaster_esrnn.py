"""RNNForecaster's exponential-smoothing normalization (ES-RNN): the level and season
against a plain reference, the network's gain over the smoothing alone measured on a
synthetic series, state round trips and refused settings."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from stream_rnn.evaluation.forecast import evaluate_forecaster
from stream_rnn.models import RNNForecaster

# No update before 16 learned steps, so the output layer is still where it started.
UNTRAINED = dict(hidden_size=4, window=16, update_every=16, seed=0, dtype="float64")


def reference_smoothing(zs: list[float], season: int, alpha: float, gamma: float
                        ) -> tuple[list[float], float, list[float]]:
    """Holt-Winters without a trend, written out: the first season starts the level (its
    mean) and the seasonal terms (each value minus that mean); then each value's surprise
    ``w = z - level - term`` updates the level to ``alpha (z - term) + (1 - alpha) level``
    and the term to ``gamma (z - new level) + (1 - gamma) term``. Returns the surprises,
    the final level and the terms in the order of the phases to come."""
    level = float(np.mean(zs[:season]))
    terms = [z - level for z in zs[:season]]
    ws = []
    for t in range(season, len(zs)):
        term = terms[t % season]
        ws.append(zs[t] - level - term)
        new_level = alpha * (zs[t] - term) + (1 - alpha) * level
        terms[t % season] = gamma * (zs[t] - new_level) + (1 - gamma) * term
        level = new_level
    phase = len(zs) % season
    return ws, level, terms[phase:] + terms[:phase]


def cycling_series(n: int, seed: int) -> list[float]:
    """A growing monthly series with a multiplicative season and a 5-step cycle on top:
    the smoothing takes out the level and the season; the cycle (which no seasonal term
    can hold, its period not dividing 12) is left for the network."""
    rng = random.Random(seed)
    noise = 0.0
    ys = []
    for t in range(n):
        noise = 0.5 * noise + rng.gauss(0, 0.01)
        z = (math.log(100.0) + 0.005 * t + 0.2 * math.sin(2 * math.pi * t / 12)
             + 0.05 * math.sin(2 * math.pi * t / 5) + noise)
        ys.append(math.exp(z))
    return ys


def test_untrained_forecast_is_the_smoothing_rolled_forward_with_the_mean_surprise():
    zs = [3.0, 5.0, 4.0, 1.0, 3.5, 5.2, 4.4, 1.1, 3.9, 5.0, 4.9, 1.6]
    model = RNNForecaster(**UNTRAINED, season=4, level_smoothing=0.3, season_smoothing=0.6,
                          zero_head=True)
    for z in zs:
        model.learn_one(z)
    ws, level, terms = reference_smoothing(zs, 4, 0.3, 0.6)
    assert model._store.arrays["smooth_level"][0] == pytest.approx(level, rel=1e-12)
    # A zero output is the running mean of w: each forecast step adds it to the level and
    # season, then folds it in as the smoothing would fold in that value.
    mean_w = float(np.mean(ws))
    expected = []
    for h in range(6):
        expected.append(level + terms[h % 4] + mean_w)
        level += 0.3 * mean_w
        terms[h % 4] += 0.6 * 0.7 * mean_w
    assert model.forecast(6) == pytest.approx(expected, rel=1e-9)


def test_forecasts_before_and_just_after_the_first_season():
    model = RNNForecaster(**UNTRAINED, season=3, level_smoothing=0.5, log=True)
    assert model.forecast(2) == [0.0, 0.0]
    for y in (2.0, 8.0):
        model.learn_one(y)
    assert model.forecast(2) == pytest.approx([8.0, 8.0])  # the last value
    model.learn_one(4.0)
    # Started: the level is the geometric mean, 4, and each term the value's ratio to it.
    assert model.forecast(4) == pytest.approx([2.0, 8.0, 4.0, 2.0])


def test_without_a_season_only_the_level_is_smoothed():
    model = RNNForecaster(**UNTRAINED, level_smoothing=0.5, zero_head=True)
    for y in (10.0, 12.0, 11.0, 15.0):
        model.learn_one(y)
    ws, level = [], 10.0
    for y in (12.0, 11.0, 15.0):
        ws.append(y - level)
        level += 0.5 * ws[-1]
    mean_w = float(np.mean(ws))
    assert model.forecast(2) == pytest.approx([level + mean_w, level + 1.5 * mean_w])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_network_forecasts_what_the_smoothing_leaves(seed):
    ys = cycling_series(360, seed)
    params = dict(cell="gru", hidden_size=8, window=12, optimizer="adam", log=True, season=12,
                  level_smoothing=0.3, season_smoothing=0.3, zero_head=True, seed=seed)
    untrained = evaluate_forecaster(RNNForecaster(**params, lr=1e-12), ys, warmup=24)
    trained = evaluate_forecaster(RNNForecaster(**params, lr=0.005), ys, warmup=24)
    # The smoothing alone, without even the mean surprise, from the reference recursion.
    zs = [math.log(y) for y in ys]
    alone = []
    for t in range(24, len(ys) - 11):
        _, level, terms = reference_smoothing(zs[:t], 12, 0.3, 0.3)
        alone.append(abs(math.exp(level + terms[0]) - ys[t]))
    for h in (1, 12):
        assert trained.at(h) < 0.5 * untrained.at(h)
    assert trained.at(1) < 0.5 * float(np.mean(alone))


def test_smoothing_state_round_trips_and_other_states_keep_their_arrays():
    ys = cycling_series(40, 0)
    smoothed = RNNForecaster(hidden_size=4, window=4, log=True, season=12,
                             level_smoothing=0.3, season_smoothing=0.6)
    plain = RNNForecaster(hidden_size=4, window=4, log=True, season=12, seasonal_diff=1)
    for y in ys:
        smoothed.learn_one(y)
        plain.learn_one(y)
    restored = RNNForecaster.from_state(*smoothed.export_state())
    assert restored.forecast(12) == smoothed.forecast(12)
    assert pickle.loads(pickle.dumps(smoothed)).forecast(12) == smoothed.forecast(12)
    restored.learn_one(ys[0])
    smoothed.learn_one(ys[0])
    assert restored.forecast(3) == smoothed.forecast(3)
    # Without the option the state has the arrays it had before the option existed.
    assert not any(name.startswith("store/smooth") for name in plain.export_state()[1])


def test_forecasting_does_not_move_the_smoothing():
    model = RNNForecaster(hidden_size=4, window=4, season=4, level_smoothing=0.3)
    for y in [3.0, 5.0, 4.0, 1.0, 3.5, 5.2, 4.4, 1.1]:
        model.learn_one(y)
    first = model.forecast(8)
    assert model.forecast(8) == first


def test_keys_are_smoothed_separately():
    model = RNNForecaster(**UNTRAINED, season=2, level_smoothing=0.5, zero_head=True)
    for t in range(6):
        model.learn_one(10.0 + t % 2, key="a")
        model.learn_one(1000.0, key="b")
    assert model.forecast(2, key="a") == pytest.approx([10.0, 11.0])
    assert model.forecast(2, key="b") == pytest.approx([1000.0, 1000.0])


@pytest.mark.parametrize(("params", "message"), [
    ({"level_smoothing": 0.0}, "level_smoothing must be None or in \\(0, 1\\]"),
    ({"level_smoothing": 1.5}, "level_smoothing must be None or in \\(0, 1\\]"),
    ({"level_smoothing": True}, "level_smoothing must be None or in \\(0, 1\\]"),
    ({"level_smoothing": "0.3"}, "level_smoothing must be None or in \\(0, 1\\]"),
    ({"level_smoothing": 0.3, "season_smoothing": -0.1}, "season_smoothing must be in"),
    ({"level_smoothing": 0.3, "season_smoothing": math.nan}, "season_smoothing must be in"),
    ({"level_smoothing": 0.3, "diff": 1}, "cannot be combined with diff"),
    ({"level_smoothing": 0.3, "season": 12, "seasonal_diff": 1}, "cannot be combined"),
    ({"level_smoothing": 0.3, "season": 12, "seasonal_lags": 1}, "cannot be combined"),
])
def test_bad_smoothing_settings_are_refused_before_anything_is_learned(params, message):
    with pytest.raises(ValueError, match=message):
        RNNForecaster(hidden_size=4, **params)._validate_transform()
    model = RNNForecaster(hidden_size=4, **params)
    with pytest.raises(ValueError, match=message):
        model.learn_one(1.0)
    assert model.n_keys == 0
