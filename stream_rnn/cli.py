"""The ``stream-rnn`` command line.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``, which
registers the subcommand and sets ``func`` (taking the parsed ``argparse.Namespace``
and returning an exit status). Modules are imported only when listed here, so
``stream-rnn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

COMMAND_MODULES = (
    "stream_rnn.commands.bench",
    "stream_rnn.commands.bench_e2e",
    "stream_rnn.commands.demo",
    "stream_rnn.commands.fraud_eval",
    "stream_rnn.commands.forecast_eval",
    "stream_rnn.commands.nab",
    "stream_rnn.commands.nab_score",
    "stream_rnn.commands.replay",
    "stream_rnn.commands.produce",
    "stream_rnn.commands.tune",
    "stream_rnn.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-rnn",
        description="Streaming online learning with compiled recurrent cells.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
