"""A deterministic process plant: production lines of pumps, motors and tanks whose
sensors follow the line's load, with labelled incidents of every kind.

Each line runs a production schedule (day shifts, quieter nights, slow weekends) with a
slow random wander; every sensor reads its equipment's response to that load in its own
unit and scale (pressure in bar, flow in m3/h, vibration in mm/s, motor current in A,
speed in rpm, temperatures in degrees C, tank level in %), lagged where physics lags
(temperatures), plus ambient temperature where it matters, noise and the instrument's
resolution. Sensors of one line move together, which is what makes a correlated failure
(a pump cavitating, a line tripping) visible across several related keys.

The same arguments always give the same events, value for value.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.io.scenario import Incident

__all__ = ["INCIDENT_KINDS", "Incident", "plant_events", "plant_layout"]

INCIDENT_KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst", "correlated")

#: How many incidents of each kind a plant gets (when it has room for them).
INCIDENT_COUNTS = {"spike": 3, "level_shift": 2, "drift": 2, "stuck": 2, "noise_burst": 2,
                   "correlated": 2}

#: 2024-01-01T00:00:00Z, a Monday: a fixed start keeps recordings identical run to run.
EPOCH_START = 1_704_067_200

# One line's equipment and the sensors on each, in key order.
_EQUIPMENT = (
    ("pump1", ("pressure", "flow", "vibration", "current")),
    ("pump2", ("pressure", "flow", "vibration", "current")),
    ("motor", ("speed", "temperature")),
    ("tank", ("level", "temperature")),
)
SENSORS_PER_LINE = sum(len(sensors) for _, sensors in _EQUIPMENT)

# Instrument resolution per measurement (the value is rounded to it).
_DECIMALS = {"pressure": 2, "flow": 1, "vibration": 2, "current": 1, "speed": 0,
             "temperature": 1, "level": 1}


def plant_layout(n_sensors: int = 48) -> list[tuple[int, str, str]]:
    """``(line, equipment, measurement)`` of each sensor, filling line after line.

    Examples
    --------
    >>> plant_layout(14)[-3:]
    [(1, 'tank', 'temperature'), (2, 'pump1', 'pressure'), (2, 'pump1', 'flow')]
    """
    if n_sensors < 1:
        raise ValueError(f"n_sensors must be at least 1, got {n_sensors}")
    layout = []
    line = 0
    while len(layout) < n_sensors:
        line += 1
        for equipment, measurements in _EQUIPMENT:
            for measurement in measurements:
                if len(layout) < n_sensors:
                    layout.append((line, equipment, measurement))
    return layout


def _key(line: int, equipment: str, measurement: str) -> str:
    return f"L{line}-{equipment}-{measurement}"


def _smooth_step(x: np.ndarray, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x / width))


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) path with marginal standard deviation ``sd``."""
    shocks = rng.standard_normal(n) * sd * math.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    out[0] = rng.standard_normal() * sd
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def _lagged(x: np.ndarray, steps: float) -> np.ndarray:
    """First-order lag (time constant ``steps``), as a thermal mass responds."""
    alpha = 1.0 / (1.0 + steps)
    out = np.empty_like(x)
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = out[i - 1] + alpha * (x[i] - out[i - 1])
    return out


