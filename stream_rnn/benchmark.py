"""Throughput of the honest online loop: events per second through the public API.

Every measurement replays a keyed stream of dict events (4 features, keys taking turns)
through one path, in one process, and reports the median of several timed runs that
follow an untimed warm-up run. The paths are

``per-event``
    ``RNNRegressor.predict_one(x, key=k)`` then ``learn_one(x, y, key=k)`` per event, as
    a consumer loop calls them (``per-event 1 key``: the same over a single key, measured
    at the reference hidden size only).
``batch``
    ``RNNRegressor.predict_learn_many(X, y, keys)`` over the stream in poll-sized chunks.
``score per-event``
    ``predict_one`` only.
``score batch``
    ``Network.run_batch`` with learning switched off for every event, key-to-slot lookup
    included (raw head outputs: the target's unscaling is left out).
``numpy``
    The same per-event loop (``predict_one`` then ``learn_one``, the same work per event,
    see :class:`NumpyReferenceLoop`) rebuilt on the plain NumPy reference
    ``tests/naive.py`` (float64, Adam, gradient clipping), which only a source checkout
    has; at the reference hidden size only, as it is slow. The ``per-event`` row of each
    ``update_every`` reports its events/s divided by this loop's at that ``update_every``.

Before timing, every key has already seen a full window of events (learned untimed
through the batch path), so runs measure the steady state rather than the cheap first
steps of fresh keys; each timed run starts from the same pickled model. A run's event
count is a multiple of ``keys * update_every``, so every key completes whole update
cycles. Fast paths replay the stream several times per run so that a run lasts long enough
to time (``passes`` in the results). The timed runs of all paths of one cell and hidden
size take turns, so load from other processes falls on every path alike.

Examples
--------
>>> from stream_rnn.benchmark import BenchConfig
>>> config = BenchConfig.quick()
>>> config.cells, config.hidden, config.repeats
(('lstm',), (16,), 2)
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import math
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import numpy as np

import stream_rnn

__all__ = [
    "CELLS",
    "BenchConfig",
    "Target",
    "TARGETS",
    "Stream",
    "make_stream",
    "machine_info",
    "reference_path",
    "load_numpy_reference",
    "NumpyReferenceLoop",
    "run_benchmark",
    "format_report",
]

CELLS = ("lstm", "gru", "elman")
N_INPUTS = 4
WINDOW = 16
DTYPE = "float32"

PER_EVENT = "per-event"
PER_EVENT_1KEY = "per-event 1 key"
BATCH = "batch"
SCORE = "score per-event"
SCORE_BATCH = "score batch"
NUMPY = "numpy"
PATHS = (PER_EVENT, PER_EVENT_1KEY, BATCH, SCORE, SCORE_BATCH, NUMPY)

# Replaying a fast path more than this many times per run buys no extra precision.
MAX_PASSES = 50


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Parameters
    ----------
    cells
        Recurrent cells to measure.
    hidden
        Hidden sizes to measure.
    update_every
        ``k1`` values (learned events of a key between updates), each at most the window.
    events
        Timed events per run, rounded up to a multiple of ``keys * max(update_every)``.
    keys
        Keys taking turns in the stream.
    repeats
        Timed runs per measurement (after one warm-up run); the median is reported.
    chunk
        Events per ``predict_learn_many`` / ``run_batch`` call (one poll batch).
    numpy_events
        Timed events per run of the NumPy reference, rounded up to a multiple of
        ``keys * update_every``.
    reference_hidden
        Hidden size of the NumPy reference and of the one-key variant; when it is not
        among ``hidden``, the first of ``hidden`` is used.
    min_run_seconds
        Fast paths replay the stream until a run lasts about this long.
    seed
        Seeds the stream and the weights.
    """

    cells: tuple[str, ...] = CELLS
    hidden: tuple[int, ...] = (16, 32, 64)
    update_every: tuple[int, ...] = (1, 16)
    events: int = 8000
    keys: int = 100
    repeats: int = 5
    chunk: int = 500
    numpy_events: int = 300
    reference_hidden: int = 32
    min_run_seconds: float = 0.2
    seed: int = 0

    @classmethod
    def quick(cls) -> BenchConfig:
        """A tiny configuration that runs in seconds (for tests), not for reading numbers."""
        return cls(cells=("lstm",), hidden=(16,), update_every=(1, 16), events=320, keys=10,
                   repeats=2, chunk=100, numpy_events=20, reference_hidden=16,
                   min_run_seconds=0.0)

    def __post_init__(self) -> None:
        for cell in self.cells:
            if cell not in CELLS:
                raise ValueError(f"unknown cell {cell!r}; choose from {', '.join(CELLS)}")
        if not self.cells or not self.hidden or not self.update_every:
            raise ValueError("cells, hidden and update_every must not be empty")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if any(not 1 <= k <= WINDOW for k in self.update_every):
            raise ValueError(f"update_every must be in [1, {WINDOW}], got {self.update_every}")
        for name in ("events", "keys", "repeats", "chunk", "numpy_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def ref_hidden(self) -> int:
        """Hidden size the NumPy reference and the one-key variant run at."""
        return self.reference_hidden if self.reference_hidden in self.hidden else self.hidden[0]

    @property
    def timed_events(self) -> int:
        """Events per pass of a timed run (``events`` rounded to whole update cycles)."""
        return _round_up(self.events, self.keys * max(self.update_every))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class Target:
    """A product target for LSTM, hidden 32, float32.

    ``path`` is measured in events/s, except ``vs numpy``: the per-event API's events/s
    divided by the NumPy reference's at the same settings.
    """

    label: str
    path: str
    update_every: int | None
    threshold: float
    cell: str = "lstm"
    hidden: int = 32

    @property
    def unit(self) -> str:
        return "x" if self.path == "vs numpy" else "events/s"


TARGETS = (
    Target("per-event API, update_every=1", PER_EVENT, 1, 25_000),
    Target("per-event API, update_every=16", PER_EVENT, 16, 120_000),
    Target("batch, update_every=16", BATCH, 16, 300_000),
    Target("scoring only, per-event", SCORE, None, 200_000),
    Target("scoring only, batch", SCORE_BATCH, None, 1_000_000),
    Target("per-event API vs NumPy reference, update_every=1", "vs numpy", 1, 50),
    Target("per-event API vs NumPy reference, update_every=16", "vs numpy", 16, 50),
)


# --------------------------------------------------------------------------- the stream


@dataclass
class Stream:
    """The same events as dicts (per-event paths) and as arrays (batch paths).

    ``X`` columns follow the sorted feature names, which is the estimators' slot order.
    """

    events: list[tuple[dict[str, float], float, Hashable]]
    X: np.ndarray
    y: np.ndarray
    keys: list[Hashable]

    def __len__(self) -> int:
        return len(self.events)

    def part(self, start: int, stop: int) -> Stream:
        return Stream(self.events[start:stop], self.X[start:stop], self.y[start:stop],
                      self.keys[start:stop])

    def single_key(self, key: Hashable = "k0") -> Stream:
        """The same values, all under one key."""
        return Stream([(x, y, key) for x, y, _ in self.events], self.X, self.y,
                      [key] * len(self.keys))


def make_stream(n: int, n_keys: int, seed: int = 0, n_inputs: int = N_INPUTS) -> Stream:
    """``n`` events from ``n_keys`` keys taking turns: noisy sines with a per-key phase,
    and a target that is the next value of the first feature.

    Examples
    --------
    >>> s = make_stream(6, n_keys=3)
    >>> s.keys
    ['k0', 'k1', 'k2', 'k0', 'k1', 'k2']
    >>> sorted(s.events[0][0]), s.X.shape
    (['f0', 'f1', 'f2', 'f3'], (6, 4))
    """
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    key_idx = idx % n_keys
    t = (idx // n_keys)[:, None].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, n_keys)[key_idx][:, None]
    freq = 0.1 * np.arange(1, n_inputs + 1)[None, :]
    X = np.sin(freq * t + phase) + 0.1 * rng.normal(size=(n, n_inputs))
    y = np.sin(freq[0, 0] * (t[:, 0] + 1) + phase[:, 0])
    names = [f"f{j}" for j in range(n_inputs)]
    keys: list[Hashable] = [f"k{k}" for k in key_idx]
    rows = X.tolist()
    events = [(dict(zip(names, row, strict=True)), float(target), key)
              for row, target, key in zip(rows, y.tolist(), keys, strict=True)]
    return Stream(events, X, y, keys)


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _source_revision() -> str | None:
    root = Path(stream_rnn.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # Kernels change under active work: numbers only compare at the same source.
    return rev + (" with uncommitted changes" if dirty.strip() else "")


def machine_info() -> dict[str, Any]:
    """CPU, core counts, library versions, load and source revision of this run."""
    import numba

    try:
        version = importlib.metadata.version("stream-rnn")
    except importlib.metadata.PackageNotFoundError:
        version = stream_rnn.__version__
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = {k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "NUMBA_DISABLE_JIT", "OMP_NUM_THREADS",
                                      "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
           if k in os.environ}
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "numba_threads": numba.get_num_threads(),
        "numba_jit_disabled": bool(numba.config.DISABLE_JIT),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "stream_rnn": version,
        "source": _source_revision(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": env,
    }


# --------------------------------------------------------------------------- NumPy reference


def reference_path() -> Path:
    """Where a source checkout keeps the NumPy reference: ``tests/naive.py`` next to the
    package directory."""
    return Path(stream_rnn.__file__).resolve().parents[1] / "tests" / "naive.py"


def load_numpy_reference(path: Path | None = None) -> tuple[ModuleType | None, str]:
    """Import the NumPy reference from ``path``; returns ``(module, '')`` or
    ``(None, why not)``.

    Examples
    --------
    >>> module, why = load_numpy_reference(Path("/nonexistent/tests/naive.py"))
    >>> module is None, "source checkout" in why
    (True, True)
    """
    path = reference_path() if path is None else Path(path)
    if not path.is_file():
        return None, (f"{path} not found: the NumPy comparison needs a source checkout "
                      "(an installed package has no tests/ folder)")
    name = "_stream_rnn_bench_naive"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module body runs.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken checkout must not stop the compiled measurements
        sys.modules.pop(name, None)
        return None, f"importing {path} failed: {type(exc).__name__}: {exc}"
    return module, ""


class NumpyReferenceLoop:
    """The estimator's predict-then-learn loop over keyed truncated BPTT, written with the
    NumPy reference: what the package would cost without compiled kernels.

    It does the same work per event as ``RNNRegressor``: ``predict_one`` steps a copy of
    the key's state and keeps that step; ``learn_one`` standardizes the target with running
    statistics, reuses the kept step when it follows the prediction of the same event
    (same key and input, no update in between; otherwise it steps again), appends to the
    key's window and, every ``update_every`` events of the key, backpropagates the window
    from the key's snapshot, clips the gradient and takes an Adam step. Two differences
    remain: it runs in float64 (the oracle's precision), and it advances the snapshot with
    a separate forward pass over the entries leaving the window, which the kernels take
    from the training pass (the oracle's gradient does not return its states): one step
    per update at ``update_every=1``, the whole window at ``update_every=window``, against
    the reference.

    Parameters
    ----------
    naive
        The reference module (see :func:`load_numpy_reference`).
    cell, hidden_size, update_every, window, lr, clip_norm, seed
        As for ``RNNRegressor``.
    """

    # RNNRegressor's target standardization (stream_rnn.cells.scaling.scale_targets).
    TARGET_CLIP = 10.0
    TARGET_MEMORY = 100_000

    def __init__(self, naive: ModuleType, cell: str, hidden_size: int, update_every: int,
                 window: int = WINDOW, lr: float = 0.005, clip_norm: float = 1.0,
                 seed: int = 0) -> None:
        from stream_rnn.cells.init import init_weights
        from stream_rnn.cells.layout import Layout

        self.naive = naive
        self.layout = Layout(cell, N_INPUTS, hidden_size, 1, 1, "mse")
        self.theta = init_weights(self.layout, seed, dtype=np.float64)
        self.m = np.zeros_like(self.theta)
        self.v = np.zeros_like(self.theta)
        self.t = 0
        self.k1, self.k2 = update_every, window
        self.lr, self.clip_norm = lr, clip_norm
        self.zeros = np.zeros((1, self.layout.state_width))
        self.features: list[str] | None = None
        # key -> [state, snapshot, window inputs, window targets, pending]
        self.entities: dict[Hashable, list[Any]] = {}
        # Target statistics: count, mean, variance.
        self.y_count, self.y_mean, self.y_var = 0, 0.0, 0.0
        # The last prediction's step: (key, input values, update count, start state, state).
        self.kept: tuple[Hashable, list[float], int, Any, np.ndarray] | None = None

    def _values(self, x: dict[str, float]) -> list[float]:
        if self.features is None:
            self.features = sorted(x)
        return [x.get(name, 0.0) for name in self.features]

    def _location_scale(self) -> tuple[float, float]:
        n, mean = self.y_count, self.y_mean
        if n == 0:
            return 0.0, 1.0
        if n == 1:
            return mean, 1.0
        return mean, max(math.sqrt(self.y_var), 1e-6 * (1.0 + abs(mean)))

    def _scale_target(self, y: float) -> float:
        loc, scale = self._location_scale()
        z = (y - loc) / scale if self.y_count > 0 else 0.0
        z = min(max(z, -self.TARGET_CLIP), self.TARGET_CLIP)
        self.y_count += 1
        alpha = max(1.0 / self.y_count, 1.0 / self.TARGET_MEMORY)
        d = y - self.y_mean
        self.y_mean += alpha * d
        self.y_var = (1.0 - alpha) * (self.y_var + alpha * d * d)
        return z

    def predict_one(self, x: dict[str, float], key: Hashable) -> float:
        entity = self.entities.get(key)
        state = self.zeros if entity is None else entity[0]
        values = self._values(x)
        outs, states = self.naive.forward(self.layout, self.theta, state, np.array([values]))
        self.kept = (key, values, self.t, state, states[0])
        loc, scale = self._location_scale()
        return float(outs[0, 0]) * scale + loc

    def learn_one(self, x: dict[str, float], y: float, key: Hashable,
                  train: bool = True) -> None:
        """Learn from one event; ``train=False`` keeps every bookkeeping step but skips
        the gradient and the weight update (for priming keys untimed)."""
        nv = self.naive
        entity = self.entities.get(key)
        if entity is None:
            entity = self.entities[key] = [self.zeros, self.zeros, [], [], 0]
        values = self._values(x)
        kept, self.kept = self.kept, None
        if (kept is not None and kept[0] == key and kept[1] == values and kept[2] == self.t
                and kept[3] is entity[0]):
            entity[0] = kept[4]
        else:
            _, states = nv.forward(self.layout, self.theta, entity[0], np.array([values]))
            entity[0] = states[0]
        entity[2].append(values)
        entity[3].append([self._scale_target(y)])
        entity[4] += 1
        if entity[4] < self.k1:
            return
        entity[4] = 0
        Uw, Yw = np.array(entity[2]), np.array(entity[3])
        n = len(Uw)
        grad = None
        if train:
            _, grad = nv.loss_and_grad(self.layout, self.theta, entity[1], Uw, Yw,
                                       first_loss=n - self.k1)
        drop = n + self.k1 - self.k2
        if drop > 0:
            _, states = nv.forward(self.layout, self.theta, entity[1], Uw[:drop])
            entity[1] = states[-1]
            del entity[2][:drop], entity[3][:drop]
        if grad is not None:
            grad = nv.clip_by_global_norm(grad, self.clip_norm)
            self.t += 1
            self.theta, self.m, self.v = nv.adam(self.theta, grad, self.m, self.v, self.t,
                                                 self.lr, 0.9, 0.999, 1e-8)


# --------------------------------------------------------------------------- measuring


def _new_model(cell: str, hidden: int, update_every: int, seed: int):
    from stream_rnn.models import RNNRegressor

    return RNNRegressor(cell=cell, hidden_size=hidden, window=WINDOW, update_every=update_every,
                        seed=seed, dtype=DTYPE)


def _primed_model(cell: str, hidden: int, update_every: int, prime: Stream, seed: int) -> bytes:
    """A pickled model whose keys have each learned a full window (untimed)."""
    model = _new_model(cell, hidden, update_every, seed)
    x0, y0, k0 = prime.events[0]
    model.learn_one(x0, y0, key=k0)
    if model.feature_names != sorted(x0):
        raise RuntimeError(f"feature slots {model.feature_names} do not follow sorted names")
    model.predict_learn_many(prime.X[1:], prime.y[1:], prime.keys[1:])
    return pickle.dumps(model)


def _per_event_runner(blob: bytes, stream: Stream, passes: int) -> Callable[[], None]:
    model = pickle.loads(blob)
    events = stream.events

    def run() -> None:
        for _ in range(passes):
            for x, y, key in events:
                model.predict_one(x, key=key)
                model.learn_one(x, y, key=key)

    return run


def _batch_runner(blob: bytes, stream: Stream, passes: int, chunk: int) -> Callable[[], None]:
    model = pickle.loads(blob)
    X, y, keys, n = stream.X, stream.y, stream.keys, len(stream)

    def run() -> None:
        for _ in range(passes):
            for start in range(0, n, chunk):
                stop = start + chunk
                model.predict_learn_many(X[start:stop], y[start:stop], keys[start:stop])

    return run


def _score_runner(blob: bytes, stream: Stream, passes: int) -> Callable[[], None]:
    model = pickle.loads(blob)
    events = stream.events

    def run() -> None:
        for _ in range(passes):
            for x, _y, key in events:
                model.predict_one(x, key=key)

    return run


def _score_batch_runner(blob: bytes, stream: Stream, passes: int,
                        chunk: int) -> Callable[[], None]:
    model = pickle.loads(blob)
    # The kernel entry point the estimators use; a scoring service holds the same objects.
    net, store = model._net, model._store
    X, keys, n = stream.X, stream.keys, len(stream)
    m = min(chunk, n)
    no_reset = np.zeros(m, dtype=bool)
    no_learn = np.zeros(m, dtype=bool)
    no_target = np.zeros((m, 1), dtype=net.dtype)

    def run() -> None:
        for _ in range(passes):
            for start in range(0, n, chunk):
                part = keys[start:start + chunk]
                size = len(part)
                slots = np.fromiter((store.get(k) for k in part), dtype=np.int64, count=size)
                net.run_batch(store.arrays, slots, no_reset[:size], X[start:start + chunk],
                              no_target[:size], no_learn[:size])

    return run


def _numpy_runner(primed: NumpyReferenceLoop, stream: Stream) -> Callable[[], None]:
    # Modules do not copy: share the reference module, copy only weights and key state.
    ref = copy.deepcopy(primed, memo={id(primed.naive): primed.naive})
    events = stream.events

    def run() -> None:
        for x, y, key in events:
            ref.predict_one(x, key=key)
            ref.learn_one(x, y, key=key)

    return run


@dataclass
class _Job:
    """One path to time: ``make_runner(passes)`` returns a fresh zero-argument loop."""

    cell: str
    hidden: int
    update_every: int | None
    path: str
    keys: int
    make_runner: Callable[[int], Callable[[], None]]
    events_per_pass: int
    min_seconds: float


def _time(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _measure(jobs: Sequence[_Job], repeats: int) -> list[dict[str, Any]]:
    """Warm every job up once (and pick how many passes make its runs last its
    ``min_seconds``), then time ``repeats`` rounds that run each job once in turn.

    Interleaving the rounds spreads the load other processes put on a shared machine over
    all paths alike, so the ratios between paths stay fair. Every timed run gets a fresh
    runner, so each starts from the same state.
    """
    passes, warmups = [], []
    for job in jobs:
        warmup = _time(job.make_runner(1))
        warmups.append(warmup)
        passes.append(1 if not 0 < warmup < job.min_seconds
                      else min(MAX_PASSES, math.ceil(job.min_seconds / warmup)))
    seconds: list[list[float]] = [[] for _ in jobs]
    for _ in range(repeats):
        for i, job in enumerate(jobs):
            seconds[i].append(_time(job.make_runner(passes[i])))
    out = []
    for job, p, warmup, secs in zip(jobs, passes, warmups, seconds, strict=True):
        events = job.events_per_pass * p
        rates = [events / s for s in secs]
        out.append({
            "cell": job.cell,
            "hidden": job.hidden,
            "update_every": job.update_every,
            "path": job.path,
            "keys": job.keys,
            "events": events,
            "passes": p,
            "repeats": repeats,
            "events_per_s": statistics.median(rates),
            "min_events_per_s": min(rates),
            "max_events_per_s": max(rates),
            "seconds": secs,
            "warmup_seconds": warmup,
        })
    return out


def _compile_everything(seed: int) -> float:
    """Call every compiled entry point once so no measurement's warm-up carries Numba
    compilation (or its cache load); returns the seconds it took."""
    start = time.perf_counter()
    stream = make_stream(4, 2, seed)
    model = _new_model("lstm", 4, 1, seed)
    x, y, key = stream.events[0]
    model.predict_one(x, key=key)
    model.learn_one(x, y, key=key)
    model.predict_one(x, key=key)
    model.predict_learn_many(stream.X, stream.y, stream.keys)
    blob = pickle.dumps(model)
    _score_batch_runner(blob, stream, 1, 4)()
    return time.perf_counter() - start


def _primed_reference(naive: ModuleType, cell: str, hidden: int, update_every: int,
                      config: BenchConfig, prime: Stream) -> tuple[NumpyReferenceLoop, Stream]:
    """The NumPy loop with every key primed like the compiled models, and the events it is
    timed on: ``numpy_events`` rounded to whole update cycles of every key."""
    ref = NumpyReferenceLoop(naive, cell, hidden, update_every, seed=config.seed)
    for x, y, key in prime.events:
        ref.learn_one(x, y, key=key, train=False)
    n_ref = _round_up(config.numpy_events, config.keys * update_every)
    # The same stream, continued past the primed events.
    stream = make_stream(len(prime) + n_ref, config.keys, config.seed)
    return ref, stream.part(len(prime), len(stream))


def run_benchmark(config: BenchConfig, progress: TextIO | None = None,
                  naive_path: Path | None = None) -> dict[str, Any]:
    """Measure every path of ``config``; returns config, machine, measurements, ratios,
    state sizes and targets as plain JSON-ready data.

    Parameters
    ----------
    config
        What to measure.
    progress
        Where to write one line per finished measurement (``None``: silent).
    naive_path
        The NumPy reference file (default: :func:`reference_path`).
    """
    def say(line: str) -> None:
        if progress is not None:
            progress.write(line + "\n")
            progress.flush()

    machine = machine_info()
    naive, naive_note = load_numpy_reference(naive_path)
    compile_seconds = _compile_everything(config.seed)
    say(f"compiled kernels (or loaded their cache) in {compile_seconds:.1f} s")

    n = config.timed_events
    stream = make_stream(config.keys * WINDOW + n, config.keys, config.seed)
    prime, timed = stream.part(0, config.keys * WINDOW), stream.part(config.keys * WINDOW,
                                                                      len(stream))
    one_key = make_stream(WINDOW + n, 1, config.seed).single_key()
    prime_1, timed_1 = one_key.part(0, WINDOW), one_key.part(WINDOW, len(one_key))

    results: list[dict[str, Any]] = []
    state_bytes: list[dict[str, Any]] = []

    reps, min_s, chunk = config.repeats, config.min_run_seconds, config.chunk
    for cell in config.cells:
        for hidden in config.hidden:
            is_ref = hidden == config.ref_hidden
            blobs = {k1: _primed_model(cell, hidden, k1, prime, config.seed)
                     for k1 in config.update_every}
            model = pickle.loads(blobs[config.update_every[0]])
            state_bytes.append({"cell": cell, "hidden": hidden, "bytes": model.bytes_per_key,
                                "n_params": int(model._net.theta.size)})
            jobs: list[_Job] = []
            for k1, blob in blobs.items():
                jobs.append(_Job(cell, hidden, k1, PER_EVENT, config.keys,
                                 lambda p, b=blob: _per_event_runner(b, timed, p), n, min_s))
                if is_ref:
                    blob_1 = _primed_model(cell, hidden, k1, prime_1, config.seed)
                    jobs.append(_Job(cell, hidden, k1, PER_EVENT_1KEY, 1,
                                     lambda p, b=blob_1: _per_event_runner(b, timed_1, p),
                                     n, min_s))
                jobs.append(_Job(cell, hidden, k1, BATCH, config.keys,
                                 lambda p, b=blob: _batch_runner(b, timed, p, chunk), n, min_s))
                if is_ref and naive is not None:
                    ref, ref_stream = _primed_reference(naive, cell, hidden, k1, config, prime)
                    # One pass only: the reference is slow enough to time as it is.
                    jobs.append(_Job(cell, hidden, k1, NUMPY, config.keys,
                                     lambda p, r=ref, s=ref_stream: _numpy_runner(r, s),
                                     len(ref_stream), 0.0))
            blob = blobs[config.update_every[0]]
            jobs.append(_Job(cell, hidden, None, SCORE, config.keys,
                             lambda p, b=blob: _score_runner(b, timed, p), n, min_s))
            jobs.append(_Job(cell, hidden, None, SCORE_BATCH, config.keys,
                             lambda p, b=blob: _score_batch_runner(b, timed, p, chunk),
                             n, min_s))
            for r in _measure(jobs, reps):
                results.append(r)
                k1 = "-" if r["update_every"] is None else r["update_every"]
                say(f"  {cell:<5} h{hidden:<3} k1={k1:<3} {r['path']:<16} "
                    f"{r['events_per_s']:>13,.0f} events/s")

    machine["load_average_after"] = (list(os.getloadavg()) if hasattr(os, "getloadavg")
                                     else None)
    ratios = _ratios(results)
    return {
        "config": {**asdict(config), "inputs": N_INPUTS, "window": WINDOW, "dtype": DTYPE,
                   "timed_events": n, "primed_events_per_key": WINDOW,
                   "reference_hidden_used": config.ref_hidden},
        "machine": machine,
        "compile_seconds": compile_seconds,
        "numpy_reference": {"available": naive is not None,
                            "path": str(naive_path or reference_path()),
                            "note": naive_note},
        "state_bytes_per_key": state_bytes,
        "results": results,
        "ratios": ratios,
        "targets": _check_targets(results, ratios),
    }


# --------------------------------------------------------------------------- analysis


def _find(results: Sequence[dict[str, Any]], cell: str, hidden: int, k1: int | None,
          path: str) -> dict[str, Any] | None:
    for r in results:
        if (r["cell"], r["hidden"], r["update_every"], r["path"]) == (cell, hidden, k1, path):
            return r
    return None


# (name, numerator path, denominator path), compared at the same cell, hidden and k1.
_RATIOS = (
    ("batch vs per-event", BATCH, PER_EVENT),
    ("1 key vs many keys", PER_EVENT_1KEY, PER_EVENT),
    ("per-event vs numpy", PER_EVENT, NUMPY),
    ("score batch vs score per-event", SCORE_BATCH, SCORE),
)


def _ratios(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, num_path, den_path in _RATIOS:
        for num in results:
            if num["path"] != num_path:
                continue
            den = _find(results, num["cell"], num["hidden"], num["update_every"], den_path)
            if den is None:
                continue
            out.append({"name": name, "cell": num["cell"], "hidden": num["hidden"],
                        "update_every": num["update_every"],
                        "value": num["events_per_s"] / den["events_per_s"]})
    return out


def _check_targets(results: Sequence[dict[str, Any]],
                   ratios: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in TARGETS:
        measured = None
        if t.path == "vs numpy":
            for r in ratios:
                if (r["name"], r["cell"], r["hidden"], r["update_every"]) == (
                        "per-event vs numpy", t.cell, t.hidden, t.update_every):
                    measured = r["value"]
        else:
            r = _find(results, t.cell, t.hidden, t.update_every, t.path)
            measured = None if r is None else r["events_per_s"]
        out.append({**asdict(t), "unit": t.unit, "measured": measured,
                    "met": None if measured is None else bool(measured >= t.threshold)})
    return out


# --------------------------------------------------------------------------- report


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def _ratio_note(r: dict[str, Any], ratios: Sequence[dict[str, Any]]) -> str:
    def get(name: str) -> float | None:
        for q in ratios:
            if (q["name"], q["cell"], q["hidden"], q["update_every"]) == (
                    name, r["cell"], r["hidden"], r["update_every"]):
                return q["value"]
        return None

    notes = {
        BATCH: ("batch vs per-event", "{:.1f}x per-event"),
        PER_EVENT_1KEY: ("1 key vs many keys", "{:.2f}x many keys"),
        PER_EVENT: ("per-event vs numpy", "{:.1f}x the NumPy loop"),
        SCORE_BATCH: ("score batch vs score per-event", "{:.1f}x score per-event"),
    }
    if r["path"] not in notes:
        return ""
    name, fmt = notes[r["path"]]
    value = get(name)
    return "" if value is None else fmt.format(value)


def format_report(report: dict[str, Any]) -> str:
    """The human-readable summary of :func:`run_benchmark`'s result."""
    cfg, m = report["config"], report["machine"]
    lines = [
        f"stream_rnn bench: online-loop throughput, one process, median of {cfg['repeats']} "
        "timed runs after a warm-up run",
        f"machine   {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), "
        "load " + " ".join(f"{x:.2f}" for x in (m["load_average"] or [])),
        f"          numba {m['numba']} (threads {m['numba_threads']}; these kernels run on "
        f"one core), numpy {m['numpy']}, python {m['python']}",
        f"          {m['platform']}, stream-rnn {m['stream_rnn']}"
        + (f", source {m['source']}" if m["source"] else ""),
    ]
    if m["numba_jit_disabled"]:
        lines.append("WARNING   NUMBA_DISABLE_JIT is set: these numbers are interpreted Python")
    if m["env"]:
        lines.append("          env " + " ".join(f"{k}={v}" for k, v in m["env"].items()))
    lines += [
        f"config    {cfg['inputs']} inputs, window {cfg['window']}, {cfg['dtype']}, "
        f"{cfg['keys']} keys taking turns, {cfg['timed_events']:,} events per pass "
        f"(keys primed with {cfg['primed_events_per_key']} events each, untimed), "
        f"batch chunks of {cfg['chunk']}",
        f"          Numba compilation or cache load before timing: "
        f"{report['compile_seconds']:.1f} s",
    ]
    ref = report["numpy_reference"]
    if ref["available"]:
        lines.append(f"          numpy: the same loop on {ref['path']} (float64, Adam, "
                     f"clipping) at hidden {cfg['reference_hidden_used']}")
    else:
        lines.append(f"          numpy: not measured: {ref['note']}")

    lines += ["", "state bytes per key (window 16, 4 inputs):"]
    for s in report["state_bytes_per_key"]:
        lines.append(f"  {s['cell']:<6} hidden {s['hidden']:<4} {s['bytes']:>8,} bytes   "
                     f"({s['n_params']:,} shared weights)")

    header = (f"{'cell':<6} {'hidden':>6} {'k1':>3}  {'path':<16} {'keys':>5} "
              f"{'events/s':>12}  {'spread (min..max)':<25} {'passes':>6}  ratio")
    lines += ["", header, "-" * len(header)]
    order = {p: i for i, p in enumerate(PATHS)}
    rows = sorted(report["results"], key=lambda r: (
        report["config"]["cells"].index(r["cell"]), r["hidden"],
        r["update_every"] is None, r["update_every"] or 0, order[r["path"]]))
    for r in rows:
        spread = f"{_fmt_rate(r['min_events_per_s'])}..{_fmt_rate(r['max_events_per_s'])}"
        k1 = "-" if r["update_every"] is None else str(r["update_every"])
        lines.append(f"{r['cell']:<6} {r['hidden']:>6} {k1:>3}  {r['path']:<16} "
                     f"{r['keys']:>5} {_fmt_rate(r['events_per_s']):>12}  {spread:<25} "
                     f"{r['passes']:>6}  {_ratio_note(r, report['ratios'])}")

    lines += ["", "product targets (lstm, hidden 32, float32):"]
    for t in report["targets"]:
        want = (f">= {t['threshold']:g}x" if t["unit"] == "x"
                else f">= {_fmt_rate(t['threshold'])} events/s")
        if t["measured"] is None:
            status, got = "not measured", "-"
        else:
            status = "met" if t["met"] else "NOT MET"
            got = (f"{t['measured']:.1f}x" if t["unit"] == "x"
                   else f"{_fmt_rate(t['measured'])} events/s")
        lines.append(f"  [{status:^12}] {t['label']:<50} {want:<22} measured {got}")
    if not (cfg["cells"] and "lstm" in cfg["cells"] and 32 in cfg["hidden"]):
        lines.append("  (lstm hidden 32 is not in this run's configuration)")
    return "\n".join(lines) + "\n"


def config_with(base: BenchConfig, **overrides: Any) -> BenchConfig:
    """``base`` with the non-``None`` overrides applied (the CLI's flags)."""
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})

