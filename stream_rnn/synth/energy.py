"""A deterministic hourly electricity-demand stream for several regions, with the
temperature that drives it and a few labelled outages.

Demand follows the calendar (a weekday shape with morning and evening peaks, lower and
later weekends, holidays that look like Sundays), heating below and cooling above a
comfort band of temperatures, a slow economic wander and autocorrelated noise. Each
region has its own size, climate and sensitivity; weather is partly shared between
regions, as fronts cross a country. Temperature is reported with every reading, so a
forecaster can use it as a covariate (it is the observed temperature of the same hour,
as in day-ahead practice with a good weather forecast).

The same arguments always give the same events, value for value.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.io.scenario import Incident

__all__ = ["HOLIDAYS", "Incident", "REGIONS", "energy_events"]

#: 2023-01-01T00:00:00Z, a Sunday.
EPOCH_START = 1_672_531_200

REGIONS = ("north", "south", "east", "west", "coast", "capital")

#: Public holidays of 2023 (day of year, 0-based): New Year, Good Friday, Easter Monday,
#: Labour Day, Ascension, Whit Monday, two Christmas days; they repeat yearly here.
HOLIDAYS = frozenset({0, 96, 99, 120, 137, 148, 358, 359})

# Relative demand by hour (0..23) on weekdays and weekends: a morning ramp and an evening
# peak on workdays; later, flatter weekends.
_WEEKDAY = np.array([0.62, 0.58, 0.56, 0.56, 0.58, 0.66, 0.80, 0.95, 1.02, 1.04, 1.04, 1.03,
                     1.02, 1.01, 1.00, 0.99, 1.01, 1.08, 1.14, 1.12, 1.04, 0.94, 0.82, 0.70])
_WEEKEND = np.array([0.64, 0.59, 0.56, 0.55, 0.55, 0.57, 0.62, 0.69, 0.77, 0.84, 0.88, 0.90,
                     0.90, 0.87, 0.84, 0.83, 0.86, 0.94, 1.01, 1.00, 0.95, 0.88, 0.79, 0.70])


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    out = np.empty_like(shocks)
    out[0] = shocks[0] / math.sqrt(1.0 - phi * phi)
    for i in range(1, len(shocks)):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def energy_events(
    n_regions: int = 6, days: int = 364, seed: int = 0, outages: int = 4
) -> tuple[list[dict], list[Incident]]:
    """Hourly demand (MW) and temperature (degrees C) per region, time-ordered.

    Each event is ``{"ts", "key", "features": {"demand", "temperature"}, "label"}``:
    ``key`` is the region, ``ts`` epoch seconds on the hour, ``label`` 1 during an outage.
    Outages (a storm or a grid fault taking 25-60% of a region's load off for 2-10
    hours) fall after the first quarter of the stream; they are incidents to shade, not
    the main measure, which is how well demand is forecast.

    Returns the events and the incidents.

    Examples
    --------
    >>> events, incidents = energy_events(n_regions=2, days=60, seed=1, outages=1)
    >>> len(events), events[0]["key"], sorted(events[0]["features"])
    (2880, 'north', ['demand', 'temperature'])
    >>> [i.kind for i in incidents]
    ['outage']
    """
    if not 1 <= n_regions <= len(REGIONS):
        raise ValueError(f"n_regions must be 1..{len(REGIONS)}, got {n_regions}")
    if days < 8:
        raise ValueError(f"days must be at least 8, got {days}")
    rng = np.random.default_rng(seed)
    hours = days * 24
    t = np.arange(hours)
    hour = t % 24
    day = t // 24
    doy = day % 365
    weekday = (day + 6) % 7  # 0 = Monday; EPOCH_START is a Sunday
    restday = (weekday >= 5) | np.isin(doy, sorted(HOLIDAYS))
    shape = np.where(restday, _WEEKEND[hour], _WEEKDAY[hour])

    # Weather: a shared front plus each region's own, days-long persistence.
    shared = _ar1(rng.standard_normal(hours) * 0.35, 0.985)
    base_mw = rng.uniform(800.0, 6000.0, n_regions)
    demand = np.empty((n_regions, hours))
    temperature = np.empty((n_regions, hours))
    for r in range(n_regions):
        mean_temp = rng.uniform(6.0, 16.0)
        seasonal = rng.uniform(6.0, 11.0)
        diurnal = rng.uniform(3.0, 6.0)
        own = _ar1(rng.standard_normal(hours) * 0.25, 0.985)
        temp = (mean_temp - seasonal * np.cos(2 * math.pi * (doy - 15) / 365.0)
                - diurnal * np.cos(2 * math.pi * (hour - 3) / 24.0) + shared + own)
        temperature[r] = temp
        # Buildings respond to the last day's temperature more than to this hour's.
        felt = np.convolve(temp, np.full(12, 1 / 12), mode="full")[:hours]
        felt[:11] = temp[:11]
        heating = rng.uniform(0.010, 0.025) * np.maximum(0.0, 15.0 - felt)
        cooling = rng.uniform(0.012, 0.035) * np.maximum(0.0, temp - 22.0)
        wander = _ar1(rng.standard_normal(hours) * 0.002, 0.999)
        noise = _ar1(rng.standard_normal(hours) * 0.012, 0.7)
        demand[r] = base_mw[r] * (shape * (1.0 + heating + cooling) + wander + noise)

    labels = np.zeros((n_regions, hours), dtype=np.int8)
    incidents = []
    for _ in range(outages):
        length = int(rng.integers(2, 11))
        for _attempt in range(100):  # one outage at a time in a region
            r = int(rng.integers(n_regions))
            start = int(rng.integers(hours // 4, hours - length))
            if not labels[r, max(0, start - 24):start + length + 24].any():
                break
        lost = rng.uniform(0.25, 0.6)
        recovery = np.minimum(1.0, np.linspace(1.3, 0.2, length))
        demand[r, start:start + length] *= 1.0 - lost * recovery
        labels[r, start:start + length] = 1
        incidents.append(Incident("outage", (REGIONS[r],), EPOCH_START + start * 3600,
                                  EPOCH_START + (start + length - 1) * 3600))
    incidents.sort(key=lambda inc: (inc.start, inc.keys))

    demand_rows = np.round(demand, 1).tolist()
    temp_rows = np.round(temperature, 1).tolist()
    label_rows = labels.tolist()
    events = []
    for h in range(hours):
        ts = EPOCH_START + h * 3600
        for r in range(n_regions):
            events.append({
                "ts": ts,
                "key": REGIONS[r],
                "features": {"demand": demand_rows[r][h], "temperature": temp_rows[r][h]},
                "label": label_rows[r][h],
            })
    return events, incidents
