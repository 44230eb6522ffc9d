"""Record the bundled scenarios' data files from their generators.

``python -m stream_rnn.synth.record scenarios`` rewrites ``events.jsonl.gz`` and
``incidents.json`` of every bundled scenario (``plant``, ``cards``, ``energy``) under
``scenarios/``; name scenarios after the folder to record only those. Each
``scenario.toml`` is written by hand and left alone: its description quotes the generator
call listed in :data:`RECORDINGS`.

The files are reproducible: the same call gives the same bytes (sorted JSON keys, no time
or file name in the gzip header).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from stream_rnn.synth.cards import card_events
from stream_rnn.synth.energy import energy_events
from stream_rnn.synth.incidents import Incident
from stream_rnn.synth.plant import plant_events

__all__ = ["RECORDINGS", "generator_call", "record", "write_incidents", "write_jsonl_gz"]

Generator = Callable[..., tuple[list[dict], list[Incident]]]

#: Scenario folder name -> the generator and the arguments its recording uses.
RECORDINGS: dict[str, tuple[Generator, dict[str, int]]] = {
    "plant": (plant_events, {"n_sensors": 48, "n_steps": 2016, "step_seconds": 300,
                             "seed": 0}),
    "cards": (card_events, {"n_cards": 1500, "n_terminals": 300, "days": 30, "seed": 0}),
    "energy": (energy_events, {"n_regions": 6, "days": 364, "seed": 0}),
}


def generator_call(name: str) -> str:
    """The exact call that records scenario ``name``, as written in its description.

    Examples
    --------
    >>> generator_call("energy")
    'stream_rnn.synth.energy.energy_events(n_regions=6, days=364, seed=0)'
    """
    function, kwargs = RECORDINGS[name]
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{function.__module__}.{function.__name__}({args})"


def write_jsonl_gz(events: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write events as gzipped JSON lines, the same bytes for the same events."""
    count = 0
    # No time and no file name in the gzip header: the bytes depend on the events only.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                                mtime=0) as gz, \
            io.TextIOWrapper(gz, encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n")
            count += 1
    return count


def write_incidents(incidents: Iterable[Incident], path: str | Path) -> int:
    """Write incidents as a JSON list, one incident a line."""
    records = [json.dumps(inc.to_json(), sort_keys=True) for inc in incidents]
    Path(path).write_text("[\n" + ",\n".join(records) + "\n]\n", encoding="utf-8")
    return len(records)


def record(out_dir: str | Path, names: Iterable[str] | None = None) -> dict[str, int]:
    """Write ``OUT_DIR/NAME/events.jsonl.gz`` and ``incidents.json`` of each scenario.

    Returns the number of events written per scenario.
    """
    out = Path(out_dir)
    chosen = list(names) if names else list(RECORDINGS)
    unknown = [n for n in chosen if n not in RECORDINGS]
    if unknown:
        raise ValueError(f"no generator for {unknown}; known: {sorted(RECORDINGS)}")
    written = {}
    for name in chosen:
        function, kwargs = RECORDINGS[name]
        events, incidents = function(**kwargs)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = write_jsonl_gz(events, folder / "events.jsonl.gz")
        write_incidents(incidents, folder / "incidents.json")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m stream_rnn.synth.record OUT_DIR [NAME ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m stream_rnn.synth.record", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder holding one folder per scenario")
    parser.add_argument("names", nargs="*", help=f"scenarios to record (default: all of "
                                                 f"{', '.join(RECORDINGS)})")
    args = parser.parse_args(argv)
    try:
        written = record(args.out_dir, args.names)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, count in written.items():
        print(f"{args.out_dir / name}: {count} events by {generator_call(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
