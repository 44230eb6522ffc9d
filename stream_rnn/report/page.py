"""``report.html``: one self-contained page (inline CSS, SVG and script) for a replay.

The page opens from disk anywhere, offline: no fonts, scripts or styles are fetched.
Charts are drawn here as SVG, so the page reads the same with scripts disabled; the small
inline script only adds a cursor that reads values off the charts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream_rnn.replay import ReplayResult
from stream_rnn.report.svg import (
    Chart,
    envelope,
    esc,
    finite_range,
    minmax_indices,
    time_formatter,
)

__all__ = ["choose_keys", "render_report", "write_report"]

#: Features of one key drawn against their forecast (the rest are listed, not drawn).
MAX_FEATURES_PER_KEY = 3
# Scalars shown first in the summary table, in this order; other scalars follow.
_LEADING = (
    "events", "records_read", "events_per_second", "seconds", "dead_letter_total", "flags",
    "flag_rate", "threshold", "keys", "labelled_events", "positive_labels", "roc_auc",
    "average_precision", "precision", "recall", "f1", "incidents", "incidents_detected",
    "incident_detection_rate", "mean_detection_delay_seconds", "max_detection_delay_seconds",
    "mae", "rmse", "seasonal_naive_mae", "seasonal_naive_rmse", "mae_ratio_vs_seasonal_naive",
)

_CSS = """
:root { --ink:#1d2430; --muted:#5b6678; --line:#d5dbe4; --signal:#1f5fbf;
  --pred:#e07b00; --band:rgba(224,123,0,.18); --score:#6b2fb3; --thr:#c62828;
  --label:rgba(220,40,40,.13); --ok:#2e7d32; --bad:#c62828; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system,
  "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
  border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 4px; }
.description { white-space: pre-wrap; color: var(--muted); max-width: 1160px; }
.tables { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; }
td.num { text-align: right; } td.when, td.status { white-space: nowrap; }
.pass { color: var(--ok); font-weight: 600; } .fail { color: var(--bad); font-weight: 600; }
figure.chart-box { margin: 8px 0 16px; position: relative; width: 1160px; }
figcaption { font-weight: 600; margin-bottom: 2px; }
.legend { font-weight: 400; color: var(--muted); margin-left: 16px; }
.legend-item { margin-right: 14px; white-space: nowrap; }
.swatch { display: inline-block; width: 14px; height: 8px; margin-right: 4px;
  vertical-align: middle; border-radius: 2px; }
