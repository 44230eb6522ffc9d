"""``stream-rnn fraud-eval``: replay transaction files through :class:`FraudDetector`,
test-then-train with delayed labels, and report the Fraud Detection Handbook metrics.

The files are read in order as one stream (JSON lines, ``.gz`` or plain; one transaction
per line with ``ts``, the key fields, ``tx_id``, ``features.amount`` and, for evaluation,
``label`` and optionally ``scenario``). Each event is scored before the model learns from
it, and its label reaches the model only once the stream passes its time plus the delay;
the model never sees ``label`` or ``scenario``. Prints a table (overall, the later part of
the stream, per week, per scenario, events per second), writes ``--out DIR/fraud_eval.json``
and, with ``--scores``, every event's score. Unusable input exits with status 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from pathlib import Path

from stream_rnn.commands._args import non_negative_real, positive_int

__all__ = ["add_parser", "run"]

EXIT_INPUT_ERROR = 2
REPORT_FILE = "fraud_eval.json"


def _json_loads():
    # orjson parses these small records several times faster than the stdlib json; it is
    # an optional speed-up, used when installed.
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


def _finite(value):
    # JSON has no NaN: undefined metrics (one class only) are written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``fraud-eval`` on the ``stream-rnn`` subcommand parsers."""
    p = subparsers.add_parser(
        "fraud-eval",
        help="replay transactions test-then-train with delayed labels; AUC, AP, CP@100",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="JSON-lines transaction files, replayed in order as one stream")
    p.add_argument("--label-delay-days", type=non_negative_real, default=7.0, metavar="D",
                   help="days after a transaction at which its label reaches the model "
                        "(default 7)")
    p.add_argument("--scores", type=Path, default=None, metavar="OUT.csv",
                   help="write tx_id,key,ts,score,label for every event")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help=f"write DIR/{REPORT_FILE}")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="stop after N events")
    p.add_argument("--later-from-day", type=positive_int, default=None, metavar="DAY",
                   help="first day (0-based, from the stream's first UTC day) of the "
                        "'later part' (default 56: after the first eight weeks)")
    p.add_argument("--top-k", type=positive_int, default=100, metavar="K",
                   help="cards investigated per day for card precision (default 100)")
    p.add_argument("--keys", default="key,terminal", metavar="LIST",
                   help="comma-separated key fields of an event (default key,terminal); "
                        "the first one is the card for card precision")
    p.add_argument("--no-recurrent", action="store_true",
                   help="ablation: no recurrent state, engineered features only")
    p.add_argument("--no-aggregates", action="store_true",
                   help="ablation: no engineered activity/amount aggregates")
    p.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    p.add_argument("--chunk", type=positive_int, default=4096, metavar="N",
                   help="events per batch call (default 4096; results do not depend on it)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Replay ``args.files``; 0 on success, 2 on unusable input."""
    # Imported here so that building the CLI parser stays cheap.
    from stream_rnn.evaluation import fraud as ev
    from stream_rnn.models.fraud import FraudDetector

    prog = "stream-rnn fraud-eval"
    for path in args.files:
        if not path.is_file():
            print(f"{prog}: error: no such file: {path}", file=sys.stderr)
            return EXIT_INPUT_ERROR
    keys = tuple(k.strip() for k in args.keys.split(",") if k.strip())
    if not keys:
        print(f"{prog}: error: --keys names no field", file=sys.stderr)
        return EXIT_INPUT_ERROR
    later = ev.LATER_FROM_DAY if args.later_from_day is None else args.later_from_day
    model = FraudDetector(keys=keys, recurrent=not args.no_recurrent,
                          aggregates=not args.no_aggregates, seed=args.seed)
    # The replay makes no reference cycles (tested), so the cyclic garbage collector has
    # nothing to find in it; yet it holds tens of thousands of events at a time, and each
    # collection they set off would walk the growing results and the imported libraries'
    # objects (measured: 2.7 s of a 17 s replay). Collection is off while it runs.
    collecting = gc.isenabled()
    gc.disable()
    try:
        events = ev.read_events(args.files, limit=args.limit, loads=_json_loads())
        result = ev.replay(model, events,
                           label_delay_seconds=args.label_delay_days * 86400.0,
                           chunk=args.chunk, card_field=keys[0])
    except (ValueError, KeyError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    finally:
        if collecting:
            gc.enable()
    if result.n_events == 0:
        print(f"{prog}: error: no events in {', '.join(map(str, args.files))}",
              file=sys.stderr)
        return EXIT_INPUT_ERROR
    t0 = time.perf_counter()
    report = ev.fraud_report(result, k=args.top_k, later_from_day=later)
    report["metrics_seconds"] = time.perf_counter() - t0
    report["files"] = [str(p) for p in args.files]
    report["label_delay_days"] = args.label_delay_days
    report["model"] = {
        "class": type(model).__name__,
        "params": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in model._get_params().items()},
        "n_keys": model.n_keys,
        "n_evictions": model.n_evictions,
        "n_labels_learned": model.n_labels_learned,
        "n_frauds_learned": model.n_frauds_learned,
        "n_pending": model.n_pending,
        "n_pending_dropped": model.n_pending_dropped,
        "n_stale_tallies": model.n_stale_tallies,
    }
    print(f"{result.n_events} events from {len(args.files)} file(s), "
          f"label delay {args.label_delay_days:g} days, "
          f"{'no ' if args.no_recurrent else ''}recurrent state, "
          f"{'no ' if args.no_aggregates else ''}aggregates")
    sys.stdout.write(ev.format_report(report))
    try:
        if args.scores is not None:
            t0 = time.perf_counter()
            ev.write_scores(result, args.scores)
            print(f"wrote {args.scores} ({time.perf_counter() - t0:.1f} s)")
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            out = args.out / REPORT_FILE
            out.write_text(json.dumps(_finite(report), indent=2) + "\n", encoding="utf-8")
            print(f"wrote {out}")
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    return 0
