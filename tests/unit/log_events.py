"""A stand-in for the event store's RecordedEvent in projection unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.agents.agent import Agent
from domain.tasks.task import Task

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


@dataclass(frozen=True)
class FakeLogEvent:
    """The fields of projections.log_event.LogEvent, as the event store's RecordedEvent has."""

    position: int
    kind: str
    aggregate_id: str
    name: str
    event_id: str
    recorded_at: datetime
    state: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        state = dict(self.state)
        for key in ("originator_id", "originator_topic"):
            state.pop(key, None)
        state["version"] = state.pop("originator_version")
        return state


class Log:
    """Aggregates' new events, recorded as a log would hold them: one millisecond apart."""

    def __init__(self) -> None:
        self.events: list[FakeLogEvent] = []

    def record(self, kind: str, aggregate: Agent | Task) -> None:
        for domain_event in aggregate.collect_events():
            position = len(self.events) + 1
            self.events.append(FakeLogEvent(
                position, kind, aggregate.id, type(domain_event).__name__, f"ev-{position}",
                T0 + timedelta(milliseconds=position), dict(vars(domain_event))))
