"""The fast batch paths of the fraud replay and scorer against their step-by-step forms.

Event times read in whole arrays equal ``datetime.fromisoformat`` one by one (and bad
times still raise its error); reveal positions found by binary search equal a heap over
the same stream, in order or not; ``FraudDetector.score_learn_many`` on batches in the
common form (read column by column, pending rows assigned at once) equals the per-event
loop, and so do batches that need the step-by-step resolution (repeated or missing
transaction ids, reveals of the batch's own transactions, a full pending ring).
"""

from __future__ import annotations

import gc
import gzip
import heapq
import json
from datetime import UTC, datetime

import numpy as np
import numpy.testing as npt
import orjson
import pytest

from stream_rnn.evaluation import fraud as ev
from stream_rnn.models import FraudDetector

DAY = 86400.0
T0 = datetime(2020, 1, 6, tzinfo=UTC).timestamp()


def _one_by_one(value):
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    return float(value)


def test_event_times_equal_fromisoformat_one_by_one():
    rng = np.random.default_rng(0)
    # Random instants from year 1 to 9999, in the common layout.
    seconds = rng.integers(-62135596800, 253402300799, size=3000)
    texts = [datetime.fromtimestamp(int(s), UTC).replace(tzinfo=None).isoformat() + "Z"
             for s in seconds]
    texts += ["2020-02-29T23:59:59Z", "2000-02-29T00:00:00Z", "1970-01-01T00:00:00Z",
              "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2018-04-01T00:00:31Z",
              # Other layouts fromisoformat reads: offsets, fractions, no zone, a space.
              "2018-04-01T02:00:31+02:00", "2018-04-01T00:00:31.250Z", "2018-04-01T00:00:31",
              "2018-04-01 00:00:31Z", "2018-04-01T00:00Z", "20180401T000031Z"]
    times = ev.event_times(texts)
    assert times.dtype == np.float64
    assert times.tolist() == [_one_by_one(t) for t in texts]
    assert times[:3000].tolist() == seconds.astype(np.float64).tolist()
    mixed = [3.5, 7, texts[0], datetime(2020, 1, 1), datetime(2020, 1, 1, tzinfo=UTC)]
    assert ev.event_times(mixed).tolist() == [_one_by_one(v) if not isinstance(v, datetime)
                                              else (v if v.tzinfo else
                                                    v.replace(tzinfo=UTC)).timestamp()
                                              for v in mixed]


@pytest.mark.parametrize("bad", [
    "2019-02-29T00:00:00Z", "2018-13-01T00:00:00Z", "2018-04-31T00:00:00Z",
    "2018-00-10T00:00:00Z", "2018-04-00T00:00:00Z", "2018-04-01T24:00:00Z",
    "2018-04-01T23:60:00Z", "2018-04-01T23:59:60Z", "0000-01-01T00:00:00Z",
    "2018-04-01T0a:00:00Z", "2018/04/01T00:00:00Z", "yesterday",
])
def test_event_times_refuse_what_fromisoformat_refuses(bad):
    with pytest.raises(ValueError) as expected:
        _one_by_one(bad)
    with pytest.raises(ValueError) as got:
        ev.event_times(["2018-04-01T00:00:31Z", bad])
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("bad,message", [
    (float("nan"), "not finite"), (True, "not a time"), (None, "not a time"),
])
def test_event_times_refuse_non_times(bad, message):
    with pytest.raises(ValueError, match=message):
        ev.event_times([1.0, bad])


