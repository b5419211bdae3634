"""Identities: who may connect to NATS with which roles, and who holds read API tokens.

Only digests of secrets and public keys are ever recorded: an enrollment token, an API
token and an nkey seed stay with whoever holds them.
"""

from __future__ import annotations

import hmac
from typing import Any

from eventsourcing.domain import event

from domain.base import StrIdAggregate, named_in_the_log
from domain.errors import CommandRefused, ErrorCode

ROLES = frozenset({"agent", "submitter", "operator", "reader", "auditor"})
SCOPES = frozenset({"read", "admin"})


def _same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Identity(StrIdAggregate):
    """One identity (an agent's id, or a person's or tool's name) over its keys."""

    @staticmethod
    def create_id(name: str) -> str:
        return name

    @event("Created")
    def __init__(self, name: str, roles: list[str], public_key: str | None,
                 created_by: str) -> None:
        self.roles = sorted(roles)
        self.public_key = public_key
        self.revoked = False
        self.enrollment_digest: str | None = None
        self.enrollment_expires_at = 0.0
        self.api_tokens: dict[str, tuple[str, str]] = {}  # token id -> (scope, digest)
        # What it may claim as an agent (domain.identities.policy); None: anything.
        self.policy: dict[str, Any] | None = None

    def restored(self) -> None:
        self.api_tokens = {token_id: (scope, digest)
                           for token_id, (scope, digest) in self.api_tokens.items()}
        # A state carried forward before policies existed has none.
        self.policy = vars(self).get("policy")

    # --- guards -----------------------------------------------------------------

    def check_enrollable(self, rotate: bool) -> None:
        if self.public_key is not None and not self.revoked and not rotate:
            raise CommandRefused(
                ErrorCode.CONFLICT,
                f"{self.id} is enrolled already; enroll with rotate to replace its key, or "
                f"revoke it first")

    def check_enrollment(self, token_digest: str, now: float) -> None:
        """The token is this identity's pending, unexpired enrollment, or refused."""
        if self.enrollment_digest is None or not _same_digest(
                token_digest, self.enrollment_digest):
            raise CommandRefused(ErrorCode.UNAUTHORIZED,
                                 f"no pending enrollment of {self.id} for this token")
        if now >= self.enrollment_expires_at:
            raise CommandRefused(ErrorCode.UNAUTHORIZED,
                                 f"the enrollment token of {self.id} has expired")

    def may_connect_with(self, public_key: str) -> bool:
        return not self.revoked and self.public_key == public_key

    # --- commands ---------------------------------------------------------------

    def issue_enrollment(self, token_digest: str, expires_at: float, roles: list[str],
                         rotate: bool, issued_by: str,
                         policy: dict[str, Any] | None = None) -> None:
        """A new token; its roles and policy replace the identity's at once, as the
        operator states them whole at every enrollment."""
        self.check_enrollable(rotate)
        self._enrollment_issued(token_digest=token_digest, expires_at=expires_at,
                                roles=sorted(roles), issued_by=issued_by, policy=policy)

    @event("EnrollmentIssued")
    def _enrollment_issued(self, token_digest: str, expires_at: float, roles: list[str],
                           issued_by: str, policy: dict[str, Any] | None = None) -> None:
        # `policy` is absent from events recorded before policies existed: none, then.
        self.enrollment_digest = token_digest
        self.enrollment_expires_at = expires_at
        self.roles = roles
        self.policy = policy

    def enroll(self, public_key: str, token_digest: str, now: float,
               client: dict[str, Any]) -> None:
        """The agent proved it holds the token and the key's seed: the key is its own."""
        self.check_enrollment(token_digest, now)
        self._enrolled(public_key=public_key, previous_key=self.public_key, client=client)

    @event("AgentEnrolled")
    def _enrolled(self, public_key: str, previous_key: str | None,
                  client: dict[str, Any]) -> None:
        self.public_key = public_key
        self.revoked = False
        self.enrollment_digest = None  # one use

    def revoke(self, reason: str, revoked_by: str) -> bool:
        """False when already revoked (nothing to record)."""
        if self.revoked:
            return False
        self._revoked(reason=reason, revoked_by=revoked_by, public_key=self.public_key)
        return True

    @event("Revoked")
    def _revoked(self, reason: str, revoked_by: str, public_key: str | None) -> None:
        self.revoked = True
        self.enrollment_digest = None
        self.api_tokens = {}

    def issue_api_token(self, token_id: str, scope: str, digest: str, issued_by: str) -> None:
        """A bearer token of the read API for this identity; its digest is kept."""
        if scope not in SCOPES:
            raise CommandRefused(ErrorCode.INVALID_REQUEST,
                                 f"scope must be one of {sorted(SCOPES)}")
        if self.revoked:
            raise CommandRefused(ErrorCode.CONFLICT, f"{self.id} is revoked")
        self._api_token_issued(token_id=token_id, scope=scope, digest=digest,
                               issued_by=issued_by)

    @event("ApiTokenIssued")
    def _api_token_issued(self, token_id: str, scope: str, digest: str, issued_by: str) -> None:
        self.api_tokens = {**self.api_tokens, token_id: (scope, digest)}


class AccessLog(StrIdAggregate):
    """Refused connection attempts of one hour, rate-limited by the caller
    (services/auth/refusals.py): some one by one, the rest in summaries."""

    @staticmethod
    def create_id(hour: str) -> str:
        return hour

    @event("Opened")
    def __init__(self, hour: str) -> None:
        self.refusals = 0

    def summarise(self, interval_s: float, hosts: dict[str, int], other_hosts: int,
                  other_refusals: int) -> None:
        """The refusals of an interval not recorded one by one: so many from each host
        named, and `other_refusals` from `other_hosts` more."""
        self._summarised(interval_s=interval_s, hosts=hosts, other_hosts=other_hosts,
                         other_refusals=other_refusals)

    @event("RefusalsSummarised")
    def _summarised(self, interval_s: float, hosts: dict[str, int], other_hosts: int,
                    other_refusals: int) -> None:
        self.refusals += sum(hosts.values()) + other_refusals

    def refuse(self, reason: str, claimed: str, public_key: str | None,
               client: dict[str, Any], suppressed: int) -> None:
        self._refused(reason=reason, claimed=claimed, public_key=public_key, client=client,
                      suppressed=suppressed)

    @event("ConnectionRefused")
    def _refused(self, reason: str, claimed: str, public_key: str | None,
                 client: dict[str, Any], suppressed: int) -> None:
        self.refusals += 1 + suppressed


named_in_the_log(Identity, "domain.identity:Identity")
named_in_the_log(AccessLog, "domain.identity:AccessLog")
