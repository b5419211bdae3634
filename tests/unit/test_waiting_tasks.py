"""The waiting queue against the definition it replaces: every waiting task, sorted by
queue key, those in backoff only once it has ended."""

from __future__ import annotations

import random

from domain.tasks.placement import queue_key
from projections.board.waiting import WaitingTasks


def test_ready_tasks_come_by_priority_then_age() -> None:
    waiting = WaitingTasks()
    waiting.add("old-low", 0, 1)
    waiting.add("new-high", 5, 9)
    waiting.add("old-high", 5, 2)
    assert list(waiting.due(now=0.0)) == ["old-high", "new-high", "old-low"]


def test_a_task_in_backoff_waits_until_it_ends_then_takes_its_place() -> None:
    waiting = WaitingTasks()
    waiting.add("retry", 0, 1, retry_at=100.0)
    waiting.add("fresh", 0, 2)
    assert list(waiting.due(now=99.0)) == ["fresh"]
    assert waiting.next_retry_at() == 100.0
    assert list(waiting.due(now=100.0)) == ["retry", "fresh"]
    assert waiting.next_retry_at() is None


def test_a_task_that_leaves_and_returns_is_served_once_under_its_new_entry() -> None:
    waiting = WaitingTasks()
    waiting.add("t", 0, 1)
    waiting.discard("t")
    assert list(waiting.due(now=0.0)) == []
    waiting.add("t", 0, 1)
    waiting.add("t", 0, 1)  # entered twice without leaving: still one entry counts
    assert list(waiting.due(now=0.0)) == ["t"]
    assert len(waiting) == 1


def test_a_partly_consumed_round_leaves_the_queue_whole() -> None:
    waiting = WaitingTasks()
    for i in range(5):
        waiting.add(f"t{i}", 0, i)
    round_ = waiting.due(now=0.0)
    assert next(round_) == "t0" and next(round_) == "t1"
    round_.close()
    assert list(waiting.due(now=0.0)) == [f"t{i}" for i in range(5)]


def test_entries_of_tasks_that_left_are_dropped_as_a_round_meets_them() -> None:
    waiting = WaitingTasks()
    for i in range(5):
        waiting.add(f"t{i}", 0, i)
    for i in range(3):
        waiting.discard(f"t{i}")
    assert list(waiting.due(now=0.0)) == ["t3", "t4"]
    assert sum(len(lane) for fair in waiting._fair.values()
               for lane in fair.lanes.values()) == 2


def test_random_histories_match_a_full_sort() -> None:
    rng = random.Random(7)
    waiting = WaitingTasks()
    state: dict[str, tuple[int, int, float]] = {}  # task id -> (priority, position, retry)
    for step in range(5000):
        now = step / 10  # the clock only moves forward, as the log's does
        task_id = f"t{rng.randrange(300)}"
        if rng.random() < 0.4:
            waiting.discard(task_id)
            state.pop(task_id, None)
        else:
            priority = rng.randrange(3)
            retry_at = rng.choice([0.0, 0.0, now + rng.uniform(0.0, 20.0)])
            waiting.add(task_id, priority, step, retry_at)
            state[task_id] = (priority, step, retry_at)
        if step % 97 == 0:
            expected = sorted((t for t, (_, _, r) in state.items() if r <= now),
                              key=lambda t: queue_key(state[t][0], state[t][1]))
            assert list(waiting.due(now)) == expected
            backoffs = [r for _, _, r in state.values() if r > now]
            assert waiting.next_retry_at() == (min(backoffs) if backoffs else None)
    assert len(waiting) == len(state)
