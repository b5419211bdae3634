"""Projection snapshots: restoring one, then applying the rest of the log, gives the same
projections as applying the whole log."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

import projections.snapshot as module
from domain import shared_values
from domain.agents.agent import Agent
from domain.tasks.task import Task
from projections.board.tasks import TaskBoard
from projections.fleet.agents import NOT_RUNNING, AgentHealth
from projections.fleet.catalog import Catalog
from projections.snapshot import SNAPSHOT_VERSION, SnapshotUnusable, decode, encode, restore
from tests.unit.log_events import FakeLogEvent, Log

WEB = {"name": "web", "address": "10.0.0.1", "port": 80, "tags": ["v1"], "meta": {}}
API = {"name": "api", "address": "10.0.0.2", "port": 443, "tags": [], "meta": {"m": "1"}}


def incident() -> Log:
    """Agents in every state, tasks in every state, services changed and withdrawn."""
    log = Log()
    a1 = Agent("a1", ["cpu"], 4, {"zone": "eu"}, [WEB])
    a2 = Agent("a2", ["cpu", "gpu"], 2, {"zone": "us"}, [WEB, API])
    a3 = Agent("a3", [], 1, {}, [API])
    a4 = Agent("a4", ["cpu"], 1, {}, [])
    for agent in (a1, a2, a3, a4):
        log.record("agent", agent)
    a2.change_services([API])
    a3.drain()
    a4.deregister(1)
    for agent in (a2, a3, a4):
        log.record("agent", agent)

    def task(task_id: str, priority: int = 0) -> Task:
        created = Task(task_id, "render", {"n": task_id}, ["cpu"], priority, 2, 30.0, "f")
        log.record("task", created)
        return created

    done = task("done")
    done.assign("a1", 1, "tok-done", "least_loaded", [], 0.0)
    done.accept("tok-done")
    done.complete("tok-done", {"ok": True})
    running = task("running", priority=5)
    running.assign("a1", 1, "tok-run", "least_loaded", [], 0.0)
    running.accept("tok-run")
    running.report_progress("tok-run", 0.5)
    moved = task("moved")
    moved.assign("a2", 1, "tok-m1", "least_loaded", [], 0.0)
    waiting = task("waiting")
    waiting.assign("a1", 1, "tok-w", "least_loaded", [], 0.0)
    waiting.fail("tok-w", "flaky", True, 100.0, 1.0, 60.0)
    task("pending", priority=-1)
    cancelled = task("cancelled")
    cancelled.cancel("not needed")
    for aggregate in (done, running, moved, waiting, cancelled):
        log.record("task", aggregate)

    a2.suspect(1, 3.1, 3.0, 4)
    a2.declare_dead(1, 5.0, 5.0, 4)
    log.record("agent", a2)
    moved.reassign("a1", 1, "tok-m2", "agent_dead", "least_loaded", [])
    log.record("task", moved)
    a3.suspect(1, 3.1, 3.0, 4)
    a3.recover(1, 5)
    log.record("agent", a3)
    return log


def replay(events: list[FakeLogEvent], retention_s: float = 0.0,
           ) -> tuple[AgentHealth, TaskBoard, Catalog]:
    agents, board, catalog = AgentHealth(), TaskBoard(retention_s), Catalog()
    for event in events:
        for projection in (agents, board, catalog):
            projection.apply(event)
    return agents, board, catalog


def state(agents: AgentHealth, board: TaskBoard, catalog: Catalog) -> dict[str, Any]:
    return {
        "agents": agents.agents, "agents_position": agents.position,
        "tasks": board.tasks, "open_by_agent": board.open_by_agent, "queued": board.queued,
        "board_position": board.position, "finished": sorted(board.finished),
        "next_deadline": board.deadlines.next_due(board.tasks, 5.0),
        "deadlines": [v.task_id for v in board.deadlines.overdue(board.tasks, 2e9, 5.0)],
        "catalog": catalog.agents, "by_service": catalog.by_service,
        "instances": catalog.instances(), "catalog_position": catalog.position,
    }


def through_snapshot(events: list[FakeLogEvent], at: int, retention_s: float = 0.0,
                     ) -> tuple[AgentHealth, TaskBoard, Catalog]:
    """Apply events up to `at`, snapshot, restore into new projections, apply the rest."""
    before = replay(events[:at], retention_s)
    data = encode(before[0], before[1], at, events[at - 1].event_id if at else "")
    snapshot = decode(data)
    agents, board, catalog = AgentHealth(), TaskBoard(retention_s), Catalog()
    restore(snapshot, agents, board, catalog)
    for event in events[at:]:
        for projection in (agents, board, catalog):
            projection.apply(event)
    return agents, board, catalog


LOG = incident()


# Events are 1 ms apart: finished tasks leave the board a few events after finishing.
RETENTION_S = 0.003


@pytest.mark.parametrize("retention_s", [0.0, RETENTION_S], ids=["keep", "retain-3ms"])
@pytest.mark.parametrize("at", range(1, len(LOG.events) + 1))
def test_a_snapshot_at_any_position_then_the_rest_equals_a_full_replay(
    at: int, retention_s: float
) -> None:
    assert (state(*through_snapshot(LOG.events, at, retention_s))
            == state(*replay(LOG.events, retention_s)))


@pytest.mark.parametrize("at", range(1, len(LOG.events) + 1))
def test_with_a_count_bound_a_snapshot_then_the_rest_equals_a_full_replay(at: int) -> None:
    """The incident finishes two tasks: a bound of one drops the first when the second
    finishes, whether the board was rebuilt or restored before that."""
    def bounded() -> tuple[AgentHealth, TaskBoard, Catalog]:
        return AgentHealth(), TaskBoard(finished_limit=1), Catalog()

    before = replay(LOG.events[:at])  # taken without a bound: restored into one
    snapshot = decode(encode(before[0], before[1], at, LOG.events[at - 1].event_id))
    restored = bounded()
    restore(snapshot, *restored)
    for event in LOG.events[at:]:
        for projection in restored:
            projection.apply(event)
    replayed = bounded()
    for event in LOG.events:
        for projection in replayed:
            projection.apply(event)
    assert state(*restored) == state(*replayed)
    assert [v.task_id for v in replayed[1].tasks.values()
            if v.status in ("completed", "cancelled")] == ["cancelled"]


def test_finished_tasks_leave_the_board_after_the_retention() -> None:
    _, kept, _ = replay(LOG.events)
    _, retained, _ = replay(LOG.events, RETENTION_S)
    finished = {t for t, v in kept.tasks.items() if v.status in ("completed", "cancelled")}
    assert finished == {"done", "cancelled"}
    assert set(retained.tasks) == set(kept.tasks) - finished
    assert retained.counts() == {s: n for s, n in kept.counts().items()
                                 if s not in ("completed", "cancelled")}


def test_the_incident_covers_every_status() -> None:
    agents, board, catalog = replay(LOG.events)
    assert {v.status for v in agents.agents.values()} == {"healthy", "dead", "draining", "left"}
    assert {v.status for v in board.tasks.values()} == {
        "completed", "running", "assigned", "retry_wait", "pending", "cancelled"}
    assert catalog.by_service == {"web": {"a1"}, "api": {"a2", "a3"}}


def test_a_snapshot_names_its_position_and_the_event_there() -> None:
    agents, board, _ = replay(LOG.events[:7])
    snapshot = decode(encode(agents, board, 7, "ev-7"))
    assert (snapshot.position, snapshot.event_id) == (7, "ev-7")
    assert [v.agent_id for v in snapshot.agents] == ["a1", "a2", "a3", "a4"]


def document(*frames: tuple[bytes, Any], prefix: bytes = module._PREFIX) -> bytes:
    """A document of these frames, with the digest it should have."""
    body = prefix + b"".join(module._frame(kind, value) for kind, value in frames)
    return body + hashlib.sha256(body).digest()


def frames_of_the_incident() -> list[tuple[bytes, Any]]:
    """The frames of a valid snapshot of the incident's first 7 events, read back."""
    agents, board, _ = replay(LOG.events[:7])
    data = encode(agents, board, 7, "ev-7")
    return list(module._frames_in(memoryview(data)[:-32]))


