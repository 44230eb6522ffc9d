"""The daemon's configuration: one frozen object built from file < environment < flags.

The file is TOML (``deploy/stream-rnn.toml`` documents every field). Environment
variables override it as ``STREAM_RNN_<SECTION>__<FIELD>`` (for example
``STREAM_RNN_KAFKA__BOOTSTRAP=broker:9092``); command-line flags override both. This is
the only module that reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "KafkaConfig",
    "EventsConfig",
    "ModelConfig",
    "ScoringConfig",
    "StateConfig",
    "MetricsConfig",
    "LimitsConfig",
    "ConfigError",
    "TaskParams",
    "load",
    "env_var",
    "dump_toml",
]

ENV_PREFIX = "STREAM_RNN_"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class KafkaConfig:
    """Brokers, topics, consumer group and client security settings."""

    bootstrap: str = "127.0.0.1:9092"
    input_topics: tuple[str, ...] = ("events",)
    output_topic: str = "scores"
    dlq_topic: str = "dead-letters"
    labels_topic: str | None = None
    group: str = "stream-rnn"
    client_id: str = "stream-rnn"
    compression: str | None = None
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    #: Longest the broker may hold a fetch. Apache Kafka answers as soon as a record is
    #: there, so this only paces idle fetches; a broker that holds every fetch toward its
    #: whole wait (Tansu, measured: median delivery 18 ms at 100, 3 ms at 10) adds up to
    #: this much to every event's latency: set 10 there.
    fetch_max_wait_ms: int = 100
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    #: Client library: "kafka-python" (pure Python) or "librdkafka" (confluent-kafka).
    client: str = "kafka-python"
    #: Partition assignor of the group (every instance must name the same one).
    assignor: str = "range"

    def __post_init__(self) -> None:
        if self.client not in KAFKA_CLIENTS:
            raise ConfigError(f"kafka.client: unknown client {self.client!r}; "
                              f"known: {', '.join(KAFKA_CLIENTS)}")
        if self.assignor not in KAFKA_ASSIGNORS:
            raise ConfigError(f"kafka.assignor: unknown assignor {self.assignor!r}; "
                              f"known: {', '.join(KAFKA_ASSIGNORS)}")


#: Values of ``[kafka] client``.
KAFKA_CLIENTS = ("kafka-python", "librdkafka")
#: Values of ``[kafka] assignor`` (those of ``stream_rnn.io.ASSIGNORS``; this module reads no
#: client code). ``cooperative-sticky`` moves only the partitions that change owner.
KAFKA_ASSIGNORS = ("range", "roundrobin", "cooperative-sticky")


@dataclass(frozen=True)
class EventsConfig:
    """How input records are read."""

    key_fields: tuple[str, ...] = ("key",)
    max_bytes: int = 65_536


class TaskParams(Mapping[str, Any]):
    """The ``[model.params]`` table: task-specific parameters, read-only and hashable.

    Values are TOML scalars or arrays of them (arrays are kept as tuples).

    Examples
    --------
    >>> params = TaskParams({"target": "demand", "windows_days": [1, 7]})
    >>> dict(params), params == {"target": "demand", "windows_days": (1, 7)}
    ({'target': 'demand', 'windows_days': (1, 7)}, True)
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        frozen: dict[str, Any] = {}
        for name, value in (items or {}).items():
            if isinstance(value, list | tuple):
                value = tuple(value)
            if isinstance(value, Mapping) or (isinstance(value, tuple) and any(
                    isinstance(v, Mapping | list | tuple) for v in value)):
                raise ConfigError(f"model.params.{name}: expected a value or a list of "
                                  f"values, got {value!r}")
            frozen[name] = value
        self._items = frozen

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __repr__(self) -> str:
        return f"TaskParams({self._items!r})"


@dataclass(frozen=True)
class ModelConfig:
    """The model each partition runs (one per task type: ``sensor``, ``forecast`` or
    ``fraud``), its recurrent networks, and the task's own parameters (``params``, the
    ``[model.params]`` table; ``stream_rnn.tasks`` lists them per task)."""

    task: str = "sensor"
    cell: str = "lstm"
    hidden_size: int = 32
    num_layers: int = 1
    window: int = 16
    update_every: int = 16
    optimizer: str = "adam"
    lr: float = 0.005
    clip_norm: float | None = 1.0
    seed: int = 0
    dtype: str = "float32"
    params: TaskParams = TaskParams()


@dataclass(frozen=True)
class ScoringConfig:
    """Turning scores into flags."""

    threshold: float = 0.999


@dataclass(frozen=True)
class StateConfig:
    """Checkpoints and the bound on per-key state."""

    checkpoint_dir: str = "./checkpoints"
    checkpoint_every_events: int = 50_000
    checkpoint_every_seconds: float = 30.0
    max_keys_per_partition: int = 100_000
    warm_start: str | None = None


