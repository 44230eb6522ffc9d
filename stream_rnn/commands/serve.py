"""``stream-rnn serve``: the long-lived daemon, Kafka in, scores out.

Configuration comes from ``--config FILE`` (TOML), then ``STREAM_RNN_<SECTION>__<FIELD>``
environment variables, then these flags. SIGTERM or SIGINT stops fetching, finishes the
batch, flushes, checkpoints, commits and exits within the shutdown timeout.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from stream_rnn.config import ConfigError, env_var, load

log = logging.getLogger("stream_rnn.serve")

#: Flag -> (config field, help). Each flag's help names its environment variable.
FLAGS = {
    "--bootstrap": ("kafka.bootstrap", "brokers, host:port[,host:port]"),
    "--input-topic": ("kafka.input_topics", "input topic (repeat for several)"),
    "--output-topic": ("kafka.output_topic", "topic the scores are written to"),
    "--dlq-topic": ("kafka.dlq_topic", "dead-letter topic for records that break the contract"),
    "--labels-topic": ("kafka.labels_topic", "topic of delayed labels {id, label}"),
    "--group": ("kafka.group", "consumer group"),
    "--checkpoint-dir": ("state.checkpoint_dir", "directory of per-partition checkpoints "
                         "(shared by all instances of the group)"),
    "--metrics-addr": ("metrics.addr", "host:port of /metrics (loopback unless given)"),
    "--task": ("model.task", "task model: sensor | forecast | fraud (its parameters: "
               "[model.params] in --config, or STREAM_RNN_MODEL__PARAMS__<NAME>)"),
    "--key-field": ("events.key_fields", "entity key field (repeat for several)"),
    "--threshold": ("scoring.threshold", "flag events whose score exceeds this"),
    "--kafka-client": ("kafka.client", "Kafka client library: kafka-python | librdkafka"),
    "--assignor": ("kafka.assignor", "partition assignor: range | roundrobin | "
                   "cooperative-sticky (moves only the partitions that change owner)"),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the daemon: consume, score, learn, produce",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML configuration file (deploy/stream-rnn.toml documents "
                   "every field)")
    for flag, (field, text) in FLAGS.items():
        section, name = field.split(".")
        repeat = flag in ("--input-topic", "--key-field")
        p.add_argument(flag, dest=field, action="append" if repeat else "store",
                       help=f"{text} [env: {env_var(section, name)}]")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    p.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict[str, object]:
    """The flags that were given, as ``section.field`` overrides."""
    out: dict[str, object] = {}
    for field, _ in FLAGS.values():
        value = getattr(args, field, None)
        if value is not None:
            out[field] = ",".join(value) if isinstance(value, list) else value
    return out


def run(args: argparse.Namespace) -> int:
    # Handlers first: a SIGTERM that lands while the model code is still importing must
    # still mean "stop cleanly", not the default instant death.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            config = load(args.config, overrides=overrides_from(args))
        except ConfigError as exc:
            print(f"stream-rnn serve: {exc}", file=sys.stderr)
            return 2
        return serve(config, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(config, stop: threading.Event | None = None) -> int:
    """Run the daemon with ``config`` until SIGTERM/SIGINT (or ``stop`` is set)."""
    from prometheus_client import CollectorRegistry

    from stream_rnn.daemon import Runner
    from stream_rnn.io import kafka_classes
    from stream_rnn.metrics import Metrics, serve_metrics

    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    server, _ = serve_metrics(registry, config.metrics.addr)
    log.info("metrics on http://%s:%d/metrics", *server.server_address[:2])
    k = config.kafka
    consumer_options = {
        "session_timeout_ms": k.session_timeout_ms,
        "heartbeat_interval_ms": k.heartbeat_interval_ms,
        "max_poll_interval_ms": k.max_poll_interval_ms,
        "request_timeout_ms": k.request_timeout_ms,
        "fetch_max_wait_ms": k.fetch_max_wait_ms,
        "max_poll_records": config.limits.max_poll_records,
    }
    # A revoking instance gets this long to checkpoint and commit; kept well inside the
    # poll interval so the group never evicts it for being slow.
    rebalance_timeout = min(30.0, k.max_poll_interval_ms / 2000.0)
    source = sink = None
    try:
        source_cls, sink_cls = kafka_classes(k.client)
        source = source_cls.from_config(k, consumer_options=consumer_options,
                                        rebalance_timeout_s=rebalance_timeout)
        sink = sink_cls.from_config(config.kafka)
    except ValueError as exc:
        # A client that is not installed, or settings it refuses (librdkafka checks them,
        # and TLS files, at start).
        if source is not None:
            source.close()
        server.shutdown()
        print(f"stream-rnn serve: {exc}", file=sys.stderr)
        return 2
    log.info("Kafka client: %s", k.client)
    runner = Runner(config, source, sink, metrics)
    stop = stop or threading.Event()

    def on_signal(signum, frame):
        log.info("signal %d: finishing the batch, checkpointing, committing", signum)
        stop.set()
        runner.stop()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    # Operators and tests take this line as "SIGTERM now drains rather than kills".
    log.info("serving; SIGTERM or SIGINT stops cleanly")
    started = time.monotonic()
    try:
        runner.run(until=stop.is_set)
    finally:
        deadline = config.limits.shutdown_timeout_seconds
        left = max(1.0, deadline - (time.monotonic() - started if stop.is_set() else 0.0))
        source.close(timeout_s=min(10.0, left))
        sink.close()
        server.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped cleanly")
    return 0