def with_frame(kind: bytes, change: Callable[[Any], Any]) -> bytes:
    return document(*((k, change(v) if k == kind else v) for k, v in frames_of_the_incident()))


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


VALID = document(*frames_of_the_incident())
# What version 2 wrote: one JSON document of rows.
V2 = orjson.dumps({"version": 2, "position": 7, "event_id": "ev-7",
                   "agent_fields": module._AGENT_FIELDS, "task_fields": module._TASK_FIELDS,
                   "agents": [], "tasks": [], "finished": []})


def test_the_document_as_written_is_usable() -> None:
    assert decode(VALID).position == 7


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"not a snapshot", id="not-a-snapshot"),
    pytest.param(V2, id="version-2-json"),
    pytest.param(document(*frames_of_the_incident(), prefix=module.MAGIC + (
        (SNAPSHOT_VERSION + 1).to_bytes(2, "big") + module._PYTHON)), id="other-version"),
    pytest.param(document(*frames_of_the_incident(), prefix=module.MAGIC + (
        SNAPSHOT_VERSION.to_bytes(2, "big") + bytes([3, 99]))), id="other-python"),
    pytest.param(module._PREFIX, id="prefix-only"),
    pytest.param(flipped(VALID, len(VALID) // 2), id="corrupt"),
    pytest.param(flipped(VALID, len(VALID) - 1), id="corrupt-digest"),
    pytest.param(VALID[:-100], id="cut-short"),
    pytest.param(document(), id="no-frames"),
    pytest.param(document(*frames_of_the_incident()[:-1]), id="no-last-frame"),
    pytest.param(document(*frames_of_the_incident(), (b"F", [])), id="after-the-last"),
    pytest.param(document(*frames_of_the_incident()[1:]), id="no-head"),
    pytest.param(with_frame(b"H", lambda h: {**h, "agent_fields": ["agent_id"]}),
                 id="other-fields"),
    pytest.param(with_frame(b"H", lambda h: {"position": 7}), id="head-missing"),
    pytest.param(with_frame(b"A", lambda c: [c[0][:1], *c[1:]]), id="short-column"),
    pytest.param(with_frame(b"A", lambda c: c[:-1]), id="a-column-missing"),
    pytest.param(with_frame(b"A", lambda c: {"agent_id": c[0]}), id="not-columns"),
    pytest.param(with_frame(b"A", lambda c: [*c[:6], [1] * len(c[0]), *c[7:]]),
                 id="times-not-json"),
    pytest.param(with_frame(b"F", lambda f: None), id="finished-not-a-list"),
    pytest.param(document(*frames_of_the_incident()[:1], (b"X", [])), id="unknown-frame"),
    pytest.param(document(prefix=module._PREFIX + b"A\x00\x00\xff\xff"), id="long-frame"),
])
def test_an_unusable_document_is_refused(data: bytes) -> None:
    with pytest.raises(SnapshotUnusable):
        decode(data)