svg.chart { display: block; background: #fff; overflow: visible; }
.frame { fill: none; stroke: #9aa5b5; stroke-width: 1; }
.grid { stroke: #eef1f5; stroke-width: 1; }
.tick { font-size: 11px; fill: var(--muted); }
.series { fill: none; stroke-width: 1.3; stroke-linejoin: round; }
.series.signal { stroke: var(--signal); } .swatch.signal { background: var(--signal); }
.series.prediction { stroke: var(--pred); } .swatch.prediction { background: var(--pred); }
.band.spread { fill: var(--band); stroke: none; } .swatch.spread { background: var(--band); }
.series.score { stroke: var(--score); } .swatch.score { background: var(--score); }
.series.loss { stroke: #00796b; } .swatch.loss { background: #00796b; }
.series.auc { stroke: #1f5fbf; } .swatch.auc { background: #1f5fbf; }
.series.ap { stroke: #e07b00; } .swatch.ap { background: #e07b00; }
.series.cp { stroke: #2e7d32; } .swatch.cp { background: #2e7d32; }
.threshold { stroke: var(--thr); stroke-width: 1.2; stroke-dasharray: 5 3; }
.swatch.threshold { background: var(--thr); }
.label-window { fill: var(--label); } .swatch.label-window { background: var(--label); }
.flag-mark { stroke: var(--thr); stroke-width: 1.5; } .swatch.flag-mark { background: var(--thr); }
.cursor { stroke: #333; stroke-width: .8; stroke-dasharray: 2 2; pointer-events: none; }
.readout { position: absolute; top: 0; right: 0; font-size: 12px; color: var(--muted);
  font-variant-numeric: tabular-nums; }
.note { color: var(--muted); font-style: italic; }
"""

# Reads values off a chart under the pointer; every chart carries its own scales.
_SCRIPT = """
(function () {
  "use strict";
  var charts = document.querySelectorAll("svg.chart");
  function num(el, name) { return parseFloat(el.getAttribute("data-" + name)); }
  charts.forEach(function (svg) {
    var ns = "http://www.w3.org/2000/svg";
    var cursor = document.createElementNS(ns, "line");
    cursor.setAttribute("class", "cursor");
    cursor.setAttribute("y1", num(svg, "top")); cursor.setAttribute("y2", num(svg, "bottom"));
    cursor.style.display = "none";
    svg.appendChild(cursor);
    var readout = svg.parentNode.querySelector(".readout");
    var first = svg.querySelector("polyline.series");
    var pts = [];
    if (first) {
      first.getAttribute("points").trim().split(/\\s+/).forEach(function (p) {
        var xy = p.split(","); pts.push([parseFloat(xy[0]), parseFloat(xy[1])]);
      });
    }
    svg.addEventListener("mousemove", function (ev) {
      var box = svg.getBoundingClientRect();
      var x = (ev.clientX - box.left) * svg.viewBox.baseVal.width / box.width;
      var left = num(svg, "left"), right = num(svg, "right");
      if (x < left || x > right) { cursor.style.display = "none"; return; }
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
      cursor.style.display = "";
      if (!pts.length) { return; }
      var best = pts[0];
      pts.forEach(function (p) { if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p; });
      var x0 = num(svg, "x0"), x1 = num(svg, "x1"), y0 = num(svg, "y0"), y1 = num(svg, "y1");
      var top = num(svg, "top"), bottom = num(svg, "bottom");
      var xv = x0 + (best[0] - left) / (right - left) * (x1 - x0);
      var yv = y1 - (best[1] - top) / (bottom - top) * (y1 - y0);
      var when = svg.getAttribute("data-chart") === "loss" || svg.getAttribute("data-chart")
        === "daily" ? xv.toFixed(0) : new Date(xv * 1000).toISOString().replace(".000Z", "Z");
      readout.textContent = when + "  " + yv.toPrecision(4);
    });
    svg.addEventListener("mouseleave", function () { cursor.style.display = "none"; });
  });
  document.documentElement.setAttribute("data-charts-ready", String(charts.length));
})();
"""


def choose_keys(result: ReplayResult, keys: Sequence[str] | None = None, top_keys: int = 6
                ) -> tuple[list[str], list[str]]:
    """The keys to draw and the requested ones that the replay never saw.

    Named ``keys`` win; otherwise the ``top_keys`` keys with the highest score (scores
    saturate near 1, so ties go to the key with more flags, then by name).
    """
    names = result.key_names
    present = set(names)
    if keys:
        return [k for k in keys if k in present], [k for k in keys if k not in present]
    best: dict[str, float] = {}
    flagged: dict[str, int] = {}
    threshold = result.threshold
    for name, score in zip(names, result.score.tolist(), strict=True):
        if score > best.get(name, -1.0):
            best[name] = score
        if score > threshold:
            flagged[name] = flagged.get(name, 0) + 1
    ranked = sorted(best, key=lambda k: (-best[k], -flagged.get(k, 0), k))
    return ranked[:top_keys], []


def _format(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _table(rows: Sequence[tuple[str, Any]], head: Sequence[str]) -> str:
    body = "".join(
        f"<tr><th>{esc(name)}</th><td class=\"num\">{esc(_format(value))}</td></tr>"
        for name, value in rows)
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    def scalar(v: Any) -> bool:
        return v is None or isinstance(v, int | float | str | bool)

    rows = [(name, summary[name]) for name in _LEADING if name in summary]
    rows += [(name, value) for name, value in summary.items()
             if name not in _LEADING and scalar(value) and name not in ("scenario", "task")]
    return rows


def _config_rows(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    config = summary.get("config", {})
    rows = [(f"model.{k}", v) for k, v in config.get("model", {}).items()]
    rows += [(k, v) for k, v in config.items() if k != "model"]
    return rows


def _windows(summary: Mapping[str, Any], key: str) -> list[tuple[float, float]]:
    return [(float(inc["start"]), float(inc["end"])) for inc in summary.get("incident_list", [])
            if key in inc["keys"]]


def _key_charts(result: ReplayResult, summary: Mapping[str, Any], key: str, buckets: int,
                fmt: Any) -> str:
    rows = [i for i, name in enumerate(result.key_names) if name == key]
    x = result.ts[rows]
    span = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    windows = _windows(summary, key)
    features: list[str] = []
    for i in rows:
        for name in result.features[i]:
            if name not in features:
                features.append(name)
    parts = [f'<section class="key" data-key="{esc(key)}"><h3>{esc(key)}</h3>']
    if len(features) > MAX_FEATURES_PER_KEY:
        parts.append(f'<p class="note">Showing {MAX_FEATURES_PER_KEY} of {len(features)} '
                     f'features: {esc(", ".join(features))}</p>')
    for feature in features[:MAX_FEATURES_PER_KEY]:
        y = np.array([result.features[i].get(feature, math.nan) for i in rows])
        mean = np.array([result.prediction[i].get(feature, math.nan) for i in rows])
        std = np.array([result.spread[i].get(feature, math.nan) for i in rows])
        lower, upper = mean - 2 * std, mean + 2 * std
        chart = Chart(f"{key} · {feature}", span, finite_range(y, mean, lower, upper),
                      kind="signal", key=key, x_format=fmt)
        for start, end in windows:
            chart.span(start, end, "label-window", "labelled")
        bx, blo, bhi = envelope(x, lower, upper, buckets)
        chart.band(bx, blo, bhi, "spread", "forecast ±2σ")
        idx = minmax_indices(y, buckets)
        chart.line(x[idx], y[idx], "signal", feature)
        idx = minmax_indices(mean, buckets)
        chart.line(x[idx], mean[idx], "prediction", "forecast")
        parts.append(chart.render())
    score = result.score[rows]
    chart = Chart(f"{key} · anomaly score", span, (0.0, 1.0), kind="score", key=key,
                  x_format=fmt, height=150)
    for start, end in windows:
        chart.span(start, end, "label-window", "labelled")
    idx = minmax_indices(score, buckets)
    chart.line(x[idx], score[idx], "score", "score")
    chart.rule(result.threshold, "threshold", f"threshold {result.threshold:g}")
    chart.marks(x[score > result.threshold], "flag-mark", "flags")
    parts.append(chart.render())
    parts.append("</section>")
    return "".join(parts)


def _loss_chart(result: ReplayResult, buckets: int) -> str:
    samples = [s for s in result.loss if "loss" in s]
    if not samples:
        return '<p class="note">The model reported no training statistics.</p>'
    x = np.array([s["events"] for s in samples])
    y = np.array([s["loss"] for s in samples])
    chart = Chart("Training loss (most recent update) by events replayed",
                  (float(x.min()), float(x.max())), finite_range(y), kind="loss",
                  x_format=lambda v: f"{v:,.0f}")
    idx = minmax_indices(y, buckets)
    chart.line(x[idx], y[idx], "loss", "loss")
    note = ""
    if not np.isfinite(y).any() or not np.any(y[np.isfinite(y)] != 0):
        note = '<p class="note">The model reported no non-zero training loss.</p>'
    return chart.render() + note


def _fraud_chart(summary: Mapping[str, Any]) -> str:
    daily = summary.get("daily") or []
    if not daily:
        return ""
    days = np.array([d["day"] for d in daily], dtype=np.float64)

    def col(name: str) -> np.ndarray:
        return np.array([math.nan if d[name] is None else d[name] for d in daily])

    chart = Chart("Per day: ROC AUC, average precision, card precision@100",
                  (float(days.min()), float(days.max())), (0.0, 1.0), kind="daily",
                  x_format=lambda v: f"day {v:.0f}")
    chart.line(days, col("roc_auc"), "auc", "ROC AUC")
    chart.line(days, col("average_precision"), "ap", "average precision")
    chart.line(days, col("card_precision_at_100"), "cp", "card precision@100")
    return "<h2>Fraud, day by day</h2>" + chart.render()


def _expectations(scenario_expect: Mapping[str, float], failures: Sequence[str] | None,
                  summary: Mapping[str, Any]) -> str:
    if not scenario_expect:
        return ""
    failed = {line.split(":", 1)[0] for line in failures or ()}
    rows = []
    for name, bound in scenario_expect.items():
        ok = name not in failed
        rows.append(f"<tr><th>{esc(name)}</th><td class=\"num\">{esc(_format(bound))}</td>"
                    f"<td class=\"num\">{esc(_format(summary.get(name)))}</td>"
                    f"<td class=\"{'pass' if ok else 'fail'}\">{'met' if ok else 'missed'}</td>"
                    "</tr>")
    return ("<div><h3>Expectations</h3><table><thead><tr><th>metric</th><th>expected</th>"
            f"<th>measured</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "</div>")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _incidents(summary: Mapping[str, Any], fmt: Any) -> str:
    listing = summary.get("incident_list") or []
    if not listing:
        return ""
    rows = []
    for inc in listing:
        delay = inc["delay_seconds"]
        status = f"after {_duration(delay)}" if inc["detected"] else "missed"
        rows.append(f"<tr><td>{esc(inc['kind'])}</td><td>{esc(', '.join(inc['keys']))}</td>"
                    f"<td class=\"when\">{esc(fmt(inc['start']))}</td>"
                    f"<td class=\"when\">{esc(fmt(inc['end']))}</td>"
                    f"<td class=\"status {'pass' if inc['detected'] else 'fail'}\">"
                    f"{esc(status)}</td>"
                    "</tr>")
    source = summary.get("incident_source", "")
    return (f"<h2>Incidents ({esc(source)})</h2><table><thead><tr><th>kind</th><th>keys</th>"
            "<th>start (UTC)</th><th>end (UTC)</th><th>detected</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def render_report(result: ReplayResult, summary: Mapping[str, Any], *,
                  keys: Sequence[str] | None = None, top_keys: int = 6,
                  failures: Sequence[str] | None = None, buckets: int = 600) -> str:
    """The report page as one HTML string.

    Parameters
    ----------
    result, summary
        A replay and its :func:`stream_rnn.replay.summarize`.
    keys
        Keys to chart; default the ``top_keys`` keys with the highest scores.
    failures
        Failed expectations, to mark them in the expectations table.
    buckets
        Long series are drawn from this many time buckets (each bucket's minimum and
        maximum, so spikes survive).
    """
    scenario = result.scenario
    chosen, missing = choose_keys(result, keys, top_keys)
    if result.n_events:
        fmt = time_formatter(float(result.ts.min()), float(result.ts.max()))
    else:
        fmt = time_formatter(0.0, 1.0)
    dead = summary.get("dead_letters") or {}
    dead_table = (_table(sorted(dead.items()), ("dead letters", "count"))
                  if dead else "")
    body = [
        f"<h1>Replay: {esc(scenario.name)}</h1>",
        f'<p class="description">{esc(scenario.description)}</p>',
        f"<p>Task <strong>{esc(scenario.task)}</strong>, {_format(result.n_events)} events over "
        f"{_format(len(set(result.keys)))} keys.</p>",
        "<h2>Summary and configuration</h2><div class=\"tables\">",
        _table(_summary_rows(summary), ("metric", "value")),
        "<div>",
        _expectations(scenario.expect, failures, summary),
        dead_table,
        "<h3>Configuration</h3>",
        _table(_config_rows(summary), ("setting", "value")),
        "</div></div>",
        _incidents(summary, _utc),
        _fraud_chart(summary),
        "<h2>Keys</h2>",
    ]
    if missing:
        body.append(f'<p class="note">Not in this replay: {esc(", ".join(missing))}</p>')
    if keys:
        body.append('<p class="note">Keys chosen by name.</p>')
    else:
        body.append(f'<p class="note">The {len(chosen)} keys with the highest scores.</p>')
    body += [_key_charts(result, summary, key, buckets, fmt) for key in chosen]
    body += ["<h2>Training</h2>", _loss_chart(result, buckets)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>Replay: {esc(scenario.name)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}<script>{_SCRIPT}</script></body></html>\n"
    )


def write_report(path: str | Path, result: ReplayResult, summary: Mapping[str, Any],
                 **options: Any) -> None:
    """Write :func:`render_report` to ``path`` (UTF-8)."""
    Path(path).write_text(render_report(result, summary, **options), encoding="utf-8")
