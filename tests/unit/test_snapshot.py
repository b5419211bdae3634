"""Projection snapshots: restoring one, then applying the rest of the log, gives the same
projections as applying the whole log."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from domain.agent import Agent
from domain.task import Task
from projections.agents import AgentHealth
from projections.catalog import Catalog
from projections.snapshot import SNAPSHOT_VERSION, SnapshotUnusable, decode, encode, restore
from projections.tasks import TaskBoard
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


def snapshot_of(**changes: Any) -> bytes:
    """A valid snapshot of the incident's first 7 events, with `changes`."""
    agents, board, _ = replay(LOG.events[:7])
    return orjson.dumps({**orjson.loads(encode(agents, board, 7, "ev-7")), **changes})


def test_the_unchanged_document_is_usable() -> None:
    assert decode(snapshot_of()).position == 7


@pytest.mark.parametrize("data", [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[]", id="not-an-object"),
    pytest.param(orjson.dumps({"version": SNAPSHOT_VERSION + 1, "position": 1}), id="version"),
    pytest.param(orjson.dumps({"version": SNAPSHOT_VERSION, "position": 1}), id="missing"),
    pytest.param(snapshot_of(agent_fields=["agent_id", "incarnation"]), id="other-fields"),
    pytest.param(snapshot_of(agents=[["a", 1]]), id="short-row"),
    pytest.param(snapshot_of(agents=[{"agent_id": "a"}]), id="object-row"),
    pytest.param(snapshot_of(tasks=[[None] * 30]), id="long-row"),
])
def test_an_unusable_document_is_refused(data: bytes) -> None:
    with pytest.raises(SnapshotUnusable):
        decode(data)


def test_a_snapshot_written_in_parts_is_the_one_written_at_once(monkeypatch) -> None:
    """Parts of one row and two rows, with the views split across them: the same
    document, restoring the same projections."""
    import projections.snapshot as module

    agents, board, _ = replay(LOG.events)
    whole = orjson.loads(encode(agents, board, len(LOG.events), "last"))
    for rows in (1, 2, 3):
        monkeypatch.setattr(module, "PART_ROWS", rows)
        parts = list(module.encode_parts(agents, board, len(LOG.events), "last"))
        assert len(parts) > 4  # it really was cut
        assert orjson.loads(b"".join(parts)) == whole
