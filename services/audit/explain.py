"""`explain`: the causal chain behind a task's or an agent's history, from the log."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.js import JetStreamContext

from infra.log.port import EventLog
from infra.log.recorded import RecordedEvent
from infra.names import AGENT, TASK, Names
from services.audit.chain import MOVES, agent_step, detector_readings, movers, step, task_story
from services.audit.reasons import move_cause


class Explainer:
    """Reads what an explanation needs from the log; the chain itself is pure (chain.py)."""

    def __init__(self, store: EventLog, js: JetStreamContext, names: Names) -> None:
        self.store = store
        self.js = js
        self.names = names

    async def task(self, task_id: str) -> dict[str, Any] | None:
        """Why the task is where it is: each step, and for each move, what caused it."""
        events = await self.store.history(TASK, task_id)
        if not events:
            return None
        agent_events = {a: await self.store.history(AGENT, a) for a in movers(events)}
        found = task_story(events, agent_events)
        await self._heartbeat_times(found)
        return found

    async def agent(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's incarnations and health decisions, and the work moved off it."""
        events = await self.store.history(AGENT, agent_id)
        if not events:
            return None
        moved = []
        for name in MOVES:
            subject = self.names.event(TASK, "*", name)
            async for event in self.store.iterate(0, subject):
                data = event.data()
                if data.get("from_agent") == agent_id:
                    moved.append(_moved(event, data))
        moved.sort(key=lambda m: m["position"])
        found = {"agent_id": agent_id, "chain": [agent_step(e) for e in events],
                 "tasks_moved": moved}
        await self._heartbeat_times(found)
        return found

    async def _heartbeat_times(self, found: dict[str, Any]) -> None:
        """Add when the last heartbeat heard was sent, while the heartbeat stream has it."""
        sent: dict[int, str | None] = {}
        for reading in detector_readings(found):
            sequence = reading.get("last_heartbeat_seq") or 0
            if sequence and sequence not in sent:
                sent[sequence] = await self._sent_at(sequence)
            if sent.get(sequence):
                reading["last_heartbeat_at"] = sent[sequence]

    async def _sent_at(self, sequence: int) -> str | None:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            raw = await self.js.get_msg(self.names.heartbeats_stream, sequence)
            if raw.time is not None:
                return _iso(raw.time)
        return None


def _moved(event: RecordedEvent, data: dict[str, Any]) -> dict[str, Any]:
    to_agent = data.get("agent_id")
    cause = move_cause(data.get("reason", ""), data.get("from_agent", ""))
    reason = f"{event.aggregate_id} moved to {to_agent}: {cause}" if to_agent else (
        f"{event.aggregate_id} returned to the queue: {cause}")
    return {**step(event, reason), "task_id": event.aggregate_id, "to_agent": to_agent}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
