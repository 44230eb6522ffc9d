"""A deterministic multi-sensor plant: daily and weekly cycles, noise, labelled incidents.

Used to record the bundled sensor scenario and to test detectors on known incidents. The
same seed always gives the same events, byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Incident", "plant_events", "INCIDENT_KINDS"]

INCIDENT_KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst", "correlated")

#: 2024-01-01T00:00:00Z: a fixed start keeps recordings identical run to run.
EPOCH_START = 1_704_067_200


@dataclass(frozen=True)
class Incident:
    """A labelled anomaly: ``kind`` on ``sensors`` over steps ``[start, end)``."""

    kind: str
    sensors: tuple[int, ...]
    start: int
    end: int


def _schedule(rng: np.random.Generator, n_sensors: int, n_steps: int) -> list[Incident]:
    """One incident of each kind, spread over the second half so models have warmed up."""
    incidents = []
    slots = np.linspace(n_steps * 0.4, n_steps * 0.95, len(INCIDENT_KINDS) + 1).astype(int)
    for i, kind in enumerate(INCIDENT_KINDS):
        start = int(rng.integers(slots[i], slots[i + 1] - 24))
        if kind == "spike":
            length = 1
        elif kind == "drift":
            length = int(slots[i + 1] - start)
        else:
            length = int(rng.integers(12, 36))
        if kind == "correlated":
            group = rng.choice(n_sensors, size=max(2, n_sensors // 4), replace=False)
            sensors = tuple(sorted(int(s) for s in group))
        else:
            sensors = (int(rng.integers(n_sensors)),)
        incidents.append(Incident(kind, sensors, start, min(n_steps, start + length)))
    return incidents


def plant_events(
    n_sensors: int = 12, n_steps: int = 2016, step_seconds: int = 300, seed: int = 0
) -> tuple[list[dict], list[Incident]]:
    """Events of a plant, time-ordered, in the daemon's input format.

    Each event is ``{"ts", "key", "id", "features": {"value"}, "label"}`` with ``label`` 1
    inside an incident on that sensor. Returns the events and the incidents.

    Examples
    --------
    >>> events, incidents = plant_events(n_sensors=3, n_steps=400, seed=1)
    >>> len(events), sorted({e["key"] for e in events})
    (1200, ['sensor-00', 'sensor-01', 'sensor-02'])
    >>> [i.kind for i in incidents][:3]
    ['spike', 'level_shift', 'drift']
    """
    rng = np.random.default_rng(seed)
    base = rng.uniform(20, 80, n_sensors)
    daily = rng.uniform(0.5, 8.0, n_sensors)
    weekly = rng.uniform(0.0, 3.0, n_sensors)
    noise = rng.uniform(0.2, 1.5, n_sensors)
    phase = rng.uniform(0, 2 * math.pi, n_sensors)
    steps_per_day = 86_400 // step_seconds
    t = np.arange(n_steps)
    values = (
        base[:, None]
        + daily[:, None] * np.sin(2 * math.pi * t[None, :] / steps_per_day + phase[:, None])
        + weekly[:, None] * np.sin(2 * math.pi * t[None, :] / (7 * steps_per_day))
        + noise[:, None] * rng.standard_normal((n_sensors, n_steps))
    )
    labels = np.zeros((n_sensors, n_steps), dtype=np.int8)
    incidents = _schedule(rng, n_sensors, n_steps)
    for inc in incidents:
        for s in inc.sensors:
            sl = slice(inc.start, inc.end)
            span = inc.end - inc.start
            if inc.kind == "spike":
                values[s, sl] += 8 * (noise[s] + daily[s]) * rng.choice([-1, 1])
            elif inc.kind == "level_shift":
                values[s, inc.start :] += 6 * noise[s] + daily[s]
            elif inc.kind == "drift":
                values[s, sl] += np.linspace(0, 10 * noise[s] + 2 * daily[s], span)
            elif inc.kind == "stuck":
                values[s, sl] = values[s, inc.start]
            elif inc.kind == "noise_burst":
                values[s, sl] += 6 * noise[s] * rng.standard_normal(span)
            else:  # correlated failure: the group sags together
                values[s, sl] -= (4 * noise[s] + daily[s]) * np.hanning(span + 2)[1:-1] * 2
            labels[s, sl] = 1
    events = []
    for step in range(n_steps):
        ts = EPOCH_START + step * step_seconds
        for s in range(n_sensors):
            events.append({
                "ts": ts,
                "key": f"sensor-{s:02d}",
                "id": f"plant-{seed}-{step}-{s}",
                "features": {"value": round(float(values[s, step]), 4)},
                "label": int(labels[s, step]),
            })
    return events, incidents


def iter_plant(**kwargs: int) -> Iterator[dict]:
    """Events of :func:`plant_events`, one at a time."""
    events, _ = plant_events(**kwargs)
    yield from events
