"""Hyperparameter search over a stream: seeded random search with successive halving.

Each trial is a model configuration drawn from a :class:`SearchSpace`. All trials are
first measured on a short prefix of the stream; the best ``1/eta`` of them go on to a
prefix ``eta`` times longer, and so on until the survivors have seen the whole stream
(Jamieson & Talwalkar, 2016). Configurations that learn slowly at first can lose early;
that is the price of spending most of the budget on the promising ones, and the reason the
first rung is not made too short.

The measurement is a callable ``evaluate(params, fraction) -> Measurement`` run in worker
processes, so it must be picklable (a module-level function or a ``functools.partial`` of
one). Ranking uses the measurement's ``score`` (higher is better); when a prefix is too
short for the score to exist (no labelled incident yet: ``score`` is NaN for any trial of
the rung) the whole rung is ranked by the training loss instead, which always exists.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Choice",
    "LogUniform",
    "Measurement",
    "SearchSpace",
    "Trial",
    "TuneResult",
    "successive_halving",
    "rung_fractions",
]


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values, equally likely."""

    values: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)


@dataclass(frozen=True)
class LogUniform:
    """A float spread evenly on a log scale between ``low`` and ``high``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got {self.low}, {self.high}")

    def sample(self, rng: random.Random) -> float:
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        # Rounded so the printed configuration is the one that was measured.
        return float(f"{value:.3g}")


@dataclass(frozen=True)
class SearchSpace:
    """Named dimensions; ``constraints`` reject combinations that make no sense."""

    dimensions: Mapping[str, Choice | LogUniform]
    constraints: tuple[Callable[[dict[str, Any]], bool], ...] = ()

    def sample(self, rng: random.Random, max_tries: int = 1000) -> dict[str, Any]:
        for _ in range(max_tries):
            params = {name: dim.sample(rng) for name, dim in self.dimensions.items()}
            if all(ok(params) for ok in self.constraints):
                return params
        raise ValueError("the search space constraints reject every sampled configuration")


@dataclass(frozen=True)
class Measurement:
    """What one trial reached on one prefix: the metric (NaN if undefined) and its loss."""

    score: float
    loss: float
    events: int = 0
    seconds: float = 0.0


@dataclass
class Trial:
    """One configuration and its measurements, rung by rung."""

    number: int
    params: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def rungs(self) -> int:
        return len(self.measurements)


@dataclass
class TuneResult:
    """Every trial, the survivors' order, and the best configuration."""

    trials: list[Trial]
    best: Trial
    fractions: tuple[float, ...]


def rung_fractions(trials: int, eta: int, min_fraction: float) -> tuple[float, ...]:
    """Prefix fractions of the rungs: ``..., 1/eta^2, 1/eta, 1``, none below ``min_fraction``.

    There are as many rungs as halving ``trials`` by ``eta`` allows before one is left.

    >>> rung_fractions(9, 3, 0.05)
    (0.1111111111111111, 0.3333333333333333, 1.0)
    >>> rung_fractions(9, 3, 0.2)
    (0.3333333333333333, 1.0)
    >>> rung_fractions(1, 3, 0.05)
    (1.0,)
    """
    if eta < 2:
        raise ValueError(f"eta must be >= 2, got {eta}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    rungs = 1
    while eta**rungs <= trials and eta ** -(rungs) >= min_fraction:
        rungs += 1
    return tuple(float(eta) ** -(rungs - 1 - r) for r in range(rungs))


def _rank(trials: Sequence[Trial]) -> list[Trial]:
    """Best first, by the latest rung's score, or by loss when any score is undefined."""
    latest = [t.measurements[-1] for t in trials]
    by_score = all(math.isfinite(m.score) for m in latest)

    def key(trial: Trial) -> tuple[float, int]:
        m = trial.measurements[-1]
        if by_score:
            return (-m.score, trial.number)
        loss = m.loss if math.isfinite(m.loss) else math.inf
        return (loss, trial.number)

    return sorted(trials, key=key)


def _default_executor(workers: int) -> Executor:
    # Spawned workers do not inherit the parent's threads (Kafka clients, metrics servers)
    # or locks, which a fork could copy in a held state.
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))


