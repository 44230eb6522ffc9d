"""``FraudDetector``: a streaming fraud scorer over several entity keys per event, with
recurrent per-entity state and a head trained on delayed labels."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from river import base

from stream_rnn.cells import fraud_kernels as FK
from stream_rnn.cells.network import Network
from stream_rnn.state.store import KeyedState

__all__ = ["FraudDetector"]

_DAY = 86400.0


def _parse_ts(value: Any) -> float:
    """Event time as POSIX seconds: ISO 8601 text (``Z`` or an offset; naive means UTC),
    a ``datetime``, or a number of seconds."""
    if type(value) is str or isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"field 'ts' is not an ISO 8601 time: {value!r}") from None
    elif isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool):
        t = float(value)
        if not math.isfinite(t):
            raise ValueError(f"field 'ts' is not finite: {value!r}")
        return t
    else:
        raise ValueError(f"field 'ts' is not a time: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


# Key types read without further checks: always hashable, never NaN.
_PLAIN_KEYS = {str, int}


def _check_key(field: str, key: Any) -> None:
    if key is None:
        raise ValueError(f"key field {field!r} is missing")
    try:
        hash(key)
    except TypeError:
        raise ValueError(f"key field {field!r} is not a usable key: {key!r}") from None
    if isinstance(key, float) and math.isnan(key):
        raise ValueError(f"key field {field!r} is not a usable key: {key!r}")


def _as_label(label: Any) -> float:
    try:
        v = float(label)
    except (TypeError, ValueError):
        raise ValueError(f"label must be 0 or 1, got {label!r}") from None
    if v not in (0.0, 1.0):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    return v


class FraudDetector(base.AnomalyDetector):
    """Fraud probability of each transaction from the recurrent histories of all the
    entities it involves (its card, its terminal, ...) and from labels revealed so far.

    Every key field named in ``keys`` has its own store of per-entity state, bounded by
    ``max_keys`` with least-recently-used eviction, and (with ``recurrent``) its own
    recurrent network. The network reads an entity's previous log-amount, the gap since
    it and the event's clock, and forecasts the event's log-amount as a Gaussian; it learns
    from that forecast at every event (truncated BPTT), so it needs no labels. Its hidden
    state, forecast and standardized surprise enter a supervised head (a one-hidden-layer
    network, or a logistic regression with ``head_hidden=0``), next to engineered features:
    clock, amount, EW counts and mean log-amounts per entity over ``windows_days``, and
    per-entity tallies of the labels revealed so far (EW fraud rates by transaction time,
    recency of the latest revealed fraud).

    Labels arrive late. ``learn_one`` moves every entity's state and keeps the event's
    feature row, as it was when the event was scored, until :meth:`reveal_label` brings
    its label: then the head takes one step on that row and the label is tallied into the
    entities' rows. The model never reads a ``label`` field of an event. Until the head
    has learned ``cold_start`` frauds its probability is blended with an unsupervised one
    from the largest recurrent surprise.

    Parameters
    ----------
    keys
        Fields of an event that name entities (any number, at least one).
    amount
        Name of the amount, read from ``event["features"]`` or else from the event.
    time_field
        Field with the event time (ISO 8601 text, a ``datetime`` or POSIX seconds).
    id_field
        Field with the transaction id that :meth:`reveal_label` refers to.
    windows_days
        Time constants (days) of the exponentially weighted aggregates and label tallies.
    recurrent
        Keep a recurrent network per key field and feed it to the head (``False`` is the
        ablation without recurrent state).
    state_features
        Feed the recurrent hidden states to the head, besides the forecast and surprise.
    aggregates
        Feed the engineered activity and amount aggregates to the head (label tallies are
        always fed).
    cell, hidden_size, window, update_every, rnn_lr
        The recurrent networks (see :class:`~stream_rnn.cells.network.Network`).
    scale_memory
        Events after which an entity's running amount statistics become an EW average.
    head_hidden
        Hidden units of the head; ``0`` for a logistic regression.
    head_lr, head_weight_decay
        Adam step size and L2 penalty of the head.
    head_batch
        Labels whose mean gradient makes one step of the head.
    norm_memory
        Labelled examples after which the head's input statistics become an EW average.
    cold_start
        Frauds the head must have learned before its probability is used alone; until
        then it is blended with the unsupervised one, whose weight falls linearly from 1.
        ``0`` disables the blend.
    prior
        Fraud probability assumed before any label: the untrained head's output, and the
        unsupervised score of an unsurprising event.
    max_keys
        Entities kept per key field.
    max_pending
        Scored events whose feature rows wait for a label; the oldest is dropped beyond.
    seed
        Seeds every network.

    Examples
    --------
    >>> from stream_rnn.models import FraudDetector
    >>> model = FraudDetector(hidden_size=4, head_hidden=4, seed=0)
    >>> event = {"ts": "2018-04-01T10:00:00Z", "key": "c1", "terminal": "t9",
    ...          "tx_id": 1, "features": {"amount": 42.0}}
    >>> print(f"{model.score_one(event):.3f}")
    0.010
    >>> model.learn_one(event)
    >>> model.reveal_label(1, 1)
    True
    >>> model.n_keys
    {'key': 1, 'terminal': 1}
    >>> model.score_one({**event, "label": 0}) == model.score_one({**event, "label": 1})
    True
    """

    def __init__(
        self,
        keys: Sequence[str] = ("key", "terminal"),
        amount: str = "amount",
        time_field: str = "ts",
        id_field: str = "tx_id",
        windows_days: Sequence[float] = (1.0, 7.0, 30.0),
        recurrent: bool = True,
        state_features: bool = False,
        aggregates: bool = True,
        cell: str = "gru",
        hidden_size: int = 8,
        window: int = 8,
        update_every: int = 8,
        rnn_lr: float = 0.005,
        scale_memory: int = 500,
        head_hidden: int = 32,
        head_lr: float = 0.001,
        head_weight_decay: float = 0.0,
        head_batch: int = 8,
        norm_memory: int = 100_000,
        cold_start: float = 50.0,
        prior: float = 0.01,
        max_keys: int = 100_000,
        max_pending: int = 200_000,
        seed: int = 0,
    ) -> None:
        self.keys = keys
        self.amount = amount
        self.time_field = time_field
        self.id_field = id_field
        self.windows_days = windows_days
        self.recurrent = recurrent
        self.state_features = state_features
        self.aggregates = aggregates
        self.cell = cell
        self.hidden_size = hidden_size
        self.window = window
        self.update_every = update_every
        self.rnn_lr = rnn_lr
        self.scale_memory = scale_memory
        self.head_hidden = head_hidden
        self.head_lr = head_lr
        self.head_weight_decay = head_weight_decay
        self.head_batch = head_batch
        self.norm_memory = norm_memory
        self.cold_start = cold_start
        self.prior = prior
        self.max_keys = max_keys
        self.max_pending = max_pending
        self.seed = seed
        self._validate()
        self._build()

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden_size": 4, "head_hidden": 4, "window": 4, "update_every": 2}
        yield {"recurrent": False, "head_hidden": 0, "keys": ("key",)}

    @property
    def _is_stochastic(self) -> bool:
        return True

    # ------------------------------------------------------------- building

    def _validate(self) -> None:
        if isinstance(self.keys, str) or len(self.keys) < 1:
            raise ValueError(f"keys must be a sequence of field names, got {self.keys!r}")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"keys must be distinct, got {self.keys!r}")
        if len(self.windows_days) < 1 or not all(w > 0 for w in self.windows_days):
            raise ValueError(f"windows_days must be positive, got {self.windows_days!r}")
        for name in ("max_keys", "max_pending", "norm_memory", "head_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.head_hidden < 0:
            raise ValueError(f"head_hidden must be >= 0, got {self.head_hidden!r}")
        if not self.head_lr > 0:
            raise ValueError(f"head_lr must be > 0, got {self.head_lr!r}")
        if not 0.0 < self.prior < 1.0:
            raise ValueError(f"prior must be in (0, 1), got {self.prior!r}")
        if self.cold_start < 0:
            raise ValueError(f"cold_start must be >= 0, got {self.cold_start!r}")

    def _build(self) -> None:
        W = len(self.windows_days)
        self._taus = np.asarray(self.windows_days, dtype=np.float64) * _DAY
        self._agg_width = FK.agg_columns(W)["width"]
        self._c_gen = FK.agg_columns(W)["gen"]
        self._n_ent = FK.entity_feature_count(W)
        self._n_state = self.hidden_size if self.state_features else 0
        self._n_rnn = FK.rnn_feature_count(self._n_state) if self.recurrent else 0
        n_fields = len(self.keys)
        self.n_features = FK.N_AMOUNT + FK.N_CLOCK + n_fields * (self._n_ent + self._n_rnn)
        self._nets: list[Network | None] = []
        self._stores: list[KeyedState] = []
        for f in range(n_fields):
            templates = {"agg": np.zeros((1, self._agg_width)),
                         "prep": np.zeros((1, FK.N_PREP))}
            net = None
            if self.recurrent:
                net = Network(cell=self.cell, input_size=FK.PREP_INPUTS,
                              hidden_size=self.hidden_size, target_size=1, loss="gaussian",
                              window=self.window, update_every=self.update_every,
                              optimizer="adam", lr=self.rnn_lr, clip_norm=1.0,
                              seed=self.seed + 7919 * f)
                templates.update(net.keyed_arrays(1))
            self._nets.append(net)
            self._stores.append(KeyedState(templates, max_keys=self.max_keys))
        F = self.n_features
        self._theta = FK.head_init(F, self.head_hidden, self.seed, self.prior)
        self._prior_logit = math.log(self.prior / (1.0 - self.prior))
        self._adam = np.zeros((4, self._theta.shape[0]))
        self._norm = np.zeros((3, F))
        self._counters = np.zeros(3, dtype=np.int64)
        # Pending feature rows: a ring indexed by learned-event sequence number.
        cap = int(self.max_pending)
        self._buf_x = np.zeros((cap, F))
        self._buf_ts = np.zeros(cap)
        self._buf_slots = np.zeros((cap, n_fields), dtype=np.int64)
        self._buf_gen = np.zeros((cap, n_fields))
        self._buf_tx: list[Hashable | None] = [None] * cap
        self._pending: dict[Hashable, int] = {}
        self._seq = 0
        self.n_pending_dropped = 0
        self.n_unknown_reveals = 0
        # Surprise columns in the feature row, for the cold-start blend.
        z_cols = []
        if self.recurrent:
            k = FK.N_AMOUNT + FK.N_CLOCK
            for _ in range(n_fields):
                z_cols.append(k + self._n_ent + 1)
                k += self._n_ent + self._n_rnn
        self._z_cols = np.asarray(z_cols, dtype=np.int64)

    # ------------------------------------------------------------- input checks

    def _parse(self, event: Mapping[str, Any]) -> tuple[float, float, list[Hashable], Any]:
        """``(ts, log1p(amount), keys, tx_id)`` of an event, or a ValueError naming the
        field; nothing is read but these fields (never a label)."""
        # Exact-type tests first: they are the common case and far cheaper than the ABC
        # isinstance checks that follow them.
        if type(event) is not dict and not isinstance(event, Mapping):
            raise ValueError(f"an event must be a mapping, got {type(event).__name__}")
        keys = []
        for field in self.keys:
            k = event.get(field)
            if type(k) is not str:
                _check_key(field, k)
            keys.append(k)
        if self.time_field not in event:
            raise ValueError(f"field {self.time_field!r} is missing")
        try:
            ts = _parse_ts(event[self.time_field])
        except ValueError as exc:
            raise ValueError(str(exc).replace("'ts'", repr(self.time_field))) from None
        feats = event.get("features")
        if (type(feats) is dict or isinstance(feats, Mapping)) and self.amount in feats:
            value = feats[self.amount]
        elif self.amount in event:
            value = event[self.amount]
        else:
            raise ValueError(f"field {self.amount!r} is missing")
        if type(value) is float:
            amount = value
        else:
            if isinstance(value, bool):
                raise ValueError(f"field {self.amount!r} is not numeric: {value!r}")
            try:
                amount = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"field {self.amount!r} is not numeric: {value!r}") from None
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"field {self.amount!r} must be finite and >= 0, got {value!r}")
        return ts, math.log1p(amount), keys, event.get(self.id_field)

    # ------------------------------------------------------------- scoring

    def score_one(self, x: Mapping[str, Any], **kwargs: Any) -> float:
        """Fraud probability of event ``x`` from the current state; changes nothing."""
        ts, la, keys, _ = self._parse(x)
        n_fields = len(self.keys)
        aggs = []
        rnn = np.zeros((n_fields, max(self._n_rnn, 1)))
        ts_a = np.array([ts])
        la_a = np.array([la])
        for f, key in enumerate(keys):
            store = self._stores[f]
            slot = store.get(key)
            arrays = store.arrays
            # Copies of the entity's rows (zeros for a new entity): scoring must not move them.
            agg = arrays["agg"][slot:slot + 1].copy() if slot >= 0 else np.zeros(
                (1, self._agg_width))
            aggs.append(agg)
            net = self._nets[f]
            if net is None:
                continue
            prep = arrays["prep"][slot:slot + 1].copy() if slot >= 0 else np.zeros(
                (1, FK.N_PREP))
            U = np.empty((1, FK.PREP_INPUTS), dtype=net.dtype)
            Y = np.empty((1, 1), dtype=net.dtype)
            valid = np.empty(1, dtype=np.bool_)
            FK.prepare_inputs(np.zeros(1, np.int64), np.zeros(1, np.bool_), ts_a, la_a, prep,
                              float(self.scale_memory), 10.0, U, Y, valid)
            if valid[0]:
                state = arrays["state"][slot] if slot >= 0 else net.initial_state()
                new_state, out = net.step(state, U[0])
                FK.rnn_features(out, Y[0, 0], new_state[-1], self._n_state, rnn[f])
        x_row = np.empty(self.n_features)
        return float(FK.score_single(
            ts, la, np.zeros(n_fields, np.int64), tuple(aggs), rnn, self._taus,
            bool(self.aggregates), bool(self.recurrent), self._n_ent, self._n_rnn,
            self._theta, self._norm, self.head_hidden, float(self._counters[1]),
            float(self.cold_start), self._z_cols, self._prior_logit, x_row))

    def learn_one(self, x: Mapping[str, Any], **kwargs: Any) -> None:
        """Move every entity of event ``x`` forward and keep its feature row for its label."""
        self.score_learn_many([x])

    def reveal_label(self, tx_id: Hashable, label: Any) -> bool:
        """Train on the label of learned transaction ``tx_id``, now; ``False`` if it is not
        waiting for one (unknown, already revealed, or dropped from the pending buffer)."""
        lab = _as_label(label)
        row = self._pending.pop(tx_id, None)
        if row is None:
            self.n_unknown_reveals += 1
            return False
        self._buf_tx[row] = None
        self._run(np.empty(0), np.empty(0), np.empty((0, len(self.keys)), np.int64),
                  np.empty((0, len(self.keys)), np.bool_), np.zeros(1, np.int64),
                  np.array([row], np.int64), np.array([lab]), np.empty(0, np.int64))
        return True

    def score_learn_many(
        self,
        events: Sequence[Mapping[str, Any]],
        reveals: Iterable[tuple[int, Hashable, Any]] = (),
    ) -> np.ndarray:
        """Batch path: for each event in order, apply the reveals due before it, score it,
        then learn from it; returns the scores.

        ``reveals`` holds ``(position, tx_id, label)`` sorted by position: the label is
        revealed just before ``events[position]`` is scored (``position == len(events)``:
        after the last one). The result, and every state, equals the loop
        ``reveal_label``/``score_one``/``learn_one`` over the same sequence. All events are
        checked before anything changes.
        """
        n = len(events)
        n_fields = len(self.keys)
        columns = self._columns(events)
        if columns is None:
            parsed = [self._parse(e) for e in events]
            ts = np.fromiter((p[0] for p in parsed), dtype=np.float64, count=n)
            la = np.fromiter((p[1] for p in parsed), dtype=np.float64, count=n)
            keys = [[p[2][f] for p in parsed] for f in range(n_fields)]
            tx_ids = [p[3] for p in parsed]
        else:
            ts, la, keys, tx_ids = columns
        rev_pos, rev_tx, rev_lab = self._check_reveals(reveals, n)
        slots = np.empty((n, n_fields), dtype=np.int64)
        resets = np.empty((n, n_fields), dtype=np.bool_)
        for f in range(n_fields):
            slots[:, f], resets[:, f] = self._stores[f].slots_for(keys[f])
        assigned = self._assign_rows(tx_ids, rev_pos, rev_tx, rev_lab)
        if assigned is None:
            assigned = self._assign_rows_in_turn(tx_ids, rev_pos, rev_tx, rev_lab)
        rows, rev_pos, rev_row, rev_lab = assigned
        return self._run(ts, la, slots, resets, rev_pos, rev_row, rev_lab, rows)

    def _columns(self, events: Sequence[Mapping[str, Any]]
                 ) -> tuple[np.ndarray, np.ndarray, list[list[Any]], list[Any]] | None:
        """``(ts, log1p(amount), keys per field, tx_ids)`` of a batch whose events all
        take the common form (dicts, string or integer keys, times in seconds, a float
        amount in ``features``), read column by column; None for anything else, which
        :meth:`_parse` then reads event by event (and names what is wrong)."""
        if set(map(type, events)) != {dict}:
            return None
        keys = []
        for field in self.keys:
            column = [e.get(field) for e in events]
            if not set(map(type, column)) <= _PLAIN_KEYS:
                return None
            keys.append(column)
        time_field = self.time_field
        times = [e.get(time_field) for e in events]
        if set(map(type, times)) != {float}:
            return None
        ts = np.array(times, dtype=np.float64)
        features = [e.get("features") for e in events]
        if set(map(type, features)) != {dict}:
            return None
        amount = self.amount
        values = [f.get(amount) for f in features]
        if set(map(type, values)) != {float}:
            return None
        amounts = np.array(values, dtype=np.float64)
        if not (np.isfinite(ts).all() and np.isfinite(amounts).all() and (amounts >= 0).all()):
            return None
        la = np.fromiter(map(math.log1p, values), dtype=np.float64, count=len(values))
        id_field = self.id_field
        return ts, la, keys, [e.get(id_field) for e in events]

    @staticmethod
    def _check_reveals(reveals: Iterable[tuple[int, Hashable, Any]], n: int
                       ) -> tuple[list[int], list[Hashable], list[float]]:
        """Positions, transaction ids and labels (as floats) of ``reveals``, checked."""
        rev = list(reveals)
        if not rev:
            return [], [], []
        positions = [r[0] for r in rev]
        tx_ids = [r[1] for r in rev]
        labels = [r[2] for r in rev]
        if set(map(type, labels)) <= {int, float} and set(labels) <= {0, 1}:
            labels = [float(v) for v in labels]
        else:
            labels = [_as_label(v) for v in labels]
        plain = set(map(type, positions)) == {int}
        if plain:
            p = np.array(positions, dtype=np.int64)
        if not (plain and p[0] >= 0 and p[-1] <= n and bool((p[1:] >= p[:-1]).all())):
            last = 0
            for pos in positions:
                if not (isinstance(pos, int | np.integer) and last <= pos <= n):
                    raise ValueError(f"reveal positions must be sorted integers in [0, {n}]")
                last = pos
        return positions, tx_ids, labels

    def _assign_rows(self, tx_ids: list[Any], rev_pos: list[int], rev_tx: list[Hashable],
                     rev_lab: list[float]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Pending rows of a batch's events and the rows its reveals train on, at once:
        for the usual batch (new, distinct transaction ids; free rows ahead; reveals of
        earlier transactions only) nothing depends on the order of the two. None for any
        other batch, which :meth:`_assign_rows_in_turn` resolves step by step."""
        n = len(tx_ids)
        pending = self._pending
        buf_tx = self._buf_tx
        cap = self.max_pending
        if n > cap or None in tx_ids:
            return None
        try:
            batch_ids = set(tx_ids)
            if len(batch_ids) != n or not pending.keys().isdisjoint(batch_ids):
                return None
            found = [pending.get(tx) for tx in rev_tx]
            unknown = [tx for tx, row in zip(rev_tx, found, strict=True) if row is None]
            if not batch_ids.isdisjoint(unknown):
                return None
        except TypeError:
            return None
        start = self._seq % cap
        ahead = buf_tx[start:start + n] + buf_tx[:max(start + n - cap, 0)]
        if ahead.count(None) != n:
            return None
        rev_row = [r for r in found if r is not None]
        # A transaction revealed twice in the batch resolves only the first time.
        if len(set(rev_row)) != len(rev_row):
            return None
        for tx in rev_tx:
            row = pending.pop(tx, None)
            if row is not None:
                buf_tx[row] = None
        self.n_unknown_reveals += len(unknown)
        keep = [r is not None for r in found]
        rows = (self._seq + np.arange(n, dtype=np.int64)) % cap
        self._seq += n
        pending.update(zip(tx_ids, rows.tolist(), strict=True))
        end = start + n
        buf_tx[start:min(end, cap)] = tx_ids[:cap - start]
        if end > cap:
            buf_tx[:end - cap] = tx_ids[cap - start:]
        return (rows, np.asarray(rev_pos, dtype=np.int64)[keep],
                np.asarray(rev_row, dtype=np.int64),
                np.asarray(rev_lab, dtype=np.float64)[keep])

    def _assign_rows_in_turn(self, tx_ids: list[Any], rev_pos: list[int],
                             rev_tx: list[Hashable], rev_lab: list[float]
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What :meth:`_assign_rows` does, following the batch step by step: reveals
        resolved in order with the rows assigned so far, as the per-event loop would."""
        n = len(tx_ids)
        rows = np.full(n, -1, dtype=np.int64)
        out_pos = np.empty(len(rev_pos), dtype=np.int64)
        out_row = np.empty(len(rev_pos), dtype=np.int64)
        out_lab = np.empty(len(rev_pos), dtype=np.float64)
        kept = 0
        j = 0
        cap = self.max_pending
        pending = self._pending
        buf_tx = self._buf_tx
        for i in range(n + 1):
            while j < len(rev_pos) and rev_pos[j] <= i:
                row = pending.pop(rev_tx[j], None)
                if row is None:
                    self.n_unknown_reveals += 1
                else:
                    buf_tx[row] = None
                    out_pos[kept] = i
                    out_row[kept] = row
                    out_lab[kept] = rev_lab[j]
                    kept += 1
                j += 1
            if i == n:
                break
            tx_id = tx_ids[i]
            if tx_id is not None:
                row = self._seq % cap
                self._seq += 1
                old = buf_tx[row]
                if old is not None:
                    del pending[old]
                    self.n_pending_dropped += 1
                if tx_id in pending:
                    buf_tx[pending.pop(tx_id)] = None
                pending[tx_id] = row
                buf_tx[row] = tx_id
                rows[i] = row
        return rows, out_pos[:kept], out_row[:kept], out_lab[:kept]

    def _run(self, ts: np.ndarray, la: np.ndarray, slots: np.ndarray, resets: np.ndarray,
             rev_pos: np.ndarray, rev_row: np.ndarray, rev_lab: np.ndarray, rows: np.ndarray
             ) -> np.ndarray:
        n = ts.shape[0]
        n_fields = len(self.keys)
        rnn = np.zeros((n, n_fields, max(self._n_rnn, 1)))
        if self.recurrent and n:
            for f, net in enumerate(self._nets):
                arrays = self._stores[f].arrays
                U = np.empty((n, FK.PREP_INPUTS), dtype=net.dtype)
                Y = np.empty((n, 1), dtype=net.dtype)
                valid = np.empty(n, dtype=np.bool_)
                FK.prepare_inputs(slots[:, f].copy(), resets[:, f].copy(), ts, la,
                                  arrays["prep"], float(self.scale_memory), 10.0, U, Y, valid)
                feats = np.empty((n, self._n_rnn))
                ws = net._workspace
                FK.rnn_pass(net.cfg, net.hyper, net.offs, net.theta, net.grad, net.opt,
                            net.counters, net.rng, *ws,
                            arrays["state"], arrays["snapshot"], arrays["window_inputs"],
                            arrays["window_targets"], arrays["window_len"], arrays["pending"],
                            slots[:, f].copy(), resets[:, f].copy(), U, Y, valid, self._n_state,
                            feats)
                rnn[:, f, :] = feats
        aggs = tuple(store.arrays["agg"] for store in self._stores)
        scores = np.empty(n)
        FK.score_learn_batch(
            ts, la, slots, resets, aggs, rnn, self._taus, bool(self.aggregates),
            bool(self.recurrent), self._n_ent, self._n_rnn, rev_pos, rev_row, rev_lab,
            self._buf_x, self._buf_ts, self._buf_slots, self._buf_gen, rows,
            self._theta, self._adam, self._norm, self.head_hidden, float(self.head_lr),
            float(self.norm_memory), float(self.head_weight_decay), float(self.head_batch),
            self._counters,
            float(self.cold_start), self._z_cols, self._prior_logit, scores)
        return scores

    # ------------------------------------------------------------- introspection

    @property
    def n_keys(self) -> dict[str, int]:
        """Entities holding state, per key field."""
        return {field: len(store) for field, store in zip(self.keys, self._stores,
                                                          strict=True)}

    @property
    def n_evictions(self) -> dict[str, int]:
        """Entities evicted to keep at most ``max_keys``, per key field."""
        return {field: store.evictions for field, store in zip(self.keys, self._stores,
                                                               strict=True)}

    @property
    def n_pending(self) -> int:
        """Learned events waiting for their label."""
        return len(self._pending)

    @property
    def n_labels_learned(self) -> int:
        """Labels the head has been trained on."""
        return int(self._counters[0])

    @property
    def n_frauds_learned(self) -> int:
        """Fraud labels the head has been trained on."""
        return int(self._counters[1])

    @property
    def n_stale_tallies(self) -> int:
        """Label tallies skipped because the entity had been evicted since its event."""
        return int(self._counters[2])

    # ------------------------------------------------------------- state export

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything needed to resume this model: JSON-able metadata and plain arrays.

        Constructor parameters, every key field's entities (recency order) and their rows,
        the recurrent networks (weights, optimizer, counters, dropout stream), the head and
        its input statistics, the label tallies and counters, and the feature rows still
        waiting for a label. :meth:`from_state` rebuilds a model that scores and learns the
        rest of a stream exactly as this one would. Entity keys and transaction ids must be
        strings or integers (what JSON holds).
        """
        params = self._get_params()
        params["keys"] = list(self.keys)
        params["windows_days"] = [float(w) for w in self.windows_days]
        meta: dict[str, Any] = {"class": type(self).__name__, "params": params, "fields": []}
        arrays: dict[str, np.ndarray] = {
            "head/theta": self._theta, "head/adam": self._adam, "head/norm": self._norm,
            "head/counters": self._counters,
        }
        # Rows are compacted on export (row i belongs to the i-th key), so pending rows
        # must be told where their entities moved.
        moved = []
        for f, (store, net) in enumerate(zip(self._stores, self._nets, strict=True)):
            keys, rows = store.export()
            meta["fields"].append({"keys": _json_ids(f"key field {self.keys[f]!r}", keys),
                                   "evictions": store.evictions})
            for name, value in rows.items():
                arrays[f"store{f}/{name}"] = value
            if net is not None:
                for name in ("theta", "opt", "counters", "rng", "stats"):
                    arrays[f"net{f}/{name}"] = getattr(net, name)
            new_slot = np.full(store.capacity, -1, dtype=np.int64)
            for i, key in enumerate(keys):
                new_slot[store.get(key)] = i
            moved.append(new_slot)
        tx_ids = _json_ids("transaction id", list(self._pending))
        rows = np.fromiter(self._pending.values(), dtype=np.int64, count=len(tx_ids))
        slots = self._buf_slots[rows].copy()
        gens = self._buf_gen[rows].copy()
        for f, new_slot in enumerate(moved):
            owner = new_slot[slots[:, f]]
            # An entity no longer holding any slot cannot take a tally: a generation no row
            # ever has keeps it that way after the move.
            gens[owner < 0, f] = -1.0
            slots[:, f] = np.maximum(owner, 0)
        meta["pending"] = {"tx_ids": tx_ids, "seq": self._seq,
                           "dropped": self.n_pending_dropped,
                           "unknown_reveals": self.n_unknown_reveals}
        arrays.update({"pending/rows": rows, "pending/x": self._buf_x[rows],
                       "pending/ts": self._buf_ts[rows], "pending/slots": slots,
                       "pending/gen": gens})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]
                   ) -> FraudDetector:
        """Rebuild a model exported by :meth:`export_state`."""
        if meta.get("class") != cls.__name__:
            raise ValueError(f"state is for {meta.get('class')!r}, not {cls.__name__}")
        params = dict(meta["params"])
        params["keys"] = tuple(params["keys"])
        params["windows_days"] = tuple(params["windows_days"])
        model = cls(**params)

        def put(target: np.ndarray, name: str) -> None:
            source = np.asarray(arrays[name])
            if source.shape != target.shape:
                raise ValueError(f"{name} has shape {source.shape}, expected {target.shape}")
            target[...] = source

        for name, target in (("head/theta", model._theta), ("head/adam", model._adam),
                             ("head/norm", model._norm), ("head/counters", model._counters)):
            put(target, name)
        for f, (store, net) in enumerate(zip(model._stores, model._nets, strict=True)):
            field_meta = meta["fields"][f]
            prefix = f"store{f}/"
            rows = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            store.load(list(field_meta["keys"]), rows)
            store.evictions = int(field_meta["evictions"])
            if net is not None:
                for name in ("theta", "opt", "counters", "rng", "stats"):
                    put(getattr(net, name), f"net{f}/{name}")
        pending = meta["pending"]
        rows = np.asarray(arrays["pending/rows"], dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= model.max_pending):
            raise ValueError("pending rows do not fit max_pending")
        model._buf_x[rows] = arrays["pending/x"]
        model._buf_ts[rows] = arrays["pending/ts"]
        model._buf_slots[rows] = arrays["pending/slots"]
        model._buf_gen[rows] = arrays["pending/gen"]
        for tx_id, row in zip(pending["tx_ids"], rows.tolist(), strict=True):
            model._pending[tx_id] = row
            model._buf_tx[row] = tx_id
        model._seq = int(pending["seq"])
        model.n_pending_dropped = int(pending["dropped"])
        model.n_unknown_reveals = int(pending["unknown_reveals"])
        return model

    def forget_entities(self) -> None:
        """Drop every entity's state and every row waiting for a label, keeping what was
        learned (weights, head, input statistics): a warm start for another stream."""
        for store in self._stores:
            for key in list(store):
                store.remove(key)
            store.evictions = 0
        self._pending.clear()
        self._buf_tx = [None] * int(self.max_pending)


def _json_ids(what: str, values: list[Any]) -> list[str | int]:
    """``values`` as JSON strings and integers (equal and hashing alike), or a ValueError."""
    out: list[str | int] = []
    for value in values:
        if type(value) is str:
            out.append(value)
        elif isinstance(value, int | np.integer) and not isinstance(value, bool):
            out.append(int(value))
        else:
            raise ValueError(f"cannot export a {what} that is not a string or an integer: "
                             f"{value!r}")
    return out
