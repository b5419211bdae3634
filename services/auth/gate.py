"""The identity checks every command of a named sender passes before its handler runs:
a revoked identity's commands are refused, and an agent's claims are held to the policy
it was enrolled with. Both read the identity projection (projections/access.py), so a
refusal writes nothing.

Revocation also takes the agent out of the fleet (`revoke_and_remove`): once the
`Revoked` event is in this process's projection and the revoked identity's commands
already past the check have finished, no registration of it can follow, and its
`Deregistered` (reason "revoked") is the last word on its incarnation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from domain.errors import CommandRefused, ErrorCode
from domain.identities.policy import check_claims
from infra.caller import current_identity
from projections.access import Access

Handler = Callable[[Any, str], Awaitable[dict[str, Any]]]
# How long a revocation waits for this process's projection to apply it, and for the
# revoked identity's running commands to finish, before it takes the agent out anyway.
SETTLE_TIMEOUT_S = 5.0


class AccessGate:
    def __init__(self, access: Access) -> None:
        self.access = access
        # The running commands of each sender (each request runs in a task of its own).
        self._running: dict[str, set[asyncio.Task[Any]]] = {}

    def check_sender(self, name: str) -> None:
        if self.access.is_revoked(name):
            raise CommandRefused(ErrorCode.UNAUTHORIZED, f"{name} is revoked")

    def check_claims(self, name: str, cmd: Any) -> None:
        """A registration's or a declaration's claims, against the sender's policy."""
        check_claims(
            name, self.access.policy_of(name),
            services=[service.name for service in cmd.services],
            capabilities=getattr(cmd, "capabilities", ()),
            labels=getattr(cmd, "labels", None),
            capacity=getattr(cmd, "capacity", None))

    def guard(self, handler: Handler, claims: bool = False) -> Handler:
        """`handler`, run only for a sender that is not revoked (and whose claims its
        policy allows, with `claims`)."""

        async def guarded(cmd: Any, causation_id: str) -> dict[str, Any]:
            name = current_identity.get()
            self.check_sender(name)
            if claims:
                self.check_claims(name, cmd)
            task = asyncio.current_task()
            if task is None:  # not run by the command service (a direct call)
                return await handler(cmd, causation_id)
            running = self._running.setdefault(name, set())
            running.add(task)
            try:
                return await handler(cmd, causation_id)
            finally:
                running.discard(task)
                if not running:
                    self._running.pop(name, None)

        return guarded

    def in_effect(self, handler: Handler) -> Handler:
        """`handler`, an operator's identity command, answered once this process's
        projection holds what it wrote: a policy or a revocation is in force here when its
        operator hears of it, before the agent can connect or send again."""

        async def answered_when_applied(cmd: Any, causation_id: str) -> dict[str, Any]:
            reply = await handler(cmd, causation_id)
            position = reply.get("position")
            if position is not None:
                await self.access.position.wait_for(position, SETTLE_TIMEOUT_S)
            return reply

        return answered_when_applied

    async def settle(self, name: str) -> None:
        """Wait until the commands of `name` that passed the check before its revocation
        was applied have ended."""
        others = self._running.get(name, set()) - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=SETTLE_TIMEOUT_S)


RemoveRevoked = Callable[[str, str | None], Awaitable[int | None]]


def revoke_and_remove(revoke: Handler, remove: RemoveRevoked, gate: AccessGate) -> Handler:
    """The revoke command: `Revoked`, then the agent of that name (if any) deregistered
    with the reason "revoked", so that it is out of placement at once and its open tasks
    move. A retry of a revocation that did not get that far finishes it."""

    applied_revoke = gate.in_effect(revoke)

    async def revoke_then_remove(cmd: Any, causation_id: str) -> dict[str, Any]:
        reply = await applied_revoke(cmd, causation_id)  # later commands of it: refused
        await gate.settle(cmd.name)
        removed_at = await remove(cmd.name, causation_id)
        if removed_at is not None:
            reply["position"] = removed_at
        reply["deregistered"] = removed_at is not None
        return reply

    return revoke_then_remove
