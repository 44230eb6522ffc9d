"""The sensor detector's spread floor: a forecast that claims more precision than
``min_spread`` of the stream's deviation is judged at the floor, and bad values are
refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_rnn.cells.calibrate import cube_root_surprise
from stream_rnn.models import SensorAnomalyDetector
from stream_rnn.models.sensor import _add_surprise


def _surprise(outs, Y, min_log_var):
    valid = np.ones(len(Y), dtype=np.bool_)
    z = np.empty(Y.shape)
    u = np.zeros(len(Y))
    _add_surprise(outs, Y, valid, min_log_var, z, u)
    return z, u


def test_a_spread_below_the_floor_is_judged_at_the_floor():
    floor = 0.05
    # Three forecasts of the same reading with residual 0.02 (in units of the stream's
    # deviation): spreads of 0.3% and 1% (below the floor) and 20% (above it).
    spreads = np.array([0.003, 0.01, 0.2])
    outs = np.column_stack([np.full(3, 1.0), np.log(spreads**2)]).astype(np.float32)
    Y = np.full((3, 1), 1.02, dtype=np.float32)
    z, u = _surprise(outs, Y, 2 * math.log(floor))
    residual = float(Y[0, 0]) - float(outs[0, 0])
    np.testing.assert_allclose(z[:, 0], [residual / floor, residual / floor,
                                         residual / 0.2], rtol=1e-5)
    np.testing.assert_allclose(u, [cube_root_surprise(z[i]) for i in range(3)])
    # Without a floor the shrunken spreads make the same residual 7 and 2 deviations.
    z_own, _ = _surprise(outs, Y, -12.0)
    np.testing.assert_allclose(z_own[:, 0], residual / spreads, rtol=1e-4)


def test_surprise_adds_up_over_members_and_skips_invalid_readings():
    outs = np.array([[0.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    Y = np.array([[2.0], [3.0]], dtype=np.float32)
    valid = np.array([True, False])
    z = np.zeros((2, 1))
    u = np.array([1.0, 1.0])
    _add_surprise(outs, Y, valid, 2 * math.log(0.05), z, u)
    np.testing.assert_allclose(u, [1.0 + 4.0 ** (1.0 / 3.0), 1.0])


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "5%", math.nan])
def test_detector_rejects_a_bad_spread_floor(bad):
    with pytest.raises(ValueError, match="min_spread"):
        SensorAnomalyDetector(min_spread=bad).learn_one({"value": 1.0})


def test_a_larger_floor_quiets_a_small_deviation_but_not_an_outage():
    # A noise-free daily cycle the networks forecast closely, a deviation of 2% of its
    # range for an hour, then an outage.
    t = np.arange(288 * 6)
    values = 50 + 10 * np.sin(2 * np.pi * t / 288)
    values[288 * 4 : 288 * 4 + 12] += 0.4
    values[288 * 5 + 100 : 288 * 5 + 103] -= 30.0
    times = 300.0 * t
    peak = {}
    for min_spread in (0.0, 0.05, 0.2):
        detector = SensorAnomalyDetector(hidden_size=8, n_members=2, warmup=100,
                                         season_buffer=512, warmup_seasons=2.0,
                                         min_spread=min_spread)
        detector.learn_one({"value": values[0]}, t=times[0])
        scores = np.r_[0.0, detector.score_learn_many(values[1:, None], times=times[1:])]
        peak[min_spread] = scores[288 * 4 : 288 * 4 + 14].max()
        assert scores[288 * 5 + 100 : 288 * 5 + 104].max() > 0.5
    # The networks' own spreads make the hour-long 2% deviation an alarm; at 5% of the
    # stream's deviation it is not one, and a wider floor quiets it further.
    assert peak[0.0] >= 0.5 > peak[0.05] > peak[0.2]
