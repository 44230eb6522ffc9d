"""Configuration layering: defaults < file < environment < flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_rnn.commands.serve import FLAGS
from stream_rnn.config import ConfigError, Config, load

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
