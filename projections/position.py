"""A log position that readers can wait on."""

from __future__ import annotations

import asyncio
import contextlib


class Position:
    """The last log position a projection applied, with `wait` for readers."""

    def __init__(self) -> None:
        self.value = 0
        self._changed = asyncio.Event()

    def advance(self, position: int) -> None:
        if position > self.value:
            self.value = position
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_past(self, index: int, timeout: float) -> bool:
        """Wait until the position is greater than `index`; False after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.value <= index:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until the position has reached `position`."""
        return await self.wait_past(position - 1, timeout)
