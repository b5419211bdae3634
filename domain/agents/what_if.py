"""Replaying recorded silences under other detector settings: pure functions of times.

The record is a list of silences per agent (stretches with no heartbeat longer than the
record's resolution, each measured as the detector saw it) and the spans of time it was
kept (`watched`): outside them nothing is known, and nothing is read as silence (`holes`
are reported as unknown coverage instead).

The settings replayed are the live detector's own (domain.agents.health.DetectorSettings), and
when a silence brings suspicion or death is the live rule (domain.agents.health.allowed_silence):
the replay cannot drift from what the monitor does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from domain.agents.health import DetectorSettings, Verdict, allowed_silence

# Differences below this are the detector's own latency, not a change of outcome.
TOLERANCE_S = 0.25

VERDICTS = ("same", "earlier", "later", "avoided", "added", "pending")


@dataclass(frozen=True)
class Span:
    start: float
    end: float


@dataclass(frozen=True)
class Silence:
    """A stretch without a heartbeat from `start` (last heard, or when the detector began
    to watch) to `end` (heard again), or still silent when the record ends (`end` None)."""

    start: float
    end: float | None
    incarnation: int = 0
    recorded_death: float | None = None  # when the log says this silence killed it
    death_position: int | None = None  # the DeclaredDead event's position in the log
    # Ended by another process taking the id (a restart), not by the silent one heard
    # from again: a real death followed by a restart (see `ended_by`).
    restarted: bool = False

    @property
    def resumed(self) -> bool:
        """The same incarnation was heard from again: a death declared during this silence
        was a false death."""
        return self.end is not None and not self.restarted

    def length(self, until: float) -> float:
        return (until if self.end is None else min(self.end, until)) - self.start


def same_incarnation(silent: str | None, heard: str | None) -> bool:
    """Whether the process heard from (its instance id, random per process start) is the
    one that went silent. Unknown on either side (an agent that sends no instance id): not
    known to be the same, so not counted as heard from again."""
    return silent is not None and silent == heard


def ended_by(silence: Silence, at: float, same: bool) -> Silence:
    """The silence as it ends when the agent's id is heard from again at `at`.

    The rule of a false death: the SAME incarnation heard from again after being declared
    dead (`same`: its process came back, it was never dead). Another process registering
    the id (a new incarnation: the agent was killed and restarted) is a real death
    followed by a restart: the silence ends there, `restarted`, not resumed."""
    return Silence(silence.start, at, silence.incarnation, silence.recorded_death,
                   silence.death_position, restarted=not same)


def Detector(suspect_after: float, dead_after: float,
             failures_before_critical: int = 1,
             heartbeat_interval: float = 1.0) -> DetectorSettings:
    """The detector settings a replay takes, in the what-if's argument order (kept for
    the callers that build them so): the live detector's own type, DetectorSettings,
    whose positional order differs."""
    return DetectorSettings(suspect_after=suspect_after, dead_after=dead_after,
                            heartbeat_interval=heartbeat_interval,
                            failures_before_critical=failures_before_critical)


def suspicion_after(detector: DetectorSettings) -> float:
    """Seconds of silence before the live detector suspects a healthy agent."""
    return allowed_silence(detector, Verdict.ALIVE)


def death_after(detector: DetectorSettings) -> float:
    """Seconds of silence before the live detector declares a suspect agent dead (a
    healthy one is suspected first, never later than this)."""
    return allowed_silence(detector, Verdict.SUSPECT)


@dataclass(frozen=True)
class Deadline:
    """What a replayed detector does with one silence within a window."""

    at: float | None  # when it fires; None: not within the window
    pending: bool = False  # still silent when the window ends, before the deadline


def deadline(silence: Silence, after: float, window_end: float) -> Deadline:
    """When a detector firing after `after` seconds of silence fires on this one.

    A silence is recorded only while the detector watched (its start is the later of
    the last heartbeat and the moment the detector last began to watch), so the replay
    needs no more than its length. Still silent at the window's end, before the
    deadline: `pending`, the window ended first.
    """
    at = silence.start + after
    if silence.end is not None and at > silence.end:
        return Deadline(None)  # heard again first
    if at <= window_end:
        return Deadline(at)
    return Deadline(None, pending=True)


@dataclass(frozen=True)
class Outcome:
    """One silence that ended in a death, recorded or replayed, or is still undecided."""

    silence: Silence
    replayed_death: float | None
    pending: bool

    @property
    def recorded_death(self) -> float | None:
        return self.silence.recorded_death

    @property
    def verdict(self) -> str:
        """`pending`: the window ends while the agent is silent, before the replayed
        deadline: the replay cannot say yet (whatever the recording did)."""
        recorded, replayed = self.recorded_death, self.replayed_death
        if self.pending:
            return "pending"
        if recorded is not None and replayed is None:
            return "avoided"
        if recorded is None and replayed is not None:
            return "added"
        assert recorded is not None and replayed is not None
        delta = replayed - recorded
        if abs(delta) < TOLERANCE_S:
            return "same"
        return "later" if delta > 0 else "earlier"

    @property
    def false_death(self) -> bool:
        """The same incarnation was heard from again after the silence: it was not really
        dead (a restart is a new incarnation: a real death)."""
        return self.silence.resumed

    @property
    def shift_s(self) -> float | None:
        """How much later (+) or earlier (-) work would have moved."""
        if self.recorded_death is None or self.replayed_death is None:
            return None
        return self.replayed_death - self.recorded_death


def compare(silences: Iterable[Silence], detector: DetectorSettings,
            window: Span) -> list[Outcome]:
    """Each silence overlapping the window that a recorded or a replayed death ends, or
    that the window leaves undecided."""
    outcomes = []
    for silence in silences:
        if not _overlaps(silence, window):
            continue
        found = deadline(silence, death_after(detector), window.end)
        recorded = silence.recorded_death is not None
        if found.at is None and not recorded and not (found.pending and _suspected(
                silence, detector, window)):
            continue
        replayed = found.at
        if replayed is None and recorded and silence.restarted:
            # A real death: a longer dead_after does not avoid it; the restart, taking
            # the id over, is when its work would have moved.
            replayed = silence.end
        outcomes.append(Outcome(silence, replayed, found.pending))
    return outcomes


def _overlaps(silence: Silence, window: Span) -> bool:
    return silence.start <= window.end and (silence.end is None
                                            or silence.end >= window.start)


def _suspected(silence: Silence, detector: DetectorSettings, window: Span) -> bool:
    """A pending silence is worth a row once the replay has at least suspected it."""
    return deadline(silence, suspicion_after(detector), window.end).at is not None


def holes(watched: Sequence[Span], within: Span) -> list[Span]:
    """The parts of `within` that no watched span covers: unknown, not silent."""
    found = []
    at = within.start
    for span in sorted(watched, key=lambda s: s.start):
        if span.start > at:
            found.append(Span(at, min(span.start, within.end)))
        at = max(at, span.end)
        if at >= within.end:
            break
    if at < within.end:
        found.append(Span(at, within.end))
    return [h for h in found if h.end > h.start]


def merged(spans: Iterable[Span]) -> list[Span]:
    """Overlapping or touching spans joined, in order."""
    result: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if result and span.start <= result[-1].end:
            result[-1] = Span(result[-1].start, max(result[-1].end, span.end))
        else:
            result.append(span)
    return result


@dataclass(frozen=True)
class Point:
    """One grid point of a sweep: what those settings would have done over the window."""

    detector: DetectorSettings
    counts: dict[str, int]
    false_deaths: int  # replayed deaths of agents that came back
    real_deaths: int  # replayed deaths of agents that did not
    suspicions: int
    false_suspicions: int
    move_mean_s: float | None  # last heartbeat to work moved, over replayed deaths
    move_p99_s: float | None
    recorded_deaths: int = 0
    false_deaths_recorded: int = 0  # recorded deaths of agents that came back


def evaluate(silences_by_agent: dict[str, list[Silence]], detector: DetectorSettings,
             window: Span) -> tuple[dict[str, list[Outcome]], Point]:
    """The outcomes per agent, and the point's figures."""
    outcomes: dict[str, list[Outcome]] = {}
    counts = dict.fromkeys(VERDICTS, 0)
    moves: list[float] = []
    false_deaths = real_deaths = suspicions = false_suspicions = 0
    recorded = false_recorded = 0
    threshold = suspicion_after(detector)
    for agent_id, silences in silences_by_agent.items():
        found = compare(silences, detector, window)
        if found:
            outcomes[agent_id] = found
        for outcome in found:
            counts[outcome.verdict] += 1
            if outcome.recorded_death is not None:
                recorded += 1
                false_recorded += outcome.silence.resumed
            if outcome.replayed_death is not None:
                moves.append(outcome.replayed_death - outcome.silence.start)
                if outcome.silence.resumed:
                    false_deaths += 1
                else:
                    real_deaths += 1
        for silence in silences:
            if (_overlaps(silence, window)
                    and deadline(silence, threshold, window.end).at is not None):
                suspicions += 1
                false_suspicions += silence.resumed
    return outcomes, Point(detector, counts, false_deaths, real_deaths, suspicions,
                           false_suspicions, _mean(moves), _quantile(moves, 0.99),
                           recorded, false_recorded)


def grid(suspect_after: Sequence[float], dead_after: Sequence[float],
         failures_before_critical: Sequence[int],
         heartbeat_interval: float) -> list[DetectorSettings]:
    """Every combination, in order."""
    return [Detector(s, d, f, heartbeat_interval)
            for s in suspect_after for d in dead_after for f in failures_before_critical]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]
