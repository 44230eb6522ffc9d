"""``stream-rnn bench``: the plumbing of the benchmark (paths, JSON, targets), never its
numbers, which depend on the machine and its load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stream_rnn import benchmark
from stream_rnn.cli import main
from stream_rnn.models import RNNRegressor

REPORT_KEYS = {"config", "machine", "compile_seconds", "numpy_reference",
               "state_bytes_per_key", "results", "ratios", "targets"}
RESULT_KEYS = {"cell", "hidden", "update_every", "path", "keys", "events", "passes", "repeats",
               "events_per_s", "min_events_per_s", "max_events_per_s", "seconds",
               "warmup_seconds"}


def _positive_finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_quick_bench_measures_every_path_and_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert REPORT_KEYS <= set(report)

    # This test sits next to tests/naive.py, so the NumPy reference is always measured here.
    assert report["numpy_reference"]["available"] is True
    results = report["results"]
    assert {r["path"] for r in results} == set(benchmark.PATHS)
    assert {r["update_every"] for r in results} == {1, 16, None}
    for r in results:
        assert RESULT_KEYS <= set(r), r["path"]
        for name in ("events_per_s", "min_events_per_s", "max_events_per_s"):
            assert _positive_finite(r[name]), (r["path"], name, r[name])
        assert r["min_events_per_s"] <= r["events_per_s"] <= r["max_events_per_s"]
        assert len(r["seconds"]) == r["repeats"] == 2
        assert r["events"] > 0

    for r in report["ratios"]:
        assert _positive_finite(r["value"]), r
    assert {r["name"] for r in report["ratios"]} == {
        "batch vs per-event", "1 key vs many keys", "per-event vs numpy",
        "score batch vs score per-event"}
    assert all(s["bytes"] > 0 for s in report["state_bytes_per_key"])
    machine = report["machine"]
    assert {"cpu", "numba", "numpy", "numba_threads", "logical_cpus"} <= set(machine)
    assert report["config"]["quick"] is True

    # The quick run has no lstm hidden 32, so no target can be judged from it.
    assert len(report["targets"]) == len(benchmark.TARGETS)
    assert all(t["measured"] is None and t["met"] is None for t in report["targets"])

    printed = capsys.readouterr().out
    assert "events/s" in printed and "product targets" in printed
    assert "not measured" in printed


def test_missing_numpy_reference_is_reported_not_fatal(tmp_path):
    config = benchmark.config_with(benchmark.BenchConfig.quick(), update_every=(16,),
                                   events=160)
    report = benchmark.run_benchmark(config, naive_path=tmp_path / "naive.py")
    assert report["numpy_reference"]["available"] is False
    assert "numpy" not in {r["path"] for r in report["results"]}
    assert all(_positive_finite(r["events_per_s"]) for r in report["results"])
    assert "needs a source checkout" in benchmark.format_report(report)


def _fake(path, k1, rate):
    return {"cell": "lstm", "hidden": 32, "update_every": k1, "path": path, "keys": 100,
            "events": 1, "passes": 1, "repeats": 1, "events_per_s": rate,
            "min_events_per_s": rate, "max_events_per_s": rate, "seconds": [1.0],
            "warmup_seconds": 1.0}


def test_targets_compare_lstm_hidden_32_against_thresholds():
    results = [
        _fake("per-event", 1, 30_000.0),
        _fake("numpy", 1, 1_000.0),
        _fake("per-event", 16, 100_000.0),
        _fake("batch", 16, 400_000.0),
        _fake("score per-event", None, 250_000.0),
    ]
    ratios = benchmark._ratios(results)
    by_label = {t["label"]: t for t in benchmark._check_targets(results, ratios)}
    assert by_label["per-event API, update_every=1"]["met"] is True
    assert by_label["per-event API, update_every=16"]["met"] is False
    assert by_label["batch, update_every=16"]["met"] is True
    assert by_label["scoring only, per-event"]["met"] is True
    assert by_label["scoring only, batch"]["met"] is None
    vs_numpy = by_label["per-event API vs NumPy reference, update_every=1"]
    assert vs_numpy["measured"] == pytest.approx(30.0) and vs_numpy["met"] is False
    assert by_label["per-event API vs NumPy reference, update_every=16"]["met"] is None
    batch_ratio = [r for r in ratios if r["name"] == "batch vs per-event"]
    assert batch_ratio[0]["value"] == pytest.approx(4.0)


@pytest.mark.parametrize("argv", [
    ["bench", "--cells", "lstm,transformer"],
    ["bench", "--hidden", "0"],
    ["bench", "--update-every", "17"],
    ["bench", "--repeats", "two"],
])
def test_bad_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("update_every", [1, 4])
def test_numpy_reference_runs_the_same_loop_as_the_estimator(update_every):
    """The ratio to NumPy compares the same loop: predictions of the NumPy loop follow the
    float64 estimator's through target scaling, kept steps and updates."""
    naive, why = benchmark.load_numpy_reference()
    assert naive is not None, why
    stream = benchmark.make_stream(120, n_keys=3, seed=1)
    ref = benchmark.NumpyReferenceLoop(naive, "lstm", 6, update_every, window=4, seed=2)
    model = RNNRegressor(cell="lstm", hidden_size=6, window=4, update_every=update_every,
                         seed=2, dtype="float64")
    expected, got = [], []
    for i, (x, y, key) in enumerate(stream.events):
        # Now and then learn without predicting first; an estimator predicts 0 until its
        # first event fixes the features.
        if i > 0 and i % 3 != 2:
            expected.append(model.predict_one(x, key=key))
            got.append(ref.predict_one(x, key=key))
        model.learn_one(x, y, key=key)
        ref.learn_one(x, y, key=key)
    assert model.n_updates == ref.t > 20
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ref.theta, model._net.theta, rtol=1e-6, atol=1e-9)
