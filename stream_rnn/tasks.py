"""Task models: what one partition runs over its events, behind one small interface.

The runner hands each partition's valid events, in offset order, to its task model, which
scores every event and then learns from it, and returns one :class:`Scored` per event.
Task models also apply delayed labels, export and restore their state as plain arrays,
and say whether they are still finite.

Three tasks:

``sensor``
    Every feature is a reading; each key forecasts its next step and its next reading as
    Gaussians per feature (:class:`~stream_rnn.models.RNNAnomalyDetector`) and the score
    is how rare the reading's surprise is against the key's own past (a tail probability,
    so one threshold serves every sensor), or how unlikely its run of repeated readings;
    or, with ``detector = "calibrated"``, :class:`~stream_rnn.models.SensorAnomalyDetector`
    (the detector the NAB benchmark measures) scores it.
``forecast``
    One or more target features (``target``) are forecast one step ahead per key from
    their history and the event's other features (covariates known in advance, such as
    calendar features), with :class:`~stream_rnn.models.RNNForecaster`; the spread is the
    key's recent root-mean-square one-step error, the score how surprising the value is.
``fraud``
    Each event is a transaction involving one entity per key field (a card, a terminal);
    :class:`~stream_rnn.models.FraudDetector` gives its fraud probability and learns from
    labels revealed later through :meth:`FraudTask.apply_label`.

Parameters come as one flat mapping: the recurrent-network fields of ``[model]`` (``cell``,
``hidden_size``, ...) and the task's own parameters (``[model.params]``); see
:func:`check_params`.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, ClassVar, Protocol

import numpy as np

from stream_rnn.cells.network import Network
from stream_rnn.cells.surprise import (
    calibrate_surprise,
    reading_rows,
    surprise_rows,
    track_readings,
)
from stream_rnn.io.events import Event
from stream_rnn.models import (
    FraudDetector,
    RNNAnomalyDetector,
    RNNForecaster,
    SensorAnomalyDetector,
)
from stream_rnn.state.store import KeyedState

__all__ = [
    "Scored",
    "TaskModel",
    "Rejection",
    "SensorTask",
    "ForecastTask",
    "FraudTask",
    "UnknownFeature",
    "NETWORK_FIELDS",
    "check_params",
    "make_task",
    "TASKS",
]

#: Fields of ``[model]`` describing the recurrent networks, shared by every task.
NETWORK_FIELDS = ("cell", "hidden_size", "num_layers", "window", "update_every", "optimizer",
                  "lr", "clip_norm", "seed", "dtype")


class UnknownFeature(ValueError):
    """An event carries a feature the partition's model has no input slot for."""


class Rejection(str):
    """Why an event cannot be processed (the text), with its dead-letter ``reason``.

    Examples
    --------
    >>> problem = Rejection("missing_field", "no target feature 'demand'")
    >>> problem, problem.reason
    ("no target feature 'demand'", 'missing_field')
    """

    reason: str

    def __new__(cls, reason: str, detail: str) -> Rejection:
        obj = super().__new__(cls, detail)
        obj.reason = reason
        return obj


@dataclass(frozen=True, slots=True)
class Scored:
    """One event's output: its score in [0, 1], what the model predicted for it before
    seeing it, and the predicted spread (standard deviation, same units)."""

    score: float
    prediction: dict[str, float]
    spread: dict[str, float] = field(default_factory=dict)


_new_object = object.__new__
_set_score = Scored.score.__set__  # type: ignore[attr-defined]
_set_prediction = Scored.prediction.__set__  # type: ignore[attr-defined]
_set_spread = Scored.spread.__set__  # type: ignore[attr-defined]


def _scored_many(scores: list[float], predictions: list[dict[str, float]],
                spreads: list[dict[str, float]]) -> list[Scored]:
    """``[Scored(*fields) for fields in zip(scores, predictions, spreads)]``, at about
    half the cost: a batch's outputs are built field by field in C-level loops, writing
    the slots directly rather than through the frozen class's ``__init__`` (three
    ``object.__setattr__`` calls per output, a sizeable part of the sensor task's cost
    per event). The outputs are ordinary, immutable :class:`Scored`."""
    n = len(scores)
    if len(predictions) != n or len(spreads) != n:
        raise ValueError(f"{n} scores, {len(predictions)} predictions and {len(spreads)} "
                         "spreads: one of each per output")
    out: list[Scored] = list(map(_new_object, repeat(Scored, n)))
    deque(map(_set_score, out, scores), maxlen=0)
    deque(map(_set_prediction, out, predictions), maxlen=0)
    deque(map(_set_spread, out, spreads), maxlen=0)
    return out


class TaskModel(Protocol):
    """What the runner needs from a partition's model."""

    def process(self, events: list[Event]) -> list[Scored]: ...

    def check(self, event: Event) -> str | None: ...

    def apply_label(self, event_id: str, label: int) -> bool: ...

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    def forget_keys(self) -> None: ...

    def is_finite(self) -> bool: ...

    def stats(self) -> dict[str, float]: ...


def _chi2_tail_score(mean_z2: np.ndarray, dims: int) -> np.ndarray:
    """P(chi2_dims <= dims * mean_z2): how unusual the squared residuals are, in [0, 1].

    Exact for one dimension (``erf(|z| / sqrt 2)``, the two-sided tail of a standard
    normal); otherwise Wilson-Hilferty's cube-root normal approximation, accurate to ~1e-3
    for these uses and exact in the limit. Keeps scores comparable across streams with any
    number of features.
    """
    x = np.maximum(dims * np.asarray(mean_z2, dtype=np.float64), 0.0)
    if dims == 1:
        return np.vectorize(math.erf)(np.sqrt(x / 2.0))
    k = float(dims)
    z = ((x / k) ** (1.0 / 3.0) - (1.0 - 2.0 / (9.0 * k))) / math.sqrt(2.0 / (9.0 * k))
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def _finite(arrays: Any) -> bool:
    return all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")


def _check_type(name: str, value: Any, kind: str) -> None:
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "str|list[str]": isinstance(value, str) or (
            isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)),
        "list[float]": isinstance(value, list | tuple) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value),
    }[kind]
    if not ok:
        wanted = {"int": "an integer", "float": "a number", "bool": "true or false",
                  "str": "a string", "str|list[str]": "a string or a list of strings",
                  "list[float]": "a list of numbers"}[kind]
        raise ValueError(f"{name}: expected {wanted}, got {value!r}")


