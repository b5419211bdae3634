"""Tasks submitted to run later: the domain's rule, the board's queue, the submit handler
on the in-memory log (the time is decided at the submit and recorded in its event)."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from domain.errors import CommandRefused
from domain.tasks.commands import SubmitTask
from domain.tasks.task import Task, TaskStatus
from infra.caller import current_identity
from infra.log.format.codec import create_mapper
from infra.log.memory import InMemoryEventLog
from infra.log.repository import Repository
from infra.names import Names
from projections.board.tasks import TaskBoard
from services.commands.tasks import TaskService
from tests.unit.log_events import Log


def scheduled(not_before: float) -> Task:
    return Task("t1", "echo", None, [], 0, 3, 300.0, "f" * 64, "ci", not_before)


def test_a_scheduled_task_is_placed_not_before_its_time() -> None:
    task = scheduled(1_000.0)
    assert task.status == TaskStatus.SCHEDULED
    with pytest.raises(CommandRefused, match="is scheduled"):
        task.assign("a1", 1, "tok", "least_loaded", [], now=999.9)
    task.assign("a1", 1, "tok", "least_loaded", [], now=1_000.0)
    assert task.status == TaskStatus.ASSIGNED


def test_a_scheduled_task_can_be_cancelled_before_its_time() -> None:
    task = scheduled(1_000.0)
    assert task.cancel("not needed")
    assert task.status == TaskStatus.CANCELLED


def test_a_delay_and_a_time_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="not both"):
        SubmitTask.model_validate({"kind": "echo", "delay_s": 5, "not_before": 2e9})
    with pytest.raises(ValidationError):
        SubmitTask.model_validate({"kind": "echo", "delay_s": 400 * 86400})


def test_the_board_holds_it_back_until_its_time() -> None:
    log, board = Log(), TaskBoard()
    log.record("task", scheduled(2_000_000_000.0))
    for event in log.events:
        board.apply(event)
    view = board.get("t1")
    assert view is not None and view.status == "scheduled"
    assert [v.task_id for v in board.due(1_999_999_999.0)] == []
    assert board.next_retry_at() == 2_000_000_000.0
    assert [v.task_id for v in board.due(2_000_000_000.0)] == ["t1"]


async def test_the_submit_decides_the_time_and_records_it() -> None:
    names = Names("unit")
    log = InMemoryEventLog(names, create_mapper())
    placements: list[str] = []

    def placer(task_id: str, cmd: SubmitTask) -> None:
        placements.append(task_id)  # a delayed task is not placed with its submit

    tasks = TaskService(Repository(log, "task"), names, TaskBoard(), _nowhere, 1.0, 60.0)
    tasks.placer = placer
    token = current_identity.set("ci")
    try:
        before = time.time()
        reply = await tasks.submit(SubmitTask(task_id="t1", kind="echo", delay_s=60))
        assert reply["status"] == "scheduled"
        [submitted] = await log.history("task", "t1")
        assert before + 60 <= submitted.data()["not_before"] <= time.time() + 60
        again = await tasks.submit(SubmitTask(task_id="t1", kind="echo", delay_s=60))
        assert again["status"] == "scheduled" and "position" not in again  # the same one
        past = await tasks.submit(SubmitTask(task_id="t2", kind="echo", not_before=1.0))
        assert past["status"] == "pending"  # a time already past: at once
        with pytest.raises(CommandRefused, match="more than 366 days ahead"):
            await tasks.submit(SubmitTask(task_id="t3", kind="echo",
                                          not_before=time.time() + 400 * 86400))
        assert placements == ["t2"]
    finally:
        current_identity.reset(token)


async def _nowhere(subject: str, data: bytes) -> None:
    """Assignments go nowhere here."""
