"""``stream-rnn replay SCENARIO``: replay a recorded scenario in-process and report on it.

Reads the scenario's events exactly as ``serve`` reads its input topic (invalid events
become dead letters, counted by reason), scores and learns them with the scenario's model
(``--set model.FIELD=VALUE`` overrides it), and writes ``OUT/scores.jsonl`` (every event's
score, flag, forecast and label), ``OUT/summary.json`` and ``OUT/report.html`` (one
self-contained page of charts). ``--check`` exits 1 when the scenario's ``[expect]`` is
not met, listing each miss. Unusable input exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from stream_rnn.commands._args import positive_int, positive_real, probability

__all__ = ["add_parser", "run", "resolve_scenario"]

EXIT_CHECK_FAILED = 1
EXIT_INPUT_ERROR = 2
BUNDLED = Path(__file__).resolve().parents[2] / "scenarios"
#: Sections ``--set`` accepts: model arguments and ``scoring.threshold``.
SETTABLE = ("model", "scoring")
SCORES_FILE, SUMMARY_FILE, REPORT_FILE = "scores.jsonl", "summary.json", "report.html"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``replay`` on the ``stream-rnn`` subcommand parsers."""
    p = subparsers.add_parser(
        "replay",
        help="replay a recorded scenario in-process: scores, summary.json, report.html",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", metavar="SCENARIO",
                   help="scenario folder, its scenario.toml, or the name of a bundled "
                        "scenario (plant, ...)")
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="output directory (default: out/replay/<scenario name>)")
    p.add_argument("--speed", metavar="X", type=positive_real, default=None,
                   help="pace the replay at the recorded rate times X (default: as fast as "
                        "possible)")
    p.add_argument("--limit", metavar="N", type=positive_int, default=None,
                   help="replay only the first N records")
    p.add_argument("--threshold", metavar="T", type=probability, default=None,
                   help="flag scores above T (default: the scenario's, else 0.999)")
    p.add_argument("--keys", metavar="A,B", default=None,
                   help="comma-separated keys to chart (default: the top keys by score)")
    p.add_argument("--top-keys", metavar="K", type=positive_int, default=6,
                   help="chart the K keys with the highest scores (default: 6)")
    p.add_argument("--set", metavar="SECTION.FIELD=VALUE", action="append", default=[],
                   dest="assignments",
                   help="override a setting, e.g. model.hidden_size=16 or "
                        "scoring.threshold=0.99 (repeatable)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when the scenario's [expect] is not met")
    p.set_defaults(func=run)
    return p


def resolve_scenario(name: str) -> Path:
    """A scenario path as given, else the bundled scenario of that name."""
    path = Path(name)
    if path.exists() or path.is_absolute() or len(path.parts) > 1:
        return path
    return BUNDLED / name


class _Progress:
    """Events, events/s and flags so far on stderr: redrawn in place on a terminal,
    a plain line every ``every_seconds`` otherwise."""

    def __init__(self, stream: TextIO, every_seconds: float = 5.0) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = 0.2 if self.tty else every_seconds
        self.last = -math.inf
        self.drawn = False

    def __call__(self, events: int, flags: int, seconds: float) -> None:
        if seconds - self.last < self.every:
            return
        self.last = seconds
        rate = events / seconds if seconds > 0 else 0.0
        text = f"{events:,} events  {rate:,.0f} events/s  {flags:,} flags"
        if self.tty:
            self.stream.write(f"\r\x1b[K{text}")
            self.drawn = True
        else:
            self.stream.write(f"replay: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _fail(message: str) -> int:
    sys.stderr.write(f"stream-rnn replay: {message}\n")
    return EXIT_INPUT_ERROR


def _prepare_out(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write-test"
    probe.write_bytes(b"")
    probe.unlink()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``stream-rnn replay``; returns the exit status."""
    from stream_rnn.io.scenario import load_scenario
    from stream_rnn.replay import (
        ReplayError,
        parse_assignments,
        replay,
        scenario_failures,
        summarize,
        write_scores,
    )
    from stream_rnn.report import write_report

    path = resolve_scenario(args.scenario)
    if not path.exists():
        return _fail(f"no scenario {args.scenario!r}: neither a folder here nor a bundled "
                     f"scenario in {BUNDLED}")
    try:
        scenario = load_scenario(path)
    except (ValueError, OSError) as exc:
        return _fail(f"cannot load scenario {args.scenario!r}: {exc}")
    try:
        settings = parse_assignments(args.assignments)
    except ReplayError as exc:
        return _fail(f"bad --set: {exc}")
    unknown = sorted(set(settings) - set(SETTABLE))
    extra = sorted(set(settings.get("scoring", {})) - {"threshold"})
    if unknown or extra:
        bad = unknown[0] if unknown else f"scoring.{extra[0]}"
        return _fail(f"bad --set: unknown setting {bad!r} (settable: model.<argument>, "
                     "scoring.threshold)")
    threshold = args.threshold
    if threshold is None and "threshold" in settings.get("scoring", {}):
        threshold = settings["scoring"]["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            return _fail(f"bad --set: scoring.threshold must be a number, got {threshold!r}")
    out = args.out if args.out is not None else Path("out") / "replay" / scenario.name
    try:
        _prepare_out(out)
    except OSError as exc:
        return _fail(f"cannot write to output directory {out}: {exc}")

    progress = _Progress(sys.stderr)
    try:
        result = replay(scenario, overrides=settings.get("model"), threshold=threshold,
                        limit=args.limit, speed=args.speed, progress=progress)
    except ReplayError as exc:
        return _fail(str(exc))
    finally:
        progress.close()
    summary = summarize(result)
    failures = scenario_failures(scenario, summary)
    summary["expect"] = dict(scenario.expect)
    summary["expect_failures"] = failures
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    try:
        write_scores(result, out / SCORES_FILE)
        (out / SUMMARY_FILE).write_text(
            json.dumps(_json_safe(summary), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8")
        write_report(out / REPORT_FILE, result, summary, keys=keys, top_keys=args.top_keys,
                     failures=failures)
    except OSError as exc:
        return _fail(f"cannot write results to {out}: {exc}")

    w = sys.stdout.write
    rate = summary["events_per_second"]
    w(f"replay {scenario.name}: {summary['events']:,} events in {summary['seconds']:.1f} s "
      f"({rate or 0:,.0f} events/s), {summary['flags']:,} flagged at score > "
      f"{summary['threshold']:g}, {summary['dead_letter_total']:,} dead letters\n")
    for name in ("roc_auc", "average_precision", "f1", "incident_detection_rate",
                 "mean_detection_delay_seconds", "mae", "seasonal_naive_mae",
                 "card_precision_at_100_mean"):
        value = summary.get(name)
        if isinstance(value, float):
            w(f"  {name}: {value:.4g}\n")
    if keys:
        missing = [k for k in keys if k not in set(result.key_names)]
        if missing:
            sys.stderr.write(f"stream-rnn replay: not in this replay: {', '.join(missing)}\n")
    w(f"wrote {out / SCORES_FILE}, {out / SUMMARY_FILE}, {out / REPORT_FILE}\n")
    if args.check:
        if failures:
            w(f"check failed: {len(failures)} expectation(s) not met\n")
            for line in failures:
                w(f"  {line}\n")
            return EXIT_CHECK_FAILED
        w(f"check passed: {len(scenario.expect)} expectation(s) met\n")
    return 0
