"""The tasks waiting for an agent, kept in serving order.

Serving order: priority first (higher first); within a priority, the fairness keys take
turns (weighted round-robin, by stride: a key served advances its pass by 1/weight, and
the key of least pass goes next); within a fairness key, age (older first). A fairness
key that had nothing waiting joins at the pass of the key served last, so a newcomer
neither jumps ahead of everyone nor waits behind a long backlog's history.

The dispatcher asks on every round, and rounds come with every change: sorting the
queue each time was the largest single cost of a task lifecycle in the profile
(`python -m bench profile`). So tasks wait in lanes, one per (fairness key, concurrency
key), each a heap by (priority, age); a fairness key keeps a heap of hints to the heads
of its lanes. A round (`Round`) walks them: a task that cannot be placed is stepped
over, and a lane whose concurrency key is at its limit is set aside whole, so no task
holds back those behind it that can be placed. Entries are never updated in place: a
task that leaves and comes back gets a new entry under a new generation, and the old one
is skipped by readers and dropped by compaction.

Passes move only when the log records a placement from the queue (`charge`, applied by
the board), so a replay of the log serves in the same order.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator

from domain.limits.limit import DEFAULT_WEIGHT

ReadyEntry = tuple[int, int, int, str]  # (-priority, submitted position, generation, id)
RetryEntry = tuple[float, int, int, int, str]  # (retry at, -priority, position, gen, id)
Lane = tuple[str, str]  # (fairness key, concurrency key)
Hint = tuple[int, int, str]  # a lane's head as it was: (-priority, position, concurrency key)
_FIRST_COMPACTION = 1024


class _Fair:
    """One fairness key's lanes."""

    __slots__ = ("hints", "lanes", "waiting")

    def __init__(self) -> None:
        self.lanes: dict[str, list[ReadyEntry]] = {}
        self.hints: list[Hint] = []
        self.waiting = 0  # its live entries, ready or in backoff


