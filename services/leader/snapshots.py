"""Projection snapshots: restored on start, written by the leader as the log grows."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator

from infra.log.port import EventLog
from infra.log.snapshot_store import SnapshotStore
from projections import snapshot
from projections.board.tasks import TaskBoard
from projections.fleet.agents import AgentHealth
from projections.fleet.catalog import Catalog
from projections.runner import ProjectionRunner
from services.leader import heap
from services.metrics import Metrics

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5.0


@contextlib.contextmanager
def _collector_paused() -> Iterator[Callable[[], None]]:
    """The cyclic garbage collector off while a snapshot is decoded and restored:
    hundreds of thousands of new containers would set it off again and again, walking
    them each time (half the time of a restore), though none is garbage. `keep()` then
    freezes what was built, which lives as long as the process, so that later full
    collections do not walk it either."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield gc.freeze
    finally:
        if was_enabled:
            gc.enable()


class Snapshots:
    """Start-up from the latest snapshot, and a new snapshot every `every` events.

    A snapshot is only an optimisation: one that is missing, unreadable, of another
    version, or of another log (the event at its position is not the one it names) is
    ignored, and the projections are rebuilt from the log's beginning.
    """

    def __init__(self, store: SnapshotStore, events: EventLog, runner: ProjectionRunner,
                 agents: AgentHealth, board: TaskBoard, catalog: Catalog, every: int,
                 metrics: Metrics) -> None:
        self.store = store
        self.events = events
        self.runner = runner
        self.agents, self.board, self.catalog = agents, board, catalog
        self.every = every
        self.metrics = metrics
        self.written = 0  # position of the latest snapshot, restored or written
        self._writing = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.every > 0

    async def restore(self) -> int:
        """Put the projections in the latest usable snapshot's state; its position, or 0."""
        if not self.enabled:
            return 0
        started = time.perf_counter()
        data = await self.store.load()
        if data is None:
            return 0
        with _collector_paused() as keep:
            try:
                found = snapshot.decode(data)
            except snapshot.SnapshotUnusable as exc:
                log.warning("snapshot ignored: %s", exc)
                return 0
            if not await self._of_this_log(found.position, found.event_id):
                log.warning("snapshot ignored: it is of another log (position %d)",
                            found.position)
                return 0
            snapshot.restore(found, self.agents, self.board, self.catalog)
            keep()
        self._written_at(found.position)
        log.info("snapshot restored position=%d agents=%d tasks=%d bytes=%d in %.3fs",
                 found.position, len(found.agents), len(found.tasks), len(data),
                 time.perf_counter() - started)
        return found.position

    async def _of_this_log(self, position: int, event_id: str) -> bool:
        """The log holds the event the snapshot names at its position; or, the log being
        bounded, its beginning was cut just after that event, which the snapshot then
        stands for exactly."""
        found = await self.events.event_id_at(position)
        if found is not None:
            return found == event_id
        first, _ = await self.events.bounds()
        return position == first - 1

    async def write(self) -> None:
        """A snapshot of the projections as they are now, unless the latest is of now.

        One at a time: a final write at stop waits for the one in flight, which may then
        have made it needless.
        """
        async with self._writing:
            position = self.runner.position.value
            if position <= self.written:
                return
            started = time.perf_counter()
            parts: list[bytes] = []
            async with self.runner.paused():  # the projections hold still meanwhile
                position = self.runner.position.value
                for part in snapshot.encode_parts(self.agents, self.board, position,
                                                  self.runner.last_event_id):
                    parts.append(part)
                    await asyncio.sleep(0)  # let the loop run: commands, heartbeats, reads
            await self.store.save(parts)  # as parts: joining ~100 MB held the loop 60 ms
            self._written_at(position)
            size = sum(map(len, parts))
            parts.clear()  # freed before the heap's free pages are given back
            trimming = time.perf_counter()
            gave_back = heap.give_back_free_memory()
            log.info("snapshot written position=%d bytes=%d in %.3fs (free heap given "
                     "back: %s, in %.1f ms)", position, size, trimming - started, gave_back,
                     (time.perf_counter() - trimming) * 1e3)

    def _written_at(self, position: int) -> None:
        self.written = position
        self.metrics.snapshot_position.set(position)

    async def run(self) -> None:
        """Leader duty: a snapshot once `every` events were applied since the last one."""
        if not self.enabled:
            return
        while True:
            if not await self.runner.position.wait_for(self.written + self.every, 60.0):
                continue
            if not self.runner.ready:
                await self.runner.wait_ready(60.0)
                continue
            try:
                # Shielded: losing the lead (or stopping) does not cut a write short.
                await asyncio.shield(self.write())
            except Exception as exc:  # a snapshot is an optimisation: never stop leading
                log.warning("snapshot not written: %r", exc)
                await asyncio.sleep(RETRY_AFTER_S)
