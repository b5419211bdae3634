"""A Tally's observations, handed over at scrape time, read exactly as prometheus's own
counter and histogram would have read them observed one by one."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.metrics import Tally

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("beats_total", "beats", ["outcome"], registry=registry)
    histogram = Histogram("lag_seconds", "lag", buckets=BUCKETS, registry=registry)
    return registry, counter, histogram


def test_tallied_values_scrape_as_observed_ones() -> None:
    draws = random.Random(7)
    # Bounds themselves, values between, beyond the last bound, and zero.
    values = [*BUCKETS, 0.0, 7.5, *(draws.uniform(0, 6) for _ in range(2000))]
    direct, counter, histogram = metrics()
    for value in values:
        counter.labels("applied").inc()
        histogram.observe(value)
    tallied, counter2, histogram2 = metrics()
    tally = Tally(counter2.labels("applied"), histogram2)
    for value in values[:1000]:
        tally.observe(value)
    asyncio.run(tally.flush())
    for value in values[1000:]:
        tally.observe(value)
    assert samples(tallied) != samples(direct)  # not yet handed over
    asyncio.run(tally.flush())
    asyncio.run(tally.flush())  # nothing new: changes nothing
    got, want = samples(tallied), samples(direct)
    # The sum is added up in another order: equal to rounding.
    assert got.pop("lag_seconds_sum") == pytest.approx(want.pop("lag_seconds_sum"), rel=1e-12)
    assert got == want


def samples(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample by name and labels, creation times aside."""
    return {f"{s.name}{sorted(s.labels.items()) if s.labels else ''}": s.value
            for metric in registry.collect() for s in metric.samples
            if not s.name.endswith("_created")}