class _Task:
    """Parameter handling shared by the task models."""

    #: Task parameters (besides :data:`NETWORK_FIELDS`) and their types.
    PARAMS: ClassVar[dict[str, str]] = {}
    #: The task's name in the configuration.
    name: ClassVar[str] = ""

    @classmethod
    def split_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validated flat parameters (names and types; values are checked by the models).

        A nested ``params`` entry (the ``[model.params]`` table) is merged in.
        """
        flat = dict(params)
        nested = flat.pop("params", None)
        if nested:
            for name, value in dict(nested).items():
                if name in NETWORK_FIELDS:
                    raise ValueError(f"model.params.{name}: set it as model.{name}")
                flat[name] = value
        for name, value in flat.items():
            if name in NETWORK_FIELDS:
                continue
            if name not in cls.PARAMS:
                known = ", ".join(sorted(cls.PARAMS)) or "none"
                raise ValueError(f"model.params.{name} is not a parameter of the {cls.name} "
                                 f"task; known: {known}")
            _check_type(f"model.params.{name}", value, cls.PARAMS[name])
        return flat


_SCALING = {"scale_memory": "int", "clip": "float", "activation": "str",
            "weight_decay": "float", "dropout": "float"}


def _schema_problem(known: Any, event: Event) -> Rejection | None:
    unknown = [name for name in event.features if name not in known]
    if unknown:
        return Rejection("unknown_feature", f"unknown feature {unknown[0]!r}")
    return None


class SensorTask(_Task):
    """Per-key forecasting surprise for sensor readings (all features are readings),
    calibrated on each key's own past so one threshold serves every sensor.

    Keys are the event's entity keys joined with ``|``. Each key's readings are forecast
    as Gaussians per feature by :class:`~stream_rnn.models.RNNAnomalyDetector` networks,
    in up to two views (``views``):

    ``step``
        The network forecasts the key's next step (first difference) from its previous
        one: a physical reading is close to the one before, so the forecast error is on
        the scale of the sensor's noise rather than of its range, and a spike or a jump
        stands out at once.
    ``level``
        The network forecasts the reading itself from the previous one, with a coarser
        error: a level that stays off (a shift, a tripped line) keeps surprising it.

    The standardized residuals become a score in [0, 1] through
    :mod:`stream_rnn.cells.surprise`: recalibrated against the key's long-run residual
    spread, compared with the tail of the key's own long-run distribution of them (the
    main view's residual of each reading and its mean over ``short_window`` readings, the
    level view's mean over ``short_window`` readings), and with the evidence that the key
    is stuck (a run of identical readings, against how often the key repeats a reading).
    The score is ``1 - p`` for the smallest tail probability ``p``: 0.999 is about a
    1-in-1000 surprise on every key. A key's first ``warmup`` forecast readings score 0.

    Each event's prediction and spread are the main view's (the step's when there is
    one) forecast mean of the reading and its recalibrated standard deviation per
    feature, made before the reading was seen (empty for a key's first reading, and with
    the step view its second).

    Parameters (``[model.params]``): ``detector`` (``"views"``, the above, or
    ``"calibrated"``, below), ``views`` (``"step+level"``, the default, ``"step"``
    or ``"level"``), ``short_window`` (default 3; 1: each reading alone),
    ``calibration_memory`` (readings the long-run statistics remember, default 1000),
    ``warmup`` (default 50), ``stuck`` (score runs of identical readings, default true),
    and ``scale_memory``, ``clip``, ``activation``, ``weight_decay``, ``dropout`` of
    :class:`~stream_rnn.models.RNNAnomalyDetector`.

    ``detector = "calibrated"`` runs :class:`~stream_rnn.models.SensorAnomalyDetector`
    instead, the detector ``stream-rnn nab`` measures: ``n_members`` networks with the
    ``[model]`` settings read each key's previous reading and its reading one ``season``
    (seconds of event time, ``ts``) earlier; the surprise is calibrated against the key's
    own history with echo suppression, routine alarms, a one-week context view and a
    spread floor, and reported as ``x / (x + score_scale)`` with ``x = -log10 p`` (so its
    thresholds are lower: 0.5 is a tail probability of about 1e-5). Its parameters pass
    through with its defaults: ``n_members``, ``season``, ``season_buffer``,
    ``short_window``, ``long_memory``, ``slow_memory``, ``warmup`` (default 300),
    ``warmup_seasons``, ``refractory``, ``alarm_margin``, ``season_echo``,
    ``context_lag``, ``context_span``, ``routine_count``, ``routine_horizon``,
    ``score_scale``, ``min_spread``, ``stuck``, ``held_back``, ``one_reading``, and the
    scaling ones above; ``season``,
    ``context_lag`` and ``slow_memory`` take 0 for none. A key scores 0 for its first
    ``warmup`` readings and ``warmup_seasons`` seasons (3 days with the daily default).
    Each prediction and spread is the members' forecast of the reading (their Gaussian
    mixture, in the reading's units), made before it was seen, empty for a key's first two
    readings. It keeps about 54 KB per key with the defaults (the seasonal buffer of
    ``season_buffer`` readings; 4.2 KB with ``season = 0``). NAB's configuration is the
    detector's defaults with ``update_every = 1`` (NAB dev standard score 67.0, mean of
    seeds 0-5); with the daemon's ``[model]`` default of 16 it scores 47.7 (seeds 0-2),
    with 4 63.4 (seeds 0-5).

    ``views`` stays the default. The calibrated detector judges runs of identical readings
    against each key's own runs (``stuck``) and reports what its refractory rule holds
    back at ``held_back`` times the score: on the bundled plant scenario at a threshold of
    0.3 it finds 10 of 13 incidents (12 with ``one_reading``) flagging 0.27% of readings,
    ROC AUC 0.671 against the views' 0.641, but average precision 0.049 against 0.197;
    its scores mean tail probabilities (0.5 at 1e-5), so it needs a threshold near 0.3 to
    0.5, not the 0.999 the views use.
    """

    name = "sensor"
    #: Parameters of the ``calibrated`` detector (:class:`SensorAnomalyDetector`'s own).
    CALIBRATED: ClassVar[dict[str, str]] = {
        "n_members": "int", "season": "float", "season_buffer": "int", "long_memory": "int",
        "slow_memory": "int", "warmup_seasons": "float", "refractory": "int",
        "alarm_margin": "float", "season_echo": "bool", "context_lag": "float",
        "context_span": "float", "routine_count": "int", "routine_horizon": "float",
        "score_scale": "float", "min_spread": "float", "one_reading": "bool",
        "held_back": "float", "stuck": "bool"}
    #: Parameters of the ``views`` detector only.
    VIEWS_ONLY = frozenset({"views", "calibration_memory"})
    #: Parameters both detectors take (``stuck``: score runs of identical readings).
    SHARED = frozenset({"stuck"})
    PARAMS = {**_SCALING, "detector": "str", "views": "str", "short_window": "int",
              "calibration_memory": "int", "warmup": "int", "stuck": "bool", **CALIBRATED}
    #: The task's own parameters (not the detectors') and their defaults.
    DEFAULTS: ClassVar[dict[str, Any]] = {"views": "step+level", "short_window": 3,
                                          "calibration_memory": 1000, "warmup": 50,
                                          "stuck": True}
    VIEWS = ("step+level", "step", "level")
    DETECTORS = ("views", "calibrated")
    DEFAULT_DETECTOR = "views"
    #: Calibrated-detector parameters that shape its state: a checkpoint resumes only
    #: under the same values.
    _SHAPED = ("cell", "hidden_size", "num_layers", "window", "dtype", "n_members", "season",
               "season_buffer", "short_window", "routine_count")
    #: Calibrated-detector parameters whose ``0`` means None (TOML has no null).
    _ZERO_IS_NONE = ("season", "context_lag", "slow_memory")

    @classmethod
    def _kind(cls, flat: Mapping[str, Any]) -> str:
        return str(flat.get("detector", cls.DEFAULT_DETECTOR))

    @classmethod
    def split_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        flat = super().split_params(params)
        kind = cls._kind(flat)
        if kind not in cls.DETECTORS:
            raise ValueError(f"model.params.detector must be one of {', '.join(cls.DETECTORS)}"
                             f"; got {kind!r}")
        other = cls.VIEWS_ONLY if kind == "calibrated" else frozenset(cls.CALIBRATED) - cls.SHARED
        for name in sorted(other & flat.keys()):
            raise ValueError(f"model.params.{name} does not apply to the {kind!r} sensor "
                             f"detector")
        if "clip" in flat and not flat["clip"] > 0:
            raise ValueError(f"model.params.clip must be > 0, got {flat['clip']!r}")
        for name in ("short_window", "calibration_memory"):
            if name in flat and flat[name] < 1:
                raise ValueError(f"model.params.{name} must be >= 1, got {flat[name]!r}")
        if "warmup" in flat and flat["warmup"] < 0:
            raise ValueError(f"model.params.warmup must be >= 0, got {flat['warmup']!r}")
        if "views" in flat and flat["views"] not in cls.VIEWS:
            raise ValueError(f"model.params.views must be one of {', '.join(cls.VIEWS)}; "
                             f"got {flat['views']!r}")
        if kind == "calibrated":
            for name in cls._ZERO_IS_NONE:
                if name in flat and flat[name] < 0:
                    raise ValueError(f"model.params.{name} must be >= 0 (0: none), got "
                                     f"{flat[name]!r}")
            # The detector checks its settings when it builds, at its first reading: a
            # probe built now refuses a bad value when the configuration loads.
            probe = SensorAnomalyDetector(max_keys=1, **cls._calibrated_kwargs(flat))
            try:
                probe._build(["value"])
            except ValueError as exc:
                raise ValueError(f"model.params: {exc}") from None
        return flat

    @classmethod
    def _calibrated_kwargs(cls, flat: Mapping[str, Any]) -> dict[str, Any]:
        """The calibrated detector's own arguments among the task's flat parameters."""
        kwargs = {k: v for k, v in flat.items() if k in cls.CALIBRATED or k in _SCALING
                  or k in ("short_window", "warmup")}
        for name in cls._ZERO_IS_NONE:
            if kwargs.get(name) == 0:
                kwargs[name] = None
        return kwargs

    def __init__(self, params: Mapping[str, Any] | None = None, max_keys: int = 100_000,
                 key_fields: tuple[str, ...] = ("key",),
                 detector: RNNAnomalyDetector | SensorAnomalyDetector | None = None,
                 level_detector: RNNAnomalyDetector | None = None) -> None:
        self.params = self.split_params(params or {})
        self.max_keys = max_keys
        self.key_fields = tuple(key_fields)
        #: Which detector scores the readings: ``views`` or ``calibrated``.
        self.kind = self._kind(self.params)
        self.calibrated = self.kind == "calibrated"
        #: The level view's network next to the step's (``step+level``), else None.
        self.level_detector: RNNAnomalyDetector | None = None
        if self.calibrated:
            self.views = ""
            self.step = False
            network = {k: v for k, v in self.params.items() if k in NETWORK_FIELDS}
            kwargs = self._calibrated_kwargs(self.params)
            self.short_window = int(kwargs.get("short_window", 3))
            self.detector: Any = detector or SensorAnomalyDetector(
                max_keys=max_keys, **network, **kwargs)
        else:
            own = {**self.DEFAULTS, **{k: v for k, v in self.params.items()
                                       if k in self.DEFAULTS}}
            self.views = str(own["views"])
            self.step = self.views != "level"
            self.short_window = int(own["short_window"])
            self.calibration_memory = int(own["calibration_memory"])
            self.warmup = int(own["warmup"])
            self.stuck = bool(own["stuck"])
            detector_params = {k: v for k, v in self.params.items()
                               if k not in self.DEFAULTS and k != "detector"}
            #: The main view's network (the step's, or the level's alone); with the
            #: ``calibrated`` detector, that SensorAnomalyDetector.
            self.detector = detector or RNNAnomalyDetector(max_keys=max_keys,
                                                           **detector_params)
            if self.views == "step+level":
                self.level_detector = level_detector or RNNAnomalyDetector(
                    max_keys=max_keys, **detector_params)
        self._schema: frozenset[str] | None = None
        #: Feature slots (sorted names, as the detectors order them), fixed by the first
        #: event processed.
        self._features: dict[str, int] | None = None
        self._store: KeyedState | None = None
        #: Keys processed since :meth:`is_finite` last found everything finite (None: the
        #: whole state is still to be checked).
        self._unchecked: set[str] | None = None

    @property
    def _detectors(self) -> list[Any]:
        return [self.detector] + ([self.level_detector] if self.level_detector else [])

    # ------------------------------------------------------------- state

    def _build(self, event: Event) -> None:
        names = sorted(event.features, key=str)
        self._features = {name: k for k, name in enumerate(names)}
        if self.calibrated:
            return  # the detector keeps every per-key row itself
        D = len(names)
        residuals = D * len(self._detectors)
        rows = {**reading_rows(D), **surprise_rows(residuals, self.short_window)}
        templates = {name: np.zeros((1, *shape), dtype=dtype)
                     for name, (shape, dtype) in rows.items()}
        self._store = KeyedState(templates, max_keys=self.max_keys)

    def _matrix(self, events: list[Event]) -> np.ndarray:
        slots = self._features
        assert slots is not None
        D = len(slots)
        features = list(map(_FEATURES_OF, events))
        if D > 1 and set(map(len, features)) == {D}:
            # Usually every event carries exactly the known features: its values in slot
            # order in one C-level read each, straight into the matrix.
            try:
                flat = np.fromiter(chain.from_iterable(map(operator.itemgetter(*slots),
                                                           features)),
                                   dtype=np.float64, count=len(events) * D)
            except KeyError:
                pass
            else:
                return flat.reshape(len(events), D)
        rows: list[list[float]] = []
        for named in features:
            row = [0.0] * D
            for name, value in named.items():
                idx = slots.get(name)
                if idx is None:
                    raise UnknownFeature(name)
                row[idx] = value
            rows.append(row)
        return np.array(rows, dtype=np.float64).reshape(len(events), D)

    def check(self, event: Event) -> str | None:
        """The reason ``event`` cannot be processed, or None.

        The first event a fresh model sees fixes its features; later events may omit
        features (they read 0) but not bring new ones.
        """
        if self._features is not None:
            if event.features.keys() <= self._features.keys():
                return None
            known: Any = self._features
        else:
            if self._schema is None:
                self._schema = frozenset(event.features)
            known = self._schema
        return _schema_problem(known, event)

    # ------------------------------------------------------------- scoring

    def _forecast(self, det: RNNAnomalyDetector, V: np.ndarray, keys: list[str],
                  rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``det``'s forecasts (means, stds) of ``V[rows]``, each made before learning
        it; NaN rows where it had nothing to forecast from."""
        n, D = V.shape
        if rows.size == n and det._net is not None:  # every row (rows ascend, no repeats)
            _, means, stds = det.score_learn_many(V, keys, return_forecast=True)
            return means, stds
        means = np.full((n, D), np.nan)
        stds = np.full((n, D), np.nan)
        if det._net is None and rows.size:
            # The detector's feature slots come from the first reading it learns (the
            # same sorted order as the task's); that reading has no forecast.
            assert self._features is not None
            first = int(rows[0])
            det.learn_one(dict(zip(self._features, V[first].tolist(), strict=True)),
                          key=keys[first])
            rows = rows[1:]
        if rows.size == 0:
            return means, stds
        _, m, s = det.score_learn_many(V[rows], list(map(keys.__getitem__, rows.tolist())),
                                       return_forecast=True)
        means[rows] = m
        stds[rows] = s
        return means, stds

    def process(self, events: list[Event]) -> list[Scored]:
        if not events:
            return []
        if self._features is None:
            self._build(events[0])
        if self.calibrated:
            return self._process_calibrated(events)
        store = self._store
        assert store is not None and self._features is not None
        X = self._matrix(events)
        n, D = X.shape
        keys = list(map("|".join, map(_KEYS_OF, events)))
        slots, resets = store.slots_for(keys)
        arrays = store.arrays
        diffs = np.empty((n, D))
        has_prev = np.empty(n, dtype=np.bool_)
        stuck = np.empty(n)
        track_readings(slots, resets, X, arrays["last"], arrays["seen"], arrays["run"],
                       arrays["repeat_rate"], self.calibration_memory, diffs, has_prev,
                       stuck)
        if not self.stuck:
            stuck[:] = 0.0
        everyone = np.arange(n)
        if self.step:
            V = diffs
            means, stds = self._forecast(self.detector, V, keys, np.flatnonzero(has_prev))
        else:
            V = X
            means, stds = self._forecast(self.detector, V, keys, everyone)
        valid = ~np.isnan(means[:, 0]) if D else np.zeros(n, dtype=np.bool_)
        Z = _standardized(V, means, stds, valid)
        if self.level_detector is not None:
            level_means, level_stds = self._forecast(self.level_detector, X, keys, everyone)
            Z_level = _standardized(X, level_means, level_stds, valid)
        else:
            Z_level = np.empty((n, 0))
        factor = np.empty((n, D + Z_level.shape[1]))
        scores = np.empty(n)
        calibrate_surprise(slots, resets, valid, Z, Z_level, stuck, arrays["z2_mean"],
                           arrays["u_buf"], arrays["u_count"], arrays["u_mean"],
                           arrays["u_var"], arrays["u_rate"], arrays["u_excess"], self.warmup,
                           self.calibration_memory, factor, scores)
        scores += 0.0  # the kernel may give -0.0 (no signed zeros under fastmath)
        if self.step:
            means += X - diffs  # the previous reading plus the forecast step
        spreads = stds * factor[:, :D]
        self._note_touched(keys)
        return self._outputs(scores, means, spreads, valid)

    def _outputs(self, scores: np.ndarray, means: np.ndarray, spreads: np.ndarray,
                 valid: np.ndarray) -> list[Scored]:
        assert self._features is not None
        names = list(self._features)
        # C-level loops over the rows: this is the one part of a batch that builds Python
        # objects per event.
        predictions = list(map(dict, map(zip, repeat(names), means.tolist())))
        spread_dicts = list(map(dict, map(zip, repeat(names), spreads.tolist())))
        for i in np.flatnonzero(~valid).tolist():
            predictions[i], spread_dicts[i] = {}, {}
        return _scored_many(scores.tolist(), predictions, spread_dicts)

    def _process_calibrated(self, events: list[Event]) -> list[Scored]:
        """The batch through :meth:`SensorAnomalyDetector.score_learn_many` (keys, event
        times, forecasts made before each reading) in one call."""
        assert self._features is not None
        det = self.detector
        X = self._matrix(events)
        n, D = X.shape
        keys = list(map("|".join, map(_KEYS_OF, events)))
        times = np.fromiter(map(_TS_OF, events), dtype=np.float64, count=n)
        scores = np.zeros(n)
        means = np.full((n, D), np.nan)
        stds = np.full((n, D), np.nan)
        first = 0
        if det._net is None:
            # The detector's feature slots come from the first reading it learns (the
            # same sorted order as the task's); that reading has no forecast.
            det.learn_one(dict(zip(self._features, X[0].tolist(), strict=True)),
                          key=keys[0], t=times[0])
            first = 1
        if first < n:
            s, m, sd = det.score_learn_many(X[first:], keys[first:], times[first:],
                                            return_forecast=True)
            scores[first:], means[first:], stds[first:] = s, m, sd
        scores += 0.0  # the kernels may give -0.0 (no signed zeros under fastmath)
        valid = ~np.isnan(means[:, 0]) if D else np.zeros(n, dtype=np.bool_)
        self._note_touched(keys)
        return self._outputs(scores, means, stds, valid)

    def forecast(self, key: str) -> dict[str, float]:
        """Live forecast (mean) per feature for ``key``: the next reading's (with the
        calibrated detector, at one interval after the key's last reading)."""
        forecast = self.detector.forecast_one(key)
        if self.calibrated:
            return {str(name): mean for name, (mean, _) in forecast.items()}
        if not forecast or not self.step:
            return {str(name): mean for name, (mean, _) in forecast.items()}
        assert self._store is not None and self._features is not None
        slot = self._store.get(key)
        if slot < 0:
            return {}  # the key's last reading was evicted: no level to step from
        last = self._store.arrays["last"][slot]
        return {str(name): float(last[self._features[name]]) + mean
                for name, (mean, _) in forecast.items()}

    def apply_label(self, event_id: str, label: int) -> bool:
        # Sensor models learn without labels; labels only feed evaluation downstream.
        return False

    # ------------------------------------------------------------- checkpoints

    _LEVEL = "level/"
    _CALIBRATION = "calibration/"

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = self.detector.export_state()
        if self.calibrated:
            return {"task": "sensor", "detector_kind": self.kind, "detector": meta,
                    "features": None if self._features is None else list(self._features)
                    }, arrays
        out: dict[str, Any] = {"task": "sensor", "views": self.views, "detector": meta,
                               "features": None}
        if self.level_detector is not None:
            level_meta, level_arrays = self.level_detector.export_state()
            out["level_detector"] = level_meta
            arrays = {**arrays, **{self._LEVEL + k: v for k, v in level_arrays.items()}}
        if self._store is not None and self._features is not None:
            keys, rows = self._store.export()
            out["features"] = list(self._features)
            out["short_window"] = self.short_window
            out["keys"] = keys
            out["evictions"] = self._store.evictions
            arrays = {**arrays, **{self._CALIBRATION + k: v for k, v in rows.items()}}
        return out, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: Mapping[str, np.ndarray],
                   params: Mapping[str, Any], max_keys: int,
                   key_fields: tuple[str, ...] = ("key",)) -> SensorTask:
        _expect_task(meta, "sensor")
        flat = cls.split_params(params)
        # Checkpoints written before the calibrated detector existed hold views.
        kind, saved = cls._kind(flat), meta.get("detector_kind", "views")
        if saved != kind:
            raise ValueError(f"the checkpoint's sensor model runs the {saved!r} detector, the "
                             f"configuration {kind!r}")
        if kind == "calibrated":
            # The configuration's settings (learning rate, warm-up, ...) apply to the
            # restored state, which must fit them.
            configured = cls(params, max_keys, key_fields).detector._get_params()
            saved = meta["detector"]["params"]
            for name in cls._SHAPED:
                if saved.get(name) != configured[name]:
                    raise ValueError(f"the checkpoint's calibrated sensor detector has {name} "
                                     f"{saved.get(name)!r}, the configuration "
                                     f"{configured[name]!r}")
            detector = SensorAnomalyDetector.from_state(
                {**meta["detector"], "params": configured}, arrays)
            task = cls(params, max_keys, key_fields, detector=detector)
            if meta.get("features") is not None:
                names = list(meta["features"])
                task._build(Event(0.0, (), dict.fromkeys(names, 0.0), None, None, ""))
            return task
        views = flat.get("views", cls.DEFAULTS["views"])
        if meta.get("views") != views:
            raise ValueError(f"the checkpoint's sensor model has views {meta.get('views')!r}, "
                             f"the configuration {views!r}")

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        own = (cls._LEVEL, cls._CALIBRATION)
        detector = RNNAnomalyDetector.from_state(
            meta["detector"], {k: v for k, v in arrays.items() if not k.startswith(own)})
        level = None
        if "level_detector" in meta:
            level = RNNAnomalyDetector.from_state(meta["level_detector"], part(cls._LEVEL))
        task = cls(params, max_keys, key_fields, detector=detector, level_detector=level)
        if meta.get("features") is not None:
            if meta["short_window"] != task.short_window:
                raise ValueError(f"the checkpoint's sensor calibration has short_window "
                                 f"{meta['short_window']}, the configuration "
                                 f"{task.short_window}")
            names = list(meta["features"])
            task._build(Event(0.0, (), dict.fromkeys(names, 0.0), None, None, ""))
            assert task._store is not None
            task._store.load(list(meta["keys"]), part(cls._CALIBRATION))
            task._store.evictions = int(meta["evictions"])
        return task

    def forget_keys(self) -> None:
        """Drop every key's state, keeping the weights (a warm start)."""
        for store in [det._store for det in self._detectors] + [self._store]:
            if store is not None:
                for key in list(store):
                    store.remove(key)
                store.evictions = 0

    def _note_touched(self, keys: list[str]) -> None:
        if self._unchecked is not None:
            self._unchecked.update(keys)

    def _weights(self) -> list[np.ndarray]:
        """Weights and optimizer state of every network."""
        nets = self.detector._nets if self.calibrated else [
            det._net for det in self._detectors if det._net is not None]
        return [array for net in nets for array in net.learned_arrays]

    def is_finite(self) -> bool:
        """Whether the weights and every key's state are finite.

        A batch changes the weights and the rows of its own keys only, so once the whole
        state has been found finite, later calls look at the weights and at the rows of the
        keys processed since the previous call: the cost follows the batch, not the number
        of keys held (a full scan of 100,000 keys per poll would cost more than the poll).
        """
        stores = [det._store for det in self._detectors if det._net is not None]
        if self._store is not None:
            stores.append(self._store)
        arrays = self._weights()
        keys = self._unchecked

        def checked(store: KeyedState) -> list[np.ndarray]:
            if self.calibrated:
                return [store.arrays[name] for name in self.detector.finite_rows]
            return list(store.arrays.values())

        if keys is None or any(len(keys) * 8 >= store.capacity for store in stores):
            # Few keys held: a whole array costs no more to check than a gather of rows.
            arrays += [a for store in stores for a in checked(store)]
        elif keys:
            for store in stores:
                rows = [slot for slot in map(store.get, keys) if slot >= 0]
                arrays += [a[rows] for a in checked(store)]
        finite = _finite(arrays)
        self._unchecked = set() if finite else None
        return finite

    def stats(self) -> dict[str, float]:
        """The key count is the task's (a key with one reading counts); updates, losses
        and gradient norms are summed over the views' networks. With the calibrated
        detector, keys and evictions are its own, updates and skips are summed over its
        members, and the loss and gradient norm are the members' mean."""
        if self.calibrated:
            det = self.detector
            updated = [net for net in det._nets if net.n_updates]
            return {
                "keys": det.n_keys,
                "evictions": det.n_evictions,
                "version": det.n_updates,
                "skipped": det.n_skipped_updates,
                "loss": float(np.mean([net.stats[0] for net in updated])) if updated
                else float("nan"),
                "grad_norm": float(np.mean([net.stats[1] for net in updated])) if updated
                else float("nan"),
            }
        store = self._store
        detectors = self._detectors
        losses = [d.last_loss for d in detectors]
        norms = [d.last_grad_norm for d in detectors]
        return {
            "keys": 0 if store is None else len(store),
            "evictions": 0 if store is None else store.evictions,
            "version": sum(d.n_updates for d in detectors),
            "skipped": sum(d.n_skipped_updates for d in detectors),
            "loss": float(sum(losses)),
            "grad_norm": float(sum(norms)),
        }


