"""Recorded scenarios: a folder with ``scenario.toml`` and ``events.jsonl.gz``.

``scenario.toml`` names the scenario, its task (``sensor``, ``fraud`` or ``forecast``),
which event fields are entity keys, the model configuration and the quality expected;
``events.jsonl.gz`` holds the stream in the daemon's input format, one JSON object a line.
"""

from __future__ import annotations

import gzip
import io
import json
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Scenario", "load_scenario", "write_events", "TASKS"]

TASKS = ("sensor", "fraud", "forecast")


@dataclass(frozen=True)
class Scenario:
    """A loaded ``scenario.toml`` and where its events are."""

    name: str
    description: str
    task: str
    keys: tuple[str, ...]
    events_path: Path
    model: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, float] = field(default_factory=dict)
    label_delay_seconds: float = 0.0

    def events(self) -> Iterator[dict[str, Any]]:
        """The recorded events, in order."""
        opener = gzip.open if self.events_path.suffix == ".gz" else open
        with opener(self.events_path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{self.events_path}:{number}: not JSON: {exc}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario folder (or its ``scenario.toml``).

    Raises ValueError with the file and the field at fault.
    """
    path = Path(path)
    manifest = path / "scenario.toml" if path.is_dir() else path
    if not manifest.is_file():
        raise ValueError(f"{manifest}: no scenario.toml here")
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{manifest}: {exc}") from None

    def need(name: str, kind: type) -> Any:
        if name not in data:
            raise ValueError(f"{manifest}: missing required field {name!r}")
        if not isinstance(data[name], kind):
            raise ValueError(f"{manifest}: {name!r} must be a {kind.__name__}")
        return data[name]

    task = need("task", str)
    if task not in TASKS:
        raise ValueError(f"{manifest}: task must be one of {TASKS}, got {task!r}")
    keys = data.get("keys", ["key"])
    if not (isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys)):
        raise ValueError(f"{manifest}: 'keys' must be a non-empty list of field names")
    events = manifest.parent / data.get("events", "events.jsonl.gz")
    if not events.is_file():
        raise ValueError(f"{manifest}: events file {events} does not exist")
    model = data.get("model", {})
    expect = data.get("expect", {})
    if not isinstance(model, dict) or not isinstance(expect, dict):
        raise ValueError(f"{manifest}: [model] and [expect] must be tables")
    return Scenario(
        name=need("name", str),
        description=data.get("description", ""),
        task=task,
        keys=tuple(keys),
        events_path=events,
        model=model,
        expect={k: float(v) for k, v in expect.items()},
        label_delay_seconds=float(data.get("label_delay_seconds", 0.0)),
    )


def write_events(events: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write events as gzipped JSON lines, reproducibly (no timestamp in the gzip header)."""
    count = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        with io.TextIOWrapper(gz, encoding="utf-8") as fh:
            for event in events:
                fh.write(json.dumps(event, separators=(",", ":"), sort_keys=True) + "\n")
                count += 1
    return count
