"""TLS settings fail fast and clearly: a handshake that cannot complete (a plaintext
listener, an untrusted certificate) is a logged connection failure within the connect
budget, never a hang in the client's constructor."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time

import pytest

from stream_rnn.io.kafka import KafkaSink, KafkaSource, TlsHandshakeError, tls_preflight


@pytest.fixture
def silent_listener():
    """A TCP listener that accepts and never answers: what a TLS client meets at a
    plaintext Kafka port (the broker waits for a request frame that never comes)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A real TLS listener with a self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}", str(cert)
    stop.set()
    thread.join()
    server.close()


def test_a_plaintext_listener_fails_the_handshake_within_the_budget(silent_listener):
    started = time.monotonic()
    with pytest.raises(TlsHandshakeError, match="is the listener plaintext"):
        tls_preflight({"security_protocol": "SSL", "bootstrap_servers": silent_listener},
                      timeout_s=1.0)
    assert time.monotonic() - started < 3.0


def test_a_trusted_tls_listener_passes_and_an_untrusted_one_is_named(tls_server):
    address, cafile = tls_server
    tls_preflight({"security_protocol": "SASL_SSL", "bootstrap_servers": address,
                   "ssl_cafile": cafile}, timeout_s=5.0)
    with pytest.raises(TlsHandshakeError, match="CERTIFICATE_VERIFY_FAILED"):
        tls_preflight({"security_protocol": "SSL", "bootstrap_servers": address},
                      timeout_s=5.0)


def test_plaintext_protocols_skip_the_check():
    # Nothing listens on port 9 here: a check would fail, so none may run.
    for protocol in (None, "PLAINTEXT", "SASL_PLAINTEXT"):
        tls_preflight({"security_protocol": protocol, "bootstrap_servers": "127.0.0.1:9"},
                      timeout_s=0.1)


@pytest.mark.parametrize("role", ["source", "sink"])
def test_ssl_against_a_plaintext_broker_is_a_connection_failure_not_a_hang(
        kafka_broker, role, caplog):
    if role == "source":
        client = KafkaSource(["events"], bootstrap_servers=kafka_broker, group_id="tls-check",
                             security={"security_protocol": "SSL"})
    else:
        client = KafkaSink(bootstrap_servers=kafka_broker, security={"security_protocol": "SSL"})
    started = time.monotonic()
    try:
        assert client.connect(2.0) is False
    finally:
        client.close()
    assert time.monotonic() - started < 10.0
    assert "TLS handshake failed" in caplog.text


def test_key_passphrase_and_hostname_check_reach_the_clients_from_the_configuration():
    from stream_rnn.config import load

    config = load(env={"STREAM_RNN_KAFKA__SECURITY_PROTOCOL": "SSL",
                       "STREAM_RNN_KAFKA__SSL_PASSWORD": "secret",
                       "STREAM_RNN_KAFKA__SSL_CHECK_HOSTNAME": "false"})
    source = KafkaSource.from_config(config.kafka)
    sink = KafkaSink.from_config(config.kafka)
    try:
        for options in (source._options, sink._options):
            assert options["ssl_password"] == "secret"
            assert options["ssl_check_hostname"] is False
            assert options["security_protocol"] == "SSL"
    finally:
        source.close()
        sink.close()