class WaitingTasks:
    def __init__(self, weight: Callable[[str], float] = lambda key: DEFAULT_WEIGHT) -> None:
        self.weight = weight  # of a fairness key (operators may set it: domain/limits/limit.py)
        self._fair: dict[str, _Fair] = {}
        self._retrying: list[RetryEntry] = []
        self._generation: dict[str, int] = {}  # the live entry of each waiting task
        self._lane_of: dict[str, Lane] = {}
        self._pass: dict[str, float] = {}  # fairness key -> its pass
        self._last_pass = 0.0  # the pass of the key served last: where newcomers join
        self._counter = itertools.count(1)
        self._entries = 0
        self._compact_above = _FIRST_COMPACTION
        # Concurrency keys at their limit: their lanes are out of every walk until
        # `unpark` (a task of the key leaves the open ones, a placement of it in flight
        # is released, a limit changes).
        self.parked: set[str] = set()
        self._fairs_of_key: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._generation)

    def add(self, task_id: str, priority: int, submitted_position: int,
            retry_at: float = 0.0, fairness_key: str = "", concurrency_key: str = "") -> None:
        """The task waits: ready now, or once `retry_at` (epoch seconds) has passed."""
        if task_id in self._generation:
            self.discard(task_id)
        generation = next(self._counter)
        self._generation[task_id] = generation
        lane = self._lane_of[task_id] = (fairness_key, concurrency_key)
        fair = self._fair.get(fairness_key)
        if fair is None:
            fair = self._fair[fairness_key] = _Fair()
        if not fair.waiting:
            self._pass[fairness_key] = max(self._pass.get(fairness_key, 0.0), self._last_pass)
        fair.waiting += 1
        if retry_at:
            heapq.heappush(self._retrying, (retry_at, -priority, submitted_position,
                                            generation, task_id))
        else:
            self._ready(lane, (-priority, submitted_position, generation, task_id))
        self._entries += 1
        if self._entries > self._compact_above:
            self._compact()

    def _ready(self, lane: Lane, entry: ReadyEntry) -> None:
        fair = self._fair[lane[0]]
        heap = fair.lanes.get(lane[1])
        if heap is None:
            heap = fair.lanes[lane[1]] = []
            self._fairs_of_key.setdefault(lane[1], set()).add(lane[0])
        if not heap or entry < heap[0]:
            heapq.heappush(fair.hints, (entry[0], entry[1], lane[1]))
        heapq.heappush(heap, entry)

    def discard(self, task_id: str) -> None:
        if self._generation.pop(task_id, None) is None:
            return
        fairness_key = self._lane_of.pop(task_id)[0]
        fair = self._fair[fairness_key]
        fair.waiting -= 1
        if not fair.waiting:  # its entries are all stale: dropped with it
            del self._fair[fairness_key]

    def unpark(self, key: str) -> None:
        """The key may place again: its lanes come back into the walks."""
        if key not in self.parked:
            return
        self.parked.discard(key)
        for fairness_key in self._fairs_of_key.get(key, ()):
            fair = self._fair.get(fairness_key)
            heap = fair.lanes.get(key) if fair is not None else None
            if fair is not None and heap:
                heapq.heappush(fair.hints, (heap[0][0], heap[0][1], key))

    def unpark_all(self) -> None:
        for key in list(self.parked):
            self.unpark(key)

    def charge(self, fairness_key: str) -> None:
        """The log recorded a placement of a task of this fairness key from the queue."""
        served = self._pass.get(fairness_key, self._last_pass) + 1.0 / self._weight(
            fairness_key)
        self._pass[fairness_key] = self._last_pass = served

    def _weight(self, fairness_key: str) -> float:
        weight = self.weight(fairness_key)
        return weight if weight > 0 else DEFAULT_WEIGHT

    def round(self, now: float) -> Round:
        """A walk of the tasks ready at `now` in serving order (see Round)."""
        self._promote(now)
        return Round(self)

    def due(self, now: float) -> Generator[str, None, None]:
        """Task ids ready at `now`, in serving order, each taken as served; produced as
        they are consumed. One at a time: close it before the next."""
        walk = self.round(now)
        try:
            while (task_id := walk.next()) is not None:
                yield task_id
                walk.served()
        finally:
            walk.close()

    def next_retry_at(self) -> float | None:
        """When the earliest backoff still waited out ends."""
        heap = self._retrying
        while heap and self._generation.get(heap[0][4]) != heap[0][3]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _promote(self, now: float) -> None:
        """Tasks whose backoff has ended join their lanes, in their queue order."""
        heap = self._retrying
        while heap and heap[0][0] <= now:
            _, first, second, generation, task_id = heapq.heappop(heap)
            if self._generation.get(task_id) == generation:
                self._ready(self._lane_of[task_id], (first, second, generation, task_id))

    def _live(self, entry: ReadyEntry) -> bool:
        return self._generation.get(entry[3]) == entry[2]

    def _compact(self) -> None:
        live = self._generation
        self._retrying = [e for e in self._retrying if live.get(e[4]) == e[3]]
        heapq.heapify(self._retrying)
        entries = len(self._retrying)
        for fair in self._fair.values():
            for key, heap in list(fair.lanes.items()):
                kept = [e for e in heap if live.get(e[3]) == e[2]]
                if kept:
                    heapq.heapify(kept)
                    fair.lanes[key] = kept
                    entries += len(kept)
                else:
                    del fair.lanes[key]
            fair.hints = [(heap[0][0], heap[0][1], key) for key, heap in fair.lanes.items()]
            heapq.heapify(fair.hints)
        self._fairs_of_key = {}
        for fairness_key, fair in self._fair.items():
            for key in fair.lanes:
                self._fairs_of_key.setdefault(key, set()).add(fairness_key)
        self.parked &= self._fairs_of_key.keys()  # a key with nothing waiting: none
        if len(self._pass) > 2 * len(self._fair) + _FIRST_COMPACTION:
            # Keys with nothing waiting join at the last pass when they come back.
            self._pass = {key: value for key, value in self._pass.items()
                          if key in self._fair}
        self._entries = entries
        self._compact_above = max(_FIRST_COMPACTION, 2 * entries)


