"""Snapshots of the projections: their state at one log position, in columns.

A snapshot lets an orchestrator start from a recent position instead of the log's
beginning. It holds the agent health and the task board; the catalog is derived from the
agents on restore (an instance is an agent's declared service while it has not left), so
it is neither stored twice nor able to disagree with them. The derived indexes (open tasks
by agent, the queue, services by name) are rebuilt the same way.

The document (version 3) is MAGIC and the version, then frames, then the SHA-256 of all
that precedes it. A frame is its kind (one byte), its length (four, big-endian) and a
`marshal`led value: the head (position, event id, the views' field names), then up to
PART_ROWS views of one kind as one list per field (columns), then the finished tasks.
Columns because a restore then builds each view with one C-level call and shares each
repeated value once per frame, not once per view; marshal because it reads them quicker
than JSON (per-part columns of 500,000 agents, read and made views: 0.7 s, against 1.2 s
in JSON) and keeps the sharing of a frame's values. In all, 500,000 agents decode and
restore in 0.6 s where the JSON rows took 1.6 s (issue 21). Datetimes, which marshal
cannot hold, are in their column as a JSON array of ISO 8601 text.

marshal is not safe against maliciously built data (it may crash the interpreter). Only
the orchestrator writes the snapshot store: no role of services/auth/permissions.py may
publish to its object store (`$O.>`), and with ORCH_AUTH=off anyone who may reach NATS
may as well write the log itself. Corruption is caught before marshal reads anything: the
digest at the end must match; a document that fails any check is SnapshotUnusable, and
the orchestrator replays the log instead.
"""

from __future__ import annotations

import hashlib
import marshal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from itertools import compress, islice
from operator import attrgetter, not_
from typing import Any

import orjson

from domain import shared_values
from projections.board.finished_task import row_of
from projections.board.tasks import HeldTask, TaskBoard, TaskView, shared_flow
from projections.fleet.agents import NOT_RUNNING, AgentHealth, AgentView, share_declared
from projections.fleet.catalog import AgentEntry, Catalog

# Bumped when the meaning of a view's fields changes (a change of their names or order is
# caught by the field lists a snapshot carries): a snapshot of another version is not used.
SNAPSHOT_VERSION = 3  # 2: a task's times are epoch seconds; 3: columns, marshal
MAGIC = b"orchestrator-snapshot\n"
# marshal's format may change between Python versions: a snapshot is read only by the
# Python that wrote it (another one replays the log, once).
_PYTHON = bytes(sys.version_info[:2])
_PREFIX = MAGIC + SNAPSHOT_VERSION.to_bytes(2, "big") + _PYTHON
_DIGEST = hashlib.sha256().digest_size
_HEAD, _AGENTS, _TASKS, _FINISHED = b"H", b"A", b"T", b"F"
_MARSHAL_VERSION = 4  # the newest: it writes a value held many times once

_AGENT_FIELDS = tuple(f.name for f in fields(AgentView))
_TASK_FIELDS = tuple(f.name for f in fields(TaskView))
_AGENT_GETTERS = tuple(attrgetter(name) for name in _AGENT_FIELDS)
# Where the datetimes are among an agent's columns; a task's times are floats.
_AGENT_TIMES = frozenset(_AGENT_FIELDS.index(name) for name in
                         ("registered_at", "updated_at", "last_heartbeat_at"))
_ENTRY_FIELDS = tuple(_AGENT_FIELDS.index(f.name) for f in fields(AgentEntry))
_LEFT = _AGENT_FIELDS.index("left")


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
    # The catalog's entries of the agents that have not left, derived from the agents'
    # columns while they are at hand (a pass over the views would cost as much again).
    entries: list[AgentEntry] = field(default_factory=list)


def encode(agents: AgentHealth, board: TaskBoard, position: int, event_id: str) -> bytes:
    """The projections as they are now, which must be at `position`, in one pass."""
    return b"".join(encode_parts(agents, board, position, event_id))


# Views encoded per part (one frame each): 1.4 ms here for 1024 agents, so that a read
# waiting for the loop waits a few milliseconds even on a busy machine (decoding is as
# quick as with parts of 4096).
PART_ROWS = 1024


def encode_parts(agents: AgentHealth, board: TaskBoard, position: int,
                 event_id: str) -> Iterator[bytes]:
    """The snapshot's bytes in parts of at most PART_ROWS views, joined by the caller.

    The projections must not change until the last part is taken (the leader pauses
    their runner meanwhile), but the event loop may run between parts: encoding 500,000
    agents in one go held it for over a second.
    """
    digest = hashlib.sha256()
    for part in _document(agents, board, position, event_id):
        digest.update(part)
        yield part
    yield digest.digest()


