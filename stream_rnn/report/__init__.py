"""Self-contained HTML reports of scenario replays (inline SVG charts, no network)."""

from __future__ import annotations

from stream_rnn.report.page import choose_keys, render_report, write_report

__all__ = ["choose_keys", "render_report", "write_report"]
