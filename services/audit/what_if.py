"""`what-if`: the recorded silences replayed under other detector settings.

Silences come from two durable sources: the agent log (each `DeclaredDead` says how long
the agent had been silent, and the silence lasts until it registers again; a `Suspected`
with nothing after it is a silence still going on) and the liveness record
(services/audit/liveness.py: every other silence longer than its resolution, while the
leader watched). Time no watch covers is reported as unknown coverage, never as silence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext

from domain.agents.health import DetectorSettings
from domain.agents.what_if import (
    Detector,
    Outcome,
    Point,
    Silence,
    Span,
    ended_by,
    evaluate,
    grid,
    holes,
    same_incarnation,
    suspicion_after,
)
from infra.log.port import EventLog
from infra.names import AGENT, Names
from services.audit.liveness import LivenessRecord, read_record
from services.health.liveness_record import RESOLUTION_INTERVALS

# Grid limits, for the read API and the CLI alike.
MAX_AXIS = 10
MAX_POINTS = 100
_REGISTRATIONS = ("Registered", "Reregistered")


@dataclass
class Recording:
    """What a replay reads once: every agent's silences and lives, the record's extent,
    and the dead_after each recorded death was declared under."""

    silences: dict[str, list[Silence]]
    lives: dict[str, list[Span]]  # registration to death, leaving or the next one
    record: LivenessRecord
    settings_in_force: list[float]
    now: float

    @property
    def resolution(self) -> float | None:
        return self.record.resolution


@dataclass
class _Agent:
    """One agent while the log is read."""

    silences: list[Silence]
    lives: list[Span]
    life_from: float | None = None
    incarnation: int = 0
    instance_id: str | None = None  # of the incarnation's process
    suspected: float | None = None  # start of a silence a Suspected opened
    dead: Silence | None = None  # the silence a DeclaredDead ended in, still going on

    def end_life(self, at: float) -> None:
        if self.life_from is not None:
            self.lives.append(Span(self.life_from, at))
            self.life_from = None

    def came_back(self, at: float, instance_id: str | None) -> None:
        """The id registered again at `at`, by this process (domain.agents.what_if.ended_by)."""
        same = same_incarnation(self.instance_id, instance_id)
        if self.dead is not None:
            self.silences.append(ended_by(self.dead, at, same))
            self.dead = None
        if self.suspected is not None:
            self.silences.append(ended_by(Silence(self.suspected, None, self.incarnation),
                                          at, same))
            self.suspected = None


async def recording(store: EventLog, js: JetStreamContext, names: Names, now: float,
                    progress: Callable[[int, int], None] | None = None) -> Recording:
    """The agent log and the liveness record, read once."""
    agents: dict[str, _Agent] = defaultdict(lambda: _Agent([], []))
    settings_in_force: list[float] = []
    total = await store.last_position() if progress is not None else 0
    async for event in store.iterate(0, names.kind_events(AGENT)):
        if progress is not None:
            progress(event.position, total)
        at = event.recorded_at.timestamp()
        agent = agents[event.aggregate_id]
        name = event.name
        if name in _REGISTRATIONS:
            data = event.data()
            agent.came_back(at, data.get("instance_id"))
            agent.end_life(at)
            agent.life_from = at
            agent.incarnation = int(data.get("incarnation", 1))
            agent.instance_id = data.get("instance_id")
        elif name == "Suspected":
            agent.suspected = at - float(event.data()["silence_s"])
        elif name == "Recovered":
            agent.suspected = None  # the record holds that silence, with its end
        elif name == "DeclaredDead":
            data = event.data()
            settings_in_force.append(float(data["dead_after_s"]))
            agent.suspected = None
            agent.dead = Silence(at - float(data["silence_s"]), None, agent.incarnation,
                                 at, event.position)
            agent.end_life(at)  # known silent from here: no coverage needed
        elif name == "Deregistered":
            agent.suspected = None
            agent.end_life(at)
    record = await read_record(js, names, now)
    for agent_id, found in record.silences.items():
        agents[agent_id].silences += [Silence(s.start, s.end, s.incarnation) for s in found]
    for agent in agents.values():
        if agent.dead is not None:
            agent.silences.append(agent.dead)
        if agent.suspected is not None:
            agent.silences.append(Silence(agent.suspected, None, agent.incarnation))
        agent.end_life(now)
        agent.silences.sort(key=lambda s: s.start)
    return Recording({a: v.silences for a, v in agents.items()},
                     {a: v.lives for a, v in agents.items()}, record, settings_in_force, now)


@dataclass(frozen=True)
class WhatIfReport:
    point: Point
    window: Span
    outcomes: dict[str, list[Outcome]]
    found: Recording

    def to_json(self) -> dict[str, Any]:
        rows = [_row(agent_id, o) for agent_id, outcomes in sorted(self.outcomes.items())
                for o in outcomes]
        detector = self.point.detector
        return {
            "settings": {"suspect_after": detector.suspect_after,
                         "dead_after": detector.dead_after,
                         "failures_before_critical": detector.failures_before_critical},
            "recorded_dead_after": sorted(set(self.found.settings_in_force)),
            "window": {"from": self.window.start, "to": self.window.end},
            "record": record_json(self.found, self.window),
            "summary": summary(self.point),
            "deaths": rows,
            "unknown": unknown(self.found, self.window),
        }


def _row(agent_id: str, o: Outcome) -> dict[str, Any]:
    return {
        "agent_id": agent_id, "incarnation": o.silence.incarnation,
        "silence_from": o.silence.start, "silence_to": o.silence.end,
        "silence_s": round(o.silence.length(o.silence.end or _inf), 3),
        "resumed": o.silence.resumed, "recorded_death": o.recorded_death,
        "death_position": o.silence.death_position, "replayed_death": o.replayed_death,
        "verdict": o.verdict, "false_death": o.false_death,
        "shift_s": None if o.shift_s is None else round(o.shift_s, 3)}


_inf = float("inf")


def summary(point: Point) -> dict[str, Any]:
    """A point's figures."""
    return {
        "recorded_deaths": point.recorded_deaths,
        "false_deaths_recorded": point.false_deaths_recorded,
        **point.counts,
        "false_deaths": point.false_deaths, "real_deaths": point.real_deaths,
        "suspicions": point.suspicions, "false_suspicions": point.false_suspicions,
        "move_mean_s": _rounded(point.move_mean_s), "move_p99_s": _rounded(point.move_p99_s),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def record_json(found: Recording, window: Span) -> dict[str, Any]:
    record = found.record
    return {"resolution_s": record.resolution, "retention_s": record.retention_s,
            "messages": record.messages, "bytes": record.bytes,
            "watched": [{"from": s.start, "to": s.end} for s in record.watched
                        if s.end >= window.start and s.start <= window.end]}


def unknown(found: Recording, window: Span) -> list[dict[str, Any]]:
    """Each agent's time alive (not known dead, not gone) in the window that no watch
    covers: its liveness then is unknown, and no silence is read into it."""
    rows = []
    for agent_id, lives in sorted(found.lives.items()):
        for life in lives:
            inside = Span(max(life.start, window.start), min(life.end, window.end))
            if inside.end <= inside.start:
                continue
            rows += [{"agent_id": agent_id, "from": h.start, "to": h.end}
                     for h in holes(found.record.watched, inside)]
    return rows


def window_of(found: Recording, start: float | None, end: float | None) -> Span:
    return Span(start if start is not None else 0.0, end if end is not None else found.now)


def replay(found: Recording, detector: DetectorSettings, start: float | None = None,
           end: float | None = None) -> WhatIfReport:
    """The recording replayed under `detector`, in [start, end] (default: all, to now)."""
    window = window_of(found, start, end)
    outcomes, point = evaluate(found.silences, detector, window)
    return WhatIfReport(point, window, outcomes, found)


def sweep(found: Recording, suspect_after: Sequence[float] | None, dead_after: Sequence[float],
          failures_before_critical: Sequence[int], heartbeat_interval: float,
          start: float | None = None, end: float | None = None) -> dict[str, Any]:
    """Every point of the grid replayed over one reading of the record. Without
    suspect_after values, each dead_after is paired with half of itself."""
    window = window_of(found, start, end)
    points = []
    detectors = (grid(suspect_after, dead_after, failures_before_critical, heartbeat_interval)
                 if suspect_after else
                 [Detector(d / 2, d, f, heartbeat_interval)
                  for d in dead_after for f in failures_before_critical])
    for detector in detectors:
        _, point = evaluate(found.silences, detector, window)
        points.append({"suspect_after": detector.suspect_after,
                       "dead_after": detector.dead_after,
                       "failures_before_critical": detector.failures_before_critical,
                       "below_resolution": below_resolution(found, detector),
                       **summary(point)})
    return {"recorded_dead_after": sorted(set(found.settings_in_force)),
            "window": {"from": window.start, "to": window.end},
            "record": record_json(found, window),
            "unknown_agents": len({u["agent_id"] for u in unknown(found, window)}),
            "points": points}


def below_resolution(found: Recording, detector: DetectorSettings) -> bool:
    """Silences shorter than the record's resolution are not kept: a detector that
    suspects sooner than that may be told of fewer suspicions than it would have had."""
    return found.resolution is not None and suspicion_after(detector) < found.resolution


def heartbeat_interval_of(found: Recording, default: float = 1.0) -> float:
    """The interval the record was kept at (its resolution is a multiple of it)."""
    return found.resolution / RESOLUTION_INTERVALS if found.resolution else default
