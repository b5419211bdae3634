"""The failure detector as pure functions of times: no clocks are read here."""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


@dataclass(frozen=True)
class DetectorSettings:
    """The failure detector's settings: the one definition the live monitor
    (services/health/monitor.py) and the what-if replay (domain/agents/what_if.py) share. Its
    rule is `allowed_silence`: how long an agent may stay silent before its next
    verdict."""

    suspect_after: float
    dead_after: float
    heartbeat_interval: float = 1.0
    # Flap damping, as Consul's failures_before_critical / success_before_passing.
    failures_before_critical: int = 1
    success_before_passing: int = 1

    @functools.cached_property  # read on every heartbeat
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


def allowed_silence(settings: DetectorSettings, liveness: str) -> float:
    """Seconds of silence (while we could see) after which an agent at `liveness` gets its
    next verdict: a healthy one is suspected after `suspect_threshold`, a suspect one is
    dead after `dead_after`. The detector's one rule: the live verdicts and deadlines
    below, and the what-if replay of recorded silences (domain/agents/what_if.py), all apply it."""
    if liveness == Verdict.ALIVE:
        return settings.suspect_threshold
    return settings.dead_after


def verdict(silent_for: float, settings: DetectorSettings) -> Verdict:
    if silent_for >= allowed_silence(settings, Verdict.SUSPECT):
        return Verdict.DEAD
    if silent_for >= allowed_silence(settings, Verdict.ALIVE):
        return Verdict.SUSPECT
    return Verdict.ALIVE


def next_deadline(last_seen: float, visible_since: float, settings: DetectorSettings,
                  liveness: str) -> float:
    """When the next verdict change is due for an agent that stays silent."""
    return max(last_seen, visible_since) + allowed_silence(settings, liveness)


def streak_after(streak: int, gap: float, settings: DetectorSettings) -> int:
    """Heartbeats in a row, given the previous streak and the silence before this one."""
    return streak + 1 if gap < settings.suspect_threshold else 1


def may_recover(streak: int, settings: DetectorSettings, last_seen: float | None = None,
                visible_since: float | None = None) -> bool:
    """A suspect may be healthy again after enough heartbeats in a row, and (given the
    times) only on a heartbeat heard since the deadlines last restarted: a restart gives
    a silent suspect more time, never a recovery."""
    if last_seen is not None and visible_since is not None and last_seen < visible_since:
        return False
    return streak >= settings.success_before_passing


def is_stall(previous_tick: float, now: float, expected_interval: float,
             tolerance: float) -> bool:
    """True when the monitor itself was not running for much longer than it meant to sleep."""
    return now - previous_tick > expected_interval + tolerance


def bus_stall_tolerance(settings: DetectorSettings) -> float:
    """How late a look at the bus may come back before it counts as a stall.

    A stall shorter than this goes unseen, and an agent's silence can then include it; so
    it is half of what an agent may stay silent beyond one heartbeat interval before
    suspicion, and a death (dead_after) is further still."""
    return max(0.05, (settings.suspect_threshold - settings.heartbeat_interval) / 2)


def look_interval(settings: DetectorSettings) -> float:
    """How often the monitor looks at the bus: a deadline waits at most this (and the
    look's round trip) for evidence that covers it."""
    return min(0.1, settings.suspect_threshold / 10)


# Looks whose stream position the heartbeat consumer has not reached yet, at most.
MAX_WAITING_LOOKS = 10_000


