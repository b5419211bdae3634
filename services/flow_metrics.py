"""Flow control's metrics (domain/limits/limit.py): per concurrency key, its tasks waiting and
running, the rounds that held it (throttled), and the submits refused as overloaded.

Cardinality is bounded: a key is a label value only while an operator has set a limit
on it, for at most MAX_KEYS keys (in name order); every other key counts under `_other`.
Operators set limits by hand, so the keys they name are few; the keys tasks carry are
not bounded at all (a key per customer is a fine use).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from projections.board.flow_use import FlowUse
from projections.limits import Limits

MAX_KEYS = 100
OTHER = "_other"
ADMISSION_BOUNDS = ("submitter", "total")


class FlowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.key_tasks = Gauge(
            "orch_key_tasks", "Tasks of a concurrency key, waiting or running (assigned "
            "or running)", ["key", "state"], registry=registry)
        self.key_limit = Gauge(
            "orch_key_concurrency_limit", "A concurrency key's limit, for keys that have one",
            ["key"], registry=registry)
        self.throttled = Counter(
            "orch_key_throttled_total", "Times a key was found held, by reason: "
            "concurrency_limit once each time it reaches its limit, rate_limit each round "
            "it waits for a token", ["key", "reason"],
            registry=registry)
        self.refused = Counter(
            "orch_admission_refused_total", "Submits refused as overloaded, by the bound "
            "reached (submitter, total)", ["bound"], registry=registry)
        for bound in ADMISSION_BOUNDS:
            self.refused.labels(bound)
        self._named: frozenset[str] = frozenset()

    def label(self, key: str) -> str:
        return key if key in self._named else OTHER

    def read(self, limits: Limits, use: FlowUse) -> None:
        """Set the gauges from the projections (at scrape time)."""
        named = frozenset(sorted(limits.keys)[:MAX_KEYS])
        for gone in self._named - named:
            for state in ("waiting", "running"):
                self.key_tasks.remove(gone, state)
            self.key_limit.remove(gone)
        self._named = named
        for state, counts in (("waiting", use.waiting), ("running", use.open)):
            other = sum(count for key, count in counts.items() if key not in named)
            for key in named:
                self.key_tasks.labels(key, state).set(counts.get(key, 0))
            self.key_tasks.labels(OTHER, state).set(other)
        for key in named:
            concurrency = limits.keys[key].concurrency
            self.key_limit.labels(key).set(-1 if concurrency is None else concurrency)
