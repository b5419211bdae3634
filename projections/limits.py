"""The limits operators have set (domain/limits/limit.py), as of a log position.

Applied by the projection runner in log order with the board, so that a placement is
decided under the limits in force at its place in the log; on start it first reads the
limit events the projection snapshot does not hold (`catch_up`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.base import CARRIED_FORWARD
from domain.limits.limit import DEFAULT_WEIGHT, KeyLimit, LimitScope, parse_limit_id
from projections.log_event import LogEvent

LIMIT_KIND = "limit"


class Limits:
    def __init__(self, max_unfinished_per_submitter: int = 0,
                 max_unfinished_total: int = 0) -> None:
        # The settings' bounds (0: none); an operator may set a submitter's own.
        self.max_unfinished_per_submitter = max_unfinished_per_submitter
        self.max_unfinished_total = max_unfinished_total
        self.values: dict[str, dict[str, Any]] = {}  # limit id -> its values, as set
        self.keys: dict[str, KeyLimit] = {}
        self.default_concurrency: int | None = None
        self.weights: dict[str, float] = {}
        self.quotas: dict[str, int] = {}
        # Told of every change (the queue's keys parked at their limit come back).
        self.on_change: Callable[[], None] = lambda: None
        self.position = 0

    def apply(self, event: LogEvent) -> None:
        if event.kind == LIMIT_KIND and event.position > self.position:
            data = event.data()
            if event.name in ("Set", "Changed"):
                self.put(event.aggregate_id, data["values"])
            elif event.name == CARRIED_FORWARD:
                self.put(event.aggregate_id, data["state"]["values"])
        self.position = max(self.position, event.position)

    def put(self, limit: str, values: dict[str, Any]) -> None:
        self.on_change()
        scope, name = parse_limit_id(limit)
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            self.values[limit] = values
        else:
            self.values.pop(limit, None)
        if scope == LimitScope.KEY:
            if values:
                self.keys[name] = KeyLimit(values.get("concurrency"), values.get("rate_per_s"),
                                           values.get("burst"))
            else:
                self.keys.pop(name, None)
        elif scope == LimitScope.DEFAULT:
            self.default_concurrency = values.get("concurrency")
        elif scope == LimitScope.FAIRNESS:
            _put(self.weights, name, values.get("weight"))
        elif scope == LimitScope.SUBMITTER:
            _put(self.quotas, name, values.get("max_unfinished"))

    # --- reads ------------------------------------------------------------------

    def key_limit(self, key: str) -> KeyLimit | None:
        """A concurrency key's limits: its own, else the default concurrency, else none."""
        own = self.keys.get(key)
        if own is not None:
            return own
        if self.default_concurrency is not None and key:
            return KeyLimit(concurrency=self.default_concurrency)
        return None

    def weight(self, fairness_key: str) -> float:
        return self.weights.get(fairness_key, DEFAULT_WEIGHT)

    def quota(self, submitter: str) -> int:
        """The most unfinished tasks the submitter may have (0: no bound)."""
        return self.quotas.get(submitter, self.max_unfinished_per_submitter)

    def listing(self) -> list[dict[str, Any]]:
        """Every limit set, by scope then name."""
        rows = []
        for limit, values in sorted(self.values.items()):
            scope, name = parse_limit_id(limit)
            rows.append({"scope": scope.value, "name": name, **values})
        return rows


def _put(table: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        table.pop(name, None)
    else:
        table[name] = value
