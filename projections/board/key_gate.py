"""Whether a concurrency key may place one more task now (domain/limits/limit.py): under its
concurrency limit, counting the tasks of the key assigned or running and the placements
in flight, and with a token in its bucket at the time of the decision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from domain.limits.limit import KeyLimit
from projections.board.flow_use import FlowUse
from projections.limits import Limits

AT_CONCURRENCY = "concurrency_limit"
NO_TOKEN = "rate_limit"


@dataclass(frozen=True)
class Hold:
    """Why a key places nothing now, and (for a rate) when it next may. Said in words
    only when asked: a round meets many held keys and reads only their code."""

    code: str
    key: str
    limit: KeyLimit
    running: int = 0
    now: float = 0.0
    next_at: float | None = None

    @property
    def message(self) -> str:
        if self.code == AT_CONCURRENCY:
            return (f"key {self.key} has {self.running} of its {self.limit.concurrency} "
                    f"tasks assigned or running")
        rate = self.limit.rate_per_s or 0.0
        wait = max(0.0, (self.next_at or self.now) - self.now)
        return (f"key {self.key} is at its rate of {_rate(rate)}; its next token comes in "
                f"{wait:.2f}s")


class KeyGate:
    def __init__(self, limits: Limits, use: FlowUse,
                 in_flight: Callable[[str], int] = lambda key: 0) -> None:
        self.limits = limits
        self.use = use
        # Placements of the key written or being written, not yet applied (the leader's).
        self.in_flight = in_flight

    def holds(self, key: str, now: float, placing: int = 0) -> Hold | None:
        """None if a task of the key may be placed at `now`, with `placing` more of it
        decided in this round; else why not."""
        limit = self.limits.key_limit(key)
        if limit is None:
            return None
        in_flight = self.in_flight(key) + placing
        if limit.concurrency is not None:
            running = self.use.open.get(key, 0) + in_flight
            if running >= limit.concurrency:
                return Hold(AT_CONCURRENCY, key, limit, running, now)
        if limit.rate_per_s is not None:
            if self.use.tokens(key, limit, now) - in_flight < 1.0:
                next_at = self.use.next_token_at(key, limit, now, in_flight)
                return Hold(NO_TOKEN, key, limit, 0, now, next_at)
        return None


def _rate(per_s: float) -> str:
    return f"{per_s:g}/s" if per_s >= 1 else f"{per_s * 60:g}/min"