@dataclass
class Evidence:
    """Whether the monitor sees the heartbeat stream as it is now: the rule that no
    deadline expires on evidence it could not see. No clock is read here.

    Evidence is *current* once a look at the bus, sent after the last sign of trouble,
    came back within `tolerance` and the heartbeat consumer has applied every heartbeat
    the stream held at that look. Any sign of trouble loses it: a look overdue or
    answered late (the bus stalled: server, disk, or the path to it), a look, append or
    probe failing, a disconnect, a stall of this process. While it is lost no deadline
    expires; when it is current again, every deadline restarts from that moment
    (`since`), so time the monitor could not see never counts against an agent. While
    current, a deadline may expire only up to `horizon`, the time a look was sent whose
    stream position the consumer has reached: a consumer behind the stream's last
    sequence holds deadlines back as well. `epoch` counts losses: a decision begun in one
    epoch is dropped, not carried out, if evidence was lost meanwhile.
    """

    tolerance: float
    since: float = 0.0  # when evidence last became current: deadlines restart here
    current: bool = False
    horizon: float = -math.inf  # deadlines up to this time may expire
    reason: str = ""  # what began the current blind spell (while lost), for the log
    blind_since: float | None = None  # when the current blind spell began
    lost_at: float = -math.inf  # the last sign of trouble
    epoch: int = 0
    applied: int = 0  # the newest heartbeat stream sequence the consumer applied
    consumer_stale: bool = False  # the consumer must be replaced before it counts again
    # (sent, last sequence) of prompt looks since the trouble, not yet reached.
    waiting: deque[tuple[float, int]] = field(default_factory=deque)
    # When evidence became current again, and what lost it, the latest few (for logs and
    # tests).
    current_again: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    losses: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=64))

    def lost(self, at: float, reason: str) -> bool:
        """A sign of trouble at `at`. True if evidence was current until now."""
        was = self.current
        if was or not self.reason:
            self.reason = reason  # the first trouble of this blind spell
            self.blind_since = at
        if not self.losses or self.losses[-1][1] != reason:
            self.losses.append((at, reason))
        self.current = False
        self.lost_at = max(self.lost_at, at)
        self.epoch += 1
        self.waiting.clear()
        return was

    def consumer_lost(self, at: float, reason: str) -> bool:
        """Trouble after which the heartbeat consumer's position means nothing until it is
        replaced (a reconnect: NATS may have restarted with a new heartbeat stream)."""
        self.consumer_stale = True
        return self.lost(at, reason)

    def consumer_replaced(self, at: float) -> bool:
        """A new heartbeat consumer, starting from nothing applied."""
        self.consumer_stale = False
        self.applied = 0
        return self.lost(at, "heartbeat-consumer-replaced")

    def overdue(self, sent: float, now: float) -> bool:
        """A look sent at `sent` is still unanswered at `now`. True if that lost current
        evidence."""
        if now - sent <= self.tolerance:
            return False
        return self.lost(now, "bus-stall")

    def looked(self, sent: float, answered: float, last_seq: int) -> bool:
        """A look sent at `sent` came back at `answered`: the heartbeat stream's last
        sequence then (0 when it holds nothing). True if evidence became current."""
        if answered - sent > self.tolerance:
            self.lost(answered, "bus-stall")  # it saw the stream, but not as it is now
            return False
        if sent < self.lost_at:
            return False  # sent before the trouble: says nothing about after it
        while self.waiting and self.waiting[-1][1] >= last_seq:
            self.waiting.pop()  # reached no later than this one, which is newer
        self.waiting.append((sent, last_seq))
        if len(self.waiting) > MAX_WAITING_LOOKS:
            self.waiting.popleft()
        return self._advance(answered)

    def applied_up_to(self, seq: int, now: float) -> bool:
        """The consumer applied the heartbeat at stream sequence `seq`. True if evidence
        became current."""
        if seq > self.applied:
            self.applied = seq
        return bool(self.waiting) and self._advance(now)

    def _advance(self, now: float) -> bool:
        if self.consumer_stale:
            return False
        reached = None
        while self.waiting and self.waiting[0][1] <= self.applied:
            reached = self.waiting.popleft()[0]
        if reached is None:
            return False
        if self.current:
            self.horizon = max(self.horizon, reached)
            return False
        self.current = True
        self.since = self.horizon = now
        self.reason = ""
        self.current_again.append(now)
        return True

    def covers(self, deadline: float) -> bool:
        """May a deadline at this time expire now?"""
        return self.current and deadline <= self.horizon
