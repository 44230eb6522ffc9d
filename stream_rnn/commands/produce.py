"""``stream-rnn produce``: write a recorded scenario's events into Kafka.

Each event is one JSON message (the daemon's input contract) keyed by its entity key, so
every key's events stay in one partition, in order. Paced at the recorded rate times
``--speed`` (or ``--as-fast-as-possible``). For scenarios with delayed labels and a
``--labels-topic``, labels are taken out of the events and written there as
``{"id", "label"}`` once stream time has passed the event's time plus the delay.
Exit status: 0 when every message was acknowledged, 2 for a missing scenario, an
unreachable broker or a missing topic, 1 when writes failed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("produce", help="write a scenario's events into Kafka, paced",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", type=Path, help="scenario folder (or its scenario.toml)")
    p.add_argument("--bootstrap", required=True, help="brokers, host:port[,host:port]")
    p.add_argument("--topic", required=True, help="topic the events are written to")
    p.add_argument("--labels-topic", help="topic for delayed labels {id, label} (scenarios "
                   "with label_delay_seconds > 0)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0,
                      help="stream seconds per wall second (default 1: as recorded)")
    pace.add_argument("--as-fast-as-possible", action="store_true",
                      help="no pacing: send as fast as the broker takes them")
    p.add_argument("--limit", type=int, help="stop after N events")
    p.add_argument("--create-topics", type=int, metavar="PARTITIONS",
                   help="create missing topics with this many partitions (default: a "
                        "missing topic is an error)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to try reaching the broker (default 10)")
    p.set_defaults(func=run)


def _fail(message: str, status: int = 2) -> int:
    print(f"stream-rnn produce: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    from stream_rnn.io.produce import (
        BrokerUnreachable,
        MissingTopic,
        ProduceError,
        ensure_topics,
        produce,
        schedule,
    )
    from stream_rnn.io.scenario import load_scenario

    if not args.as_fast_as_possible and not args.speed > 0:
        return _fail(f"--speed must be positive, got {args.speed:g}")
    if args.limit is not None and args.limit < 0:
        return _fail(f"--limit must be >= 0, got {args.limit}")
    if not args.connect_timeout > 0:
        return _fail(f"--connect-timeout must be positive, got {args.connect_timeout:g}")
    if args.create_topics is not None and args.create_topics < 1:
        return _fail(f"--create-topics must be >= 1, got {args.create_topics}")
    try:
        scenario = load_scenario(args.scenario)
    except ValueError as exc:
        return _fail(str(exc))
    delayed = scenario.label_delay_seconds > 0
    if args.labels_topic and not delayed:
        print(f"note: scenario {scenario.name!r} has no label delay; labels stay in the "
              "events and nothing is written to the labels topic", file=sys.stderr)
    elif delayed and not args.labels_topic:
        print(f"note: scenario {scenario.name!r} delays its labels by "
              f"{scenario.label_delay_seconds:g} s; without --labels-topic they stay in "
              "the events", file=sys.stderr)
    labels_topic = args.labels_topic if delayed else None

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        topics = [t for t in (args.topic, labels_topic) if t]
        created = ensure_topics(args.bootstrap, topics, args.create_topics,
                                timeout_s=args.connect_timeout)
        for name in created:
            print(f"created topic {name} ({args.create_topics} partition(s))")
        messages = schedule(scenario.events(), scenario.keys[0],
                            label_delay_seconds=scenario.label_delay_seconds,
                            delayed_labels=labels_topic is not None, limit=args.limit)
        speed = None if args.as_fast_as_possible else args.speed
        report = produce(messages, bootstrap=args.bootstrap, topic=args.topic,
                         labels_topic=labels_topic, speed=speed, stop=stop,
                         connect_timeout_s=args.connect_timeout)
    except (BrokerUnreachable, MissingTopic) as exc:
        return _fail(str(exc))
    except ProduceError as exc:
        return _fail(str(exc), 1)
    except ValueError as exc:  # a malformed events file
        return _fail(str(exc))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    labels = f" and {report.labels:,} labels to {labels_topic}" if labels_topic else ""
    how = "interrupted after" if report.stopped else "sent"
    print(f"{how} {report.events:,} events to {args.topic}{labels} in {report.seconds:.1f} s "
          f"({report.events_per_second:,.0f} events/s)")
    return 0
