"""The operators' limits of flow control (domain/limits/limit.py): each set is an event of its
limit's aggregate, so `why` can say which limit held a task and since when."""

from __future__ import annotations

from typing import Any

from domain.errors import CommandRefused, ErrorCode
from domain.limits.commands import SetLimit
from domain.limits.limit import Limit, LimitScope, check_values, limit_id, parse_rate
from infra.log.repository import Repository
from services.execute import execute


class LimitService:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    async def set(self, cmd: SetLimit, causation_id: str | None = None) -> dict[str, Any]:
        scope = LimitScope(cmd.scope)
        if scope == LimitScope.DEFAULT and cmd.name != "key":
            raise CommandRefused(ErrorCode.INVALID_REQUEST,
                                 "the default limit's name is 'key' (keys without a limit)",
                                 [{"field": "name", "problem": "must be 'key'"}])
        values = _values(cmd)
        check_values(scope, values)
        limit = limit_id(scope, cmd.name)

        def decide(found: Limit | None) -> Limit | None:
            if found is None:
                return Limit(limit, values) if values else None  # nothing to lift
            found.change(values)
            return found

        outcome = await execute(self.repository, limit, decide, causation_id)
        reply: dict[str, Any] = {"ok": True, "scope": scope.value, "name": cmd.name,
                                 "values": values}
        if outcome.position is not None:
            reply["position"] = outcome.position
        return reply


def _values(cmd: SetLimit) -> dict[str, Any]:
    """The values given, the rate as placements per second."""
    values: dict[str, Any] = {}
    if cmd.concurrency is not None:
        values["concurrency"] = cmd.concurrency
    if cmd.rate is not None:
        try:
            values["rate_per_s"] = parse_rate(cmd.rate)
        except ValueError as exc:
            raise CommandRefused(ErrorCode.INVALID_REQUEST, str(exc),
                                 [{"field": "rate", "problem": str(exc)}]) from None
        values["burst"] = cmd.burst if cmd.burst is not None else 1
    elif cmd.burst is not None:
        values["burst"] = cmd.burst
    if cmd.weight is not None:
        values["weight"] = cmd.weight
    if cmd.max_unfinished is not None:
        values["max_unfinished"] = cmd.max_unfinished
    return values
