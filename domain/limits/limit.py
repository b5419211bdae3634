"""Flow control: what an operator sets to guard the fleet and its downstream quotas, and
the pure rules placement and admission apply with it.

A limit is an aggregate of its own, named by what it bounds (`LimitScope`):
- `key:<concurrency key>`: at most `concurrency` tasks of the key assigned or running,
  and placements from the queue at most `rate_per_s`, in bursts of `burst` (a token
  bucket);
- `default:key`: the concurrency of every key that has no limit of its own;
- `fairness:<fairness key>`: its `weight` when tasks of one priority are served in turn
  across fairness keys (weighted round-robin; 1 unless set);
- `submitter:<identity>`: at most `max_unfinished` unfinished tasks of that submitter,
  instead of the setting's bound for every submitter.

Every number here is decided from the log: a bucket's tokens are computed from the times
of the placements the log records, so a replay makes the same decisions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from eventsourcing.domain import event

from domain.base import StrIdAggregate, named_in_the_log
from domain.errors import CommandRefused, ErrorCode

# A concurrency or fairness key: one token of a subject (it names its limit's events).
KEY_PATTERN = r"^[A-Za-z0-9_:-]{1,64}$"
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}
# The weight of a fairness key no operator has weighed.
DEFAULT_WEIGHT = 1.0


class LimitScope(StrEnum):
    KEY = "key"
    DEFAULT = "default"
    FAIRNESS = "fairness"
    SUBMITTER = "submitter"


# What each scope may set.
SETTABLE: dict[LimitScope, frozenset[str]] = {
    LimitScope.KEY: frozenset({"concurrency", "rate_per_s", "burst"}),
    LimitScope.DEFAULT: frozenset({"concurrency"}),
    LimitScope.FAIRNESS: frozenset({"weight"}),
    LimitScope.SUBMITTER: frozenset({"max_unfinished"}),
}


def limit_id(scope: LimitScope, name: str) -> str:
    return f"{scope.value}:{name}"


def parse_limit_id(limit: str) -> tuple[LimitScope, str]:
    scope, _, name = limit.partition(":")
    return LimitScope(scope), name


def parse_rate(text: str) -> float:
    """'600/min' -> 10.0 (placements per second). ValueError for anything else."""
    found = _RATE.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"a rate is a positive count per s, min or hour (600/min), "
                         f"not {text!r}")
    return float(found.group(1)) / _PER[found.group(2)]


def check_values(scope: LimitScope, values: dict[str, Any]) -> None:
    """Refuse (`invalid_request`) a value the scope does not take."""
    extra = sorted(set(values) - SETTABLE[scope])
    if extra:
        raise CommandRefused(ErrorCode.INVALID_REQUEST,
                             f"a {scope.value} limit does not take {', '.join(extra)}",
                             [{"field": name, "problem": "not settable here"}
                              for name in extra])
    if values.get("burst") is not None and values.get("rate_per_s") is None:
        raise CommandRefused(ErrorCode.INVALID_REQUEST, "burst is given with a rate",
                             [{"field": "burst", "problem": "needs rate_per_s"}])


class Limit(StrIdAggregate):
    """One limit over its changes; an empty set of values lifts it."""

    @staticmethod
    def create_id(limit: str) -> str:
        return limit

    @event("Set")
    def __init__(self, limit: str, values: dict[str, Any]) -> None:
        self.values = dict(values)

    def change(self, values: dict[str, Any]) -> bool:
        """False when it holds these values already (nothing to record)."""
        if values == self.values:
            return False
        self._changed(values=dict(values))
        return True

    @event("Changed")
    def _changed(self, values: dict[str, Any]) -> None:
        self.values = values


@dataclass(frozen=True, slots=True)
class KeyLimit:
    """A concurrency key's limits as placement applies them (None: unbounded)."""

    concurrency: int | None = None
    rate_per_s: float | None = None
    burst: int | None = None

    @property
    def bucket_size(self) -> float:
        return float(self.burst if self.burst is not None else 1)


class TokenBucket:
    """Placements of one key: `size` tokens at most, refilled at `rate` per second, one
    taken per placement. Its state is the tokens at the time of the last placement, so
    it is read at any later time without a clock of its own."""

    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at

    @classmethod
    def full(cls, limit: KeyLimit) -> TokenBucket:
        return cls(limit.bucket_size, 0.0)

    def available(self, limit: KeyLimit, now: float) -> float:
        if limit.rate_per_s is None:
            return float("inf")
        return min(limit.bucket_size, self.tokens + max(0.0, now - self.at) * limit.rate_per_s)

    def take(self, limit: KeyLimit, now: float) -> None:
        """A placement at `now` (taken even below one token: the log has the last word)."""
        self.tokens = self.available(limit, now) - 1.0 if limit.rate_per_s else self.tokens
        self.at = max(self.at, now)

    def next_token_at(self, limit: KeyLimit, now: float, pending: int = 0) -> float:
        """When one more token than `pending` (placements not yet counted) is there."""
        if limit.rate_per_s is None:
            return now
        short = 1.0 + pending - self.available(limit, now)
        return now if short <= 0 else now + short / limit.rate_per_s


named_in_the_log(Limit, "domain.flow:Limit")