class Round:
    """One walk of the ready tasks: `next` gives the task to consider, then the caller
    says what became of it: `served` (placed: its fairness key's turn is used), `skip`
    (not placed now; the tasks behind it are still considered), or `block` (its
    concurrency key can place nothing more this round: its whole lane is set aside).
    `close` puts everything back; the queue is whole again."""

    def __init__(self, waiting: WaitingTasks) -> None:
        self.waiting = waiting
        self._taken: list[tuple[Lane, ReadyEntry]] = []
        self._blocked: set[Lane] = set()
        self._extra: dict[str, float] = {}  # passes used in this round, not yet logged
        self._current: tuple[str, str, ReadyEntry] | None = None
        self._turns: list[tuple[int, float, int, str]] = []
        for fairness_key, fair in waiting._fair.items():
            self._queue(fairness_key, fair)

    def _queue(self, fairness_key: str, fair: _Fair) -> None:
        """Put the fairness key in turn, keyed by its best lane head, if it has one."""
        head = self._head(fairness_key, fair)
        if head is not None:
            turn = (self.waiting._pass.get(fairness_key, 0.0)
                    + self._extra.get(fairness_key, 0.0))
            heapq.heappush(self._turns, (head[0], turn, head[1], fairness_key))

    def _head(self, fairness_key: str, fair: _Fair) -> ReadyEntry | None:
        """The first live entry of the fairness key's lanes not set aside this round."""
        hints, waiting = fair.hints, self.waiting
        while hints:
            first, second, key = hints[0]
            lane = fair.lanes.get(key)
            while lane and not waiting._live(lane[0]):
                heapq.heappop(lane)
            if not lane or (fairness_key, key) in self._blocked or key in waiting.parked:
                heapq.heappop(hints)  # an empty lane; a set-aside one is hinted on close
                continue
            if (lane[0][0], lane[0][1]) != (first, second):  # stale: hint its head now
                heapq.heapreplace(hints, (lane[0][0], lane[0][1], key))
                continue
            return lane[0]
        return None

    def next(self) -> str | None:
        turns, fairs = self._turns, self.waiting._fair
        while turns:
            fairness_key = turns[0][3]
            fair = fairs.get(fairness_key)
            head = self._head(fairness_key, fair) if fair is not None else None
            if head is None:
                heapq.heappop(turns)
                continue
            turn = turns[0]
            if (head[0], head[1]) != (turn[0], turn[2]):  # its best lane changed: re-key
                heapq.heappop(turns)
                self._queue(fairness_key, fair)  # type: ignore[arg-type]
                continue
            concurrency_key = self.waiting._lane_of[head[3]][1]
            self._current = (fairness_key, concurrency_key, head)
            return head[3]
        self._current = None
        return None

    def _step(self) -> tuple[str, str, ReadyEntry]:
        current = self._current
        if current is None:
            raise RuntimeError("no task to act on: call next() first")
        self._current = None
        heapq.heappop(self._turns)
        return current

    def served(self) -> None:
        fairness_key, concurrency_key, entry = self._step()
        self._take(fairness_key, concurrency_key, entry)
        self._extra[fairness_key] = (self._extra.get(fairness_key, 0.0)
                                     + 1.0 / self.waiting._weight(fairness_key))
        self._requeue(fairness_key)

    def skip(self) -> None:
        fairness_key, concurrency_key, entry = self._step()
        self._take(fairness_key, concurrency_key, entry)
        self._requeue(fairness_key)

    def block(self) -> None:
        fairness_key, concurrency_key, _ = self._step()
        self._blocked.add((fairness_key, concurrency_key))
        self._requeue(fairness_key)

    def park(self) -> None:
        """Its concurrency key is at its limit: its lanes leave the walks until the
        queue is told the key may place again (WaitingTasks.unpark)."""
        fairness_key, concurrency_key, _ = self._step()
        self.waiting.parked.add(concurrency_key)
        self._requeue(fairness_key)

    def _take(self, fairness_key: str, concurrency_key: str, entry: ReadyEntry) -> None:
        fair = self.waiting._fair[fairness_key]
        heapq.heappop(fair.lanes[concurrency_key])
        self._taken.append(((fairness_key, concurrency_key), entry))

    def _requeue(self, fairness_key: str) -> None:
        fair = self.waiting._fair.get(fairness_key)
        if fair is not None:
            self._queue(fairness_key, fair)

    def close(self) -> None:
        waiting = self.waiting
        for lane, entry in self._taken:
            if waiting._live(entry) and lane[0] in waiting._fair:
                waiting._ready(lane, entry)
        for fairness_key, concurrency_key in self._blocked:
            fair = waiting._fair.get(fairness_key)
            heap = fair.lanes.get(concurrency_key) if fair is not None else None
            if fair is not None and heap:
                heapq.heappush(fair.hints, (heap[0][0], heap[0][1], concurrency_key))
        self._taken, self._blocked, self._turns = [], set(), []
