"""The systemd unit, the compose stack, the runbooks and the security defaults in ``deploy/``.

The unit is checked by systemd itself (``systemd-analyze verify`` and its offline security
review) and read here for the settings the daemon relies on (stop timeout above the drain
time, state directory, hardening). No Docker engine runs here or in CI, so the compose
file and the Dockerfile are checked for structure: every service, mount and path they
name exists. The runbook of every alert must exist, and TLS/SASL settings must reach
both Kafka clients.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from stream_rnn.config import MetricsConfig, load
from stream_rnn.io.kafka import KafkaSink, KafkaSource
from stream_rnn.metrics import serve_metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "stream-rnn.service"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
RUNBOOKS = DEPLOY / "README.md"
EXAMPLE_CONFIG = DEPLOY / "stream-rnn.toml"
STATE_DIR = "/var/lib/stream-rnn"


# ------------------------------------------------------------------ systemd

def read_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with all its values in order (keys such as
    ``Environment=`` may repeat, which configparser refuses)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
        else:
            raise ValueError(f"line {number}: not a section or key=value: {raw!r}")
    return sections


def timespan_seconds(text: str) -> float:
    """Seconds of a systemd time span such as ``40s``, ``1min 30s`` or ``10min``."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    leftover = re.sub(r"(\d+(?:\.\d+)?)\s*([a-z]*)", "", text).strip()
    if not parts or leftover or any(unit and unit not in units for _, unit in parts):
        raise ValueError(f"not a systemd time span: {text!r}")
    return sum(float(n) * units[u or "s"] for n, u in parts)


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def runnable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with its ExecStart binary replaced by a stub that exists, so systemd checks
    everything else (the venv under /opt does not exist on a test machine)."""
    stub = tmp_path / "bin" / "stream-rnn"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    text = UNIT.read_text() if text is None else text
    assert "/opt/stream-rnn/venv/bin/stream-rnn" in text
    copy = tmp_path / "stream-rnn.service"
    copy.write_text(text.replace("/opt/stream-rnn/venv/bin/stream-rnn", str(stub)))
    return copy


def test_systemd_verifies_the_unit(tmp_path):
    result = systemd_analyze("verify", "--man=no", str(runnable_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    # Unknown keys are only warned about: any message means a setting is ignored.
    assert result.stderr.strip() == "", result.stderr


def test_systemd_verify_catches_a_misspelt_setting(tmp_path):
    text = UNIT.read_text().replace("ProtectHome=yes", "ProtectHomes=yes")
    result = systemd_analyze("verify", "--man=no", str(runnable_copy(tmp_path, text)))
    assert "Unknown key 'ProtectHomes'" in result.stderr


def test_systemd_rates_the_sandbox_ok(tmp_path):
    # Exposure on systemd's 0-10 scale (threshold in tenths): 2.5 or less is "OK".
    result = systemd_analyze("security", "--offline=yes", "--threshold=25",
                             str(runnable_copy(tmp_path)))
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Overall exposure level for stream-rnn.service" in result.stdout


def test_unit_runs_serve_and_outlasts_the_drain_time():
    unit = read_unit(UNIT.read_text())
    service = unit["Service"]

    def one(key: str) -> str:
        assert len(service.get(key, [])) == 1, f"{key}= set {len(service.get(key, []))} times"
        return service[key][0]

    assert one("Type") == "simple"
    assert shlex.split(one("ExecStart")) == [
        "/opt/stream-rnn/venv/bin/stream-rnn", "serve", "--config",
        "/etc/stream-rnn/stream-rnn.toml"]
    assert one("Restart") == "on-failure"
    assert timespan_seconds(one("RestartSec")) >= 1
    assert int(unit["Unit"]["StartLimitBurst"][0]) >= 1
    assert one("KillSignal") == "SIGTERM"
    drain = load(EXAMPLE_CONFIG, env={}).limits.shutdown_timeout_seconds
    assert drain == 25.0
    assert timespan_seconds(one("TimeoutStopSec")) >= drain + 10
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_runs_unprivileged_with_its_state_directory_only():
    service = read_unit(UNIT.read_text())["Service"]
    flat = {key: values[-1] for key, values in service.items()}
    assert flat["DynamicUser"] == "yes" and flat["User"] == "stream-rnn"
    assert flat["StateDirectory"] == "stream-rnn"
    env = dict(value.split("=", 1) for value in service["Environment"])
    # %S is /var/lib for system units: the checkpoints are inside the state directory.
    assert env["STREAM_RNN_STATE__CHECKPOINT_DIR"] == "%S/stream-rnn/checkpoints"
    assert service["ReadWritePaths"] == ["%S/stream-rnn"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                       "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}.items():
        assert flat.get(key) == value, key
    # Numba writes executable code at run time: this setting would kill the daemon.
    assert "MemoryDenyWriteExecute" not in flat


def test_unit_parsers_reject_garbage():
    with pytest.raises(ValueError, match="line 2"):
        read_unit("[Service]\nnot a setting\n")
    assert timespan_seconds("1min 30s") == 90
    with pytest.raises(ValueError, match="not a systemd time span"):
        timespan_seconds("forty seconds")


# ------------------------------------------------------------------ compose and image

def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    """``(host path, container path)`` of the service's bind mounts (not named volumes)."""
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((DEPLOY / source).resolve(), target))
    return out


