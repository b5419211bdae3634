"""Operators' commands about identities: enroll, create, revoke, and read API tokens.

A secret made here (an enrollment token, an API token) is in the reply and nowhere
else: the log keeps its digest.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from domain.errors import CommandRefused, ErrorCode
from domain.identities.commands import CreateApiToken, CreateIdentity, EnrollAgent, RevokeIdentity
from domain.identities.identity import Identity
from domain.identities.policy import policy_data
from infra.caller import ORCHESTRATOR, current_identity
from infra.log.repository import Repository
from services.auth.authorizer import ENROLLMENT_PREFIX, digest
from services.execute import Outcome, execute

API_TOKEN_PREFIX = "ot1"  # API tokens: ot1.<identity>.<token id>.<secret>
RESERVED = frozenset({ORCHESTRATOR, "anonymous"})


def new_enrollment_token(agent_id: str) -> str:
    return f"{ENROLLMENT_PREFIX}.{agent_id}.{secrets.token_urlsafe(32)}"


def _check_name(name: str) -> None:
    if name in RESERVED:
        raise CommandRefused(ErrorCode.INVALID_REQUEST, f"{name} is a reserved identity name")


def _reply(outcome: Outcome, **fields: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True, **fields}
    if outcome.position is not None:
        reply["position"] = outcome.position
    return reply


class AccessAdmin:
    """Command handlers of the Identity aggregate."""

    def __init__(self, repository: Repository, clock: Callable[[], float] = time.time) -> None:
        self.repository = repository
        self.clock = clock

    async def enroll(self, cmd: EnrollAgent, causation_id: str | None = None) -> dict[str, Any]:
        _check_name(cmd.agent_id)
        token = new_enrollment_token(cmd.agent_id)
        expires_at = self.clock() + cmd.ttl_s
        roles: list[str] = sorted({"agent", *cmd.roles})
        by = current_identity.get()
        policy = None if cmd.policy is None else policy_data(**cmd.policy.model_dump())

        def decide(identity: Identity | None) -> Identity:
            if identity is None:
                identity = Identity(cmd.agent_id, roles, None, by)
            identity.issue_enrollment(digest(token), expires_at, roles, cmd.rotate, by,
                                      policy)
            return identity

        outcome = await execute(self.repository, cmd.agent_id, decide, causation_id)
        return _reply(outcome, agent_id=cmd.agent_id, token=token, expires_at=expires_at,
                      roles=roles, policy=policy)

    async def create(self, cmd: CreateIdentity,
                     causation_id: str | None = None) -> dict[str, Any]:
        _check_name(cmd.name)
        roles: list[str] = sorted(set(cmd.roles))

        def decide(identity: Identity | None) -> Identity:
            if identity is not None:
                raise CommandRefused(ErrorCode.CONFLICT, f"identity {cmd.name} exists")
            return Identity(cmd.name, roles, cmd.public_key, current_identity.get())

        outcome = await execute(self.repository, cmd.name, decide, causation_id)
        return _reply(outcome, name=cmd.name, roles=roles)

    async def revoke(self, cmd: RevokeIdentity,
                     causation_id: str | None = None) -> dict[str, Any]:
        def decide(identity: Identity | None) -> Identity:
            if identity is None:
                raise CommandRefused(ErrorCode.NOT_FOUND, f"no identity {cmd.name}")
            identity.revoke(cmd.reason, current_identity.get())
            return identity

        outcome = await execute(self.repository, cmd.name, decide, causation_id)
        return _reply(outcome, name=cmd.name, revoked=True)

    async def create_api_token(self, cmd: CreateApiToken,
                               causation_id: str | None = None) -> dict[str, Any]:
        _check_name(cmd.name)
        token_id = secrets.token_hex(6)
        token = f"{API_TOKEN_PREFIX}.{cmd.name}.{token_id}.{secrets.token_urlsafe(32)}"
        by = current_identity.get()

        def decide(identity: Identity | None) -> Identity:
            if identity is None:
                identity = Identity(cmd.name, [], None, by)
            identity.issue_api_token(token_id, cmd.scope, digest(token), by)
            return identity

        outcome = await execute(self.repository, cmd.name, decide, causation_id)
        return _reply(outcome, name=cmd.name, scope=cmd.scope, token_id=token_id, token=token)


def parse_api_token(token: str) -> tuple[str, str, str] | None:
    """(identity, token id, digest) of a well-formed API token, else None."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != API_TOKEN_PREFIX or not all(parts):
        return None
    return parts[1], parts[2], digest(token)
