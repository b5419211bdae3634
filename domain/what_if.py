"""Replaying recorded heartbeats under other detector settings: pure functions of times."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Silence:
    """A stretch without a heartbeat: from the last sign of life until the next one
    (`resumed` True), or until the end of the recording (`resumed` False)."""

    start: float
    end: float
    resumed: bool

    @property
    def length(self) -> float:
        return self.end - self.start


def silences(signals: Sequence[float], end: float, ended_by_leaving: bool) -> list[Silence]:
    """Every gap between consecutive signs of life, and the trailing one.

    `signals` are the times the agent was heard from (registrations, heartbeats), sorted.
    An agent that left on purpose has no trailing silence.
    """
    gaps = [Silence(a, b, True) for a, b in itertools.pairwise(signals)]
    if signals and not ended_by_leaving and end > signals[-1]:
        gaps.append(Silence(signals[-1], end, False))
    return gaps


def deaths(gaps: Sequence[Silence], dead_after: float) -> list[float]:
    """When a detector with this dead_after declares the agent dead, gap by gap."""
    return [g.start + dead_after for g in gaps if g.length >= dead_after]


@dataclass(frozen=True)
class Outcome:
    """One silence that ended in a death under either the recorded or the other settings."""

    silence: Silence
    recorded_death: float | None
    replayed_death: float | None
    # Differences below this are the detector's own latency, not a change of outcome.
    tolerance_s: float = 0.25

    @property
    def verdict(self) -> str:
        if self.recorded_death is not None and self.replayed_death is None:
            return "avoided"
        if self.recorded_death is None and self.replayed_death is not None:
            return "added"
        assert self.recorded_death is not None and self.replayed_death is not None
        delta = self.replayed_death - self.recorded_death
        if abs(delta) < self.tolerance_s:
            return "same"
        return "later" if delta > 0 else "earlier"

    @property
    def false_death(self) -> bool:
        """The agent was heard from again after the silence: it was not really dead."""
        return self.silence.resumed

    @property
    def shift_s(self) -> float | None:
        """How much later (+) or earlier (-) work would have moved."""
        if self.recorded_death is None or self.replayed_death is None:
            return None
        return self.replayed_death - self.recorded_death


def compare(gaps: Sequence[Silence], recorded_deaths: Sequence[float],
            dead_after: float) -> list[Outcome]:
    """Match the recorded deaths to silences, and say what other settings would have done."""
    outcomes = []
    for gap in gaps:
        recorded = next((t for t in recorded_deaths if gap.start <= t <= gap.end + 1e-6), None)
        replayed = gap.start + dead_after if gap.length >= dead_after else None
        if recorded is not None or replayed is not None:
            outcomes.append(Outcome(gap, recorded, replayed))
    return outcomes
