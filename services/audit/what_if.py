"""`what-if`: the recorded heartbeats replayed under other detector settings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext

from domain.what_if import Outcome, compare, silences
from infra.event_store import EventStore
from infra.names import AGENT, Names
from services.audit.heartbeats import recorded_heartbeats


@dataclass(frozen=True)
class WhatIfReport:
    suspect_after: float
    dead_after: float
    window: tuple[float, float]
    outcomes: dict[str, list[Outcome]]
    recorded_settings: list[float]

    def to_json(self) -> dict[str, Any]:
        rows = [
            {"agent_id": agent_id, "silence_from": o.silence.start,
             "silence_s": round(o.silence.length, 3), "resumed": o.silence.resumed,
             "recorded_death": o.recorded_death, "replayed_death": o.replayed_death,
             "verdict": o.verdict, "false_death": o.false_death,
             "shift_s": None if o.shift_s is None else round(o.shift_s, 3)}
            for agent_id, outcomes in sorted(self.outcomes.items()) for o in outcomes
        ]
        return {
            "settings": {"suspect_after": self.suspect_after, "dead_after": self.dead_after},
            "recorded_dead_after": sorted(set(self.recorded_settings)),
            "window": {"from": self.window[0], "to": self.window[1]},
            "summary": {
                "recorded_deaths": sum(r["recorded_death"] is not None for r in rows),
                "false_deaths_recorded": sum(r["recorded_death"] is not None
                                             and r["false_death"] for r in rows),
                "avoided": sum(r["verdict"] == "avoided" for r in rows),
                "added": sum(r["verdict"] == "added" for r in rows),
                "later": sum(r["verdict"] == "later" for r in rows),
                "earlier": sum(r["verdict"] == "earlier" for r in rows),
            },
            "deaths": rows,
        }


@dataclass(frozen=True)
class Recording:
    """What a replay reads once: every agent's signs of life, its recorded deaths and
    leaves, and the dead_after each recorded death was declared under."""

    signals: dict[str, list[float]]
    recorded: dict[str, list[float]]
    left: dict[str, float]
    settings_in_force: list[float]


async def recording(store: EventStore, js: JetStreamContext, names: Names,
                    progress: Callable[[int, int], None] | None = None) -> Recording:
    """Registrations and deaths from the agent log, heartbeats from the heartbeat stream."""
    signals: dict[str, list[float]] = defaultdict(list)
    recorded: dict[str, list[float]] = defaultdict(list)
    left: dict[str, float] = {}
    settings_in_force: list[float] = []
    total = await store.last_position() if progress is not None else 0
    async for event in store.iterate(0, names.kind_events(AGENT)):
        if progress is not None:
            progress(event.position, total)
        at = event.recorded_at.timestamp()
        if event.name in ("Registered", "Reregistered", "Recovered"):
            signals[event.aggregate_id].append(at)
            left.pop(event.aggregate_id, None)
        elif event.name == "DeclaredDead":
            recorded[event.aggregate_id].append(at)
            settings_in_force.append(float(event.data()["dead_after_s"]))
        elif event.name == "Deregistered":
            left[event.aggregate_id] = at
    for beat in await recorded_heartbeats(js, names):
        signals[beat.agent_id].append(beat.at)
    return Recording(dict(signals), dict(recorded), left, settings_in_force)


def replay(found: Recording, suspect_after: float, dead_after: float,
           start: float | None = None, end: float | None = None,
           now: float | None = None) -> WhatIfReport:
    """The recording replayed under `dead_after`, in [start, end]."""
    last_seen = max((t for times in found.signals.values() for t in times), default=0.0)
    window_end = end if end is not None else (now if now is not None else last_seen)
    window_start = start if start is not None else 0.0
    outcomes: dict[str, list[Outcome]] = {}
    for agent_id, times in found.signals.items():
        inside = sorted(t for t in times if window_start <= t <= window_end)
        leaves = found.left.get(agent_id)
        gone = leaves is not None and (not inside or leaves >= inside[-1])
        gaps = silences(inside, min(window_end, leaves) if gone and leaves else window_end,
                        ended_by_leaving=gone)
        compared = compare(gaps, found.recorded.get(agent_id, []), dead_after)
        if compared:
            outcomes[agent_id] = compared
    return WhatIfReport(suspect_after, dead_after, (window_start, window_end), outcomes,
                        found.settings_in_force)


async def what_if(store: EventStore, js: JetStreamContext, names: Names,
                  suspect_after: float, dead_after: float, start: float | None = None,
                  end: float | None = None, now: float | None = None,
                  progress: Callable[[int, int], None] | None = None) -> WhatIfReport:
    """Replay every agent's signs of life in [start, end] under `dead_after`, against the
    deaths the log recorded. Signs of life are registrations and the heartbeats the
    heartbeat stream still holds."""
    found = await recording(store, js, names, progress)
    return replay(found, suspect_after, dead_after, start, end, now)
