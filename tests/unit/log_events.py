"""A stand-in for the event store's RecordedEvent in projection unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
