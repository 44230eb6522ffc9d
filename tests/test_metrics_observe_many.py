"""observe_many fills a histogram exactly as one observe per value would."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from stream_rnn.metrics import LATENCY_BUCKETS, SCORE_BUCKETS, observe_many


def _samples(registry):
    """Every bucket, count and sum (floats by repr: to the bit, NaN included)."""
    return [(s.name, sorted(s.labels.items()), repr(s.value))
            for metric in registry.collect() for s in metric.samples
            if not s.name.endswith("_created")]


def _pair(buckets, labels=()):
    made = []
    for _ in range(2):
        registry = CollectorRegistry()
        h = Histogram("h_seconds", "doc", list(labels), buckets=buckets, registry=registry)
        made.append((registry, h.labels(*["x"] * len(labels)) if labels else h))
    return made


@pytest.mark.parametrize("buckets", [SCORE_BUCKETS, LATENCY_BUCKETS])
def test_observe_many_matches_observe_value_by_value(buckets):
    rng = random.Random(3)
    batches = [[rng.random() for _ in range(500)],
               list(buckets) + [0.0, -0.0, -1.0, 1.5, 1e9, math.inf, -math.inf],
               [rng.choice(buckets) for _ in range(100)],
               [], [0.1 + 0.2, 1e-17, 0.3]]
    (one_registry, one), (many_registry, many) = _pair(buckets)
    for batch in batches:
        for value in batch:
            one.observe(value)
        observe_many(many, batch)
        # Every bucket and the sum, to the bit (sums are added in the same order).
        assert _samples(one_registry) == _samples(many_registry)
    assert many_registry.get_sample_value("h_seconds_count") == sum(map(len, batches))


def test_observe_many_on_a_labelled_child_and_with_nan():
    (one_registry, one), (many_registry, many) = _pair(SCORE_BUCKETS, labels=("topic",))
    batch = [0.5, float("nan"), 0.95]
    for value in batch:
        one.observe(value)
    observe_many(many, batch)
    assert _samples(one_registry) == _samples(many_registry)
    assert many_registry.get_sample_value("h_seconds_count", {"topic": "x"}) == 2.0
    assert math.isnan(many_registry.get_sample_value("h_seconds_sum", {"topic": "x"}))


def test_observe_many_refuses_a_labelled_parent_like_observe():
    registry = CollectorRegistry()
    h = Histogram("h_seconds", "doc", ["topic"], buckets=SCORE_BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="missing label values"):
        h.observe(0.5)
    with pytest.raises(ValueError, match="missing label values"):
        observe_many(h, [0.5])
