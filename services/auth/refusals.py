"""Refused connections in the log, within a fixed bound whatever anonymous clients do.

All a refused client sends is its own choice (its name, the id it claims, its key), so
none of it may decide what is recorded: a fresh random name per attempt made one event
per attempt. Only the host the server saw the connection come from is not the client's
to choose per attempt. So per interval the log takes at most one `ConnectionRefused`
per host and at most MAX_RECORDED_PER_INTERVAL in all; every refusal left out is
counted per host and the counts are recorded once per interval in one
`RefusalsSummarised` ("N refusals from H"; the busiest SUMMARY_HOSTS by name, the rest
as totals). Every recorded field is cut to a fixed length, so each event has a largest
size, and the log grows by at most MAX_LOG_BYTES_PER_DAY a day per orchestrator
however many attempts are made (README, Security). Every refusal is still counted in
`orch_auth_refusals_total`. The process log follows the same bound: a line for each
recorded refusal (callout.py), and one line per summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from domain.errors import CommandRefused
from domain.identities.identity import AccessLog
from infra.caller import ORCHESTRATOR, current_identity
from infra.log.repository import Repository
from services.execute import execute
from services.metrics import Metrics

log = logging.getLogger(__name__)

INTERVAL_S = 60.0
MAX_RECORDED_PER_INTERVAL = 10  # ConnectionRefused events, all hosts together
SUMMARY_HOSTS = 20  # hosts named in a summary; the others only counted
MAX_COUNTED_HOSTS = 10_000  # hosts counted one by one between summaries (memory)
# Longest recorded fields: the reason is ours (it may quote a claimed id), the rest the
# client's or its host's.
MAX_REASON = 160
MAX_CLAIMED = 64
MAX_HOST = 46  # the longest IPv6 address written out
MAX_CLIENT_NAME = 64
# Largest an access event grows the events stream by (data, headers, subject and the
# store's own record), with every field at its longest; tests/security/
# test_refusal_bound.py measures the stream against it.
MAX_EVENT_BYTES = 2_048
# Per day: the recorded refusals and one summary of every interval, and an `Opened`
# per hourly access log: 32,489,472 bytes (31 MiB) a day.
MAX_LOG_BYTES_PER_DAY = (
    int(86_400 / INTERVAL_S) * (MAX_RECORDED_PER_INTERVAL + 1) + 24) * MAX_EVENT_BYTES
# interval_s, the named hosts' counts, how many hosts more, how many refusals of theirs
Summary = tuple[float, dict[str, int], int, int]


class RefusalLog:
    def __init__(self, repository: Repository, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.repository = repository
        self.metrics = metrics or Metrics()
        self.clock = clock
        self._interval = -1  # the interval the counts below are of
        self._hosts_recorded: set[str] = set()
        self._left_out: dict[str, int] = {}  # host -> refusals not recorded, unsummarised
        self._left_out_elsewhere = 0  # of hosts past MAX_COUNTED_HOSTS
        self._summary_due: asyncio.Task[None] | None = None

    async def record(self, reason: str, claimed: str, public_key: str | None,
                     client: dict[str, Any]) -> bool:
        """Append a ConnectionRefused unless its host or the interval has had its share
        (then count it for the summary); True if it was appended."""
        now = self.clock()
        host = str(client.get("host"))[:MAX_HOST]
        summary = self._next_interval(now)
        recorded = (host not in self._hosts_recorded
                    and len(self._hosts_recorded) < MAX_RECORDED_PER_INTERVAL)
        if recorded:
            self._hosts_recorded.add(host)
        else:
            self._count_left_out(host)
        # Decided before any wait: concurrent refusals cannot both take the last place.
        if summary is not None:
            await self._summarise(now, summary)
        if not recorded:
            self.metrics.auth_refusals.labels("summarised").inc()
            return False
        seen = {"host": host, "id": client.get("id") if isinstance(client.get("id"), int)
                else None, "name": str(client.get("name") or "")[:MAX_CLIENT_NAME]}
        appended = await self._append(now, lambda access_log: access_log.refuse(
            reason[:MAX_REASON], claimed[:MAX_CLAIMED], public_key, seen, 0))
        self.metrics.auth_refusals.labels("recorded" if appended else "unrecorded").inc()
        return appended

    async def close(self) -> None:
        """Stop waiting to write a summary (the counts go with the process)."""
        if self._summary_due is not None:
            self._summary_due.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._summary_due
            self._summary_due = None

    def _next_interval(self, now: float) -> Summary | None:
        """Enter the interval `now` is in; the summary of the ones before, if any is due."""
        interval = int(now // INTERVAL_S)
        if interval == self._interval:
            return None
        self._interval = interval
        self._hosts_recorded = set()
        return self._take_summary()

    def _take_summary(self) -> Summary | None:
        if not self._left_out and not self._left_out_elsewhere:
            return None
        busiest = sorted(self._left_out.items(), key=lambda item: (-item[1], item[0]))
        named = dict(busiest[:SUMMARY_HOSTS])
        others = busiest[SUMMARY_HOSTS:]
        other_hosts = len(others)
        other_refusals = sum(n for _, n in others) + self._left_out_elsewhere
        self._left_out, self._left_out_elsewhere = {}, 0
        return INTERVAL_S, named, other_hosts, other_refusals

    def _count_left_out(self, host: str) -> None:
        if host in self._left_out or len(self._left_out) < MAX_COUNTED_HOSTS:
            self._left_out[host] = self._left_out.get(host, 0) + 1
        else:
            self._left_out_elsewhere += 1
        if self._summary_due is None or self._summary_due.done():
            # The summary is written at the interval's end even if no refusal follows.
            self._summary_due = asyncio.create_task(self._summarise_at_end())

    async def _summarise_at_end(self) -> None:
        while self._left_out or self._left_out_elsewhere:
            # Never a busy loop: a timer a little early sleeps a little more.
            await asyncio.sleep(max(0.05, (self._interval + 1) * INTERVAL_S - self.clock()))
            now = self.clock()
            summary = self._next_interval(now)
            if summary is not None:
                await self._summarise(now, summary)

    async def _summarise(self, now: float, summary: Summary) -> None:
        _, named, other_hosts, other_refusals = summary
        log.warning("connections refused and not recorded one by one in the last %.0f s: "
                    "%s; %d more from %d other hosts", INTERVAL_S,
                    ", ".join(f"{n} from {host}" for host, n in named.items()) or "none",
                    other_refusals, other_hosts)
        await self._append(now, lambda access_log: access_log.summarise(*summary))

    async def _append(self, now: float, command: Callable[[AccessLog], None]) -> bool:
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")

        def decide(access_log: AccessLog | None) -> AccessLog:
            access_log = access_log or AccessLog(hour)
            command(access_log)
            return access_log

        current_identity.set(ORCHESTRATOR)
        try:
            await execute(self.repository, hour, decide)
        except CommandRefused as exc:  # the log unavailable: the warning is logged anyway
            log.warning("refusal not recorded: %s", exc.message)
            return False
        return True