def successive_halving(
    evaluate: Callable[[dict[str, Any], float], Measurement],
    space: SearchSpace,
    trials: int,
    seed: int = 0,
    eta: int = 3,
    min_fraction: float = 0.1,
    workers: int | None = None,
    base: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> TuneResult:
    """Random search with successive halving; the same seed gives the same trials.

    ``base`` is the starting configuration: sampled values override it, and trial 0
    measures it unchanged, so the search reports whether it found anything better than
    what the user already had.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    rng = random.Random(seed)
    base = dict(base or {})
    configs = [{**base, **space.sample(rng)} for _ in range(trials)]
    if base:
        configs[0] = dict(base)
    population = [Trial(number=i, params=p) for i, p in enumerate(configs)]
    fractions = rung_fractions(trials, eta, min_fraction)
    workers = max(1, workers or os.cpu_count() or 1)
    say = progress or (lambda _line: None)
    own = executor is None
    pool = executor or (_default_executor(workers) if workers > 1 else None)
    try:
        alive = population
        for rung, fraction in enumerate(fractions):
            say(f"rung {rung + 1}/{len(fractions)}: {len(alive)} trial(s) on "
                f"{fraction:.0%} of the stream")
            results = _run(pool, evaluate, [t.params for t in alive], fraction)
            for trial, measurement in zip(alive, results, strict=True):
                trial.measurements.append(measurement)
                say(f"  trial {trial.number:>3}: score {measurement.score:.4f}  "
                    f"loss {measurement.loss:.4f}  {_describe(trial.params)}")
            ranked = _rank(alive)
            if rung < len(fractions) - 1:
                alive = ranked[: max(1, math.ceil(len(alive) / eta))]
            else:
                alive = ranked
    finally:
        if own and pool is not None:
            pool.shutdown()
    return TuneResult(trials=population, best=alive[0], fractions=fractions)


def _run(pool: Executor | None, evaluate: Callable[[dict[str, Any], float], Measurement],
         configs: list[dict[str, Any]], fraction: float) -> list[Measurement]:
    if pool is None:
        return [evaluate(params, fraction) for params in configs]
    futures = [pool.submit(evaluate, params, fraction) for params in configs]
    return [f.result() for f in futures]


def _describe(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))



# --------------------------------------------------------------------------- on a scenario

#: The metric a scenario is tuned for by default, per task: ranking quality where labels
#: exist, forecast error where the task is forecasting.
DEFAULT_METRICS = {"sensor": "average_precision", "fraud": "average_precision",
                   "forecast": "mae"}

def network_space(task: str) -> SearchSpace:
    """The ``[model]`` fields searched for ``task``: cell, size, window, update cadence,
    optimizer and learning rate (fraud networks are single-layer Adam: no optimizer)."""
    dims: dict[str, Choice | LogUniform] = {
        "cell": Choice(("lstm", "gru", "elman")),
        "hidden_size": Choice((8, 16, 32, 64)),
        "window": Choice((4, 8, 16, 32)),
        "update_every": Choice((1, 2, 4, 8, 16)),
        "lr": LogUniform(3e-4, 3e-2),
    }
    if task != "fraud":
        dims["optimizer"] = Choice(("adam", "rmsprop", "sgd"))
    return SearchSpace(dims, constraints=(_update_within_window,))


def _update_within_window(params: dict[str, Any]) -> bool:
    # Updating less often than the window is long would leave events no gradient reaches.
    return params["update_every"] <= params["window"]


def is_error_metric(name: str) -> bool:
    """Whether lower is better for summary metric ``name`` (errors, delays, losses)."""
    return bool({"mae", "rmse", "mse", "mape", "delay", "loss"} & set(name.split("_")))


@dataclass(frozen=True)
class ScenarioObjective:
    """``evaluate(params, fraction)`` for :func:`successive_halving`: replay the first
    ``fraction`` of a scenario's records with ``params`` and read ``metric`` from the
    summary (negated for error metrics, so higher is always better).

    Picklable, so trials run in worker processes; each worker loads the scenario itself.
    """

    scenario_path: str
    metric: str
    total_records: int
    overrides: tuple[tuple[str, Any], ...] = ()

    def __call__(self, params: dict[str, Any], fraction: float) -> Measurement:
        import time

        from stream_rnn.io.scenario import load_scenario
        from stream_rnn.replay import replay, summarize

        scenario = load_scenario(self.scenario_path)
        limit = max(1, round(self.total_records * fraction)) if fraction < 1 else None
        started = time.perf_counter()
        result = replay(scenario, overrides={**dict(self.overrides), **params}, limit=limit)
        summary = summarize(result)
        value = summary.get(self.metric)
        score = float(value) if isinstance(value, int | float) else math.nan
        if is_error_metric(self.metric):
            score = -score
        losses = [s["loss"] for s in result.loss if math.isfinite(s.get("loss", math.nan))]
        # The latest quarter of the loss samples: what the model reached, not its warm-up.
        tail = losses[len(losses) - max(1, len(losses) // 4):] if losses else []
        loss = sum(tail) / len(tail) if tail else math.inf
        return Measurement(score=score if math.isfinite(score) else math.nan, loss=loss,
                           events=result.n_events, seconds=time.perf_counter() - started)
