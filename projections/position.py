"""A log position that readers can wait on."""

from __future__ import annotations

import asyncio
import contextlib


class Position:
    """The last log position a projection applied, with `wait` for readers."""

    def __init__(self) -> None:
        self.value = 0
        # Made when a reader waits, and set and dropped at the next advance: a replay
        # advances a million times with nobody waiting, and an Event each time was a
        # measurable share of it.
        self._changed: asyncio.Event | None = None

    def advance(self, position: int) -> None:
        if position > self.value:
            self.value = position
            changed = self._changed
            if changed is not None:
                self._changed = None
                changed.set()

    async def wait_past(self, index: int, timeout: float) -> bool:
        """Wait until the position is greater than `index`; False after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.value <= index:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._change().wait(), remaining)
        return True

    async def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until the position has reached `position`."""
        return await self.wait_past(position - 1, timeout)

    def _change(self) -> asyncio.Event:
        """Set at the next advance."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed
