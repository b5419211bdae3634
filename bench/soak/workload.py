"""The soak's submitter: a steady rate of tasks through the client SDK, some of which
fail (retried, then dead-lettered, or not retryable at all) and some cancelled, each
with the ends its submission allows; and the RSS sampler."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.soak.procs import Orchestrator, rss_bytes
from sdk.client import Client, TaskHandle

COMPLETES = frozenset({"Completed"})
DEAD_LETTERS = frozenset({"DeadLettered"})
CANCEL_SHARE = 0.1  # of the sleep tasks: a cancel sent while they run (or wait)
MAX_IN_FLIGHT = 400  # submits awaiting their reply at once


@dataclass
class Submitter:
    client: Client
    rate: float
    rng: random.Random
    expected: dict[str, frozenset[str]] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    handles: dict[str, TaskHandle] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    cancels: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        """Submit at `rate` a second until `stop`; each submit in its own task, so that a
        slow reply (a leader changing) does not slow the rate."""
        loop = asyncio.get_running_loop()
        next_at, number = loop.time(), 0
        while not stop.is_set():
            if len(self._running) < MAX_IN_FLIGHT:
                number += 1
                task = asyncio.create_task(self._submit(f"s{number:06d}"))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            else:
                self.errors["skipped: too many submits in flight"] += 1
            next_at += 1 / self.rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))

    async def settle(self) -> None:
        """Every submit (and cancel) sent has its answer."""
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def _submit(self, task_id: str) -> None:
        roll = self.rng.random()
        cancel = False
        payload: dict[str, Any]
        if roll < 0.60:
            kind, payload, attempts, ends = "echo", {"id": task_id}, 3, COMPLETES
        elif roll < 0.85:
            kind, payload, attempts, ends = ("sleep", {"seconds": self.rng.uniform(1.0, 8.0)},
                                             3, COMPLETES)
            cancel = self.rng.random() < CANCEL_SHARE
        elif roll < 0.93:  # retried twice, dead-lettered at its third failure
            kind, payload, attempts, ends = "fail", {"retryable": True}, 3, DEAD_LETTERS
        elif roll < 0.98:  # not retryable: dead-lettered at once
            kind, payload, attempts, ends = "fail", {"retryable": False}, 3, DEAD_LETTERS
        else:  # one attempt only
            kind, payload, attempts, ends = "fail", {"retryable": True}, 1, DEAD_LETTERS
        label = f"{kind}/{'cancel' if cancel else payload.get('retryable', 'ok')}/{attempts}"
        self.kinds[label] += 1
        self.expected[task_id] = ends | {"Cancelled"} if cancel else ends
        try:
            handle = await self.client.submit(kind, payload, task_id=task_id,
                                              max_attempts=attempts)
        except Exception as exc:  # not acknowledged: the log may or may not have it
            self.errors[f"submit: {type(exc).__name__}: {str(exc)[:80]}"] += 1
            return
        self.acknowledged.add(task_id)
        self.handles[task_id] = handle
        if cancel:
            await asyncio.sleep(self.rng.uniform(0.0, 1.5))
            try:
                await self.client.cancel(task_id, "soak: cancelled on purpose")
                self.cancels["sent"] += 1
            except Exception as exc:  # finished first: a conflict
                self.cancels[f"refused: {type(exc).__name__} {getattr(exc, 'code', '')}"] += 1

    def finished(self) -> int:
        return sum(1 for handle in self.handles.values() if handle.done())

    async def outcomes(self) -> dict[str, str]:
        """task id -> the status its pushed outcome said (finished tasks only)."""
        told = {}
        for task_id, handle in self.handles.items():
            if handle.done():
                told[task_id] = (await handle.outcome(timeout=1)).status
        return told


@dataclass
class RssSample:
    at: float  # seconds since the run began
    finished: int  # tasks finished (their outcome pushed to the submitter) by then
    rss: dict[str, int]  # "<orchestrator>#<start>" -> bytes


@dataclass
class Sampler:
    orchestrators: list[Orchestrator]
    submitter: Submitter
    started: float = field(default_factory=time.monotonic)
    samples: list[RssSample] = field(default_factory=list)

    async def run(self, stop: asyncio.Event, every: float = 5.0) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
        self.sample()

    def sample(self) -> None:
        rss = {f"{o.name}#{o.starts}": rss_bytes(o.pid) for o in self.orchestrators if o.alive}
        self.samples.append(RssSample(time.monotonic() - self.started,
                                      self.submitter.finished(),
                                      {k: v for k, v in rss.items() if v}))
