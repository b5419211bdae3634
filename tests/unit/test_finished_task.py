"""A finished task is kept packed on the board (a FinishedTask) and reads exactly as the
TaskView it was: every field, every time, the read API's document and the snapshot."""

from __future__ import annotations

import random
import sys
from dataclasses import fields, replace
from typing import Any

import pytest

from domain.tasks.task import Task
from projections.board.finished_task import FinishedTask
from projections.board.tasks import TaskBoard, TaskView
from projections.fleet.agents import AgentHealth
from projections.snapshot import decode, encode
from tests.unit.log_events import Log

FIELDS = [f.name for f in fields(TaskView)]
READS = ["is_open", "submitted_at", "updated_at", "assigned_at", "started_at", "finished_at"]


def finished_in_every_way() -> Log:
    """Completed (with a late report after), dead-lettered after a retry, cancelled while
    running, and one task still open."""
    log = Log()
    done = Task("done", "render", {"n": 1}, ["cpu"], 5, 3, 30.0, "f")
    done.assign("a1", 2, "tok-1", "least_loaded", [], 0.0)
    done.accept("tok-1")
    done.report_progress("tok-1", 0.25)
    done.complete("tok-1", {"ok": True})
    done.record_stale("tok-1", "complete", "the task is completed")
    dead = Task("dead", "render", None, [], -7, 2, 12.5, "f")
    dead.assign("a1", 2, "tok-2", "least_loaded", [], 0.0)
    dead.fail("tok-2", "flaky", True, 1_800_000_000.123456, 1.0, 60.0)
    dead.assign("a2", 1, "tok-3", "least_loaded", [], 1_800_000_002.0)
    dead.fail("tok-3", "broken", False, 1_800_000_001.0, 1.0, 60.0)
    cancelled = Task("cancelled", "index", [1, 2], ["gpu"], 0, 1, 300.0, "f")
    cancelled.assign("a2", 1, "tok-4", "least_loaded", [], 0.0)
    cancelled.accept("tok-4")
    cancelled.cancel("not needed")
    running = Task("running", "index", None, [], 0, 3, 30.0, "f")
    running.assign("a1", 2, "tok-5", "least_loaded", [], 0.0)
    for task in (done, dead, cancelled, running):
        log.record("task", task)
    return log


def replayed(log: Log, packed: bool = True, monkeypatch: Any = None) -> TaskBoard:
    if not packed:
        monkeypatch.setattr(FinishedTask, "of", classmethod(lambda cls, view: None))
    board = TaskBoard()
    for event in log.events:
        board.apply(event)
    if not packed:
        monkeypatch.undo()
    return board


def test_a_finished_task_reads_as_the_view_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    log = finished_in_every_way()
    views = replayed(log, packed=False, monkeypatch=monkeypatch).tasks
    packed = replayed(log).tasks
    assert all(type(views[t]) is TaskView for t in views)
    assert {t for t, v in packed.items() if type(v) is FinishedTask} == {
        "done", "dead", "cancelled"}
    assert {v.status for v in packed.values()} == {
        "completed", "dead_lettered", "cancelled", "assigned"}
    for task_id, view in views.items():
        held = packed[task_id]
        for name in FIELDS + READS:
            value, expected = getattr(held, name), getattr(view, name)
            assert (value, type(value)) == (expected, type(expected)), (task_id, name)
        assert held.to_json() == view.to_json()
        assert held == view and view == held
    late = [e for e in log.events if e.name == "StaleResultRefused"]
    assert [e.aggregate_id for e in late] == ["done"]  # after it finished: unpacked for it
    done = packed["done"]
    assert isinstance(done, FinishedTask) and done.position == late[0].position
    assert done.updated_ts > done.finished_ts


def test_the_board_of_packed_tasks_snapshots_as_the_views_would(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = finished_in_every_way()
    views = replayed(log, packed=False, monkeypatch=monkeypatch)
    packed = replayed(log)
    at = len(log.events)
    from_views = decode(encode(AgentHealth(), views, at, "last"))
    from_packed = decode(encode(AgentHealth(), packed, at, "last"))
    assert from_packed == from_views
    restored = TaskBoard()
    for view in from_packed.tasks:
        restored.enter(view)
    assert restored.tasks == packed.tasks
    assert {t for t, v in restored.tasks.items() if type(v) is FinishedTask} == {
        "done", "dead", "cancelled"}


def finished_view(**changes: Any) -> TaskView:
    view = TaskView("t1", "k", None, [], 0, 3, 300.0, 10, 1.5e9, 1.5e9 + 1,
                    status="completed", agent_id="a1", incarnation=1, attempt=1,
                    progress=1.0, position=14, finished_ts=1.5e9 + 1)
    return replace(view, **changes)


@pytest.mark.parametrize("changes", [
    pytest.param({"status": "running"}, id="not-finished"),
    pytest.param({"token": "tok"}, id="a-token"),
    pytest.param({"started_ts": 1.0}, id="a-step-time"),
    pytest.param({"progress": 1}, id="an-int-for-a-float"),
    pytest.param({"priority": 1.0}, id="a-float-for-an-int"),
    pytest.param({"attempt": True}, id="a-bool-for-an-int"),
    pytest.param({"finished_ts": None}, id="no-finishing-time"),
    pytest.param({"priority": 2**15}, id="out-of-range"),
    pytest.param({"incarnation": -1}, id="negative-incarnation"),
])
def test_what_cannot_be_packed_exactly_stays_a_view(changes: dict[str, Any]) -> None:
    assert FinishedTask.of(finished_view()) is not None
    assert FinishedTask.of(finished_view(**changes)) is None
    board = TaskBoard()
    board.enter(finished_view(**changes))
    assert type(board.tasks["t1"]) is TaskView


def test_numbers_come_back_to_the_bit() -> None:
    rng = random.Random(21)
    for _ in range(2_000):
        view = finished_view(
            submitted_ts=rng.uniform(0, 4e9), updated_ts=rng.uniform(0, 4e9),
            finished_ts=rng.uniform(0, 4e9), retry_at=rng.choice([0.0, -0.0, rng.random()]),
            progress=rng.random(), timeout_s=rng.uniform(1e-9, 7 * 86_400),
            submitted_position=rng.randrange(2**63), position=rng.randrange(2**63),
            priority=rng.randrange(-1000, 1001), incarnation=rng.randrange(2**32),
            status=rng.choice(["completed", "dead_lettered", "cancelled"]))
        packed = FinishedTask.of(view)
        assert packed is not None and packed.thaw() == view
        assert str(packed.retry_at) == str(view.retry_at)  # -0.0 too


def test_a_finished_task_costs_its_record_and_its_numbers() -> None:
    """96 + 112 B on 64-bit CPython 3.11, where the view with its own floats and ints
    took 336 (issue 21: at most 512 B per finished task, all told)."""
    packed = FinishedTask.of(finished_view(submitted_position=2**40, position=2**40 + 3))
    assert packed is not None
    assert sys.getsizeof(packed) + sys.getsizeof(packed._numbers) <= 208
