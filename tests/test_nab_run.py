"""``stream-rnn nab``: one result file per data file, same rows, then ``nab-score`` on it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stream_rnn.cli import main

NAB = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"
PROFILES = {
    "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11,
                                "tnWeight": 1.0}},
    "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22,
                                          "tnWeight": 1.0}},
}


def _write_csv(path: Path, stamps: list[str], values: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value"])
        writer.writerows(zip(stamps, values, strict=True))


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two small files in NAB's layout: a daily cycle with an incident on its fifth day (the
    detector's warm-up holds back its first three days) and a window around it, and an
    irregularly sampled file without anomalies."""
    root = tmp_path / "nab"
    rng = np.random.default_rng(0)
    start = np.datetime64("2024-01-01T00:00:00")
    n = 1300
    t = np.arange(n)
    values = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.5, n)
    values[1100:1106] += 30
    stamps = [str(start + np.timedelta64(300 * int(i), "s")).replace("T", " ") for i in t]
    _write_csv(root / "data" / "demo" / "incident.csv", stamps, [f"{v:.3f}" for v in values])
    gaps = np.cumsum(rng.integers(60, 600, 500))
    stamps_b = [str(start + np.timedelta64(int(g), "s")).replace("T", " ") for g in gaps]
    _write_csv(root / "data" / "other" / "quiet.csv", stamps_b,
               [str(int(v)) for v in rng.integers(0, 5, 500)])  # quantized readings
    windows = {
        "demo/incident.csv": [[stamps[1060] + ".000000", stamps[1140] + ".000000"]],
        "other/quiet.csv": [],
    }
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    (root / "config" / "profiles.json").write_text(json.dumps(PROFILES))
    return root


def test_nab_writes_every_file_with_the_input_rows(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["nab", "--data", str(corpus), "--out", str(out), "--jobs", "1"]) == 0
    assert "2 files, 1800 rows" in capsys.readouterr().out
    for name in ("demo/incident.csv", "other/quiet.csv"):
        header_in, rows_in = _read_csv(corpus / "data" / name)
        header, rows = _read_csv(out / name)
        assert header == ["timestamp", "value", "anomaly_score"]
        assert [(r["timestamp"], r["value"]) for r in rows] == [
            (r["timestamp"], r["value"]) for r in rows_in]
        scores = np.array([float(r["anomaly_score"]) for r in rows])
        assert scores.min() >= 0.0 and scores.max() <= 1.0
    _, rows = _read_csv(out / "demo" / "incident.csv")
    scores = np.array([float(r["anomaly_score"]) for r in rows])
    assert int(np.argmax(scores)) in range(1100, 1106)
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["incident.csv",
                                                                     "quiet.csv"]


def test_nab_then_nab_score_end_to_end(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["nab", "--data", str(corpus), "--out", str(out), "--jobs", "2"]) == 0
    assert main(["nab-score", "--data", str(corpus), "--results", str(out)]) == 0
    report = json.loads((out / "nab_scores.json").read_text())
    assert report["n_files"] == 2 and report["n_windows"] == 1
    standard = report["profiles"]["standard"]
    assert standard["counts"]["windows_detected"] == 1
    assert standard["score"] > 50


def test_parallel_and_serial_runs_agree(corpus, tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert main(["nab", "--data", str(corpus), "--out", str(serial), "--jobs", "1"]) == 0
    assert main(["nab", "--data", str(corpus), "--out", str(parallel), "--jobs", "2"]) == 0
    for name in ("demo/incident.csv", "other/quiet.csv"):
        assert (serial / name).read_text() == (parallel / name).read_text()


def test_config_file_sets_the_detector(corpus, tmp_path):
    config = tmp_path / "detector.toml"
    config.write_text("[detector]\nn_members = 1\nhidden_size = 8\nseason = 3600.0\n")
    out = tmp_path / "out"
    assert main(["nab", "--data", str(corpus), "--out", str(out), "--config", str(config),
                 "--jobs", "1"]) == 0
    assert (out / "demo" / "incident.csv").is_file()


@pytest.mark.parametrize("content", ["[detector]\nno_such_argument = 1\n", "not toml ["])
def test_bad_config_exits_2(corpus, tmp_path, content, capsys):
    config = tmp_path / "detector.toml"
    config.write_text(content)
    code = main(["nab", "--data", str(corpus), "--out", str(tmp_path / "out"),
                 "--config", str(config)])
    assert code == 2
    assert "stream-rnn nab: error" in capsys.readouterr().err


def test_missing_data_exits_2(tmp_path, capsys):
    assert main(["nab", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "no data/ directory" in capsys.readouterr().err


def test_two_real_nab_files_end_to_end(tmp_path):
    names = ["realKnownCause/rogue_agent_key_hold.csv",
             "artificialNoAnomaly/art_daily_small_noise.csv"]
    root = tmp_path / "nab"
    for name in names:
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, root / "data" / name)
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({name: windows[name] for name in names}))
    (root / "config").mkdir()
    shutil.copy(NAB / "config" / "profiles.json", root / "config" / "profiles.json")
    out = tmp_path / "out"
    assert main(["nab", "--data", str(root), "--out", str(out)]) == 0
    for name in names:
        _, rows_in = _read_csv(root / "data" / name)
        _, rows = _read_csv(out / name)
        assert len(rows) == len(rows_in)
    assert main(["nab-score", "--data", str(root), "--results", str(out)]) == 0
    report = json.loads((out / "nab_scores.json").read_text())
    assert set(report["profiles"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
