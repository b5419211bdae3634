"""The task board's step deadlines: the dispatcher's timer and expiry pass read them
instead of scanning every open task."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.tasks.task import Task
from projections.board.deadlines import ACCEPTING, step_of
from projections.board.tasks import HeldTask, TaskBoard
from tests.unit.log_events import T0, Log

ACCEPT_S = 2.0


def deadline(view: HeldTask) -> float | None:
    """The rule, written out: what the heaps must agree with."""
    step = step_of(view)
    if step is None:
        return None
    which, key = step
    return key + ACCEPT_S if which == ACCEPTING else key


def scanned(board: TaskBoard, now: float) -> list[str]:
    due = [(d, v.task_id) for v in board.tasks.values()
           if (d := deadline(v)) is not None and d <= now]
    return [task_id for _, task_id in sorted(due)]


def board_of(log: Log) -> TaskBoard:
    board = TaskBoard()
    for event in log.events:
        board.apply(event)
    return board


def lifecycle_log(tasks: int) -> Log:
    """Tasks in every step: waiting to be accepted, running, finished, moved."""
    log = Log()
    for number in range(tasks):
        task = Task(f"t{number}", "work", None, [], 0, 3, 0.05 * (number % 7), "fp")
        log.record("task", task)
        task.assign("a1", 1, f"tok-{number}", "least_loaded", [], 0.0)
        log.record("task", task)
        if number % 3 == 0:
            continue  # waits to be accepted
        task.accept(f"tok-{number}")
        log.record("task", task)
        if number % 3 == 1:
            continue  # running
        if number % 2:
            task.complete(f"tok-{number}", None)
        else:
            task.reassign("a2", 1, f"tok-{number}b", "agent_dead", "least_loaded", [])
        log.record("task", task)
    return log


LOG = lifecycle_log(60)


@pytest.mark.parametrize("after_s", [-1.0, 0.0, 0.05, 0.1, 0.2, 1.0, 2.05, 2.1, 3.0, 100.0])
def test_overdue_is_what_a_scan_of_every_task_finds(after_s: float) -> None:
    board = board_of(LOG)
    now = T0.timestamp() + after_s
    overdue = board.deadlines.overdue(board.tasks, now, ACCEPT_S)
    assert [v.task_id for v in overdue] == scanned(board, now)


def test_the_next_deadline_is_the_earliest_of_an_open_task() -> None:
    board = board_of(LOG)
    earliest = min(d for v in board.tasks.values() if (d := deadline(v)) is not None)
    assert board.deadlines.next_due(board.tasks, ACCEPT_S) == earliest


def test_no_open_task_means_no_deadline() -> None:
    log = Log()
    task = Task("t1", "work", None, [], 0, 3, 30.0, "fp")
    task.cancel("not needed")
    log.record("task", task)
    board = board_of(log)
    assert board.deadlines.next_due(board.tasks, ACCEPT_S) is None
    assert board.deadlines.overdue(board.tasks, T0.timestamp() + 10**6, ACCEPT_S) == []


def test_an_overdue_task_stays_listed_until_an_event_moves_it_on() -> None:
    log = Log()
    task = Task("t1", "work", None, [], 0, 3, 30.0, "fp")
    log.record("task", task)
    task.assign("a1", 1, "tok-1", "least_loaded", [], 0.0)
    log.record("task", task)
    board = board_of(log)
    # Assigned at 2 ms, moved at 3 ms (events are 1 ms apart): between the two deadlines.
    late = (T0 + timedelta(seconds=ACCEPT_S, microseconds=2_500)).timestamp()
    for _ in range(2):  # a refused move changes nothing: it is due again
        assert [v.task_id for v in board.deadlines.overdue(board.tasks, late, ACCEPT_S)] == ["t1"]
    task.reassign("a2", 1, "tok-2", "accept_timeout", "least_loaded", [])
    log.record("task", task)
    board.apply(log.events[-1])
    assert board.deadlines.overdue(board.tasks, late, ACCEPT_S) == []


def test_stale_entries_are_compacted_away() -> None:
    log = Log()
    for number in range(5_000):  # every lifecycle leaves two stale entries
        task = Task(f"t{number}", "work", None, [], 0, 3, 30.0, "fp")
        task.assign("a1", 1, f"tok-{number}", "least_loaded", [], 0.0)
        task.accept(f"tok-{number}")
        task.complete(f"tok-{number}", None)
        log.record("task", task)
    board = board_of(log)
    assert sum(len(heap) for heap in board.deadlines.heaps.values()) <= 1024
