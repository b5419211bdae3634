"""Aggregates loaded from and saved to the event store, with a write-through cache."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from domain.base import events_since_anchor
from infra.caller import ORCHESTRATOR, current_identity
from infra.log.port import EventLog
from infra.log.recorded import ConcurrencyConflict, StoreUnavailable
from infra.names import ACCESS

log = logging.getLogger(__name__)

# A load reads an aggregate's events from its latest CarriedForward (or its creation).
# Once this many events follow that one, the aggregate is carried forward again, so no
# history makes a load read more than this many events beyond what a new aggregate's
# does (780 re-registrations of 58 KB: 780 events and 233 ms of CPU a load, before).
# The cost is one restatement of the state per this many events, in the log.
CARRY_FORWARD_AFTER = 8


class _Held:
    """An aggregate's lock and how many commands hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class AggregateLock:
    """`async with`: the aggregate's lock, kept in the table only while used, so idle
    aggregates cost nothing (a plain dict and a count: a weak dictionary and a generator
    context manager per command were a measurable cost)."""

    __slots__ = ("_held", "_key", "_table")

    def __init__(self, table: dict[str, _Held], key: str) -> None:
        self._table = table
        self._key = key
        self._held: _Held | None = None

    async def __aenter__(self) -> None:
        held = self._table.get(self._key)
        if held is None:
            held = self._table[self._key] = _Held()
        self._held = held
        held.users += 1
        try:
            await held.lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        assert self._held is not None
        self._held.lock.release()
        self._leave()

    def _leave(self) -> None:
        held = self._held
        assert held is not None
        held.users -= 1
        if held.users == 0 and self._table.get(self._key) is held:
            del self._table[self._key]


class Repository:
    """Aggregates of one kind.

    The cache keeps each aggregate with the position of its last event, so a command
    costs one append rather than a replay. It is only an optimisation: a stale entry
    (another writer got there first) fails the append's OCC check, and is evicted.
    """

    def __init__(self, store: EventLog, kind: str, cache_size: int = 200_000,
                 keep: Callable[[Any], bool] | None = None,
                 carry_forward_after: int | None = CARRY_FORWARD_AFTER) -> None:
        self.store = store
        self.kind = kind
        # None: never (loads read it all). An hour's access log is bounded by its hour,
        # and its bytes a day are a stated bound (services/auth/refusals.py) that
        # restatements would break.
        self.carry_forward_after = None if kind == ACCESS else carry_forward_after
        # Whether a saved aggregate stays cached (all do when None). A finished task is
        # rarely commanded again, and then `execute` reads it from the log: caching it
        # would hold about 1 KB per finished task for as long as the cache has room.
        self._keep = keep
        # A plain dict is the LRU list too (insertion order; a use re-inserts), at about
        # half an OrderedDict's memory per entry.
        self._cache: dict[str, tuple[Any, int]] = {}
        self._cache_size = cache_size
        self._locks: dict[str, _Held] = {}

    def locked(self, aggregate_id: str) -> AggregateLock:
        """One command at a time per aggregate in this process: the cached aggregate is
        shared, and a command mutates it before its events are saved. `async with`."""
        return AggregateLock(self._locks, aggregate_id)

    async def get(self, aggregate_id: str, fresh: bool = False) -> tuple[Any | None, int]:
        """The aggregate and its last position, from the cache.

        Not cached, it is presumed new (None at position 0) without reading the log: a
        creation then costs one append, and if the aggregate did exist the append's OCC
        check fails and the caller asks again with `fresh`, which reads the log.
        """
        if not fresh:
            cached = self._cache.pop(aggregate_id, None)
            if cached is None:
                return None, 0
            self._cache[aggregate_id] = cached  # now the most recently used
            return cached
        anchor = await self._anchor(aggregate_id)
        aggregate, position = await self.store.load(self.kind, aggregate_id, anchor)
        if aggregate is not None and self._long(aggregate):
            # A history from before loads were bounded: bound it now, or read it as it is.
            carried = await self._carry(aggregate, position)
            if carried is None:
                aggregate, position = await self.store.load(self.kind, aggregate_id, anchor)
            else:
                position = carried
        if aggregate is not None:
            self._remember(aggregate_id, aggregate, position)
        return aggregate, position

    async def save(
        self,
        aggregate: Any,
        expected_position: int,
        causation_id: str | None,
        correlation_id: str | None,
    ) -> list[int]:
        """Append the aggregate's pending events; returns their positions."""
        events = aggregate.collect_events()
        try:
            positions = await self.store.append(
                self.kind, events, expected_position, causation_id, correlation_id
            )
        except BaseException:
            self.evict(aggregate.id)
            raise
        if positions:
            position: int | None = positions[-1]
            if self._long(aggregate):
                position = await self._carry(aggregate, positions[-1])
            if position is None:  # not carried, yet changed by trying: not to be reused
                self.evict(aggregate.id)
            else:
                self._remember(aggregate.id, aggregate, position)
        return positions

    async def _anchor(self, aggregate_id: str) -> int:
        """Where a load of the aggregate begins: just before its latest CarriedForward,
        found by one direct get of its subject (0, its creation, when it has none)."""
        carried = await self.store.last_carried_forward(self.kind, aggregate_id)
        return 0 if carried is None else carried - 1

    def _long(self, aggregate: Any) -> bool:
        after = self.carry_forward_after
        return after is not None and events_since_anchor(aggregate) >= after

    async def _carry(self, aggregate: Any, position: int) -> int | None:
        """Append the aggregate's state as its next event (the next load begins there);
        its position, or None if another writer came first or the log did not answer
        (the next save tries again). Upkeep, recorded as the orchestrator's."""
        aggregate.carry_forward()
        identity = current_identity.set(ORCHESTRATOR)
        try:
            [carried] = await self.store.append(self.kind, aggregate.collect_events(),
                                                position)
        except (ConcurrencyConflict, StoreUnavailable) as exc:
            log.info("%s %s not carried forward: %r", self.kind, aggregate.id, exc)
            return None
        finally:
            current_identity.reset(identity)
        return carried

    def cached(self, aggregate_id: str) -> bool:
        return aggregate_id in self._cache

    def evict(self, aggregate_id: str) -> None:
        self._cache.pop(aggregate_id, None)

    def _remember(self, aggregate_id: str, aggregate: Any, position: int) -> None:
        self._cache.pop(aggregate_id, None)
        if self._keep is not None and not self._keep(aggregate):
            return
        self._cache[aggregate_id] = (aggregate, position)
        if len(self._cache) > self._cache_size:
            # The least recently used twentieth goes in one pass: finding a dict's oldest
            # entry walks past the ones deleted before it, so one at a time is quadratic.
            excess = len(self._cache) - self._cache_size + self._cache_size // 20
            for oldest in list(itertools.islice(self._cache, excess)):
                del self._cache[oldest]
