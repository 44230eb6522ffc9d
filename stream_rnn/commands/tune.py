"""``stream-rnn tune``: search the model configuration on a scenario.

Random search over cell type, hidden size, window, update cadence, optimizer and learning
rate, with successive halving over the stream: every trial replays a short prefix, the best
third goes on to a prefix three times longer, until the survivors have replayed it all.
Trial 0 is the scenario's own ``[model]``, so the output says whether the search beat it.
Trials run in parallel worker processes. Prints the best configuration as a ``[model]``
TOML table ready for ``stream-rnn serve --config`` (and ``--out FILE`` writes it).
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import sys
import time
from pathlib import Path

from stream_rnn.commands._args import fraction, positive_int

__all__ = ["add_parser", "run"]

EXIT_INPUT_ERROR = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tune", help="search the model configuration on a scenario",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", type=Path, help="scenario folder (or its scenario.toml)")
    p.add_argument("--trials", type=positive_int, default=27,
                   help="configurations to try (default 27)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    p.add_argument("--metric", default=None,
                   help="summary metric to optimize (default: average_precision for sensor "
                        "and fraud, mae for forecast); errors and delays are minimized")
    p.add_argument("--eta", type=positive_int, default=3,
                   help="keep the best 1/eta of the trials at each rung (default 3)")
    p.add_argument("--min-fraction", type=fraction, default=0.1,
                   help="shortest prefix of the stream a trial replays (default 0.1)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="parallel trials (default: the number of cores)")
    p.add_argument("--out", type=Path, default=None, help="also write the TOML here")
    p.set_defaults(func=run)


def _count_records(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def run(args: argparse.Namespace) -> int:
    from stream_rnn.io.scenario import load_scenario
    from stream_rnn.replay import model_params, replay, summarize
    from stream_rnn.tuning import (
        DEFAULT_METRICS,
        ScenarioObjective,
        is_error_metric,
        network_space,
        successive_halving,
    )

    err = sys.stderr
    if args.eta < 2:
        err.write("stream-rnn tune: --eta must be >= 2\n")
        return EXIT_INPUT_ERROR
    try:
        scenario = load_scenario(args.scenario)
    except (OSError, ValueError) as exc:
        err.write(f"stream-rnn tune: {exc}\n")
        return EXIT_INPUT_ERROR
    metric = args.metric or DEFAULT_METRICS[scenario.task]
    space = network_space(scenario.task)
    base = {name: value for name, value in model_params(scenario).items()
            if name in space.dimensions}
    total = _count_records(Path(scenario.events_path))
    objective = ScenarioObjective(str(args.scenario), metric, total)
    # A misspelt --metric would otherwise rank every trial by its loss without a word, and
    # a bad [model] would fail in every worker: one short replay here catches both.
    try:
        known = summarize(replay(scenario, limit=max(1, round(total * args.min_fraction))))
    except ValueError as exc:  # a ReplayError, or a model whose lazy build refuses [model]
        err.write(f"stream-rnn tune: {exc}\n")
        return EXIT_INPUT_ERROR
    if metric not in known:
        numeric = sorted(k for k, v in known.items() if isinstance(v, int | float) or v is None)
        err.write(f"stream-rnn tune: unknown metric {metric!r}; the summary has "
                  f"{', '.join(numeric)}\n")
        return EXIT_INPUT_ERROR
    workers = args.workers or os.cpu_count() or 1
    started = time.perf_counter()
    result = successive_halving(
        objective, space, trials=args.trials, seed=args.seed, eta=args.eta,
        min_fraction=args.min_fraction, workers=workers, base=base,
        progress=lambda line: print(line, file=err, flush=True))
    elapsed = time.perf_counter() - started
    best = result.best
    final = best.measurements[-1]
    baseline = result.trials[0]
    sign = -1 if is_error_metric(metric) else 1
    comment = (
        f"stream-rnn tune {scenario.name}: best of {args.trials} trials (seed {args.seed}), "
        f"{metric} {sign * final.score:.4g} on the whole stream\n"
        f"the scenario's own [model]: {_baseline_text(baseline, result.fractions, metric, sign)}\n"
        f"{elapsed:.0f} s with {workers} worker(s)")
    text = _serve_config(scenario, model_params(scenario, best.params), comment)
    sys.stdout.write(text)
    if args.out is not None:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            err.write(f"stream-rnn tune: cannot write {args.out}: {exc}\n")
            return EXIT_INPUT_ERROR
    return 0


def _baseline_text(trial, fractions: tuple[float, ...], metric: str, sign: int) -> str:
    m = trial.measurements[-1]
    where = f"on {fractions[trial.rungs - 1]:.0%} of the stream"
    if math.isfinite(m.score):
        return f"{metric} {sign * m.score:.4g} {where}"
    return f"{metric} undefined, training loss {m.loss:.4g} {where}"


def _serve_config(scenario, params: dict, comment: str) -> str:
    """The tuned model as ``serve`` reads it: ``[events]`` key fields, ``[model]`` network
    fields and ``[model.params]`` the task's own (a forecast's ``target``, ...)."""
    from dataclasses import fields

    from stream_rnn.config import ModelConfig, dump_toml

    network = {f.name for f in fields(ModelConfig)} - {"task", "params"}
    model: dict = {"task": scenario.task}
    model.update(sorted((k, v) for k, v in params.items() if k in network))
    own = dict(sorted((k, v) for k, v in params.items() if k not in network and k != "params"))
    if own:
        model["params"] = own
    return dump_toml({"events": {"key_fields": list(scenario.keys)}, "model": model},
                     comment=comment)
