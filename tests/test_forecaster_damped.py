"""RNNForecaster's zero-started output and mean-reverting rule: exact forecasts before any
update, phi against a NumPy reference, and learning measured on synthetic series."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from stream_rnn.evaluation.forecast import evaluate_forecaster
from stream_rnn.models import RNNForecaster

# No update before 16 learned steps, so the output layer is still where it started.
UNTRAINED = dict(hidden_size=4, window=16, update_every=16, seed=0)


def reference_phi(ws: list[float]) -> float:
    """Lag-1 regression through the origin of w standardized, as the model sees each pair:
    the previous and current w, both scaled with the running (population) statistics of
    the values before the current one."""
    uy = uu = 0.0
    for i in range(1, len(ws)):
        past = np.asarray(ws[:i])
        loc, scale = past.mean(), (past.std() if i > 1 else 1.0)
        u, y = (ws[i - 1] - loc) / scale, (ws[i] - loc) / scale
        uy, uu = uy + u * y, uu + u * u
    return min(max(uy / uu, 0.0), 1.0)


def test_zero_head_forecasts_the_running_mean_change_before_learning():
    model = RNNForecaster(**UNTRAINED, diff=1, zero_head=True)
    for y in [0.0, 1.0, 3.0, 6.0, 10.0]:  # changes 1, 2, 3, 4: mean 2.5
        model.learn_one(y)
    assert model.forecast(3) == pytest.approx([12.5, 15.0, 17.5], abs=1e-5)


def test_damped_rule_decays_the_last_change_towards_the_mean_by_phi_per_step():
    ws = [1.0, 3.0, 4.0, 2.0, 0.0, 1.0, 2.0, 4.0, 5.0]
    ys = np.concatenate([[0.0], np.cumsum(ws)]).tolist()
    model = RNNForecaster(**UNTRAINED, diff=1, damped=True, zero_head=True, dtype="float64")
    for y in ys:
        model.learn_one(y)
    phi = reference_phi(ws)
    assert 0.3 < phi < 1.0
    loc, scale = np.mean(ws), np.std(ws)
    forecast = model.forecast(4)
    changes = np.diff([ys[-1], *forecast])
    expected = loc + scale * (ws[-1] - loc) / scale * phi ** np.arange(1, 5)
    assert changes == pytest.approx(expected, rel=1e-9)


def test_damping_is_zero_for_changes_that_alternate():
    ys = np.cumsum([1.0, -1.0] * 20).tolist()
    model = RNNForecaster(**UNTRAINED, diff=1, damped=True)
    for y in ys:
        model.learn_one(y)
    assert model._damping(model._store.arrays, 0) == 0.0


def mean_reverting_growth(n: int, seed: int) -> list[float]:
    """Monthly values whose log grows by an AR(1) rate (0.8 per month) around 10% a year,
    times a fixed season: yearly growth that persists for months, then fades."""
    rng = random.Random(seed)
    season = [0.15 * math.sin(2 * math.pi * m / 12) for m in range(12)]
    zs = [math.log(100.0) + season[t] for t in range(12)]
    growth = 0.1
    for t in range(12, n):
        growth = 0.1 + 0.8 * (growth - 0.1) + rng.gauss(0, 0.03)
        zs.append(zs[t - 12] + growth)
    return [math.exp(z) for z in zs]


def test_damped_rule_keeps_twelve_step_forecasts_from_chasing_a_passing_growth_rate():
    ys = mean_reverting_growth(360, seed=1)
    params = dict(cell="gru", hidden_size=8, window=12, optimizer="adam", lr=0.003, log=True,
                  season=12, seasonal_diff=1, seed=0)
    plain = evaluate_forecaster(RNNForecaster(**params), ys, warmup=24)
    damped = evaluate_forecaster(RNNForecaster(**params, damped=True, zero_head=True), ys,
                                 warmup=24)
    assert damped.at(12) < 0.9 * plain.at(12)
    assert damped.at(1) < plain.at(1)


def test_the_network_learns_what_the_damped_rule_misses():
    # Changes with a 6-step cycle under AR(1) noise: the rule sees only the last change,
    # the network's state can learn the cycle.
    rng = random.Random(3)
    ws, noise = [], 0.0
    for t in range(1500):
        noise = 0.5 * noise + rng.gauss(0, 0.3)
        ws.append(math.sin(2 * math.pi * t / 6) + noise)
    ys = np.cumsum(ws).tolist()
    params = dict(cell="gru", hidden_size=8, window=12, optimizer="adam", diff=1,
                  damped=True, zero_head=True, seed=0)
    rule_alone = evaluate_forecaster(RNNForecaster(**params, lr=1e-12), ys, warmup=24)
    learned = evaluate_forecaster(RNNForecaster(**params, lr=0.005), ys, warmup=24)
    assert learned.at(1) < 0.7 * rule_alone.at(1)


@pytest.mark.parametrize("params", [{"damped": "yes"}, {"zero_head": 1}])
def test_non_boolean_switches_are_refused(params):
    with pytest.raises(ValueError, match="must be True or False"):
        RNNForecaster(hidden_size=4, diff=1, **params).learn_one(1.0)


def test_damped_state_round_trips_and_undamped_state_keeps_its_arrays():
    ys = np.cumsum([1.0, 3.0, 4.0, 2.0, 0.0, 1.0, 2.0, 4.0]).tolist()
    damped = RNNForecaster(hidden_size=4, window=4, diff=1, damped=True, zero_head=True)
    plain = RNNForecaster(hidden_size=4, window=4, diff=1)
    for y in ys:
        damped.learn_one(y)
        plain.learn_one(y)
    restored = RNNForecaster.from_state(*damped.export_state())
    assert restored.forecast(3) == damped.forecast(3)
    assert "store/damp_moments" in damped.export_state()[1]
    # Without the option the state has the arrays it had before the option existed, so
    # states exported by earlier versions still load.
    assert not any(name.startswith("store/damp") for name in plain.export_state()[1])


@pytest.mark.parametrize("transform", [{"log": True}, {"squash": True}])
def test_a_diverged_network_forecasts_infinity_instead_of_raising(transform):
    model = RNNForecaster(hidden_size=4, window=4, seed=0, **transform)
    for y in [10.0, 12.0, 11.0, 13.0, 12.0, 14.0] * 4:
        model.learn_one(y)
    model._net.theta[:] = 1e4  # what a learning rate far too high leaves behind
    forecast = model.forecast(3)
    assert all(math.isinf(v) for v in forecast)


def test_a_mixture_forecasts_from_its_finite_experts_when_one_diverges():
    from stream_rnn.models import ForecastMixture, SeasonalNaive

    diverged = RNNForecaster(hidden_size=4, window=4, seed=0, log=True)
    mixture = ForecastMixture([diverged, SeasonalNaive()], horizon=2)
    for y in [10.0, 12.0, 11.0, 13.0] * 4:
        mixture.learn_one(y)
    for expert in mixture._experts:
        if isinstance(expert, RNNForecaster):
            expert._net.theta[:] = 1e4
    mixture._pending.clear()  # forecast afresh from the diverged expert
    assert mixture.forecast(2, xs=None) == pytest.approx([13.0, 13.0])
