"""``stream-rnn bench``: time the online loop (per-event API, batch path, scoring, and the
plain NumPy reference) for each cell and hidden size, print events per second against the
product targets, and optionally write every measurement as JSON.

It prints numbers; it does not pass or fail. Run it on a quiet machine: every measurement
is one process on one core, the median of several runs after a warm-up run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream_rnn.benchmark import CELLS, WINDOW, BenchConfig, config_with


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(_positive_int(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected a comma-separated list of integers")
    return values


def _update_every_list(text: str) -> tuple[int, ...]:
    values = _int_list(text)
    if any(v > WINDOW for v in values):
        raise argparse.ArgumentTypeError(f"update_every must be at most the window ({WINDOW})")
    return values


def _cell_list(text: str) -> tuple[str, ...]:
    cells = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise argparse.ArgumentTypeError(
            f"cells must be a comma-separated subset of {','.join(CELLS)}, got {text!r}")
    return cells


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = BenchConfig()
    p = subparsers.add_parser(
        "bench",
        help="time the online loop and compare with the product targets",
        description=__doc__,
    )
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="write every measurement, the configuration and the machine to FILE")
    p.add_argument("--quick", action="store_true",
                   help="a tiny configuration that runs in seconds (checks the plumbing; "
                        "its numbers mean little); flags below still override it")
    p.add_argument("--repeats", type=_positive_int, default=None, metavar="N",
                   help=f"timed runs per measurement after the warm-up; the median is "
                        f"reported (default {defaults.repeats})")
    p.add_argument("--events", type=_positive_int, default=None, metavar="N",
                   help=f"timed events per run, rounded up to whole update cycles of every "
                        f"key (default {defaults.events:,})")
    p.add_argument("--cells", type=_cell_list, default=None, metavar="LIST",
                   help=f"cells to measure (default {','.join(defaults.cells)})")
    p.add_argument("--hidden", type=_int_list, default=None, metavar="LIST",
                   help=f"hidden sizes (default {','.join(map(str, defaults.hidden))})")
    p.add_argument("--update-every", type=_update_every_list, default=None, metavar="LIST",
                   help=f"update_every values (default "
                        f"{','.join(map(str, defaults.update_every))})")
    p.add_argument("--keys", type=_positive_int, default=None, metavar="N",
                   help=f"keys taking turns in the stream (default {defaults.keys})")
    p.add_argument("--chunk", type=_positive_int, default=None, metavar="N",
                   help=f"events per batch call (default {defaults.chunk})")
    p.add_argument("--numpy-events", type=_positive_int, default=None, metavar="N",
                   help=f"timed events per run of the slow NumPy reference "
                        f"(default {defaults.numpy_events})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream_rnn.benchmark import format_report, run_benchmark

    base = BenchConfig.quick() if args.quick else BenchConfig()
    config = config_with(
        base, cells=args.cells, hidden=args.hidden, update_every=args.update_every,
        events=args.events, keys=args.keys, repeats=args.repeats, chunk=args.chunk,
        numpy_events=args.numpy_events,
    )
    # Progress goes to stderr so stdout carries only the report.
    report = run_benchmark(config, progress=sys.stderr)
    report["config"]["quick"] = bool(args.quick)
    sys.stdout.write(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        sys.stdout.write(f"wrote {args.json}\n")
    return 0
