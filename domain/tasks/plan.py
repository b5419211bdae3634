"""A round of placements over a large fleet without a pass over the fleet per task.

The dispatcher places the queued tasks one after another, each seeing the loads the ones
before it added. Calling `choose` for each costs the whole fleet per task: with 2,000
agents that was most of the orchestrator's time (`python -m bench profile`). A `Plan`
gives the same answers as those calls (tests/unit/test_plan.py checks it against
`choose`), from heaps per kind of task, kept by pushing an agent again whenever it takes
a task: an entry whose key is no longer the agent's is stale, and skipped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from domain.tasks.placement import Candidate, Selector, Strategy, choose, is_eligible, preferring

# What a task needs: capabilities, kind, labels.
Shape = tuple[frozenset[str], str | None, Selector]


_FIRST_COMPACTION = 1024
# Heaps kept at once, one per shape asked for: every change of an agent is pushed into
# each, so tasks with many distinct selectors would make each change cost them all. Past
# this, they are dropped and made again as asked.
MAX_SHAPES = 64


class Plan:
    """Also kept from round to round: `update` tells it of an agent that changed (or
    left: None), and it answers as if built afresh from the candidates it holds."""

    def __init__(self, candidates: dict[str, Candidate], strategy: Strategy) -> None:
        self.candidates = candidates  # by agent id, with the loads placed so far
        self.strategy = strategy
        self._eligible: dict[Shape, list[tuple[Any, str]]] = {}
        self._by_load: list[tuple[int, str]] | None = None

    def update(self, agent_id: str, candidate: Candidate | None) -> None:
        """The agent as it is now; None: it can take no task (gone, ill, draining)."""
        if candidate is None:
            self.candidates.pop(agent_id, None)  # its entries are stale from now on
            return
        self.candidates[agent_id] = candidate
        self._push(candidate)
        entries = sum(len(h) for h in self._eligible.values()) + len(self._by_load or ())
        if entries > max(_FIRST_COMPACTION, 2 * (len(self._eligible) + 1)
                         * len(self.candidates)):
            self._eligible.clear()  # made again, from the candidates, when next asked
            self._by_load = None

    def _push(self, candidate: Candidate) -> None:
        for (needed, kind, selector), heap in self._eligible.items():
            if is_eligible(candidate, needed, kind, selector):
                heapq.heappush(heap, (self._key(candidate), candidate.agent_id))
        if self._by_load is not None:
            heapq.heappush(self._by_load, (candidate.load, candidate.agent_id))

    def choose(self, requires: Iterable[str], kind: str | None, after: str = "",
               selector: Selector = (), prefer: Selector = ()) -> Candidate | None:
        """What `choose(list(candidates), requires, strategy, after, kind=kind,
        selector=selector, prefer=prefer)` gives."""
        if self.strategy == Strategy.ROUND_ROBIN:  # by the cursor: no heap order to keep
            return choose(list(self.candidates.values()), requires, self.strategy, after,
                          kind=kind, selector=selector, prefer=prefer)
        needed = frozenset(requires)
        if prefer:
            found = self._first(needed, kind, preferring(selector, prefer))
            if found is not None:
                return found
        return self._first(needed, kind, selector)

    def _first(self, needed: frozenset[str], kind: str | None,
               selector: Selector) -> Candidate | None:
        shape = (needed, kind, selector)
        heap = self._eligible.get(shape)
        if heap is None:
            if len(self._eligible) >= MAX_SHAPES:
                self._eligible.clear()
            heap = self._eligible[shape] = [
                (self._key(c), c.agent_id) for c in self.candidates.values()
                if is_eligible(c, needed, kind, selector)]
            heapq.heapify(heap)
        while heap:
            key, agent_id = heap[0]
            candidate = self.candidates.get(agent_id)
            if candidate is not None and key == self._key(candidate) \
                    and is_eligible(candidate, needed, kind, selector):
                return candidate
            heapq.heappop(heap)  # stale (pushed again with its new key), gone, or full
        return None

    def take(self, agent_id: str) -> Candidate:
        """The agent takes one more task; returns it as it now is."""
        taken = self.candidates[agent_id] = replace(
            self.candidates[agent_id], load=self.candidates[agent_id].load + 1)
        self._push(taken)
        return taken

    def considered(self, limit: int = 8) -> list[Candidate]:
        """The `limit` candidates of least load (then id): what a placement records as
        the agents it looked at (services.commands.tasks.considered)."""
        if self._by_load is None:
            self._by_load = [(c.load, c.agent_id) for c in self.candidates.values()]
            heapq.heapify(self._by_load)
        heap, found, seen = self._by_load, list[Candidate](), set[str]()
        taken: list[tuple[int, str]] = []
        while heap and len(found) < limit:
            entry = heapq.heappop(heap)
            load, agent_id = entry
            candidate = self.candidates.get(agent_id)
            if candidate is None or candidate.load != load or agent_id in seen:
                continue  # stale: pushed again with its new load, or gone
            seen.add(agent_id)
            taken.append(entry)
            found.append(candidate)
        for entry in taken:
            heapq.heappush(heap, entry)
        return found

    def _key(self, candidate: Candidate) -> Any:
        if self.strategy == Strategy.BIN_PACK:
            return (candidate.free, candidate.agent_id)
        return (candidate.load / candidate.capacity, candidate.load, candidate.agent_id)
