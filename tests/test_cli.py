"""The command line: bad configuration is a clear error and signal handlers are restored."""

from __future__ import annotations

import pytest

from stream_rnn.cli import main


def test_serve_with_a_missing_config_file_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    assert main(["serve", "--config", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_serve_with_a_bad_value_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("STREAM_RNN_MODEL__HIDDEN_SIZE", "lots")
    assert main(["serve"]) == 2
    assert "hidden_size" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_serve_gives_the_signal_handlers_back(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGINT)
    main(["serve", "--config", str(tmp_path / "nope.toml")])
    assert signal.getsignal(signal.SIGINT) is before
