"""``report.html`` renders in headless Chromium: a screenshot that is not blank, the chart
elements in the DOM after the page's script ran, and nothing a scenario names can inject
markup."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numba
import numpy as np
import pytest
from replay_support import RunningMeanTask, sensor_events, write_scenario

from stream_rnn.io.scenario import load_scenario
from stream_rnn.replay import replay, summarize
from stream_rnn.report import choose_keys, render_report, write_report

EVIL_KEY = "<img src=x onerror=alert(1)>\"'&"
EVIL_DESCRIPTION = "Pumps </p><script>alert('description')</script> & <b>more</b>"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1280, 2400


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A replay whose busiest key and description are hostile markup, and its report."""
    folder = tmp_path_factory.mktemp("report")
    events, _ = sensor_events(days=1.5)
    for event in events:
        if event["key"] == "b":
            event["key"] = EVIL_KEY
    scenario = load_scenario(write_scenario(folder / "scenario", events,
                                            description=EVIL_DESCRIPTION,
                                            expect={"roc_auc": 0.6}))
    result = replay(scenario, threshold=0.99, task_factory=RunningMeanTask, batch_size=32)
    summary = summarize(result)
    path = folder / "report.html"
    write_report(path, result, summary, top_keys=2)
    return path, result, summary


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    assert binary, "chromium is required (CI installs it)"
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=120, check=True)


# ----------------------------------------------------------------------------- PNG decoding


@numba.njit(cache=False)
def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    pos = 0
    for y in range(height):
        kind = raw[pos]
        pos += 1
        row = np.zeros(stride, dtype=np.int64)
        for x in range(stride):
            value = np.int64(raw[pos + x])
            left = row[x - bpp] if x >= bpp else 0
            up = prev[x]
            corner = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                value += left
            elif kind == 2:
                value += up
            elif kind == 3:
                value += (left + up) // 2
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                value += left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
            row[x] = value & 255
        pos += stride
        for x in range(stride):
            out[y, x] = row[x]
        prev = row
    return out


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG as an (height, width, channels) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 4 if colour == 6 else 3
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    pixels = _unfilter(raw, height, width * channels, channels)
    return pixels.reshape(height, width, channels)


def _near(rgb: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return int(np.all(np.abs(rgb.astype(int) - colour) <= tolerance, axis=-1).sum())


# ----------------------------------------------------------------------------- DOM parsing


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag


def _elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def _classes(attrs: dict[str, str]) -> set[str]:
    return set(attrs.get("class", "").split())


# ----------------------------------------------------------------------------- tests


def test_screenshot_shows_the_charts(report, tmp_path):
    path, _, _ = report
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", path.as_uri(),
              tmp_path=tmp_path)
    pixels = decode_png(shot.read_bytes())
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    rgb = pixels[..., :3]
    non_white = np.any(rgb < 245, axis=-1)
    assert non_white.mean() > 0.02  # text, tables and charts, not an empty page
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # anti-aliased text and lines in several colours
    # The signal (blue), forecast (orange), score (purple) lines and the shaded labelled
    # windows are each visible.
    assert _near(rgb, (0x1F, 0x5F, 0xBF)) > 200
    assert _near(rgb, (0xE0, 0x7B, 0x00)) > 200
    assert _near(rgb, (0x6B, 0x2F, 0xB3)) > 200
    assert _near(rgb, (250, 227, 227), tolerance=6) > 100


def test_dom_after_scripts_has_every_chart_and_no_injected_markup(report, tmp_path):
    path, result, summary = report
    dom = _chromium("--dump-dom", path.as_uri(), tmp_path=tmp_path).stdout.decode("utf-8")
    elements = _elements(dom)
    charts = [attrs for tag, attrs in elements if tag == "svg" and "chart" in _classes(attrs)]
    # The page's script ran and saw every chart.
    root = next(attrs for tag, attrs in elements if tag == "html")
    assert root.get("data-charts-ready") == str(len(charts))
    # Two keys (signal + score each) and the training loss.
    kinds = [c["data-chart"] for c in charts]
    assert sorted(kinds) == ["loss", "score", "score", "signal", "signal"]
    top, _ = choose_keys(result, None, 2)
    assert EVIL_KEY in top
    assert {c["data-key"] for c in charts if "data-key" in c} == set(top)

    polylines = [a for t, a in elements if t == "polyline" and "series" in _classes(a)]
    assert len(polylines) >= 7  # signal + forecast per key, score per key, loss
    assert all(len(a["points"].split()) >= 2 for a in polylines)
    thresholds = [a for t, a in elements if t == "line" and "threshold" in _classes(a)]
    assert len(thresholds) == 2 and all(float(a["data-value"]) == 0.99 for a in thresholds)
    bands = [a for t, a in elements if t == "path" and "band" in _classes(a)]
    assert len(bands) == 2 and all(a["d"].startswith("M") for a in bands)
    windows = [a for t, a in elements if t == "rect" and "label-window" in _classes(a)]
    evil_incidents = [i for i in summary["incident_list"] if EVIL_KEY in i["keys"]]
    assert evil_incidents and len(windows) >= 2 * len(evil_incidents)

    # Hostile names are text: no element came from them, and they read back intact.
    assert not any(tag in ("img", "b") for tag, _ in elements)
    assert sum(1 for tag, _ in elements if tag == "script") == 1
    assert "alert('description')" in dom.replace("&#x27;", "'")
    assert "onerror" not in {name for _, attrs in elements for name in attrs}


def test_report_is_self_contained(report):
    html = report[0].read_text(encoding="utf-8")
    elements = _elements(html)
    # Nothing is fetched: no element with a source, a link or an import.
    assert not [t for t, a in elements if {"src", "href"} & set(a) or t in ("link", "iframe")]
    assert "url(" not in html and "@import" not in html
    assert "default-src 'none'" in html  # and the page forbids it besides


def test_every_embedded_string_is_escaped(tmp_path):
    events, _ = sensor_events(days=0.5)
    for event in events:
        event["key"] = {"a": EVIL_KEY, "b": "</svg><script>x()</script>", "c": "c"}[event["key"]]
    scenario = load_scenario(write_scenario(tmp_path / "s", events, name="a&b<i>",
                                            description=EVIL_DESCRIPTION))
    result = replay(scenario, task_factory=RunningMeanTask)
    html = render_report(result, summarize(result), keys=[EVIL_KEY, "</svg><script>x()</script>",
                                                          "<missing>"])
    for raw in (EVIL_KEY, "</svg><script>x()</script>", "<script>alert", "<b>more", "<i>",
                "<missing>"):
        assert raw not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;" in html
    assert "a&amp;b&lt;i&gt;" in html and "&lt;missing&gt;" in html
    assert html.count("<script>") == 1
