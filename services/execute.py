"""Running one command against one aggregate: load, decide, save, retry on conflict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.errors import CommandRefused, ErrorCode
from infra.log.event_store import ConcurrencyConflict, StoreUnavailable
from infra.log.repository import Repository

MAX_ATTEMPTS = 5

Decision = Callable[[Any | None], Any | None]


@dataclass(frozen=True)
class Outcome:
    aggregate: Any
    positions: list[int]

    @property
    def position(self) -> int | None:
        return self.positions[-1] if self.positions else None


async def execute(
    repository: Repository,
    aggregate_id: str,
    decide: Decision,
    causation_id: str | None = None,
    correlation_id: str | None = None,
    fresh: bool = False,
) -> Outcome:
    """Apply `decide` to the current aggregate and append what it recorded.

    `decide` gets the aggregate (None if it does not exist), guards, calls one command
    method and returns the aggregate; it raises CommandRefused to refuse. It is first
    given the cached state (None when not cached); on an OCC conflict, or a refusal, it is
    given the state read from the log and decides again, so neither a stale cache nor a
    presumed-new aggregate can make it write wrongly or refuse wrongly. With `fresh`, it is
    read from the log at once (the caller knows it exists and is not cached).
    """
    async with repository.locked(aggregate_id):
        return await _attempts(repository, aggregate_id, decide, causation_id, correlation_id,
                               fresh)


async def _attempts(
    repository: Repository,
    aggregate_id: str,
    decide: Decision,
    causation_id: str | None,
    correlation_id: str | None,
    fresh: bool,
) -> Outcome:
    for _ in range(MAX_ATTEMPTS):
        try:
            aggregate, position = await repository.get(aggregate_id, fresh)
            decided = decide(aggregate)
            if decided is None and not fresh:
                fresh = True  # nothing to do on presumed state: make sure on real state
                continue
            if decided is None or not decided.pending_events:
                return Outcome(decided, [])
            positions = await repository.save(decided, position, causation_id, correlation_id)
            return Outcome(decided, positions)
        except ConcurrencyConflict:
            fresh = True
            continue
        except StoreUnavailable as exc:
            raise CommandRefused(ErrorCode.UNAVAILABLE, "event log unavailable; retry") from exc
        except CommandRefused:
            # A guard may have refused on a stale cached copy (another orchestrator wrote
            # since): decide once more on state read from the log before saying no.
            if fresh:
                raise
            fresh = True
            continue
    raise CommandRefused(ErrorCode.CONFLICT, f"{aggregate_id}: too many concurrent writers")