_KEYS_OF = operator.attrgetter("keys")
_TS_OF = operator.attrgetter("ts")
_FEATURES_OF = operator.attrgetter("features")


def _standardized(V: np.ndarray, means: np.ndarray, stds: np.ndarray,
                  valid: np.ndarray) -> np.ndarray:
    """``(V - means) / stds`` on the valid rows, 0 elsewhere, always finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        Z = np.where(valid[:, None], (V - means) / stds, 0.0)
    return np.nan_to_num(Z, nan=0.0, posinf=1e150, neginf=-1e150)


def _expect_task(meta: Mapping[str, Any], task: str) -> None:
    if meta.get("task") != task:
        raise ValueError(f"the checkpoint holds a {meta.get('task')!r} model, not {task!r}")


class ForecastTask(_Task):
    """One-step-ahead forecasts of target features per key, with their spread.

    Each target has its own :class:`~stream_rnn.models.RNNForecaster` (so ``log``,
    ``diff``, ``season``, ``seasonal_diff`` and ``seasonal_lags`` model trend and
    seasonality) reading the target's history and the event's other features as
    covariates known in advance (an hour-of-day or holiday flag). An event's prediction is
    the forecast made from everything before it and its own covariates; its spread is the
    key's root-mean-square one-step error so far (an exponential average once
    ``spread_memory`` errors are in), available from the key's third event; its score is
    ``P(|Z| <= |y - forecast| / spread)`` (for several targets, the chi-square tail of their
    mean squared standardized errors): 0 while there is no spread yet.

    Parameters (``[model.params]``): ``target`` (a feature name or a list of them; default
    every feature of the first event, with no covariates), ``spread_memory`` (default 500),
    and :class:`~stream_rnn.models.RNNForecaster`'s ``log``, ``diff``, ``season``,
    ``seasonal_diff``, ``seasonal_lags``, ``level_input``, ``squash``, ``damped``,
    ``zero_head``, ``level_smoothing``, ``season_smoothing`` (absent: no smoothing),
    ``scale_memory``, ``clip``, ``activation``, ``weight_decay``, ``dropout``.
    """

    name = "forecast"
    PARAMS = {**_SCALING, "target": "str|list[str]", "spread_memory": "int", "log": "bool",
              "diff": "int", "season": "int", "seasonal_diff": "int", "seasonal_lags": "int",
              "level_input": "bool", "squash": "bool", "damped": "bool", "zero_head": "bool",
              "level_smoothing": "float", "season_smoothing": "float"}

    def __init__(self, params: Mapping[str, Any] | None = None, max_keys: int = 100_000,
                 key_fields: tuple[str, ...] = ("key",)) -> None:
        self.params = self.split_params(params or {})
        self.max_keys = max_keys
        self.key_fields = tuple(key_fields)
        model_params = dict(self.params)
        target = model_params.pop("target", None)
        self.spread_memory = int(model_params.pop("spread_memory", 500))
        if self.spread_memory < 1:
            raise ValueError(f"spread_memory must be >= 1, got {self.spread_memory}")
        self._model_params = model_params
        self.targets: list[str] | None = None
        if target is not None:
            names = [target] if isinstance(target, str) else list(target)
            if not names or len(set(names)) != len(names):
                raise ValueError(f"target must name distinct features, got {target!r}")
            self.targets = names
        # Probe the transform options now rather than at the first event.
        RNNForecaster(**model_params)._validate_transform()
        self.models: list[RNNForecaster] = []
        self.schema: frozenset[str] | None = None
        # The features of the first event that passed check(): until the first batch is
        # processed, the rest of that batch is checked against them.
        self._first_features: frozenset[str] | None = None
        self._spread: KeyedState | None = None

    def _build(self, first: Event) -> None:
        self.schema = self._first_features or frozenset(first.features)
        if self.targets is None:
            self.targets = sorted(first.features)
        self.models = [RNNForecaster(max_keys=self.max_keys, **self._model_params)
                       for _ in self.targets]
        T = len(self.targets)
        self._spread = KeyedState({"sq_error": np.zeros((1, T)),
                                   "count": np.zeros((1, T), dtype=np.int64)},
                                  max_keys=self.max_keys)

    def check(self, event: Event) -> str | None:
        """The reason ``event`` cannot be processed, or None.

        The first event fixes the features; every event must carry the targets (with
        ``log``, positive), covariates may be missing (they read 0) but none may be new.
        """
        schema = self.schema or self._first_features or frozenset(event.features)
        problem = _schema_problem(schema, event)
        if problem is not None:
            return problem
        targets = self.targets if self.targets is not None else sorted(schema)
        for name in targets:
            if name not in event.features:
                return Rejection("missing_field", f"no target feature {name!r}")
            if self._model_params.get("log") and not event.features[name] > 0:
                return Rejection("bad_features",
                                 f"target {name!r} must be positive with log, got "
                                 f"{event.features[name]!r}")
        if self._first_features is None:
            self._first_features = frozenset(event.features)
        return None

    def process(self, events: list[Event]) -> list[Scored]:
        if not events:
            return []
        if self._spread is None:
            self._build(events[0])
        targets = self.targets
        assert targets is not None and self._spread is not None
        floor_memory = 1.0 / self.spread_memory
        spread = self._spread
        out = []
        for event in events:
            key = "|".join(event.keys)
            features = event.features
            covariates = {n: v for n, v in features.items() if n not in targets}
            slot, is_new = spread.slot_for(key)
            if is_new:
                spread.clear(slot)
            sq_error = spread.arrays["sq_error"][slot]
            count = spread.arrays["count"][slot]
            prediction: dict[str, float] = {}
            spreads: dict[str, float] = {}
            z2 = []
            for j, (name, model) in enumerate(zip(targets, self.models, strict=True)):
                y = features[name]
                if model._store is not None and model._store.get(key) >= 0:
                    mean = model.forecast(1, [covariates], key=key)[0]
                    prediction[name] = mean
                    if count[j] > 0:
                        # A perfect history would give a zero spread and infinite scores.
                        std = max(math.sqrt(sq_error[j]), 1e-9 * (1.0 + abs(mean)))
                        spreads[name] = std
                        z2.append(((y - mean) / std) ** 2)
                    n = count[j] + 1
                    alpha = max(1.0 / n, floor_memory)
                    sq_error[j] += alpha * ((y - mean) ** 2 - sq_error[j])
                    count[j] = n
                model.learn_one(y, covariates, key=key)
            if z2:
                score = float(_chi2_tail_score(np.array([sum(z2) / len(z2)]), len(z2))[0])
            else:
                score = 0.0
            out.append(Scored(score, prediction, spreads))
        return out

    def apply_label(self, event_id: str, label: int) -> bool:
        # Forecasts learn from the series itself; labels only feed evaluation downstream.
        return False

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {
            "task": "forecast",
            "targets": self.targets,
            "schema": None if self.schema is None else sorted(self.schema),
            "models": [],
        }
        arrays: dict[str, np.ndarray] = {}
        for j, model in enumerate(self.models):
            model_meta, model_arrays = model.export_state()
            meta["models"].append(model_meta)
            arrays.update({f"target{j}/{k}": v for k, v in model_arrays.items()})
        if self._spread is not None:
            keys, rows = self._spread.export()
            meta["spread"] = {"keys": keys, "evictions": self._spread.evictions}
            arrays.update({f"spread/{k}": v for k, v in rows.items()})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: Mapping[str, np.ndarray],
                   params: Mapping[str, Any], max_keys: int,
                   key_fields: tuple[str, ...] = ("key",)) -> ForecastTask:
        _expect_task(meta, "forecast")
        task = cls(params, max_keys, key_fields)
        if meta["schema"] is None:
            return task
        if task.targets is not None and task.targets != meta["targets"]:
            raise ValueError(f"the checkpoint forecasts {meta['targets']}, the configuration "
                             f"names {task.targets}")
        first = Event(0.0, (), dict.fromkeys(meta["schema"], 0.0), None, None, "")
        task.targets = list(meta["targets"])
        task._build(first)
        task.models = []
        for j, model_meta in enumerate(meta["models"]):
            prefix = f"target{j}/"
            task.models.append(RNNForecaster.from_state(
                model_meta, {k[len(prefix):]: v for k, v in arrays.items()
                             if k.startswith(prefix)}))
        assert task._spread is not None
        task._spread.load(list(meta["spread"]["keys"]),
                          {k[7:]: v for k, v in arrays.items() if k.startswith("spread/")})
        task._spread.evictions = int(meta["spread"]["evictions"])
        return task

    def forget_keys(self) -> None:
        """Drop every key's state, keeping the weights (a warm start)."""
        stores = [m._store for m in self.models] + [self._spread]
        for store in stores:
            if store is not None:
                for key in list(store):
                    store.remove(key)
                store.evictions = 0

    def is_finite(self) -> bool:
        arrays = []
        for model in self.models:
            if model._net is not None:
                arrays.extend([*model._net.learned_arrays, *model._store.arrays.values()])
        if self._spread is not None:
            arrays.extend(self._spread.arrays.values())
        return _finite(arrays)

    def stats(self) -> dict[str, float]:
        models = self.models
        losses = [m.last_loss for m in models]
        norms = [m.last_grad_norm for m in models]
        return {
            "keys": models[0].n_keys if models else 0,
            "evictions": models[0].n_evictions if models else 0,
            "version": sum(m.n_updates for m in models),
            "skipped": sum(m.n_skipped_updates for m in models),
            "loss": sum(losses) if models else float("nan"),
            "grad_norm": sum(norms) if models else float("nan"),
        }


