"""The fleet as it was: every projection rebuilt from the log up to a position or time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from domain.base import CARRIED_FORWARD
from infra.log.port import EventLog
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.fleet.catalog import Catalog
from projections.limits import Limits

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Snapshot:
    position: int = 0
    at: datetime | None = None
    agents: AgentHealth = field(default_factory=AgentHealth)
    tasks: TaskBoard = field(default_factory=TaskBoard)
    catalog: Catalog = field(default_factory=Catalog)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.tasks.follow(self.limits)

    def to_json(self) -> dict[str, object]:
        return {
            "position": self.position,
            "at": self.at.isoformat() if self.at else None,
            "agents": [a.to_json() for a in self.agents.query()],
            "services": {name: self.catalog.instances(name) for name in self.catalog.services()},
            "tasks": [t.to_json() for t in self.tasks.query(limit=10**9)],
        }


async def state_at(store: EventLog, position: int | None = None,
                   time: datetime | None = None, progress: Progress | None = None) -> Snapshot:
    """Replay the log up to `position` (inclusive) or up to `time`, whichever is given."""
    total = await store.last_position()
    until = min(position, total) if position is not None else total
    snapshot = Snapshot()
    async for event in store.iterate(0, until=until):
        if time is not None and event.recorded_at > time:
            break
        snapshot.limits.apply(event)  # before the board: placed under those in force
        if event.name != CARRIED_FORWARD:  # a restatement changes no view
            for projection in (snapshot.agents, snapshot.tasks, snapshot.catalog):
                projection.apply(event)
        snapshot.position = event.position
        snapshot.at = event.recorded_at
        if progress is not None:
            progress(event.position, until)
    return snapshot
