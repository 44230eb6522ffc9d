"""A real Prometheus scraping a real ``stream-rnn serve`` fed through the test broker.

The daemon runs as a subprocess (helpers shared with ``test_daemon_kafka.py``) with its
metrics on a free loopback port; Prometheus (Debian's server, installed by CI) runs with
``deploy/prometheus/prometheus.yml`` narrowed to that target and a 1 s cadence, and loads
the real ``alerts.yml``. The tests read Prometheus's HTTP API: what operators' dashboards
and alerts will see.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from broker import free_port, produce, topic_name
from test_daemon_kafka import _events, _serve, _stop

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy" / "prometheus"
LIVE_KEY = "s0"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or its API answered with an error."""


def prometheus_config(targets: list[str], workdir: Path) -> Path:
    """``deploy/prometheus/prometheus.yml`` scraping ``targets`` every second, its rules
    (the real alerts.yml) evaluated every second."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s",
                            evaluation_interval="1s")
    config["rule_files"] = [str(PROM_DIR / name) for name in config["rule_files"]]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "stream-rnn")
    job["static_configs"] = [{"targets": targets}]
    (workdir / "targets").mkdir(exist_ok=True)
    job["file_sd_configs"] = [{"files": [str(workdir / "targets" / "*.yml")]}]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class PrometheusServer:
    """A Prometheus process on a free loopback port with its own storage under
    ``workdir``; :meth:`stop` (or the context manager) ends it."""

    def __init__(self, config: Path, workdir: Path, start_timeout_s: float = 30.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("prometheus is not installed (apt-get install prometheus)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        log.close()
        try:
            self._wait_ready(start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n"
                                      f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """``data`` of an API answer; an error answer (bad PromQL...) raises with its text."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant vector result of ``expr`` (a scalar comes back as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "vector":
            return data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise PrometheusError(f"{expr}: unexpected result type {data['resultType']}")

    def value(self, expr: str) -> float | None:
        """The value of a single-sample ``expr``, None when it has no sample."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr}: {len(result)} samples"
        return float(result[0]["value"][1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return response.read().decode()


class Deployment:
    """A daemon fed with events, scraped by Prometheus."""

    def __init__(self, bootstrap: str, create_topic: Callable[[int], str], workdir: Path,
                 ) -> None:
        self.bootstrap = bootstrap
        self.topics = {"in": create_topic(2), "out": create_topic(2), "dlq": create_topic(1),
                       "group": f"g-{topic_name('deploy')}"}
        self.metrics_addr = f"127.0.0.1:{free_port()}"
        self.workdir = workdir
        self.daemon: subprocess.Popen | None = None
        self.prometheus: PrometheusServer | None = None

    def start(self) -> Deployment:
        # Valid events on both partitions plus records that break the contract, so the
        # labelled series (per topic, partition, dead-letter reason, live key) all exist.
        produce(self.bootstrap, self.topics["in"], _events(60, 4))
        produce(self.bootstrap, self.topics["in"],
                [(0, b"s0", b"not json"), (1, b"s1", b'{"key": "s1"}')])
        self.daemon = _serve(self.bootstrap, self.topics, self.workdir,
                             extra=("--metrics-addr", self.metrics_addr),
                             env={"STREAM_RNN_METRICS__LIVE_KEYS": LIVE_KEY})
        self.prometheus = PrometheusServer(
            prometheus_config([self.metrics_addr], self.workdir), self.workdir)
        return self

    def produce_more(self, steps: int = 30) -> None:
        produce(self.bootstrap, self.topics["in"], _events(steps, 4, seed=1))

    def daemon_log(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.workdir.glob("serve-*.log")))

    def stop(self) -> None:
        try:
            if self.prometheus is not None:
                self.prometheus.stop()
        finally:
            if self.daemon is not None and self.daemon.poll() is None:
                code = _stop(self.daemon)
                assert code == 0, f"serve exited with {code}:\n{self.daemon_log()[-3000:]}"


def running_deployment(kafka_broker_process, tmp_path_factory) -> Iterator[Deployment]:
    """A running daemon with events processed and Prometheus scraping it (a fixture body:
    stops both when resumed)."""
    workdir = tmp_path_factory.mktemp("deploy")

    def create_topic(partitions: int) -> str:
        return kafka_broker_process.create_topic(topic_name("deploy"), partitions=partitions)

    deployed = Deployment(kafka_broker_process.bootstrap, create_topic, workdir)
    try:
        deployed.start()
        prom = deployed.prometheus
        wait_for(lambda: (prom.value("sum(stream_rnn_events_scored_total)") or 0) >= 240,
                 "Prometheus to see the first 240 events scored", timeout_s=90)
        # Series that appear a little later: the dead letters and the first checkpoints
        # (every second, see test_daemon_kafka._serve).
        for series in ("stream_rnn_events_dead_lettered_total",
                       "stream_rnn_last_checkpoint_timestamp_seconds"):
            wait_for(lambda s=series: prom.query(s), f"Prometheus to see {series}")
        yield deployed
    finally:
        deployed.stop()


@pytest.fixture(scope="module")
def deployment(kafka_broker_process, tmp_path_factory):
    yield from running_deployment(kafka_broker_process, tmp_path_factory)


def test_prometheus_scrapes_the_daemon(deployment):
    prom = deployment.prometheus
    up = prom.query('up{job="stream-rnn"}')
    assert [(s["metric"]["instance"], s["value"][1]) for s in up] == [
        (deployment.metrics_addr, "1")]
    targets = prom.api("targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets


def test_events_counter_rises_as_events_arrive(deployment):
    prom = deployment.prometheus
    series = f'stream_rnn_events_consumed_total{{topic="{deployment.topics["in"]}"}}'
    expr = f"sum({series})"
    before = wait_for(lambda: prom.value(expr), "a consumed count")
    deployment.produce_more(30)
    after = wait_for(lambda: (v := prom.value(expr)) is not None and v >= before + 120 and v,
                     "the consumed count to rise by the 120 new events")
    assert after >= before + 120
    rate = wait_for(lambda: prom.value(f"sum(rate({series}[5s]))"),
                    "a positive consumption rate")
    assert rate > 0


def test_latency_and_score_histograms_have_samples(deployment):
    prom = deployment.prometheus
    for name in ("stream_rnn_processing_latency_seconds", "stream_rnn_score"):
        count = wait_for(lambda n=name: prom.value(f"sum({n}_count)"), f"{name}_count > 0")
        assert count > 0
        buckets = prom.query(f"{name}_bucket")
        assert {s["metric"]["le"] for s in buckets} >= {"+Inf"}
        inf = next(float(s["value"][1]) for s in buckets if s["metric"]["le"] == "+Inf")
        assert inf == count
    p99 = prom.value("histogram_quantile(0.99, sum by (le) "
                     "(rate(stream_rnn_processing_latency_seconds_bucket[1m])))")
    assert p99 is not None and 0 < p99 < 60


def test_consumer_lag_and_partition_series_exist(deployment):
    prom = deployment.prometheus
    topic = deployment.topics["in"]
    lag = wait_for(lambda: prom.query(f'stream_rnn_consumer_lag{{topic="{topic}"}}'),
                   "consumer lag series")
    assert {s["metric"]["partition"] for s in lag} <= {"0", "1"}
    assert all(float(s["value"][1]) >= 0 for s in lag)
    assert prom.value("sum(stream_rnn_assigned_partitions)") == 2
    checkpoints = wait_for(
        lambda: prom.query(f'stream_rnn_last_checkpoint_timestamp_seconds{{topic="{topic}"}}'),
        "a checkpoint timestamp")
    ages = [time.time() - float(s["value"][1]) for s in checkpoints]
    assert all(-5 < age < 120 for age in ages), ages
    reasons = wait_for(lambda: prom.query("stream_rnn_events_dead_lettered_total"),
                       "dead-letter series")
    assert {s["metric"]["reason"] for s in reasons} == {"not_json", "missing_field"}
    live = prom.query("stream_rnn_live_score")
    assert [s["metric"]["key"] for s in live] == [LIVE_KEY]


def test_alert_rules_load_and_evaluate_without_errors(deployment):
    prom = deployment.prometheus
    names = {rule["alert"] for group in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
             ["groups"] for rule in group["rules"]}
    loaded_at = time.time()

    def evaluated_rules():
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        # Evaluated at least twice since this test began: the scraped series are in.
        fresh = all(r.get("lastEvaluation", "").startswith("20")
                    and datetime.fromisoformat(r["lastEvaluation"]).timestamp() > loaded_at + 1
                    for r in rules)
        return rules if rules and fresh else None

    rules = wait_for(evaluated_rules, "every rule to be evaluated", timeout_s=30)
    assert {r["name"] for r in rules} == names
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert not rule.get("lastError"), rule["name"]
        assert rule["type"] == "alerting"
    # A healthy deployment pages nobody.
    assert [r["name"] for r in rules if r["state"] == "firing"] == []


def test_prometheus_start_failure_is_reported(tmp_path):
    bad = tmp_path / "prometheus.yml"
    bad.write_text("global:\n  scrape_interval: soon\n")
    with pytest.raises(PrometheusError, match=r"prometheus exited with [1-9]"):
        PrometheusServer(bad, tmp_path)


def test_bad_promql_is_an_api_error(deployment):
    with pytest.raises(PrometheusError, match="bad_data"):
        deployment.prometheus.query("sum(rate(stream_rnn_events_consumed_total[1m])")
