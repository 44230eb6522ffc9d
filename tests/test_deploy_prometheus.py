"""The Prometheus files in ``deploy/prometheus`` as Prometheus itself reads them.

``promtool`` (Debian's ``prometheus`` package, installed by CI) checks the scrape
configurations and the rules and runs the rules' unit tests; the YAML is also read here to
hold every alert to the same shape: a severity, a summary, a description, a runbook link,
a ``for:`` duration, bounded labels, and unit tests where it fires and where it stays silent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
CONFIGS = [PROM_DIR / "prometheus.yml", PROM_DIR / "prometheus-compose.yml"]

SEVERITIES = {"critical", "warning"}
#: Labels an alert may aggregate or match on: each takes a bounded set of values.
BOUNDED_LABELS = {"job", "instance", "topic", "partition", "reason", "kind", "le"}


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    """Run promtool; a missing binary is a clear failure (CI installs it)."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (apt-get install prometheus)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def duration_seconds(text: str) -> float:
    """Seconds of a Prometheus duration such as ``1h30m`` or ``15m``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_promtool_accepts_the_scrape_config(config):
    result = promtool("check", "config", config.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid prometheus config file syntax" in result.stdout
    # The rule file it names is found and checked too.
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_scrape_configs_load_the_alert_rules_and_scrape_stream_rnn():
    for config in CONFIGS:
        data = yaml.safe_load(config.read_text())
        assert data["rule_files"] == ["alerts.yml"], config.name
        jobs = {job["job_name"]: job for job in data["scrape_configs"]}
        assert "stream-rnn" in jobs, config.name
        job = jobs["stream-rnn"]
        discovered = job.get("static_configs", []) + job.get("dns_sd_configs", [])
        assert discovered and all(c.get("targets") or c.get("names") for c in discovered), \
            config.name
        interval = duration_seconds(data["global"]["scrape_interval"])
        assert 5 <= interval <= 30, f"{config.name}: scrape interval {interval} s"
    # The systemd layout scrapes the daemon's default loopback address, and takes more
    # instances from file_sd target files (an example ships beside it).
    main = yaml.safe_load(CONFIGS[0].read_text())["scrape_configs"][0]
    assert main["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    pattern = main["file_sd_configs"][0]["files"][0]
    example = PROM_DIR / "targets" / "instances.yml.example"
    assert Path(pattern).parent == Path("targets")
    groups = yaml.safe_load(example.read_text())
    assert groups and all(group["targets"] for group in groups)


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(tmp_path):
    # The check has teeth: a rule with bad PromQL is reported, with its name.
    broken = yaml.safe_load(ALERTS.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "rate(stream_rnn_events_consumed_total[5m]"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(broken))
    result = promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "FAILED" in output and "unclosed left parenthesis" in output


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path):
    # Change one expected annotation: the unit test must fail and show what fired.
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    suite = yaml.safe_load(ALERTS_TEST.read_text())
    down = next(t for t in suite["tests"]
                if t["alert_rule_test"][0]["alertname"] == "StreamRnnDown")
    expected = next(c for c in down["alert_rule_test"] if c["exp_alerts"])["exp_alerts"][0]
    expected["exp_annotations"]["summary"] = "stream-rnn instance a is down"
    suite["tests"] = [down]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(suite))
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: StreamRnnDown" in result.stdout + result.stderr


def test_every_alert_has_firing_and_silent_unit_tests():
    names = {rule["alert"] for rule in alert_rules()}
    cases = [case for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
             for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert names - firing == set(), "alerts without a test where they fire"
    assert names - silent == set(), "alerts without a test where they stay silent"
    assert (firing | silent) - names == set(), "tests of alerts that do not exist"
    # Firing cases check labels and every annotation, not just that something fired.
    for case in cases:
        for expected in case.get("exp_alerts") or []:
            assert expected["exp_labels"]["severity"] in SEVERITIES, case["alertname"]
            assert set(expected["exp_annotations"]) == {"summary", "description",
                                                        "runbook_url"}, case["alertname"]


def test_every_alert_has_severity_annotations_runbook_and_a_for_duration():
    rules = alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules), "duplicate alert names"
    for rule in rules:
        name = rule["alert"]
        assert set(rule["labels"]) == {"severity"}, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"deploy/README.md#{name.lower()}", name
        # A condition must hold for a while before it pages: no flapping on one scrape.
        assert duration_seconds(rule["for"]) >= 60, name


def test_alerts_aggregate_and_match_only_on_bounded_labels():
    for rule in alert_rules():
        expr = rule["expr"]
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
            labels = {label.strip() for label in clause.split(",") if label.strip()}
            assert labels <= BOUNDED_LABELS, f"{rule['alert']}: {labels - BOUNDED_LABELS}"
        assert "live_" not in expr, f"{rule['alert']} uses per-key series"


def test_duration_parser_rejects_garbage():
    assert duration_seconds("1h30m") == 5400
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        duration_seconds("10 minutes")
