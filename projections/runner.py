"""Feeds the log to the projections: rebuilt on start (from position 0 or a snapshot's),
then live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from domain.base import CARRIED_FORWARD
from projections.log_event import LogEvent
from projections.position import Position

log = logging.getLogger(__name__)


class Projection(Protocol):
    def apply(self, event: LogEvent) -> None: ...


class LogSource(Protocol):
    async def last_position(self) -> int: ...
    async def tail(
        self, after: int, handler: Callable[[Any], Awaitable[None]],
        subject_filter: str | None = None,
        skipped: Callable[[int, str], None] | None = None,
    ) -> Any: ...


class ProjectionRunner:
    """Applies every event, in log order, to every projection; tracks the position."""

    def __init__(
        self,
        source: LogSource,
        projections: Sequence[Projection],
        on_applied: Callable[[LogEvent], Awaitable[None]] | None = None,
        position: Position | None = None,
    ) -> None:
        self.source = source
        self.projections = list(projections)
        self.on_applied = on_applied
        # Given when readers of the position are made before the runner (services.bootstrap).
        self.position = position or Position()
        self.rebuild_target = 0
        self.last_event_id = ""  # of the event at `position`
        self.applied = 0  # events applied since start (a metric's source)
        self.started_from = 0
        self._subscription: Any = None
        self._resumed = asyncio.Event()  # cleared while paused
        self._resumed.set()

    async def start(self, after: int = 0) -> None:
        """Start rebuilding from the log's beginning, or from `after` when the
        projections already hold everything up to it (a snapshot); `ready` tells when
        caught up."""
        self.position.advance(after)
        self.started_from = after
        self.rebuild_target = await self.source.last_position()
        self._subscription = await self.source.tail(after, self._apply, skipped=self._skip)
        log.info("projection rebuild started after=%d target=%d", after, self.rebuild_target)

    async def resume(self) -> None:
        """Tail again from the last applied position (after NATS came back)."""
        await self.stop()
        self._subscription = await self.source.tail(self.position.value, self._apply,
                                                     skipped=self._skip)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No event is applied inside the block; those that arrive wait, in order (in the
        subscription's queue), and are applied after it. For a reader that needs the
        projections unchanged across awaits: a snapshot written in parts."""
        self._resumed.clear()
        try:
            yield
        finally:
            self._resumed.set()

    async def _apply(self, event: LogEvent) -> None:
        if not self._resumed.is_set():
            await self._resumed.wait()
        if event.position <= self.position.value:
            return  # already applied (a redelivery after a consumer reset)
        if event.name != CARRIED_FORWARD:  # a restatement: no projection changes
            for projection in self.projections:
                projection.apply(event)
        self.last_event_id = event.event_id
        self.position.advance(event.position)
        self.applied += 1
        if self.on_applied:
            await self.on_applied(event)

    def _skip(self, position: int, event_id: str) -> None:
        """A record the orchestrator did not write (infra.log.format.foreign): nothing to apply,
        but the projections are past it, or a log ending in one would never be caught
        up with."""
        if position > self.position.value:
            self.last_event_id = event_id
            self.position.advance(position)

    @property
    def ready(self) -> bool:
        return self.position.value >= self.rebuild_target

    async def wait_ready(self, timeout: float) -> bool:
        return await self.position.wait_for(self.rebuild_target, timeout)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self._subscription.unsubscribe()
            self._subscription = None
