"""What every generator returns next to its events: the incidents it planted.

An incident is a labelled window: its ``kind``, the entity keys it touched and the event
times from ``start`` to ``end`` (epoch seconds, both included) it covers. Scenario
recordings store the list as ``incidents.json`` so replays can shade the windows and time
detection per incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Incident"]


@dataclass(frozen=True)
class Incident:
    """A labelled anomaly: ``kind`` on ``keys`` from ``start`` to ``end`` (epoch seconds of
    its first and last labelled event, both included).

    Examples
    --------
    >>> spike = Incident("spike", ("L1-pump1-pressure",), 1_704_067_200, 1_704_067_500)
    >>> spike.to_json()
    {'kind': 'spike', 'keys': ['L1-pump1-pressure'], 'start': 1704067200, 'end': 1704067500}
    >>> spike.covers("L1-pump1-pressure", 1_704_067_500)
    True
    >>> spike.covers("L1-pump1-flow", 1_704_067_500)
    False
    """

    kind: str
    keys: tuple[str, ...]
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError(f"{self.kind} incident touches no key")
        if self.end < self.start:
            raise ValueError(f"{self.kind} incident ends ({self.end}) before it starts "
                             f"({self.start})")

    def covers(self, key: str, ts: float) -> bool:
        """Whether an event of ``key`` at time ``ts`` falls inside this incident."""
        return key in self.keys and self.start <= ts <= self.end

    def to_json(self) -> dict[str, Any]:
        """The incident as plain JSON values (the ``incidents.json`` record)."""
        return {"kind": self.kind, "keys": list(self.keys), "start": self.start,
                "end": self.end}
