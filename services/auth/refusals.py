"""Refused connections in the log, rate-limited: a client retrying with a bad key every
250 ms must not fill the log, yet the count of what was left out is kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from domain.errors import CommandRefused
from domain.identity import AccessLog
from infra.caller import ORCHESTRATOR, current_identity
from infra.log.repository import Repository
from services.commands.execute import execute

log = logging.getLogger(__name__)

SAME_REFUSAL_EVERY_S = 10.0  # one event per (reason, claimed identity, host) at most
MAX_KEYS = 10_000


class RefusalLog:
    def __init__(self, repository: Repository, clock: Callable[[], float] = time.time) -> None:
        self.repository = repository
        self.clock = clock
        self._last: dict[tuple[str, str, str], float] = {}
        self._suppressed: dict[tuple[str, str, str], int] = {}

    async def record(self, reason: str, claimed: str, public_key: str | None,
                     client: dict[str, Any]) -> bool:
        """Append a ConnectionRefused, unless the same one was appended lately; True if
        it was appended."""
        key = (reason, claimed, str(client.get("host")))
        now = self.clock()
        if now - self._last.get(key, float("-inf")) < SAME_REFUSAL_EVERY_S:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) > MAX_KEYS:  # forget old keys; they only rate-limit
            self._last = {k: t for k, t in self._last.items()
                          if now - t < SAME_REFUSAL_EVERY_S}
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")

        def decide(access_log: AccessLog | None) -> AccessLog:
            access_log = access_log or AccessLog(hour)
            access_log.refuse(reason, claimed[:64], public_key, client, suppressed)
            return access_log

        current_identity.set(ORCHESTRATOR)
        try:
            await execute(self.repository, hour, decide)
        except CommandRefused as exc:  # the log unavailable: the warning is logged anyway
            log.warning("refusal not recorded: %s", exc.message)
            return False
        return True
