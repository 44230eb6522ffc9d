"""Configuration layering: defaults < file < environment < flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_rnn.commands.serve import FLAGS
from stream_rnn.config import Config, ConfigError, dump_toml, load

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "stream-rnn.toml"


def test_documented_example_loads_to_the_defaults():
    assert load(EXAMPLE, env={}) == Config()


def test_layers_override_in_order(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nbootstrap = "file:1"\ngroup = "from-file"\n'
                    '[model]\nhidden_size = 8\n')
    env = {"STREAM_RNN_KAFKA__GROUP": "from-env", "STREAM_RNN_MODEL__LR": "0.1"}
    cfg = load(path, env=env, overrides={"kafka.group": "from-flag"})
    assert cfg.kafka.bootstrap == "file:1"
    assert cfg.kafka.group == "from-flag"
    assert cfg.model.hidden_size == 8 and cfg.model.lr == 0.1


@pytest.mark.parametrize("env,message", [
    ({"STREAM_RNN_MODEL__HIDDEN_SIZE": "big"}, "integer"),
    ({"STREAM_RNN_NOPE__X": "1"}, "unknown section"),
    ({"STREAM_RNN_KAFKA__BOOTSTRAPS": "x"}, "unknown field"),
    ({"STREAM_RNN_SCORING__THRESHOLD": "high"}, "number"),
])
def test_bad_values_name_what_is_wrong(env, message):
    with pytest.raises(ConfigError, match=message):
        load(env=env)


def test_bad_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such"):
        load(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load(bad, env={})
    typed = tmp_path / "typed.toml"
    typed.write_text("[kafka]\ninput_topics = 3\n")
    with pytest.raises(ConfigError, match="list"):
        load(typed, env={})


def test_optional_fields_accept_none_from_the_environment():
    cfg = load(env={"STREAM_RNN_MODEL__CLIP_NORM": "none"})
    assert cfg.model.clip_norm is None


def test_every_serve_flag_maps_to_a_config_field():
    cfg = Config()
    for field, _ in FLAGS.values():
        section, name = field.split(".")
        assert hasattr(getattr(cfg, section), name), field


def test_task_parameters_from_file_and_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\ntask = "forecast"\n[model.params]\ntarget = "demand"\n'
                    'season = 24\n')
    cfg = load(path, env={"STREAM_RNN_MODEL__PARAMS__SEASONAL_LAGS": "1",
                          "STREAM_RNN_MODEL__PARAMS__TARGET": "load"})
    assert dict(cfg.model.params) == {"target": "load", "season": 24, "seasonal_lags": 1}
    fraud = load(env={"STREAM_RNN_MODEL__TASK": "fraud",
                      "STREAM_RNN_MODEL__PARAMS__WINDOWS_DAYS": "[1, 7]"})
    assert fraud.model.params["windows_days"] == (1, 7)
    hash(fraud)  # the configuration stays a frozen, hashable value


@pytest.mark.parametrize("text,message", [
    ('[model]\ntask = "weather"\n', "unknown task 'weather'"),
    ('[model.params]\ntarget = "demand"\n', "model.params.target is not a parameter of the "
                                            "sensor task"),
    ('[model]\ntask = "forecast"\n[model.params]\nseason = "daily"\n',
     "model.params.season: expected an integer"),
    ('[model]\ntask = "forecast"\n[model.params]\nseasonal_diff = 1\n', "season >= 1"),
    ('[model]\ntask = "fraud"\n[model.params]\nprior = 2.0\n', "prior must be in"),
    ('[model]\ntask = "fraud"\nnum_layers = 2\n', "model.num_layers does not apply to the "
                                                 "fraud task"),
    ('[model.params]\nhidden_size = 8\n', "set it as model.hidden_size"),
    ('[model]\nparams = 3\n', "model.params: expected a table"),
    ('[model.params]\nclip = { a = 1 }\n', "model.params.clip: expected a value"),
])
def test_bad_task_configuration_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(path, env={})


def test_written_configuration_reads_back_as_written(tmp_path):
    sections = {
        "kafka": {"bootstrap": 'host:9092', "input_topics": ["a", "b"], "labels_topic": None,
                  "ssl_check_hostname": False},
        "model": {"task": "forecast", "lr": 0.0031, "hidden_size": 16,
                  "params": {"target": 'a "quoted" \\ name'}},
    }
    path = tmp_path / "written.toml"
    path.write_text(dump_toml(sections, comment="line one\nline two"), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# line one\n# line two\n\n[kafka]\n")
    config = load(path, env={})
    assert config.kafka.bootstrap == "host:9092"
    assert config.kafka.input_topics == ("a", "b")
    assert config.kafka.labels_topic is None
    assert config.kafka.ssl_check_hostname is False
    assert (config.model.task, config.model.lr, config.model.hidden_size) == ("forecast",
                                                                              0.0031, 16)
    assert dict(config.model.params) == {"target": 'a "quoted" \\ name'}
    with pytest.raises(ValueError, match="finite"):
        dump_toml({"model": {"lr": float("nan")}})
    with pytest.raises(TypeError, match="cannot write"):
        dump_toml({"model": {"lr": object()}})