def test_views_share_what_the_log_would_have_them_share(monkeypatch: Any) -> None:
    """Across parts too: each view is in a part of its own."""
    monkeypatch.setattr(module, "PART_ROWS", 1)
    agents, board, _ = replay(LOG.events)
    restored = AgentHealth(), TaskBoard(), Catalog()
    restore(decode(encode(agents, board, len(LOG.events), "last")), *restored)
    a1, a4 = restored[0].agents["a1"], restored[0].agents["a4"]
    assert a1.capabilities is a4.capabilities is agents.agents["a1"].capabilities
    assert a1.running is a4.running is NOT_RUNNING
    assert a4.labels is shared_values.labels({}) and a4.services is shared_values.services([])
    assert restored[2].agents["a1"].labels is a1.labels  # the catalog's are the views'
    tasks = restored[1].tasks
    assert tasks["done"].requires is tasks["running"].requires


def test_a_snapshot_written_in_parts_is_the_one_written_at_once(monkeypatch: Any) -> None:
    """Parts of one view, two and three: the same snapshot."""
    agents, board, _ = replay(LOG.events)
    whole = decode(encode(agents, board, len(LOG.events), "last"))
    for rows in (1, 2, 3):
        monkeypatch.setattr(module, "PART_ROWS", rows)
        parts = list(module.encode_parts(agents, board, len(LOG.events), "last"))
        assert len(parts) > 6  # it really was cut (at once: prefix, head, A, T, F, digest)
        assert decode(b"".join(parts)) == whole