def test_compose_services_and_their_images():
    services = compose()["services"]
    assert set(services) == {"kafka", "stream-rnn", "prometheus", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    # Whatever is published is published on loopback only.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_compose_daemon_is_built_here_and_configured_by_environment():
    service = compose()["services"]["stream-rnn"]
    build = service["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]) == DOCKERFILE
    env = {key: str(value) for key, value in service["environment"].items()}
    cfg = load(EXAMPLE_CONFIG, env=env)  # unknown or mistyped variables raise ConfigError
    assert cfg.kafka.bootstrap == "kafka:9092"
    assert cfg.metrics.addr.endswith(":9464")
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert timespan_seconds(service["stop_grace_period"]) > cfg.limits.shutdown_timeout_seconds
    # The checkpoints volume holds the image's state directory, shared by replicas.
    assert f"checkpoints:{STATE_DIR}" in service["volumes"]
    assert "checkpoints" in compose()["volumes"]


def test_compose_mounts_exist_and_match_what_the_tools_read():
    services = compose()["services"]
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source}, which is not in the repository"
    prometheus = services["prometheus"]
    mounts = dict((target, source) for source, target in bind_mounts(prometheus))
    assert mounts["/etc/prometheus"] == DEPLOY / "prometheus"
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert (DEPLOY / "prometheus" / Path(config_path).relative_to("/etc/prometheus")).exists()
    grafana = dict((target, source) for source, target in bind_mounts(services["grafana"]))
    assert grafana["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" /
                               "stream-rnn.yml").read_text())["providers"][0]
    dashboards = [t for t, s in grafana.items() if s == DEPLOY / "grafana" / "stream-rnn.json"]
    assert dashboards and Path(dashboards[0]).parent == Path(provider["options"]["path"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_installs_the_package_and_runs_serve_unprivileged():
    steps = dockerfile_instructions()
    kinds = [kind for kind, _ in steps]
    assert kinds[0] == "FROM" and steps[0][1].startswith("python:3.1")
    for kind, args in steps:
        if kind == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    assert any(kind == "RUN" and "pip install" in args and " ." in args for kind, args in steps)
    user = [args for kind, args in steps if kind == "USER"]
    assert user and user[-1] not in ("root", "0")
    env = " ".join(args for kind, args in steps if kind == "ENV")
    assert f"STREAM_RNN_STATE__CHECKPOINT_DIR={STATE_DIR}/checkpoints" in env
    assert dict(steps)["STOPSIGNAL"] == "SIGTERM"
    assert dict(steps)["ENTRYPOINT"] == '["stream-rnn"]'
    assert dict(steps)["CMD"].startswith('["serve"')
    # The build context is the repository: its ignore file keeps the sources in.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert "!stream_rnn/" in ignore and "!pyproject.toml" in ignore


# ------------------------------------------------------------------ runbooks

def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {github_anchor(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M)}


def test_every_alert_links_to_its_runbook_section():
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    text = RUNBOOKS.read_text()
    found = anchors(text)
    for rule in alerts:
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert (ROOT / path) == RUNBOOKS, rule["alert"]
        assert anchor in found, f"{rule['alert']}: no heading for #{anchor} in {path}"
        section = text.split(f"### {rule['alert']}\n", 1)[1].split("\n### ", 1)[0]
        for part in ("**Means:**", "**Confirm:**", "**Do:**"):
            assert part in section, f"{rule['alert']} runbook lacks {part}"


def test_links_between_the_readmes_resolve():
    text = RUNBOOKS.read_text()
    links = re.findall(r"\]\((\.\./README\.md)#([\w-]+)\)", text)
    assert links, "deploy/README.md should link the main README's scaling-out numbers"
    for path, anchor in links:
        assert anchor in anchors((DEPLOY / path).read_text()), f"{path}#{anchor}"


def test_github_anchor():
    assert github_anchor("StreamRnnDown") == "streamrnndown"
    assert github_anchor("Scaling out") == "scaling-out"
    assert github_anchor("Running the daemon: `stream-rnn serve`") == \
        "running-the-daemon-stream-rnn-serve"


# ------------------------------------------------------------------ security defaults

def test_metrics_bind_loopback_by_default():
    assert MetricsConfig().addr.startswith("127.0.0.1:")
    assert load(EXAMPLE_CONFIG, env={}).metrics.addr.startswith("127.0.0.1:")
    # An address without a host binds loopback too, not every interface.
    server, thread = serve_metrics(CollectorRegistry(), ":0")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


SECURE_ENV = {
    "STREAM_RNN_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "STREAM_RNN_KAFKA__SSL_CAFILE": "/etc/stream-rnn/ca.pem",
    "STREAM_RNN_KAFKA__SSL_CERTFILE": "/etc/stream-rnn/client.pem",
    "STREAM_RNN_KAFKA__SSL_KEYFILE": "/etc/stream-rnn/client.key",
    "STREAM_RNN_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "STREAM_RNN_KAFKA__SASL_USERNAME": "stream-rnn",
    "STREAM_RNN_KAFKA__SASL_PASSWORD": "s3cret",
}
EXPECTED_CLIENT_SETTINGS = {
    "security_protocol": "SASL_SSL",
    "ssl_cafile": "/etc/stream-rnn/ca.pem",
    "ssl_certfile": "/etc/stream-rnn/client.pem",
    "ssl_keyfile": "/etc/stream-rnn/client.key",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_plain_username": "stream-rnn",
    "sasl_plain_password": "s3cret",
}


def test_tls_and_sasl_settings_reach_consumer_and_producer():
    cfg = load(EXAMPLE_CONFIG, env=SECURE_ENV)
    # Built as `stream-rnn serve` builds them; neither contacts the broker yet.
    source = KafkaSource.from_config(cfg.kafka)
    sink = KafkaSink.from_config(cfg.kafka)
    try:
        for client, options, accepted in (
                ("consumer", source._options, KafkaConsumer.DEFAULT_CONFIG),
                ("producer", sink._options, KafkaProducer.DEFAULT_CONFIG)):
            for key, value in EXPECTED_CLIENT_SETTINGS.items():
                assert options.get(key) == value, f"{client}: {key}"
                assert key in accepted, f"kafka-python's {client} has no setting {key}"
    finally:
        source.close()
        sink.close()


def test_plaintext_by_default_and_a_mistyped_protocol_fails_at_start():
    cfg = load(EXAMPLE_CONFIG, env={})
    source = KafkaSource.from_config(cfg.kafka)
    try:
        assert source._options["security_protocol"] == "PLAINTEXT"
        assert "sasl_plain_password" not in source._options
    finally:
        source.close()
    bad = load(EXAMPLE_CONFIG, env={"STREAM_RNN_KAFKA__SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ValueError, match="security_protocol must be one of"):
        KafkaSource.from_config(bad.kafka)
    with pytest.raises(ValueError, match="security_protocol must be one of"):
        KafkaSink.from_config(bad.kafka)
