"""Whether a concurrency key may place one more task now (domain/flow.py): under its
concurrency limit, counting the tasks of the key assigned or running and the placements
in flight, and with a token in its bucket at the time of the decision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from projections.board.flow_use import FlowUse
from projections.limits import Limits

AT_CONCURRENCY = "concurrency_limit"
NO_TOKEN = "rate_limit"


@dataclass(frozen=True)
class Hold:
    """Why a key places nothing now, and (for a rate) when it next may."""

    code: str
    message: str
    next_at: float | None = None


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
                return Hold(AT_CONCURRENCY, f"key {key} has {running} of its "
                                            f"{limit.concurrency} tasks assigned or running")
        if limit.rate_per_s is not None:
            if self.use.tokens(key, limit, now) - in_flight < 1.0:
                next_at = self.use.next_token_at(key, limit, now, in_flight)
                return Hold(NO_TOKEN, f"key {key} is at its rate of {_rate(limit.rate_per_s)}; "
                                      f"its next token comes in {max(0.0, next_at - now):.2f}s",
                            next_at)
        return None


def _rate(per_s: float) -> str:
    return f"{per_s:g}/s" if per_s >= 1 else f"{per_s * 60:g}/min"
