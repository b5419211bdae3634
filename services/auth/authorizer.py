"""The auth callout's decision, apart from its plumbing: an authorization request in,
who connects with which roles (or why not) out. Pure, so that table tests cover it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.fields import ID_PATTERN
from infra.auth import keys
from projections.access import IdentityView

ENROLLMENT_PREFIX = "oe1"  # enrollment tokens: oe1.<agent id>.<secret>
_ID = re.compile(ID_PATTERN)


class Refusal(Exception):
    """The connection is refused; the reason goes to the log, never to the client."""

    def __init__(self, reason: str, claimed: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed = claimed


@dataclass(frozen=True)
class Request:
    """What the server tells us of a connection, with its proof of key checked."""

    user_nkey: str  # made by the server for this connection: the issued JWT's subject
    server_id: str
    public_key: str | None  # the client's own nkey, proven by its signed nonce
    token: str | None
    name: str  # the client's connection name: a hint of who it says it is
    client: dict[str, Any]  # host, id, name, kind: for the log


@dataclass(frozen=True)
class Admit:
    """Connect as `identity` with `roles`."""

    identity: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Enroll:
    """Connect after recording that `agent_id` owns `public_key` (one use of its token)."""

    agent_id: str
    public_key: str
    token_digest: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


AUTH_REQUEST_AUDIENCE = "nats-authorization-request"


def read_request(claims: dict[str, Any]) -> Request:
    """The authorization request's fields, with the client's key proven or refused."""
    nats = claims.get("nats")
    if not isinstance(nats, dict):
        raise Refusal("malformed request")
    server = nats.get("server_id") or {}
    client = nats.get("client_info") or {}
    opts = nats.get("connect_opts") or {}
    user_nkey, server_id = nats.get("user_nkey"), server.get("id")
    if not isinstance(user_nkey, str) or not isinstance(server_id, str):
        raise Refusal("malformed request")
    # Signed by the server it names, for the callout: nats-server signs with its own
    # key (its id) and sets this audience (server/auth_callout.go); a request signed by
    # some other server key, or one of its tokens meant for something else, is not one.
    if claims.get("aud") != AUTH_REQUEST_AUDIENCE or claims.get("iss") != server_id:
        raise Refusal("not an authorization request of the server it names")
    token = opts.get("auth_token") or None
    public_key = _proven_key(opts, client)
    name = str(opts.get("name") or "")
    seen = {"host": client.get("host"), "id": client.get("id"), "name": name[:128]}
    return Request(user_nkey, server_id, public_key, token, name, seen)


def _proven_key(opts: dict[str, Any], client: dict[str, Any]) -> str | None:
    """The client's nkey if it signed this connection's nonce with it."""
    public, signature, nonce = opts.get("nkey"), opts.get("sig"), client.get("nonce")
    if not public:
        return None
    if not (isinstance(public, str) and isinstance(signature, str) and isinstance(nonce, str)):
        raise Refusal("an nkey without a signed nonce")
    try:
        keys.check_public_key(public, keys.Role.USER)
        raw_signature = keys.b64url_decode(signature)
    except ValueError:
        raise Refusal("malformed nkey or signature") from None
    if not keys.verify(public, nonce.encode(), raw_signature, keys.Role.USER):
        raise Refusal("the nkey did not sign the nonce")
    return public


def parse_enrollment_token(token: str) -> tuple[str, str]:
    """(agent id, digest) of an enrollment token, or Refusal before anything is looked up."""
    prefix, _, rest = token.partition(".")
    agent_id, _, secret = rest.partition(".")
    if prefix != ENROLLMENT_PREFIX or not secret:
        raise Refusal("not an enrollment token")
    if not _ID.fullmatch(agent_id):
        raise Refusal("an enrollment token for an invalid agent id")
    return agent_id, digest(token)


def decide(request: Request,
           by_key: Callable[[str], IdentityView | None]) -> Admit | Enroll | None:
    """Who this connection is: a known key, or an agent enrolling with its token; None
    for a key that is not known here (the caller may look further, or refuse)."""
    if request.public_key is None:
        raise Refusal("no nkey: every client proves a key", claimed=request.name)
    known = by_key(request.public_key)
    if known is not None:
        return Admit(known.name, known.roles)
    if request.token:
        agent_id, token_digest = parse_enrollment_token(request.token)
        return Enroll(agent_id, request.public_key, token_digest)
    return None
