"""``stream-rnn nab``: run the sensor detector over a NAB corpus and write its scores.

For every ``DIR/data/<category>/<file>.csv`` (columns ``timestamp,value``) of each
``--data`` directory, a fresh :class:`~stream_rnn.models.SensorAnomalyDetector` reads the
file once, in order, scoring each row before learning from it, and the scores go to
``OUT/<category>/<file>.csv`` with columns ``timestamp,value,anomaly_score``: the input's
rows, in the input's order, with its timestamp and value text unchanged. One
configuration serves every file: the detector's defaults, which are the configuration
chosen on NAB's dev categories (``--config``: a TOML file whose ``[detector]`` table
overrides ``SensorAnomalyDetector`` arguments). Files run in parallel over ``--jobs`` processes.
Score the output with ``stream-rnn nab-score --data DIR --results OUT``. Unusable inputs
exit with status 2.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "run_file", "load_config", "find_files"]

EXIT_INPUT_ERROR = 2


class NabRunError(ValueError):
    """A data file or configuration that cannot be run."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``nab`` on the ``stream-rnn`` subcommand parsers."""
    parser = subparsers.add_parser(
        "nab",
        help="run the sensor anomaly detector over a NAB corpus",
        description=(
            "Run SensorAnomalyDetector over every DIR/data/<category>/<file>.csv (a fresh "
            "model per file, strictly online) and write OUT/<category>/<file>.csv with "
            "columns timestamp,value,anomaly_score. Score it with stream-rnn nab-score."
        ),
    )
    parser.add_argument("--data", metavar="DIR", action="append", required=True, type=Path,
                        help="NAB data directory holding data/<category>/*.csv (repeatable)")
    parser.add_argument("--out", metavar="OUT", required=True, type=Path,
                        help="output directory for <category>/<file>.csv")
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help="TOML file whose [detector] table overrides the detector's "
                             "arguments (default: the detector's defaults)")
    parser.add_argument("--jobs", metavar="N", type=int, default=2,
                        help="files run in parallel over N processes (default: 2)")
    parser.set_defaults(func=run)
    return parser


def load_config(path: Path | None) -> dict[str, Any]:
    """Detector arguments from the ``[detector]`` table of a TOML file (``{}`` for None)."""
    if path is None:
        return {}
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise NabRunError(f"cannot read config {path}: {exc}") from None
    params = raw.get("detector", {})
    if not isinstance(params, dict):
        raise NabRunError(f"{path}: [detector] must be a table")
    from stream_rnn.models import SensorAnomalyDetector

    known = set(inspect.signature(SensorAnomalyDetector).parameters)
    unknown = sorted(set(params) - known)
    if unknown:
        raise NabRunError(f"{path}: unknown detector argument(s) {', '.join(unknown)}")
    return params


def find_files(data_dirs: list[Path]) -> list[tuple[Path, str]]:
    """``(path, "<category>/<file>.csv")`` of every data file, sorted by name."""
    found: dict[str, Path] = {}
    for data_dir in data_dirs:
        root = Path(data_dir) / "data"
        if not root.is_dir():
            raise NabRunError(f"{data_dir}: no data/ directory")
        for path in sorted(root.glob("*/*.csv")):
            name = f"{path.parent.name}/{path.name}"
            if name in found:
                raise NabRunError(f"{name} is in two data directories: {found[name]}, {path}")
            found[name] = path
    if not found:
        raise NabRunError(f"no data/<category>/*.csv files under {', '.join(map(str, data_dirs))}")
    return [(found[name], name) for name in sorted(found)]


def _read(path: Path) -> tuple[list[str], list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            rows = [row for row in reader if row]
    except OSError as exc:
        raise NabRunError(f"cannot read {path}: {exc}") from None
    if "timestamp" not in header or "value" not in header:
        raise NabRunError(f"{path}: expected columns timestamp,value (header: {','.join(header)})")
    it, iv = header.index("timestamp"), header.index("value")
    if any(len(row) <= max(it, iv) for row in rows):
        raise NabRunError(f"{path}: a row has fewer fields than the header")
    return [row[it] for row in rows], [row[iv] for row in rows]


def run_file(path: Path, out_path: Path, params: dict[str, Any]) -> tuple[int, float]:
    """Score one data file into ``out_path``; returns ``(rows, seconds)``."""
    import numpy as np

    from stream_rnn.models import SensorAnomalyDetector

    start = time.perf_counter()
    stamps, values = _read(path)
    try:
        x = np.asarray(values, dtype=np.float64)
        times = np.asarray(stamps, dtype="datetime64[us]")
    except ValueError as exc:
        raise NabRunError(f"{path}: {exc}") from None
    if not np.isfinite(x).all():
        raise NabRunError(f"{path}: row {int(np.flatnonzero(~np.isfinite(x))[0]) + 2} "
                          "has a non-finite value")
    scores = np.zeros(len(x))
    if len(x):
        detector = SensorAnomalyDetector(**params)
        # The first reading fixes the features; it has nothing to be forecast from and
        # scores 0. The rest go through the batch path.
        scores[0] = detector.score_one({"value": x[0]})
        detector.learn_one({"value": x[0]}, t=times[0])
        if len(x) > 1:
            scores[1:] = detector.score_learn_many(x[1:, None], times=times[1:])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score"])
        writer.writerows(zip(stamps, values, (f"{s:.6g}" for s in scores), strict=True))
    tmp.replace(out_path)
    return len(x), time.perf_counter() - start


def _run_one(job: tuple[Path, Path, dict[str, Any]]) -> tuple[int, float]:
    return run_file(*job)


def run(args: argparse.Namespace) -> int:
    """Run the detector over ``args.data`` into ``args.out``; 0 on success, 2 on bad input."""
    start = time.perf_counter()
    try:
        params = load_config(args.config)
        files = find_files(args.data)
        jobs = [(path, args.out / name, params) for path, name in files]
        if args.jobs < 1:
            raise NabRunError(f"--jobs must be >= 1, got {args.jobs}")
        if args.jobs == 1 or len(jobs) == 1:
            results = [_run_one(job) for job in jobs]
        else:
            # Largest files first, so the last process to finish is not stuck with a big one.
            order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0].stat().st_size)
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                done = dict(zip(order, pool.map(_run_one, [jobs[i] for i in order]),
                                strict=True))
            results = [done[i] for i in range(len(jobs))]
    except (NabRunError, ValueError) as exc:
        print(f"stream-rnn nab: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    for (_, name), (rows, seconds) in zip(files, results, strict=True):
        print(f"{name:<60} {rows:>7} rows {seconds:>6.1f} s")
    total_rows = sum(rows for rows, _ in results)
    print(f"{len(files)} files, {total_rows} rows in {time.perf_counter() - start:.1f} s; "
          f"wrote {args.out}")
    return 0
