"""The health monitor's looks at the bus, and the liveness evidence they make.

The leader looks at the heartbeat stream continually (its last sequence, and how long the
bus took to say it). Evidence is lost while a look is overdue or answered late, fails, or
is given up, and after a stall, a disconnection or a reconnect; it is current again once
a prompt look is answered and the heartbeat consumer has applied everything the stream
held then (`domain.agents.health.Evidence`, docs/stalls.md). HealthMonitor
(services/health/monitor.py) is built on this: its deadlines expire only within what the
evidence covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from domain.agents.health import DetectorSettings, Evidence, bus_stall_tolerance, look_interval
from services.metrics import Metrics

log = logging.getLogger("services.health.monitor")  # the monitor's log, as before

# Looks at the bus are at least this far apart, even when deadlines ask for them.
MIN_LOOK_GAP_S = 0.005

# The heartbeat stream's last sequence (0 when it holds nothing): a look at the bus.
BusCheck = Callable[[], Awaitable[int]]

# After these the heartbeat consumer's position means nothing until the intake replaces
# the consumer (the app restarts it after every reconnect: NATS may have restarted, with
# a new heartbeat stream whose sequences start again at 1).
_CONSUMER_REPLACED_AFTER = frozenset({"reconnected"})
# Restarts that come with every start, not with trouble: logged at info.
ROUTINE_RESTARTS = frozenset({"elected"})


class BusEvidence:
    """The looks at the bus and the evidence they make, for HealthMonitor."""

    # Set by HealthMonitor.
    clock: Callable[[], float]
    metrics: Metrics
    _running: bool

    if TYPE_CHECKING:
        def tick(self, now: float) -> None: ...  # HealthMonitor's: deadlines a look covers

    def __init__(self, settings: DetectorSettings, clock: Callable[[], float],
                 bus_check: BusCheck | None) -> None:
        # Looks at the bus: how often, and how late an answer may be before it is a stall.
        self.bus_check = bus_check
        self.look_every = look_interval(settings)
        self.evidence = Evidence(tolerance=bus_stall_tolerance(settings), since=clock())
        self._look_sent: float | None = None  # the look waiting for its answer
        self._bus_look: asyncio.Future[int] | None = None
        self._last_look_sent = float("-inf")
        # Set when a deadline has come that no look covers yet: look now, not at the next
        # look_every, so a death waits one round trip for its evidence, not a period.
        self._look_wanted = asyncio.Event()
        # A look unanswered this long is given up and another sent (the answer may have
        # been owed on a connection since replaced).
        self.look_timeout = min(2.0, max(0.5, 2 * self.evidence.tolerance))

    @property
    def visible_since(self) -> float:
        """When evidence last became current: no silence before it counts."""
        return self.evidence.since

    def heartbeat_applied(self, stream_seq: int) -> None:
        """The intake applied (or set aside) the heartbeat at this stream sequence."""
        if self.evidence.applied_up_to(stream_seq, self.clock()):
            self._current_again()

    def heartbeat_consumer_replaced(self) -> None:
        """The intake subscribed afresh: its position starts again from nothing."""
        if self.evidence.consumer_replaced(self.clock()):
            self._report_lost("heartbeat-consumer-replaced")

    def restart_deadlines(self, reason: str) -> None:
        """We could not see, or cannot now: liveness evidence is unknown until a prompt
        look at the bus and the heartbeat consumer's catching up with it; then every
        deadline restarts from that moment."""
        now = self.clock()
        if reason in _CONSUMER_REPLACED_AFTER:
            self.evidence.consumer_lost(now, reason)
            if self._bus_look is not None:
                self._bus_look.cancel()  # owed on the old connection: look again on the new
        else:
            self.evidence.lost(now, reason)
        self._report_lost(reason)

    def _lose(self, reason: str) -> None:
        """Trouble seen by the monitor itself: said once per blind spell."""
        if self.evidence.lost(self.clock(), reason):
            self._report_lost(reason)

    def _report_lost(self, reason: str, detail: str = "") -> None:
        self.metrics.blind_resets.labels(reason).inc()
        # Taking the lease is routine (every start): the deadlines restart by design. The
        # other reasons are trouble (a disconnect, a stall) and warned of.
        level = logging.INFO if reason in ROUTINE_RESTARTS else logging.WARNING
        log.log(level, "health deadlines restarted reason=%s%s", reason, detail)

    def _current_again(self) -> None:
        evidence = self.evidence
        blind = (evidence.since - evidence.blind_since
                 if evidence.blind_since is not None else 0.0)
        log.info("health evidence current again after %.3fs blind; deadlines restart now "
                 "heartbeat_seq=%d", blind, evidence.applied)

    def check_overdue(self, now: float) -> None:
        """A look at the bus unanswered for longer than the stall tolerance: the bus (the
        server, its disk, or the path to it) stalls, and evidence is unknown from now."""
        sent = self._look_sent
        if sent is not None and self.evidence.overdue(sent, now):
            self._report_lost("bus-stall", f": no answer from the bus for {now - sent:.3f}s")

    async def _look_at_bus(self, check: BusCheck) -> None:
        """Look at the heartbeat stream continually: its last sequence, and how long the
        bus took to say it. A look is given up after `look_timeout` (or at once after a
        reconnect: its answer was owed on the old connection), and another one sent."""
        while True:
            sent = self._look_sent = self._last_look_sent = self.clock()
            look = self._bus_look = asyncio.ensure_future(check())
            try:
                done, _ = await asyncio.wait({look}, timeout=self.look_timeout)
            finally:
                self._bus_look = None
                self._look_sent = None
                if not look.done():
                    look.cancel()
            if not done or look.cancelled():  # given up: no answer, or owed elsewhere
                if self.evidence.lost(self.clock(), "bus-look-timeout"):
                    self._report_lost("bus-look-timeout")
                continue  # the next look at once
            exc = look.exception()
            if exc is not None:  # cannot see the bus: nothing may expire
                if self.evidence.lost(self.clock(), "bus-check-failed"):
                    self._report_lost("bus-check-failed", f": {exc!r}")
            else:
                answered = self.clock()
                was_current = self.evidence.current
                horizon = self.evidence.horizon
                if self.evidence.looked(sent, answered, look.result()):
                    self._current_again()
                elif was_current and not self.evidence.current:
                    self._report_lost("bus-stall",
                                      f": the bus took {answered - sent:.3f}s to answer")
                elif self.evidence.horizon > horizon and self._running:
                    self.tick(answered)  # deadlines this look covers: at once
            await asyncio.sleep(MIN_LOOK_GAP_S)
            with contextlib.suppress(TimeoutError):  # not wait_for: see Dispatcher.run
                async with asyncio.timeout(self.look_every):
                    await self._look_wanted.wait()
            self._look_wanted.clear()
