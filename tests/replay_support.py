"""Small scenarios written to a temporary folder, and a transparent task model, for the
replay and report tests."""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_rnn.io.scenario import load_scenario, write_events

START = 1_704_067_200  # 2024-01-01T00:00:00Z
STEP = 600  # seconds between readings of a key
STEPS_PER_DAY = 86_400 // STEP


@dataclass
class Output:
    """What a task model returns per event (the task-model contract's fields)."""

    score: float
    prediction: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)


class RunningMeanTask:
    """Forecasts each key's next reading as the mean of its readings so far, with their
    standard deviation as the spread; the score grows with the squared z-score. Simple
    enough that the tests can recompute every output by hand."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = params or {}
        self.state: dict[tuple[str, str], tuple[int, float, float]] = {}
        self.batches: list[list[Any]] = []
        self.labels: list[tuple[str, int]] = []
        self.updates = 0

    def check(self, event: Any) -> str | None:
        return None

    def process(self, events: list[Any]) -> list[Output]:
        self.batches.append(list(events))
        out = []
        for event in events:
            key = "|".join(event.keys)
            prediction, spread, z2 = {}, {}, []
            for name, value in event.features.items():
                n, mean, m2 = self.state.get((key, name), (0, 0.0, 0.0))
                if n >= 2:
                    std = math.sqrt(m2 / (n - 1)) or 1e-9
                    prediction[name], spread[name] = mean, std
                    z2.append(((value - mean) / std) ** 2)
                n += 1
                delta = value - mean
                mean += delta / n
                m2 += delta * (value - mean)
                self.state[(key, name)] = (n, mean, m2)
            score = 1.0 - math.exp(-float(np.mean(z2)) / 2.0) if z2 else 0.0
            out.append(Output(score, prediction, spread))
        self.updates += 1
        return out

    def apply_label(self, event_id: str, label: int) -> bool:
        self.labels.append((event_id, label))
        return True

    def stats(self) -> dict[str, float]:
        return {"keys": len({k for k, _ in self.state}), "version": self.updates,
                "loss": 1.0 / self.updates, "grad_norm": 0.0}


def sensor_events(seed: int = 0, days: float = 2.5) -> tuple[list[dict], list[tuple]]:
    """Three sensors with a daily cycle and noise; sensor ``b`` spikes, ``c`` shifts level.

    Returns the events (time-ordered, in the daemon's input format) and the incidents as
    ``(key, first step, last step)``.
    """
    rng = np.random.default_rng(seed)
    steps = int(days * STEPS_PER_DAY)
    incidents = [("b", 100, 103), ("c", 115, 135)]
    events = []
    for t in range(steps):
        for k, (key, level) in enumerate((("a", 20.0), ("b", 50.0), ("c", 80.0))):
            value = level + 5 * math.sin(2 * math.pi * t / STEPS_PER_DAY + k)
            value += float(rng.normal(0, 0.3))
            label = 0
            for name, first, last in incidents:
                if name == key and first <= t <= last:
                    label = 1
                    value += 30.0 if key == "b" else 12.0
            events.append({"ts": START + t * STEP, "key": key, "id": f"{key}-{t}",
                           "features": {"value": round(value, 4)}, "label": label})
    return events, incidents


INVALID_LINES = [
    # One of each kind of bad record, with the dead-letter reason serve would give it.
    ({"ts": START, "key": "a", "features": {"value": "high"}}, "non_numeric"),
    ({"ts": "yesterday", "key": "a", "features": {"value": 1.0}}, "bad_timestamp"),
    ({"ts": START, "features": {"value": 1.0}}, "missing_field"),
]


def write_scenario(folder: Path, events: list[dict], *, task: str = "sensor",
                   name: str = "tiny", description: str = "A small test stream.",
                   model: dict[str, Any] | None = None, expect: dict[str, float] | None = None,
                   extra: str = "", raw_lines: list[bytes] = ()) -> Path:
    """Write ``scenario.toml`` and ``events.jsonl.gz`` into ``folder``; ``raw_lines`` are
    appended as they are (a second gzip member), for records that are not JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    write_events(events, folder / "events.jsonl.gz")
    if raw_lines:
        with gzip.open(folder / "events.jsonl.gz", "ab") as fh:
            fh.write(b"".join(line + b"\n" for line in raw_lines))
    model = model if model is not None else {"hidden_size": 8, "window": 8,
                                             "update_every": 4, "seed": 0}

    def toml(value: Any) -> str:
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(value).lower() if isinstance(value, bool) else repr(value)

    lines = [f"name = {toml(name)}", f"description = {toml(description)}",
             f"task = {toml(task)}", 'keys = ["key"]', extra, "[model]"]
    lines += [f"{k} = {toml(v)}" for k, v in model.items()]
    lines.append("[expect]")
    lines += [f"{k} = {toml(v)}" for k, v in (expect or {}).items()]
    (folder / "scenario.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_scenario(folder: Path, **options: Any):
    """The three-sensor stream plus one bad record of each kind, loaded."""
    events, _ = sensor_events()
    bad = [record for record, _ in INVALID_LINES]
    # Bad records sit in the middle of the stream, as they would on a topic.
    mixed = events[:300] + bad + events[300:]
    write_scenario(folder, mixed, raw_lines=[b"{not json"], **options)
    return load_scenario(folder)
