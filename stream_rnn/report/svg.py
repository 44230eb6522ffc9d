"""Inline SVG line charts: downsampling that keeps spikes, axes with readable ticks.

Every string that reaches the markup goes through :func:`esc`; numbers are formatted
here, so nothing from a scenario can open a tag or an attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape

import numpy as np

__all__ = [
    "Chart", "esc", "envelope", "finite_range", "minmax_indices", "nice_ticks", "time_formatter",
]


def esc(text: object) -> str:
    """``text`` safe inside an element or a quoted attribute."""
    return escape(str(text), quote=True)


def minmax_indices(y: np.ndarray, buckets: int) -> np.ndarray:
    """Indices of the smallest and largest finite value of each of ``buckets`` equal runs
    of ``y``, in order: a drawable subset that keeps every spike.

    Examples
    --------
    >>> y = np.zeros(1000); y[517] = 9.0
    >>> idx = minmax_indices(y, 10)
    >>> bool(517 in idx), len(idx) <= 20
    (True, True)
    """
    n = int(y.shape[0])
    if n <= 2 * buckets:
        return np.flatnonzero(np.isfinite(y))
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep: list[int] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        part = y[lo:hi]
        ok = np.isfinite(part)
        if not ok.any():
            continue
        masked_lo = np.where(ok, part, np.inf)
        masked_hi = np.where(ok, part, -np.inf)
        a, b = lo + int(np.argmin(masked_lo)), lo + int(np.argmax(masked_hi))
        keep.extend(sorted({a, b}))
    return np.asarray(keep, dtype=np.int64)


def envelope(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, buckets: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A band reduced to ``buckets`` points: each bucket's lowest lower and highest upper
    bound at its middle time (buckets without a finite bound are left out)."""
    n = int(x.shape[0])
    if n <= buckets:
        ok = np.isfinite(lower) & np.isfinite(upper)
        return x[ok], lower[ok], upper[ok]
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    xs, los, his = [], [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        lo, hi = lower[a:b], upper[a:b]
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            xs.append(float(np.mean(x[a:b][ok])))
            los.append(float(np.min(lo[ok])))
            his.append(float(np.max(hi[ok])))
    return np.asarray(xs), np.asarray(los), np.asarray(his)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]``.

    Examples
    --------
    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def time_formatter(lo: float, hi: float) -> Callable[[float], str]:
    """Tick labels for epoch seconds: dates over long spans, clock times over short ones."""
    span = hi - lo
    fmt = "%m-%d" if span > 4 * 86_400 else ("%m-%d %H:%M" if span > 3_600 else "%H:%M:%S")
    return lambda t: datetime.fromtimestamp(t, UTC).strftime(fmt)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.4g}"


