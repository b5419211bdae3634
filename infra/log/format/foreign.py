"""Records in the event log that the orchestrator did not write: skipped, never fatal.

Only the orchestrator's log user may publish into the log (infra.auth.own_users), so
such a record should never be there. But the log forbids delete and purge, so one that
got in (before that rule, or by an operator's hand) would be there for good: a reader
that failed on it would fail at that position forever (failover, /v1/events, `why`,
`explain`). Every reader skips it instead, counts it, and says so in the log, once in a
while (there may be many).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

SAY_EVERY_S = 30.0


class ForeignRecord(ValueError):
    """A record in the event log without the orchestrator's subject form or headers."""


class ForeignRecords:
    """The count of records skipped, and the log line that says so."""

    def __init__(self) -> None:
        self.skipped = 0
        self.on_skip: Callable[[], None] | None = None  # the metric, when there is one
        self._said = float("-inf")

    def skip(self, position: int, subject: str, why: ForeignRecord | Exception) -> None:
        self.skipped += 1
        if self.on_skip is not None:
            self.on_skip()
        now = time.monotonic()
        if now - self._said >= SAY_EVERY_S:
            self._said = now
            log.warning("record in the event log not written by the orchestrator, skipped "
                        "position=%d subject=%.120s reason=%s skipped_so_far=%d", position,
                        subject, why, self.skipped)