def _document(agents: AgentHealth, board: TaskBoard, position: int,
              event_id: str) -> Iterator[bytes]:
    yield _PREFIX
    yield _frame(_HEAD, {"position": position, "event_id": event_id,
                         "agent_fields": list(_AGENT_FIELDS),
                         "task_fields": list(_TASK_FIELDS)})
    yield from _frames(_AGENTS, iter(agents.agents.values()), _AGENT_GETTERS, _AGENT_TIMES)
    yield from _task_frames(iter(board.tasks.values()))
    yield _frame(_FINISHED, list(board.finished))


def _frames(kind: bytes, views: Iterator[Any], getters: tuple[Callable[[Any], Any], ...],
            times: frozenset[int]) -> Iterator[bytes]:
    """Frames of the views, taken from the projection's dict as they are encoded (it does
    not change meanwhile): a list of them all, young, had the collector walk 500,000
    views at its next collections, for up to 30 ms each."""
    while part := list(islice(views, PART_ROWS)):
        columns: list[Any] = [list(map(getter, part)) for getter in getters]
        for index in times:  # orjson writes datetimes natively (and quickly)
            columns[index] = orjson.dumps(columns[index])
        yield _frame(kind, columns)


def _task_frames(tasks: Iterator[HeldTask]) -> Iterator[bytes]:
    """As `_frames`, by rows: a finished task, kept packed, unpacks its numbers once for
    its row rather than once per column."""
    while part := list(islice(tasks, PART_ROWS)):
        yield _frame(_TASKS, list(map(list, zip(*map(row_of, part), strict=True))))


def _frame(kind: bytes, value: Any) -> bytes:
    body = marshal.dumps(value, _MARSHAL_VERSION)
    return kind + len(body).to_bytes(4, "big") + body