class Chart:
    """One SVG chart with a shared x axis: lines, bands, shaded spans, horizontal rules."""

    def __init__(self, title: str, x_range: tuple[float, float], y_range: tuple[float, float],
                 *, kind: str, width: int = 1160, height: int = 200, key: str | None = None,
                 x_format: Callable[[float], str] | None = None) -> None:
        self.title = title
        self.kind = kind
        self.key = key
        self.width = width
        self.height = height
        self.left, self.right, self.top, self.bottom = 70, 16, 26, 26
        x0, x1 = x_range
        if not x1 > x0:
            x0, x1 = x0 - 1.0, x0 + 1.0
        y0, y1 = y_range
        if not (math.isfinite(y0) and math.isfinite(y1)):
            y0, y1 = 0.0, 1.0
        if not y1 > y0:
            pad = abs(y0) * 0.05 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.x_format = x_format or _number
        self.layers: list[str] = []
        self.legend: list[tuple[str, str]] = []

    # Pixel coordinates.
    def px(self, x: np.ndarray | float) -> np.ndarray:
        inner = self.width - self.left - self.right
        return self.left + (np.asarray(x, dtype=np.float64) - self.x0) / (self.x1 - self.x0) * inner

    def py(self, y: np.ndarray | float) -> np.ndarray:
        inner = self.height - self.top - self.bottom
        y = np.clip(np.asarray(y, dtype=np.float64), self.y0, self.y1)
        return self.top + (self.y1 - y) / (self.y1 - self.y0) * inner

    @staticmethod
    def _points(px: np.ndarray, py: np.ndarray) -> str:
        return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px.tolist(), py.tolist(), strict=True))

    def line(self, x: np.ndarray, y: np.ndarray, css: str, label: str) -> None:
        """A polyline through the finite points (gaps close up)."""
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() == 0:
            return
        pts = self._points(self.px(x[ok]), self.py(y[ok]))
        self.layers.append(f'<polyline class="series {esc(css)}" points="{pts}"/>')
        self.legend.append((css, label))

    def band(self, x: np.ndarray, lower: np.ndarray, upper: np.ndarray, css: str,
             label: str) -> None:
        """A filled area between ``lower`` and ``upper``."""
        if x.size == 0:
            return
        px = self.px(x)
        top = self._points(px, self.py(upper))
        bottom = self._points(px[::-1], self.py(lower[::-1]))
        self.layers.append(f'<path class="band {esc(css)}" d="M{top} L{bottom} Z"/>')
        self.legend.append((css, label))

    def span(self, start: float, end: float, css: str, label: str) -> None:
        """A shaded vertical strip from ``start`` to ``end`` (at least 2 px wide)."""
        a, b = float(self.px(start)), float(self.px(end))
        if b < self.left or a > self.width - self.right:
            return
        width = max(2.0, b - a)
        height = self.height - self.top - self.bottom
        self.layers.insert(0, f'<rect class="{esc(css)}" x="{a - (width - (b - a)) / 2:.1f}" '
                              f'y="{self.top}" width="{width:.1f}" height="{height}"/>')
        if (css, label) not in self.legend:
            self.legend.append((css, label))

    def rule(self, y: float, css: str, label: str) -> None:
        """A horizontal line at ``y`` across the plot."""
        py = float(self.py(y))
        self.layers.append(
            f'<line class="{esc(css)}" x1="{self.left}" x2="{self.width - self.right}" '
            f'y1="{py:.1f}" y2="{py:.1f}" data-value="{y:.6g}"/>')
        self.legend.append((css, label))

    def marks(self, x: np.ndarray, css: str, label: str) -> None:
        """Short ticks along the top edge at each distinct pixel column of ``x``."""
        if x.size == 0:
            return
        columns = np.unique(np.round(self.px(x)))
        ticks = "".join(f"M{c:.0f},{self.top}v6" for c in columns.tolist())
        self.layers.append(f'<path class="{esc(css)}" d="{ticks}"/>')
        self.legend.append((css, label))

    def _axes(self) -> str:
        parts = []
        right = self.width - self.right
        bottom = self.height - self.bottom
        for t in nice_ticks(self.y0, self.y1, 4):
            y = float(self.py(t))
            parts.append(f'<line class="grid" x1="{self.left}" x2="{right}" y1="{y:.1f}" '
                         f'y2="{y:.1f}"/><text class="tick" x="{self.left - 6}" y="{y + 4:.1f}" '
                         f'text-anchor="end">{esc(_number(t))}</text>')
        for t in np.linspace(self.x0, self.x1, 6).tolist():
            x = float(self.px(t))
            parts.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" '
                         f'text-anchor="middle">{esc(self.x_format(t))}</text>')
        parts.append(f'<rect class="frame" x="{self.left}" y="{self.top}" '
                     f'width="{right - self.left}" height="{bottom - self.top}"/>')
        return "".join(parts)

    def render(self) -> str:
        """The chart as an ``<svg>`` element with its legend."""
        legend = "".join(f'<span class="legend-item"><i class="swatch {esc(css)}"></i>'
                         f"{esc(label)}</span>" for css, label in self.legend)
        key = f' data-key="{esc(self.key)}"' if self.key is not None else ""
        return (
            f'<figure class="chart-box"><figcaption>{esc(self.title)}'
            f'<span class="legend">{legend}</span></figcaption>'
            f'<svg class="chart" data-chart="{esc(self.kind)}"{key} '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
            f'height="{self.height}" data-x0="{self.x0!r}" data-x1="{self.x1!r}" '
            f'data-y0="{self.y0!r}" data-y1="{self.y1!r}" data-left="{self.left}" '
            f'data-right="{self.width - self.right}" data-top="{self.top}" '
            f'data-bottom="{self.height - self.bottom}" role="img">'
            f"<title>{esc(self.title)}</title>{self._axes()}{''.join(self.layers)}</svg>"
            f'<div class="readout" aria-live="polite"></div></figure>'
        )


def finite_range(*arrays: Sequence[float] | np.ndarray, pad: float = 0.05
                 ) -> tuple[float, float]:
    """The smallest and largest finite value over ``arrays``, padded by ``pad`` of the span."""
    values = [np.asarray(a, dtype=np.float64) for a in arrays]
    values = [v[np.isfinite(v)] for v in values if v.size]
    values = [v for v in values if v.size]
    if not values:
        return 0.0, 1.0
    lo = float(min(v.min() for v in values))
    hi = float(max(v.max() for v in values))
    margin = (hi - lo) * pad
    return lo - margin, hi + margin
