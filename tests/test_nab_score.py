"""NAB scoring: hand-computed cases on tiny corpora, the CLI, and the real dev corpus.

Notation in the comments: S(y) = 2 / (1 + exp(5 y)) - 1 is NAB's scaled sigmoid
(S(-1) = 0.98661, S(-0.5) = 0.84828, S(1/3) = -0.68226, S(4/3) = -0.99746, S(y > 3) = -1).
A row i inside a window [L, R] of W = R - L + 1 rows earns tpWeight * S(-(R - i + 1) / W)
/ S(-1); a flagged row i outside windows costs fpWeight * S(|i - R| / (W - 1)) from the
end R of the previous window, or -fpWeight when no window precedes it. The probationary
period of an n-row file is floor(0.15 * min(n, 5000)) rows: 3 rows for n = 20, 6 for n = 40.
Standard weights: tp 1, fp 0.11, fn 1; reward_low_FP_rate: fp 0.22; reward_low_FN_rate: fn 2.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stream_rnn.commands import nab_score
from stream_rnn.evaluation import nab

NAB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "nab"

PROFILES = {
    "standard": {
        "CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
    },
    "reward_low_FP_rate": {
        "CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}
    },
    "reward_low_FN_rate": {
        "CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}
    },
}

S = nab.scaled_sigmoid


def stamp(row: int) -> str:
    minutes = 5 * row
    return f"2020-01-{1 + minutes // 1440:02d} {minutes // 60 % 24:02d}:{minutes % 60:02d}:00"


def write_data(root: Path, files: dict[str, tuple[int, list[tuple[int, int]]]]) -> Path:
    """NAB-layout data dir; ``files`` maps name -> (rows, [(first_row, last_row), ...])."""
    windows = {}
    for name, (n_rows, spans) in files.items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "timestamp,value\n" + "".join(f"{stamp(i)},{i % 7}\n" for i in range(n_rows))
        )
        # NAB's windows files carry a microsecond suffix on row timestamps.
        windows[name] = [[stamp(a) + ".000000", stamp(b) + ".000000"] for a, b in spans]
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "profiles.json").write_text(json.dumps(PROFILES))
    return root


def write_results(out: Path, data: Path, scores: dict[str, np.ndarray]) -> Path:
    for name, values in scores.items():
        lines = (data / "data" / name).read_text().splitlines()[1:]
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "timestamp,value,anomaly_score\n"
            + "".join(f"{line},{float(v)!r}\n" for line, v in zip(lines, values, strict=True))
        )
    return out


def detections(n_rows: int, flagged: dict[int, float]) -> np.ndarray:
    values = np.zeros(n_rows)
    for row, value in flagged.items():
        values[row] = value
    return values


def score(tmp_path: Path, files, flagged: dict[str, dict[int, float]]) -> dict:
    data = write_data(tmp_path / "nab", files)
    scores = {name: detections(files[name][0], flagged.get(name, {})) for name in files}
    out = write_results(tmp_path / "out", data, scores)
    return nab.score_corpus([data], out)


ONE_WINDOW = {"demo/one.csv": (20, [(8, 11)])}  # W = 4, probation rows 0..2


def test_scaled_sigmoid_and_probation_match_nab():
    assert S(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert S(0.0) == 0.0
    assert S(3.0) == pytest.approx(2 / (1 + math.exp(15)) - 1)
    assert S(3.0001) == -1.0
    # min(floor(0.15 n), 0.15 * 5000)
    assert [nab.probation_length(n) for n in (20, 40, 4032, 5000, 5315)] == [3, 6, 604, 750, 750]


def test_detection_on_first_window_row_earns_tp_weight(tmp_path):
    report = score(tmp_path, ONE_WINDOW, {"demo/one.csv": {8: 1.0}})
    for name, result in report["profiles"].items():
        # y = -(11 - 8 + 1) / 4 = -1, so tpWeight * S(-1) / S(-1) = 1.0 exactly.
        assert result["threshold"] == 1.0
        assert result["raw"] == pytest.approx(1.0)
        # null: the one window missed, -fnWeight; perfect: tpWeight * 1 window.
        fn_weight = PROFILES[name]["CostMatrix"]["fnWeight"]
        assert result["null"] == pytest.approx(-fn_weight)
        assert result["perfect"] == pytest.approx(1.0)
        assert result["score"] == pytest.approx(100.0)
        # NAB counts rows: 1 flagged window row, 3 unflagged window rows, 13 scored outside.
        assert result["counts"] == {
            "tp": 1,
            "fp": 0,
            "fn": 3,
            "tn": 13,
            "windows_detected": 1,
            "windows_missed": 0,
        }


def test_later_detection_in_window_earns_less(tmp_path):
    report = score(tmp_path, ONE_WINDOW, {"demo/one.csv": {10: 1.0}})
    std = report["profiles"]["standard"]
    # y = -(11 - 10 + 1) / 4 = -0.5: S(-0.5) / S(-1) = 0.84828 / 0.98661 = 0.85979.
    assert std["raw"] == pytest.approx(0.8482836399575131 / 0.9866142981514305)
    # 100 * (0.85979 - (-1)) / (1 - (-1)) = 92.99
    assert std["score"] == pytest.approx(92.98962834548918)


def test_two_detections_in_one_window_count_once(tmp_path):
    report = score(tmp_path, ONE_WINDOW, {"demo/one.csv": {8: 1.0, 10: 1.0}})
    std = report["profiles"]["standard"]
    # Only the earliest flagged row counts: 1.0, not 1.0 + 0.85979.
    assert std["raw"] == pytest.approx(1.0)
    assert std["counts"]["tp"] == 2  # NAB's row count still sees both rows
    assert std["counts"]["windows_detected"] == 1


def test_false_positives_before_near_and_far_after_window(tmp_path):
    files = {"demo/fp.csv": (40, [(10, 13)])}  # W = 4, probation rows 0..5
    report = score(tmp_path, files, {"demo/fp.csv": {8: 1.0, 10: 1.0, 14: 1.0, 30: 1.0}})
    std = report["profiles"]["standard"]
    # row 10: first window row, +1.0
    # row 8: no window before it, -fpWeight = -0.11
    # row 14: y = |14 - 13| / (4 - 1) = 1/3, 0.11 * S(1/3) = 0.11 * -0.68226 = -0.07505
    # row 30: y = 17/3 > 3, clamped S = -1, -0.11
    # total 1 - 0.11 - 0.07505 - 0.11 = 0.70495, better than flagging nothing (-1).
    assert std["threshold"] == 1.0
    assert std["raw"] == pytest.approx(1 - 0.11 - 0.11 * 0.6822617902381697 - 0.11)
    assert std["counts"]["fp"] == 3
    low_fp = report["profiles"]["reward_low_FP_rate"]
    # Same rows with fpWeight 0.22: 1 - 0.22 - 0.15010 - 0.22 = 0.40990.
    assert low_fp["raw"] == pytest.approx(1 - 0.22 - 0.22 * 0.6822617902381697 - 0.22)
    assert report["profiles"]["reward_low_FN_rate"]["raw"] == pytest.approx(std["raw"])


def test_missed_window_costs_fn_weight(tmp_path):
    # 200 rows (probation 30): long enough that flagging every row, which would catch both
    # windows, costs far more in false positives than the missed window.
    files = {"demo/two.csv": (200, [(40, 49), (120, 129)])}
    report = score(tmp_path, files, {"demo/two.csv": {40: 1.0}})
    std, low_fn = report["profiles"]["standard"], report["profiles"]["reward_low_FN_rate"]
    # standard: +1 (first window) - 1 (second missed) = 0; null -2; perfect 2
    # -> 100 * (0 + 2) / (2 + 2) = 50.
    assert (std["raw"], std["null"], std["perfect"]) == pytest.approx((0.0, -2.0, 2.0))
    assert std["score"] == pytest.approx(50.0)
    # reward_low_FN_rate: 1 - 2 = -1; null -4; perfect 2 -> 100 * (-1 + 4) / (2 + 4) = 50.
    assert low_fn["threshold"] == 1.0
    assert (low_fn["raw"], low_fn["null"], low_fn["perfect"]) == pytest.approx((-1.0, -4.0, 2.0))
    assert low_fn["score"] == pytest.approx(50.0)
    assert std["counts"]["windows_missed"] == 1


def test_detections_inside_probation_are_ignored(tmp_path):
    # Rows 1 and 2 are probationary (first 3 rows of 20); scored they would be -0.11 each.
    report = score(tmp_path, ONE_WINDOW, {"demo/one.csv": {1: 1.0, 2: 1.0, 8: 0.5}})
    std = report["profiles"]["standard"]
    # The probationary scores never enter the sweep: thresholds are 1.1, 0.5, 0.0, and 0.5
    # flags only row 8 -> raw 1.0 with no false positive.
    assert std["threshold"] == 0.5
    assert std["raw"] == pytest.approx(1.0)
    assert std["counts"]["fp"] == 0
    # Row 3 is the first scored row: flagged, it costs -0.11 (no window before it).
    report = score(tmp_path / "b", ONE_WINDOW, {"demo/one.csv": {3: 1.0, 8: 1.0}})
    assert report["profiles"]["standard"]["raw"] == pytest.approx(1.0 - 0.11)


def test_window_inside_probation_counts_only_in_perfect(tmp_path):
    # Window rows 0..2 are all probationary: NAB's sweep never sees them, so neither the
    # detector nor the null detector is charged for missing it, but NAB's normalisation
    # counts every window of the labels file in perfect = tpWeight * windows.
    files = {"demo/early.csv": (20, [(0, 2), (8, 11)])}
    std = score(tmp_path, files, {"demo/early.csv": {8: 1.0}})["profiles"]["standard"]
    # raw 1.0, null -1.0, perfect 2.0 -> 100 * 2 / 3 = 66.67
    assert (std["raw"], std["null"], std["perfect"]) == pytest.approx((1.0, -1.0, 2.0))
    assert std["score"] == pytest.approx(200 / 3)


def test_one_threshold_is_optimised_across_files(tmp_path):
    files = {"a/x.csv": (20, [(8, 11)]), "b/y.csv": (20, [])}
    flagged = {"a/x.csv": {8: 0.6, 15: 0.9}, "b/y.csv": {5: 0.7, 6: 0.65, 7: 0.65}}
    # Sweep over both files, standard profile (row 15 of x: y = (15 - 11) / 3 = 4/3,
    # 0.11 * S(4/3) = -0.10972; y's rows have no window before them: -0.11 each):
    #   threshold 1.1:  -1 (x's window missed)
    #   threshold 0.9:  -1 - 0.10972                       = -1.10972
    #   threshold 0.7:  -1.10972 - 0.11                    = -1.21972
    #   threshold 0.65: -1.21972 - 0.22                    = -1.43972
    #   threshold 0.6:  +1 - 0.10972 - 0.33                =  0.56028  <- best
    #   threshold 0.0:  every scored row flagged, 30 false positives: far below.
    # Alone, y would pick 1.1 (score 0); the corpus threshold makes it -0.33.
    fp_15 = 0.11 * -0.9974579674738373
    expected = [-1.0, -1.0 + fp_15, -1.0 + fp_15 - 0.11, -1.0 + fp_15 - 0.33, 1 + fp_15 - 0.33]

    report = score(tmp_path, files, flagged)
    std = report["profiles"]["standard"]
    assert std["threshold"] == 0.6
    assert std["raw"] == pytest.approx(expected[-1])
    assert std["files"]["a/x.csv"]["raw"] == pytest.approx(1 + fp_15)
    assert std["files"]["b/y.csv"]["raw"] == pytest.approx(-0.33)
    assert std["score"] == pytest.approx(100 * (expected[-1] + 1) / 2)  # 78.01
    assert std["categories"]["a"]["score"] == pytest.approx(100 * (1 + fp_15 + 1) / 2)
    assert std["categories"]["b"]["score"] is None  # no windows: nothing to normalise by

    # The same table straight from the sweep functions.
    corpus = nab.load_corpus([tmp_path / "nab"])
    weights = nab.load_profiles(PROFILES)["standard"]
    columns, offset = [], 0
    for f in corpus:
        sweep, window_of_row, scorable = nab.sweep_scores(f.n_rows, f.windows, weights)
        ids = np.where(window_of_row >= 0, window_of_row + offset, -1)
        offset += len(f.windows)
        scores = detections(f.n_rows, flagged[f.name])
        columns.append((scores[scorable], sweep[scorable], ids[scorable]))
    table = nab.score_by_threshold(*(np.concatenate(c) for c in zip(*columns, strict=True)), 1.0)
    assert table.thresholds.tolist() == [1.1, 0.9, 0.7, 0.65, 0.6, 0.0]
    assert table.scores[:5] == pytest.approx(expected)
    assert table.scores[5] < table.scores[4]
    assert table.best() == 4


def test_null_and_perfect_detectors_normalise_to_0_and_100(tmp_path):
    # Long enough files that flagging every row (what a constant score amounts to at a
    # threshold at or below it) loses to flagging nothing, as on NAB's corpus.
    files = {
        "cat1/a.csv": (200, [(60, 79), (140, 159)]),
        "cat1/b.csv": (200, [(100, 119)]),
        "cat2/c.csv": (300, [(200, 229)]),
        "cat3/flat.csv": (200, []),
    }
    data = write_data(tmp_path / "nab", files)
    first_rows = {name: {a: 1.0 for a, _ in spans} for name, (_, spans) in files.items()}
    perfect = {name: detections(n, first_rows[name]) for name, (n, _) in files.items()}
    null = {name: np.full(n, 0.5) for name, (n, _) in files.items()}
    perfect_report = nab.score_corpus([data], write_results(tmp_path / "perfect", data, perfect))
    null_report = nab.score_corpus([data], write_results(tmp_path / "null", data, null))
    for name in PROFILES:
        top, bottom = perfect_report["profiles"][name], null_report["profiles"][name]
        assert top["score"] == pytest.approx(100.0)
        assert bottom["score"] == pytest.approx(0.0)
        assert bottom["threshold"] == 1.1  # NAB's "flag nothing" threshold
        fn_weight = PROFILES[name]["CostMatrix"]["fnWeight"]
        assert bottom["raw"] == pytest.approx(-4 * fn_weight)
        for category in ("cat1", "cat2"):
            assert top["categories"][category]["score"] == pytest.approx(100.0)
            assert bottom["categories"][category]["score"] == pytest.approx(0.0)
        assert top["categories"]["cat3"]["score"] is None


def test_windows_map_by_time_range_and_merge_across_dirs(tmp_path):
    first = write_data(tmp_path / "one", {"cat1/a.csv": (40, [(10, 13)])})
    second = write_data(tmp_path / "two", {"cat2/b.csv": (40, [(20, 25)])})
    # A window between row timestamps covers the rows inside [start, end], as NAB's labels.
    stamps = nab.load_corpus([first])[0].timestamps
    assert nab.window_indices(
        stamps, [("2020-01-01 00:47:00", "2020-01-01 01:03:00")]
    ).tolist() == [[10, 12]]
    corpus = nab.load_corpus([first, second])
    assert [(f.name, f.windows.tolist()) for f in corpus] == [
        ("cat1/a.csv", [[10, 13]]),
        ("cat2/b.csv", [[20, 25]]),
    ]
    # The same file listed with other windows in another dir is an error, not a silent pick.
    (second / "labels" / "combined_windows.json").write_text(
        json.dumps({"cat2/b.csv": [], "cat1/a.csv": [[stamp(1), stamp(2)]]})
    )
    with pytest.raises(nab.NabInputError, match="conflicting windows for 'cat1/a.csv'"):
        nab.load_corpus([first, second])


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="stream-rnn")
    nab_score.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    data = write_data(tmp_path / "nab", ONE_WINDOW)
    out = write_results(tmp_path / "out", data, {"demo/one.csv": detections(20, {10: 1.0})})
    profiles = tmp_path / "only_standard.json"
    profiles.write_text(json.dumps({"standard": PROFILES["standard"]}))
    assert (
        run_cli(
            "nab-score", "--data", str(data), "--results", str(out), "--profiles", str(profiles)
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "standard" in printed and "92.99" in printed
    saved = json.loads((out / "nab_scores.json").read_text())
    assert list(saved["profiles"]) == ["standard"]
    assert saved["profiles"]["standard"]["score"] == pytest.approx(92.98962834548918)
    assert saved["profiles"]["standard"]["files"]["demo/one.csv"]["windows_detected"] == 1


def test_cli_missing_results_file_exits_2_naming_it(tmp_path, capsys):
    files = {"demo/one.csv": (20, [(8, 11)]), "demo/two.csv": (20, [])}
    data = write_data(tmp_path / "nab", files)
    out = write_results(tmp_path / "out", data, {"demo/one.csv": np.zeros(20)})
    assert run_cli("nab-score", "--data", str(data), "--results", str(out)) == 2
    err = capsys.readouterr().err
    assert str(out / "demo" / "two.csv") in err
    assert "Traceback" not in err
    assert not (out / "nab_scores.json").exists()


def test_cli_row_count_mismatch_exits_2(tmp_path, capsys):
    data = write_data(tmp_path / "nab", ONE_WINDOW)
    out = write_results(tmp_path / "out", data, {"demo/one.csv": np.zeros(20)})
    path = out / "demo" / "one.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    assert run_cli("nab-score", "--data", str(data), "--results", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{path} has 18 rows but data file" in err and "has 20" in err


def nab_row_by_row(files, tp_weight, fp_weight, fn_weight):
    """Line-by-line port of NAB v1.1 ``Sweeper.calcSweepScore`` + ``calcScoreByThreshold``.

    ``files`` holds (anomaly scores, [(first_row, last_row), ...]); timestamps are row
    numbers. Returns [(threshold, score, tp, tn, fp, fn), ...] as NAB's ThresholdScore.
    """

    def scaled_sigmoid(y):
        return -1.0 if y > 3.0 else 2 * (1 / (1 + math.exp(-(-5 * y)))) - 1.0

    points = []
    for name, (scores, window_limits) in enumerate(files):
        timestamps, limits = list(range(len(scores))), list(window_limits)
        max_tp = scaled_sigmoid(-1.0)
        probation = min(math.floor(0.15 * len(timestamps)), 0.15 * 5000)
        cur = cur_name = cur_width = cur_right = prev_width = prev_right = None
        for i, (t, anomaly) in enumerate(zip(timestamps, scores, strict=True)):
            if limits and t == limits[0][0]:
                cur = limits.pop(0)
                cur_name = f"{name}|{cur[0]}"
                cur_right = timestamps.index(cur[1])
                cur_width = float(cur_right - i + 1)
            if cur is not None:
                weighted = scaled_sigmoid(-(cur_right - i + 1) / cur_width) * tp_weight / max_tp
            else:
                if prev_right is None:
                    unweighted = -1.0
                else:
                    unweighted = scaled_sigmoid(abs(prev_right - i) / float(prev_width - 1))
                weighted = unweighted * fp_weight
            points.append((anomaly, weighted, cur_name if i >= probation else "probationary"))
            if cur is not None and t == cur[1]:
                prev_right, prev_width = i, cur_width
                cur = cur_name = cur_width = cur_right = None

    scorable = sorted((p for p in points if p[2] != "probationary"), key=lambda p: -p[0])
    tn = sum(p[2] is None for p in scorable)
    fn = len(scorable) - tn
    tp = fp = 0
    tp_by_window = {p[2]: -fn_weight for p in scorable if p[2] is not None}
    fp_score, threshold, table = 0.0, 1.1, []
    for anomaly, weighted, window in scorable:
        if anomaly != threshold:
            table.append((threshold, fp_score + sum(tp_by_window.values()), tp, tn, fp, fn))
            threshold = anomaly
        if window is None:
            fp, tn, fp_score = fp + 1, tn - 1, fp_score + weighted
        else:
            tp, fn = tp + 1, fn - 1
            tp_by_window[window] = max(tp_by_window[window], weighted)
    table.append((threshold, fp_score + sum(tp_by_window.values()), tp, tn, fp, fn))
    return table


def test_vectorised_sweep_matches_row_by_row_nab_port():
    rng = np.random.default_rng(7)
    for _ in range(40):
        files = []
        for _ in range(int(rng.integers(1, 4))):
            n_rows = int(rng.integers(8, 90))
            cuts = np.sort(rng.choice(n_rows, size=2 * int(rng.integers(0, 4)), replace=False))
            windows = [(int(a), int(b)) for a, b in cuts.reshape(-1, 2)]
            # Rounded scores so that many rows tie on a threshold.
            files.append((np.round(rng.random(n_rows), int(rng.integers(1, 3))), windows))
        tp_w, fp_w, fn_w = 1.0, float(rng.choice([0.11, 0.22])), float(rng.choice([1.0, 2.0]))
        expected = nab_row_by_row(files, tp_w, fp_w, fn_w)

        columns, offset = [], 0
        for scores, windows in files:
            spans = np.array(windows, dtype=np.int64).reshape(-1, 2)
            sweep, window_of_row, scorable = nab.sweep_scores(
                len(scores), spans, {"tpWeight": tp_w, "fpWeight": fp_w}
            )
            ids = np.where(window_of_row >= 0, window_of_row + offset, -1)
            offset += len(windows)
            columns.append((scores[scorable], sweep[scorable], ids[scorable]))
        table = nab.score_by_threshold(
            *(np.concatenate(c) for c in zip(*columns, strict=True)), fn_w
        )

        assert table.thresholds.tolist() == [row[0] for row in expected]
        assert table.scores == pytest.approx([row[1] for row in expected], abs=1e-9)
        counts = np.stack([table.tp, table.tn, table.fp, table.fn], axis=1).tolist()
        assert counts == [list(row[2:]) for row in expected]
        # NAB keeps the first of the equal best scores after a stable sort by score.
        best = sorted(expected, key=lambda row: row[1], reverse=True)[0]
        assert table.scores[table.best()] == pytest.approx(best[1], abs=1e-9)


@pytest.fixture(scope="module")
def dev_corpus(tmp_path_factory):
    """Perfect, null and seeded random detectors written as results for the dev corpus."""
    windows = json.loads((NAB_DIR / "labels" / "combined_windows.json").read_text())
    root = tmp_path_factory.mktemp("nab_dev")
    rng = np.random.default_rng(12345)
    for path in sorted((NAB_DIR / "data").glob("*/*.csv")):
        name = f"{path.parent.name}/{path.name}"
        lines = path.read_text().splitlines()[1:]
        rows = {line.split(",", 1)[0]: i for i, line in enumerate(lines)}
        # Located by string match on the data rows, independently of the scorer's parsing.
        starts = [rows[start.split(".")[0]] for start, _ in windows[name]]
        detectors = {
            "perfect": detections(len(lines), dict.fromkeys(starts, 1.0)),
            "null": np.zeros(len(lines)),
            "random": rng.random(len(lines)),
        }
        for detector, values in detectors.items():
            out = root / detector / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(
                "timestamp,value,anomaly_score\n"
                + "".join(f"{line},{v:.6f}\n" for line, v in zip(lines, values, strict=True))
            )
    return root


def test_dev_corpus_perfect_null_and_random(dev_corpus):
    reports = {
        d: nab.score_corpus([NAB_DIR], dev_corpus / d) for d in ("perfect", "null", "random")
    }
    assert reports["perfect"]["n_files"] == 18
    assert reports["perfect"]["n_windows"] == 25
    for profile in PROFILES:
        assert reports["perfect"]["profiles"][profile]["score"] == pytest.approx(100.0)
        assert reports["null"]["profiles"][profile]["score"] == pytest.approx(0.0)
        random_score = reports["random"]["profiles"][profile]["score"]
        print(f"random detector, {profile}: {random_score:.2f}")
        # NAB reports about 27.8 for its random detector on these three categories. Ours
        # (uniform scores, seed 12345) printed standard 21.87, reward_low_FP_rate 6.10,
        # reward_low_FN_rate 34.58 when written; other seeds give 5-15 for standard, so
        # the bounds only say "no better than chance": at least the null baseline (the
        # optimiser can always flag nothing) and well under half-way to perfect.
        assert 0.0 <= random_score < 50.0

    # The per-file scores at the chosen threshold add up to the best score of the corpus
    # sweep, computed here again from the public pieces.
    corpus = nab.load_corpus([NAB_DIR])
    outputs = {f.name: nab.read_results(dev_corpus / "random", f) for f in corpus}
    for profile, weights in nab.load_profiles(PROFILES).items():
        columns, offset = [], 0
        for f in corpus:
            sweep, window_of_row, scorable = nab.sweep_scores(f.n_rows, f.windows, weights)
            ids = np.where(window_of_row >= 0, window_of_row + offset, -1)
            offset += len(f.windows)
            columns.append((outputs[f.name][scorable], sweep[scorable], ids[scorable]))
        table = nab.score_by_threshold(
            *(np.concatenate(c) for c in zip(*columns, strict=True)), weights["fnWeight"]
        )
        result = reports["random"]["profiles"][profile]
        assert result["threshold"] == table.thresholds[table.best()]
        assert result["raw"] == pytest.approx(table.scores[table.best()], abs=1e-9)
