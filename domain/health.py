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


def silence(last_seen: float, visible_since: float, now: float) -> float:
    """Seconds the agent has been silent while we could see.

    A time we could not see NATS (disconnected, stalled, paused) does not count against
    an agent: its deadline restarts from the moment we could see again.
    """
    return now - max(last_seen, visible_since)


def verdict(silent_for: float, settings: DetectorSettings) -> Verdict:
    if silent_for >= settings.dead_after:
        return Verdict.DEAD
    if silent_for >= settings.suspect_after:
        return Verdict.SUSPECT
    return Verdict.ALIVE


def next_deadline(last_seen: float, visible_since: float, settings: DetectorSettings,
                  liveness: str) -> float:
    """When the next verdict change is due for an agent that stays silent."""
    start = max(last_seen, visible_since)
    if liveness == Verdict.ALIVE:
        return start + settings.suspect_after
    return start + settings.dead_after


def is_stall(previous_tick: float, now: float, expected_interval: float,
             tolerance: float) -> bool:
    """True when the monitor itself was not running for much longer than it meant to sleep."""
    return now - previous_tick > expected_interval + tolerance
