"""Finished tasks leave the task board `retention_s` after finishing, by the log's clock."""

from __future__ import annotations

from domain.agents.agent import Agent
from domain.tasks.task import Task
from projections.board.tasks import TaskBoard
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
    # Their order is kept all the same: a snapshot carries it to a board with a bound.
    assert board.tasks["done"].status == "cancelled" and list(board.finished) == ["done"]


def finishing_in_turn(count: int) -> Log:
    """Tasks submitted in one order and finished in the reverse one, one open task, and
    a late report on the first finished."""
    log = Log()
    tasks = [new_task(f"t{n}") for n in range(count)]
    for task in tasks:
        log.record("task", task)
    log.record("task", new_task("open"))
    for task in reversed(tasks):
        task.cancel("not needed")
        log.record("task", task)
    tasks[-1].record_stale("tok-old", "complete", "the task is cancelled")
    log.record("task", tasks[-1])
    return log


def test_past_the_count_bound_the_first_finished_leave_first() -> None:
    log = finishing_in_turn(5)
    board = TaskBoard(finished_limit=2)
    held = []
    for event in log.events:
        board.apply(event)
        held.append(sorted(t for t, v in board.tasks.items() if v.status == "cancelled"))

    assert ["t1", "t2"] in held and ["t0", "t1"] == held[-1]  # t4 finished first
    assert max(len(h) for h in held) == 2
    assert "open" in board.tasks and board.queued == {"open"}
    assert list(board.finished) == ["t1", "t0"]


def test_the_first_bound_reached_applies() -> None:
    log = finishing_in_turn(5)
    for i in range(8):
        log.record("agent", Agent(f"a{i}", [], 1, {}, []))  # the log's clock moves on
    by_time = replayed_with(log, retention_s=RETENTION_S, finished_limit=100)
    by_count = replayed_with(log, retention_s=3600.0, finished_limit=3)
    assert not by_time.finished and set(by_time.tasks) == {"open"}
    assert set(by_count.tasks) == {"open", "t0", "t1", "t2"}


def replayed_with(log: Log, retention_s: float, finished_limit: int) -> TaskBoard:
    board = TaskBoard(retention_s, finished_limit)
    for event in log.events:
        board.apply(event)
    return board


def test_a_finished_task_keeps_what_the_read_api_shows_and_drops_its_token() -> None:
    log = Log()
    task = new_task("done")
    log.record("task", task)
    task.assign("a1", 1, "tok-1", "least_loaded", [], 0.0)
    task.accept("tok-1")
    task.complete("tok-1", {"ok": True})
    log.record("task", task)
    board = replayed(log)
    view = board.tasks["done"]

    submitted, completed = log.events[0].recorded_at, log.events[-1].recorded_at
    assert view.to_json() | {"result": None} == {
        "task_id": "done", "kind": "work", "status": "completed", "payload": None,
        "requires": [], "priority": 0, "max_attempts": 3, "timeout_s": 30.0,
        "agent_id": "a1", "attempt": 1, "failures": 0, "retry_at": None, "progress": 1.0,
        "result": None, "error": None, "submitted_at": submitted.isoformat(),
        "updated_at": completed.isoformat(), "position": log.events[-1].position}
    assert view.result == {"ok": True} and view.finished_at == completed
    assert view.token is None and view.assigned_at is None and view.started_at is None


def test_a_time_kept_as_epoch_seconds_is_the_log_time_to_the_microsecond() -> None:
    """The board keeps times as floats: what the read API shows must not drift."""
    import random
    from datetime import UTC, datetime, timedelta

    from projections.board.tasks import TaskView

    rng = random.Random(21)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    for _ in range(20_000):
        at = start + timedelta(microseconds=rng.randrange(40 * 365 * 86_400 * 10**6))
        view = TaskView("t", "k", None, [], 0, 1, 1.0, 1, at.timestamp(), at.timestamp())
        assert view.submitted_at == at and view.updated_at.isoformat() == at.isoformat()
