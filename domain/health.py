"""The failure detector as pure functions of times: no clocks are read here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


@dataclass(frozen=True)
class DetectorSettings:
    suspect_after: float
    dead_after: float
    heartbeat_interval: float = 1.0
    # Flap damping, as Consul's failures_before_critical / success_before_passing.
    failures_before_critical: int = 1
    success_before_passing: int = 1

    @property
    def suspect_threshold(self) -> float:
        """Silence before suspicion: suspect_after, plus a heartbeat interval for every
        further miss that damping asks for, never past dead_after."""
        extra = (self.failures_before_critical - 1) * self.heartbeat_interval
        return min(self.suspect_after + extra, self.dead_after)


def silence(last_seen: float, visible_since: float, now: float) -> float:
    """Seconds the agent has been silent while we could see.

    A time we could not see NATS (disconnected, stalled, paused) does not count against
    an agent: its deadline restarts from the moment we could see again.
    """
    return now - max(last_seen, visible_since)


def verdict(silent_for: float, settings: DetectorSettings) -> Verdict:
    if silent_for >= settings.dead_after:
        return Verdict.DEAD
    if silent_for >= settings.suspect_threshold:
        return Verdict.SUSPECT
    return Verdict.ALIVE


def next_deadline(last_seen: float, visible_since: float, settings: DetectorSettings,
                  liveness: str) -> float:
    """When the next verdict change is due for an agent that stays silent."""
    start = max(last_seen, visible_since)
    if liveness == Verdict.ALIVE:
        return start + settings.suspect_threshold
    return start + settings.dead_after


def streak_after(streak: int, gap: float, settings: DetectorSettings) -> int:
    """Heartbeats in a row, given the previous streak and the silence before this one."""
    return streak + 1 if gap < settings.suspect_threshold else 1


def may_recover(streak: int, settings: DetectorSettings) -> bool:
    return streak >= settings.success_before_passing


def is_stall(previous_tick: float, now: float, expected_interval: float,
             tolerance: float) -> bool:
    """True when the monitor itself was not running for much longer than it meant to sleep."""
    return now - previous_tick > expected_interval + tolerance
