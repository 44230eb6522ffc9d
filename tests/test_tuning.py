"""Successive halving: the search keeps the best, is reproducible, and runs in parallel."""

from __future__ import annotations

import math
import random

import pytest

from stream_rnn.tuning import (
    Choice,
    LogUniform,
    Measurement,
    SearchSpace,
    rung_fractions,
    successive_halving,
)

SPACE = SearchSpace({"hidden_size": Choice((4, 8, 16, 32, 64)), "lr": LogUniform(1e-4, 1e-1)})


def quality(params: dict) -> float:
    """A known optimum: hidden 16, lr 0.01 (peak 1.0)."""
    return 1.0 - abs(math.log2(params["hidden_size"] / 16)) / 4 - abs(
        math.log10(params["lr"] / 0.01)) / 3


def noisy_evaluate(params: dict, fraction: float) -> Measurement:
    # Longer prefixes measure more precisely: the noise shrinks with the fraction.
    rng = random.Random(hash((params["hidden_size"], params["lr"], fraction)))
    noise = rng.gauss(0.0, 0.02 * (1 - fraction))
    return Measurement(score=quality(params) + noise, loss=1 - quality(params),
                       events=int(1000 * fraction))


def undefined_until_full(params: dict, fraction: float) -> Measurement:
    score = quality(params) if fraction == 1.0 else math.nan
    return Measurement(score=score, loss=1 - quality(params))


CALLS: list[float] = []


def counting_evaluate(params: dict, fraction: float) -> Measurement:
    CALLS.append(fraction)
    return Measurement(score=quality(params), loss=0.0)


def test_rung_fractions_grow_by_eta_and_end_on_the_whole_stream():
    assert rung_fractions(27, 3, 0.01) == pytest.approx((1 / 27, 1 / 9, 1 / 3, 1.0))
    assert rung_fractions(27, 3, 0.1) == pytest.approx((1 / 9, 1 / 3, 1.0))
    assert rung_fractions(8, 2, 0.01) == pytest.approx((1 / 8, 1 / 4, 1 / 2, 1.0))
    with pytest.raises(ValueError, match="eta"):
        rung_fractions(9, 1, 0.1)
    with pytest.raises(ValueError, match="min_fraction"):
        rung_fractions(9, 3, 0.0)


def test_halving_spends_most_measurements_on_short_prefixes():
    CALLS.clear()
    result = successive_halving(counting_evaluate, SPACE, trials=27, eta=3, min_fraction=0.01,
                                workers=1)
    assert CALLS.count(1 / 27) == 27
    assert CALLS.count(1 / 9) == 9
    assert CALLS.count(1 / 3) == 3
    assert CALLS.count(1.0) == 1
    assert result.best.rungs == 4
    # The best of the sampled configurations by the true quality is the one returned.
    assert quality(result.best.params) == max(quality(t.params) for t in result.trials)


def test_search_finds_a_configuration_near_the_optimum_and_beats_the_base():
    base = {"hidden_size": 64, "lr": 0.0001}
    result = successive_halving(noisy_evaluate, SPACE, trials=30, seed=3, workers=1,
                                base=base)
    assert result.trials[0].params == base
    assert quality(result.best.params) > quality(base) + 0.5
    top = sorted(quality(t.params) for t in result.trials)[-3:]
    assert quality(result.best.params) >= top[0]


def test_same_seed_same_trials_other_seed_other_trials():
    a = successive_halving(noisy_evaluate, SPACE, trials=12, seed=7, workers=1)
    b = successive_halving(noisy_evaluate, SPACE, trials=12, seed=7, workers=1)
    c = successive_halving(noisy_evaluate, SPACE, trials=12, seed=8, workers=1)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert a.best.params == b.best.params
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_parallel_workers_give_the_serial_result():
    serial = successive_halving(noisy_evaluate, SPACE, trials=9, seed=1, workers=1)
    parallel = successive_halving(noisy_evaluate, SPACE, trials=9, seed=1, workers=2)
    assert parallel.best.params == serial.best.params
    assert [t.measurements for t in parallel.trials] == [t.measurements for t in serial.trials]


def test_rungs_without_a_defined_metric_rank_by_training_loss():
    result = successive_halving(undefined_until_full, SPACE, trials=9, seed=2, workers=1)
    assert quality(result.best.params) == max(quality(t.params) for t in result.trials)
    assert math.isfinite(result.best.measurements[-1].score)


def test_constraints_are_respected_and_impossible_ones_are_an_error():
    space = SearchSpace({"window": Choice((4, 8, 16)), "update_every": Choice((1, 8, 16))},
                        constraints=(lambda p: p["update_every"] <= p["window"],))
    rng = random.Random(0)
    for _ in range(200):
        p = space.sample(rng)
        assert p["update_every"] <= p["window"]
    never = SearchSpace({"window": Choice((4,))}, constraints=(lambda p: False,))
    with pytest.raises(ValueError, match="reject"):
        never.sample(rng)
    with pytest.raises(ValueError, match="trials"):
        successive_halving(noisy_evaluate, SPACE, trials=0)
    with pytest.raises(ValueError, match="low < high"):
        LogUniform(0.1, 0.01)