class FraudTask(_Task):
    """Fraud probability of each transaction, learning from labels revealed later.

    The configured key fields (for instance ``("key", "terminal")``: the card and the
    terminal) are :class:`~stream_rnn.models.FraudDetector`'s entity keys; the amount is
    the feature named by ``amount``; other features are ignored. The recurrent networks
    take ``cell``, ``hidden_size``, ``window``, ``update_every``, ``seed`` and ``lr`` (as
    ``rnn_lr``) from ``[model]`` (``num_layers``, ``optimizer``, ``clip_norm`` and
    ``dtype`` do not apply: they are single-layer, Adam, clipped at 1, float32). Labels
    reach the model only through :meth:`apply_label`, never from the events.

    Parameters (``[model.params]``): ``amount`` (default ``"amount"``) and
    :class:`~stream_rnn.models.FraudDetector`'s ``windows_days``, ``recurrent``,
    ``state_features``, ``aggregates``, ``scale_memory``, ``head_hidden``, ``head_lr``,
    ``head_weight_decay``, ``head_batch``, ``norm_memory``, ``cold_start``, ``prior``,
    ``max_pending``.
    """

    name = "fraud"
    PARAMS = {"amount": "str", "windows_days": "list[float]", "recurrent": "bool",
              "state_features": "bool", "aggregates": "bool", "scale_memory": "int",
              "head_hidden": "int", "head_lr": "float", "head_weight_decay": "float",
              "head_batch": "int", "norm_memory": "int", "cold_start": "float",
              "prior": "float", "max_pending": "int"}
    #: ``[model]`` fields whose only value its networks take (the fields' defaults).
    FIXED = {"num_layers": 1, "optimizer": "adam", "clip_norm": 1.0, "dtype": "float32"}
    _TAKEN = {"cell": "cell", "hidden_size": "hidden_size", "window": "window",
              "update_every": "update_every", "seed": "seed", "lr": "rnn_lr"}
    # Internal field names of the mapping handed to the detector: never a key field.
    _TS = "\x00ts"
    _ID = "\x00id"

    def __init__(self, params: Mapping[str, Any] | None = None, max_keys: int = 100_000,
                 key_fields: tuple[str, ...] = ("key",),
                 detector: FraudDetector | None = None) -> None:
        self.params = self.split_params(params or {})
        self.max_keys = max_keys
        self.key_fields = tuple(key_fields)
        if "features" in self.key_fields:
            raise ValueError("a key field cannot be named 'features'")
        for name, only in self.FIXED.items():
            if self.params.get(name, only) != only:
                raise ValueError(f"model.{name} does not apply to the fraud task (its networks "
                                 f"are single-layer, Adam, clipped at 1, float32); leave it at "
                                 f"{only!r}")
        kwargs = {self._TAKEN[k]: v for k, v in self.params.items() if k in self._TAKEN}
        kwargs.update({k: v for k, v in self.params.items() if k in self.PARAMS})
        if "windows_days" in kwargs:
            kwargs["windows_days"] = tuple(float(w) for w in kwargs["windows_days"])
        self.detector = detector or FraudDetector(
            keys=self.key_fields, time_field=self._TS, id_field=self._ID, max_keys=max_keys,
            **kwargs)
        self.amount = self.detector.amount

    def check(self, event: Event) -> str | None:
        """The reason ``event`` cannot be processed (no amount, or a negative one)."""
        value = event.features.get(self.amount)
        if value is None:
            return Rejection("missing_field", f"no amount feature {self.amount!r}")
        if value < 0:
            return Rejection("bad_features", f"amount {self.amount!r} is negative: {value!r}")
        return None

    def _as_transaction(self, event: Event) -> dict[str, Any]:
        # Only what the detector may read: never the event's label.
        tx: dict[str, Any] = dict(zip(self.key_fields, event.keys, strict=True))
        tx[self._TS] = event.ts
        tx[self._ID] = event.event_id
        tx["features"] = event.features
        return tx

    def process(self, events: list[Event]) -> list[Scored]:
        if not events:
            return []
        probabilities = self.detector.score_learn_many(
            [self._as_transaction(e) for e in events])
        return [Scored(p, {"fraud_probability": p}, {}) for p in probabilities.tolist()]

    def apply_label(self, event_id: str, label: int) -> bool:
        """Reveal the label of transaction ``event_id``: the head learns from the features
        it was scored with; False if it is not waiting for a label here."""
        if event_id not in self.detector._pending:
            return False
        return self.detector.reveal_label(event_id, label)

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = self.detector.export_state()
        return {"task": "fraud", "key_fields": list(self.key_fields), "detector": meta}, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: Mapping[str, np.ndarray],
                   params: Mapping[str, Any], max_keys: int,
                   key_fields: tuple[str, ...] = ("key",)) -> FraudTask:
        _expect_task(meta, "fraud")
        if tuple(meta["key_fields"]) != tuple(key_fields):
            raise ValueError(f"the checkpoint was written with key fields "
                             f"{meta['key_fields']}, the configuration has {list(key_fields)}")
        detector = FraudDetector.from_state(meta["detector"], arrays)
        return cls(params, max_keys, key_fields, detector=detector)

    def forget_keys(self) -> None:
        """Drop every entity and pending transaction, keeping the weights (a warm start)."""
        self.detector.forget_entities()

    def is_finite(self) -> bool:
        det = self.detector
        arrays = [det._theta, det._adam, det._norm]
        for store, net in zip(det._stores, det._nets, strict=True):
            arrays.extend(store.arrays.values())
            if net is not None:
                arrays.extend(net.learned_arrays)
        return _finite(arrays)

    def stats(self) -> dict[str, float]:
        """Sums over the key fields; the version counts recurrent updates and labels
        learned (the head's training examples)."""
        det = self.detector
        nets = [net for net in det._nets if net is not None]
        updated = [net for net in nets if net.n_updates]
        return {
            "keys": sum(det.n_keys.values()),
            "evictions": sum(det.n_evictions.values()),
            "version": sum(net.n_updates for net in nets) + det.n_labels_learned,
            "skipped": sum(net.n_skipped for net in nets),
            "loss": float(sum(net.stats[0] for net in updated)) if updated else float("nan"),
            "grad_norm": float(sum(net.stats[1] for net in updated)) if updated
            else float("nan"),
            "labels": det.n_labels_learned,
            "pending": det.n_pending,
        }


