"""``SensorAnomalyDetector``: calibrated anomaly scores in [0, 1] for sensor streams."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Hashable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
from river import base

from stream_rnn.cells._flags import jit
from stream_rnn.cells.calibrate import (
    CALIBRATION_ARGS,
    DEFAULT_ROUTINE_COUNT,
    DEFAULT_ROUTINE_HORIZON,
    DEFAULT_SCALE,
    calibrate_many,
    calibration_rows,
    calibration_settings,
    check_params,
    cube_root_surprise,
)
from stream_rnn.cells.context import (
    CONTEXT_ARGS,
    context_evidence,
    context_rows,
    context_settings,
)
from stream_rnn.cells.network import Network
from stream_rnn.cells.scaling import _fold_in, location_scale, scale_row
from stream_rnn.cells.stuck import STUCK_ARGS, stuck_evidence, stuck_rows, stuck_settings
from stream_rnn.models.base import (
    RNNBase,
    load_network,
    load_store,
    network_arrays,
    store_arrays,
)
from stream_rnn.state.store import KeyedState

__all__ = ["SensorAnomalyDetector"]

_NET_ROWS = ("state", "snapshot", "window_inputs", "window_targets", "window_len", "pending")
_SCALER_ROWS = ("scale_mean", "scale_var", "scale_count", "last", "ring_t", "ring_x")
_CAL_ROWS = (*CALIBRATION_ARGS, "cal_echo")
_CTX_ROWS = (*CONTEXT_ARGS, "ctx_echo")
_STK_ROWS = STUCK_ARGS


@jit
def _seasonal_index(ring_t, s, n, target):
    """Ring index of slot ``s``'s newest buffered reading at or before ``target``.

    -1 when the buffer does not reach back that far. Binary search, oldest to newest.
    """
    B = ring_t.shape[1]
    m = min(n, B)
    if m == 0:
        return -1
    first = n - m
    if not ring_t[s, first % B] <= target:
        return -1
    lo, hi = 0, m - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ring_t[s, (first + mid) % B] <= target:
            lo = mid
        else:
            hi = mid - 1
    return (first + lo) % B


@jit
def _reset_sensor_slot(s, mean, var, count, last, ring_t, ring_x):
    """Empty statistics, buffer and last reading for slot ``s`` (a new key took it)."""
    mean[s] = 0.0
    var[s] = 0.0
    count[s] = 0
    last[s] = 0.0
    ring_t[s] = 0.0
    ring_x[s] = 0.0


@jit
def _prepare_sensor_row(i, s, X, T, mean, var, count, last, ring_t, ring_x, season, clip,
                        memory, lag, U, Y, valid, ring_slot, season_slot, lag_X, lag_slot):
    """Row ``i`` of :func:`_prepare_sensor`, for slot ``s`` (already reset if needed)."""
    D = X.shape[1]
    B = ring_t.shape[1]
    n = count[s]
    # The first two readings only seed the statistics: a spread from one reading would
    # make the second reading's scaled value depend on the sensor's units.
    valid[i] = n > 1
    scale_row(mean, var, count, s, last[s], clip, U[i, :D])
    ring_slot[i] = n % B if season > 0.0 else -1
    season_slot[i] = -1
    lag_slot[i] = -1
    for k in range(D):
        lag_X[i, k] = math.nan
    if season > 0.0 and lag > 0.0:
        j = _seasonal_index(ring_t, s, n, T[i] - lag)
        if j >= 0:
            lag_slot[i] = j
            for k in range(D):
                lag_X[i, k] = ring_x[s, j, k]
    if season > 0.0:
        j = _seasonal_index(ring_t, s, n, T[i] - season)
        season_slot[i] = j
        if j >= 0:
            scale_row(mean, var, count, s, ring_x[s, j], clip, U[i, D:])
        else:
            scale_row(mean, var, count, s, last[s], clip, U[i, D:])
    scale_row(mean, var, count, s, X[i], clip, Y[i])
    _fold_in(mean, var, count, s, X[i], memory)
    for k in range(D):
        last[s, k] = X[i, k]
    if season > 0.0:
        ring_t[s, n % B] = T[i]
        for k in range(D):
            ring_x[s, n % B, k] = X[i, k]


@jit
def _prepare_sensor(slots, resets, X, T, mean, var, count, last, ring_t, ring_x, season, clip,
                    memory, lag, U, Y, valid, ring_slot, season_slot, lag_X, lag_slot):
    """Network inputs, targets and validity for a batch of raw readings ``X`` ``(N, D)``.

    ``U[i, :D]`` is the key's previous reading; with ``season > 0`` ``U[i, D:]`` is its
    reading one season before ``T[i]`` (the newest at or before ``T[i] - season``, or the
    previous reading while the buffer does not reach back a season). ``Y[i]`` is the
    current reading. All are scaled with the key's statistics from before event ``i``,
    then the reading is folded in and buffered. ``ring_slot[i]`` receives the buffer slot
    of the reading and ``season_slot[i]`` that of its seasonal input (both ``-1``
    without ``season``; the latter also while the buffer does not reach back a season).
    With ``season`` and ``lag > 0``, ``lag_X[i]`` is the key's raw reading one ``lag``
    before ``T[i]`` and ``lag_slot[i]`` its buffer slot (NaN and ``-1`` while the buffer
    does not reach back that far, and always without them).
    """
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            _reset_sensor_slot(s, mean, var, count, last, ring_t, ring_x)
        _prepare_sensor_row(i, s, X, T, mean, var, count, last, ring_t, ring_x, season, clip,
                            memory, lag, U, Y, valid, ring_slot, season_slot, lag_X, lag_slot)


@jit
def _prepare_sensor_recording(slots, resets, X, T, mean, var, count, last, ring_t, ring_x,
                              season, clip, memory, lag, U, Y, valid, ring_slot, season_slot,
                              lag_X, lag_slot, loc, scale):
    """:func:`_prepare_sensor`, also recording the location and scale each row's target
    was standardized with (the key's statistics just before the row), so the networks'
    forecasts for that row can be mapped back to raw units."""
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            _reset_sensor_slot(s, mean, var, count, last, ring_t, ring_x)
        for k in range(X.shape[1]):
            a, b = location_scale(mean, var, count, s, k)
            loc[i, k] = a
            scale[i, k] = b
        _prepare_sensor_row(i, s, X, T, mean, var, count, last, ring_t, ring_x, season, clip,
                            memory, lag, U, Y, valid, ring_slot, season_slot, lag_X, lag_slot)


@jit
def _add_surprise(outs, Y, valid, min_log_var, z, u):
    """Add each valid reading's cube-root surprise under one member's forecast ``outs``
    ``(N, 2D)`` (means, then log-variances floored at ``min_log_var``) to ``u``."""
    D = Y.shape[1]
    for i in range(Y.shape[0]):
        if not valid[i]:
            continue
        for k in range(D):
            log_var = min(max(outs[i, D + k], min_log_var), 12.0)
            z[i, k] = (Y[i, k] - outs[i, k]) * math.exp(-0.5 * log_var)
        u[i] += cube_root_surprise(z[i])


def _as_seconds(t: Any) -> float:
    """Event time in seconds since the epoch; NaN for ``None``."""
    if t is None:
        return math.nan
    if isinstance(t, dt.datetime):
        return t.timestamp()
    if isinstance(t, np.datetime64):
        return float(t.astype("datetime64[us]").astype(np.int64)) / 1e6
    return float(t)


def _times_array(times: Any, n: int) -> np.ndarray:
    if times is None:
        return np.full(n, np.nan)
    arr = np.asarray(times)
    if np.issubdtype(arr.dtype, np.datetime64):
        out = arr.astype("datetime64[us]").astype(np.int64) / 1e6
    elif arr.dtype == object:
        out = np.array([_as_seconds(t) for t in arr], dtype=np.float64)
    else:
        out = arr.astype(np.float64)
    if out.shape != (n,):
        raise ValueError(f"times must have one entry per row ({n}), got shape {out.shape}")
    return np.ascontiguousarray(out)


class SensorAnomalyDetector(RNNBase, base.AnomalyDetector):
    """Anomaly scores in [0, 1] that mean the same rarity on every sensor.

    For every key (a sensor), recurrent networks read the key's previous reading (and,
    with ``season``, its reading one season earlier) and forecast the current one as a
    Gaussian per feature, as :class:`~stream_rnn.models.RNNAnomalyDetector` does. The
    surprise of a reading is ``max_k (z_k^2)^(1/3)`` over its standardized residuals
    ``z_k`` (nearly Gaussian for Gaussian residuals: the Wilson-Hilferty transform),
    with each predicted spread at least ``min_spread`` of the key's running standard
    deviation, averaged over ``n_members`` networks with different seeds (a small ensemble
    steadies the surprise of a model that is still learning). The surprise becomes a score
    through :mod:`stream_rnn.cells.calibrate`: the mean surprise of the last
    ``short_window`` readings against the key's long-run distribution of it (over about
    ``long_memory`` readings; with ``slow_memory`` also against a slower one, and the
    weaker evidence counts), as a Gaussian tail probability ``p``, reported as
    ``x / (x + score_scale)`` with ``x = -log10 p``.

    Spread floor (``min_spread``): on a stream it forecasts well, a Gaussian head keeps
    shrinking its spread (to a few percent of the stream's deviation on NAB's real files, 1% on
    its synthetic ones), so
    how surprising a harmless wobble looks depends on how far a given network, seed and
    learning rate happened to shrink it, not on the stream. Measured against at least 5%
    of the stream's deviation, a reading's surprise is set by the data wherever the
    forecast of the mean is good, and the calibration compares like with like across
    networks.

    Strictly online: the score of a reading uses that reading and earlier ones only.
    Readings are standardized per key with running statistics, so sensors in any units
    share one set of weights and one threshold.

    Warm-up: a key's first ``warmup`` readings score 0 (they are learned from and feed the
    calibration, but their tail probability would be guesswork), and with ``season`` so do
    its readings of the first ``warmup_seasons`` seasons (the networks need a few
    repetitions of the cycle before their seasonal input means anything: on 5-minute data
    with a daily cycle, 300 readings are one day); a key's first two readings only seed its
    running statistics. After an alarm, scores stay 0 until the evidence exceeds the
    alarm's peak decayed over ``refractory`` readings, and a further report needs a score
    ``alarm_margin`` above the last one reported: an incident spikes once. What the rule
    holds back is reported at ``held_back`` times its score (below 0.5, where thresholds
    for this detector sit: 0 silences it), so an ongoing incident still ranks above the
    key's quiet readings without raising another alarm. With
    ``season_echo``, a reading whose evidence is no stronger than that of the reading one
    season earlier scores 0: a surprise that recurs at the same time every season (a
    daily job the networks have not learned exactly, or yesterday's anomaly coming back
    through the seasonal input) is not news. An alarm as strong as ``routine_count``
    others the key raised within ``routine_horizon`` is routine: its evidence is capped at
    the key's own rate of such alarms (a few decades, well under the usual thresholds). A
    key that bursts every few days shows by its own record that a burst is not rare.

    Context (``context_lag``, a week by default, with ``season``): a change that comes on
    smoothly and then holds (a holiday in a city's traffic, a server left half idle)
    surprises the forecasters for a step or two and is then learned away, but it differs
    from the same hours one ``context_lag`` earlier for hours on end. Each reading's
    difference from the key's reading one lag back, standardized by the key's long-run
    size of that difference and averaged over about ``context_span`` seconds, is judged
    against the key's own history of it (remembering about one lag), by
    :func:`~stream_rnn.cells.context.context_evidence`; the stronger of that evidence and
    the forecasters' counts. The view speaks only after ``warmup_seasons`` lags of
    history, and only where ``season_buffer`` reaches back a lag (2016 readings for a week
    of 5-minute data).

    Stuck sensors (``stuck``): a run of identical readings is judged against the key's own
    history of run lengths (:mod:`stream_rnn.cells.stuck`): a sensor that rarely repeats
    itself and then freezes is evidence, a key that often holds its value is not. Runs
    keep their own refractory record (a stuck alarm does not silence the forecasters', nor
    count towards their routine), are reported as their evidence grows, never again at the
    same strength, and are evidence of at most ``log10(m)`` decades when the key had no
    run as long in its last ``m`` readings (a score near 0.4: a threshold near 0.3 flags
    them, one of 0.5 does not).

    One reading (``one_reading``, off by default): the surprise of the reading alone is
    a second test next to the ``short_window`` mean, which dilutes a one-reading spike;
    its evidence is capped by the key's record (``log10(m)`` decades when none of the
    last ``m`` readings was as surprising) and reported ``log10(2)`` decades weaker. On
    NAB (dev, seeds 0-5) it costs 0.04 of the mean standard score; on the plant scenario
    it finds two more incidents at a threshold of 0.3.

    ``score_one`` changes nothing; ``learn_one`` moves the key's state, statistics and
    calibration, and learns. Both take the reading's time ``t`` (seconds since the epoch,
    a ``datetime`` or a ``numpy.datetime64``), used only for the seasonal input.

    Parameters
    ----------
    cell, hidden_size, num_layers, window, update_every, optimizer, lr, clip_norm, seed
        As for :class:`~stream_rnn.models.RNNRegressor`; member ``j`` is seeded ``seed + j``.
    n_members
        Networks whose surprises are averaged.
    season
        Seconds between a reading and the one that serves as its seasonal input (a day by
        default); ``None`` disables the seasonal input.
    season_buffer
        Readings per key kept to look a season back (at least a season's worth: 288 for
        5-minute data and a daily season).
    scale_memory
        Readings after which the per-key statistics become an exponential average.
    clip
        Standardized inputs and targets are clipped to ``[-clip, clip]``.
    short_window, long_memory, slow_memory, warmup, refractory, alarm_margin, score_scale
        Calibration (see :class:`~stream_rnn.cells.calibrate.SurpriseCalibrator`;
        ``score_scale`` is its ``scale``).
    warmup_seasons
        Seasons from a key's first scored reading during which it scores 0 (with
        ``season``; readings without a time are held back by ``warmup`` only).
    season_echo
        Score 0 for evidence no stronger than that of the reading one season earlier
        (with ``season``).
    context_lag
        Seconds back to the reading each reading is compared with by the context view (a
        week by default); ``None`` disables the view (as does ``season=None``).
    context_span
        Seconds over which the context view averages its evidence (two hours by default).
    min_spread
        Smallest spread a member's forecast is judged with, as a fraction of the key's
        running standard deviation of the readings (``0``: the network's own, down to
        ``exp(-6)``).
    routine_count, routine_horizon
        An alarm is routine when the key raised at least ``routine_count`` alarms as strong
        within the last ``routine_horizon`` seconds (``0``: never; readings without a
        time are never routine); see :mod:`stream_rnn.cells.calibrate`.
    held_back
        Factor in ``[0, 1)`` on the scores the refractory rule holds back (``0``: they
        score 0).
    stuck
        Score runs of identical readings against the key's own runs.
    one_reading
        Judge each reading's surprise alone too, next to the ``short_window`` mean.
    activation, weight_decay, dropout, max_keys, input_size, dtype
        As for :class:`~stream_rnn.models.RNNRegressor`.

    Per-key state for ``D`` features: each member's network rows (see
    :meth:`~stream_rnn.cells.network.Network.keyed_arrays`; 720 bytes per member for one
    feature with the default network), ``8 * (3 * D + 1)`` bytes of running statistics,
    with ``season`` ``8 * season_buffer * (D + 1)`` bytes of seasonal buffer and
    ``4 * season_buffer`` of echo evidence, and
    ``8 * (short_window + 44 + 20 * (2 * routine_count + 1))`` bytes of calibration,
    ``8 * (D + 37)`` of stuck-sensor runs; the
    context view adds ``8 * (D + 6)`` bytes and, with ``season``, ``4 * season_buffer`` of
    its own echo evidence: 54 KB for one feature with the defaults, 4.2 KB
    without ``season``.

    Examples
    --------
    >>> import math
    >>> from stream_rnn.models import SensorAnomalyDetector
    >>> detector = SensorAnomalyDetector(hidden_size=8, n_members=3, season=None, warmup=200)
    >>> scores = []
    >>> for t in range(1500):
    ...     x = {"temp": 20 + 5 * math.sin(t / 10) + (15 if 1400 <= t < 1403 else 0)}
    ...     scores.append(detector.score_one(x, t=60.0 * t))
    ...     detector.learn_one(x, t=60.0 * t)
    >>> incident, before = max(scores[1400:1403]), max(scores[1000:1400])
    >>> print(f"warm-up {max(scores[:200]):.2f}, before {before:.2f}, incident {incident:.2f}")
    warm-up 0.00, before 0..., incident 0...
    >>> bool(incident > 0.5 > before)
    True
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
        n_members: int = 3,
        season: float | None = 86_400.0,
        season_buffer: int = 2048,
        scale_memory: int = 10_000,
        clip: float = 10.0,
        short_window: int = 3,
        long_memory: int = 500,
        slow_memory: int | None = None,
        warmup: int = 300,
        warmup_seasons: float = 3.0,
        refractory: int = 300,
        alarm_margin: float = 0.1,
        season_echo: bool = True,
        context_lag: float | None = 604_800.0,
        context_span: float = 7_200.0,
        routine_count: int = DEFAULT_ROUTINE_COUNT,
        routine_horizon: float = DEFAULT_ROUTINE_HORIZON,
        score_scale: float = DEFAULT_SCALE,
        min_spread: float = 0.05,
        one_reading: bool = False,
        held_back: float = 0.4,
        stuck: bool = True,
        activation: str = "tanh",
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        max_keys: int | None = 10_000,
        input_size: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self._init_common(
            cell=cell, hidden_size=hidden_size, num_layers=num_layers, window=window,
            update_every=update_every, optimizer=optimizer, lr=lr, clip_norm=clip_norm,
            seed=seed, activation=activation, weight_decay=weight_decay, dropout=dropout,
            max_keys=max_keys, input_size=input_size, dtype=dtype,
        )
        self.n_members = n_members
        self.season = season
        self.season_buffer = season_buffer
        self.scale_memory = scale_memory
        self.clip = clip
        self.short_window = short_window
        self.long_memory = long_memory
        self.slow_memory = slow_memory
        self.warmup = warmup
        self.warmup_seasons = warmup_seasons
        self.alarm_margin = alarm_margin
        self.season_echo = season_echo
        self.context_lag = context_lag
        self.context_span = context_span
        self.routine_count = routine_count
        self.routine_horizon = routine_horizon
        self.refractory = refractory
        self.score_scale = score_scale
        self.min_spread = min_spread
        self.one_reading = one_reading
        self.held_back = held_back
        self.stuck = stuck
        self._nets: list[Network] = []

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden_size": 4, "window": 4, "n_members": 1, "warmup": 5, "season": None}
        yield {"cell": "gru", "hidden_size": 3, "n_members": 2, "warmup": 10, "input_size": 40}

    # ------------------------------------------------------------- building

    @property
    def _seasonal(self) -> bool:
        return self.season is not None

    def _network_inputs(self) -> int:
        return 2 * self._n_inputs if self._seasonal else self._n_inputs

    def _build(self, feature_names: list[Hashable]) -> None:
        self._validate_common()
        if not (isinstance(self.warmup_seasons, int | float) and self.warmup_seasons >= 0):
            raise ValueError(f"warmup_seasons must be a number >= 0, got "
                             f"{self.warmup_seasons!r}")
        warmup_time = float(self.warmup_seasons) * self._season_seconds
        check_params(self.short_window, self.long_memory, self.warmup, self.refractory,
                     self.score_scale, self.slow_memory, warmup_time, self.alarm_margin,
                     self.routine_count, self.routine_horizon)
        for name in ("one_reading", "stuck"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not (isinstance(self.held_back, int | float) and not isinstance(self.held_back, bool)
                and 0 <= self.held_back < 1):
            raise ValueError(f"held_back must be a number in [0, 1), got {self.held_back!r}")
        self._settings = calibration_settings(
            self.warmup, self.long_memory, self.refractory, self.score_scale, self.slow_memory,
            warmup_time, self.alarm_margin, self.routine_count, self.routine_horizon,
            bool(self.one_reading), float(self.held_back))
        self._stuck_settings = stuck_settings()
        if not (isinstance(self.min_spread, int | float) and not isinstance(self.min_spread, bool)
                and 0 <= self.min_spread < 1):
            raise ValueError(f"min_spread must be a number in [0, 1), got {self.min_spread!r}")
        # The network's own log-variance is clipped at -12 anyway.
        self._min_log_var = (2.0 * math.log(self.min_spread) if self.min_spread > 0
                             else -12.0)
        if not (isinstance(self.n_members, int | np.integer) and self.n_members >= 1):
            raise ValueError(f"n_members must be a positive integer, got {self.n_members!r}")
        if self.season is not None and not self.season > 0:
            raise ValueError(f"season must be > 0 seconds or None, got {self.season!r}")
        if self.context_lag is not None and not self.context_lag > 0:
            raise ValueError(f"context_lag must be > 0 seconds or None, got "
                             f"{self.context_lag!r}")
        lag = self._context_seconds
        self._context_settings = context_settings(
            self.context_span, max(lag, 1.0), float(self.warmup_seasons) * lag)
        if not (isinstance(self.season_buffer, int | np.integer) and self.season_buffer >= 1):
            raise ValueError(f"season_buffer must be a positive integer, got "
                             f"{self.season_buffer!r}")
        names = sorted(feature_names, key=str)
        if self.input_size is not None and len(names) > self.input_size:
            raise ValueError(
                f"the first event has {len(names)} features but input_size={self.input_size}"
            )
        self._features = {name: i for i, name in enumerate(names)}
        D = self._n_inputs = len(names) if self.input_size is None else int(self.input_size)
        self._nets = [
            Network(
                cell=self.cell, input_size=max(1, self._network_inputs()),
                hidden_size=self.hidden_size, num_layers=self.num_layers, target_size=D,
                loss="gaussian", activation=self.activation, window=self.window,
                update_every=self.update_every, optimizer=self.optimizer, lr=self.lr,
                clip_norm=self.clip_norm, weight_decay=self.weight_decay,
                dropout=self.dropout, seed=self.seed + j, dtype=self.dtype,
            )
            for j in range(self.n_members)
        ]
        # The base class reports updates and losses of ``_net``: the first member's.
        self._net = self._nets[0]
        templates: dict[str, np.ndarray] = {}
        for j, net in enumerate(self._nets):
            for name, arr in net.keyed_arrays(1).items():
                templates[f"m{j}.{name}"] = arr
        B = self.season_buffer if self._seasonal else 1
        rows = {
            "scale_mean": ((D,), np.float64),
            "scale_var": ((D,), np.float64),
            "scale_count": ((), np.int64),
            "last": ((D,), np.float64),
            "ring_t": ((B,), np.float64),
            "ring_x": ((B, D), np.float64),
            **calibration_rows(self.short_window, self.routine_count),
            "cal_echo": ((B,), np.float32),
            **context_rows(D),
            "ctx_echo": ((B,), np.float32),
            **stuck_rows(D),
        }
        for name, (shape, dtype) in rows.items():
            templates[name] = np.zeros((1, *shape), dtype=dtype)
        max_keys = 1_000_000 if self.max_keys is None else int(self.max_keys)
        self._store = KeyedState(templates, max_keys=max_keys)

    def _ensure_built(self, x: dict) -> None:
        if self._net is None:
            self._build(list(x))
            self._make_buffers()

    def _make_buffers(self) -> None:
        buf = self._buf = SimpleNamespace()
        D = self._n_inputs
        dt_ = self._net.dtype
        buf.x = np.zeros((1, D), dtype=np.float64)
        buf.t = np.zeros(1, dtype=np.float64)
        buf.U = np.zeros((1, max(1, self._network_inputs())), dtype=dt_)
        buf.Y = np.zeros((1, D), dtype=dt_)
        buf.valid = np.zeros(1, dtype=np.bool_)
        buf.out = np.zeros(2 * D, dtype=dt_)
        buf.z = np.zeros((1, D), dtype=np.float64)
        buf.u = np.zeros(1, dtype=np.float64)
        buf.score = np.zeros(1, dtype=np.float64)
        buf.slot1 = np.zeros(1, dtype=np.int64)
        buf.reset1 = np.zeros(1, dtype=np.bool_)
        buf.ring_slot = np.zeros(1, dtype=np.int64)
        buf.season_slot = np.zeros(1, dtype=np.int64)
        buf.lag_x = np.zeros((1, D), dtype=np.float64)
        buf.lag_slot = np.zeros(1, dtype=np.int64)
        buf.extra = np.zeros(1, dtype=np.float64)
        buf.apart = np.zeros(1, dtype=np.float64)

    def _member_rows(self, j: int) -> dict[str, np.ndarray]:
        # Looked up on every call: the store replaces its arrays when it grows.
        arrays = self._store.arrays
        return {name: arrays[f"m{j}.{name}"] for name in _NET_ROWS}

    # ------------------------------------------------------------- one event

    def _rows(self, slot: int, commit: bool) -> tuple[dict[str, np.ndarray], int]:
        """Scaler and calibration rows to work on, and the slot index within them.

        The live arrays when committing, else copies of this key's rows (scoring moves
        nothing).
        """
        arrays = self._store.arrays
        names = _SCALER_ROWS + _CAL_ROWS + _CTX_ROWS + _STK_ROWS
        if commit:
            return {name: arrays[name] for name in names}, slot
        return {name: arrays[name][slot : slot + 1].copy() for name in names}, 0

    def _one(self, slot: int, t: Any, learning: bool) -> float:
        """Score the reading in ``_buf.x`` of ``slot`` (learning from it with ``learning``)."""
        buf = self._buf
        rows, buf.slot1[0] = self._rows(slot, commit=learning)
        buf.reset1[0] = False
        buf.t[0] = _as_seconds(t)
        _prepare_sensor(buf.slot1, buf.reset1, buf.x, buf.t, rows["scale_mean"],
                        rows["scale_var"], rows["scale_count"], rows["last"], rows["ring_t"],
                        rows["ring_x"], self._season_seconds, self.clip, self.scale_memory,
                        self._context_seconds, buf.U, buf.Y, buf.valid, buf.ring_slot,
                        buf.season_slot, buf.lag_x, buf.lag_slot)
        if not buf.valid[0]:
            return 0.0
        buf.u[0] = 0.0
        for j, net in enumerate(self._nets):
            keyed = self._member_rows(j)
            if learning:
                net.learn(keyed, slot, buf.U[0], buf.Y[0], buf.out)
            else:
                net.predict(keyed, slot, buf.U[0], buf.out)
            _add_surprise(buf.out[None, :], buf.Y, buf.valid, self._min_log_var, buf.z,
                          buf.u)
        buf.u[0] /= len(self._nets)
        self._context(buf.slot1, buf.reset1, buf.valid, buf.x, buf.lag_x, buf.t,
                      buf.ring_slot, buf.lag_slot, rows, buf.extra)
        self._stuck(buf.slot1, buf.reset1, buf.valid, buf.x, rows, buf.apart)
        self._calibrate(buf.slot1, buf.reset1, buf.valid, buf.u, buf.extra, buf.apart, buf.t,
                        buf.ring_slot, buf.season_slot, rows, buf.score)
        return float(buf.score[0])

    @property
    def _season_seconds(self) -> float:
        return 0.0 if self.season is None else float(self.season)

    @property
    def _context_seconds(self) -> float:
        """The context view's lag (0: no view; it needs the seasonal buffer)."""
        if self.season is None or self.context_lag is None:
            return 0.0
        return float(self.context_lag)

    def _context(self, slots, resets, valid, X, lag_X, times, ring_slot, lag_slot, rows,
                 extra) -> None:
        context_evidence(slots, resets, valid, X, lag_X, times, ring_slot, lag_slot,
                         rows["ctx_echo"], *(rows[name] for name in CONTEXT_ARGS),
                         self._context_settings, extra)

    def _stuck(self, slots, resets, valid, X, rows, out) -> None:
        """The stuck-sensor evidence of each reading into ``out`` (0 without ``stuck``)."""
        if not self.stuck:
            out[:] = 0.0
            return
        stuck_evidence(slots, resets, valid, X, *(rows[name] for name in STUCK_ARGS),
                       self._stuck_settings, out)

    def _calibrate(self, slots, resets, valid, u, extra, apart, times, ring_slot, season_slot, rows,
                   scores) -> None:
        if not self.season_echo:
            season_slot = np.full_like(season_slot, -1)
        calibrate_many(slots, resets, valid, u, extra, apart, times, ring_slot, season_slot,
                       rows["cal_echo"], *(rows[name] for name in CALIBRATION_ARGS),
                       self._settings, scores)

    def score_one(self, x: dict, key: Hashable | None = None, t: Any = None,
                  **kwargs: Any) -> float:
        """Anomaly score in [0, 1] of reading ``x`` of ``key`` at time ``t``; moves nothing."""
        if self._net is None:
            return 0.0
        self._vectorize(x, self._buf.x[0], learning=False)
        slot = self._store.get(self._key(key))
        if slot < 0:
            return 0.0
        return self._one(slot, t, learning=False)

    def forecast_one(self, key: Hashable | None = None, t: Any = None
                     ) -> dict[Hashable, tuple[float, float]]:
        """The members' forecast ``{feature: (mean, std)}`` of ``key``'s reading at time
        ``t``, in raw units, as :meth:`score_learn_many` gives it with ``return_forecast``;
        moves nothing. ``t=None``: one interval after the key's last reading (the interval
        between its last two). Empty before a key's third reading."""
        if self._net is None:
            return {}
        slot = self._store.get(self._key(key))
        if slot < 0 or self._store.arrays["scale_count"][slot] < 2:
            return {}
        rows, _ = self._rows(slot, commit=False)
        if t is None and self._seasonal:
            ring_t, n = rows["ring_t"][0], int(rows["scale_count"][0])
            B = ring_t.shape[0]
            last = ring_t[(n - 1) % B]
            t = 2.0 * last - ring_t[(n - 2) % B] if min(n, B) >= 2 else last
        D = self._n_inputs
        X = rows["last"].copy()  # any reading: the forecast does not depend on it
        T = np.array([_as_seconds(t)])
        U = np.empty((1, max(1, self._network_inputs())), dtype=self._net.dtype)
        Y = np.empty((1, D), dtype=self._net.dtype)
        valid = np.empty(1, dtype=np.bool_)
        index = np.empty(1, dtype=np.int64)
        loc = np.empty((1, D))
        scale = np.empty((1, D))
        _prepare_sensor_recording(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.bool_),
                                  X, T, rows["scale_mean"], rows["scale_var"],
                                  rows["scale_count"], rows["last"], rows["ring_t"],
                                  rows["ring_x"], self._season_seconds, self.clip,
                                  self.scale_memory, self._context_seconds, U, Y, valid,
                                  index, index.copy(), np.empty((1, D)), index.copy(), loc,
                                  scale)
        out = np.empty(2 * D, dtype=self._net.dtype)
        first = np.zeros(D)
        second = np.zeros(D)
        for j, net in enumerate(self._nets):
            net.predict(self._member_rows(j), slot, U[0], out)
            mean = out[:D].astype(np.float64)
            first += mean
            second += mean * mean + np.exp(np.clip(out[D:].astype(np.float64),
                                                   self._min_log_var, 12.0))
        mean = first / len(self._nets)
        std = np.sqrt(np.maximum(second / len(self._nets) - mean * mean, 0.0))
        means, stds = mean * scale[0] + loc[0], std * scale[0]
        return {name: (float(means[k]), float(stds[k])) for name, k in self._features.items()}

    def learn_one(self, x: dict, key: Hashable | None = None, t: Any = None,
                  **kwargs: Any) -> None:
        """Fold reading ``x`` of ``key`` at time ``t`` into the key's state and learn."""
        self.score_learn_one(x, key=key, t=t)

    def score_learn_one(self, x: dict, key: Hashable | None = None, t: Any = None) -> float:
        """Learn from reading ``x`` and return its score (as ``score_one`` before it)."""
        self._ensure_built(x)
        self._vectorize(x, self._buf.x[0], learning=True)
        slot, is_new = self._store.slot_for(self._key(key))
        if is_new:
            self._store.clear(slot)
        return self._one(slot, t, learning=True)

    # ------------------------------------------------------------- batches

    def score_learn_many(self, X: np.ndarray, keys: Sequence[Hashable] | None = None,
                         times: Any = None, return_forecast: bool = False
                         ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch path: score each row, then learn from it, in a few compiled calls.

        ``X`` is ``(N, input_size)`` raw readings in feature-slot order (see
        ``feature_names``), ``keys`` one key per row (``None``: the global sequence),
        ``times`` one time per row (seconds since the epoch or ``datetime64``; ``None``:
        no seasonal input). Identical to ``score_one`` then ``learn_one`` row by row.
        Returns the scores.

        With ``return_forecast`` also returns ``(means, stds)``, each ``(N, input_size)``:
        the members' forecast of each row made before seeing it, in raw units, as one
        Gaussian mixture (its mean and standard deviation), each member's spread floored
        at ``min_spread`` as the surprise floors it; NaN for a key's first two readings
        (they only seed its statistics). The scores are the same either way.
        """
        if self._net is None:
            raise RuntimeError("learn at least one event with learn_one to fix the features")
        X = np.ascontiguousarray(X, dtype=np.float64)
        D = self._n_inputs
        if X.ndim != 2 or X.shape[1] != D:
            raise ValueError(f"X must be (N, {D}), got {X.shape}")
        bad = ~np.isfinite(X)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"feature {self.feature_names[col]!r} is not finite in row {row}")
        n = X.shape[0]
        T = _times_array(times, n)
        slots, resets = self._assign_slots([None] * n if keys is None else list(keys))
        arrays = self._store.arrays
        dt_ = self._net.dtype
        U = np.empty((n, max(1, self._network_inputs())), dtype=dt_)
        Y = np.empty((n, D), dtype=dt_)
        valid = np.empty(n, dtype=np.bool_)
        ring_slot = np.empty(n, dtype=np.int64)
        season_slot = np.empty(n, dtype=np.int64)
        lag_X = np.empty((n, D), dtype=np.float64)
        lag_slot = np.empty(n, dtype=np.int64)
        scaler = (slots, resets, X, T, arrays["scale_mean"], arrays["scale_var"],
                  arrays["scale_count"], arrays["last"], arrays["ring_t"], arrays["ring_x"],
                  self._season_seconds, self.clip, self.scale_memory, self._context_seconds,
                  U, Y, valid, ring_slot, season_slot, lag_X, lag_slot)
        if return_forecast:
            loc = np.empty((n, D), dtype=np.float64)
            scale = np.empty((n, D), dtype=np.float64)
            _prepare_sensor_recording(*scaler, loc, scale)
            # Sums over the members of each forecast mean and of its second moment.
            first = np.zeros((n, D), dtype=np.float64)
            second = np.zeros((n, D), dtype=np.float64)
        else:
            _prepare_sensor(*scaler)
        u = np.zeros(n, dtype=np.float64)
        z = np.empty((n, D), dtype=np.float64)
        for j, net in enumerate(self._nets):
            outs, _, _ = net.run_batch(self._member_rows(j), slots, resets, U, Y, valid)
            _add_surprise(outs, Y, valid, self._min_log_var, z, u)
            if return_forecast:
                mean = outs[:, :D].astype(np.float64)
                log_var = np.clip(outs[:, D:].astype(np.float64), self._min_log_var, 12.0)
                first += mean
                second += mean * mean + np.exp(log_var)
        u /= len(self._nets)
        extra = np.empty(n, dtype=np.float64)
        self._context(slots, resets, valid, X, lag_X, T, ring_slot, lag_slot, arrays, extra)
        apart = np.zeros(n, dtype=np.float64)
        self._stuck(slots, resets, valid, X, arrays, apart)
        scores = np.empty(n, dtype=np.float64)
        self._calibrate(slots, resets, valid, u, extra, apart, T, ring_slot, season_slot, arrays,
                        scores)
        if not return_forecast:
            return scores
        members = len(self._nets)
        mixture_mean = first / members
        # The mixture's variance, in scaled units; rounding can leave it a hair below 0.
        mixture_var = np.maximum(second / members - mixture_mean * mixture_mean, 0.0)
        means = mixture_mean * scale + loc
        stds = np.sqrt(mixture_var) * scale
        means[~valid] = np.nan
        stds[~valid] = np.nan
        return scores, means, stds

    @property
    def n_updates(self) -> int:
        """Weight updates applied so far, summed over the members."""
        return sum(net.n_updates for net in self._nets)

    @property
    def finite_rows(self) -> list[str]:
        """Names of the per-key rows that hold only finite numbers while the detector is
        sound (the members' network rows and the running scaling); the calibration and
        context rows use NaN for times not yet set."""
        nets = [f"m{j}.{name}" for j in range(len(self._nets)) for name in _NET_ROWS]
        return [*nets, "scale_mean", "scale_var", "last", "ring_x"]

    @property
    def n_skipped_updates(self) -> int:
        """Updates skipped because a gradient or weight turned non-finite, summed over the
        members."""
        return sum(net.n_skipped for net in self._nets)

    # ------------------------------------------------------------- state export

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything needed to resume this detector: JSON-able metadata and plain arrays.

        Constructor parameters, feature slots, every member's weights, optimizer moments,
        counters, dropout stream and last statistics, and every key's rows (in recency
        order: networks, scaling, seasonal buffer, calibration, context). Derived settings
        and scratch buffers are rebuilt by :meth:`from_state`, which continues exactly.
        """
        meta: dict[str, Any] = {"class": type(self).__name__, "params": self._get_params(),
                                "features": None}
        arrays: dict[str, np.ndarray] = {}
        if self._net is not None:
            meta["features"] = [[name, slot] for name, slot in self._features.items()]
            for j, net in enumerate(self._nets):
                arrays.update(network_arrays(net, f"net{j}"))
            arrays.update(store_arrays(self._store, meta))
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]
                   ) -> SensorAnomalyDetector:
        """Rebuild a detector exported by :meth:`export_state`."""
        if meta.get("class") != cls.__name__:
            raise ValueError(f"state is for {meta.get('class')!r}, not {cls.__name__}")
        model = cls(**meta["params"])
        if meta["features"] is None:
            return model
        features = {name: int(slot) for name, slot in meta["features"]}
        model._build(sorted(features, key=features.__getitem__))
        model._features = features
        for j, net in enumerate(model._nets):
            load_network(net, arrays, f"net{j}")
        load_store(model._store, meta, arrays)
        model._make_buffers()
        return model