def decode(data: bytes) -> Snapshot:
    """The snapshot in `data`, or SnapshotUnusable. (Hundreds of thousands of new
    containers: the caller may want the cyclic garbage collector paused meanwhile.)"""
    if not data.startswith(MAGIC):
        raise SnapshotUnusable(f"not a snapshot of version {SNAPSHOT_VERSION} "
                               f"(begins {bytes(data[:12])!r})")
    if not data.startswith(_PREFIX):
        version = int.from_bytes(data[len(MAGIC):len(MAGIC) + 2], "big")
        python = ".".join(map(str, data[len(MAGIC) + 2:len(_PREFIX)]))
        raise SnapshotUnusable(f"version {version} written by Python {python}, not "
                               f"{SNAPSHOT_VERSION} by Python {'.'.join(map(str, _PYTHON))}")
    body = memoryview(data)[:-_DIGEST]
    if len(data) < len(_PREFIX) + _DIGEST or hashlib.sha256(body).digest() != data[-_DIGEST:]:
        raise SnapshotUnusable("its digest does not match: corrupt or cut short")
    try:
        return _read(body)
    except SnapshotUnusable:
        raise
    except (EOFError, AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotUnusable(f"malformed: {exc!r}") from exc


def _read(body: memoryview) -> Snapshot:
    frames = _frames_in(body)
    kind, head = next(frames, (b"", None))
    if kind != _HEAD or not isinstance(head, dict):
        raise SnapshotUnusable("it has no head")
    if (tuple(head["agent_fields"]) != _AGENT_FIELDS
            or tuple(head["task_fields"]) != _TASK_FIELDS):
        raise SnapshotUnusable("its views have other fields")
    found = Snapshot(int(head["position"]), str(head["event_id"]), [], [])
    for kind, value in frames:
        if kind == _AGENTS:
            columns = _columns(value, _AGENT_FIELDS, _AGENT_SHARED, _AGENT_TIMES)
            found.agents.extend(map(AgentView, *columns))
            staying = list(map(not_, columns[_LEFT]))
            found.entries.extend(map(AgentEntry, *(compress(columns[index], staying)
                                                   for index in _ENTRY_FIELDS)))
        elif kind == _TASKS:
            found.tasks.extend(map(TaskView, *_columns(value, _TASK_FIELDS, _TASK_SHARED)))
        elif kind == _FINISHED:
            found.finished.extend(str(task_id) for task_id in value)
            if next(frames, None) is not None:
                raise SnapshotUnusable("frames after the last")
            return found
        else:
            raise SnapshotUnusable(f"a frame of kind {kind!r}")
    raise SnapshotUnusable("its last frame is missing")


def _frames_in(body: memoryview) -> Iterator[tuple[bytes, Any]]:
    """The frames after the prefix, each read when it is reached."""
    at = len(_PREFIX)
    while at < len(body):
        kind = bytes(body[at:at + 1])
        end = at + 5 + int.from_bytes(body[at + 1:at + 5], "big")
        if end > len(body):
            raise SnapshotUnusable("a frame runs past the end")
        yield kind, marshal.loads(body[at + 5:end])
        at = end


def _columns(value: Any, names: tuple[str, ...],
             shared: dict[int, Callable[[Any], Any]],
             times: frozenset[int] = frozenset()) -> list[list[Any]]:
    """A frame's columns, checked, with its times read and its repeated values shared."""
    if not isinstance(value, list) or len(value) != len(names):
        raise SnapshotUnusable("a frame of other columns")
    for index in times:
        value[index] = _times(orjson.loads(value[index]))
    if not all(isinstance(column, list) for column in value) or len(set(map(len, value))) > 1:
        raise SnapshotUnusable("a frame of columns of different lengths")
    for index, share in shared.items():
        value[index] = _shared(value[index], share)
    return value


def _times(values: list[Any]) -> list[datetime | None]:
    nones = values.count(None)
    if nones == len(values):  # no heartbeat yet, say
        return values
    if nones:
        return [None if value is None else datetime.fromisoformat(value) for value in values]
    return list(map(datetime.fromisoformat, values))


def _shared(column: list[Any], share: Callable[[Any], Any]) -> list[Any]:
    """The column with each value as the projection shares it, looked up once per
    distinct value: marshal kept a frame's sharing (a value held by many views is one
    object again), and a column often holds one value (a fleet of one kind, no running
    tasks), found by a count in C; such a column then holds one object, even where the
    values were equal copies (no holder mutates them: a change of declaration replaces
    them)."""
    if not column or column.count(column[0]) == len(column):
        return [share(column[0])] * len(column) if column else column
    ids = list(map(id, column))
    distinct = dict(zip(ids, column, strict=True))
    if len(distinct) == len(column):
        return list(map(share, column))
    done = {key: share(value) for key, value in distinct.items()}
    return list(map(done.__getitem__, ids))


def _labels(value: dict[str, str]) -> dict[str, str]:
    share_declared(value, [])
    return shared_values.labels(value)


def _services(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    share_declared({}, value)
    return shared_values.services(value)


def _running(value: list[str]) -> list[str]:
    return value or NOT_RUNNING


# What applying the views' events would share, by column (as projections/fleet/agents.py and
# projections/board/tasks.py do).
_AGENT_SHARED: dict[int, Callable[[Any], Any]] = {
    _AGENT_FIELDS.index("capabilities"): shared_values.capabilities,
    _AGENT_FIELDS.index("kinds"): shared_values.capabilities,
    _AGENT_FIELDS.index("labels"): _labels,
    _AGENT_FIELDS.index("services"): _services,
    _AGENT_FIELDS.index("running"): _running,
}
_TASK_SHARED: dict[int, Callable[[Any], Any]] = {
    _TASK_FIELDS.index("requires"): shared_values.capabilities,
    _TASK_FIELDS.index("flow"): shared_flow,
}


def restore(snapshot: Snapshot, agents: AgentHealth, board: TaskBoard,
            catalog: Catalog) -> None:
    """Put empty projections in the snapshot's state."""
    agents.agents = dict(zip(map(_agent_id, snapshot.agents), snapshot.agents, strict=True))
    agents.position = snapshot.position
    agents.reindex()
    for task in snapshot.tasks:
        board.enter(task)
    board.finished = deque(t for t in snapshot.finished if t in board.tasks)
    board.forget_finished()  # a count bound lower than the one the snapshot was taken with
    board.position = snapshot.position
    catalog.agents.update(zip(map(_agent_id, snapshot.entries), snapshot.entries, strict=True))
    for entry in filter(_services_of, snapshot.entries):
        catalog.add(entry)  # the instances of its services
    catalog.position = snapshot.position
    catalog.changed = set()
    # Counted now, while starting, so that events keep the counts from here on and the
    # first /metrics scrape does not count every view with the loop held.
    agents.counts()
    board.counts()


_agent_id = attrgetter("agent_id")
_services_of = attrgetter("services")