@dataclass(frozen=True)
class MetricsConfig:
    """The ``/metrics`` endpoint and which keys get live per-key gauges."""

    addr: str = "127.0.0.1:9464"
    live_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    """Batching, timeouts and shutdown."""

    max_poll_records: int = 2_000
    poll_timeout_seconds: float = 0.2
    shutdown_timeout_seconds: float = 25.0
    max_backoff_seconds: float = 10.0
    #: Outputs and dead letters sent but not yet acknowledged beyond which the runner stops
    #: to wait for them (checked after each poll). Below it, it only waits before a
    #: checkpoint, a revocation or a stop.
    max_unacked_outputs: int = 10_000

    def __post_init__(self) -> None:
        if self.max_unacked_outputs < 1:
            raise ConfigError(f"limits.max_unacked_outputs: must be >= 1, got "
                              f"{self.max_unacked_outputs}")


@dataclass(frozen=True)
class Config:
    """Everything ``stream-rnn serve`` needs."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


def env_var(section: str, name: str) -> str:
    """The environment variable overriding ``section.name``."""
    return f"{ENV_PREFIX}{section.upper()}__{name.upper()}"


def _coerce(section: str, name: str, annotation: Any, value: Any) -> Any:
    """``value`` (from TOML or a string from the environment/CLI) as the field's type."""
    where = f"{section}.{name}"
    hint = annotation
    if hint is TaskParams:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {annotation!r}")


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def load(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults < TOML file < environment < ``overrides``.

    ``overrides`` maps ``"section.field"`` to a value (the CLI's flags). Unknown sections
    or fields in any layer are errors, so a typo never silently falls back to a default.

    Examples
    --------
    >>> cfg = load(env={"STREAM_RNN_KAFKA__BOOTSTRAP": "b:9092"},
    ...            overrides={"kafka.input_topics": "a,b"})
    >>> cfg.kafka.bootstrap, cfg.kafka.input_topics
    ('b:9092', ('a', 'b'))
    """
    env = os.environ if env is None else env
    sections = _sections()
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}

    def put(section: str, name: str, value: Any, origin: str) -> None:
        if section not in sections:
            raise ConfigError(f"{origin}: unknown section {section!r}; "
                              f"known: {', '.join(sections)}")
        hints = typing.get_type_hints(sections[section])
        if section == "model" and name.startswith(("params__", "params.")):
            # One task parameter from the environment or a flag: a TOML value, or else
            # the text itself (so target=demand needs no quotes).
            param = name[len("params__"):] if name.startswith("params__") else name[7:]
            if not param:
                raise ConfigError(f"{origin}: no parameter name after model.params")
            if isinstance(value, str):
                try:
                    value = tomllib.loads(f"v = {value}")["v"]
                except tomllib.TOMLDecodeError:
                    pass
            values["model"].setdefault("params", {})[param] = value
            return
        if name not in hints:
            raise ConfigError(f"{origin}: unknown field {section}.{name}; "
                              f"known: {', '.join(hints)}")
        values[section][name] = _coerce(section, name, hints[name], value)

    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such configuration file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: {section!r} must be a table")
            for name, value in table.items():
                put(section, name, value, str(path))
    for var, value in env.items():
        if var.startswith(ENV_PREFIX) and "__" in var:
            section, _, name = var[len(ENV_PREFIX):].partition("__")
            put(section.lower(), name.lower(), value, f"environment {var}")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = dotted.partition(".")
        put(section, name, value, f"option {dotted}")
    if "params" in values["model"]:
        values["model"]["params"] = TaskParams(values["model"]["params"])
    built = {name: sections[name](**values[name]) for name in sections}
    config = Config(**built)
    _check_task(config)
    return config


def _check_task(config: Config) -> None:
    """The task exists, the ``[model]`` fields apply to it, and its parameters are known,
    of the right types and acceptable to its model."""
    # Imported here: the task models pull in the compiled kernels, which configuration
    # errors should not wait for.
    from stream_rnn import tasks

    model = config.model
    if model.task not in tasks.TASKS:
        raise ConfigError(f"model.task: unknown task {model.task!r}; "
                          f"known: {', '.join(sorted(tasks.TASKS))}")
    network = {name: getattr(model, name) for name in tasks.NETWORK_FIELDS}
    try:
        tasks.check_params(model.task, {**network, "params": model.params},
                           config.events.key_fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc) if str(exc).startswith("model.")
                          else f"model ({model.task} task): {exc}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"TOML configuration values must be finite, got {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML configuration value")


def dump_toml(sections: Mapping[str, Mapping[str, Any]], comment: str = "") -> str:
    """TOML text of ``sections`` that :func:`load` reads back; a mapping value becomes a
    sub-table (``[model.params]``), None values are left out (the default applies).

    >>> print(dump_toml({"model": {"cell": "gru", "lr": 0.003, "params": {"target": "x"}}},
    ...                 comment="tuned"), end="")
    # tuned
    <BLANKLINE>
    [model]
    cell = "gru"
    lr = 0.003
    <BLANKLINE>
    [model.params]
    target = "x"
    """
    lines = [f"# {line}" for line in comment.splitlines()]

    def table(name: str, values: Mapping[str, Any]) -> None:
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items()
                     if not isinstance(value, Mapping) and value is not None)
        for key, value in values.items():
            if isinstance(value, Mapping):
                table(f"{name}.{key}", value)

    for section, values in sections.items():
        table(section, values)
    return "\n".join(lines) + "\n"

