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
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from stream_rnn.io.scenario import Incident, write_events, write_incidents
from stream_rnn.synth.cards import card_events
from stream_rnn.synth.energy import energy_events
from stream_rnn.synth.plant import plant_events

__all__ = ["RECORDINGS", "generator_call", "record"]

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
        written[name] = write_events(events, folder / "events.jsonl.gz")
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
