"""`explain`: the causal chain behind a task's or an agent's history, from the log."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.js import JetStreamContext

from infra.event_store import EventStore, RecordedEvent
from infra.names import AGENT, TASK, Names
from projections.tasks import STATUS_BY_EVENT

_MOVES = ("Reassigned", "Requeued")


class Explainer:
    def __init__(self, store: EventStore, js: JetStreamContext, names: Names) -> None:
        self.store = store
        self.js = js
        self.names = names

    async def task(self, task_id: str) -> dict[str, Any] | None:
        """Why the task is where it is: each step, and for each move, what caused it."""
        events = await self.store.history(TASK, task_id)
        if not events:
            return None
        agent_events: dict[str, list[RecordedEvent]] = {}
        steps = []
        for event in events:
            step = _step(event)
            if event.name in _MOVES:
                from_agent = event.data()["from_agent"]
                if from_agent not in agent_events:
                    agent_events[from_agent] = await self.store.history(AGENT, from_agent)
                step["cause"] = await self._cause(agent_events[from_agent],
                                                  event.causation_id)
                step["placement"] = _placement(event)
            elif event.name == "Assigned":
                step["placement"] = _placement(event)
            steps.append(step)
        last = events[-1]
        return {
            "task_id": task_id,
            "status": _status_after(events),
            "attempts": max((e.data().get("attempt", 0) for e in events), default=0),
            "position": last.position,
            "chain": steps,
            "stale_results_refused": [_step(e) for e in events
                                      if e.name == "StaleResultRefused"],
        }

    async def agent(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's incarnations and health decisions, and the work moved off it."""
        events = await self.store.history(AGENT, agent_id)
        if not events:
            return None
        steps = []
        for event in events:
            step = _step(event)
            if event.name in ("Suspected", "DeclaredDead"):
                step["detector"] = await self._detector(event)
            steps.append(step)
        moved = []
        for name in _MOVES:
            subject = self.names.event(TASK, "*", name)
            async for event in self.store.iterate(0, subject):
                if event.data()["from_agent"] == agent_id:
                    moved.append({**_step(event), "task_id": event.aggregate_id,
                                  "to_agent": event.data().get("agent_id")})
        moved.sort(key=lambda m: m["position"])
        return {"agent_id": agent_id, "chain": steps, "tasks_moved": moved}

    async def _cause(self, agent_events: list[RecordedEvent],
                     cause_id: str | None) -> dict[str, Any] | None:
        by_id = {e.event_id: e for e in agent_events}
        cause = by_id.get(cause_id or "")
        if cause is None:
            return {"event_id": cause_id, "type": "timeout or command"} if cause_id else None
        found = _step(cause)
        if cause.name == "DeclaredDead":
            found["detector"] = await self._detector(cause)
            suspicion = by_id.get(cause.causation_id or "")
            if suspicion is not None:
                found["suspected"] = {**_step(suspicion),
                                      "detector": await self._detector(suspicion)}
        return found

    async def _detector(self, event: RecordedEvent) -> dict[str, Any]:
        """The detector's reading: silence, settings in force, the last heartbeat heard."""
        data = event.data()
        reading: dict[str, Any] = {
            "silence_s": data.get("silence_s"),
            "suspect_after_s": data.get("suspect_after_s"),
            "dead_after_s": data.get("dead_after_s"),
            "incarnation": data.get("incarnation"),
            "last_heartbeat_seq": data.get("last_heartbeat_seq"),
            "last_heartbeat_at": None,
        }
        sequence = data.get("last_heartbeat_seq") or 0
        if sequence:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                raw = await self.js.get_msg(self.names.heartbeats_stream, sequence)
                if raw.time is not None:
                    reading["last_heartbeat_at"] = _iso(raw.time)
        return {k: v for k, v in reading.items() if v is not None}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _step(event: RecordedEvent) -> dict[str, Any]:
    return {
        "position": event.position, "at": event.recorded_at.isoformat(), "type": event.name,
        "aggregate_id": event.aggregate_id, "event_id": event.event_id,
        "causation_id": event.causation_id, "data": event.data(),
    }


def _placement(event: RecordedEvent) -> dict[str, Any]:
    """Why this agent: the strategy, the candidates looked at, and the chosen one's load."""
    data = event.data()
    considered = data.get("considered", [])
    chosen = next((c for c in considered if c["agent_id"] == data["agent_id"]), None)
    reason = f"{data.get('strategy')} chose {data['agent_id']}"
    if chosen is not None:
        reason += (f" (load {chosen['load']}/{chosen['capacity']}) among "
                   f"{len(considered)} healthy agent(s) considered")
    return {"strategy": data.get("strategy"), "chosen": data["agent_id"],
            "considered": considered, "reason": reason,
            "move_reason": data.get("reason")}


def _status_after(events: list[RecordedEvent]) -> str:
    status = "pending"
    for event in events:
        status = STATUS_BY_EVENT.get(event.name, status)
    return status
