"""Writing the durable liveness record what-if replays (services/audit/liveness.py reads
it): silences the detector saw, and when it watched.

Written by the leader while its evidence is current (`domain.agents.health.Evidence`): one
message per silence longer than `resolution` (two heartbeat intervals), when the
heartbeat that ends it is applied, and one *watch* message per stretch of current
evidence, rolled up in place every MARK_EVERY_S so each stretch keeps one message. A
steady fleet therefore costs nothing per agent-day; each silence costs one message of
about 120 bytes stored (docs/audit.md). Outside every watch nothing is known: a replay
reports that as unknown coverage, never as silence.

The writer is the health monitor's (services.health), the reader the audit's: it lives
here so that the monitor's package does not import the audit's, which reads what this
writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque

import orjson
from nats.aio.client import Client

from infra.names import Names
from services.health.monitor import HealthMonitor

log = logging.getLogger(__name__)

# Silences longer than this many heartbeat intervals are recorded: any detector whose
# suspect and dead thresholds lie above it replays exactly.
RESOLUTION_INTERVALS = 2.0
FLUSH_EVERY_S = 0.2
MARK_EVERY_S = 1.0
# Silences waiting to be written, at most (a NATS outage drops the oldest).
MAX_WAITING = 100_000


class LivenessRecorder:
    """Writes the record; fed by the monitor's `on_silence`, O(1) per silence."""

    def __init__(self, nc: Client, names: Names, monitor: HealthMonitor,
                 heartbeat_interval: float) -> None:
        self.nc = nc
        self.names = names
        self.monitor = monitor
        self.resolution = RESOLUTION_INTERVALS * heartbeat_interval
        self._waiting: deque[tuple[str, int, float, float]] = deque(maxlen=MAX_WAITING)
        self._watch: tuple[str, float] | None = None  # (id, evidence.since) being marked
        self._marked = -float("inf")
        self._task: asyncio.Task[None] | None = None
        monitor.silence_after = self.resolution
        monitor.on_silence = self.silence

    def silence(self, agent_id: str, incarnation: int, start: float, end: float) -> None:
        """A silence from `start` to `end` (wall-clock seconds) the detector saw."""
        self._waiting.append((agent_id, incarnation, start, end))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await self.flush()
            except Exception as exc:  # the record is best effort; the detector goes on
                log.debug("liveness record not written: %r", exc)

    async def flush(self) -> None:
        while self._waiting:
            agent_id, incarnation, start, end = self._waiting.popleft()
            await self.nc.publish(self.names.liveness_silence(agent_id), orjson.dumps(
                {"i": incarnation, "f": round(start, 3), "t": round(end, 3)}))
        now = time.monotonic()
        if now - self._marked >= MARK_EVERY_S:
            self._marked = now
            await self._mark()

    async def _mark(self) -> None:
        """Extend the current watch to now: the record says we saw until here."""
        monitor, evidence = self.monitor, self.monitor.evidence
        if not (monitor.running and evidence.current):
            self._watch = None
            return
        if self._watch is None or self._watch[1] != evidence.since:
            self._watch = (uuid.uuid4().hex[:16], evidence.since)
        offset = monitor.wall_clock() - monitor.clock()
        body = {"f": round(evidence.since + offset, 3),
                "t": round(monitor.clock() + offset, 3), "r": self.resolution}
        await self.nc.publish(self.names.liveness_watch(self._watch[0]), orjson.dumps(body),
                              headers={"Nats-Rollup": "sub"})