TASKS: dict[str, type[SensorTask] | type[ForecastTask] | type[FraudTask]] = {
    "sensor": SensorTask,
    "fraud": FraudTask,
    "forecast": ForecastTask,
}


def check_params(task: str, params: Mapping[str, Any],
                 key_fields: tuple[str, ...] = ("key",)) -> dict[str, Any]:
    """Validate a task's parameters without keeping a model; returns them flat.

    Raises ValueError naming the parameter: unknown task, unknown parameter, wrong type,
    or a value the task's model rejects.

    Examples
    --------
    >>> check_params("forecast", {"hidden_size": 8, "params": {"target": "demand"}})
    {'hidden_size': 8, 'target': 'demand'}
    >>> check_params("forecast", {"params": {"season": "daily"}})
    Traceback (most recent call last):
    ...
    ValueError: model.params.season: expected an integer, got 'daily'
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    cls = TASKS[task]
    flat = cls.split_params(params)
    # Models build their networks lazily, on the first event: without this a bad cell or
    # optimizer would pass the configuration and fail at the first record instead.
    Network(input_size=1, **{k: flat[k] for k in NETWORK_FIELDS if k in flat})
    if cls is FraudTask:
        FraudTask(flat | {"max_pending": 1}, max_keys=1, key_fields=key_fields)
    elif cls is ForecastTask:
        ForecastTask(flat, max_keys=1, key_fields=key_fields)
    return flat


def make_task(task: str, params: Mapping[str, Any], max_keys: int,
              key_fields: tuple[str, ...] = ("key",)) -> SensorTask | ForecastTask | FraudTask:
    """A fresh task model of kind ``task``.

    ``params`` holds the ``[model]`` network fields and the task's own parameters, flat
    or with the latter under ``params``; ``key_fields`` names the entity key fields, in
    the order of each event's ``keys``.
    """
    check_params(task, params, tuple(key_fields))
    return TASKS[task](params, max_keys, tuple(key_fields))
