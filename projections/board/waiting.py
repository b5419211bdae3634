"""The tasks waiting for an agent, kept in serving order.

The dispatcher asks for them on every round, and rounds come with every change: sorting
the whole queue each time was the largest single cost of a task lifecycle in the profile
(`python -m bench profile`). Two heaps instead: tasks ready to place, by queue key, and
tasks waiting out a retry backoff, by when it ends. Entries are never updated in place: a
task that leaves and comes back gets a new entry under a new generation, and the old one
is skipped by readers and dropped by compaction.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator

from domain.placement import queue_key

ReadyEntry = tuple[int, int, int, str]  # (-priority, submitted position, generation, id)
RetryEntry = tuple[float, int, int, int, str]  # (retry at, -priority, position, gen, id)
_FIRST_COMPACTION = 1024


class WaitingTasks:
    def __init__(self) -> None:
        self._ready: list[ReadyEntry] = []
        self._retrying: list[RetryEntry] = []
        self._generation: dict[str, int] = {}  # the live entry of each waiting task
        self._counter = itertools.count(1)
        self._compact_above = _FIRST_COMPACTION

    def __len__(self) -> int:
        return len(self._generation)

    def add(self, task_id: str, priority: int, submitted_position: int,
            retry_at: float = 0.0) -> None:
        """The task waits: ready now, or once `retry_at` (epoch seconds) has passed."""
        generation = next(self._counter)
        self._generation[task_id] = generation
        first, second = queue_key(priority, submitted_position)
        if retry_at:
            heapq.heappush(self._retrying, (retry_at, first, second, generation, task_id))
        else:
            heapq.heappush(self._ready, (first, second, generation, task_id))
        if len(self._ready) + len(self._retrying) > self._compact_above:
            self._compact()

    def discard(self, task_id: str) -> None:
        self._generation.pop(task_id, None)

    def due(self, now: float) -> Generator[str, None, None]:
        """Task ids ready at `now`, in serving order, produced as they are consumed: a
        round that stops after a few pays for a few. Entries are taken off the heap as
        they are read and put back when the consumer closes the iterator (stale ones,
        met on the way, are dropped for good). One at a time: close it before the next."""
        self._promote(now)
        heap, generation = self._ready, self._generation
        taken: list[ReadyEntry] = []
        try:
            while heap:
                entry = heapq.heappop(heap)
                if generation.get(entry[3]) == entry[2]:
                    taken.append(entry)
                    yield entry[3]
        finally:
            for entry in taken:
                heapq.heappush(heap, entry)

    def next_retry_at(self) -> float | None:
        """When the earliest backoff still waited out ends."""
        heap = self._retrying
        while heap and self._generation.get(heap[0][4]) != heap[0][3]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _promote(self, now: float) -> None:
        """Tasks whose backoff has ended join the ready heap, in their queue order."""
        heap = self._retrying
        while heap and heap[0][0] <= now:
            _, first, second, generation, task_id = heapq.heappop(heap)
            if self._generation.get(task_id) == generation:
                heapq.heappush(self._ready, (first, second, generation, task_id))

    def _compact(self) -> None:
        live = self._generation
        self._ready = [e for e in self._ready if live.get(e[3]) == e[2]]
        self._retrying = [e for e in self._retrying if live.get(e[4]) == e[3]]
        heapq.heapify(self._ready)
        heapq.heapify(self._retrying)
        self._compact_above = max(_FIRST_COMPACTION,
                                  2 * (len(self._ready) + len(self._retrying)))
