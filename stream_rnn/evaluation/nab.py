"""Numenta Anomaly Benchmark (NAB v1.1) scoring, reimplemented with numpy.

The reference semantics are NAB's own ``nab/sweeper.py`` (per-row sweep scores and the
score-by-threshold sweep), ``nab/optimizer.py`` (one threshold per profile for the whole
corpus), ``nab/scorer.py`` (per-file scores at that threshold), ``nab/labeler.py`` (windows
as inclusive timestamp ranges), ``nab/util.py`` (probationary period) and
``nab/runner.py`` (normalisation). In short:

* The first ``floor(0.15 * min(n, 5000))`` rows of an ``n``-row file are a probationary
  period: they are never scored, neither as detections nor as window rows.
* Every row gets a *sweep score*. Inside an anomaly window of ``W`` rows ending at row
  ``R`` it is the reward ``tpWeight * S(y) / S(-1)`` with ``y = -(R - i + 1) / W``, so a
  detection on the window's first row earns exactly ``tpWeight`` and later ones less.
  Outside windows it is the cost ``fpWeight * S(y)`` with ``y = |i - R| / (W - 1)``
  measured from the end of the most recent window, or ``-fpWeight`` when no window
  precedes the row. ``S`` is :func:`scaled_sigmoid`.
* A detector flags the rows whose anomaly score is ``>= threshold``. Each window earns the
  best (earliest) sweep score among its flagged rows, or ``-fnWeight`` when none is
  flagged; flagged rows outside windows add their sweep scores. ``tnWeight`` is unused.
* One threshold per cost profile is chosen for the whole corpus: the one with the highest
  total, ties going to the higher threshold as in NAB.
* ``score = 100 * (raw - null) / (perfect - null)``. *null* is the detector that flags
  nothing, ``-fnWeight`` per window with a scored row (NAB optimises a constant-score
  detector, which lands there on its corpus); *perfect* is ``tpWeight`` times the number
  of windows, as NAB's ``runner.normalize`` counts them from the windows file.
* Per-category scores (not part of NAB) keep the corpus threshold and normalise each
  category's sums, so a category can score below 0 where the threshold suits others.

File layout
-----------
Each data directory has NAB's layout: ``DIR/data/<category>/<file>.csv`` with columns
``timestamp,value``, ``DIR/labels/combined_windows.json`` mapping
``"<category>/<file>.csv"`` to ``[[start, end], ...]`` timestamp pairs, and
``DIR/config/profiles.json``. Several data directories are scored as one corpus and their
windows files are merged.

Detector results are read from ``RESULTS/<category>/<file>.csv``: the same rows as the data
file, with an ``anomaly_score`` column (``timestamp`` and ``value`` are expected too;
other columns are ignored). NAB's own results tree differs: it nests one directory per
detector and prefixes every file with the detector name,
``results/<detector>/<category>/<detector>_<file>.csv``. To score such a tree, copy or link
its files to the plain names first.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "PROBATION_PERCENT",
    "MissingResultsError",
    "NabFile",
    "NabInputError",
    "ThresholdSweep",
    "format_table",
    "load_corpus",
    "load_profiles",
    "load_windows",
    "probation_length",
    "read_results",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_by_threshold",
    "score_corpus",
    "score_detector",
    "sweep_scores",
    "window_indices",
]

PROBATION_PERCENT = 0.15

# NAB caps the probationary period at 15 % of this many rows, so long files are not
# penalised with an ever longer warm-up.
_PROBATION_CAP_ROWS = 5000

# NAB starts its sweep at 1.1 so the first threshold flags nothing when scores are in [0, 1].
_NAB_START_THRESHOLD = 1.1

_WEIGHT_KEYS = ("tpWeight", "fpWeight", "fnWeight")

PathLike = str | Path


class NabInputError(ValueError):
    """Inputs that cannot be scored: missing or malformed data, labels or results."""


class MissingResultsError(NabInputError):
    """One or more detector result files do not exist."""


@dataclass(frozen=True)
class NabFile:
    """One data file of a corpus, with its anomaly windows as row indices.

    Attributes
    ----------
    name : str
        Path relative to ``data/``, e.g. ``"realKnownCause/nyc_taxi.csv"``; NAB's key.
    path : pathlib.Path or None
        The data file, or ``None`` for a file built in memory.
    timestamps : numpy.ndarray
        ``datetime64[us]`` timestamps of the rows.
    windows : numpy.ndarray
        ``int64`` array of shape ``(k, 2)``: first and last row (inclusive) of each window,
        sorted and non-overlapping.
    """

    name: str
    path: Path | None
    timestamps: np.ndarray
    windows: np.ndarray

    @property
    def category(self) -> str:
        """The directory part of :attr:`name`."""
        return self.name.split("/", 1)[0] if "/" in self.name else ""

    @property
    def n_rows(self) -> int:
        """Number of rows in the file."""
        return int(self.timestamps.shape[0])


class ThresholdSweep(NamedTuple):
    """Corpus score for every candidate threshold, highest threshold first.

    Entry ``j`` describes flagging every row whose anomaly score is ``>= thresholds[j]``.
    Counts are NAB's row counts (``tp`` is the number of flagged rows inside windows, not
    the number of detected windows); ``detected`` counts windows with a flagged row.
    """

    thresholds: np.ndarray
    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    detected: np.ndarray
    n_windows: int

    def best(self) -> int:
        """Index of the highest score; the first, i.e. the highest threshold, on ties.

        NAB sorts the sweep by score with Python's stable sort and takes the head, which
        keeps the highest threshold among equal scores; ``argmax`` does the same.
        """
        return int(np.argmax(self.scores))


def probation_length(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> int:
    """Number of leading rows of a file that are never scored.

    Mirrors NAB's ``getProbationPeriod``: ``min(floor(p * n), p * 5000)``; rows with
    index ``>=`` that value are scored.

    Parameters
    ----------
    n_rows
        Length of the file.
    probation_percent
        Fraction of the file (capped at 5000 rows) used as warm-up; NAB uses 0.15.

    Returns
    -------
    int
        Index of the first scored row.

    Examples
    --------
    >>> print(f"{probation_length(20)} {probation_length(4032)} {probation_length(22695)}")
    3 604 750
    """
    limit = min(math.floor(probation_percent * n_rows), probation_percent * _PROBATION_CAP_ROWS)
    # NAB compares the row index against this possibly fractional float.
    return int(math.ceil(limit))


def scaled_sigmoid(position: float | np.ndarray) -> float | np.ndarray:
    """NAB's reward for a detection at a relative position to a window.

    ``S(y) = 2 / (1 + exp(5 y)) - 1`` for ``y <= 3`` and ``-1`` beyond. ``y = -1`` is a
    window's left edge (``S = 0.98661``), ``y = 0`` its right edge (``S = 0``) and
    positive ``y`` measures how far a false positive lies past the window.

    Parameters
    ----------
    position
        Relative position ``y``; a scalar or an array.

    Returns
    -------
    float or numpy.ndarray
        ``S(y)``, a float for a scalar input.

    Examples
    --------
    >>> print(f"{scaled_sigmoid(-1.0):.5f} {scaled_sigmoid(-0.5):.5f} {scaled_sigmoid(0.0):.1f}")
    0.98661 0.84828 0.0
    >>> print(f"{scaled_sigmoid(1.0):.5f} {scaled_sigmoid(3.5):.1f}")
    -0.98661 -1.0
    """
    y = np.asarray(position, dtype=np.float64)
    # exp overflows to inf for y far past a window; those y are clamped to -1 anyway.
    with np.errstate(over="ignore"):
        # Same operation order as NAB's 2 * sigmoid(-5 y) - 1, to agree to the last bit.
        value = np.where(y > 3.0, -1.0, 2.0 * (1.0 / (1.0 + np.exp(5.0 * y))) - 1.0)
    return float(value) if value.ndim == 0 else value


def _parse_timestamps(values: Sequence[str], source: object) -> np.ndarray:
    # numpy reads NAB's "%Y-%m-%d %H:%M:%S" and the windows' ".%f" suffix in one vectorised
    # pass, which is far faster than strptime on ~10^5 rows.
    try:
        return np.asarray(values, dtype=str).astype("datetime64[us]")
    except ValueError as exc:
        raise NabInputError(f"{source}: cannot parse timestamps: {exc}") from None


def _read_csv(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            rows = [row for row in reader if row]
    except OSError as exc:
        raise NabInputError(f"cannot read {path}: {exc}") from None
    missing = [name for name in required if name not in header]
    if missing:
        raise NabInputError(
            f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
        )
    wanted = [name for name in (*required, *optional) if name in header]
    index = {name: header.index(name) for name in wanted}
    needed = max(index.values(), default=-1) + 1
    for lineno, row in enumerate(rows, start=2):
        if len(row) < needed:
            raise NabInputError(f"{path}: row {lineno} has {len(row)} fields, expected {needed}")
    return {name: [row[i] for row in rows] for name, i in index.items()}


def load_windows(data_dirs: Iterable[PathLike]) -> dict[str, list[tuple[str, str]]]:
    """Merge ``labels/combined_windows.json`` of several data directories.

    Parameters
    ----------
    data_dirs
        Data directories in NAB's layout.

    Returns
    -------
    dict
        ``"<category>/<file>.csv"`` to a list of ``(start, end)`` timestamp strings.

    Raises
    ------
    NabInputError
        If a windows file is missing or malformed, or two files disagree on a data file.
    """
    merged: dict[str, list[tuple[str, str]]] = {}
    origin: dict[str, Path] = {}
    for data_dir in data_dirs:
        path = Path(data_dir) / "labels" / "combined_windows.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NabInputError(f"windows file not found: {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise NabInputError(f"cannot read windows file {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise NabInputError(f"{path}: expected an object of file name -> windows")
        for name, limits in raw.items():
            if not isinstance(limits, list) or not all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)
                for pair in limits
            ):
                raise NabInputError(f"{path}: {name!r} must map to a list of [start, end] pairs")
            pairs = [(start, end) for start, end in limits]
            # The same file may legitimately appear in several dirs' labels; only a
            # disagreement would make the score depend on the order of --data.
            if name in merged and merged[name] != pairs:
                raise NabInputError(
                    f"conflicting windows for {name!r} in {origin[name]} and {path}"
                )
            merged[name] = pairs
            origin[name] = path
    return merged


def load_profiles(source: PathLike | Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Cost profiles as ``{name: {"tpWeight": ..., "fpWeight": ..., "fnWeight": ...}}``.

    Parameters
    ----------
    source
        Path of a NAB ``profiles.json`` or its parsed content. Each profile holds its
        weights either under ``"CostMatrix"`` (NAB's format) or directly.

    Returns
    -------
    dict
        Profiles in file order, with float weights (``tnWeight`` kept if present).

    Examples
    --------
    >>> profiles = load_profiles({"standard": {"CostMatrix": {
    ...     "tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0, "tnWeight": 1.0}}})
    >>> print(f"{profiles['standard']['fpWeight']:.2f}")
    0.11
    """
    if isinstance(source, Mapping):
        raw: Any = source
        where = "profiles"
    else:
        where = str(source)
        try:
            raw = json.loads(Path(source).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NabInputError(f"profiles file not found: {source}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise NabInputError(f"cannot read profiles file {source}: {exc}") from None
    if not isinstance(raw, Mapping) or not raw:
        raise NabInputError(f"{where}: expected a non-empty object of profile name -> weights")
    profiles: dict[str, dict[str, float]] = {}
    for name, entry in raw.items():
        matrix = entry.get("CostMatrix", entry) if isinstance(entry, Mapping) else None
        if not isinstance(matrix, Mapping) or any(key not in matrix for key in _WEIGHT_KEYS):
            raise NabInputError(f"{where}: profile {name!r} needs {', '.join(_WEIGHT_KEYS)}")
        try:
            profiles[name] = {key: float(value) for key, value in matrix.items()}
        except (TypeError, ValueError):
            raise NabInputError(f"{where}: profile {name!r} has a non-numeric weight") from None
    return profiles


def window_indices(
    timestamps: np.ndarray, limits: Sequence[tuple[str, str]], source: object = "data"
) -> np.ndarray:
    """Map ``(start, end)`` timestamp windows to inclusive row-index windows.

    A window runs from the first to the last row whose timestamp lies in ``[start, end]``,
    as NAB's labeler marks its labels; on NAB's files, whose window limits are exact row
    timestamps, this is the row range the sweeper walks (from the row equal to ``start``
    to the row equal to ``end``). Rows are taken in file order, not sorted: NAB's
    ``machine_temperature_system_failure.csv`` has its clock jump back once.

    Parameters
    ----------
    timestamps
        ``datetime64`` row timestamps in file order.
    limits
        ``(start, end)`` timestamp strings.
    source
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(k, 2)``, sorted by first row.

    Raises
    ------
    NabInputError
        If a window is reversed, holds no row, or overlaps another.

    Examples
    --------
    >>> stamps = np.datetime64("2020-01-01T00:00") + np.arange(6) * np.timedelta64(5, "m")
    >>> window_indices(stamps, [("2020-01-01 00:04:00", "2020-01-01 00:15:00.000000")])
    array([[1, 3]])
    """
    if not limits:
        return np.empty((0, 2), dtype=np.int64)
    starts = _parse_timestamps([start for start, _ in limits], source)
    ends = _parse_timestamps([end for _, end in limits], source)
    spans = []
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        rows = np.flatnonzero((timestamps >= start) & (timestamps <= end))
        if rows.size == 0:
            raise NabInputError(
                f"{source}: window [{limits[k][0]}, {limits[k][1]}] contains no rows"
            )
        spans.append((int(rows[0]), int(rows[-1]), k))
    spans.sort()
    windows = np.array([(first, last) for first, last, _ in spans], dtype=np.int64)
    # The sweep walks windows left to right and scores false positives from the end of
    # the previous one; overlapping windows have no meaning there.
    clash = np.flatnonzero(windows[1:, 0] <= windows[:-1, 1])
    if clash.size:
        k = spans[clash[0] + 1][2]
        raise NabInputError(f"{source}: window [{limits[k][0]}, {limits[k][1]}] overlaps another")
    return windows


def load_corpus(data_dirs: Iterable[PathLike]) -> list[NabFile]:
    """Read every ``data/<category>/<file>.csv`` of the data directories with its windows.

    Parameters
    ----------
    data_dirs
        One or more data directories in NAB's layout; windows files are merged.

    Returns
    -------
    list of NabFile
        Sorted by name.

    Raises
    ------
    NabInputError
        On a missing directory, a data file without a windows entry or with a bad window,
        a name present in two directories, or no data file at all.
    """
    dirs = [Path(d) for d in data_dirs]
    if not dirs:
        raise NabInputError("no data directory given")
    for data_dir in dirs:
        if not data_dir.is_dir():
            raise NabInputError(f"data directory not found: {data_dir}")
    windows = load_windows(dirs)
    files: dict[str, NabFile] = {}
    for data_dir in dirs:
        root = data_dir / "data"
        if not root.is_dir():
            raise NabInputError(f"{data_dir}: no data/ directory")
        for path in sorted(root.glob("*/*.csv")):
            name = f"{path.parent.name}/{path.name}"
            if name in files:
                raise NabInputError(
                    f"{name} is in two data directories: {files[name].path}, {path}"
                )
            if name not in windows:
                raise NabInputError(f"{path}: no entry {name!r} in any combined_windows.json")
            stamps = _parse_timestamps(_read_csv(path, ["timestamp"])["timestamp"], path)
            files[name] = NabFile(name, path, stamps, window_indices(stamps, windows[name], path))
    if not files:
        raise NabInputError(f"no data/<category>/*.csv files under {', '.join(map(str, dirs))}")
    return [files[name] for name in sorted(files)]


def read_results(results_dir: PathLike, nab_file: NabFile) -> np.ndarray:
    """Anomaly scores of one file from ``results_dir/<category>/<file>.csv``.

    Parameters
    ----------
    results_dir
        Root of the detector's results.
    nab_file
        The data file the results belong to.

    Returns
    -------
    numpy.ndarray
        ``float64`` anomaly scores, one per data row.

    Raises
    ------
    MissingResultsError
        If the results file does not exist.
    NabInputError
        If it lacks ``anomaly_score``, has another number of rows or other timestamps
        than the data file, or holds non-finite or non-numeric scores.
    """
    path = Path(results_dir) / nab_file.name
    if not path.is_file():
        raise MissingResultsError(f"results file not found: {path}")
    columns = _read_csv(path, ["anomaly_score"], optional=["timestamp"])
    raw_scores = columns["anomaly_score"]
    if len(raw_scores) != nab_file.n_rows:
        raise NabInputError(
            f"{path} has {len(raw_scores)} rows but data file {nab_file.path or nab_file.name} "
            f"has {nab_file.n_rows}; results must have one row per data row"
        )
    if "timestamp" in columns:
        stamps = _parse_timestamps(columns["timestamp"], path)
        differ = np.flatnonzero(stamps != nab_file.timestamps)
        if differ.size:
            row = int(differ[0])
            raise NabInputError(
                f"{path}: row {row + 2} has timestamp {columns['timestamp'][row]} but the data "
                f"file has {nab_file.timestamps[row]}"
            )
    try:
        scores = np.asarray(raw_scores, dtype=np.float64)
    except ValueError as exc:
        raise NabInputError(f"{path}: non-numeric anomaly_score: {exc}") from None
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        row = int(bad[0])
        raise NabInputError(f"{path}: row {row + 2} has anomaly_score {raw_scores[row]!r}")
    return scores


def sweep_scores(
    n_rows: int,
    windows: np.ndarray,
    weights: Mapping[str, float],
    probation_percent: float = PROBATION_PERCENT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row NAB sweep scores of one file (NAB's ``Sweeper.calcSweepScore``).

    Parameters
    ----------
    n_rows
        Length of the file.
    windows
        ``(k, 2)`` inclusive row windows, sorted and non-overlapping.
    weights
        ``tpWeight`` and ``fpWeight`` of a cost profile.
    probation_percent
        See :func:`probation_length`.

    Returns
    -------
    sweep : numpy.ndarray
        Score a detection on each row would earn (before the one-per-window rule).
    window_of_row : numpy.ndarray
        Index of the window holding each row, ``-1`` outside windows.
    scorable : numpy.ndarray
        ``False`` on the probationary rows.

    Examples
    --------
    A 20-row file with one window on rows 8..11:

    >>> sweep, window_of_row, scorable = sweep_scores(
    ...     20, np.array([[8, 11]]), {"tpWeight": 1.0, "fpWeight": 0.11})
    >>> print(", ".join(f"{s:.4f}" for s in sweep[[5, 8, 10, 11, 12, 19]]))
    -0.1100, 1.0000, 0.8598, 0.5621, -0.0750, -0.1100
    >>> print(window_of_row[7:13], int(scorable.sum()))
    [-1  0  0  0  0 -1] 17
    """
    rows = np.arange(n_rows)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    first, last = windows[:, 0], windows[:, 1]
    width = (last - first + 1).astype(np.float64)
    window_of_row = np.full(n_rows, -1, dtype=np.int64)
    for k in range(len(windows)):
        window_of_row[first[k] : last[k] + 1] = k
    inside = window_of_row >= 0
    sweep = np.empty(n_rows, dtype=np.float64)

    # Dividing by S(-1) makes a detection on the first row of a window worth exactly
    # tpWeight, which is what lets a perfect detector reach 100 after normalisation.
    max_tp = scaled_sigmoid(-1.0)
    k, i = window_of_row[inside], rows[inside]
    position = -(last[k] - i + 1) / width[k]
    sweep[inside] = scaled_sigmoid(position) * weights["tpWeight"] / max_tp

    i = rows[~inside]
    previous = np.searchsorted(last, i, side="left") - 1
    has_previous = previous >= 0
    unweighted = np.full(i.shape, -1.0)
    p = previous[has_previous]
    # A one-row window makes NAB's denominator zero; inf puts every later false positive
    # "infinitely far", i.e. the full -1 cost, instead of a division error.
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.abs(last[p] - i[has_previous]) / (width[p] - 1.0)
    unweighted[has_previous] = scaled_sigmoid(distance)
    sweep[~inside] = unweighted * weights["fpWeight"]

    scorable = rows >= probation_length(n_rows, probation_percent)
    return sweep, window_of_row, scorable


def score_by_threshold(
    anomaly_scores: np.ndarray,
    sweep: np.ndarray,
    window_ids: np.ndarray,
    fn_weight: float,
) -> ThresholdSweep:
    """Total score for every threshold in one pass (NAB's ``calcScoreByThreshold``).

    Rows are sorted by anomaly score, highest first; lowering the threshold past each
    distinct score flags one more group of rows. False positives accumulate with a
    cumulative sum; each window's reward is the running maximum of its flagged rows'
    sweep scores (its earliest flagged row), starting from ``-fn_weight``, so the total
    changes by that maximum's increments, which are also accumulated.

    Parameters
    ----------
    anomaly_scores, sweep, window_ids
        Scorable rows only (probationary rows removed), from any number of files;
        ``window_ids`` must be unique across files and ``-1`` outside windows.
    fn_weight
        Cost of a missed window.

    Returns
    -------
    ThresholdSweep
        Entry 0 flags nothing (threshold 1.1 as in NAB, or just above the maximum score
        if scores reach 1.1); each later entry is a distinct anomaly score.

    Examples
    --------
    Two windows (ids 0 and 1) and one row outside them:

    >>> table = score_by_threshold(
    ...     np.array([0.9, 0.5, 0.7]), np.array([1.0, -0.11, 0.6]), np.array([0, -1, 1]), 1.0)
    >>> print(", ".join(f"{t:.1f}:{s:.2f}" for t, s in zip(table.thresholds, table.scores)))
    1.1:-2.00, 0.9:0.00, 0.7:1.60, 0.5:1.49
    >>> print(table.best(), table.detected.tolist())
    2 [0, 1, 2, 2]
    """
    anomaly_scores = np.asarray(anomaly_scores, dtype=np.float64)
    sweep = np.asarray(sweep, dtype=np.float64)
    window_ids = np.asarray(window_ids, dtype=np.int64)
    n = anomaly_scores.shape[0]
    window_set = np.unique(window_ids[window_ids >= 0])
    n_windows = int(window_set.size)

    order = np.argsort(-anomaly_scores, kind="stable")
    ranked_scores = anomaly_scores[order]
    ranked_sweep = sweep[order]
    inside = window_ids[order] >= 0
    # Compact ids so the per-window offsets below stay small integers.
    ranked_window = np.searchsorted(window_set, window_ids[order])

    false_positive = np.cumsum(np.where(inside, 0.0, ranked_sweep))

    gain = np.zeros(n, dtype=np.float64)
    first_hit = np.zeros(n, dtype=np.int64)
    at = np.flatnonzero(inside)
    if at.size:
        # Regroup window rows by window, keeping the score order inside each group.
        at = at[np.argsort(ranked_window[at], kind="stable")]
        group = ranked_window[at]
        values = ranked_sweep[at]
        rank_order = np.argsort(values, kind="stable")
        rank = np.empty(at.size, dtype=np.int64)
        rank[rank_order] = np.arange(at.size)
        # Offsetting integer ranks by group * size turns one global running maximum into
        # a per-group one exactly, with no floating-point offsets.
        running = np.maximum.accumulate(rank + group * at.size) - group * at.size
        best = values[rank_order[running]]
        starts = np.r_[True, group[1:] != group[:-1]]
        previous = np.where(starts, -fn_weight, np.r_[-fn_weight, best[:-1]])
        gain[at] = best - previous
        first_hit[at] = starts

    # The table holds one entry per distinct score, taken after its last tied row.
    ends = np.flatnonzero(np.r_[ranked_scores[1:] != ranked_scores[:-1], n > 0])
    true_positive = -fn_weight * n_windows + np.cumsum(gain)
    tp_rows = np.cumsum(inside)
    fp_rows = np.cumsum(~inside)
    total_inside = int(inside.sum())
    total_outside = n - total_inside

    top = float(ranked_scores[0]) if n else 0.0
    start = _NAB_START_THRESHOLD if top < _NAB_START_THRESHOLD else float(np.nextafter(top, np.inf))
    tp = np.r_[0, tp_rows[ends]].astype(np.int64)
    fp = np.r_[0, fp_rows[ends]].astype(np.int64)
    return ThresholdSweep(
        thresholds=np.r_[start, ranked_scores[ends]],
        scores=np.r_[0.0 - fn_weight * n_windows, false_positive[ends] + true_positive[ends]],
        tp=tp,
        fp=fp,
        fn=total_inside - tp,
        tn=total_outside - fp,
        detected=np.r_[0, np.cumsum(first_hit)[ends]].astype(np.int64),
        n_windows=n_windows,
    )


def score_at_threshold(
    anomaly_scores: np.ndarray,
    sweep: np.ndarray,
    window_of_row: np.ndarray,
    scorable: np.ndarray,
    threshold: float,
    fn_weight: float,
) -> dict[str, float | int]:
    """Score of one file when rows with ``anomaly_score >= threshold`` are detections.

    This is what NAB's ``scoreDataSet`` reports per file for the corpus threshold.

    Parameters
    ----------
    anomaly_scores
        Detector output, one per row.
    sweep, window_of_row, scorable
        From :func:`sweep_scores`.
    threshold
        Detection threshold.
    fn_weight
        Cost of a missed window.

    Returns
    -------
    dict
        ``raw`` score, NAB row counts ``tp``, ``fp``, ``fn``, ``tn``, and window counts
        ``windows_detected``, ``windows_missed`` (windows with a scorable row only).

    Examples
    --------
    >>> sweep, window_of_row, scorable = sweep_scores(
    ...     20, np.array([[8, 11]]), {"tpWeight": 1.0, "fpWeight": 0.11})
    >>> detector = np.zeros(20)
    >>> detector[[10, 11]] = 1.0
    >>> result = score_at_threshold(detector, sweep, window_of_row, scorable, 0.5, 1.0)
    >>> print(f"{result['raw']:.4f} {result['tp']} {result['windows_detected']}")
    0.8598 2 1
    """
    scored = np.asarray(scorable, dtype=bool)
    flagged = scored & (np.asarray(anomaly_scores) >= threshold)
    inside = window_of_row >= 0
    n_windows = int(window_of_row.max(initial=-1)) + 1
    present = np.zeros(n_windows, dtype=bool)
    present[window_of_row[scored & inside]] = True
    # Only the best (earliest) flagged row counts in each window: a max per window.
    best = np.full(n_windows, -np.inf)
    hits = flagged & inside
    np.maximum.at(best, window_of_row[hits], sweep[hits])
    detected = present & np.isfinite(best)
    missed = present & ~detected
    raw = float(sweep[flagged & ~inside].sum() + best[detected].sum() - fn_weight * missed.sum())
    tp = int(hits.sum())
    fp = int((flagged & ~inside).sum())
    return {
        "raw": raw,
        "tp": tp,
        "fp": fp,
        "fn": int((scored & inside).sum()) - tp,
        "tn": int((scored & ~inside).sum()) - fp,
        "windows_detected": int(detected.sum()),
        "windows_missed": int(missed.sum()),
    }


def _normalise(raw: float, null: float, perfect: float) -> float | None:
    # A corpus without windows has perfect == null: there is nothing to normalise by.
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)


def _summary(
    files: Sequence[NabFile],
    per_file: Mapping[str, Mapping[str, float | int]],
    null_per_file: Mapping[str, Mapping[str, float | int]],
    tp_weight: float,
) -> dict[str, Any]:
    raw = math.fsum(per_file[f.name]["raw"] for f in files)
    null = math.fsum(null_per_file[f.name]["raw"] for f in files)
    n_windows = sum(len(f.windows) for f in files)
    # NAB's runner.normalize: perfect is tpWeight for every window of the labels, i.e. each
    # window detected on its first row and no false positive.
    perfect = tp_weight * n_windows
    return {
        "score": _normalise(raw, null, perfect),
        "raw": raw,
        "null": null,
        "perfect": perfect,
        "n_files": len(files),
        "n_windows": n_windows,
    }


def _optimise(
    files: Sequence[NabFile],
    parts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    outputs: Mapping[str, np.ndarray],
    fn_weight: float,
) -> tuple[float, dict[str, dict[str, float | int]]]:
    # NAB's optimizer: one sweep over the rows of all files together, then each file is
    # scored at the winning threshold (NAB's scoreCorpus).
    chunks, offset = [], 0
    for f in files:
        sweep, window_of_row, scorable = parts[f.name]
        # Window ids must be unique across files: the one-detection-per-window rule
        # applies to each window of the corpus separately.
        ids = np.where(window_of_row >= 0, window_of_row + offset, -1)
        offset += len(f.windows)
        chunks.append((outputs[f.name][scorable], sweep[scorable], ids[scorable]))
    table = score_by_threshold(
        np.concatenate([c[0] for c in chunks]),
        np.concatenate([c[1] for c in chunks]),
        np.concatenate([c[2] for c in chunks]),
        fn_weight,
    )
    threshold = float(table.thresholds[table.best()])
    per_file = {
        f.name: score_at_threshold(outputs[f.name], *parts[f.name], threshold, fn_weight)
        for f in files
    }
    return threshold, per_file


def score_detector(
    files: Sequence[NabFile],
    anomaly_scores: Mapping[str, np.ndarray],
    profiles: Mapping[str, Mapping[str, float]],
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, Any]:
    """NAB scores of a detector's outputs held in memory.

    For each profile: optimise one threshold over all files together, score each file
    at it, do the same for the all-zero null detector, and normalise.

    Parameters
    ----------
    files
        The corpus.
    anomaly_scores
        File name to that file's anomaly scores.
    profiles
        Profile name to weights (see :func:`load_profiles`).
    probation_percent
        See :func:`probation_length`.

    Returns
    -------
    dict
        ``{"n_files", "n_rows", "n_windows", "probation_percent", "profiles"}`` where
        ``profiles[name]`` has ``threshold``, normalised ``score``, ``raw``, ``null``,
        ``perfect``, ``weights``, corpus ``counts``, per-file
        results under ``files`` and per-category normalised results under ``categories``
        (``score`` is ``None`` where there are no windows).

    Examples
    --------
    One 20-row file, window on rows 8..11, detections on rows 8 and 15:

    >>> stamps = np.datetime64("2020-01-01T00:00") + np.arange(20) * np.timedelta64(1, "m")
    >>> toy = NabFile("demo/toy.csv", None, stamps, np.array([[8, 11]]))
    >>> detector = np.zeros(20)
    >>> detector[[8, 15]] = 0.9
    >>> profiles = {"standard": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}}
    >>> std = score_detector([toy], {"demo/toy.csv": detector}, profiles)["profiles"]["standard"]
    >>> print(f"{std['threshold']:.1f} {std['raw']:.4f} {std['null']:.1f} {std['perfect']:.1f}")
    0.9 0.8903 -1.0 1.0
    >>> print(f"{std['score']:.2f}")
    94.51
    """
    missing = [f.name for f in files if f.name not in anomaly_scores]
    if missing:
        raise MissingResultsError(f"no anomaly scores for {', '.join(missing)}")
    detector = {f.name: np.asarray(anomaly_scores[f.name], dtype=np.float64) for f in files}
    for f in files:
        if detector[f.name].shape != (f.n_rows,):
            raise NabInputError(
                f"{f.name}: {detector[f.name].shape[0]} anomaly scores for {f.n_rows} rows"
            )
    null_detector = {f.name: np.zeros(f.n_rows) for f in files}
    n_windows = sum(len(f.windows) for f in files)

    report_profiles: dict[str, Any] = {}
    for profile, weights in profiles.items():
        tp_weight, fn_weight = float(weights["tpWeight"]), float(weights["fnWeight"])
        parts = {
            f.name: sweep_scores(f.n_rows, f.windows, weights, probation_percent) for f in files
        }
        threshold, per_file = _optimise(files, parts, detector, fn_weight)
        # The null baseline is the detector that never flags: -fnWeight per scorable window.
        # NAB gets it by optimising a constant-score detector, which on its corpus settles on
        # threshold 1.1 (flag nothing); on a small subset flagging every row can come out
        # ahead, which would make the baseline meaningless, so the threshold is fixed here.
        null_per_file = {
            f.name: score_at_threshold(
                null_detector[f.name], *parts[f.name], _NAB_START_THRESHOLD, fn_weight
            )
            for f in files
        }

        whole = _summary(files, per_file, null_per_file, tp_weight)
        counts = {
            key: sum(int(result[key]) for result in per_file.values())
            for key in ("tp", "fp", "fn", "tn", "windows_detected", "windows_missed")
        }
        categories = {
            category: _summary(
                [f for f in files if f.category == category], per_file, null_per_file, tp_weight
            )
            for category in sorted({f.category for f in files})
        }
        report_profiles[profile] = {
            "weights": dict(weights),
            "threshold": threshold,
            "score": whole["score"],
            "raw": whole["raw"],
            "null": whole["null"],
            "perfect": whole["perfect"],
            "counts": counts,
            "files": {
                name: {**result, "null": null_per_file[name]["raw"]}
                for name, result in per_file.items()
            },
            "categories": categories,
        }
    return {
        "n_files": len(files),
        "n_rows": sum(f.n_rows for f in files),
        "n_windows": n_windows,
        "probation_percent": probation_percent,
        "profiles": report_profiles,
    }


def score_corpus(
    data_dirs: PathLike | Iterable[PathLike],
    results_dir: PathLike,
    profiles: PathLike | Mapping[str, Any] | None = None,
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, Any]:
    """NAB scores of the detector results in ``results_dir`` on the given corpus.

    Parameters
    ----------
    data_dirs
        One data directory or several, each in NAB's layout (see the module docstring);
        their data files form one corpus and their windows files are merged.
    results_dir
        Holds ``<category>/<file>.csv`` with an ``anomaly_score`` column for every data
        file (not NAB's ``<detector>_<file>.csv`` names).
    profiles
        A ``profiles.json`` path or parsed profiles; defaults to the first data
        directory's ``config/profiles.json``.
    probation_percent
        See :func:`probation_length`.

    Returns
    -------
    dict
        As :func:`score_detector`, plus ``data_dirs`` and ``results_dir``.

    Raises
    ------
    MissingResultsError
        Naming the missing results files.
    NabInputError
        For any other unusable input.

    Examples
    --------
    >>> import json, shutil, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for sub in ("nab/data/demo", "nab/labels", "nab/config", "out/demo"):
    ...     (root / sub).mkdir(parents=True)
    >>> stamps = [f"2020-01-01 00:{minute:02d}:00" for minute in range(20)]
    >>> _ = (root / "nab/data/demo/toy.csv").write_text(
    ...     "timestamp,value\\n" + "".join(f"{t},0\\n" for t in stamps))
    >>> _ = (root / "nab/labels/combined_windows.json").write_text(
    ...     json.dumps({"demo/toy.csv": [[stamps[8] + ".000000", stamps[11] + ".000000"]]}))
    >>> _ = (root / "nab/config/profiles.json").write_text(json.dumps({"standard": {
    ...     "CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}}}))
    >>> _ = (root / "out/demo/toy.csv").write_text("timestamp,value,anomaly_score\\n" + "".join(
    ...     f"{t},0,{1.0 if i == 8 else 0.0}\\n" for i, t in enumerate(stamps)))
    >>> std = score_corpus(root / "nab", root / "out")["profiles"]["standard"]
    >>> print(f"{std['threshold']:.1f} {std['raw']:.1f} {std['null']:.1f} {std['score']:.1f}")
    1.0 1.0 -1.0 100.0
    >>> shutil.rmtree(root)
    """
    if isinstance(data_dirs, str | Path):
        data_dirs = [data_dirs]
    dirs = [Path(d) for d in data_dirs]
    results = Path(results_dir)
    if not dirs:
        raise NabInputError("no data directory given")
    if not results.is_dir():
        raise MissingResultsError(f"results directory not found: {results}")
    files = load_corpus(dirs)
    missing = [results / f.name for f in files if not (results / f.name).is_file()]
    if missing:
        shown = ", ".join(map(str, missing[:5]))
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MissingResultsError(
            f"{len(missing)} of {len(files)} results file(s) not found: {shown}{more}"
        )
    cost = load_profiles(dirs[0] / "config" / "profiles.json" if profiles is None else profiles)
    outputs = {f.name: read_results(results, f) for f in files}
    report = score_detector(files, outputs, cost, probation_percent)
    return {"data_dirs": [str(d) for d in dirs], "results_dir": str(results), **report}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(report: Mapping[str, Any], categories: bool = True) -> str:
    """Plain-text summary of a :func:`score_corpus` report.

    Parameters
    ----------
    report
        Output of :func:`score_corpus` or :func:`score_detector`.
    categories
        Also list the per-category normalised scores.

    Returns
    -------
    str
        One line per profile (and per category and profile), without trailing newline.

    Examples
    --------
    >>> stamps = np.datetime64("2020-01-01T00:00") + np.arange(20) * np.timedelta64(1, "m")
    >>> toy = NabFile("demo/toy.csv", None, stamps, np.array([[8, 11]]))
    >>> profiles = {"standard": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}}
    >>> detector = np.zeros(20)
    >>> detector[8] = 1.0
    >>> print(format_table(score_detector([toy], {"demo/toy.csv": detector}, profiles)))
    profile               threshold        raw       null    perfect      score
    standard               1.000000       1.00      -1.00       1.00     100.00
    <BLANKLINE>
    category               profile            windows        raw       null    perfect      score
    demo                   standard                 1       1.00      -1.00       1.00     100.00
    """
    lines = [
        f"{'profile':<20} {'threshold':>10} {'raw':>10} {'null':>10} {'perfect':>10} {'score':>10}"
    ]
    for name, result in report["profiles"].items():
        lines.append(
            f"{name:<20} {result['threshold']:>10.6f} {result['raw']:>10.2f} "
            f"{result['null']:>10.2f} {result['perfect']:>10.2f} {_fmt(result['score']):>10}"
        )
    if categories:
        lines.append("")
        lines.append(
            f"{'category':<22} {'profile':<18} {'windows':>7} {'raw':>10} {'null':>10} "
            f"{'perfect':>10} {'score':>10}"
        )
        for name, result in report["profiles"].items():
            for category, part in result["categories"].items():
                lines.append(
                    f"{category:<22} {name:<18} {part['n_windows']:>7} {part['raw']:>10.2f} "
                    f"{part['null']:>10.2f} {part['perfect']:>10.2f} {_fmt(part['score']):>10}"
                )
    return "\n".join(lines)
