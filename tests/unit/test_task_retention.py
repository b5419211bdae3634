"""Finished tasks leave the task board `retention_s` after finishing, by the log's clock."""

from __future__ import annotations

from domain.agent import Agent
from domain.task import Task
from projections.tasks import TaskBoard
from tests.unit.log_events import Log

RETENTION_S = 0.0055  # the log's events are 1 ms apart: gone on the sixth event after


def new_task(task_id: str) -> Task:
    return Task(task_id, "work", None, [], 0, 3, 30.0, "fp")


def test_a_finished_task_stays_for_the_retention_then_leaves() -> None:
    log = Log()
    done, still_open = new_task("done"), new_task("open")
    done.cancel("not needed")
    log.record("task", done)
    finished_at = len(log.events) - 1  # the index of the Cancelled event
    log.record("task", still_open)
    for i in range(8):
        log.record("agent", Agent(f"a{i}", [], 1, {}, []))  # the log's clock moves on
    board = TaskBoard(RETENTION_S)
    present = []
    for event in log.events:
        board.apply(event)
        present.append("done" in board.tasks)

    assert present[finished_at:finished_at + 6] == [True] * 6
    assert present[finished_at + 6:] == [False] * (len(log.events) - finished_at - 6)
    assert "open" in board.tasks and board.queued == {"open"}


def cancelled_then_eight_more_events() -> tuple[Log, Task]:
    log = Log()
    done = new_task("done")
    done.cancel("not needed")
    log.record("task", done)
    for i in range(8):
        log.record("agent", Agent(f"a{i}", [], 1, {}, []))  # the log's clock moves on
    return log, done


def replayed(log: Log, retention_s: float = 0.0) -> TaskBoard:
    board = TaskBoard(retention_s)
    for event in log.events:
        board.apply(event)
    return board


def test_events_of_a_task_no_longer_on_the_board_are_ignored() -> None:
    log, done = cancelled_then_eight_more_events()
    done.record_stale("tok-old", "complete", "the task is cancelled")  # a late report
    log.record("task", done)
    assert log.events[-1].name == "StaleResultRefused"
    board = replayed(log, RETENTION_S)
    assert "done" not in board.tasks and not board.finished


def test_without_a_retention_finished_tasks_stay() -> None:
    log, _ = cancelled_then_eight_more_events()
    board = replayed(log)
    assert board.tasks["done"].status == "cancelled" and not board.finished
