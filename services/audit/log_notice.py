"""The orchestrator's notice of the last log position it applied, on
`<prefix>.log.appended`: what wakes a reader that follows the log by direct gets (an
auditor's app, `orchestrator events --follow`), which may create no consumer.

The body is the position in ASCII digits. At most one publication every `every_s`
(20 ms): a burst of thousands of appends is one or two notices, each with the latest
position; a reader woken reads whatever is new, so a skipped position loses nothing.
At most once and live only, as the change feed: a reader also looks again once its
connection is back, and every few seconds (infra.log.direct_read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats.errors

log = logging.getLogger(__name__)

EVERY_S = 0.02

Publish = Callable[[str, bytes], Awaitable[None]]


class LogNotice:
    """Publishes the latest applied position, coalesced: one publication pending at a
    time, sent `every_s` after the one before."""

    def __init__(self, publish: Publish, subject: str, every_s: float = EVERY_S) -> None:
        self.publish = publish
        self.subject = subject
        self.every_s = every_s
        self.sent = 0  # publications made
        self._latest = 0
        self._announced = 0
        self._last_sent = float("-inf")
        self._pending: asyncio.Task[None] | None = None

    def applied(self, position: int) -> None:
        """Called after each applied event: cheap (a replay calls it per event)."""
        if position <= self._latest:
            return
        self._latest = position
        if self._pending is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._last_sent + self.every_s - loop.time())
            self._pending = loop.create_task(self._announce(delay))

    async def _announce(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        # Taken now, not when scheduled: what was applied while waiting goes too. A
        # position applied during the publish below schedules the next one.
        self._pending = None
        position = self._latest
        if position <= self._announced:
            return
        self._announced = position
        self._last_sent = asyncio.get_running_loop().time()
        try:
            await self.publish(self.subject, str(position).encode())
            self.sent += 1
        except (nats.errors.Error, OSError) as exc:  # the next append says it again
            log.debug("log notice not published: %r", exc)

    async def close(self) -> None:
        """Stop a publication still waiting (the connection is about to close)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
