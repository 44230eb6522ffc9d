"""``stream-rnn nab-score``: score detector outputs with the Numenta Anomaly Benchmark rules.

Reads the corpus from one or more ``--data`` directories (NAB layout: ``data/``,
``labels/combined_windows.json``, ``config/profiles.json``; windows are merged across
directories) and the detector's outputs from ``--results OUT/<category>/<file>.csv``
(an ``anomaly_score`` column, one row per data row; NAB's own results prefix the file name
with the detector, ``<detector>_<file>.csv``, and are not read). Prints a table per cost
profile and writes ``OUT/nab_scores.json``. Unusable inputs exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

EXIT_INPUT_ERROR = 2
SCORES_FILE = "nab_scores.json"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``nab-score`` on the ``stream-rnn`` subcommand parsers."""
    parser = subparsers.add_parser(
        "nab-score",
        help="score anomaly detector outputs with the NAB v1.1 rules",
        description=(
            "Score detector outputs with the Numenta Anomaly Benchmark rules: one threshold "
            "per cost profile optimised over the whole corpus, normalised so that the null "
            "detector scores 0 and the perfect detector 100. Writes OUT/nab_scores.json."
        ),
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        action="append",
        required=True,
        type=Path,
        help="NAB data directory with data/, labels/ and config/ (repeat for more categories)",
    )
    parser.add_argument(
        "--results",
        metavar="OUT",
        required=True,
        type=Path,
        help="detector outputs as OUT/<category>/<file>.csv with an anomaly_score column",
    )
    parser.add_argument(
        "--profiles",
        metavar="FILE",
        type=Path,
        default=None,
        help="cost profiles JSON (default: config/profiles.json of the first --data)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Score ``args.results`` against ``args.data``; 0 on success, 2 on unusable inputs."""
    # Imported here so that building the CLI parser does not load numpy.
    from stream_rnn.evaluation.nab import NabInputError, format_table, score_corpus

    try:
        report = score_corpus(args.data, args.results, profiles=args.profiles)
    except NabInputError as exc:
        print(f"stream-rnn nab-score: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    out = Path(args.results) / SCORES_FILE
    try:
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"stream-rnn nab-score: error: cannot write {out}: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    print(
        f"NAB scores of {report['n_files']} files, {report['n_rows']} rows, "
        f"{report['n_windows']} windows"
    )
    print(format_table(report))
    print(f"wrote {out}")
    return 0
