"""``stream-rnn tune``: the search finds a better model than a poor starting one, and what it
prints is a configuration ``serve`` loads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_rnn.cli import main
from stream_rnn.config import load
from stream_rnn.io.scenario import load_scenario, write_events
from stream_rnn.replay import replay, summarize

HOUR = 3600.0
START = 1_700_000_000.0

# A poor but valid start: plain SGD at the smallest step the search would ever try.
POOR_MODEL = """
[model]
target = "value"
cell = "elman"
hidden_size = 8
window = 4
update_every = 4
optimizer = "sgd"
lr = 0.0003
seed = 0
"""


def _forecast_scenario(folder, n_keys: int = 3, steps: int = 700):
    rng = np.random.default_rng(5)
    events = []
    for t in range(steps):
        for k in range(n_keys):
            level = 50.0 + 10.0 * k
            value = level + 8.0 * math.sin(2 * math.pi * t / 24 + k) + rng.normal(0, 0.5)
            events.append({"ts": START + t * HOUR, "key": f"site-{k}",
                           "features": {"value": round(value, 3)}})
    folder.mkdir()
    write_events(events, folder / "events.jsonl.gz")
    (folder / "scenario.toml").write_text(
        'name = "sines"\ndescription = "daily sines"\ntask = "forecast"\nkeys = ["key"]\n'
        'season_seconds = 86400\n' + POOR_MODEL, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    folder = _forecast_scenario(tmp_path_factory.mktemp("tune") / "sines")
    out = folder.parent / "tuned.toml"
    code = main(["tune", str(folder), "--trials", "6", "--workers", "2", "--seed", "1",
                 "--min-fraction", "0.3", "--out", str(out)])
    return folder, out, code


def test_tuned_configuration_loads_in_serve_and_keeps_the_task_parameters(tuned):
    folder, out, code = tuned
    assert code == 0
    config = load(out)
    assert config.model.task == "forecast"
    assert dict(config.model.params) == {"target": "value"}
    assert config.events.key_fields == ("key",)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# stream-rnn tune sines: best of 6 trials (seed 1), mae ")


def test_tuned_model_forecasts_better_than_the_poor_start(tuned):
    folder, out, _ = tuned
    scenario = load_scenario(folder)
    config = load(out).model
    best = {"cell": config.cell, "hidden_size": config.hidden_size, "window": config.window,
            "update_every": config.update_every, "optimizer": config.optimizer,
            "lr": config.lr}
    tuned_mae = summarize(replay(scenario, overrides=best))["mae"]
    start_mae = summarize(replay(scenario))["mae"]
    assert tuned_mae < 0.8 * start_mae, (tuned_mae, start_mae)


def test_missing_scenario_and_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["tune", str(tmp_path / "nowhere")]) == 2
    assert "no scenario.toml" in capsys.readouterr().err
    folder = _forecast_scenario(tmp_path / "s", steps=50)
    assert main(["tune", str(folder), "--metric", "accuracy", "--trials", "2",
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'accuracy'" in err and "mae" in err
    assert main(["tune", str(folder), "--eta", "1"]) == 2
    assert "--eta must be >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tune", str(folder), "--min-fraction", "1.5"])


def test_a_model_the_task_rejects_exits_2(tmp_path, capsys):
    folder = _forecast_scenario(tmp_path / "s", steps=50)
    toml = folder / "scenario.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('cell = "elman"',
                                                             'cell = "transformer"'),
                    encoding="utf-8")
    assert main(["tune", str(folder), "--trials", "2", "--workers", "1"]) == 2
    assert "transformer" in capsys.readouterr().err