def _write_lines(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def test_read_events_equal_json_line_by_line_across_blocks(tmp_path):
    # More than one read block of text, blank lines here and there, two files.
    lines = [json.dumps({"tx_id": i, "ts": "2018-04-01T00:00:31Z", "note": "x" * (i % 50)})
             if i % 997 else "   " for i in range(30000)]
    _write_lines(tmp_path / "a.jsonl.gz", lines[:25000])
    (tmp_path / "b.jsonl").write_text("\n".join(lines[25000:]) + "\n", encoding="utf-8")
    paths = [tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"]
    expected = [json.loads(line) for line in lines if line.strip()]
    assert sum(len(line) for line in lines[:25000]) > 1 << 20
    assert list(ev.read_events(paths)) == expected
    assert list(ev.read_events(paths, loads=orjson.loads)) == expected
    assert list(ev.read_events(paths, limit=26000)) == expected[:26000]
    assert list(ev.read_events(paths, limit=7)) == expected[:7]


@pytest.mark.parametrize("bad,message", [("{not json", "not JSON"),
                                         ("[1, 2]", "not a JSON object")])
def test_read_events_name_the_bad_line_in_a_later_block(tmp_path, bad, message):
    lines = [json.dumps({"tx_id": i, "pad": "y" * 80}) for i in range(20000)]
    lines[15123] = bad
    path = tmp_path / "tx.jsonl.gz"
    _write_lines(path, lines)
    with pytest.raises(ValueError, match=f"tx.jsonl.gz:15124: {message}"):
        list(ev.read_events([path]))
    # Up to the limit, a bad line further on is never reached.
    assert len(list(ev.read_events([path], limit=15123))) == 15123


class _Recorder:
    def __init__(self):
        self.n = 0
        self.reveals = []

    def score_learn_many(self, events, reveals):
        self.reveals.extend((self.n + pos, tx, lab) for pos, tx, lab in reveals)
        self.n += len(events)
        return np.zeros(len(events))


def _heap_schedule(times, tx_ids, labels, delay):
    """Reveals as the replay defines them, one event at a time over a heap."""
    heap, out = [], []
    for i, (t, tx, lab) in enumerate(zip(times, tx_ids, labels, strict=True)):
        while heap and heap[0][0] <= t:
            _, _, tx_due, lab_due = heapq.heappop(heap)
            out.append((i, tx_due, lab_due))
        if tx is not None and lab is not None:
            heapq.heappush(heap, (t + delay, i, tx, lab))
    return out


@pytest.mark.parametrize("order", ["sorted", "ties", "late_disorder", "shuffled"])
@pytest.mark.parametrize("chunk", [1, 7, 100, 5000])
def test_reveal_schedule_equals_a_heap(order, chunk):
    rng = np.random.default_rng(len(order) + chunk)
    n = 2000
    times = np.sort(T0 + rng.uniform(0, 10 * DAY, n))
    if order == "ties":
        times = np.floor(times / 3600.0) * 3600.0  # many events share a time
    elif order == "late_disorder":
        times[1500:] = times[1500:][rng.permutation(n - 1500)]
    elif order == "shuffled":
        times = times[rng.permutation(n)]
    tx_ids = [None if i % 11 == 0 else i for i in range(n)]
    labels = [None if i % 13 == 0 else int(rng.random() < 0.1) for i in range(n)]
    events = []
    for t, tx, lab in zip(times.tolist(), tx_ids, labels, strict=True):
        event = {"ts": t, "key": "c"}
        if tx is not None:
            event["tx_id"] = tx
        if lab is not None:
            event["label"] = lab
        events.append(event)
    for delay in (0.0, 3600.0, 2 * DAY):
        rec = _Recorder()
        result = ev.replay(rec, events, label_delay_seconds=delay, chunk=chunk)
        expected = _heap_schedule(times.tolist(), tx_ids, labels, delay)
        assert rec.reveals == expected
        assert result.n_reveals == len(expected) > 0
        assert result.ts.tolist() == times.tolist()


def test_replay_refuses_a_chunk_below_one():
    with pytest.raises(ValueError, match="chunk"):
        ev.replay(_Recorder(), [], chunk=0)


# --------------------------------------------------------------------------- the scorer


def _events(n, seed, n_cards=30, n_terminals=20):
    rng = np.random.default_rng(seed)
    times = np.sort(T0 + rng.uniform(0, 5 * DAY, n))
    return [{"ts": float(t), "key": f"c{rng.integers(n_cards)}",
             "terminal": int(rng.integers(n_terminals)), "tx_id": i,
             "features": {"amount": float(np.round(rng.lognormal(3.0, 1.0), 2))}}
            for i, t in enumerate(times)]


def _model(**extra):
    params = {"hidden_size": 4, "head_hidden": 4, "window": 4, "update_every": 2,
              "head_batch": 2, "cold_start": 5.0, "seed": 1}
    params.update(extra)
    return FraudDetector(**params)


def _per_event(model, events, reveals):
    scores = []
    for i, event in enumerate(events):
        for pos, tx, lab in reveals:
            if pos == i:
                model.reveal_label(tx, lab)
        scores.append(model.score_one(event))
        model.learn_one(event)
    for pos, tx, lab in reveals:
        if pos == len(events):
            model.reveal_label(tx, lab)
    return np.asarray(scores)


def _everything(model):
    arrays = [model._theta, model._adam, model._norm, model._counters]
    for store in model._stores:
        arrays.extend(store.arrays.values())
    for net in model._nets:
        if net is not None:
            arrays.extend([net.theta, net.opt, net.counters])
    pending = list(model._pending.items())
    rows = np.asarray([row for _, row in pending], dtype=np.int64)
    arrays.extend([model._buf_x[rows], model._buf_ts[rows], model._buf_slots[rows],
                   model._buf_gen[rows]])
    counts = (model.n_keys, model.n_evictions, model.n_pending_dropped,
              model.n_unknown_reveals, model._seq, [list(s) for s in model._stores])
    return [a.copy() for a in arrays], pending, list(model._buf_tx), counts


def _assert_same(a, b):
    arrays_a, *rest_a = _everything(a)
    arrays_b, *rest_b = _everything(b)
    for x, y in zip(arrays_a, arrays_b, strict=True):
        npt.assert_array_equal(x, y)
    assert rest_a == rest_b


def test_common_batches_read_by_column_equal_the_per_event_loop():
    events = _events(1200, seed=0)
    batch, loop = _model(), _model()
    labels = {e["tx_id"]: int(e["features"]["amount"] > 60) for e in events}
    done = 0
    for size in (1, 150, 400, 649):
        part = events[done:done + size]
        # Reveals of earlier transactions (some revealed already, some unknown) at sorted
        # positions, with labels as ints, floats and booleans.
        rng = np.random.default_rng(size)
        positions = np.sort(rng.integers(0, size + 1, size // 3)).tolist()
        txs = rng.integers(-5, done + 1, len(positions)).tolist() if done else []
        reveals = [(p, tx, [int, float, bool][k % 3](labels.get(tx, 1)))
                   for k, (p, tx) in enumerate(zip(positions, txs, strict=False))]
        assert batch._columns(part) is not None  # the column reader takes this batch
        npt.assert_array_equal(batch.score_learn_many(part, reveals),
                               _per_event(loop, part, reveals))
        _assert_same(batch, loop)
        done += size
    assert batch.n_labels_learned > 20 and batch.n_unknown_reveals > 0


def test_irregular_batches_equal_the_per_event_loop():
    # A pending ring of 60 rows that fills and wraps, repeated and missing transaction
    # ids, reveals of the batch's own transactions and of one transaction twice, integer
    # and string keys, a missing features mapping, texts and integers for times.
    events = _events(900, seed=1)
    rng = np.random.default_rng(2)
    for i, event in enumerate(events):
        if i % 17 == 0:
            event["tx_id"] = int(rng.integers(0, max(i, 1)))
        if i % 23 == 0:
            del event["tx_id"]
        if i % 29 == 0:
            event["amount"] = event.pop("features")["amount"]
        if i % 31 == 0:
            event["ts"] = datetime.fromtimestamp(event["ts"], UTC).isoformat()
        elif i % 37 == 0:
            event["ts"] = int(event["ts"])
    batch, loop = _model(max_pending=60, max_keys=12), _model(max_pending=60, max_keys=12)
    done = 0
    for size in (40, 45, 200, 1, 300, 314):
        part = events[done:done + size]
        positions = np.sort(rng.integers(0, size + 1, size // 2)).tolist()
        reveals = [(p, int(rng.integers(max(done + p - 80, 0), done + p + 1)),
                    int(rng.random() < 0.3)) for p in positions]
        if len(reveals) > 3:
            reveals[2] = (reveals[2][0], reveals[1][1], 1)  # revealed twice
        npt.assert_array_equal(batch.score_learn_many(part, reveals),
                               _per_event(loop, part, reveals))
        _assert_same(batch, loop)
        done += size
    assert batch.n_pending_dropped > 0 and sum(batch.n_evictions.values()) > 0


def test_clean_batch_after_a_full_ring_equals_the_per_event_loop():
    # Distinct new ids, but the ring is full: rows ahead are taken, so the oldest
    # pending rows are dropped in turn.
    events = _events(300, seed=3)
    batch, loop = _model(max_pending=100), _model(max_pending=100)
    for part in (events[:100], events[100:250], events[250:]):
        npt.assert_array_equal(batch.score_learn_many(part), _per_event(loop, part, []))
        _assert_same(batch, loop)
    assert batch.n_pending == 100 and batch.n_pending_dropped == 200


@pytest.mark.parametrize("reveals,message", [
    ([(-1, 0, 1)], "reveal positions"),
    ([(2, 0, 1), (1, 0, 1)], "reveal positions"),
    ([(1.0, 0, 1)], "reveal positions"),
    ([(0, 0, 2)], "label must be 0 or 1"),
    ([(0, 0, [1])], "label must be 0 or 1"),
    ([(0, 0, float("nan"))], "label must be 0 or 1"),
])
def test_bad_reveals_are_refused_and_change_nothing(reveals, message):
    events = _events(20, seed=4)
    model, reference = _model(), _model()
    model.score_learn_many(events[:10])
    reference.score_learn_many(events[:10])
    with pytest.raises(ValueError, match=message):
        model.score_learn_many(events[10:], reveals)
    _assert_same(model, reference)


def test_a_replay_makes_no_reference_cycles(tmp_path):
    # fraud-eval turns the cyclic garbage collector off during the replay, on the grounds
    # that reading, replaying and scoring leave nothing for it to find.
    events = _events(3000, seed=5)
    for e in events:
        e["ts"] = datetime.fromtimestamp(e["ts"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        e["label"] = int(e["features"]["amount"] > 60)
    path = tmp_path / "tx.jsonl.gz"
    _write_lines(path, [json.dumps(e) for e in events])
    ev.replay(_model(), ev.read_events([path], limit=300), label_delay_seconds=3600)
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        model = _model()
        result = ev.replay(model, ev.read_events([path], loads=orjson.loads),
                           label_delay_seconds=3600, chunk=256)
        found = gc.collect()
    finally:
        if collecting:
            gc.enable()
    assert result.n_events == 3000 and model.n_labels_learned > 2000
    assert found == 0
