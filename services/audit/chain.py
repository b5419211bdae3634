"""A task's history as steps, each with a short human reason: pure functions of events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from domain.schedules.schedule import fired_by
from domain.tasks.task import TaskStatus
from projections.board.tasks import STATUS_BY_EVENT
from services.audit.reasons import REASONS, TaskSoFar, detector_reading, step_reason

MOVES = ("Reassigned", "Requeued")


class StoryEvent(Protocol):
    """What the chain needs of a recorded event (the event store's RecordedEvent has it)."""

    @property
    def position(self) -> int: ...
    @property
    def aggregate_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def recorded_at(self) -> datetime: ...
    def data(self) -> dict[str, Any]: ...


def step(event: StoryEvent, reason: str | None = None) -> dict[str, Any]:
    """One event as a step of a chain."""
    found: dict[str, Any] = {
        "position": event.position, "at": event.recorded_at.isoformat(), "type": event.name,
        "aggregate_id": event.aggregate_id, "event_id": event.event_id,
        "causation_id": event.causation_id, "data": event.data(),
        # Who sent the command behind it (fakes in unit tests may not say).
        "identity": getattr(event, "identity", None),
    }
    if reason is not None:
        found["reason"] = reason
    return found


def movers(events: Sequence[StoryEvent]) -> list[str]:
    """The agents a task was moved off, whose histories hold the causes of the moves."""
    return sorted({e.data().get("from_agent") or "" for e in events if e.name in MOVES} - {""})


@dataclass
class _Walk:
    """The task as the steps so far left it, for the reasons of the next step."""

    so_far: TaskSoFar = field(default_factory=TaskSoFar)
    attempts: int = 0
    retry_at: float | None = None


def task_story(events: Sequence[StoryEvent],
               agent_events: Mapping[str, Sequence[StoryEvent]]) -> dict[str, Any]:
    """Why the task is where it is: each step with its reason, each move with its cause."""
    walk = _Walk()
    chain = []
    for event in events:
        data = event.data()
        found = step(event, step_reason(event.name, data, walk.so_far))
        if event.name in MOVES:
            found["cause"] = _cause(event, agent_events.get(data.get("from_agent") or "", ()))
        if event.name in ("Assigned", "Reassigned"):
            found["placement"] = placement(data)
        if event.name == "Submitted" and (firing := fired_by(event.causation_id)):
            found["schedule"] = {"name": firing[0], "due": firing[1]}
            due = datetime.fromtimestamp(firing[1], UTC).isoformat()
            found["reason"] = (f"{found.get('reason') or 'submitted'}; fired by schedule "
                               f"{firing[0]} for its slot due at {due}")
        chain.append(found)
        walk.so_far.after(event.name, data)
        walk.attempts = max(walk.attempts, int(data.get("attempt") or 0))
        if event.name == "Failed":
            walk.retry_at = data.get("retry_at")
        elif event.name == "Submitted" and data.get("not_before"):
            walk.retry_at = data["not_before"]  # placed not before its scheduled time
    status = status_after(events)
    first = events[0].data() if events[0].name == "Submitted" else {}
    return {
        "task_id": events[0].aggregate_id,
        "status": status,
        "kind": first.get("kind", ""),
        "requires": list(first.get("requires", [])),
        "attempts": walk.attempts,
        "retry_at": walk.retry_at if status in (TaskStatus.RETRY_WAIT,
                                                 TaskStatus.SCHEDULED) else None,
        "position": events[-1].position,
        "chain": chain,
        "stale_results_refused": [s for s in chain if s["type"] == "StaleResultRefused"],
    }


# Causes of moves that are deadlines, not events: their causation id's prefix.
_DEADLINE_CAUSES = {
    "timeout": "the assignment was not accepted within the accept timeout",
    "quiet": "the run went without the progress its agent promised",
}


def _cause(move: StoryEvent, agent_events: Sequence[StoryEvent]) -> dict[str, Any] | None:
    """What made the task move: the agent's death, leave or restart, a timeout or a command."""
    cause_id = move.causation_id
    if not cause_id:
        return None
    by_id = {e.event_id: e for e in agent_events}
    cause = by_id.get(cause_id)
    if cause is None:
        kind = cause_id.partition("-")[0]
        reason = _DEADLINE_CAUSES.get(kind)
        return {"event_id": cause_id, "type": "timeout" if reason else "command",
                "aggregate_id": move.aggregate_id,
                "reason": reason or "a command or the orchestrator itself"}
    found = agent_step(cause)
    if cause.name == "DeclaredDead":
        suspicion = by_id.get(cause.causation_id or "")
        if suspicion is not None:
            found["suspected"] = agent_step(suspicion)
    return found


def agent_step(event: StoryEvent) -> dict[str, Any]:
    """An agent event as a step, with the detector's reading for health decisions."""
    data = event.data()
    found = step(event, REASONS.get(event.name, lambda d: None)(data))
    if event.name in ("Suspected", "DeclaredDead", "Recovered"):
        found["detector"] = detector_reading(data)
    return found


def placement(data: dict[str, Any]) -> dict[str, Any]:
    """Why this agent: the strategy, the candidates looked at, and the chosen one's load."""
    considered = data.get("considered") or []
    agent_id = data.get("agent_id", "")
    chosen = next((c for c in considered if c.get("agent_id") == agent_id), None)
    reason = f"{data.get('strategy')} chose {agent_id}"
    if chosen is not None:
        reason += (f" (load {chosen.get('load')}/{chosen.get('capacity')}) among "
                   f"{len(considered)} healthy agent(s) considered")
    return {"strategy": data.get("strategy"), "chosen": agent_id, "considered": considered,
            "reason": reason, "move_reason": data.get("reason")}


def status_after(events: Sequence[StoryEvent]) -> str:
    status: str = TaskStatus.PENDING.value
    for event in events:
        status = STATUS_BY_EVENT.get(event.name, status)
        if event.name == "Submitted" and event.data().get("not_before"):
            status = TaskStatus.SCHEDULED.value
    return status


def detector_readings(found: dict[str, Any]) -> list[dict[str, Any]]:
    """Every detector reading in an explanation: the ones a heartbeat time is added to."""
    readings = []
    for item in found.get("chain", []):
        for holder in (item, item.get("cause") or {}, (item.get("cause") or {}).get(
                "suspected") or {}):
            if "detector" in holder:
                readings.append(holder["detector"])
    return readings