def _line_loads(rng: np.random.Generator, n_lines: int, t_hours: np.ndarray) -> np.ndarray:
    """Each line's load (about 1 on a weekday shift): shifts, weekends, a slow wander."""
    hour = t_hours % 24.0
    weekday = (t_hours // 24.0).astype(int) % 7  # 0 = Monday
    loads = np.empty((n_lines, len(t_hours)))
    for line in range(n_lines):
        start = 6.0 + rng.uniform(-0.75, 0.75)
        stop = 22.0 + rng.uniform(-0.75, 0.75)
        night = rng.uniform(0.45, 0.7)
        day_shift = _smooth_step(hour - start, 0.3) * _smooth_step(stop - hour, 0.3)
        weekend = np.where(weekday == 5, rng.uniform(0.7, 0.85),
                           np.where(weekday == 6, rng.uniform(0.5, 0.65), 1.0))
        wander = _ar1(rng, len(t_hours), 0.995, 0.05)
        loads[line] = (night + (1.0 - night) * day_shift) * weekend + wander
    return loads


def _sensor_model(rng: np.random.Generator, measurement: str) -> dict[str, float]:
    """Base value, load gain, lag (hours), ambient coupling and noise of one sensor."""
    if measurement == "pressure":
        base = rng.uniform(3.0, 9.0)
        return {"base": base * 0.7, "gain": base * 0.3, "lag": 0.0, "ambient": 0.0,
                "noise": rng.uniform(0.02, 0.05)}
    if measurement == "flow":
        base = rng.uniform(80.0, 300.0)
        return {"base": base * 0.4, "gain": base * 0.6, "lag": 0.1, "ambient": 0.0,
                "noise": base * rng.uniform(0.008, 0.02)}
    if measurement == "vibration":
        base = rng.uniform(1.2, 3.0)
        return {"base": base * 0.6, "gain": base * 0.4, "lag": 0.0, "ambient": 0.0,
                "noise": base * rng.uniform(0.04, 0.08)}
    if measurement == "current":
        base = rng.uniform(20.0, 80.0)
        return {"base": base * 0.5, "gain": base * 0.5, "lag": 0.0, "ambient": 0.0,
                "noise": base * rng.uniform(0.005, 0.015)}
    if measurement == "speed":
        base = float(rng.choice([1480.0, 2960.0]))
        return {"base": base * 0.7, "gain": base * 0.3, "lag": 0.0, "ambient": 0.0,
                "noise": rng.uniform(1.5, 4.0)}
    if measurement == "level":
        return {"base": rng.uniform(55.0, 70.0), "gain": -rng.uniform(10.0, 20.0),
                "lag": 0.5, "ambient": 0.0, "noise": rng.uniform(0.2, 0.5)}
    # temperature: motors run hot and follow load slowly; tanks mostly follow ambient
    return {"base": rng.uniform(30.0, 55.0), "gain": rng.uniform(4.0, 15.0),
            "lag": rng.uniform(0.5, 1.5), "ambient": rng.uniform(0.3, 0.9),
            "noise": rng.uniform(0.1, 0.25)}


def _schedule(rng: np.random.Generator, layout: list[tuple[int, str, str]], n_steps: int,
              step_seconds: int) -> list[tuple[str, tuple[int, ...], int, int]]:
    """``(kind, sensors, start_step, end_step)`` of each incident, in the stream's later
    part (models have warmed up), never two at once on the same sensor."""
    per_hour = 3600 / step_seconds
    busy: dict[int, list[tuple[int, int]]] = {}
    first, last = int(n_steps * 0.35), int(n_steps * 0.98)
    equipment: dict[tuple[int, str], list[int]] = {}
    for s, (line, name, _) in enumerate(layout):
        equipment.setdefault((line, name), []).append(s)
    groups = [g for g in equipment.values() if len(g) >= 2]
    plan = []
    for kind in INCIDENT_KINDS:
        for n in range(INCIDENT_COUNTS[kind]):
            if kind == "spike":
                length = int(rng.integers(1, 3))
            elif kind == "level_shift":
                length = int(rng.uniform(3, 10) * per_hour)
            elif kind == "drift":
                length = int(rng.uniform(12, 36) * per_hour)
            elif kind == "stuck":
                length = int(rng.uniform(2, 8) * per_hour)
            elif kind == "noise_burst":
                length = int(rng.uniform(1, 4) * per_hour)
            else:
                length = int(rng.uniform(1, 3) * per_hour)
            length = max(1, min(length, (last - first) // 4))
            for _attempt in range(200):
                start = int(rng.integers(first, max(first + 1, last - length)))
                end = start + length
                if kind != "correlated":
                    sensors: tuple[int, ...] = (int(rng.integers(len(layout))),)
                elif n % 2 == 1:  # a line trip: every sensor of one line
                    line = int(rng.integers(layout[-1][0])) + 1
                    sensors = tuple(s for s, (ln, _, _) in enumerate(layout) if ln == line)
                elif groups:  # one piece of equipment failing: all its sensors
                    sensors = tuple(groups[int(rng.integers(len(groups)))])
                else:
                    break
                margin = int(2 * per_hour)
                if all(end + margin <= a or b + margin <= start
                       for s in sensors for a, b in busy.get(s, [])):
                    for s in sensors:
                        busy.setdefault(s, []).append((start, end))
                    plan.append((kind, sensors, start, end))
                    break
    return plan


def plant_events(
    n_sensors: int = 48, n_steps: int = 2016, step_seconds: int = 300, seed: int = 0
) -> tuple[list[dict], list[Incident]]:
    """Readings of a plant's sensors, time-ordered, in the daemon's input format.

    Each event is ``{"ts", "key", "features": {"value"}, "label"}``: ``key`` names the
    line, equipment and measurement (``L2-pump1-vibration``), ``ts`` is epoch seconds and
    ``label`` is 1 inside an incident on that sensor. Incidents (every kind of
    :data:`INCIDENT_KINDS`, :data:`INCIDENT_COUNTS` times when there is room) fall in
    the later 65% of the stream, so detectors have warmed up:

    - ``spike``: one or two readings 6-12 noise deviations off;
    - ``level_shift``: an offset of 4-7 noise deviations for 3-10 hours (a valve left
      open, then closed);
    - ``drift``: a calibration drift growing to 8-14 noise deviations over 12-36 hours,
      then corrected;
    - ``stuck``: the reading frozen at its last value for 2-8 hours;
    - ``noise_burst``: extra noise of 3-5 deviations for 1-4 hours (a loose connector);
    - ``correlated``: either one piece of equipment failing (a pump cavitating: its
      pressure and flow sag, vibration rises and current hunts; a motor slowing and
      overheating; a tank leaking) or a whole line tripping to a low load for 1-3 hours;
      every sensor of the equipment or line is labelled.

    Returns the events and the incidents.

    Examples
    --------
    >>> events, incidents = plant_events(n_sensors=12, n_steps=2016, seed=1)
    >>> len(events), events[0]["key"], events[0]["features"]
    (24192, 'L1-pump1-pressure', {'value': ...})
    >>> sorted({i.kind for i in incidents}), len(incidents)
    (['correlated', 'drift', 'level_shift', 'noise_burst', 'spike', 'stuck'], 13)
    """
    if n_steps < 1 or step_seconds < 1:
        raise ValueError("n_steps and step_seconds must be positive")
    rng = np.random.default_rng(seed)
    layout = plant_layout(n_sensors)
    n_lines = layout[-1][0]
    t_hours = np.arange(n_steps) * step_seconds / 3600.0
    loads = _line_loads(rng, n_lines, t_hours)
    ambient = (8.0 + 5.0 * np.sin(2 * math.pi * (t_hours - 9.0) / 24.0)
               + _ar1(rng, n_steps, 0.998, 3.0))
    models = [_sensor_model(rng, measurement) for _, _, measurement in layout]
    plan = _schedule(rng, layout, n_steps, step_seconds)

    # A line trip changes the load itself, so every sensor of the line responds in kind.
    for kind, sensors, start, end in plan:
        if kind == "correlated" and len({layout[s][0] for s in sensors}) == 1 and len(
                sensors) > len(_EQUIPMENT[0][1]):
            line = layout[sensors[0]][0] - 1
            span = end - start
            dip = rng.uniform(0.55, 0.8) * np.sin(np.linspace(0, math.pi, span + 2)[1:-1])
            loads[line, start:end] = loads[line, start:end] * (1.0 - dip) + 0.1 * dip

    per_hour = 3600 / step_seconds
    values = np.empty((len(layout), n_steps))
    noise = np.empty(len(layout))
    for s, ((line, _, measurement), m) in enumerate(zip(layout, models, strict=True)):
        load = loads[line - 1]
        if m["lag"] > 0:
            load = _lagged(load, m["lag"] * per_hour)
        v = m["base"] + m["gain"] * load + m["ambient"] * ambient
        if measurement == "level":
            v = v + _ar1(rng, n_steps, 0.99, 3.0)
        if measurement == "vibration":
            v = v * np.exp(rng.standard_normal(n_steps) * m["noise"] / m["base"] / 2.0)
        v = v + m["noise"] * rng.standard_normal(n_steps)
        values[s] = v
        noise[s] = m["noise"]

    labels = np.zeros((len(layout), n_steps), dtype=np.int8)
    incidents = []
    for kind, sensors, start, end in plan:
        span = end - start
        sign = float(rng.choice([-1.0, 1.0]))
        for s in sensors:
            sd = noise[s]
            if kind == "spike":
                values[s, start:end] += sign * rng.uniform(6, 12) * sd
            elif kind == "level_shift":
                values[s, start:end] += sign * rng.uniform(4, 7) * sd
            elif kind == "drift":
                values[s, start:end] += sign * np.linspace(0, rng.uniform(8, 14) * sd, span)
            elif kind == "stuck":
                values[s, start:end] = values[s, start - 1] if start else values[s, 0]
            elif kind == "noise_burst":
                values[s, start:end] += rng.uniform(3, 5) * sd * rng.standard_normal(span)
            elif len(sensors) <= len(_EQUIPMENT[0][1]):
                # Cavitation: the pump loses head and flow, shakes, and its current hunts;
                # a failing motor slows and overheats; a leaking tank loses level.
                onset = np.minimum(1.0, np.linspace(0, 4, span))
                measurement = layout[s][2]
                effect = {"pressure": -5.0, "flow": -4.0, "vibration": 8.0, "current": -3.0,
                          "speed": -6.0, "temperature": 10.0, "level": -6.0}[measurement]
                values[s, start:end] += onset * effect * sd
                values[s, start:end] += onset * 2.0 * sd * rng.standard_normal(span)
            labels[s, start:end] = 1
        incidents.append(Incident(
            kind, tuple(_key(*layout[s]) for s in sensors),
            EPOCH_START + start * step_seconds, EPOCH_START + (end - 1) * step_seconds))
    incidents.sort(key=lambda inc: (inc.start, inc.kind, inc.keys))

    names = [_key(*entry) for entry in layout]
    decimals = [_DECIMALS[measurement] for _, _, measurement in layout]
    rounded = [np.round(values[s], decimals[s]).tolist() for s in range(len(layout))]
    label_rows = labels.tolist()
    events = []
    for step in range(n_steps):
        ts = EPOCH_START + step * step_seconds
        for s, name in enumerate(names):
            value = rounded[s][step]
            events.append({
                "ts": ts,
                "key": name,
                "features": {"value": int(value) if decimals[s] == 0 else value},
                "label": label_rows[s][step],
            })
    return events, incidents
