"""A process's background jobs by name: started, replaced, cancelled within a bound, and
a failure said at once (not when the task is collected), with a restart for the jobs
that should go on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
RESTART_DELAY_S = 1.0

Job = Callable[[], Coroutine[Any, Any, None]]


class Jobs:
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[None]] = {}
        # What restarts a failed job, and whether it should be restarted now.
        self._restart: dict[str, tuple[Job, Callable[[], bool]]] = {}

    def names(self) -> list[str]:
        return list(self._running)

    def spawn(self, name: str, job: Job, restart_while: Callable[[], bool] | None = None) -> None:
        """Run `job()` as `name`, replacing a running one of that name. With
        `restart_while`, a failure is followed by a fresh run after RESTART_DELAY_S if it
        still says so (a leader duty, while this process leads)."""
        running = self._running.get(name)
        if running is not None and not running.done():
            running.cancel()
        if restart_while is None:
            self._restart.pop(name, None)
        else:
            self._restart[name] = (job, restart_while)
        task = self._running[name] = asyncio.create_task(job(), name=name)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        name = task.get_name()
        log.error("job failed name=%s: %r", name, task.exception(), exc_info=task.exception())
        restart = self._restart.get(name)
        if self._running.get(name) is task and restart is not None and restart[1]():
            asyncio.get_running_loop().call_later(RESTART_DELAY_S, self._again, name, task)

    def _again(self, name: str, failed: asyncio.Task[None]) -> None:
        restart = self._restart.get(name)
        if self._running.get(name) is failed and restart is not None and restart[1]():
            log.warning("restarting job name=%s", name)
            self.spawn(name, *restart)

    async def cancel(self, name: str) -> None:
        self._restart.pop(name, None)
        task = self._running.pop(name, None)
        if task is None:
            return
        task.cancel()
        # Bounded: on Python 3.11 asyncio.wait_for (inside nats-py) can swallow a cancel
        # that arrives as it completes, and a job's loop would go on.
        await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not task.done():
            log.warning("job did not stop name=%s", name)
        elif not task.cancelled():
            task.exception()  # retrieved: what it failed with was logged by the job
