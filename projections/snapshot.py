"""Snapshots of the projections: their state at one log position, as one JSON document.

A snapshot lets an orchestrator start from a recent position instead of the log's
beginning. It holds the agent health and the task board; the catalog is derived from the
agents on restore (an instance is an agent's declared service while it has not left), so
it is neither stored twice nor able to disagree with them. The derived indexes (open tasks
by agent, the queue, services by name) are rebuilt the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

import orjson

from domain import shared_values
from projections.agents import NOT_RUNNING, AgentHealth, AgentView
from projections.catalog import AgentEntry, Catalog
from projections.tasks import TaskBoard, TaskView

# Bumped when the meaning of a view's fields changes (a change of their names or order is
# caught by the field lists a snapshot carries): a snapshot of another version is not used.
SNAPSHOT_VERSION = 1

_AGENT_FIELDS = tuple(f.name for f in fields(AgentView))
_TASK_FIELDS = tuple(f.name for f in fields(TaskView))
_agent_row = attrgetter(*_AGENT_FIELDS)
_task_row = attrgetter(*_TASK_FIELDS)
# Where the datetimes are in a row (written as ISO 8601 text).
_AGENT_TIMES = tuple(_AGENT_FIELDS.index(name) for name in
                     ("registered_at", "updated_at", "last_heartbeat_at"))
_TASK_TIMES = tuple(_TASK_FIELDS.index(name) for name in
                    ("submitted_at", "updated_at", "assigned_at", "started_at",
                     "finished_at"))

View = TypeVar("View", AgentView, TaskView)


class SnapshotUnusable(Exception):
    """The document is not a snapshot this version can restore."""


@dataclass(frozen=True)
class Snapshot:
    position: int
    event_id: str  # of the event at `position`: tells this log from another of that length
    agents: list[AgentView]
    tasks: list[TaskView]


def encode(agents: AgentHealth, board: TaskBoard, position: int, event_id: str) -> bytes:
    """The projections as they are now, which must be at `position`.

    One synchronous pass: no event can be applied half-way through it. Each view is a
    row of its fields' values (C-level attrgetter, orjson writes datetimes natively), which
    is several times quicker to read back than an object per view.
    """
    return orjson.dumps({
        "version": SNAPSHOT_VERSION,
        "position": position,
        "event_id": event_id,
        "agent_fields": _AGENT_FIELDS,
        "agents": [_agent_row(view) for view in agents.agents.values()],
        "task_fields": _TASK_FIELDS,
        "tasks": [_task_row(view) for view in board.tasks.values()],
    })


def decode(data: bytes) -> Snapshot:
    """The snapshot in `data`, or SnapshotUnusable. (Hundreds of thousands of new
    containers: the caller may want the cyclic garbage collector paused meanwhile.)"""
    try:
        document = orjson.loads(data)
        if document.get("version") != SNAPSHOT_VERSION:
            raise SnapshotUnusable(f"version {document.get('version')!r}, "
                                   f"not {SNAPSHOT_VERSION}")
        if (tuple(document["agent_fields"]) != _AGENT_FIELDS
                or tuple(document["task_fields"]) != _TASK_FIELDS):
            raise SnapshotUnusable("its views have other fields")
        return Snapshot(
            position=int(document["position"]),
            event_id=str(document["event_id"]),
            agents=_views(AgentView, document["agents"], _AGENT_TIMES),
            tasks=_views(TaskView, document["tasks"], _TASK_TIMES),
        )
    except SnapshotUnusable:
        raise
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError,
            ValueError) as exc:
        raise SnapshotUnusable(f"malformed: {exc!r}") from exc


def _views(cls: type[View], rows: list[list[Any]], times: tuple[int, ...]) -> list[View]:
    views = []
    for row in rows:
        for index in times:
            value = row[index]
            if value is not None:
                row[index] = datetime.fromisoformat(value)
        views.append(cls(*row))
    return views


def restore(snapshot: Snapshot, agents: AgentHealth, board: TaskBoard,
            catalog: Catalog) -> None:
    """Put empty projections in the snapshot's state."""
    for view in snapshot.agents:  # as applying their registrations would hold them
        view.capabilities = shared_values.capabilities(view.capabilities)
        view.kinds = shared_values.capabilities(view.kinds)
        view.labels = shared_values.labels(view.labels)
        view.services = shared_values.services(view.services)
        view.running = view.running or NOT_RUNNING
    agents.agents = {view.agent_id: view for view in snapshot.agents}
    agents.position = snapshot.position
    for task in snapshot.tasks:
        board.enter(task)
    board.position = snapshot.position
    for view in snapshot.agents:
        if not view.left:
            catalog.add(AgentEntry(view.agent_id, view.incarnation, view.labels,
                                   view.services, view.liveness, view.draining))
    catalog.position = snapshot.position
    catalog.changed = set()
