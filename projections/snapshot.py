"""Snapshots of the projections: their state at one log position, as one JSON document.

A snapshot lets an orchestrator start from a recent position instead of the log's
beginning. It holds the agent health and the task board; the catalog is derived from the
agents on restore (an instance is an agent's declared service while it has not left), so
it is neither stored twice nor able to disagree with them. The derived indexes (open tasks
by agent, the queue, services by name) are rebuilt the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

import orjson

from domain import shared_values
from projections.agents import NOT_RUNNING, AgentHealth, AgentView, share_declared
from projections.catalog import AgentEntry, Catalog
from projections.tasks import TaskBoard, TaskView

# Bumped when the meaning of a view's fields changes (a change of their names or order is
# caught by the field lists a snapshot carries): a snapshot of another version is not used.
SNAPSHOT_VERSION = 2  # 2: a task's times are epoch seconds; the order tasks finished in

_AGENT_FIELDS = tuple(f.name for f in fields(AgentView))
_TASK_FIELDS = tuple(f.name for f in fields(TaskView))
_agent_row = attrgetter(*_AGENT_FIELDS)
_task_row = attrgetter(*_TASK_FIELDS)
# Where the datetimes are in a row (written as ISO 8601 text); a task's are floats.
_AGENT_TIMES = tuple(_AGENT_FIELDS.index(name) for name in
                     ("registered_at", "updated_at", "last_heartbeat_at"))

View = TypeVar("View", AgentView, TaskView)


class SnapshotUnusable(Exception):
    """The document is not a snapshot this version can restore."""


@dataclass(frozen=True)
class Snapshot:
    position: int
    event_id: str  # of the event at `position`: tells this log from another of that length
    agents: list[AgentView]
    tasks: list[TaskView]
    # The finished tasks' ids in the order they finished: the board's bounds drop the
    # first first, so a restored board must have them in that order.
    finished: list[str] = field(default_factory=list)


def encode(agents: AgentHealth, board: TaskBoard, position: int, event_id: str) -> bytes:
    """The projections as they are now, which must be at `position`, in one pass."""
    return b"".join(encode_parts(agents, board, position, event_id))


# Views encoded per part: a part takes a few milliseconds.
PART_ROWS = 4096


def encode_parts(agents: AgentHealth, board: TaskBoard, position: int,
                 event_id: str) -> Iterator[bytes]:
    """The snapshot's bytes in parts of at most PART_ROWS views, joined by the caller.

    The projections must not change until the last part is taken (the leader pauses
    their runner meanwhile), but the event loop may run between parts: encoding 500,000
    agents in one go held it for over a second. Each view is a row of its fields' values
    (C-level attrgetter, orjson writes datetimes natively), several times quicker to read
    back than an object per view.
    """
    head = orjson.dumps({"version": SNAPSHOT_VERSION, "position": position,
                         "event_id": event_id, "agent_fields": _AGENT_FIELDS,
                         "task_fields": _TASK_FIELDS})
    yield head[:-1] + b',"agents":['
    yield from _rows(list(agents.agents.values()), _agent_row)
    yield b'],"tasks":['
    yield from _rows(list(board.tasks.values()), _task_row)
    yield b'],"finished":' + orjson.dumps(list(board.finished)) + b"}"


def _rows(views: list[Any], row: Callable[[Any], tuple[Any, ...]]) -> Iterator[bytes]:
    for start in range(0, len(views), PART_ROWS):
        part = orjson.dumps([row(view) for view in views[start:start + PART_ROWS]])
        yield (b"," if start else b"") + part[1:-1]


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
            tasks=_views(TaskView, document["tasks"], ()),
            finished=[str(task_id) for task_id in document["finished"]],
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
        share_declared(view.labels, view.services)
        view.labels = shared_values.labels(view.labels)
        view.services = shared_values.services(view.services)
        view.running = view.running or NOT_RUNNING
    agents.agents = {view.agent_id: view for view in snapshot.agents}
    agents.position = snapshot.position
    for task in snapshot.tasks:
        board.enter(task)
    board.finished = deque(t for t in snapshot.finished if t in board.tasks)
    board.forget_finished()  # a count bound lower than the one the snapshot was taken with
    board.position = snapshot.position
    for view in snapshot.agents:
        if not view.left:
            catalog.add(AgentEntry(view.agent_id, view.incarnation, view.labels,
                                   view.services, view.liveness, view.draining))
    catalog.position = snapshot.position
    catalog.changed = set()
