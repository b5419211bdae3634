"""When each open task's current step runs out: accepting its assignment, or running.

Kept as two heaps so that the dispatcher's timer and its expiry pass cost the tasks that
are due, not every open task on each round.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING

from domain.tasks.task import TaskStatus

if TYPE_CHECKING:
    from projections.board.tasks import HeldTask, TaskView

ACCEPTING = "accepting"
RUNNING = "running"
_FIRST_COMPACTION = 1024

Step = tuple[str, float]  # (which heap, key)
Entry = tuple[float, str]  # (key, task id)


def step_of(view: HeldTask) -> Step | None:
    """The step a task is in and its key: when it was assigned (the accept timeout is the
    dispatcher's to add), or when its run must end."""
    if view.status == TaskStatus.ASSIGNED and view.assigned_at is not None:
        return ACCEPTING, view.assigned_at.timestamp()
    if view.status == TaskStatus.RUNNING and view.started_at is not None:
        return RUNNING, view.started_at.timestamp() + view.timeout_s
    return None


class StepDeadlines:
    """Entries are pushed when a step starts and never updated: an entry whose task has
    since moved on is stale, skipped by readers, and dropped when it reaches the top or
    when the heap is compacted."""

    def __init__(self) -> None:
        self.heaps: dict[str, list[Entry]] = {ACCEPTING: [], RUNNING: []}
        self._compact_above = _FIRST_COMPACTION

    def started(self, view: TaskView, tasks: Mapping[str, HeldTask]) -> None:
        step = step_of(view)
        if step is None:
            return
        which, key = step
        heapq.heappush(self.heaps[which], (key, view.task_id))
        if sum(len(heap) for heap in self.heaps.values()) > self._compact_above:
            self._compact(tasks)

    def next_due(self, tasks: Mapping[str, HeldTask], accept_timeout: float) -> float | None:
        """The earliest deadline of an open task, or None."""
        times = []
        for which, offset in ((ACCEPTING, accept_timeout), (RUNNING, 0.0)):
            heap = self.heaps[which]
            while heap and not _current(which, heap[0], tasks):
                heapq.heappop(heap)
            if heap:
                times.append(heap[0][0] + offset)
        return min(times, default=None)

    def overdue(self, tasks: Mapping[str, HeldTask], now: float,
                accept_timeout: float) -> list[HeldTask]:
        """Open tasks whose step ran out by `now`, earliest first. They stay listed until
        an event moves them on, so a refused move is tried again."""
        found: list[tuple[float, HeldTask]] = []
        for which, offset in ((ACCEPTING, accept_timeout), (RUNNING, 0.0)):
            heap = self.heaps[which]
            pending = [0] if heap else []
            while pending:  # the heap's subtrees whose roots are due; others are later
                index = pending.pop()
                if index >= len(heap) or heap[index][0] + offset > now:
                    continue
                if _current(which, heap[index], tasks):
                    found.append((heap[index][0] + offset, tasks[heap[index][1]]))
                pending += (2 * index + 1, 2 * index + 2)
        return [view for _, view in sorted(found, key=lambda pair: pair[0])]

    def _compact(self, tasks: Mapping[str, HeldTask]) -> None:
        for which, heap in self.heaps.items():
            live = [entry for entry in heap if _current(which, entry, tasks)]
            heapq.heapify(live)
            self.heaps[which] = live
        kept = sum(len(heap) for heap in self.heaps.values())
        self._compact_above = max(_FIRST_COMPACTION, 2 * kept)


def _current(which: str, entry: Entry, tasks: Mapping[str, HeldTask]) -> bool:
    view = tasks.get(entry[1])
    return view is not None and step_of(view) == (which, entry[0])
